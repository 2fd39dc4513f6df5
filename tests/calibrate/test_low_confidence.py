"""Fits on too few adapters for their target FPR are low-confidence, and no gate turns them into a bare PASS.

Three real adapters (numpy-written PEFT LoRA, tests/report/conftest.py) in a real SQLite store,
calibrated with ``--min-n 3``: the thresholds exist but are meaningless at 5 % FPR (the
order-statistic rule needs 19 adapters), which is what a user with a small population gets.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hubaudit.calibrate import fit, judge, low_confidence, n_needed
from tests.report.conftest import BASE, hexsha, write_lora
from tests.report.test_cli import run

REASON = "fitted on 3 adapters; 19 needed for 5 % FPR"


def test_n_needed_is_the_order_statistic_rule_capped():
    assert n_needed(0.05) == 19 and n_needed(0.1) == 9 and n_needed(0.5) == 2
    assert n_needed(0.01) == 30 and n_needed(1e-4) == 30  # the parametric fit's own floor


def test_small_fit_is_low_confidence_and_every_verdict_says_so():
    rows = [("lora|r4|q_proj", {"f": 1.0 + 0.1 * i}) for i in range(3)]
    ts = fit(rows, {"f": "up"}, target_fpr=0.05, min_n=3, method="per-feature")
    entry = ts["strata"]["lora|r4|q_proj"]
    assert entry["status"] == "calibrated" and entry["low_confidence"] is True
    assert entry["low_confidence_reason"] == REASON and entry["n_needed"] == 19
    flagged, bd = judge({"f": 1.05}, "lora|r4|q_proj", ts)
    assert flagged is False and bd["low_confidence"] is True and bd["low_confidence_reason"] == REASON
    # a stored threshold set from before the mark is judged by the same rule
    old = {k: v for k, v in entry.items() if not k.startswith("low_confidence")}
    assert low_confidence(old, ts["params"]) == REASON


def test_enough_adapters_is_confident():
    rows = [("s|r4|q", {"f": 1.0 + 0.01 * i}) for i in range(30)]
    ts = fit(rows, {"f": "up"}, target_fpr=0.01, min_n=30, method="per-feature")
    assert ts["strata"]["s|r4|q"]["low_confidence"] is False
    assert judge({"f": 1.1}, "s|r4|q", ts)[1]["low_confidence"] is False


@pytest.fixture(scope="module")
def small_store(tmp_path_factory) -> tuple[str, Path]:
    """Three scored adapters of BASE calibrated with min N 3 at 5 % FPR; returns (url, a fourth adapter dir)."""
    from hubaudit.pipeline.calibrate import calibrate_base
    from hubaudit.stats import scan_path
    from hubaudit.store import Store

    root = tmp_path_factory.mktemp("small")
    url = f"sqlite:///{root / 'hubaudit.db'}"
    with Store.open(url, create=True) as store:
        for i in range(3):
            scan = scan_path(write_lora(root / f"a{i}", seed=i))
            store.upsert_adapter(BASE, f"few/a{i}", meta={"sha": hexsha(i + 1)})
            store.record_revision(base=BASE, repo_id=f"few/a{i}", sha=hexsha(i + 1), status="scored",
                                  declared_base=scan.base_model, scan=scan)  # fmt: skip
        summary = calibrate_base(store, BASE, min_n=3, target_fpr=0.05)
    assert summary.calibrated and summary.low_confidence
    assert summary.low_confidence[0]["low_confidence_reason"] == REASON
    assert summary.verdicts["clean"] == summary.clean_low_confidence == 3
    return url, write_lora(root / "new", seed=77)


def test_check_low_confidence_pass_is_never_bare_and_exits_3(small_store):
    url, _ = small_store
    p = run("check", "few/a0", "--db", url, "--offline")
    assert p.returncode == 3, p.stdout + p.stderr
    first = p.stdout.splitlines()[0]
    assert first.startswith(f"PASS (low confidence: {REASON})")
    assert "--reference" in p.stderr and "--accept-low-confidence" in p.stderr

    p = run("check", "few/a0", "--db", url, "--offline", "--format", "json")
    doc = json.loads(p.stdout)
    assert p.returncode == 3 and doc["exit_code"] == 3
    assert doc["verdict"] == "pass_low_confidence" and doc["low_confidence"] is True
    assert doc["low_confidence_reason"] == REASON


def test_check_accept_low_confidence_exits_0_but_still_says_so(small_store):
    url, new = small_store
    p = run("check", str(new), "--db", url, "--offline", "--accept-low-confidence")
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.startswith(f"PASS (low confidence: {REASON})")


def test_calibrate_warns_and_not_calibrated_hint_names_the_flags(small_store, tmp_path):
    url, _ = small_store
    p = run("calibrate", "--base", BASE, "--db", url, "--min-n", "3", "--target-fpr", "0.05")
    assert p.returncode == 0, p.stderr
    assert "low confidence" in p.stderr and REASON in p.stderr
    assert "3 clean (3 of them low confidence)" in p.stderr
    p = run("calibrate", "--base", BASE, "--db", url)  # min N 30: nothing calibrated
    assert p.returncode == 3
    assert "--min-n" in p.stderr and "--reference" in p.stderr
    p = run("check", "few/a1", "--db", url, "--offline")
    assert p.returncode == 3 and p.stdout.startswith("NOT CALIBRATED")
    assert "--min-n" in p.stderr and "--reference" in p.stderr
    # leave the module's store as the other tests expect it
    assert run("calibrate", "--base", BASE, "--db", url, "--min-n", "3", "--target-fpr", "0.05").returncode == 0
