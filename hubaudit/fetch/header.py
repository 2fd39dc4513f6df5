"""Safetensors header pre-check over HTTP: one ranged GET, before any body is downloaded.

huggingface_hub's ``parse_safetensors_file_metadata`` accepts 25 MB headers, never retries and
checks no offsets, so we read the header ourselves with ``Range`` and apply the safetensors
validity rules plus our caps: a file we refuse here costs a few KB. The GET is bounded
(:func:`hubaudit.safehttp.open_get`): it reads no more than the range asked for, whatever the
server sends, and ends within a total deadline.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass

from hubaudit.constants import MAX_HEADER_BYTES
from hubaudit.httpclient import HubConfig, call_with_retry
from hubaudit.safehttp import iter_decoded, open_get, shown

FIRST_RANGE = 64 * 1024  # one request covers every real LoRA header (tens of KB)
# Files up to this size are read whole by the pre-check request (one GET instead of a header
# read plus HEAD+GET of the body); the header is still validated before anything is written.
WHOLE_FILE_BYTES = 1024 * 1024

# Bits per element (safetensors README "Format"); sub-byte types must add up to whole bytes.
DTYPE_BITS = {
    "BOOL": 8, "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8, "F8_E4M3FNUZ": 8, "F8_E5M2FNUZ": 8,
    "I16": 16, "U16": 16, "F16": 16, "BF16": 16, "I32": 32, "U32": 32, "F32": 32, "C64": 64, "F64": 64,
    "I64": 64, "U64": 64, "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6,
}


@dataclass(frozen=True)
class HeaderCheck:
    """``ok`` or a refusal: ``reason`` is ``oversize`` (header beyond the cap) or ``malformed``."""

    ok: bool
    reason: str | None = None
    message: str | None = None
    header_bytes: int = 0
    n_tensors: int = 0
    data: bytes | None = None  # the whole file, when it was small enough to read in one go


def _refuse(reason: str, message: str, n: int = 0) -> HeaderCheck:
    return HeaderCheck(False, reason, message, n)


def validate_header(raw: bytes, n: int, file_size: int | None) -> HeaderCheck:
    """Apply safetensors' ``Metadata::validate`` rules to header JSON bytes."""
    from hubaudit import safejson

    def unique(pairs: list[tuple[str, object]]) -> dict:
        # linear: a header of 200,000 tensors with a late duplicate must not cost n² comparisons
        out = dict(pairs)
        if len(out) != len(pairs):
            seen: set[str] = set()
            for key, _ in pairs:
                if key in seen:
                    raise ValueError(f"duplicate key {shown(key)}")  # safetensors itself lets the last one win
                seen.add(key)
        return out

    try:
        text = raw.decode("utf-8")
        if not text.lstrip(" ").startswith("{"):
            return _refuse("malformed", "header does not start with '{'", n)
        # bounded nesting: JSONLimitError (a ValueError) instead of RecursionError, so a deep
        # header is a final "malformed", not an unexpected, retried failure
        header = safejson.loads(text, object_pairs_hook=unique)
    except (UnicodeDecodeError, ValueError) as exc:
        return _refuse("malformed", f"invalid header JSON: {exc}", n)
    if not isinstance(header, dict):
        return _refuse("malformed", "header is not a JSON object", n)
    meta = header.pop("__metadata__", None)
    if meta is not None and not (isinstance(meta, dict) and all(isinstance(v, str) for v in meta.values())):
        return _refuse("malformed", "__metadata__ must map strings to strings", n)
    spans = []
    for name, info in header.items():
        if not isinstance(info, dict):
            return _refuse("malformed", f"tensor {shown(name)}: entry is not an object", n)
        dtype, shape, offs = info.get("dtype"), info.get("shape"), info.get("data_offsets")
        if dtype not in DTYPE_BITS:
            return _refuse("malformed", f"tensor {shown(name)}: unknown dtype {shown(dtype)}", n)
        if not (isinstance(shape, list)
                and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)):
            return _refuse("malformed", f"tensor {shown(name)}: bad shape", n)
        if not (isinstance(offs, list) and len(offs) == 2 and all(isinstance(o, int) and o >= 0 for o in offs)):
            return _refuse("malformed", f"tensor {shown(name)}: bad data_offsets", n)
        bits = math.prod(shape) * DTYPE_BITS[dtype]
        if bits % 8 or offs[1] - offs[0] != bits // 8:
            return _refuse("malformed", f"tensor {shown(name)}: size does not match shape and dtype", n)
        spans.append((offs[0], offs[1], name))
    spans.sort()
    end = 0
    for begin, stop, name in spans:
        if begin != end:  # gaps and overlaps both let hidden bytes ride along
            return _refuse("malformed", f"tensor {shown(name)}: invalid offset (gap or overlap)", n)
        end = stop
    if file_size is not None and 8 + n + end != file_size:
        return _refuse("malformed", f"file not fully covered: 8+{n}+{end} != {file_size} bytes", n)
    return HeaderCheck(True, header_bytes=n, n_tensors=len(spans))


