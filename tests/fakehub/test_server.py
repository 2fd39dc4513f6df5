"""The fake Hub speaks what the real huggingface_hub client needs."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from huggingface_hub import HfApi, hf_hub_download
from huggingface_hub import errors as hf_errors

from tests.fakehub import FakeHub, Fault, populate

BASE = "org/base-1b"


@pytest.fixture()
def hub():
    with FakeHub(page_size=3) as h:
        yield h


def _get(url: str, headers: dict | None = None):
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def test_listing_paginates_with_absolute_links_and_filters(hub):
    ids = populate(hub, BASE, 7)
    hub.add_adapter("other/x", "org/other-base", seed=50)
    api = HfApi(endpoint=hub.url, token=False)
    got = [m.id for m in api.list_models(filter=f"base_model:adapter:{BASE}", expand=["sha", "siblings"])]
    assert sorted(got) == sorted(ids)
    assert hub.count("list") == 3  # 7 items, page size 3
    status, headers, _ = _get(f"{hub.url}/api/models?filter=base_model:adapter:{BASE}&limit=2")
    assert status == 200 and headers["Link"].startswith(f"<{hub.url}/api/models?")


def test_listing_expand_returns_only_requested_fields(hub):
    populate(hub, BASE, 1)
    _, _, body = _get(f"{hub.url}/api/models?filter=peft&expand=sha&expand=gated")
    (item,) = json.loads(body)
    assert set(item) == {"_id", "id", "sha", "gated"}


def test_model_info_blobs_and_pinned_revision(hub):
    repo = hub.add_adapter("u/a", BASE, seed=1)
    first = repo.head
    second = hub.update_repo("u/a", {"adapter_config.json": b"{}"})
    api = HfApi(endpoint=hub.url, token=False)
    info = api.model_info("u/a", revision=first, files_metadata=True, securityStatus=True)
    assert info.sha == first and info.sha != second
    st = next(s for s in info.siblings if s.rfilename == "adapter_model.safetensors")
    assert st.lfs is not None and len(st.lfs.sha256) == 64 and st.size == st.lfs.size
    assert info.security_repo_status == {"scansDone": True, "filesWithIssues": []}
    assert api.model_info("u/a").sha == second


def test_resolve_range_and_errors(hub):
    repo = hub.add_adapter("u/a", BASE, seed=1)
    data = repo.files("main")["adapter_model.safetensors"].data
    url = f"{hub.url}/u/a/resolve/{repo.head}/adapter_model.safetensors"
    status, headers, body = _get(url, {"Range": "bytes=0-9"})
    assert status == 206 and body == data[:10] and headers["Content-Range"] == f"bytes 0-9/{len(data)}"
    assert headers["X-Repo-Commit"] == repo.head and headers["X-Linked-Size"] == str(len(data))
    assert _get(url, {"Range": f"bytes={len(data)}-"})[0] == 416
    assert _get(url, {"Range": "bytes=-4"})[2] == data[-4:]
    status, headers, _ = _get(f"{hub.url}/u/a/resolve/{repo.head}/missing.bin")
    assert status == 404 and headers["X-Error-Code"] == "EntryNotFound"
    assert _get(f"{hub.url}/u/a/resolve/{'f' * 40}/adapter_config.json")[1]["X-Error-Code"] == "RevisionNotFound"
    assert _get(f"{hub.url}/nobody/none/resolve/main/x")[1]["X-Error-Code"] == "RepoNotFound"


def test_client_maps_gated_deleted_and_downloads(hub, tmp_path):
    hub.add_adapter("g/gated", BASE, seed=2, gated="manual")
    hub.add_adapter("d/deleted", BASE, seed=3)
    hub.delete_repo("d/deleted")
    repo = hub.add_adapter("u/a", BASE, seed=1)
    with pytest.raises(hf_errors.GatedRepoError):
        hf_hub_download("g/gated", "adapter_config.json", revision="main", cache_dir=tmp_path, endpoint=hub.url, token=False)
    with pytest.raises(hf_errors.RepositoryNotFoundError):
        HfApi(endpoint=hub.url, token=False).model_info("d/deleted")
    path = hf_hub_download("u/a", "adapter_model.safetensors", revision=repo.head, cache_dir=tmp_path,
                           endpoint=hub.url, token=False)
    assert Path(path).read_bytes() == repo.files("main")["adapter_model.safetensors"].data


def test_faults_fire_the_requested_number_of_times(hub):
    hub.add_adapter("u/a", BASE, seed=1)
    hub.add_fault(Fault("status", endpoint="info", status=429, reset=7, times=1))
    status, headers, _ = _get(f"{hub.url}/api/models/u/a")
    assert status == 429 and headers["RateLimit"] == '"api";r=0;t=7'
    assert _get(f"{hub.url}/api/models/u/a")[0] == 200
    hub.add_fault(Fault("status", endpoint="info", status=429, reset=3, retry_after_header=True))
    assert _get(f"{hub.url}/api/models/u/a")[1]["Retry-After"] == "3"


def test_reset_mid_body_is_a_connection_error(hub):
    repo = hub.add_adapter("u/a", BASE, seed=1)
    hub.add_fault(Fault("reset", endpoint="resolve", method="GET"))
    host, port = hub.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(f"GET /u/a/resolve/{repo.head}/adapter_model.safetensors HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        with pytest.raises(ConnectionResetError):
            while s.recv(65536):
                pass


def test_invalid_token_is_rejected_and_logged(hub):
    populate(hub, BASE, 1)
    hub.accepted_tokens = {"good"}
    status, headers, _ = _get(f"{hub.url}/api/models", {"Authorization": "Bearer bad"})
    assert status == 401 and headers["X-Error-Message"] == "Invalid credentials in Authorization header"
    assert _get(f"{hub.url}/api/models", {"Authorization": "Bearer good"})[0] == 200
    assert [r.authorization for r in hub.requests] == ["Bearer bad", "Bearer good"]


def test_hostile_bodies_are_what_they_claim():
    import zlib

    from hubaudit.demo.fakehub.hostile import deep_json, gzip_bomb, zeros

    wire = b"".join(gzip_bomb(8 << 20))
    inflated = zlib.decompress(wire, 31)  # one valid gzip member, CRC and size trailer included
    assert len(inflated) == 8 << 20 and len(wire) < 64 * 1024 and json.loads(inflated)["id"] == "x"
    with pytest.raises(RecursionError):
        json.loads(deep_json("u/a", "0" * 40, 100_000))
    assert sum(map(len, zeros(3 << 20))) == 3 << 20


def test_hostile_faults_on_the_wire(hub):
    populate(hub, BASE, 1)
    link = '<http://elsewhere.invalid/api/models>; rel="next"'
    hub.add_fault(Fault("headers", endpoint="list", headers={"Link": link}))
    status, headers, _ = _get(f"{hub.url}/api/models")
    assert status == 200 and headers["Link"] == link
    hub.add_fault(Fault("oversize", endpoint="resolve", size=5 << 20))
    status, headers, body = _get(f"{hub.url}/user0/lora-0/resolve/main/adapter_config.json")
    assert status == 200 and int(headers["Content-Length"]) == len(body) == 5 << 20
    hub.add_fault(Fault("drip", endpoint="info", delay=0.001))
    status, _, body = _get(f"{hub.url}/api/models/user0/lora-0")
    assert status == 200 and json.loads(body)["id"] == "user0/lora-0"  # slow, but whole
    hub.repos["user0/lora-0"].listing_overrides = {"sha": "/etc/forged"}
    _, _, body = _get(f"{hub.url}/api/models?filter=peft&expand=sha")
    assert json.loads(body)[0]["sha"] == "/etc/forged"
    status, _, _ = _get(f"{hub.url}/user0/lora-0/resolve/%2Fetc%2Fforged/adapter_config.json")
    assert status == 200  # served like the head, as a hostile server would
