"""A Hub-compatible HTTP server on 127.0.0.1 for tests, the demo and benchmarks.

It speaks the endpoints and headers the real ``huggingface_hub`` client needs:
``/api/models`` (repeated ``filter``/``expand``, ``limit`` as page size, cursor pagination through
an absolute ``Link`` header), ``/api/models/{repo}[/revision/{rev}]`` (``blobs``,
``securityStatus``), ``/api/models/{repo}/tree/{rev}``, and HEAD/GET ``/{repo}/resolve/{rev}/{path}``
with Range (206/416), ``X-Repo-Commit``, ``ETag``, ``X-Linked-Etag``/``X-Linked-Size``. Errors
carry ``X-Error-Code`` (the client maps errors by it on plain http). Faults are injected per
endpoint/repo/file: 429 with ``RateLimit``, 5xx, connection reset or truncation mid-body, latency,
wrong sha256 in metadata, gated and deleted repos, and the moves of a hostile endpoint (forged
headers, dripped responses, gzip bombs, deep JSON, bodies larger than promised; see ``Fault``).
A repo's ``listing_overrides`` / ``info_overrides`` replace fields of its listing entry / model
JSON (a forged ``sha`` in the listing is then served like the head). ``securityRepoStatus`` comes
from a repo's ``scans_done``/``security_issues``; :meth:`FakeHub.add_child` adds a model-tree child
(``base_model:<parent>`` and ``base_model:<relation>:<parent>`` tags). Every request is logged.
"""

from __future__ import annotations

import base64
import json
import socket
import struct
import threading
import time
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote

from hubaudit.demo.fakehub.adapters import random_adapter_files
from hubaudit.demo.fakehub.faults import Fault, LoggedRequest, parse_range
from hubaudit.demo.fakehub.hostile import deep_json, gzip_bomb, zeros
from hubaudit.demo.fakehub.repos import FakeRepo, adapter_card, child_tags, read_folder

# Fields /api/models returns with no expand/full.
_DEFAULT_LIST_FIELDS = ("likes", "private", "downloads", "tags", "pipeline_tag", "library_name", "createdAt")
_FULL_LIST_FIELDS = _DEFAULT_LIST_FIELDS + ("author", "sha", "lastModified", "gated", "disabled", "siblings")
_SORT_KEYS = {"createdAt": "created_at", "lastModified": "last_modified", "downloads": "downloads", "likes": "likes"}
INVALID_CREDENTIALS = "Invalid credentials in Authorization header"
# Fault kinds that replace the whole answer with a hostile 200.
_REPLACING = ("gzip_bomb", "deep_json", "oversize")


