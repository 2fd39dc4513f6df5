"""Find an adapter's files, open them without following links, and stream its tensors once.

Memory stays independent of the adapter's size: tensors are read one at a time, LoRA parts are
reduced at once to their r×r Gram (float64, in column/row blocks) and, for the fingerprint, to
their product with a fixed random projection (A·Ω, r×k; Ψ·B, k×r) from the same blocks; full
tensors are only hashed in fixed-size chunks. The sha256 of the weights file is computed in the
same pass.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import stat
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from hubaudit.constants import (
    ADAPTER_CONFIG,
    ADAPTER_PICKLE,
    ADAPTER_SAFETENSORS,
    MAX_ADAPTER_BYTES,
    MAX_CONFIG_BYTES,
)
from hubaudit.stats._reject import Rejected, show_name
from hubaudit.stats.dtypes import DTYPE_BITS, FLOAT_DTYPES, convert_into, storage_view, to_float64
from hubaudit.stats.fingerprint import project
from hubaudit.stats.gram import BLOCK_ELEMENTS
from hubaudit.stats.hashing import BACKGROUND_HASH_BYTES, BackgroundHash, FileDigest, Hasher, InlineHash
from hubaudit.stats.safetensors_header import Header, TensorEntry, parse_json_object, read_header

HASH_CHUNK = 8 << 20
Reduce = Literal["gram_cols", "gram_rows", "mean", "skip"]


class Projector(Protocol):
    """A fixed n×k matrix handed out by row blocks (``fingerprint.Projection``)."""

    def rows(self, start: int, stop: int, dtype: type[np.floating] = ...) -> np.ndarray: ...


# plan(entry) → (how to reduce it, the 2-D shape to view it as, the projection to sketch it with or None)
Plan = Callable[[TensorEntry], tuple[Reduce, tuple[int, int] | None, Projector | None]]
Reduced = tuple[TensorEntry, np.ndarray | None, np.ndarray | None]


@dataclass(frozen=True)
class AdapterFiles:
    """Where an adapter's weights and config are; ``fmt`` says how the weights are serialized."""

    weights: Path
    config: Path | None
    fmt: Literal["safetensors", "pickle"]
    directory: Path


def _is_within(path: Path, roots: Sequence[Path]) -> bool:
    return any(path.is_relative_to(root) for root in roots)


def check_not_link(p: Path, directory: Path, symlink_roots: Sequence[Path]) -> None:
    """Refuse a file that is a symlink (unless it resolves under a trusted root) or escapes ``directory``."""
    try:
        target = p.resolve()
    except (RuntimeError, OSError):  # a symlink loop (RuntimeError before Python 3.13)
        raise Rejected(f"{p.name} is a symlink loop") from None
    if p.is_symlink():
        if not _is_within(target, [r.resolve() for r in symlink_roots]):
            raise Rejected(f"{p.name} is a symlink (to {show_name(str(target))}); refusing to follow it")
    elif not _is_within(target, [directory.resolve()]):
        raise Rejected(f"{p.name} resolves outside the adapter directory")


def locate(path: Path, symlink_roots: Sequence[Path] = ()) -> AdapterFiles:
    """An adapter directory, or a weights file with an optional adapter_config.json beside it."""
    if not os.path.lexists(path):
        raise Rejected(f"no such file or directory: {show_name(str(path))}")
    config: Path | None
    fmt: Literal["safetensors", "pickle"]
    if path.is_dir():
        # A directory the user named (even through a link) is theirs to choose; files in it are not.
        directory = path
        st, pk = path / ADAPTER_SAFETENSORS, path / ADAPTER_PICKLE
        config = path / ADAPTER_CONFIG
        if os.path.lexists(st):
            weights, fmt = st, "safetensors"
        elif os.path.lexists(pk):
            weights, fmt = pk, "pickle"
        else:
            raise Rejected(f"no {ADAPTER_SAFETENSORS} or {ADAPTER_PICKLE} in the directory")
        if not os.path.lexists(config):
            raise Rejected(f"{ADAPTER_CONFIG} is missing")
    else:
        directory = path.parent
        weights = path
        fmt = "pickle" if path.suffix == ".bin" else "safetensors"
        beside = path.parent / ADAPTER_CONFIG
        config = beside if os.path.lexists(beside) else None
    check_not_link(weights, directory, symlink_roots)
    if config is not None:
        check_not_link(config, directory, symlink_roots)
    return AdapterFiles(weights, config, fmt, directory)


