"""The Python API mirrors the CLI: hubaudit.scan, hubaudit.Store, hubaudit.ingest, hubaudit.calibrate_base."""

from __future__ import annotations

import subprocess
import sys

import hubaudit
from tests.store.adapters import write_lora


def test_python_api_end_to_end(tmp_path):
    paths = [write_lora(tmp_path / f"a{i}", seed=i) for i in range(3)]
    result = hubaudit.scan(paths[0])
    assert result.status == "ok" and result.stratum == "lora|r4|query,value"
    with hubaudit.Store.open(f"sqlite:///{tmp_path / 'api.db'}", create=True) as store:
        summary = hubaudit.ingest(store, paths, "org/base")
        assert summary.all_scored
        cal = hubaudit.calibrate_base(store, "org/base", min_n=3)
        assert cal.verdicts["not_calibrated"] == 0 and cal.version == 1
        assert {r.flagged for r in store.audit_rows("org/base")} <= {True, False}


def test_default_store_uses_settings(tmp_path, monkeypatch):
    from hubaudit.settings import Settings

    monkeypatch.setenv("HUBAUDIT_HOME", str(tmp_path / "home"))
    # the store takes the URL the caller resolved once (flag > env > config file > default)
    with hubaudit.Store.open(Settings.resolve().db_url, create=True) as store:
        assert store.url == f"sqlite:///{tmp_path / 'home' / 'hubaudit.db'}"


def test_import_is_lazy():
    code = "import sys, hubaudit; assert 'sqlalchemy' not in sys.modules and 'numpy' not in sys.modules; hubaudit.Store"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0
