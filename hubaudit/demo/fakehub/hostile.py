"""Bodies a hostile Hub endpoint (a mirror, proxy or attacker in ``HF_ENDPOINT``) sends: each one is
generated lazily, so the fake server never holds more than one chunk of it in memory."""

from __future__ import annotations

import zlib
from collections.abc import Iterator

CHUNK = 1 << 20


def gzip_bomb(inflated: int, *, chunk: int = CHUNK) -> Iterator[bytes]:
    """A valid single-member gzip stream that inflates to ``inflated`` bytes of JSON-looking
    padding (about 1,000:1 at level 9: 1 GiB inflated is ~1 MiB on the wire)."""
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)  # wbits 31: gzip header and CRC32/size trailer
    head = b'{"id": "x", "pad": "'
    yield comp.compress(head)
    left = inflated - len(head) - 2
    block = b" " * chunk
    while left > 0:
        n = min(left, chunk)
        out = comp.compress(block[:n])
        left -= n
        if out:
            yield out
    yield comp.compress(b'"}') + comp.flush()


def deep_json(repo_id: str, sha: str, depth: int) -> bytes:
    """A model_info body whose ``cardData`` nests ``depth`` levels (``json.loads`` recurses once per level)."""
    return (b'{"id": "%s", "sha": "%s", "cardData": ' % (repo_id.encode(), sha.encode())
            + b"[" * depth + b"]" * depth + b"}")


def zeros(size: int, *, chunk: int = CHUNK) -> Iterator[bytes]:
    """``size`` zero bytes, one chunk at a time."""
    block = bytes(chunk)
    while size > 0:
        n = min(size, chunk)
        yield block[:n]
        size -= n
