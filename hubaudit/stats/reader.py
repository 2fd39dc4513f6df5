"""Find an adapter's files, open them without following links, and stream its tensors once.

Memory stays independent of the adapter's size: tensors are read one at a time, LoRA parts are
reduced at once to their r×r Gram (float64, in column/row blocks), full tensors are only hashed
in fixed-size chunks. The sha256 of the weights file is computed in the same pass.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Literal

import numpy as np

from hubaudit.constants import (
    ADAPTER_CONFIG,
    ADAPTER_PICKLE,
    ADAPTER_SAFETENSORS,
    MAX_ADAPTER_BYTES,
    MAX_CONFIG_BYTES,
)
from hubaudit.stats._reject import Rejected, show_name
from hubaudit.stats.dtypes import FLOAT_DTYPES, storage_view, to_float64
from hubaudit.stats.gram import BLOCK_ELEMENTS
from hubaudit.stats.safetensors_header import Header, TensorEntry, parse_json_object, read_header

HASH_CHUNK = 8 << 20
Reduce = Literal["gram_cols", "gram_rows", "mean", "skip"]


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
    target = p.resolve()
    if p.is_symlink():
        if not _is_within(target, [r.resolve() for r in symlink_roots]):
            raise Rejected(f"{p.name} is a symlink (to {show_name(str(target))}); refusing to follow it")
    elif not _is_within(target, [directory.resolve()]):
        raise Rejected(f"{p.name} resolves outside the adapter directory")


def locate(path: Path, symlink_roots: Sequence[Path] = ()) -> AdapterFiles:
    """An adapter directory, or a weights file with an optional adapter_config.json beside it."""
    if not os.path.lexists(path):
        raise Rejected(f"no such file or directory: {show_name(str(path))}")
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
    return AdapterFiles(weights, config, fmt, directory)  # type: ignore[arg-type]


def open_regular(p: Path, cap: int, what: str, follow: bool = False) -> tuple[BinaryIO, int]:
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
    f, size = open_regular(p, MAX_CONFIG_BYTES, ADAPTER_CONFIG, follow)
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


def _readinto(f: BinaryIO, n: int) -> bytearray:
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = f.readinto(view[got:])
        if not k:
            raise Rejected("file shrank while it was being read")
        got += k
    return buf


def _gram(stored: np.ndarray, dtype: str, cols: bool) -> np.ndarray:
    """r×r Gram of a 2-D stored tensor in float64, converting one block at a time.

    cols=True: X Xᵀ for X (r, n) (lora_A); cols=False: Xᵀ X for X (n, r) (lora_B).
    """
    if cols:
        r, n = stored.shape
        step = max(1, BLOCK_ELEMENTS // max(r, 1))
        g = np.zeros((r, r))
        for c in range(0, n, step):
            x = to_float64(stored[:, c : c + step], dtype)
            g += x @ x.T
        return g
    n, r = stored.shape
    step = max(1, BLOCK_ELEMENTS // max(r, 1))
    g = np.zeros((r, r))
    for c in range(0, n, step):
        x = to_float64(stored[c : c + step], dtype)
        g += x.T @ x
    return g


@dataclass
class FileDigest:
    """Filled in by ``stream_reduce`` once the whole file has been read."""

    sha256: str | None = None
    file_bytes: int | None = None
    header: Header | None = None


def stream_reduce(
    f: BinaryIO, size: int, plan: Callable[[TensorEntry], tuple[Reduce, tuple[int, int] | None]], digest: FileDigest
) -> Iterator[tuple[TensorEntry, np.ndarray | None]]:
    """Validate the header, then read every tensor in file order, yielding its reduction.

    ``plan(entry)`` says how to reduce a tensor ("gram_cols"/"gram_rows" with the 2-D shape to
    view it as, "mean" for 1-D vectors, "skip" to only hash it). Reductions are float64; a
    non-finite Gram or mean means the tensor held NaN/Inf. The whole file is hashed on the way.
    """
    header = read_header(f, size)
    digest.header = header
    h = hashlib.sha256(header.raw)
    for entry in header.entries:
        how, shape2d = plan(entry)
        if how == "skip":
            left = entry.nbytes
            while left:
                chunk = f.read(min(left, HASH_CHUNK))
                if not chunk:
                    raise Rejected("file shrank while it was being read")
                h.update(chunk)
                left -= len(chunk)
            yield entry, None
            continue
        if entry.dtype not in FLOAT_DTYPES:
            raise Rejected(f"tensor {show_name(entry.name)} has dtype {entry.dtype}; LoRA weights must be floats")
        raw = _readinto(f, entry.nbytes)
        h.update(raw)
        stored = storage_view(raw, entry.dtype)
        if how == "mean":
            out = np.array(to_float64(stored, entry.dtype).mean() if stored.size else np.nan)
        else:
            assert shape2d is not None
            out = _gram(stored.reshape(shape2d), entry.dtype, cols=how == "gram_cols")
        if not np.all(np.isfinite(out)):
            raise Rejected(f"tensor {show_name(entry.name)} holds NaN or Inf (or overflows float64)")
        yield entry, out
    if f.read(1):
        raise Rejected("file grew while it was being read")
    digest.sha256 = h.hexdigest()
    digest.file_bytes = size
