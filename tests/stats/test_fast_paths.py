"""The scanner's fast paths give the same numbers as the plain route, and reject what it rejects.

Blockwise Grams (odd block boundaries, every float dtype), the finite check on the Gram instead
of every value (a NaN/Inf in any block position), the Cholesky factor of G_A with its eigh
fallback, and the background sha256 thread (joined, never a hash of a prefix).
"""

from __future__ import annotations

import hashlib
import math
import os
import threading

import numpy as np
import pytest

from hubaudit.stats import scan_path
from hubaudit.stats._reject import Rejected
from hubaudit.stats.dtypes import storage_view
from hubaudit.stats.gram import BLOCK_ELEMENTS, _gram_factor, spectra_from_grams
from hubaudit.stats.hashing import BACKGROUND_HASH_BYTES, BackgroundHash
from hubaudit.stats.reader import _gram, _Scratch
from tests.stats._st import encode, write_arrays, write_config

A = "base_model.model.model.layers.{}.mlp.up_proj.lora_A.weight"
B = "base_model.model.model.layers.{}.mlp.up_proj.lora_B.weight"
DTYPES = ["F32", "F16", "BF16", "F64"]


def _stored(x: np.ndarray, dtype: str) -> tuple[np.ndarray, np.ndarray]:
    """(storage-typed view as the reader sees it, the float64 values it holds)."""
    raw, values = encode(x, dtype)
    return storage_view(raw, dtype).reshape(x.shape), values.reshape(x.shape)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cols", [True, False], ids=["A-cols", "B-rows"])
@pytest.mark.parametrize("r", [1, 3, 7])
def test_blockwise_gram_equals_the_full_gram_at_odd_block_boundaries(dtype, cols, r):
    step = BLOCK_ELEMENTS // r
    n = 2 * step + 17  # two full blocks and an odd remainder
    rng = np.random.default_rng(r)
    x = rng.normal(0, 0.05, (r, n) if cols else (n, r))
    stored, values = _stored(x, dtype)
    got = _gram(stored, dtype, cols, _Scratch())
    ref = values @ values.T if cols else values.T @ values
    assert got.dtype == np.float64 and got.shape == (r, r)
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12 * np.abs(ref).max())
    one = _gram(stored[:, :step] if cols else stored[:step], dtype, cols, _Scratch())  # one-block path
    ref1 = values[:, :step] @ values[:, :step].T if cols else values[:step].T @ values[:step]
    np.testing.assert_allclose(one, ref1, rtol=1e-12, atol=1e-12 * np.abs(ref1).max())


def _position(n: int, step: int, where: str) -> int:
    return {"first": 0, "block-end": step - 1, "block-start": step, "middle": step + step // 2, "last": n - 1}[where]


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("where", ["first", "block-end", "block-start", "middle", "last"])
@pytest.mark.parametrize("cols", [True, False], ids=["A-cols", "B-rows"])
def test_one_non_finite_value_anywhere_makes_the_gram_non_finite(bad, where, cols):
    """Why checking the r×r Gram replaces checking every value: its diagonal is a sum of squares."""
    r = 4
    step = BLOCK_ELEMENTS // r
    n = 2 * step + 5
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, (r, n) if cols else (n, r)).astype(np.float32)
    j = _position(n, step, where)
    if cols:
        x[2, j] = bad
    else:
        x[j, 2] = bad
    for dtype in ("F32", "BF16", "F16"):
        stored, _ = _stored(x, dtype)
        with np.errstate(invalid="ignore"):
            g = _gram(stored, dtype, cols, _Scratch())
        assert not np.isfinite(g[2, 2]), (dtype, where)


