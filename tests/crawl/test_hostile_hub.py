"""A hostile endpoint in HF_ENDPOINT (a mirror, proxy or attacker): every move ends in a recorded,
final or retryable outcome or exit 4, within bounded bytes and time, with nothing written outside
our folders and the token never sent anywhere but the endpoint."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from hubaudit.constants import ADAPTER_CONFIG, ADAPTER_SAFETENSORS
from tests.crawl.conftest import BASE, crawl_args, rows_by_repo
from tests.fakehub import FakeHub, Fault, populate

DOWNLOAD_PATH = ("--whole-file-kb", "0")  # the weights go through the streaming download, as real-size ones do
GIB = 1 << 30
TIMEOUT = 0.5  # --timeout of the time-bounded tests; "bounded" below is a small multiple of it
SECRET = "hf_secret-token-never-elsewhere"


@pytest.fixture()
def root(tmp_path, monkeypatch):
    """A tmp root holding our home (database and cache) and a sibling folder nothing may reach."""
    top = tmp_path / "root"
    (top / "outside").mkdir(parents=True)
    monkeypatch.setenv("HUBAUDIT_HOME", str(top / "hubaudit"))
    return top


def _escapes(root: Path, *targets: Path) -> list[str]:
    """Files in the test's tmp folder (``root`` and its parent) outside our home, plus any of
    ``targets`` that exist."""
    home = root / "hubaudit"
    stray = [str(p) for p in root.parent.rglob("*") if not p.is_dir() and home not in p.parents]
    return stray + [str(t) for t in targets if os.path.lexists(t)]


def _timed(cli, *args, env=None):
    start = time.monotonic()
    res = cli(*args, env=env)
    return res, time.monotonic() - start


# -- nothing from the Hub names a file -------------------------------------------------------

def test_listing_shas_that_are_paths_are_refused_and_write_nothing(hub, cli, store, root):
    ids = populate(hub, BASE, 3)
    target = root.parent / "abs-target"
    # From the task's snapshot folder, six levels up is the tmp root.
    hub.repos[ids[0]].listing_overrides = {"sha": "../../../../../../outside/sha-escape"}
    hub.repos[ids[1]].listing_overrides = {"sha": str(target)}
    res = cli(*crawl_args(hub))
    assert res.code == 0, res.err
    assert _escapes(root, target) == []
    rows = rows_by_repo(store)
    for repo_id in ids[:2]:
        assert (rows[repo_id].status, rows[repo_id].reason) == ("error", "hostile_metadata")
        assert len(rows[repo_id].error.splitlines()) == 1 and "sha" in rows[repo_id].error
        assert len(rows[repo_id].sha) <= 64  # a value we computed, not the server's string
    assert rows[ids[2]].status == "scored"
    assert hub.count("info", repo=ids[0]) == hub.count("resolve", repo=ids[0]) == 0  # refused before any request
    hub.reset_log()
    summary = json.loads(cli(*crawl_args(hub)).out)
    assert summary["new"] == 0 and summary["unchanged"] == 3  # final: never retried


@pytest.mark.parametrize("forged", ["0" * 40, "../../../../outside/info-sha", "ABCDEF" + "0" * 34])
def test_model_info_sha_other_than_the_pinned_one_is_refused(hub, cli, store, root, forged):
    ids = populate(hub, BASE, 2)
    hub.repos[ids[0]].info_overrides = {"sha": forged}
    res = cli(*crawl_args(hub))
    assert res.code == 0, res.err
    rows = rows_by_repo(store)
    assert (rows[ids[0]].status, rows[ids[0]].reason) == ("error", "hostile_metadata")
    assert rows[ids[1]].status == "scored"
    assert hub.count("resolve", repo=ids[0]) == 0 and _escapes(root) == []


@pytest.mark.parametrize("keep", [(), ("--keep",)], ids=["temp-cache", "kept-cache"])
def test_forged_etags_name_no_file(hub, cli, store, root, keep):
    ids = populate(hub, BASE, 2)
    # Six levels up from a blob folder of the HF cache layout is the tmp root (temp cache) or its parent (kept).
    escape = '"../../../../../../outside/etag-escape"'
    hub.add_fault(Fault("headers", endpoint="resolve", headers={"ETag": escape, "X-Linked-Etag": escape}, times=None))
    res = cli(*crawl_args(hub, *DOWNLOAD_PATH, *keep))
    assert res.code == 0, res.err
    assert _escapes(root) == []
    rows = rows_by_repo(store)
    assert {rows[i].status for i in ids} == {"scored"}  # the bytes were verified against the LFS sha256
    assert hub.count("resolve", method="HEAD") == 0  # no HEAD: nothing read from the ETag at all


def test_listed_repo_ids_that_are_not_hub_ids_are_refused(hub, cli, store, root):
    ids = populate(hub, BASE, 2)
    hub.repos[ids[0]].listing_overrides = {"id": "../../../outside/x"}
    res = cli(*crawl_args(hub))
    assert res.code == 0, res.err
    rows = rows_by_repo(store)
    bad = [r for r in rows.values() if r.reason == "hostile_metadata"]
    assert len(bad) == 1 and bad[0].status == "error" and "repo id" in bad[0].error
    assert rows[ids[1]].status == "scored" and _escapes(root) == []


# -- the token goes only to the endpoint -----------------------------------------------------

def test_next_page_on_another_origin_ends_the_listing_without_a_request(hub, cli, store):
    ids = populate(hub, BASE, 3)
    with FakeHub() as other:
        link = f'<{other.url}/api/models?cursor=steal>; rel="next"'
        hub.add_fault(Fault("headers", endpoint="list", headers={"Link": link}, times=None))
        res = cli(*crawl_args(hub), env={"HF_TOKEN": SECRET})
        assert other.requests == []
    assert res.code == 4
    assert res.err.startswith("Error: ") and "origin" in res.err and "Traceback" not in res.err
    assert SECRET not in res.err + res.out
    rows = rows_by_repo(store)
    assert {rows[i].status for i in ids} == {"scored"}  # the first page's repos were judged and recorded
    assert {r.authorization for r in hub.requests} == {f"Bearer {SECRET}"}


def test_a_redirect_to_a_cdn_carries_no_token(hub, cli, store):
    hub.cdn_redirect = True
    ids = populate(hub, BASE, 2)
    res = cli(*crawl_args(hub, *DOWNLOAD_PATH), env={"HF_TOKEN": SECRET})
    assert res.code == 0, res.err
    assert {rows_by_repo(store)[i].status for i in ids} == {"scored"}
    cdn = [r for r in hub.requests if r.endpoint == "cdn"]
    assert cdn and all(r.authorization is None for r in cdn)
    assert all(r.authorization == f"Bearer {SECRET}" for r in hub.requests if r.endpoint != "cdn")


def test_library_requests_with_our_token_never_leave_the_endpoint(hub):
    """The client factory's guard also covers requests huggingface_hub makes on its own."""
    from huggingface_hub import HfApi

    from hubaudit.httpclient import HubConfig, hub_client
    from hubaudit.hub import HubSource

    populate(hub, BASE, 1)
    with FakeHub() as other, hub_client(5.0):
        other.add_adapter("user0/lora-0", BASE, seed=0)
        HubSource(HubConfig(endpoint=hub.url, token=SECRET))  # the token now belongs to hub.url
        with pytest.raises(Exception, match="origin"):
            HfApi(endpoint=other.url, token=SECRET).model_info("user0/lora-0")
        assert other.requests == []
        assert HfApi(endpoint=other.url, token=False).model_info("user0/lora-0").id == "user0/lora-0"


