"""`hubaudit nightly` end to end against the loopback Hub: SIGKILL mid-run, rerun, exports correct.

The killed run is a real process; the other runs go in-process through the console script's entry
point (tests/_cli.py)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hubaudit.store import Store
from tests._cli import run_cli
from tests.crawl.test_kill import _revisions  # one reader of the raw revisions table for both kill tests
from tests.fakehub import FakeHub, populate

BASE = "acme/tiny-base"


def _config(tmp: Path, export_dir: Path, **base_opts: object) -> Path:
    lines = [f'export_dir = "{export_dir}"', "retention_days = 7", "", "[defaults]", "workers = 2", "min_n = 10", "",
             "[[base]]", f'id = "{BASE}"']
    lines += [f"{k} = {json.dumps(v)}" for k, v in base_opts.items()]
    path = tmp / "config.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture()
def hub(monkeypatch):
    with FakeHub(page_size=10) as h:
        monkeypatch.setenv("HF_ENDPOINT", h.url)
        yield h


def _args(config: Path) -> list[str]:
    return ["nightly", "--config", str(config), "--format", "json"]


def _cmd(config: Path) -> list[str]:
    return [sys.executable, "-m", "hubaudit", *_args(config)]


@pytest.mark.slow  # a real process killed mid-crawl
def test_nightly_killed_midway_resumes_and_exports(hub, tmp_path):
    clean = populate(hub, BASE, 24, rank=4)
    # Two adapters whose lora_alpha is 12x the population's: a real weight-statistic outlier (not
    # a backdoor), so the flagged lists have something to carry.
    outliers = populate(hub, BASE, 2, prefix="odd", seed0=500, rank=4, alpha=96)
    pickle_only = populate(hub, BASE, 1, prefix="old", seed0=900, fmt="pickle")
    everything = clean + outliers + pickle_only
    export_dir = tmp_path / "exports"
    config = _config(tmp_path, export_dir)
    db = Path(os.environ["HUBAUDIT_HOME"]) / "hubaudit.db"

    hub.latency = 0.1  # slow enough that the kill lands mid-crawl
    proc = subprocess.Popen(_cmd(config), env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while len(_revisions(db)) < 4 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert proc.poll() is None, "the nightly run finished before it could be killed"
        proc.kill()
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    before = _revisions(db)
    assert 4 <= len(before) < len(everything)
    assert not (export_dir / "latest").exists()  # nothing half-published

    hub.latency = 0.0
    hub.reset_log()
    done = run_cli(*_args(config))
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["exit_code"] == 0 and summary["hub_error"] is None
    (outcome,) = summary["bases"]
    assert outcome["crawl"]["unchanged"] == len({r for r, _ in before})  # finished work not fetched again
    assert outcome["crawl"]["new"] == len(everything) - outcome["crawl"]["unchanged"]
    assert outcome["calibration"]["calibrated"] is True
    assert outcome["probe"]["status"] == "not_configured"

    after = _revisions(db)
    assert sorted(after) == sorted({(i, hub.repos[i].head) for i in everything})  # one row each, none lost

    with Store.open(f"sqlite:///{db}") as store:
        rows = {r.repo_id: r for r in store.audit_rows(BASE)}
        queued = store.probe_jobs(BASE, status="queued")
    flagged = {repo for repo, r in rows.items() if r.flagged}
    assert set(outliers) <= flagged
    assert rows[pickle_only[0]].status == "unsupported"
    # every scored revision is escalated (the weight-flagged ones first), waiting for an executor
    scored = {repo for repo, r in rows.items() if r.status == "scored" and not r.removed}
    assert {j.repo_id for j in queued} == scored and flagged < scored
    assert {j.repo_id for j in queued[: len(flagged)]} == flagged
    assert outcome["probe_coverage"] == {"probed": 0, "not_probed": len(scored)}

    latest = export_dir / "latest"
    assert latest.is_symlink()
    base_dir = latest / BASE.replace("/", "__")
    with open(base_dir / "flagged.csv", newline="") as f:
        exported = {row["repo_id"]: row for row in csv.DictReader(f)}
    assert set(exported) == flagged
    for repo, row in exported.items():
        assert row["sha"] == rows[repo].sha and row["base"] == BASE
    sarif = json.loads((base_dir / "report.sarif").read_text())
    assert sarif["version"] == "2.1.0"
    assert {r["ruleId"] for r in sarif["runs"][0]["results"]} >= {"HA001", "HA003"}
    assert json.loads((base_dir / "flagged.json").read_text())["rows"]
    dated = Path(summary["dated_dir"])
    assert (dated / "summary.json").is_file() and (dated / BASE.replace("/", "__") / "flagged.csv").is_file()

    # A third run with nothing changed costs only listing pages and leaves the store as it was.
    hub.reset_log()
    again = run_cli(*_args(config))
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["bases"][0]["crawl"]["new"] == 0
    assert {r.endpoint for r in hub.requests} <= {"list"}
    assert sorted(_revisions(db)) == sorted(after)


@pytest.mark.slow  # waits out the Hub client's retries against a closed port
def test_nightly_hub_down_exits_4_and_still_exports(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # discard port: connection refused
    config = _config(tmp_path, tmp_path / "exports")
    r = run_cli(*_args(config), "--timeout", "2")
    assert r.returncode == 4, r.stderr
    assert "Traceback" not in r.stderr
    summary = json.loads(r.stdout)
    assert summary["hub_error"]
    assert (tmp_path / "exports" / "latest" / BASE.replace("/", "__") / "flagged.csv").is_file()


def test_nightly_config_errors_are_one_line(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[[base]]\nid = 'x/y'\nexecutor = 'gpu-farm'\n")
    r = run_cli("nightly", "--config", str(bad))
    assert r.returncode == 3
    assert "executor must be one of" in r.stderr and "Traceback" not in r.stderr
    missing = run_cli("nightly", "--config", str(tmp_path / "nope.toml"))
    assert missing.returncode == 3 and "no configuration file" in missing.stderr


def test_second_invocation_while_one_runs_exits_0_at_once(tmp_path):
    import fcntl

    from hubaudit.settings import Settings

    home = Settings.from_env(os.environ).home
    home.mkdir(parents=True, exist_ok=True)
    config = _config(tmp_path, tmp_path / "exports")
    with open(home / "nightly.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        t0 = time.monotonic()
        r = run_cli(*_args(config))
        elapsed = time.monotonic() - t0
    assert r.returncode == 0 and "holds" in r.stderr and r.stdout == ""
    assert elapsed < 60  # returned without crawling (generous bound; no crawl can happen without a Hub)
