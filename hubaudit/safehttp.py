"""HTTP exchanges with an endpoint we do not trust (``HF_ENDPOINT`` may be a mirror, proxy or attacker), bounded.

* **Time.** httpx's timeouts bound each connect/read/write, not their sum: a server that sends one
  byte per second never times out. Every client built here enforces a *total* deadline on each
  socket operation (:func:`request_deadline`, :func:`budget`), so dripped headers and dripped
  bodies end too. A request that sets none (one huggingface_hub makes) gets ``deadline_factor`` x
  its timeout from when it is sent.
* **Reach.** A token bound to the endpoint (:func:`bind_token`) is never sent to another origin,
  whoever builds the request (our code, huggingface_hub, a redirect): the request is refused
  before it is sent. :func:`open_get` follows redirects itself, never reads a redirect's body and
  drops the token once a hop leaves the endpoint's origin (a CDN still works).
* **Bytes.** Bodies are decoded here, chunk by chunk with a bounded output per step, and counted
  as they are inflated (:func:`read_bounded`): a gzip bomb stops at the cap, not in memory.
  Error bodies are read up to ``ERROR_BODY_BYTES`` only.

Everything the endpoint sends that we refuse raises :class:`HostileResponse`.
"""

from __future__ import annotations

import hashlib
import threading
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from hubaudit import safejson

if TYPE_CHECKING:
    import httpx2

    from hubaudit.httpclient import HubConfig

CHUNK = 64 * 1024
ERROR_BODY_BYTES = 64 * 1024  # enough for any real error message
MIB = 1024 * 1024


class HostileResponse(Exception):
    """The endpoint sent something we refuse to act on (a forged sha, a body beyond its cap, JSON
    nested without bound, a token-bearing request to another origin). ``reason`` is the code stored
    with the revision; the message is one line and quotes server data only truncated (:func:`shown`)."""

    def __init__(self, message: str, reason: str = "hostile_metadata") -> None:
        super().__init__(message)
        self.reason = reason


class TokenOffOrigin(HostileResponse):
    """A request carrying our token was about to leave the endpoint's origin; it was not sent."""


