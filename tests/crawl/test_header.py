"""The ranged header pre-check refuses oversize and unsafe safetensors layouts before any body download."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
from safetensors.numpy import save

from hubaudit.fetch import validate_header
from tests.crawl.conftest import BASE, crawl_args, rows_by_repo
from tests.fakehub import populate, random_adapter_files


def _st(header: dict, body: bytes) -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + body


def _entry(offsets, shape=(2, 2), dtype="F32"):
    return {"dtype": dtype, "shape": list(shape), "data_offsets": list(offsets)}


def test_valid_file_passes():
    data = save({"a": np.zeros((2, 3), np.float32), "b": np.ones(4, np.float16)}, metadata={"format": "pt"})
    (n,) = struct.unpack("<Q", data[:8])
    check = validate_header(data[8:8 + n], n, len(data))
    assert check.ok and check.n_tensors == 2


@pytest.mark.parametrize(
    ("raw", "size", "needle"),
    [
        (b'{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, "a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}', 8, "duplicate"),
        (json.dumps({"a": _entry((0, 16)), "b": _entry((32, 48))}).encode(), 48, "gap or overlap"),
        (json.dumps({"a": _entry((0, 16)), "b": _entry((8, 24))}).encode(), 24, "gap or overlap"),
        (json.dumps({"a": _entry((0, 12))}).encode(), 12, "does not match"),
        (json.dumps({"a": _entry((0, 16), dtype="F128")}).encode(), 16, "unknown dtype"),
        (json.dumps({"a": _entry((0, 16))}).encode(), 20, "not fully covered"),  # trailing bytes: a polyglot
        (json.dumps({"__metadata__": {"k": 1}}).encode(), 0, "__metadata__"),
        (b"[1, 2]", 0, "start with"),
        (b"\xff\xfe{}", 0, "invalid header"),
    ],
)
def test_unsafe_layouts_are_refused(raw, size, needle):
    check = validate_header(raw, len(raw), 8 + len(raw) + size)
    assert not check.ok and check.reason == "malformed" and needle in check.message


def _files_with_weights(weights: bytes) -> dict[str, bytes]:
    files = random_adapter_files(BASE, seed=5)
    files["adapter_model.safetensors"] = weights
    return files


def test_crawl_refuses_bad_headers_with_ranged_requests_only(hub, cli, store):
    good = populate(hub, BASE, 2)
    huge = struct.pack("<Q", 2**40) + b"{}" + bytes(64)
    hub.add_adapter("h/huge-header", BASE, seed=1)
    hub.update_repo("h/huge-header", _files_with_weights(huge))
    overlap = _st({"a": _entry((0, 16)), "b": _entry((8, 24))}, bytes(24))
    hub.add_adapter("h/overlap", BASE, seed=2)
    hub.update_repo("h/overlap", _files_with_weights(overlap))
    big_body = _st({"a": _entry((0, 400_000), shape=(100_000,))}, bytes(400_000))
    hub.add_adapter("h/big-file", BASE, seed=3)
    hub.update_repo("h/big-file", _files_with_weights(big_body))
    hub.reset_log()
    res = cli(*crawl_args(hub, "--max-file-mb", "0.25"))
    assert res.code == 0, res.err
    rows = rows_by_repo(store)
    assert (rows["h/huge-header"].status, rows["h/huge-header"].reason) == ("skipped", "oversize")
    assert (rows["h/overlap"].status, rows["h/overlap"].reason) == ("error", "malformed")
    assert (rows["h/big-file"].status, rows["h/big-file"].reason) == ("skipped", "oversize")
    assert all(rows[g].status == "scored" for g in good)
    for repo in ("h/huge-header", "h/overlap"):
        reqs = [r for r in hub.requests if r.repo == repo and r.endpoint == "resolve"]
        assert reqs and all(r.range is not None for r in reqs)  # only the ranged header read
    assert hub.count("resolve", repo="h/big-file") == 0  # refused from metadata alone
