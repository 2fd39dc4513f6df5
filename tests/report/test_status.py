"""`hubaudit status`: read-only (no database: exit 3 with what to run, nothing created), and on a store
filled by `hubaudit ingest` and `hubaudit calibrate` plus a probe queue in every state, the same counts
`hubaudit report` gives. In-process through the real entry point against real SQLite files."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from hubaudit.store import Store
from tests.report.conftest import write_lora
from tests.report.hostile import assert_terminal_safe
from tests.report.test_hostile_cli import cli

BASE = "acme/tiny-base"
EVIL = "evil/[/]x\x1b]0;title\x07\u202e"


def test_no_database_exits_3_and_creates_nothing(tmp_path):
    home = Path(os.environ["HUBAUDIT_HOME"])  # the default database lives here (tests/conftest.py)
    code, out, err = cli("status")
    assert code == 3 and out == ""
    assert err.startswith("Error: no hubaudit database at ") and "hubaudit ingest PATH --base" in err
    assert "hubaudit crawl --base" in err
    assert not home.exists() or os.listdir(home) == []
    code, out, err = cli("status", "--db", f"sqlite:///{tmp_path / 'nested' / 'h.db'}", "--format", "json")
    assert code == 3 and out == "" and not (tmp_path / "nested").exists()


def test_an_empty_store_says_so(tmp_path):
    url = f"sqlite:///{tmp_path / 'h.db'}"
    assert cli("db", "upgrade", "--db", url)[0] == 0
    code, out, err = cli("status", "--db", url, "--format", "json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["bases"] == [] and doc["last_runs"] == [] and "knows no base yet" in err


@pytest.fixture(scope="module")
def populated(tmp_path_factory) -> str:
    top = tmp_path_factory.mktemp("status")
    url = f"sqlite:///{top / 'h.db'}"
    adapters = [str(write_lora(top / f"c{i}", seed=i)) for i in range(12)]
    broken = top / "broken"
    broken.mkdir()
    (broken / "adapter_config.json").write_text("{}")
    code, _, err = cli("ingest", *adapters, str(broken), "--base", BASE, "--db", url)
    assert code == 3, err  # the broken one is recorded, not scored
    code, _, err = cli("calibrate", "--base", BASE, "--db", url, "--min-n", "5", "--target-fpr", "0.1")
    assert code == 0, err
    assert cli("ingest", str(write_lora(top / "evil", seed=99)), "--base", EVIL, "--db", url)[0] == 0
    with Store.open(url) as store:  # one probe job in each state, as the prober leaves them
        rows = [r for r in store.audit_rows(BASE) if r.status == "scored"][:4]
        for i, r in enumerate(rows):
            store.enqueue_probe(r.revision_id, priority=10.0 - i)
        done, _running, failed = (store.claim_probe_jobs("t", limit=1, lease_seconds=600)[0] for _ in range(3))
        store.finish_probe_job(done.id, {"status": "ok", "flagged": True, "mean_attack_rate": 0.6, "outlier_gap": 0.3})
        store.fail_probe_job(failed.id, "base model missing", max_attempts=1)
    return url


def test_populated_store_json_matches_report(populated):
    code, out, err = cli("status", "--db", populated, "--format", "json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["schema_version"] == "1" and [b["base"] for b in doc["bases"]] == sorted([BASE, EVIL])
    b = next(b for b in doc["bases"] if b["base"] == BASE)
    assert (b["population"], b["scored"], b["not_audited"]) == (13, 12, 1)
    assert b["not_audited_by_reason"] == {"no_adapter_files": 1}
    assert b["probe_queue"] == {"queued": 1, "running": 1, "done": 1, "failed": 1}
    assert b["probe_confirmed"] == 1
    cal = b["calibration"]
    assert cal["version"] == 1 and cal["n"] == 12 and cal["low_confidence_strata"] == [] and cal["created_at"]
    assert [r["command"] for r in b["last_runs"]] == ["calibrate", "ingest"]
    ingest_run = b["last_runs"][1]
    assert ingest_run["exit_status"] == 3 and ingest_run["counts"]["error"] == 1 and ingest_run["bases"] == [BASE]
    assert [r["command"] for r in doc["last_runs"]] == ["ingest", "calibrate"]  # the newest run of each command
    assert doc["last_runs"][0]["bases"] == [EVIL] and doc["runs_truncated"] is False
    evil = next(x for x in doc["bases"] if x["base"] == EVIL)
    assert evil["calibration"] is None and evil["population"] == 1 and evil["probe_queue"]["queued"] == 0

    # the same numbers as `hubaudit report` (one code path for both)
    code, out, err = cli("report", "--base", BASE, "--db", populated, "--format", "json")
    assert code == 0, err
    rep = json.loads(out)
    s = rep["summary"]
    assert (b["population"], b["scored"], b["not_audited_by_reason"]) == (s["population"], s["audited"],
                                                                         s["not_audited_by_reason"])  # fmt: skip
    assert b["weights_flagged"] == sum(1 for a in rep["adapters"] if a["flagged"] is True)
    assert b["probe_confirmed"] == s["probe_confirmed"] and b["not_judged"] == s["not_judged"]


def test_populated_store_table(populated):
    with Store.open(populated) as store:
        before = len(store.runs())
    code, out, err = cli("status", "--db", populated)
    assert code == 0, err
    assert_terminal_safe(out)
    assert "evil/[/]x\\x1b]0;title\\x07\\u202e" in out  # a base name is data: escaped, never markup
    block = out.split(f"\n{BASE}\n", 1)[1].split("\n\n", 1)[0]
    assert "  adapters     13: 12 scored, 1 not audited (no_adapter_files 1)" in block
    assert "  calibration  v1, N=12, " in block and "probe-confirmed" in block
    assert "  probe queue  queued 1 · running 1 · done 1 · failed 1" in block
    assert "  last runs    calibrate #2 " in block
    assert "calibration  none: nothing of this base is judged" in out
    assert out.rstrip().split("Last run of each command\n", 1)[1].splitlines()[0].startswith(
        "  ingest #3 for evil/[/]x\\x1b]0;title\\x07\\u202e ")
    with Store.open(populated) as store:  # read only: status records no run
        assert len(store.runs()) == before