class FakeHub:
    """The server plus its repositories. Use as a context manager or call start()/stop()."""

    def __init__(self, *, latency: float = 0.0, page_size: int = 1000, accepted_tokens: set[str] | None = None,
                 gated_access_tokens: set[str] | None = None, host: str = "127.0.0.1",
                 cdn_redirect: bool = False) -> None:
        self.latency = latency
        # Like the real Hub: LFS files answer 302 to a CDN on another origin ("localhost" vs
        # "127.0.0.1"), with X-Linked-Etag/Size and X-Repo-Commit on the redirect itself.
        self.cdn_redirect = cdn_redirect
        self.page_size = page_size
        self.accepted_tokens = accepted_tokens
        self.gated_access_tokens = gated_access_tokens or set()
        self.repos: dict[str, FakeRepo] = {}
        self.faults: list[Fault] = []
        self.requests: list[LoggedRequest] = []
        self._lock = threading.Lock()
        self._host = host
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._closing = threading.Event()  # ends dripping responses when the server stops

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> FakeHub:
        handler = type("Handler", (_Handler,), {"hub": self})
        server = _Server((self._host, 0), handler)
        server.daemon_threads = True
        server.request_queue_size = 256
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._closing.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeHub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server is not None, "start() the server first"
        return f"http://{self._host}:{self._server.server_address[1]}"

    # -- content -----------------------------------------------------------------------------
    def add_repo(self, repo_id: str, files: dict[str, bytes] | str | Path, **meta: Any) -> FakeRepo:
        """Add (or replace) a repo from {path: bytes} or a local folder; meta = FakeRepo fields."""
        data = read_folder(files) if isinstance(files, (str, Path)) else files
        with self._lock:
            repo = FakeRepo(id=repo_id, **meta)
            repo.commit(data, when=meta.get("last_modified"))
            self.repos[repo_id] = repo
        return repo

    def add_adapter(self, repo_id: str, base: str, *, seed: int, relation: str = "adapter",
                    card_base: str | None = None, **kwargs: Any) -> FakeRepo:
        """A random LoRA adapter of ``base`` with the tags and card the Hub derives for it."""
        meta = {k: kwargs.pop(k) for k in list(kwargs) if k in FakeRepo.__dataclass_fields__}
        tags, card = adapter_card(card_base or base, relation=relation)
        files = random_adapter_files(base, seed=seed, **kwargs)
        meta.setdefault("tags", tags)
        meta.setdefault("card_data", card)
        meta.setdefault("library_name", "peft")
        return self.add_repo(repo_id, files, **meta)

    def add_child(self, repo_id: str, parent: str, relation: str, **meta: Any) -> FakeRepo:
        """A small model repo that declares ``parent`` as its base (a merge, finetune, quantized
        copy or adapter of it), tagged as the Hub tags it; ``meta`` = FakeRepo fields."""
        tags = [*meta.pop("tags", []), *child_tags(parent, relation)]
        card = meta.pop("card_data", {"base_model": parent, "base_model_relation": relation})
        files = {"config.json": b"{}", "model.safetensors": f"{relation} of {parent}".encode()}
        return self.add_repo(repo_id, files, tags=tags, card_data=card, **meta)

    def update_repo(self, repo_id: str, files: dict[str, bytes]) -> str:
        """Push a new commit; returns the new head sha."""
        with self._lock:
            return self.repos[repo_id].commit(files)

    def delete_repo(self, repo_id: str, *, keep_listed: bool = True) -> None:
        """Delete a repo; ``keep_listed`` simulates a stale listing (404 on everything else)."""
        with self._lock:
            if keep_listed:
                self.repos[repo_id].deleted = True
            else:
                del self.repos[repo_id]

    def set_wrong_sha256(self, repo_id: str, path: str, rev: str = "main") -> None:
        """Make the metadata advertise a wrong sha256 for one LFS file."""
        with self._lock:
            self.repos[repo_id].files(rev)[path].advertised_sha256 = "0" * 64

    def add_fault(self, fault: Fault) -> Fault:
        with self._lock:
            self.faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        with self._lock:
            self.faults.clear()

    # -- request log -------------------------------------------------------------------------
    def count(self, endpoint: str | None = None, *, repo: str | None = None, method: str | None = None) -> int:
        with self._lock:
            return sum(1 for r in self.requests if (endpoint is None or r.endpoint == endpoint)
                       and (repo is None or r.repo == repo) and (method is None or r.method == method))

    def listing_filters(self) -> list[tuple[str, ...]]:
        """The ``filter`` values of every ``/api/models`` request so far, in order (decoded)."""
        with self._lock:
            paths = [r.path for r in self.requests if r.endpoint == "list"]
        return [tuple(parse_qs(p.partition("?")[2], keep_blank_values=True).get("filter", [])) for p in paths]

    def reset_log(self) -> None:
        with self._lock:
            self.requests.clear()

    def _take_fault(self, endpoint: str, repo: str | None, path: str | None, method: str, ranged: bool,
                    query: str = "") -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.matches(endpoint, repo, path, method, ranged, query):
                    if fault.times is not None:
                        fault.times -= 1
                    return fault
        return None

    def _log(self, entry: LoggedRequest) -> None:
        with self._lock:
            self.requests.append(entry)


class _Server(ThreadingHTTPServer):
    def handle_error(self, request, client_address) -> None:  # stdlib signature
        # Clients hanging up mid-response (timeouts, injected resets) are expected here; the
        # stdlib default prints a traceback to stderr, which would pollute the crawler's stderr.
        pass


def _encode_cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"$offset": offset}).encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> int:
    try:
        return int(json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))["$offset"])
    except (ValueError, KeyError, TypeError):
        return -1


