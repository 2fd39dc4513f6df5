"""First contact offline: the crawl says which endpoint it cannot reach, and what it is doing meanwhile."""

from __future__ import annotations

import socket

from typer.testing import CliRunner

from hubaudit.cli.app import app
from hubaudit.cli.main import _register
from hubaudit.errors import HubUnavailableError
from hubaudit.httpclient import Failure, RetryPolicy, call_with_retry, retry_observer


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again on exit: connecting is refused


def test_every_backoff_wait_is_reported_to_the_observer():
    seen: list[tuple[str, int, int, float]] = []
    calls = {"n": 0}

    def flaky() -> str:
        calls["n"] += 1
        if calls["n"] < 3:
            raise ConnectionError("connection reset")
        return "ok"

    with retry_observer(lambda f, attempt, most, delay: seen.append((f.kind, attempt, most, delay))):
        assert call_with_retry(flaky, RetryPolicy(max_retries=4, base_delay=0.01), sleep=lambda _s: None) == "ok"
    assert [(k, a, m) for k, a, m, _ in seen] == [("transient", 1, 4), ("transient", 2, 4)]
    assert all(d > 0 for *_, d in seen)
    # outside the block nobody is told
    calls["n"] = 0
    call_with_retry(flaky, RetryPolicy(max_retries=4, base_delay=0.01), sleep=lambda _s: None)
    assert len(seen) == 2


def test_offline_crawl_names_the_endpoint_and_what_to_do(tmp_path, monkeypatch):
    endpoint = f"http://127.0.0.1:{_closed_port()}"
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    _register()
    result = CliRunner().invoke(app, ["crawl", "--base", "Qwen/Qwen2.5-1.5B", "--max-retries", "1", "--backoff", "0",
                                      "--db", f"sqlite:///{tmp_path}/a.db"])
    exc = result.exception  # CliRunner bypasses main(), which maps the error to its exit code
    assert isinstance(exc, HubUnavailableError) and exc.exit_code == 4, result.output
    assert f"the Hub at {endpoint} is unreachable" in str(exc)
    assert "HF_ENDPOINT" in exc.hint and "ingest" in exc.hint


def test_retry_line_reads_as_words(monkeypatch):
    from hubaudit.cli.crawl import _Bar

    bar = _Bar(("Qwen/Qwen2.5-1.5B",), "http://127.0.0.1:9")
    descriptions = []
    monkeypatch.setattr(bar._p, "update", lambda _task, **kw: descriptions.append(kw.get("description")))
    bar.retrying(Failure("unreachable", "unreachable", "refused"), 1, 5, 0.5)
    bar.retrying(Failure("transient", "http_503", "503"), 2, 5, 1.25)
    assert descriptions == ["cannot connect: backing off 0.5s, retry 1/5",
                            "transient (http 503): backing off 1.2s, retry 2/5"]


def test_offline_check_names_the_endpoint_and_the_local_way(tmp_path):
    # A gate has no "next run": the hint says how to check a local copy instead, and nothing passes.
    from hubaudit.store import Store
    from tests._cli import run_cli

    url = f"sqlite:///{tmp_path}/a.db"
    Store.open(url, create=True).close()  # a store exists; the adapter is not in it: check asks the Hub
    endpoint = f"http://127.0.0.1:{_closed_port()}"
    p = run_cli("check", "some-org/some-lora", "--base", "Qwen/Qwen2.5-1.5B", "--db", url,
                env={"HF_ENDPOINT": endpoint})
    assert p.returncode == 4, p.stderr
    lines = p.stderr.strip().splitlines()
    assert lines[0].startswith(f"Error: the Hub at {endpoint} is unreachable"), lines
    assert "hubaudit check PATH" in lines[1] and "resumes" not in lines[1]
    assert p.stdout == ""  # no verdict printed, no PASS
