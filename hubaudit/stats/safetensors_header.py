"""Our own safetensors header parser: validate everything before a single tensor byte is trusted.

Layout: ``[u64 LE N][N bytes UTF-8 JSON object][byte buffer]``. The checks
re-implement the safetensors library's and add what it lets through:
duplicate keys (the library keeps the last), a header that does not start with ``{``, NaN
literals, and our own caps on header and file size.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from typing import Any, BinaryIO

from hubaudit import safejson
from hubaudit.constants import MAX_HEADER_BYTES
from hubaudit.stats._reject import Rejected, show_name
from hubaudit.stats.dtypes import DTYPE_BITS

MAX_TENSOR_NAME = 1024  # real names are < 150 chars; long ones only slow down regex matching
MAX_DIMS = 8


@dataclass(frozen=True)
class TensorEntry:
    """One validated header entry; ``begin``/``end`` are absolute file offsets."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int

    @property
    def nbytes(self) -> int:
        return self.end - self.begin

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class Header:
    """Entries sorted by offset (so reading them in order reads the file front to back)."""

    entries: tuple[TensorEntry, ...]
    metadata: dict[str, str]
    raw: bytes  # the 8 length bytes and the JSON, for hashing the whole file


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise Rejected(f"safetensors header has duplicate key {show_name(key)}")
        out[key] = value
    return out


def _no_constants(name: str) -> Any:
    raise Rejected(f"safetensors header holds the non-JSON literal {name}")


def parse_json_object(text: str, what: str) -> dict[str, Any]:
    """``json.loads`` that rejects duplicate keys, NaN/Infinity literals, non-objects and documents
    nested deeper than ``MAX_JSON_DEPTH`` (real headers nest 3 levels, adapter configs ~4)."""
    try:
        value = safejson.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
    except json.JSONDecodeError as exc:
        raise Rejected(f"{what} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except safejson.JSONLimitError as exc:
        raise Rejected(f"{what}: {exc}") from None
    except Rejected as exc:
        raise Rejected(exc.reason.replace("safetensors header", what)) from None
    except ValueError as exc:  # e.g. an integer literal over Python's 4,300-digit conversion limit
        raise Rejected(f"{what} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise Rejected(f"{what} is not a JSON object (found {type(value).__name__})")
    return value


def _int_list(value: Any, what: str, name: str) -> list[int]:
    # safetensors reads shapes and offsets as u64: larger JSON integers (up to Python's 4,300
    # digits) are refused here rather than multiplied and printed later
    if not isinstance(value, list) or not all(type(v) is int and 0 <= v < 1 << 64 for v in value):
        raise Rejected(f"tensor {show_name(name)}: {what} must be a list of non-negative integers below 2^64")
    return value


def _entry(name: str, info: Any, base: int) -> TensorEntry:
    if not isinstance(info, dict):
        raise Rejected(f"tensor {show_name(name)}: header entry is not an object")
    missing = [k for k in ("dtype", "shape", "data_offsets") if k not in info]
    if missing:
        raise Rejected(f"tensor {show_name(name)}: header entry lacks {', '.join(missing)}")
    dtype = info["dtype"]
    if not isinstance(dtype, str) or dtype not in DTYPE_BITS:
        raise Rejected(f"tensor {show_name(name)}: unknown dtype {show_name(str(dtype), 40)}")
    shape = _int_list(info["shape"], "shape", name)
    if len(shape) > MAX_DIMS:
        raise Rejected(f"tensor {show_name(name)}: {len(shape)} dimensions (max {MAX_DIMS})")
    offsets = _int_list(info["data_offsets"], "data_offsets", name)
    if len(offsets) != 2 or offsets[0] > offsets[1]:
        raise Rejected(f"tensor {show_name(name)}: data_offsets must be [begin, end] with begin <= end")
    # Python ints cannot overflow, but a product like 2^62·2^62 must not be trusted either:
    # it simply never equals a byte count that fits in the file.
    bits = math.prod(shape) * DTYPE_BITS[dtype]
    if bits % 8:
        raise Rejected(f"tensor {show_name(name)}: {dtype} data does not fill whole bytes")
    if bits // 8 != offsets[1] - offsets[0]:
        raise Rejected(
            f"tensor {show_name(name)}: shape {shape} of {dtype} needs {bits // 8} bytes, "
            f"data_offsets span {offsets[1] - offsets[0]}"
        )
    return TensorEntry(name, dtype, tuple(shape), base + offsets[0], base + offsets[1])


def read_header(f: BinaryIO, file_size: int) -> Header:
    """Parse and validate the header of an open safetensors file of ``file_size`` bytes.

    Raises ``Rejected`` with a one-line reason; on success every tensor's bytes lie inside the
    file, the tensors tile the buffer exactly (no gaps, overlaps or trailing bytes) and every
    byte count matches dtype × shape.
    """
    if file_size < 8:
        raise Rejected(f"file is {file_size} bytes, too small for a safetensors header")
    prefix = f.read(8)
    if len(prefix) != 8:
        raise Rejected("file shrank while reading the header length")
    (n,) = struct.unpack("<Q", prefix)
    if n > MAX_HEADER_BYTES:
        raise Rejected(f"safetensors header length {n} exceeds the {MAX_HEADER_BYTES}-byte cap")
    if 8 + n > file_size:
        raise Rejected(f"safetensors header length {n} runs past the end of the {file_size}-byte file")
    raw = f.read(n)
    if len(raw) != n:
        raise Rejected("file shrank while reading the header")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Rejected(f"safetensors header is not UTF-8 (byte {exc.start})") from None
    if not text.startswith("{"):
        raise Rejected("safetensors header does not start with '{'")
    obj = parse_json_object(text, "safetensors header")

    metadata = obj.pop("__metadata__", {})
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise Rejected("safetensors __metadata__ must map strings to strings")
    base = 8 + n
    entries = []
    for name, info in obj.items():
        if not name or len(name) > MAX_TENSOR_NAME:
            raise Rejected(f"tensor name of {len(name)} characters (allowed 1..{MAX_TENSOR_NAME})")
        entries.append(_entry(name, info, base))
    entries.sort(key=lambda e: (e.begin, e.end))

    cursor = base
    for e in entries:
        if e.begin != cursor:
            kind = "overlaps the previous tensor" if e.begin < cursor else "leaves a gap before it"
            raise Rejected(f"tensor {show_name(e.name)} {kind} (data offsets not contiguous)")
        cursor = e.end
    if cursor != file_size:
        if cursor > file_size:
            raise Rejected(f"tensor data runs {cursor - file_size} bytes past the end of the file")
        raise Rejected(f"{file_size - cursor} trailing bytes after the last tensor")
    return Header(tuple(entries), dict(metadata), prefix + raw)
