"""HTTP plumbing shared by the Hub-facing stages (hub/, fetch/): settings, retries, error classes.

Why this exists: huggingface_hub 2.x talks through one global ``httpx2`` client whose default
timeout is None, and ``model_info`` never retries. :func:`hub_client` installs a client factory
(:func:`hubaudit.safehttp.make_client`) whose requests all get a timeout, a total deadline and the
token guard, and restores the previous factory on exit. :func:`call_with_retry` adds exponential
backoff with jitter on 5xx/408/connection errors, honours 429 ``RateLimit: "api";r=0;t=N`` /
``Retry-After: N`` and never sleeps past the current :func:`~hubaudit.safehttp.budget`.
:func:`classify` turns any exception into one of a few kinds the pipeline decides on (per-adapter
value vs run-level error); what a hostile endpoint sends is kind ``hostile``: final, never retried.
"""

from __future__ import annotations

import random
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from hubaudit import safehttp
from hubaudit.safehttp import HostileResponse, budget_left

T = TypeVar("T")

RETRY_STATUS = (408, 500, 502, 503, 504)
INVALID_CREDENTIALS = "Invalid credentials in Authorization header"

_factory_lock = threading.Lock()


@dataclass(frozen=True)
class RetryPolicy:
    """Retry budget: ``max_retries`` extra attempts, backoff ``base * 2**n`` capped at ``max_delay``,
    multiplied by a jitter factor in [0.5, 1). A 429 waits the server's reset time instead, unless
    it exceeds ``max_rate_wait`` (then it is beyond the budget at once)."""

    max_retries: int = 5
    base_delay: float = 0.5
    max_delay: float = 8.0
    max_rate_wait: float = 300.0

    def backoff(self, attempt: int) -> float:
        return min(self.max_delay, self.base_delay * 2**attempt) * (0.5 + random.random() / 2)


@dataclass(frozen=True)
class HubConfig:
    """Where and how to talk to the Hub, and what any one exchange may cost. Picklable (it
    travels to Ray workers). ``token`` is never logged or stored (``__repr__`` hides it).

    ``timeout``: seconds for one socket operation (connect, one read). ``deadline_factor``: one
    request, headers and body, ends after ``deadline_factor * timeout`` seconds in all; a download
    gets ``size / min_download_rate`` seconds more (the bytes per second it must average).
    ``max_api_bytes``: decoded bytes of one API body (a listing page, a model_info).
    ``max_pages``: pages of one listing. ``max_redirects``: redirects of one request.
    """

    endpoint: str
    token: str | None = None
    timeout: float = 30.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    deadline_factor: float = 3.0
    min_download_rate: float = 256 * 1024
    max_api_bytes: int = 16 * 1024 * 1024
    max_pages: int = 10_000
    max_redirects: int = 5

    @property
    def request_seconds(self) -> float:
        """Total seconds one API request may take, headers and body."""
        return self.deadline_factor * self.timeout

    def download_seconds(self, size: int) -> float:
        """Total seconds a GET of ``size`` bytes may take."""
        return self.request_seconds + size / self.min_download_rate

    def __repr__(self) -> str:
        return f"HubConfig(endpoint={self.endpoint!r}, token={'***' if self.token else None}, timeout={self.timeout})"


@dataclass(frozen=True)
class Failure:
    """What went wrong, in the pipeline's terms.

    kind: ``transient`` (5xx, 408, reset, truncated, timeout: worth a retry), ``rate_limited``,
    ``unreachable`` (cannot connect), ``auth`` (token rejected), ``not_found``, ``gated``,
    ``disabled``, ``hostile`` (the endpoint sent something we refuse: final, never retried),
    ``other``. ``reason`` is the short code stored with a revision.
    """

    kind: str
    reason: str
    message: str
    wait: float | None = None  # seconds the server asked us to wait (429)


def _response_of(exc: BaseException):
    resp = getattr(exc, "response", None)
    return resp if resp is not None and hasattr(resp, "status_code") else None


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        yield cur
        cur = cur.__cause__ or cur.__context__


