"""SIGKILL mid-crawl, rerun: the work finishes with no duplicate and no lost row."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests._cli import run_cli
from tests.crawl.conftest import BASE, rows_by_repo
from tests.fakehub import populate

pytestmark = pytest.mark.slow


def _revisions(db: Path) -> list[tuple[str, str]]:
    if not db.exists():
        return []
    try:
        with sqlite3.connect(db, timeout=5) as conn:
            return list(conn.execute("SELECT repo_id, sha FROM revisions"))
    except sqlite3.OperationalError:
        return []  # schema not created yet


def test_sigkill_mid_run_then_rerun_finishes_without_duplicates(hub, store):
    ids = populate(hub, BASE, 14)
    hub.latency = 0.15  # slow Hub: the kill lands mid-run
    db = Path(os.environ["HUBAUDIT_HOME"]) / "hubaudit.db"
    cmd = [sys.executable, "-m", "hubaudit", "crawl", "--base", BASE, "--workers", "2", "--format", "json"]
    proc = subprocess.Popen(cmd, env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while len(_revisions(db)) < 3 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert proc.poll() is None, "the crawl finished before it could be killed"
        proc.kill()  # SIGKILL: no cleanup, no finally blocks
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    before = _revisions(db)
    assert 3 <= len(before) < len(ids)

    hub.latency = 0.0
    hub.reset_log()
    rerun = run_cli(*cmd[3:])  # the rerun in-process (tests/_cli.py): only the killed run needs a process
    assert rerun.returncode == 0, rerun.stderr
    summary = json.loads(rerun.stdout)
    assert summary["unchanged"] == len({r for r, _ in before})  # finished work is not fetched again
    assert summary["new"] == len(ids) - summary["unchanged"]
    after = _revisions(db)
    assert sorted(after) == sorted({(i, hub.repos[i].head) for i in ids})  # one row each, none lost
    assert {r.status for r in rows_by_repo(store).values()} == {"scored"}
    fetched = {r.repo for r in hub.requests if r.endpoint == "info"}
    assert fetched.isdisjoint({r for r, _ in before})