@pytest.mark.parametrize("dtype", ["F32", "BF16", "F16"])
def test_the_largest_finite_values_do_not_overflow_the_gram(dtype):
    """The converse: finite inputs give a finite Gram, even at the dtype's maximum."""
    top = {"F32": np.finfo(np.float32).max, "BF16": 3.3e38, "F16": np.finfo(np.float16).max}[dtype]
    x = np.full((3, BLOCK_ELEMENTS // 3 + 11), -top, dtype=np.float64)
    stored, _ = _stored(x, dtype)
    assert np.isfinite(_gram(stored, dtype, True, _Scratch())).all()
    assert np.isfinite(_gram(stored.T, dtype, False, _Scratch())).all()


@pytest.mark.parametrize("where", ["first", "last"])
@pytest.mark.parametrize("dtype", ["F32", "BF16"])
def test_a_file_with_one_nan_in_a_multi_block_tensor_is_rejected(tmp_path, where, dtype):
    r = 4
    step = BLOCK_ELEMENTS // r
    n = 2 * step + 3
    rng = np.random.default_rng(1)
    a = rng.normal(size=(r, n)).astype(np.float32)
    b = rng.normal(size=(n, r)).astype(np.float32)
    b[_position(n, step, where), 1] = np.nan
    write_arrays(tmp_path / "adapter_model.safetensors", {A.format(0): a, B.format(0): b}, dtype)
    write_config(tmp_path, r=r, lora_alpha=r)
    res = scan_path(tmp_path)
    assert res.status == "error" and "NaN or Inf" in (res.error or "")


def _materialized_sigma_sq(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """σ² of B A in float64, the r largest (the rest are zero)."""
    return np.linalg.svd(b @ a, compute_uv=False)[: a.shape[0]] ** 2


@pytest.mark.parametrize("case", ["full-rank", "zero-row", "rank-deficient", "all-zero"])
def test_spectra_with_and_without_a_cholesky_factor_match_the_svd(case):
    rng = np.random.default_rng(7)
    r, d_in, d_out = 6, 40, 30
    a = rng.normal(size=(r, d_in))
    if case == "zero-row":
        a[3] = 0.0
    elif case == "rank-deficient":
        a[4] = a[0] + a[1]
        a[5] = 2 * a[2]
    elif case == "all-zero":
        a[:] = 0.0
    b = rng.normal(size=(d_out, r))
    g_a, g_b = a @ a.T, b.T @ b
    lhalf = _gram_factor(g_a[None])[0]
    if case in ("full-rank", "zero-row"):  # Cholesky ran, or the eigh fallback (L = V Λ^½ is not triangular)
        assert np.allclose(np.triu(lhalf, 1), 0.0) == (case == "full-rank")
    np.testing.assert_allclose(lhalf @ lhalf.T, g_a, atol=1e-10 * max(1.0, np.abs(g_a).max()))
    frob_sq, sigma_sq = spectra_from_grams(g_a[None], g_b[None], np.array([1.5]))
    ref = _materialized_sigma_sq(a, b) * 1.5**2
    top = max(ref[0], 1e-300)
    assert np.all(np.abs(sigma_sq[0] - ref) <= 1e-9 * top)
    assert frob_sq[0] == pytest.approx(np.linalg.norm(1.5 * (b @ a)) ** 2, rel=1e-9, abs=1e-300)


def test_a_batch_with_one_singular_gram_falls_back_for_the_whole_batch():
    rng = np.random.default_rng(8)
    a = rng.normal(size=(3, 4, 20))
    a[1, 2] = 0.0  # G_A of module 1 is singular: np.linalg.cholesky rejects the batch
    b = rng.normal(size=(3, 25, 4))
    g_a, g_b = a @ np.swapaxes(a, 1, 2), np.swapaxes(b, 1, 2) @ b
    _, sigma_sq = spectra_from_grams(g_a, g_b, np.ones(3))
    for i in range(3):
        ref = _materialized_sigma_sq(a[i], b[i])
        assert np.all(np.abs(sigma_sq[i] - ref) <= 1e-9 * ref[0])


def _hash_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "hubaudit-sha256"]


def _big_adapter(d, nan: bool = False):
    rng = np.random.default_rng(2)
    d_in = BACKGROUND_HASH_BYTES // (2 * 8 * 4) + 512
    tensors = {}
    for i in range(2):
        tensors[A.format(i)] = rng.normal(size=(8, d_in)).astype(np.float32)
        tensors[B.format(i)] = rng.normal(size=(16, 8)).astype(np.float32)
    if nan:
        tensors[B.format(0)][0, 0] = np.nan
    p = d / "adapter_model.safetensors"
    write_arrays(p, tensors)
    write_config(d, r=8, lora_alpha=8)
    assert p.stat().st_size >= BACKGROUND_HASH_BYTES
    return p


def test_background_hash_is_the_file_hash_and_its_thread_is_joined(tmp_path):
    p = _big_adapter(tmp_path)
    res = scan_path(tmp_path)
    assert res.status == "ok", res.error
    assert res.content_sha256 == hashlib.sha256(p.read_bytes()).hexdigest()
    assert res.file_bytes == p.stat().st_size
    assert _hash_threads() == []


def test_a_rejected_scan_stops_its_hash_thread_before_closing_the_file(tmp_path):
    _big_adapter(tmp_path, nan=True)
    res = scan_path(tmp_path)
    assert res.status == "error" and "NaN or Inf" in (res.error or "")
    assert res.content_sha256 is None  # a rejected file's hash is not reported (as before)
    assert _hash_threads() == []


def test_background_hash_of_a_file_shorter_than_announced_is_rejected(tmp_path):
    p = tmp_path / "f.bin"
    p.write_bytes(os.urandom(3 << 20))
    fd = os.open(p, os.O_RDONLY)
    try:
        h = BackgroundHash(fd, (3 << 20) + 1)
        with pytest.raises(Rejected, match="shrank"):
            h.close()
        h = BackgroundHash(fd, 3 << 20)
        assert h.close() == hashlib.sha256(p.read_bytes()).hexdigest()
    finally:
        os.close(fd)


def test_a_read_error_in_the_hash_thread_rejects_instead_of_hashing_a_prefix(tmp_path):
    fd = os.open(tmp_path, os.O_RDONLY)  # a directory: pread fails with EISDIR
    try:
        h = BackgroundHash(fd, 1 << 20)
        with pytest.raises(Rejected, match="cannot read"):
            h.close()
    finally:
        os.close(fd)


def test_scan_numbers_do_not_depend_on_which_hash_path_ran(tmp_path):
    p = _big_adapter(tmp_path)
    hashed, unhashed = scan_path(tmp_path), scan_path(tmp_path, hash_content=False)
    assert hashed.status == unhashed.status == "ok"
    assert hashed.score == unhashed.score and hashed.features == unhashed.features
    assert unhashed.content_sha256 is None and hashed.file_bytes == p.stat().st_size
    assert math.isfinite(hashed.score)