# -- every network operation is bounded ------------------------------------------------------

def test_next_page_looping_back_ends_the_listing(hub, cli, store):
    ids = populate(hub, BASE, 3)
    first = f"{hub.url}/api/models?filter=base_model%3Aadapter%3A{BASE.replace('/', '%2F')}"
    hub.add_fault(Fault("headers", endpoint="list", headers={"Link": f'<{first}>; rel="next"'}, times=None))
    res, took = _timed(cli, *crawl_args(hub, "--timeout", str(TIMEOUT)))
    assert res.code == 4 and "Error: " in res.err and "repeat" in res.err
    assert hub.count("list") <= 3 and took < 20 * TIMEOUT
    assert {rows_by_repo(store)[i].status for i in ids} == {"scored"}


def test_pages_beyond_the_cap_end_the_listing():
    from hubaudit.errors import HubError
    from hubaudit.httpclient import HubConfig, hub_client
    from hubaudit.hub import HubSource

    with FakeHub(page_size=1) as hub, hub_client(5.0):
        populate(hub, BASE, 5)
        source = HubSource(HubConfig(endpoint=hub.url, max_pages=2))
        with pytest.raises(HubError, match="2 pages"):
            list(source.list_related(BASE))
        assert hub.count("list") == 2
        assert len(list(HubSource(HubConfig(endpoint=hub.url)).list_related(BASE))) == 5