def shown(value: object, limit: int = 60) -> str:
    """Server data quoted in a one-line message: ``repr`` (no raw newlines), truncated."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "…"


# -- total deadlines, enforced on the socket -------------------------------------------------
#
# The deadline in force is per thread (a sync httpx client does all of a request's I/O in the
# calling thread): the nearest of the current budget and the current request's own deadline,
# or, for a request that set none, the automatic one its request hook set.

_tl = threading.local()
# Set by hubaudit.httpclient.hub_client: the per-read timeout and deadline factor for requests
# that carry none of their own (huggingface_hub's).
DEFAULTS: dict[str, float | None] = {"timeout": None, "deadline_factor": 3.0}


@contextmanager
def request_deadline(seconds: float) -> Iterator[None]:
    """Every socket operation in this block (one request, its redirects and body) ends within
    ``seconds`` from now, or raises an httpx timeout."""
    previous = getattr(_tl, "request", None)
    _tl.request = time.monotonic() + seconds
    try:
        yield
    finally:
        _tl.request = previous


@contextmanager
def budget(until: float) -> Iterator[None]:
    """Nothing in this block (requests, retries, backoff sleeps) runs past ``until``, a
    ``time.monotonic()`` instant; a nested budget can only shorten it."""
    previous = getattr(_tl, "budget", None)
    _tl.budget = until if previous is None else min(until, previous)
    try:
        yield
    finally:
        _tl.budget = previous


def budget_left() -> float | None:
    """Seconds left in the current :func:`budget`, or None outside one."""
    until = getattr(_tl, "budget", None)
    return None if until is None else until - time.monotonic()


def _remaining() -> float | None:
    request = getattr(_tl, "request", None) or getattr(_tl, "auto", None)
    ends = [e for e in (getattr(_tl, "budget", None), request) if e is not None]
    return min(ends) - time.monotonic() if ends else None


def _bounded(timeout: float | None, error: type[Exception]) -> float | None:
    left = _remaining()
    if left is None:
        return timeout
    if left <= 0:
        raise error("deadline exceeded: the request ran past its total time allowance")
    return left if timeout is None else min(timeout, left)


class _DeadlineStream:
    """A network stream whose every operation ends by the thread's deadline."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        import httpcore2

        return self._inner.read(max_bytes, _bounded(timeout, httpcore2.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        import httpcore2

        self._inner.write(buffer, _bounded(timeout, httpcore2.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None) -> Any:
        import httpcore2

        return _DeadlineStream(self._inner.start_tls(ssl_context, server_hostname,
                                                     _bounded(timeout, httpcore2.ConnectTimeout)))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _DeadlineBackend:
    """httpcore's sync network backend, with every stream it opens bounded by the deadline."""

    def __init__(self) -> None:
        import httpcore2

        self._inner = httpcore2.SyncBackend()

    def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                    socket_options: Any = None) -> _DeadlineStream:
        import httpcore2

        return _DeadlineStream(self._inner.connect_tcp(host, port, _bounded(timeout, httpcore2.ConnectTimeout),
                                                       local_address, socket_options))

    def connect_unix_socket(self, path: str, timeout: float | None = None,
                            socket_options: Any = None) -> _DeadlineStream:
        import httpcore2

        return _DeadlineStream(self._inner.connect_unix_socket(path, _bounded(timeout, httpcore2.ConnectTimeout),
                                                               socket_options))

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def _install_deadlines(client: httpx2.Client) -> None:
    # httpx has no network-backend option; every pool it built (direct, and one per proxy read
    # from the environment) gets ours. Fail loudly if httpx2 ever renames these.
    for transport in [client._transport, *(t for t in client._mounts.values() if t is not None)]:
        pool = getattr(transport, "_pool", None)
        if not hasattr(pool, "_network_backend"):
            raise RuntimeError("httpx2/httpcore2 internals changed: cannot install request deadlines")
        pool._network_backend = _DeadlineBackend()


def _timeout_hook(request: httpx2.Request) -> None:
    # huggingface_hub passes timeout=None explicitly for listings; give every request a bound,
    # read per request, so nested hub_client() calls with another timeout just work.
    default = DEFAULTS["timeout"]
    if default is None:
        return
    current = request.extensions.get("timeout") or {}
    request.extensions["timeout"] = {k: (current.get(k) if current.get(k) is not None else default)
                                     for k in ("connect", "read", "write", "pool")}


def _deadline_hook(request: httpx2.Request) -> None:
    timeout = DEFAULTS["timeout"]
    _tl.auto = None if timeout is None else time.monotonic() + (DEFAULTS["deadline_factor"] or 3.0) * timeout


# -- the token stays on the endpoint's origin ------------------------------------------------

_token_origins: dict[str, set[tuple[str, str, int | None]]] = {}
_lock = threading.Lock()


def origin(url: str | httpx2.URL) -> tuple[str, str, int | None]:
    """(scheme, host, port) of a URL, the scheme's default port made explicit."""
    import httpx2

    u = url if isinstance(url, httpx2.URL) else httpx2.URL(str(url))
    return u.scheme, u.host.lower(), u.port or {"http": 80, "https": 443}.get(u.scheme)


def _origin_text(url: str | httpx2.URL) -> str:
    scheme, host, port = origin(url)
    return shown(f"{scheme}://{host}:{port}")


def _token_key(authorization: str) -> str:
    # A digest: the registry never holds a second copy of the token.
    return hashlib.sha256(authorization.encode("utf-8", "surrogateescape")).hexdigest()


def bind_token(cfg: HubConfig) -> None:
    """From now on this process sends ``cfg.token`` only to ``cfg.endpoint``'s origin."""
    if cfg.token:
        with _lock:
            _token_origins.setdefault(_token_key(f"Bearer {cfg.token}"), set()).add(origin(cfg.endpoint))


def _origin_hook(request: httpx2.Request) -> None:
    auth = request.headers.get("Authorization")
    if not auth:
        return
    allowed = _token_origins.get(_token_key(auth))
    if allowed is not None and origin(request.url) not in allowed:
        raise TokenOffOrigin(f"refused to send the Hub token to another origin ({_origin_text(request.url)})")


def make_client() -> httpx2.Client:
    """A client with the deadline backend, the token guard and huggingface_hub's own request hook
    (offline mode, request ids); the factory :func:`hubaudit.httpclient.hub_client` installs."""
    import httpx2
    from huggingface_hub.utils import _http

    client = httpx2.Client(
        event_hooks={"request": [_http.hf_request_event_hook, _timeout_hook, _deadline_hook, _origin_hook]},
        follow_redirects=True, timeout=None, limits=httpx2.Limits(max_connections=256, max_keepalive_connections=64))
    _install_deadlines(client)
    return client


_session: list[Any] = []


def session() -> httpx2.Client:
    """This process's client for the requests hubaudit makes itself (thread-safe, never closed)."""
    if not _session:
        with _lock:
            if not _session:
                _session.append(make_client())
    return _session[0]


# -- bounded bodies --------------------------------------------------------------------------

def _decompressor(encoding: str, first: bytes) -> Any:
    if encoding in ("gzip", "x-gzip"):
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    if encoding == "deflate":  # zlib-wrapped per RFC 9110, raw deflate from some servers
        wrapped = len(first) >= 2 and first[0] & 0x0F == 8 and (first[0] << 8 | first[1]) % 31 == 0
        return zlib.decompressobj(zlib.MAX_WBITS if wrapped else -zlib.MAX_WBITS)
    raise HostileResponse(f"unsupported Content-Encoding {shown(encoding)}", "malformed")


def iter_decoded(resp: httpx2.Response, chunk: int = CHUNK) -> Iterator[bytes]:
    """The body, content-decoded, in pieces of at most ``chunk`` bytes however well it compresses."""
    encoding = resp.headers.get("Content-Encoding", "").strip().lower()
    if encoding in ("", "identity"):
        yield from resp.iter_raw(chunk)
        return
    dec = None
    try:
        for raw in resp.iter_raw(chunk):
            if dec is None:
                dec = _decompressor(encoding, raw)
            data = raw
            while data and not dec.eof:
                out = dec.decompress(data, chunk)  # max_length: inflation happens one chunk at a time
                data = dec.unconsumed_tail
                if out:
                    yield out
            if dec.eof:  # what follows the compressed stream is never read
                return
        if dec is not None and not dec.eof and (tail := dec.flush()):
            yield tail
    except zlib.error as exc:
        raise HostileResponse(f"corrupt {encoding} body: {exc}", "malformed") from None


def read_bounded(resp: httpx2.Response, limit: int, what: str, *, truncate: bool = False) -> bytes:
    """The decoded body, refused (or cut, with ``truncate``) as soon as it exceeds ``limit`` bytes."""
    buf = bytearray()
    for piece in iter_decoded(resp):
        buf += piece
        if len(buf) > limit:
            if truncate:
                return bytes(buf[:limit])
            raise HostileResponse(f"{what} exceeds the {limit / MIB:g} MiB cap on decoded bytes")
    return bytes(buf)


def _raise_for_status(resp: httpx2.Response) -> None:
    """huggingface_hub's error mapping (gated, not found, ...) on a bounded copy of an error body."""
    import httpx2
    from huggingface_hub.utils import hf_raise_for_status

    body = read_bounded(resp, ERROR_BODY_BYTES, "error body", truncate=True)
    try:
        if not isinstance(safejson.loads(body), dict):
            body = b""  # the library reads error JSON as an object
    except safejson.JSONLimitError:
        body = b""
    except ValueError:
        pass  # plain text: the library quotes it
    headers = [(k, v) for k, v in resp.headers.multi_items()
               if k.lower() not in ("content-encoding", "content-length", "transfer-encoding")]
    hf_raise_for_status(httpx2.Response(resp.status_code, headers=headers, content=body, request=resp.request))


def _redirect_target(current: httpx2.URL, location: str) -> httpx2.URL:
    try:
        target = current.join(location)
    except Exception:  # noqa: BLE001 - whatever the header holds
        raise HostileResponse(f"unusable redirect location {shown(location)}", "malformed") from None
    if target.scheme not in ("http", "https"):
        raise HostileResponse(f"redirect to a {shown(target.scheme)} URL", "malformed")
    return target


@contextmanager
def open_get(cfg: HubConfig, url: str | httpx2.URL, *, seconds: float, headers: dict[str, str] | None = None,
             accept_encoding: str = "gzip") -> Iterator[httpx2.Response]:
    """GET ``url`` (on the endpoint's origin) within ``seconds`` in all, redirects included; yields
    the final 2xx response with its body unread. Error statuses raise huggingface_hub's errors."""
    import httpx2
    from huggingface_hub.utils import build_hf_headers

    home = origin(cfg.endpoint)
    current = httpx2.URL(str(url))
    if origin(current) != home:
        raise TokenOffOrigin(f"refused a request to another origin than the endpoint's ({_origin_text(current)})")
    bind_token(cfg)
    client = session()
    base = build_hf_headers(token=False) | {"Accept-Encoding": accept_encoding} | (headers or {})
    on_origin = True
    with request_deadline(seconds):
        for _ in range(cfg.max_redirects + 1):
            on_origin = on_origin and origin(current) == home  # once off the origin, never back with the token
            sent = dict(base)
            if cfg.token and on_origin:
                sent["Authorization"] = f"Bearer {cfg.token}"
            request = client.build_request("GET", current, headers=sent, timeout=cfg.timeout)
            resp = client.send(request, stream=True, follow_redirects=False)
            try:
                if resp.has_redirect_location:
                    current = _redirect_target(current, resp.headers["Location"])
                    continue  # its body is never read
                if resp.status_code >= 400:
                    _raise_for_status(resp)
                if not 200 <= resp.status_code < 300:
                    raise HostileResponse(f"unexpected HTTP {resp.status_code} from {_origin_text(current)}",
                                          "malformed")
                yield resp
                return
            finally:
                resp.close()
    raise HostileResponse(f"more than {cfg.max_redirects} redirects")


def get_json(cfg: HubConfig, url: str | httpx2.URL, what: str) -> tuple[Any, str | None]:
    """(parsed JSON body, the ``Link: rel="next"`` URL or None) of one API GET, bounded by
    ``cfg.max_api_bytes`` decoded bytes, ``cfg.request_seconds`` and the JSON depth cap."""
    with open_get(cfg, url, seconds=cfg.request_seconds) as resp:
        body = read_bounded(resp, cfg.max_api_bytes, what)
        link = resp.links.get("next", {}).get("url")
    try:
        return safejson.loads(body), link
    except safejson.JSONLimitError as exc:
        raise HostileResponse(f"{what}: {exc}") from None
    except ValueError as exc:
        raise HostileResponse(f"{what} is not valid JSON ({exc})", "malformed") from None