class _HubError(Exception):
    def __init__(self, status: int, code: str | None, message: str, commit: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.commit = status, code, message, commit


class _Handler(BaseHTTPRequestHandler):
    hub: FakeHub
    protocol_version = "HTTP/1.1"
    server_version = "FakeHub/1.0"
    # Headers and body go out in separate writes; without TCP_NODELAY, Nagle + delayed ACK add
    # ~40 ms to every response, an artefact the real Hub does not have.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:  # stdlib signature
        pass  # the hub keeps its own structured log

    def do_GET(self) -> None:  # stdlib naming
        self._dispatch()

    def do_HEAD(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        self._dispatch()

    # -- routing -----------------------------------------------------------------------------
    def _route(self, raw_path: str) -> tuple[str, str | None, str | None, str | None]:
        """(endpoint, repo_id, revision, file path) from the raw (still percent-encoded) path."""
        if raw_path == "/api/models":
            return "list", None, None, None
        if raw_path.startswith("/api/models/"):
            rest = raw_path[len("/api/models/"):]
            for marker, endpoint in (("/revision/", "info"), ("/tree/", "tree")):
                if marker in rest:
                    repo, _, tail = rest.partition(marker)
                    rev, _, sub = tail.partition("/")
                    return endpoint, unquote(repo), unquote(rev), unquote(sub) or None
            return "info", unquote(rest), "main", None
        if raw_path.startswith("/cdn/"):
            return "cdn", None, None, raw_path[len("/cdn/"):]
        if "/resolve/" in raw_path:
            repo, _, tail = raw_path.lstrip("/").partition("/resolve/")
            rev, _, path = tail.partition("/")
            return "resolve", unquote(repo), unquote(rev), unquote(path)
        return "other", None, None, None

    def _dispatch(self) -> None:
        hub = self.hub
        raw_path, _, query = self.path.partition("?")
        endpoint, repo_id, rev, path = self._route(raw_path)
        auth = self.headers.get("Authorization")
        entry = LoggedRequest(self.command, self.path, endpoint, repo_id, authorization=auth,
                              range=self.headers.get("Range"))
        hub._log(entry)
        if hub.latency:
            time.sleep(hub.latency)
        fault = hub._take_fault(endpoint, repo_id, path, self.command, "Range" in self.headers,
                                unquote(query.replace("+", " ")))
        if fault is not None and fault.kind == "latency":
            time.sleep(fault.delay)
            fault = None
        if fault is not None and fault.kind == "status":
            entry.status = fault.status
            return self._send_fault_status(fault, endpoint)
        if fault is not None and fault.kind in _REPLACING:
            entry.status = 200
            return self._send_hostile(fault, repo_id, rev, entry)
        try:
            self._check_auth(auth)
            status, headers, body = self._answer(endpoint, repo_id, rev, path,
                                                 parse_qs(query, keep_blank_values=True), auth)
        except _HubError as err:
            status, headers, body = self._error_parts(err)
        entry.status = status
        self._send(status, headers, body, fault)

    def _check_auth(self, auth: str | None) -> None:
        accepted = self.hub.accepted_tokens
        if accepted is not None and auth is not None:
            token = auth.removeprefix("Bearer ").strip()
            if token not in accepted:
                raise _HubError(401, None, INVALID_CREDENTIALS)

    def _answer(self, endpoint: str, repo_id: str | None, rev: str | None, path: str | None,
                q: dict[str, list[str]], auth: str | None) -> tuple[int, dict[str, str], bytes]:
        if endpoint == "list":
            return self._list(q)
        if endpoint == "other":
            raise _HubError(404, None, "Not Found")
        if endpoint == "cdn":
            return self._cdn(path or "")
        repo = self.hub.repos.get(repo_id or "")
        if repo is None or repo.deleted or repo.private:
            raise _HubError(404, "RepoNotFound", f"Repository Not Found for url: {self.path}.")
        commit = repo.resolve(rev or "main")
        if commit is None:
            raise _HubError(404, "RevisionNotFound", f"Invalid rev id: {rev}")
        if endpoint == "info":
            blobs = q.get("blobs", ["false"])[0] == "true"
            security = q.get("securityStatus", ["false"])[0] == "true"
            return 200, {}, _json(repo.model_json(commit, blobs=blobs, security=security) | repo.info_overrides)
        if endpoint == "tree":
            return self._tree(repo, commit, path)
        return self._resolve(repo, commit, path or "", auth)

    def _list(self, q: dict[str, list[str]]) -> tuple[int, dict[str, str], bytes]:
        hub = self.hub
        filters = [f for f in q.get("filter", []) if f]
        with hub._lock:
            repos = [r for r in hub.repos.values()
                     if not r.private and r.matches(filters, (q.get("author") or [None])[0],
                                                    (q.get("search") or [None])[0])]
        sort = (q.get("sort") or [None])[0]
        if sort in _SORT_KEYS:
            repos.sort(key=lambda r: getattr(r, _SORT_KEYS[sort]), reverse=True)
        page = int((q.get("limit") or [hub.page_size])[0] or hub.page_size)
        cursor = (q.get("cursor") or [None])[0]
        offset = _decode_cursor(cursor) if cursor else 0
        if offset < 0:
            raise _HubError(400, None, "Invalid cursor")
        chunk = repos[offset:offset + page]
        expand = q.get("expand")
        if expand:
            names = tuple(expand)
        elif q.get("full", ["false"])[0] == "true":
            names = _FULL_LIST_FIELDS
        else:
            names = _DEFAULT_LIST_FIELDS + (("cardData",) if q.get("cardData", ["false"])[0] == "true" else ())
        items = []
        for r in chunk:
            item: dict[str, Any] = {"_id": r.model_json(r.head, blobs=False, security=False)["_id"], "id": r.id}
            if not expand:
                item["modelId"] = r.id
            item.update({n: r.field(n, r.head) for n in names})
            item.update(r.listing_overrides)
            items.append(item)
        headers: dict[str, str] = {}
        if offset + page < len(repos):
            # Absolute URL from the Host header: the client follows it verbatim.
            keep = [(k, v) for k, vs in q.items() if k != "cursor" for v in vs]
            qs = "&".join(f"{quote(k)}={quote(v, safe='')}"
                          for k, v in keep + [("cursor", _encode_cursor(offset + page))])
            host = self.headers.get("Host") or f"{self.server.server_address[0]}:{self.server.server_address[1]}"
            headers["Link"] = f'<http://{host}/api/models?{qs}>; rel="next"'
        return 200, headers, _json(items)

    def _tree(self, repo: FakeRepo, commit: str, sub: str | None) -> tuple[int, dict[str, str], bytes]:
        files = repo.files(commit) or {}
        out = []
        for p in sorted(files):
            if sub and not p.startswith(sub.rstrip("/") + "/"):
                continue
            f = files[p]
            e: dict[str, Any] = {"type": "file", "path": p, "size": f.size, "oid": f.blob_id}
            if f.lfs:
                e["lfs"] = {"oid": f.advertised_sha256 or f.sha256, "size": f.size, "pointerSize": 134}
            out.append(e)
        return 200, {}, _json(out)

    def _resolve(self, repo: FakeRepo, commit: str, path: str, auth: str | None) -> tuple[int, dict[str, str], bytes]:
        if repo.disabled:
            raise _HubError(403, None, "Access to this resource is disabled.", commit)
        if repo.gated:
            token = (auth or "").removeprefix("Bearer ").strip()
            if token not in self.hub.gated_access_tokens:
                raise _HubError(401 if not auth else 403, "GatedRepo",
                                f"Access to model {repo.id} is restricted. You must have access to it and be "
                                "authenticated to access it. Please log in.",
                                commit)
        f = (repo.files(commit) or {}).get(path)
        if f is None:
            raise _HubError(404, "EntryNotFound", f"{path} does not exist on \"{commit}\"", commit)
        headers = {"X-Repo-Commit": commit, "ETag": f'"{f.etag}"', "Accept-Ranges": "bytes",
                   "Content-Type": "application/octet-stream"}
        if f.lfs:
            headers["X-Linked-Etag"] = f'"{f.sha256}"'
            headers["X-Linked-Size"] = str(f.size)
            if self.hub.cdn_redirect:
                port = self.server.server_address[1]
                headers["Location"] = f"http://localhost:{port}/cdn/{f.sha256}"
                return 302, headers, b""
        return self._bytes(f.data, headers)

    def _cdn(self, sha256: str) -> tuple[int, dict[str, str], bytes]:
        with self.hub._lock:
            data = next((f.data for r in self.hub.repos.values() for files in r.commits.values()
                         for f in files.values() if f.sha256 == sha256), None)
        if data is None:
            raise _HubError(404, None, "NoSuchKey")
        return self._bytes(data, {"ETag": f'"{sha256}"', "Accept-Ranges": "bytes",
                                  "Content-Type": "application/octet-stream"})

    def _bytes(self, data: bytes, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        """200 with the body, or 206/416 for a ``Range`` GET."""
        rng = self.headers.get("Range")
        if rng and self.command == "GET":
            span = parse_range(rng, len(data))
            if span is None:
                headers["Content-Range"] = f"bytes */{len(data)}"
                return 416, headers, b""
            a, b = span
            headers["Content-Range"] = f"bytes {a}-{b}/{len(data)}"
            return 206, headers, data[a:b + 1]
        return 200, headers, data

    # -- output ------------------------------------------------------------------------------
    def _error_parts(self, err: _HubError) -> tuple[int, dict[str, str], bytes]:
        headers = {"X-Error-Message": err.message}
        if err.code:
            headers["X-Error-Code"] = err.code
        if err.commit:
            headers["X-Repo-Commit"] = err.commit
        return err.status, headers, _json({"error": err.message})

    def _send_fault_status(self, fault: Fault, endpoint: str) -> None:
        headers: dict[str, str] = {}
        if fault.status == 429:
            bucket = "resolvers" if endpoint == "resolve" else "api"
            reset = int(fault.reset)
            if fault.retry_after_header:
                headers["Retry-After"] = str(reset)
            else:
                headers["RateLimit"] = f'"{bucket}";r=0;t={reset}'
                headers["RateLimit-Policy"] = f'"fixed window";"{bucket}";q=500;w=300'
            message = f"you have reached your '{bucket}' rate limit"
        else:
            message = f"injected {fault.status}"
        headers["X-Error-Message"] = message
        self._send(fault.status, headers, _json({"error": message}), None)

    def _send_hostile(self, fault: Fault, repo_id: str | None, rev: str | None, entry: LoggedRequest) -> None:
        """A 200 whose body is a gzip bomb, deep JSON or far more bytes than the metadata says."""
        headers = {"Content-Type": "application/json"}
        if fault.kind == "gzip_bomb":
            # No Content-Length: the body runs until the connection closes (RFC 9112 §6.3).
            headers |= {"Content-Encoding": "gzip", "Connection": "close"}
            chunks, length = gzip_bomb(fault.size), None
        elif fault.kind == "deep_json":
            repo = self.hub.repos.get(repo_id or "")
            commit = (repo.resolve(rev or "main") if repo is not None else None) or "0" * 40
            body = deep_json(repo_id or "x", commit, fault.size)
            chunks, length = iter([body]), len(body)
        else:
            headers["Content-Type"] = "application/octet-stream"
            chunks, length = zeros(fault.size), fault.size
        self.send_response(200)
        for k, v in headers.items():
            self.send_header(k, v)
        if length is not None:
            self.send_header("Content-Length", str(length))
        self.end_headers()
        self.close_connection = True
        if self.command == "HEAD":
            return
        try:
            for chunk in chunks:
                if self.hub._closing.is_set():
                    return
                self.wfile.write(chunk)
                entry.sent += len(chunk)
        except OSError:  # the client hung up, as it should
            return

    def _drip(self, status: int, headers: dict[str, str], body: bytes, fault: Fault) -> None:
        """The response one byte per ``fault.delay`` seconds: from the status line on
        (``drip_headers``) or from the first body byte (``drip``)."""
        lines = [f"{self.protocol_version} {status} {self.responses.get(status, ('',))[0]}"]
        lines += [f"{k}: {v}" for k, v in headers.items()] + [f"Content-Length: {len(body)}", "", ""]
        head = "\r\n".join(lines).encode("latin-1")
        raw = head + (b"" if self.command == "HEAD" else body)
        self.close_connection = True
        try:
            start = 0
            if fault.kind == "drip":
                self.wfile.write(head)
                start = len(head)
            for i in range(start, len(raw)):
                if self.hub._closing.wait(fault.delay):
                    return
                self.wfile.write(raw[i:i + 1])
        except OSError:
            return

    def _send(self, status: int, headers: dict[str, str], body: bytes, fault: Fault | None) -> None:
        headers.setdefault("Content-Type", "application/json")
        if fault is not None and fault.kind == "headers":
            headers.update(fault.headers or {})
        if fault is not None and fault.kind in ("drip", "drip_headers"):
            return self._drip(status, headers, body, fault)
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command == "HEAD":
            return
        if fault is not None and fault.kind in ("reset", "truncate") and body:
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            if fault.kind == "reset":
                # SO_LINGER 0 turns close() into a TCP RST ("connection reset by peer").
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
            return
        self.wfile.write(body)


def _json(obj: Any) -> bytes:
    return json.dumps(obj, default=lambda o: o.isoformat() if isinstance(o, datetime) else str(o)).encode()


def utcnow() -> datetime:
    return datetime.now(timezone.utc)