# The child's own high-water mark, read from /proc at exit: rusage's ru_maxrss would also count
# the parent's pages (Linux carries the pre-exec address space's peak over a fork/vfork + exec,
# and this test process may hold a trained model by the time the test runs).
_HWM_WRAPPER = (
    "import atexit, os, runpy, sys\n"
    "def _hwm():\n"
    "    with open('/proc/self/status') as f:\n"
    "        kb = next(int(line.split()[1]) for line in f if line.startswith('VmHWM:'))\n"
    "    with open(os.environ['HUBAUDIT_TEST_HWM'], 'w') as f:\n"
    "        f.write(str(kb * 1024))\n"
    "atexit.register(_hwm)\n"
    "sys.argv = ['hubaudit', *sys.argv[1:]]\n"
    "runpy.run_module('hubaudit', run_name='__main__')\n"
)


def _crawl_subprocess(hub, *args: str) -> tuple[int, str, str, int]:
    """``hubaudit crawl`` in a child process: (exit code, stdout, stderr, the child's peak RSS in bytes)."""
    with tempfile.TemporaryDirectory() as tmp:
        hwm = Path(tmp, "hwm")
        env = {**os.environ, "HF_ENDPOINT": hub.url, "HUBAUDIT_TEST_HWM": str(hwm)}
        proc = subprocess.run([sys.executable, "-c", _HWM_WRAPPER, *crawl_args(hub, *args)], env=env,
                              capture_output=True, timeout=300)
        return proc.returncode, proc.stdout.decode(), proc.stderr.decode(), int(hwm.read_text())


def test_gzip_bomb_in_model_info_is_refused_within_bounded_memory(hub, store):
    ids = populate(hub, BASE, 2)
    hub.add_fault(Fault("gzip_bomb", endpoint="info", repo=ids[0], size=GIB, times=None))
    code, _, err, peak = _crawl_subprocess(hub)
    assert code == 0, err
    assert peak < 512 * 2**20, f"peak RSS {peak / 2**20:.0f} MiB"  # the bomb inflates to 1024 MiB
    rows = rows_by_repo(store)
    assert (rows[ids[0]].status, rows[ids[0]].reason) == ("error", "hostile_metadata")
    assert "MiB" in rows[ids[0]].error and rows[ids[1]].status == "scored"


def test_weights_body_larger_than_promised_stops_at_the_promise(hub, cli, store, root):
    ids = populate(hub, BASE, 2)
    hub.add_fault(Fault("oversize", endpoint="resolve", repo=ids[0], path=ADAPTER_SAFETENSORS, method="GET",
                        ranged=False, size=GIB, times=None))
    res, took = _timed(cli, *crawl_args(hub, *DOWNLOAD_PATH, "--timeout", str(TIMEOUT)))
    assert res.code == 0, res.err
    rows = rows_by_repo(store)
    assert (rows[ids[0]].status, rows[ids[0]].reason) == ("error", "hash_mismatch")
    assert rows[ids[1]].status == "scored"
    sent = [r.sent for r in hub.requests if r.endpoint == "resolve" and r.repo == ids[0] and r.range is None]
    assert sent and max(sent) < 64 * 2**20  # far from the 1 GiB offered: we hung up at the promised size
    assert _escapes(root) == [] and took < 20 * TIMEOUT