def open_regular(p: Path, cap: int, what: str, follow: bool = False) -> tuple[io.FileIO, int]:
    """Open a regular file without following a final symlink and without blocking on a FIFO."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    if not follow:
        flags |= getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(p, flags)
    except OSError as exc:
        raise Rejected(f"cannot open {what}: {exc.strerror}") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise Rejected(f"{what} is not a regular file")
    if st.st_size > cap:
        os.close(fd)
        raise Rejected(f"{what} is {st.st_size} bytes, over the {cap}-byte cap")
    return os.fdopen(fd, "rb", buffering=0), st.st_size


def read_config(p: Path, follow: bool = False) -> tuple[dict[str, Any], str]:
    """Parsed adapter_config.json (a JSON object, no duplicate keys) and its sha256."""
    f, _ = open_regular(p, MAX_CONFIG_BYTES, ADAPTER_CONFIG, follow)
    with f:
        raw = f.read(MAX_CONFIG_BYTES + 1)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise Rejected(f"{ADAPTER_CONFIG} is not UTF-8") from None
    return parse_json_object(text, ADAPTER_CONFIG), hashlib.sha256(raw).hexdigest()


def sha256_file(p: Path, follow: bool = False) -> tuple[str, int]:
    """sha256 and size of a file, read in chunks (used for pickle files we do not parse)."""
    f, size = open_regular(p, MAX_ADAPTER_BYTES, p.name, follow)
    h = hashlib.sha256()
    with f:
        while chunk := f.read(HASH_CHUNK):
            h.update(chunk)
    return h.hexdigest(), size


class _Scratch:
    """Buffers reused across the tensors of one scan (raw bytes and one float64 block)."""

    def __init__(self) -> None:
        self._raw = bytearray()
        self._f64 = np.empty(0)
        self._f32 = np.empty(0, dtype=np.float32)

    def raw(self, n: int) -> memoryview:
        if len(self._raw) < n:
            self._raw = bytearray(n)
        return memoryview(self._raw)[:n]

    def f64(self, shape: tuple[int, ...]) -> np.ndarray:
        n = math.prod(shape)
        if self._f64.size < n:
            self._f64 = np.empty(n)
        return self._f64[:n].reshape(shape)

    def f32(self, like: np.ndarray) -> np.ndarray:
        """``like`` (float64) rounded to float32 in a reused buffer."""
        n = like.size
        if self._f32.size < n:
            self._f32 = np.empty(n, dtype=np.float32)
        out = self._f32[:n].reshape(like.shape)
        np.copyto(out, like, casting="same_kind")
        return out


def _readinto(f: io.FileIO, view: memoryview) -> memoryview:
    got, n = 0, len(view)
    while got < n:
        k = f.readinto(view[got:])
        if not k:
            raise Rejected("file shrank while it was being read")
        got += k
    return view


def _gram(stored: np.ndarray, dtype: str, cols: bool, scratch: _Scratch) -> np.ndarray:
    """r×r Gram of a 2-D stored tensor in float64 (``_reduce_2d`` without a projection)."""
    return _reduce_2d(stored, dtype, cols, scratch, None)[0]


def _reduce_2d(
    stored: np.ndarray, dtype: str, cols: bool, scratch: _Scratch, proj: Projector | None
) -> tuple[np.ndarray, np.ndarray | None]:
    """r×r Gram of a 2-D stored tensor in float64, converting one block at a time (arXiv 2605.30189),
    and its projection by ``proj`` from the same float64 blocks.

    cols=True: X Xᵀ and X·Ω (r×k) for X (r, n) (lora_A); cols=False: Xᵀ X and Ψ·X (k×r) for
    X (n, r) (lora_B), where ``proj.rows`` gives the rows of Ω or Ψᵀ matching each block. Blocks of at
    most BLOCK_ELEMENTS values (2 MiB of float64, the L2 size here) are converted into one reused
    buffer and multiplied in float64; every f32/f16/bf16/f8 product is exact in float64, so
    blocking changes only the order of the float64 sums. numpy already sends ``x @ x.T`` to
    BLAS syrk (one triangle, half the flops; 1.1-2× faster than a dgemm of x and a copy of x).
    Measured on the Qwen2.5-1.5B-shaped bench adapter: smaller blocks (8K-128K values) are
    4-40 % slower (more calls), and scipy.linalg.blas.dsyrk called directly is 1.3-2× slower
    than numpy's route (it wants Fortran order).
    """
    r, n = stored.shape if cols else stored.shape[::-1]
    step = max(1, BLOCK_ELEMENTS // max(r, 1))
    if n <= step:  # one block: every tensor of a typical adapter
        x = convert_into(stored, dtype, scratch.f64(stored.shape))
        g = x @ x.T if cols else x.T @ x
        return g, None if proj is None else _sketch(stored, x, dtype, proj, 0, cols, scratch)
    g = np.zeros((r, r))
    sketch: np.ndarray | None = None
    for c in range(0, n, step):
        block = stored[:, c : c + step] if cols else stored[c : c + step]
        x = convert_into(block, dtype, scratch.f64(block.shape))
        g += x @ x.T if cols else x.T @ x
        if proj is not None:
            part = _sketch(block, x, dtype, proj, c, cols, scratch)
            sketch = part if sketch is None else sketch + part
    return g, sketch


def _sketch(
    stored: np.ndarray, x: np.ndarray, dtype: str, proj: Projector, start: int, cols: bool, scratch: _Scratch
) -> np.ndarray:
    """A block's share of A·Ω or Ψ·B, in single precision for every dtype float32 holds exactly
    (F32 straight from the stored values; F16/BF16/F8 from the float64 block): single-precision
    BLAS takes half the time of double and its rounding (~1e-6 relative) is far below the
    sketch's own error. F64 tensors (values beyond float32's range) are projected in float64."""
    j = x.shape[1] if cols else x.shape[0]
    if dtype == "F64":
        return project(x, proj.rows(start, start + j), cols)
    x32 = stored if dtype == "F32" else scratch.f32(x)
    return project(x32, proj.rows(start, start + j, np.float32), cols)


def stream_reduce(
    f: io.FileIO,
    size: int,
    plan: Plan,
    digest: FileDigest,
    precheck: Callable[[Header], None] | None = None,
) -> Iterator[Reduced]:
    """Validate the header, then read every tensor in file order, yielding (entry, reduction, sketch).

    ``precheck(header)`` may reject the file before its data is read. ``plan(entry)`` says how
    to reduce a tensor ("gram_cols"/"gram_rows" with the 2-D shape to view it as, "mean" for 1-D
    vectors, "skip" to only hash it) and, for a Gram, a projection to multiply it by in the same
    pass (A·Ω or Ψ·B; the sketch is None without one). Reductions are float64; a non-finite Gram
    or mean means the tensor held NaN/Inf. The whole file is hashed on the way: the caller must call
    ``digest.finish()`` (after its own work, which a background hash overlaps) and
    ``digest.abort()`` in a ``finally`` before it closes ``f``.
    """
    background = digest.want_sha256 and size >= BACKGROUND_HASH_BYTES and hasattr(os, "preadv")
    if background:  # from byte 0, while the header is parsed and validated
        digest.hasher = BackgroundHash(f.fileno(), size)
    header = read_header(f, size)
    digest.header = header
    if precheck is not None:
        precheck(header)  # structural checks from the header alone, before any tensor byte is read
    if digest.want_sha256 and not background:
        digest.hasher = InlineHash(header.raw)
    yield from _reduce_all(f, header, plan, digest.hasher, _Scratch())
    if f.read(1):
        raise Rejected("file grew while it was being read")
    digest.file_bytes = size
    digest.complete = True


LARGE_TENSOR_BYTES = 32 << 20  # above this a LoRA tensor is reduced block by block, never held whole


def _reduce_large(
    f: io.FileIO,
    entry: TensorEntry,
    how: Reduce,
    shape2d: tuple[int, int] | None,
    proj: Projector | None,
    h: Any,
    scratch: _Scratch,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Reduce a tensor too large to hold: memory stays O(block) whatever the tensor's size.

    Row blocks of B (n, r) and flat blocks of a vector are contiguous: read in order (and hashed
    inline if that is the hasher). Column blocks of A (r, n) are r strided row segments, read with
    pread; only called when the hash does not depend on read order (background or none). Each
    block also adds its share of the projection (A·Ω or Ψ·B) when ``proj`` is given.
    """
    dtype, item = entry.dtype, DTYPE_BITS[entry.dtype] // 8
    sketch: np.ndarray | None = None
    if how == "gram_cols":
        assert shape2d is not None and not isinstance(h, InlineHash)
        r, n = shape2d
        step = max(1, BLOCK_ELEMENTS // r)
        g = np.zeros((r, r))
        for c in range(0, n, step):
            k = min(step, n - c)
            view = scratch.raw(r * k * item)
            for i in range(r):
                _preadinto(f.fileno(), view[i * k * item : (i + 1) * k * item], entry.begin + (i * n + c) * item)
            st = storage_view(view, dtype).reshape(r, k)
            x = to_float64(st, dtype, scratch.f64((r, k)))
            g += x @ x.T
            if proj is not None:
                part = _sketch(st, x, dtype, proj, c, True, scratch)
                sketch = part if sketch is None else sketch + part
        f.seek(entry.end)
        return g, sketch
    width = shape2d[1] if shape2d is not None else 1
    n = entry.numel // width
    step = max(1, BLOCK_ELEMENTS // width)
    acc = np.zeros((width, width)) if how == "gram_rows" else np.zeros(1)
    for row in range(0, n, step):
        k = min(step, n - row)
        view = _readinto(f, scratch.raw(k * width * item))
        h.update(view)
        st = storage_view(view, dtype).reshape(k, width)
        x = to_float64(st, dtype, scratch.f64((k, width)))
        acc += x.T @ x if how == "gram_rows" else x.sum()
        if proj is not None and how == "gram_rows":
            part = _sketch(st, x, dtype, proj, row, False, scratch)
            sketch = part if sketch is None else sketch + part
    if how == "gram_rows":
        return acc, sketch
    return np.array(acc[0] / max(n, 1) if n else np.nan), None


def _preadinto(fd: int, view: memoryview, offset: int) -> None:
    got = 0
    while got < len(view):
        if hasattr(os, "preadv"):
            k = os.preadv(fd, [view[got:]], offset + got)
        else:  # platforms without preadv: one copy more
            chunk = os.pread(fd, len(view) - got, offset + got)
            k = len(chunk)
            view[got : got + k] = chunk
        if k <= 0:
            raise Rejected("file shrank while it was being read")
        got += k


def _reduce_all(f: io.FileIO, header: Header, plan: Plan, h: Hasher, scratch: _Scratch) -> Iterator[Reduced]:
    for entry in header.entries:
        how, shape2d, proj = plan(entry)
        sketch: np.ndarray | None = None
        if how == "skip":
            left = entry.nbytes
            while left:
                chunk = _readinto(f, scratch.raw(min(left, HASH_CHUNK)))
                h.update(chunk)
                left -= len(chunk)
            yield entry, None, None
            continue
        if entry.dtype not in FLOAT_DTYPES:
            raise Rejected(f"tensor {show_name(entry.name)} has dtype {entry.dtype}; LoRA weights must be floats")
        if entry.nbytes > LARGE_TENSOR_BYTES and (how != "gram_cols" or not isinstance(h, InlineHash)):
            out, sketch = _reduce_large(f, entry, how, shape2d, proj, h, scratch)
        else:
            raw = _readinto(f, scratch.raw(entry.nbytes))
            h.update(raw)
            stored = storage_view(raw, entry.dtype)
            if how == "mean":
                out = np.array(to_float64(stored, entry.dtype).mean() if stored.size else np.nan)
            else:
                assert shape2d is not None
                with np.errstate(invalid="ignore"):  # signalling NaNs in hostile files: rejected below
                    out, sketch = _reduce_2d(stored.reshape(shape2d), entry.dtype, how == "gram_cols", scratch, proj)
        # The finite-value check on the r×r result replaces one over every input value: a Gram's
        # diagonal G_ii = Σ_j x_ij² is a sum of non-negative terms, so it is +inf or NaN as soon as
        # one x_ij is ±inf or NaN (no inf - inf can cancel it, in any block or summation order),
        # and finite f32/f16/bf16/f8 values cannot overflow it (n·(3.4e38)² < 1.8e308 for any
        # n < 1e231). Only F64 inputs can overflow, hence "or overflows float64". The sketch is
        # then finite too (each entry is bounded by √(G_ii)·‖column of the projection‖).
        if not np.all(np.isfinite(out)):
            raise Rejected(f"tensor {show_name(entry.name)} holds NaN or Inf (or overflows float64)")
        yield entry, out, sketch
