"""Injected Hub faults end as recorded outcomes (per adapter) or exit 4 (run level), never a crash."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.crawl.conftest import BASE, crawl_args, rows_by_repo
from tests.fakehub import Fault, populate

DOWNLOAD_PATH = ("--whole-file-kb", "0")  # bodies streamed by their own GET, as for real-size adapters


@pytest.mark.parametrize(
    ("fault", "args"),
    [
        (Fault("status", endpoint="info", status=429, reset=0, times=2), ()),  # model_info: our retry honours RateLimit
        (Fault("status", endpoint="info", status=429, reset=0, retry_after_header=True, times=1), ()),
        (Fault("status", endpoint="info", status=500, times=2), ()),
        (Fault("status", endpoint="info", status=503, times=3), ()),
        (Fault("reset", endpoint="info", times=1), ()),
        (Fault("status", endpoint="resolve", method="GET", status=502, times=2), ()),  # one-GET small-file path
        (Fault("status", endpoint="resolve", method="GET", status=429, reset=0, times=1), ()),
        (Fault("reset", endpoint="resolve", method="GET", times=2), ()),
        (Fault("truncate", endpoint="resolve", method="GET", times=2), ()),
        (Fault("status", endpoint="resolve", method="GET", ranged=True, status=502, times=2), DOWNLOAD_PATH),  # header read
        (Fault("truncate", endpoint="resolve", method="GET", ranged=True, times=1), DOWNLOAD_PATH),
        (Fault("status", endpoint="resolve", method="GET", ranged=False, status=429, reset=0, times=2), DOWNLOAD_PATH),
        (Fault("status", endpoint="resolve", method="GET", ranged=False, status=500, times=2), DOWNLOAD_PATH),  # body GET: our retry
        (Fault("reset", endpoint="resolve", method="GET", ranged=False, times=2), DOWNLOAD_PATH),
        (Fault("truncate", endpoint="resolve", method="GET", ranged=False, times=3), DOWNLOAD_PATH),
    ],
    ids=lambda v: f"{v.kind}-{v.endpoint}-{v.method}-{v.ranged}-{v.status}-{v.times}" if isinstance(v, Fault) else ("download" if v else "small"),
)
def test_transient_faults_are_retried_until_scored(hub, cli, store, fault, args):
    ids = populate(hub, BASE, 3)
    fault.repo = ids[1]
    hub.add_fault(fault)
    res = cli(*crawl_args(hub, *args))
    assert res.code == 0, res.err
    assert fault.times == 0  # the fault really fired
    rows = rows_by_repo(store)
    assert [rows[i].status for i in ids] == ["scored"] * 3


def test_listing_429_is_honoured_by_the_client(hub, cli):
    populate(hub, BASE, 7)
    hub.add_fault(Fault("status", endpoint="list", status=429, reset=0, times=1))
    res = cli(*crawl_args(hub))
    assert res.code == 0 and json.loads(res.out)["scored"] == 7


def test_persistent_failure_is_recorded_as_retry_and_finished_next_run(hub, cli, store):
    ids = populate(hub, BASE, 3)
    hub.add_fault(Fault("truncate", endpoint="resolve", repo=ids[0], method="GET", ranged=False, times=None))
    res = cli(*crawl_args(hub, "--max-retries", "1", *DOWNLOAD_PATH))
    assert res.code == 0, res.err
    row = rows_by_repo(store)[ids[0]]
    assert row.status == "retry" and row.reason in ("truncated", "connection_error") and row.error
    hub.clear_faults()
    hub.reset_log()
    summary = json.loads(cli(*crawl_args(hub)).out)
    assert summary["new"] == 1 and summary["scored"] == 1  # "retry" is not final
    assert rows_by_repo(store)[ids[0]].status == "scored"


def test_timeout_on_a_slow_repo_is_a_recorded_outcome(hub, cli, store):
    ids = populate(hub, BASE, 2)
    hub.add_fault(Fault("latency", endpoint="info", repo=ids[1], delay=2.0, times=None))
    res = cli(*crawl_args(hub, "--timeout", "0.3", "--max-retries", "1"))
    assert res.code == 0, res.err
    rows = rows_by_repo(store)
    assert rows[ids[0]].status == "scored"
    assert (rows[ids[1]].status, rows[ids[1]].reason) == ("retry", "timeout")


def test_rate_limit_beyond_the_budget_stops_the_run_with_exit_4(hub, cli, store):
    ids = populate(hub, BASE, 6)
    hub.add_fault(Fault("status", endpoint="info", repo=ids[3], status=429, reset=0, times=None))
    res = cli(*crawl_args(hub, "--max-retries", "2", "--workers", "1"))
    assert res.code == 4
    assert res.err.startswith("Error: ") and "rate" in res.err.lower() and "Traceback" not in res.err
    assert res.out == ""
    rows = rows_by_repo(store)
    assert ids[3] not in rows  # never judged, so not recorded: the next run retries it
    assert {rows[i].status for i in ids[:3]} == {"scored"}  # finished work is committed
    hub.clear_faults()
    res = cli(*crawl_args(hub))
    assert res.code == 0
    assert set(rows_by_repo(store)) == set(ids)


def test_rate_limit_reset_longer_than_we_wait_is_beyond_the_budget(hub, cli):
    ids = populate(hub, BASE, 1)
    hub.add_fault(Fault("status", endpoint="info", repo=ids[0], status=429, reset=3600, times=None))
    res = cli(*crawl_args(hub))
    assert res.code == 4 and "rate" in res.err.lower()


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_hub_unreachable_exits_4_with_one_line(cli, monkeypatch):
    import huggingface_hub.utils._http as hf_http

    monkeypatch.setattr(hf_http, "time", SimpleNamespace(sleep=lambda s: None))  # the client's own listing backoff (23 s)
    endpoint = f"http://127.0.0.1:{_closed_port()}"
    res = cli(*crawl_args(None), env={"HF_ENDPOINT": endpoint})
    assert res.code == 4
    lines = res.err.strip().splitlines()
    assert lines[0].startswith(f"Error: the Hub at {endpoint} is unreachable: listing failed"), lines
    assert lines[1].startswith("Hint:") and len(lines) == 2


def test_rejected_token_exits_4(hub, cli):
    populate(hub, BASE, 2)
    hub.accepted_tokens = {"the-good-one"}
    res = cli(*crawl_args(hub), env={"HF_TOKEN": "wrong-token"})
    assert res.code == 4 and "token" in res.err.lower()
    assert "wrong-token" not in res.err


def test_token_is_sent_but_never_stored_or_printed(hub, cli):
    secret = "secret-xyz"
    ids = populate(hub, BASE, 3)
    hub.add_adapter("g/gated", BASE, seed=40, gated="manual")
    hub.gated_access_tokens = {secret}
    hub.accepted_tokens = {secret}
    hub.add_fault(Fault("status", endpoint="info", repo=ids[0], status=500, times=1))
    res = cli(*crawl_args(hub, "--format", "json"), env={"HF_TOKEN": secret})
    assert res.code == 0, res.err
    assert json.loads(res.out)["scored"] == 4  # the gated repo is downloadable with the approved token
    assert {r.authorization for r in hub.requests} == {f"Bearer {secret}"}
    assert secret not in res.out + res.err
    home = Path(os.environ["HUBAUDIT_HOME"])
    files = [p for p in home.rglob("*") if p.is_file()]
    assert any(p.name.startswith("hubaudit.db") for p in files)
    for p in files:
        assert secret.encode() not in p.read_bytes(), p


def test_a_hub_failing_every_adapter_trips_the_breaker(hub, cli, store):
    ids = populate(hub, BASE, 30)
    hub.add_fault(Fault("status", endpoint="info", status=503, times=None))
    res = cli(*crawl_args(hub, "--max-retries", "0", "--workers", "2"))
    assert res.code == 4 and "in a row" in res.err
    rows = rows_by_repo(store)
    assert 25 <= len(rows) < len(ids)  # stopped early instead of hammering a failing Hub
    assert {(r.status, r.reason) for r in rows.values()} == {("retry", "server_error")}