@pytest.mark.slow  # each run waits out real total deadlines (a multiple of TIMEOUT per attempt)
@pytest.mark.parametrize(("kind", "endpoint", "path"), [
    ("drip", "info", None),
    ("drip_headers", "info", None),
    ("drip", "resolve", ADAPTER_SAFETENSORS),
    ("drip_headers", "resolve", ADAPTER_CONFIG),
])
def test_a_dripping_server_costs_a_bounded_time_and_the_repo_gets_retry(hub, cli, store, kind, endpoint, path):
    ids = populate(hub, BASE, 2)
    # Each byte arrives well within --timeout, so only a total deadline ends the request.
    hub.add_fault(Fault(kind, endpoint=endpoint, repo=ids[0], path=path, method="GET", delay=TIMEOUT / 4, times=None))
    res, took = _timed(cli, *crawl_args(hub, *DOWNLOAD_PATH, "--timeout", str(TIMEOUT)))
    assert res.code == 0, res.err
    rows = rows_by_repo(store)
    assert (rows[ids[0]].status, rows[ids[0]].reason) == ("retry", "timeout") and rows[ids[0]].error
    assert rows[ids[1]].status == "scored"
    assert took < 30 * TIMEOUT


@pytest.mark.slow  # waits out real total deadlines of the listing and its retry
def test_a_dripping_listing_ends_the_run_with_exit_4(hub, cli):
    populate(hub, BASE, 2)
    hub.add_fault(Fault("drip", endpoint="list", delay=TIMEOUT / 4, times=None))
    res, took = _timed(cli, *crawl_args(hub, "--timeout", str(TIMEOUT), "--max-retries", "1"))
    assert res.code == 4 and "listing failed" in res.err
    assert took < 20 * TIMEOUT


def test_deep_json_in_model_info_is_a_final_error(hub, cli, store):
    ids = populate(hub, BASE, 2)
    hub.add_fault(Fault("deep_json", endpoint="info", repo=ids[0], size=100_000, times=None))
    res = cli(*crawl_args(hub))
    assert res.code == 0, res.err
    rows = rows_by_repo(store)
    assert (rows[ids[0]].status, rows[ids[0]].reason) == ("error", "hostile_metadata")
    assert hub.count("info", repo=ids[0]) == 1  # never retried
    hub.reset_log()
    assert json.loads(cli(*crawl_args(hub)).out)["new"] == 0 and hub.count("info") == 0


@pytest.mark.parametrize("fault", [Fault("gzip_bomb", endpoint="list", size=GIB, times=None),
                                   Fault("deep_json", endpoint="list", size=100_000, times=None)],
                         ids=["gzip-bomb", "deep-json"])
def test_a_listing_page_beyond_its_bounds_ends_the_run_with_exit_4(hub, cli, fault):
    populate(hub, BASE, 2)
    hub.add_fault(fault)
    res = cli(*crawl_args(hub))
    assert res.code == 4 and res.err.startswith("Error: listing refused") and "Traceback" not in res.err
    assert hub.count("list") == 1  # refused, never retried


def test_the_limits_are_set_from_the_command_line(hub, cli, store):
    """--max-api-mb and --max-pages reach the client: a model_info over --max-api-mb is a final
    error while the others are scored, and a 3-page listing with --max-pages 2 ends with exit 4."""
    ids = populate(hub, BASE, 3)
    hub.add_fault(Fault("gzip_bomb", endpoint="info", repo=ids[0], size=4 << 20, times=None))
    res = cli(*crawl_args(hub, "--max-api-mb", "1"))
    assert res.code == 0, res.err
    rows = rows_by_repo(store)
    assert (rows[ids[0]].status, rows[ids[0]].reason) == ("error", "hostile_metadata")
    assert "1 MiB cap" in rows[ids[0]].error
    assert {rows[i].status for i in ids[1:]} == {"scored"}
    hub.page_size = 1
    res = cli(*crawl_args(hub, "--max-pages", "2"))
    assert res.code == 4 and "2 pages" in res.err and "Traceback" not in res.err
