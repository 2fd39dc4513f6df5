"""cron/hubaudit-nightly.sh: lock, schema upgrade first, logs with rotation, exit codes."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.fakehub import FakeHub, populate

REPO = Path(__file__).resolve().parents[2]
WRAPPER = REPO / "cron" / "hubaudit-nightly.sh"
BASE = "acme/tiny-base"

pytestmark = pytest.mark.skipif(shutil.which("flock") is None, reason="flock(1) is not installed")


def _env(tmp: Path, config: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        HUBAUDIT_BIN=str(Path(sys.executable).parent / "hubaudit"),
        HUBAUDIT_CONFIG=str(config),
        HUBAUDIT_STATE=str(tmp / "state"),
        **extra,
    )
    return env


def _config(tmp: Path) -> Path:
    path = tmp / "config.toml"
    path.write_text(f'export_dir = "{tmp / "exports"}"\n[defaults]\nmin_n = 5\n[[base]]\nid = "{BASE}"\n')
    return path


def test_lock_held_second_run_exits_0_at_once(tmp_path):
    env = _env(tmp_path, _config(tmp_path))
    lock = tmp_path / "state" / "nightly.lock"
    lock.parent.mkdir(parents=True)
    with open(lock, "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        t0 = time.monotonic()
        r = subprocess.run(["bash", str(WRAPPER)], env=env, capture_output=True, text=True, timeout=60)
        elapsed = time.monotonic() - t0
    assert r.returncode == 0
    assert "another run holds" in r.stderr
    assert not (tmp_path / "state" / "logs").exists() or not list((tmp_path / "state" / "logs").glob("nightly-*.log"))
    assert elapsed < 30  # it did not wait for the lock


@pytest.mark.slow  # three real runs of the script (db upgrade + nightly each), a second apart
def test_runs_upgrade_then_nightly_logs_and_rotates(tmp_path, monkeypatch):
    config = _config(tmp_path)
    with FakeHub(page_size=10) as hub:
        populate(hub, BASE, 6, rank=4)
        env = _env(tmp_path, config, HF_ENDPOINT=hub.url, HUBAUDIT_KEEP_LOGS="2")
        codes = []
        for _ in range(3):
            r = subprocess.run(["bash", str(WRAPPER)], env=env, capture_output=True, text=True, timeout=300)
            codes.append(r.returncode)
            time.sleep(1.1)  # log names carry the second
    assert codes == [0, 0, 0]
    logs = sorted((tmp_path / "state" / "logs").glob("nightly-*.log"))
    assert len(logs) == 2  # rotation kept the newest two
    text = (tmp_path / "state" / "logs" / "latest.log").read_text()
    assert "hubaudit nightly start" in text and "exit code 0" in text
    assert "already at" in text or "upgraded" in text.lower()  # `hubaudit db upgrade` ran first
    summary_line = [ln for ln in text.splitlines() if ln.startswith("{")][-1]
    assert json.loads(summary_line)["exit_code"] == 0
    assert (tmp_path / "exports" / "latest" / BASE.replace("/", "__") / "flagged.csv").is_file()


@pytest.mark.slow  # the real script waits out the Hub client's retries against a closed port
def test_hub_down_exit_code_is_passed_through(tmp_path):
    env = _env(tmp_path, _config(tmp_path), HF_ENDPOINT="http://127.0.0.1:9")
    r = subprocess.run(["bash", str(WRAPPER)], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 4
    assert "unreachable or rate-limited" in r.stderr
