"""Fault injection and the request log of the fake Hub, and HTTP Range parsing."""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class Fault:
    """One injected fault. It fires on matching requests, ``times`` times (None: forever).

    kind: ``status`` (answer ``status``; 429 gets RateLimit headers with ``t=reset``, or
    ``Retry-After`` when ``retry_after_header``), ``reset`` (send half the body, then a TCP RST),
    ``truncate`` (announce the full Content-Length, send half, close), ``latency`` (sleep
    ``delay`` seconds, then answer normally). ``endpoint``: list | info | tree | resolve | cdn | *.
    ``ranged``: True/False to match only requests with/without a Range header. ``query``: match
    only requests whose decoded query string contains it (e.g. one listing's ``filter=...``).

    Hostile kinds (an endpoint that is a malicious mirror or proxy): ``headers`` (answer normally
    but with ``headers`` set or replaced: a forged ``ETag``, a ``Link`` to another origin),
    ``drip`` (send the body one byte per ``delay`` seconds), ``drip_headers`` (the status line and
    headers one byte per ``delay`` seconds), ``gzip_bomb`` (a 200 gzip body inflating to ``size``
    bytes), ``deep_json`` (a 200 model JSON nested ``size`` levels deep), ``oversize`` (a 200
    body of ``size`` zero bytes, with a matching Content-Length).
    """

    kind: str
    endpoint: str = "*"
    repo: str | None = None
    path: str | None = None
    method: str | None = None
    ranged: bool | None = None
    status: int = 500
    reset: float = 0
    retry_after_header: bool = False
    delay: float = 0.0
    times: int | None = 1
    size: int = 0
    headers: dict[str, str] | None = None
    query: str | None = None

    def matches(self, endpoint: str, repo: str | None, path: str | None, method: str, ranged: bool,
                query: str = "") -> bool:
        return (
            (self.times is None or self.times > 0)
            and (self.query is None or self.query in query)
            and self.endpoint in ("*", endpoint)
            and (self.repo is None or self.repo == repo)
            and (self.path is None or self.path == path)
            and (self.method is None or self.method == method)
            and (self.ranged is None or self.ranged == ranged)
        )


@dataclass
class LoggedRequest:
    method: str
    path: str
    endpoint: str
    repo: str | None
    status: int = 0
    authorization: str | None = None
    range: str | None = None
    sent: int = 0  # body bytes of a hostile answer that reached the socket
    at: float = field(default_factory=time.monotonic)


def parse_range(header: str, size: int) -> tuple[int, int] | None:
    """``bytes=a-b | a- | -n`` → inclusive (a, b), or None if unsatisfiable."""
    try:
        unit, _, spec = header.partition("=")
        if unit.strip() != "bytes" or "," in spec:
            return None
        first, _, last = spec.strip().partition("-")
        if first == "":
            n = int(last)
            if n <= 0:
                return None
            return max(0, size - n), size - 1
        a = int(first)
        b = int(last) if last else size - 1
    except ValueError:
        return None
    if a >= size or b < a:
        return None
    return a, min(b, size - 1)