def rate_limit_wait(headers) -> float | None:
    """Seconds to wait from ``RateLimit: "api";r=0;t=N`` (IETF draft) or ``Retry-After: N``."""
    value = headers.get("RateLimit") or headers.get("ratelimit")
    if value:
        m = re.search(r"(?:^|;)\s*t=(\d+)", value)
        r = re.search(r"(?:^|;)\s*r=(\d+)", value)
        if m and (r is None or int(r.group(1)) == 0):
            return float(m.group(1))
    retry_after = headers.get("Retry-After")
    if retry_after and retry_after.strip().isdigit():
        return float(retry_after.strip())
    return None


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]


def classify(exc: BaseException) -> Failure:
    """Map an exception (huggingface_hub, httpx2, OSError, wrapped or not) to a :class:`Failure`."""
    import httpx2
    from huggingface_hub import errors as hf

    from hubaudit.safejson import JSONLimitError

    msg = _one_line(exc)
    for e in _chain(exc):
        if isinstance(e, HostileResponse):
            return Failure("hostile", e.reason, msg)
        if isinstance(e, (RecursionError, JSONLimitError)):  # a document nested without bound
            return Failure("hostile", "hostile_metadata", msg)
        if isinstance(e, hf.GatedRepoError):
            return Failure("gated", "gated", msg)
        if isinstance(e, hf.DisabledRepoError):
            return Failure("disabled", "disabled", msg)
        if isinstance(e, (hf.RepositoryNotFoundError, hf.RevisionNotFoundError, hf.RemoteEntryNotFoundError)):
            resp = _response_of(e)
            if resp is not None and resp.status_code == 401 and _is_invalid_credentials(resp):
                return Failure("auth", "auth", msg)
            return Failure("not_found", "not_found", msg)
        resp = _response_of(e)
        if resp is not None:
            status = resp.status_code
            if status == 429:
                return Failure("rate_limited", "rate_limited", msg, rate_limit_wait(resp.headers))
            if status == 401:
                return Failure("auth", "auth", msg)
            if status in RETRY_STATUS:
                return Failure("transient", "timeout" if status == 408 else "server_error", msg)
            if status == 404:
                return Failure("not_found", "not_found", msg)
            if status == 403 and "disabled" in msg.lower():
                return Failure("disabled", "disabled", msg)
            return Failure("other", f"http_{status}", msg)
        if isinstance(e, httpx2.ConnectTimeout):
            return Failure("transient", "timeout", msg)
        if isinstance(e, httpx2.ConnectError):
            return Failure("unreachable", "unreachable", msg)
        if isinstance(e, httpx2.TimeoutException):
            return Failure("transient", "timeout", msg)
        if isinstance(e, (httpx2.NetworkError, httpx2.RemoteProtocolError)):
            return Failure("transient", "connection_error", msg)
        if isinstance(e, OSError) and "Consistency check failed" in str(e):
            return Failure("transient", "truncated", msg)
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return Failure("transient", "connection_error", msg)
    return Failure("other", "error", msg)


def _is_invalid_credentials(resp) -> bool:
    return INVALID_CREDENTIALS.lower() in (resp.headers.get("X-Error-Message") or "").lower()


# Kinds worth another attempt. "unreachable" is retried too: a refused connection is often a
# restarting proxy; beyond the budget it becomes a run-level HubUnavailableError.
RETRYABLE = ("transient", "rate_limited", "unreachable")


# Who is told before each backoff wait: a terminal progress line says "retrying" instead of sitting
# still. Called as observer(failure, attempt, max_retries, delay_s) from whichever thread retries.
_retry_observer: list[Callable[[Failure, int, int, float], None]] = []


@contextmanager
def retry_observer(fn: Callable[[Failure, int, int, float], None]) -> Iterator[None]:
    """Report every retry wait to ``fn`` while the block runs (one observer at a time)."""
    _retry_observer.append(fn)
    try:
        yield
    finally:
        _retry_observer.remove(fn)


