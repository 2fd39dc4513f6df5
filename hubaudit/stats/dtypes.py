"""safetensors dtypes: bit widths for layout checks, and decoding the float ones to float64.

bf16 is the top half of an IEEE float32 (shift the 16 bits up); the 8-bit floats are decoded
through a 256-entry lookup table built from their bit layouts (OCP FP8: E4M3FN has no
infinities and one NaN pattern per sign, E5M2 follows IEEE-754 with inf and NaN).
"""

from __future__ import annotations

import numpy as np

# Bit width of every dtype the safetensors format defines.
DTYPE_BITS: dict[str, int] = {
    "BOOL": 8, "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6, "U8": 8, "I8": 8,
    "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8, "F8_E4M3FNUZ": 8, "F8_E5M2FNUZ": 8,
    "I16": 16, "U16": 16, "F16": 16, "BF16": 16, "I32": 32, "U32": 32, "F32": 32,
    "C64": 64, "F64": 64, "I64": 64, "U64": 64,
}  # fmt: skip


def _minifloat_table(exp_bits: int, man_bits: int, *, ieee_special: bool) -> np.ndarray:
    """float64 value of every 8-bit pattern of a 1-exp-man minifloat (bias 2^(exp_bits-1) - 1)."""
    bias = 2 ** (exp_bits - 1) - 1
    top = 2**exp_bits - 1
    out = np.empty(256, dtype=np.float64)
    for code in range(256):
        sign = -1.0 if code & 0x80 else 1.0
        exp = (code >> man_bits) & top
        man = code & (2**man_bits - 1)
        if ieee_special and exp == top:
            out[code] = sign * np.inf if man == 0 else np.nan
        elif not ieee_special and exp == top and man == 2**man_bits - 1:
            out[code] = np.nan  # E4M3FN: S.1111.111 is NaN, there is no inf
        elif exp == 0:
            out[code] = sign * (man / 2**man_bits) * 2.0 ** (1 - bias)
        else:
            out[code] = sign * (1 + man / 2**man_bits) * 2.0 ** (exp - bias)
    return out


_F8_TABLES = {
    "F8_E4M3": _minifloat_table(4, 3, ieee_special=False),
    "F8_E5M2": _minifloat_table(5, 2, ieee_special=True),
}
_NATIVE = {"F64": "<f8", "F32": "<f4", "F16": "<f2"}

FLOAT_DTYPES = frozenset(_NATIVE) | {"BF16"} | frozenset(_F8_TABLES)


_STORAGE = {**_NATIVE, "BF16": "<u2", "F8_E4M3": "u1", "F8_E5M2": "u1"}


def storage_view(raw: bytes | bytearray | memoryview, dtype: str) -> np.ndarray:
    """Zero-copy flat view of raw little-endian tensor bytes in their storage type."""
    if dtype not in _STORAGE:
        raise ValueError(f"dtype {dtype} cannot be decoded as floating point")
    return np.frombuffer(raw, dtype=_STORAGE[dtype])


def to_float64(stored: np.ndarray, dtype: str, out: np.ndarray | None = None) -> np.ndarray:
    """Storage-typed array (any strides, from ``storage_view``) → float64 of the same shape.

    ``out`` (float64, same shape) lets a caller reuse one scratch buffer across tensors: fresh
    large allocations cost a page fault per 4 KiB, which is slower than the conversion itself.
    """
    if out is None:
        out = np.empty(stored.shape, dtype=np.float64)
    with np.errstate(invalid="ignore"):  # signalling NaNs in hostile files; rejected by the caller
        return convert_into(stored, dtype, out)


def convert_into(stored: np.ndarray, dtype: str, out: np.ndarray) -> np.ndarray:
    """``to_float64`` into ``out`` without its floating-point error context (the caller holds one).

    A signalling NaN in a hostile file raises FE_INVALID on conversion; the caller holds one
    ``np.errstate(invalid="ignore")`` around all the blocks of a tensor (the reader: per tensor).
    """
    if dtype in _NATIVE:
        np.copyto(out, stored, casting="unsafe")
    elif dtype == "BF16":
        bits = np.left_shift(stored.astype(np.uint32), 16)
        np.copyto(out, bits.view(np.float32), casting="unsafe")
    else:
        np.take(_F8_TABLES[dtype], stored, out=out)
    return out


def decode_float(raw: bytes | bytearray | memoryview, dtype: str) -> np.ndarray:
    """Little-endian raw tensor bytes of a float dtype → flat float64 array (a new array)."""
    return to_float64(storage_view(raw, dtype), dtype)
