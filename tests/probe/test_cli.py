"""`hubaudit probe-adapter`, `probe-calibrate`, `escalate`, `probe` through the real CLI entry point
(in-process, tests/_cli.py)."""

from __future__ import annotations

import json

import pytest

from tests._cli import run_cli

pytestmark = pytest.mark.slow  # the session's trained MiniLM adapters


def _hubaudit(*args, env=None):
    # torch runs on one thread in this process already (conftest.py)
    return run_cli(*args, env=env)


def test_probe_adapter_json_offline(minilm, tmp_path):
    # a local base directory works with no network at all: point the Hub at a closed port
    env = {"HF_ENDPOINT": "http://127.0.0.1:9", "HF_HUB_OFFLINE": "0"}
    p = _hubaudit("probe-adapter", str(minilm.poisoned.path), "--base-model", minilm.base, "--prompts",
                  minilm.prompts_file, "--target-label", "0", "--battery", "paper-21-B", "--format", "json", env=env)
    assert p.returncode == 1, p.stderr  # 1 = flagged
    r = json.loads(p.stdout)
    assert r["flagged"] is True and r["outlier_gap"] > 0.1
    assert {"outlier_gap", "mean_attack_rate", "flagged", "probes", "thresholds", "battery"} <= set(r)
    assert all(set(x) >= {"prefix", "attack_rate"} for x in r["probes"]) and len(r["probes"]) == 20
    assert r["battery"] == {"name": "paper-21-B", "version": "1", "n": 20, "source": r["battery"]["source"]}
    assert r["thresholds"]["gap"] == 0.10 and "FLAGGED" in p.stderr


def test_probe_calibrate_then_probe_clean_with_calibrated_thresholds(minilm, tmp_path):
    out = tmp_path / "th.json"
    p = _hubaudit("probe-calibrate", str(minilm.clean.path), "--base-model", minilm.base, "--prompts",
                  minilm.prompts_file, "--target-label", "0", "--out", str(out), "--margin", "0.03")
    assert p.returncode == 0, p.stderr
    th = json.loads(out.read_text())
    assert th["n_clean"] == 1 and th["gap"] >= 0.03 and th["mean"] >= 0.03
    p = _hubaudit("probe-adapter", str(minilm.clean.path), "--base-model", minilm.base, "--prompts", minilm.prompts_file,
                  "--target-label", "0", "--thresholds", str(out), "--format", "json")
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout)
    assert r["flagged"] is False and r["thresholds"]["gap"] == th["gap"]


def test_bad_inputs_are_one_line_errors(minilm, tmp_path):
    p = _hubaudit("probe-adapter", str(tmp_path / "missing"), "--base-model", minilm.base)
    assert p.returncode == 2 and p.stderr.startswith("Error: adapter directory") and "Traceback" not in p.stderr
    p = _hubaudit("probe-adapter", str(minilm.clean.path), "--base-model", minilm.base, "--battery", "nope")
    assert p.returncode == 2 and "unknown battery" in p.stderr


def test_escalate_and_probe_commands(minilm, tmp_path):
    db = f"sqlite:///{tmp_path / 'h.db'}"
    base = "sentence-transformers/all-MiniLM-L6-v2"
    assert _hubaudit("ingest", str(minilm.poisoned.path), "--base", base, "--db", db).returncode == 0
    from hubaudit.store import Store
    from tests.probe.test_queue import _flag

    with Store.open(db) as store:
        _flag(store, base, [(r.revision_id, 1.0) for r in store.audit_rows(base)])
    p = _hubaudit("escalate", "--base", base, "--db", db)
    assert p.returncode == 0 and json.loads(p.stdout)["queued"] == 1, p.stderr
    p = _hubaudit("probe", "--base", base, "--db", db, "--base-model-path", minilm.base, "--prompts", minilm.prompts_file,
                  "--target-label", "0", "--format", "json")
    assert p.returncode == 0, p.stderr
    s = json.loads(p.stdout)
    assert (s["probed"], s["flagged"]) == (1, 1) and s["results"][0]["flagged"] is True