def call_with_retry(fn: Callable[[], T], policy: RetryPolicy, *, sleep: Callable[[float], None] = time.sleep) -> T:
    """Call ``fn`` until it succeeds or the retry budget is spent; re-raises the last exception.
    Inside a :func:`~hubaudit.safehttp.budget` it also gives up when a wait would outlast it."""
    attempt = 0
    backoffs = 0  # the exponential grows with failures, not with server-directed 429 waits
    while True:
        try:
            return fn()
        except Exception as exc:  # classified below, re-raised when not retryable
            failure = classify(exc)
            if failure.kind not in RETRYABLE or attempt >= policy.max_retries:
                raise
            if failure.kind == "rate_limited" and failure.wait is not None:
                if failure.wait > policy.max_rate_wait:
                    raise
                delay = failure.wait + random.random() * 0.25  # jitter: do not stampede at reset
            else:
                delay = policy.backoff(backoffs)
                backoffs += 1
            left = budget_left()
            if left is not None and delay >= left:
                raise
            for observe in list(_retry_observer[-1:]):
                observe(failure, attempt + 1, policy.max_retries, delay)
            sleep(delay)
            attempt += 1


_state: dict = {"depth": 0, "saved": None}


@contextmanager
def hub_client(timeout: float, deadline_factor: float = 3.0) -> Iterator[None]:
    """Install a huggingface_hub client factory whose requests all time out after ``timeout``
    seconds unless the call sets its own, end within ``deadline_factor * timeout`` in all and never
    carry a bound token off the endpoint's origin; restore the previous factory (and timeout) on exit.

    Re-entrant and thread-safe. The factory keeps the library's own request hook (offline mode,
    request ids, download counter header).
    """
    from huggingface_hub.utils import _http

    # Locals, not module globals, in the finally: a permanent client (ensure_hub_client) is closed when
    # the interpreter shuts down, after module globals may already have been cleared to None.
    lock, state, defaults = _factory_lock, _state, safehttp.DEFAULTS
    with lock:
        previous = dict(defaults)
        if _state["depth"] == 0:
            _state["saved"] = _http._GLOBAL_CLIENT_FACTORY
            _http.set_client_factory(safehttp.make_client)
            _quiet_hf_logging()
        _state["depth"] += 1
        safehttp.DEFAULTS.update(timeout=timeout, deadline_factor=deadline_factor)
    try:
        yield
    finally:
        with lock:
            state["depth"] -= 1
            defaults.update(previous)
            # At interpreter shutdown there is no client left to restore (and huggingface_hub's module
            # attributes may already be gone).
            if state["depth"] == 0 and state["saved"] is not None and not sys.is_finalizing():
                _http.set_client_factory(state["saved"])
                state["saved"] = None


def ensure_hub_client(timeout: float, deadline_factor: float = 3.0) -> None:
    """Make sure a timeout factory is installed: a no-op inside :func:`hub_client` (the crawl's
    threads); otherwise (a Ray worker, a one-off check) install it for the rest of the process."""
    with _factory_lock:
        if _state["depth"] > 0:
            return
    cm = hub_client(timeout, deadline_factor)
    cm.__enter__()  # deliberately never exited; kept referenced so it is never finalized
    _permanent.append(cm)


_permanent: list = []


def _quiet_hf_logging() -> None:
    # huggingface_hub logs each retry as a warning on stderr; our summary reports outcomes instead.
    from huggingface_hub.utils import logging as hf_logging

    hf_logging.set_verbosity_error()


DEFAULT_ENDPOINT = "https://huggingface.co"


def hub_config_from_env(env, *, timeout: float = 30.0, retry: RetryPolicy | None = None, **limits: Any) -> HubConfig:
    """HubConfig from an environment mapping (``HF_ENDPOINT``, ``HF_TOKEN``), read at the CLI edge;
    ``limits`` set :class:`HubConfig`'s bounds (``deadline_factor``, ``max_api_bytes``, ...),
    the others keep their defaults.

    huggingface_hub reads HF_ENDPOINT once at import; we read it here and pass it explicitly.
    """
    endpoint = (env.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")
    token = env.get("HF_TOKEN") or env.get("HUGGING_FACE_HUB_TOKEN") or None
    return HubConfig(endpoint=endpoint, token=token, timeout=timeout, retry=retry or RetryPolicy(), **limits)