def ranged_get(cfg: HubConfig, url: str, start: int, end: int) -> bytes:
    """Bytes [start, end] inclusive (fewer only if the file is shorter); stops reading early if
    the server ignores Range and answers 200. A body cut short raises (transient, retried)."""
    want = end - start + 1
    with open_get(cfg, url, seconds=cfg.download_seconds(end + 1), headers={"Range": f"bytes={start}-{end}"},
                  accept_encoding="identity") as resp:
        skip = start if resp.status_code == 200 else 0
        buf = bytearray()
        for chunk in iter_decoded(resp):
            buf += chunk
            if len(buf) >= skip + want:
                break
        expected = (resp.headers.get("Content-Length") or "").strip()
        if len(buf) < skip + want and expected.isdigit() and len(buf) < int(expected):
            raise ConnectionError(f"short read: {len(buf)} of {expected} bytes")
    return bytes(buf[skip:skip + want])


def check_remote_header(cfg: HubConfig, repo_id: str, filename: str, sha: str, file_size: int | None,
                        *, max_header: int = MAX_HEADER_BYTES, whole_below: int = WHOLE_FILE_BYTES) -> HeaderCheck:
    """Read and validate the safetensors header of a pinned remote file (1–2 ranged GETs, retried).

    A file of known size ``<= whole_below`` is read whole by the first request and returned in
    ``data`` (unverified: the caller checks its hash). Network errors propagate (the caller
    classifies them); policy and format problems are values.
    """
    from huggingface_hub import hf_hub_url

    url = hf_hub_url(repo_id, filename, revision=sha, endpoint=cfg.endpoint)
    if file_size is not None and file_size < 8:
        return _refuse("malformed", f"file of {file_size} bytes is too small for a safetensors header")
    whole = file_size is not None and file_size <= whole_below
    first_end = file_size - 1 if whole else FIRST_RANGE - 1
    first = call_with_retry(lambda: ranged_get(cfg, url, 0, first_end), cfg.retry)
    if len(first) < 8:
        return _refuse("malformed", "file too small for a safetensors header")
    (n,) = struct.unpack("<Q", first[:8])
    if n > max_header:
        return _refuse("oversize", f"safetensors header of {n} bytes exceeds the {max_header}-byte cap", n)
    if file_size is not None and n + 8 > file_size:
        return _refuse("malformed", f"header length {n} runs past the end of the {file_size}-byte file", n)
    raw = first[8:8 + n]
    if len(raw) < n:
        raw += call_with_retry(lambda: ranged_get(cfg, url, 8 + len(raw), 8 + n - 1), cfg.retry)
    if len(raw) != n:
        return _refuse("malformed", f"header truncated: got {len(raw)} of {n} bytes", n)
    check = validate_header(raw, n, file_size)
    if check.ok and whole and len(first) == file_size:
        return HeaderCheck(True, header_bytes=n, n_tensors=check.n_tensors, data=first)
    return check
