"""Reader details: content hash on both hashing paths, config beside a bare file, symlink policy."""

from __future__ import annotations

import hashlib
import os

import numpy as np
import pytest

from hubaudit.stats import scan_path
from hubaudit.stats.reader import BACKGROUND_HASH_BYTES
from tests.stats._st import write_arrays, write_config

A = "base_model.model.model.layers.{}.mlp.up_proj.lora_A.weight"
B = "base_model.model.model.layers.{}.mlp.up_proj.lora_B.weight"


@pytest.mark.parametrize("big", [False, True], ids=["inline-hash", "background-hash"])
def test_content_sha256_is_the_file_hash(tmp_path, big):
    rng = np.random.default_rng(0)
    d_in = (BACKGROUND_HASH_BYTES // (2 * 8 * 4) + 1024) if big else 64
    tensors = {}
    for i in range(2):
        tensors[A.format(i)] = rng.normal(size=(8, d_in)).astype(np.float32)
        tensors[B.format(i)] = rng.normal(size=(32, 8)).astype(np.float32)
    p = tmp_path / "adapter_model.safetensors"
    write_arrays(p, tensors)
    write_config(tmp_path, r=8, lora_alpha=16)
    assert (p.stat().st_size >= BACKGROUND_HASH_BYTES) == big
    res = scan_path(tmp_path)
    assert res.status == "ok", res.error
    assert res.content_sha256 == hashlib.sha256(p.read_bytes()).hexdigest()
    assert res.file_bytes == p.stat().st_size
    assert res.config_sha256 == hashlib.sha256((tmp_path / "adapter_config.json").read_bytes()).hexdigest()
    assert scan_path(tmp_path, hash_content=False).content_sha256 is None


def test_bare_file_without_config_assumes_unit_scaling(tmp_path):
    rng = np.random.default_rng(1)
    p = tmp_path / "weights.safetensors"
    write_arrays(p, {A.format(0): rng.normal(size=(4, 8)), B.format(0): rng.normal(size=(8, 4))})
    res = scan_path(p)
    assert res.status == "ok" and res.modules[0].scaling == 1.0
    assert any("scaling assumed 1" in w for w in res.warnings)
    assert res.rank == 4 and res.peft_type is None


def test_symlink_allowed_only_under_a_trusted_root(tmp_path):
    rng = np.random.default_rng(2)
    blobs, snap = tmp_path / "blobs", tmp_path / "snapshot"
    blobs.mkdir()
    snap.mkdir()
    write_arrays(blobs / "abc123", {A.format(0): rng.normal(size=(4, 8)), B.format(0): rng.normal(size=(8, 4))})
    os.symlink(blobs / "abc123", snap / "adapter_model.safetensors")
    write_config(snap, r=4, lora_alpha=4)
    refused = scan_path(snap)
    assert refused.status == "error" and "symlink" in refused.error
    ok = scan_path(snap, symlink_roots=[blobs])  # e.g. a Hugging Face cache's blobs/ directory
    assert ok.status == "ok", ok.error


def test_config_rank_mismatch_is_a_warning_and_shape_wins(tmp_path):
    rng = np.random.default_rng(3)
    write_arrays(tmp_path / "adapter_model.safetensors",
                 {A.format(0): rng.normal(size=(4, 8)), B.format(0): rng.normal(size=(8, 4))})  # fmt: skip
    write_config(tmp_path, r=16, lora_alpha=32)
    res = scan_path(tmp_path)
    assert res.status == "ok" and res.modules[0].rank == 4
    assert res.modules[0].scaling == pytest.approx(32 / 4)
    assert any("differs from the config" in w for w in res.warnings)


def test_allow_pickle_without_torch_is_a_run_level_error(monkeypatch):
    import importlib.util

    from hubaudit.errors import MissingExtraError
    from hubaudit.stats import require_torch

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real(name, *a))
    with pytest.raises(MissingExtraError) as exc:
        require_torch()
    assert exc.value.exit_code == 3 and "probe" in (exc.value.hint or "")


@pytest.mark.parametrize("dtype", ["F32", "BF16"])
def test_tensors_larger_than_the_block_limit_are_reduced_in_blocks(tmp_path, dtype):
    """A (r, n) and B (n, r) above LARGE_TENSOR_BYTES take the blockwise path; same numbers."""
    import math

    from hubaudit.stats.reader import LARGE_TENSOR_BYTES

    rng = np.random.default_rng(4)
    n = LARGE_TENSOR_BYTES // (4 * 2) + 4099  # > the limit at 2 bytes/value, odd block remainder
    emb = "base_model.model.model.embed_tokens.lora_embedding_{}"
    tensors = {
        A.format(0): rng.normal(size=(4, n)).astype(np.float32),  # lora_A (r, d_in), huge d_in
        B.format(0): rng.normal(size=(16, 4)).astype(np.float32),
        emb.format("A"): rng.normal(size=(4, 64)).astype(np.float32),
        emb.format("B"): rng.normal(size=(n, 4)).astype(np.float32),  # tall B
    }
    p = tmp_path / "adapter_model.safetensors"
    stored = write_arrays(p, tensors, dtype)
    write_config(tmp_path, r=4, lora_alpha=4)
    res = scan_path(tmp_path)
    assert res.status == "ok", res.error
    assert res.content_sha256 == hashlib.sha256(p.read_bytes()).hexdigest()
    got = {m.name: m.frob_norm for m in res.modules}
    a, b = stored[A.format(0)], stored[B.format(0)]
    assert got["model.layers.0.mlp.up_proj"] == pytest.approx(np.linalg.norm(b @ a) / math.sqrt(a.shape[1] * 16), rel=1e-9)
    ea, eb = stored[emb.format("A")], stored[emb.format("B")]
    # ‖BA‖² = tr(G_B G_A) without a (n × 64) product
    ref = math.sqrt(np.sum((eb.T @ eb) * (ea @ ea.T))) / math.sqrt(n * 64)
    assert got["model.embed_tokens"] == pytest.approx(ref, rel=1e-9)
