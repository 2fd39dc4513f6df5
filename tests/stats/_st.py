"""Test-side safetensors writer (independent of hubaudit's reader) that can also write broken files."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np

# numpy dtype of the bytes we write for each safetensors dtype (bf16 is written as raw u16 bits).
NP = {"F64": "<f8", "F32": "<f4", "F16": "<f2"}


def bf16_bits(x: np.ndarray) -> np.ndarray:
    """float → bf16 bit patterns (round to nearest even), as uint16."""
    bits = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
    return rounded.astype(np.uint16)


def encode(x: np.ndarray, dtype: str) -> tuple[bytes, np.ndarray]:
    """Raw little-endian bytes of ``x`` in ``dtype`` and the float64 values those bytes hold."""
    if dtype == "BF16":
        bits = bf16_bits(x)
        values = (bits.astype(np.uint32) << 16).view(np.float32).astype(np.float64)
        return bits.astype("<u2").tobytes(), values
    stored = np.ascontiguousarray(x, dtype=NP[dtype])
    return stored.tobytes(), stored.astype(np.float64)


def write_raw(path: Path, entries: list[tuple[str, dict, bytes]], metadata: dict | None = None) -> Path:
    """Write entries in the given order; each dict holds dtype/shape (offsets are filled in)."""
    header: dict = {}
    if metadata is not None:
        header["__metadata__"] = metadata
    buf = b""
    for name, info, raw in entries:
        header[name] = {**info, "data_offsets": [len(buf), len(buf) + len(raw)]}
        buf += raw
    hjson = json.dumps(header).encode()
    hjson += b" " * (-len(hjson) % 8)
    path.write_bytes(struct.pack("<Q", len(hjson)) + hjson + buf)
    return path


def write_arrays(path: Path, tensors: dict[str, np.ndarray], dtype: str = "F32", order: list[str] | None = None):
    """Write float arrays in ``dtype``; returns the float64 values actually stored, by name."""
    entries, values = [], {}
    for name in order or list(tensors):
        raw, vals = encode(tensors[name], dtype)
        entries.append((name, {"dtype": dtype, "shape": list(tensors[name].shape)}, raw))
        values[name] = vals.reshape(tensors[name].shape)
    write_raw(path, entries, {"format": "pt"})
    return values


def write_header_bytes(path: Path, header: bytes, data: bytes = b"", length: int | None = None) -> Path:
    """A file with an arbitrary header (and length field) for hostile cases."""
    n = len(header) if length is None else length
    path.write_bytes(struct.pack("<Q", n) + header + data)
    return path


def write_config(directory: Path, **fields) -> Path:
    cfg = {"peft_type": "LORA", "r": 8, "lora_alpha": 8, "target_modules": ["q_proj"]} | fields
    p = directory / "adapter_config.json"
    p.write_text(json.dumps(cfg))
    return p
