"""Crawl fixtures: a loopback Hub and an in-process CLI runner (real client, real SQLite)."""

from __future__ import annotations

import os
from dataclasses import dataclass

import pytest

from hubaudit.store import Store
from tests._cli import run_cli
from tests.fakehub import FakeHub

BASE = "Qwen/Qwen2.5-1.5B"


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture()
def hub(monkeypatch):
    with FakeHub(page_size=5) as h:
        monkeypatch.setenv("HF_ENDPOINT", h.url)
        # The canonical base itself is on the Hub (provenance compares weight hashes with it).
        h.add_repo(BASE, {"model.safetensors": b"canonical base weights", "config.json": b"{}"}, tags=["qwen2"])
        yield h


@pytest.fixture()
def cli():
    """Run ``hubaudit ARGS`` in-process through the real entry point (tests/_cli.py: error table, exit
    codes); ``env`` holds for that one command."""

    def run(*args: str, env: dict[str, str] | None = None) -> Result:
        r = run_cli(*args, env=env)
        return Result(r.returncode, r.stdout, r.stderr)

    return run


def crawl_args(hub: FakeHub, *extra: str, base: str = BASE) -> tuple[str, ...]:
    return ("crawl", "--base", base, "--format", "json", "--backoff", "0.01", *extra)


@pytest.fixture()
def store():
    from hubaudit.settings import Settings

    def open_store() -> Store:
        return Store.open(Settings.from_env(os.environ).db_url, create=True)

    return open_store


def rows_by_repo(store_factory, base: str = BASE) -> dict:
    with store_factory() as s:
        rows = s.audit_rows(base)
    out = {}
    for r in rows:
        assert r.repo_id not in out, f"duplicate audit row for {r.repo_id}"
        out[r.repo_id] = r
    return out
