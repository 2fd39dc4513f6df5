"""Session-wide isolation (no real Hub, no real token, temp homes) and a migrated SQLite database
copied per test (``migrated_sqlite``). Area fixtures live in tests/<area>/conftest.py; CLI commands
run in-process through tests/_cli.py."""

from __future__ import annotations

import os

# huggingface_hub reads these at import time (huggingface_hub/constants.py), so set them before any test imports it.
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("HF_HUB_DISABLE_XET", "1")
os.environ.pop("HF_TOKEN", None)
os.environ.pop("HUGGING_FACE_HUB_TOKEN", None)
os.environ.pop("HUBAUDIT_DB_URL", None)

import shutil
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch):
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HUBAUDIT_HOME", str(home / "hubaudit"))
    monkeypatch.setenv("HF_HOME", str(home / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(home / "hf" / "hub"))
    monkeypatch.setenv("XDG_DATA_HOME", str(home / "data"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / "config"))
    monkeypatch.delenv("HUBAUDIT_DB_URL", raising=False)
    monkeypatch.delenv("HUBAUDIT_CONFIG", raising=False)
    # No hubaudit module writes the process environment (tests/test_environment.py): training and
    # probing pass local_files_only=True instead of switching huggingface_hub to offline mode.
    yield


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory) -> Path:
    """A SQLite hubaudit database upgraded to head by the real migrations, once per session."""
    from hubaudit.store import Store

    path = tmp_path_factory.mktemp("template-db") / "hubaudit.db"
    Store.open(f"sqlite:///{path}", create=True).close()
    # Closing the last connection checkpoints the WAL: the one file is the whole database.
    assert sorted(p.name for p in path.parent.iterdir()) == ["hubaudit.db"]
    return path


@pytest.fixture()
def migrated_sqlite(_sqlite_template):
    """``migrated_sqlite(path) -> url``: a copy of the session's migrated database at ``path``.

    For tests whose subject is not the migration itself: the file is byte for byte what
    ``Store.open(url, create=True)`` makes of an empty file, without running Alembic again (about
    0.5 s a database). Tests of first runs, of ``db upgrade`` and of the schema gate create their own.
    """

    def make(path: Path) -> str:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(_sqlite_template, path)
        return f"sqlite:///{path}"

    return make

