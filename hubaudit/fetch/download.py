"""Pinned downloads with our own integrity check, into a cache that does not grow without bound.

The endpoint may be hostile, so nothing it sends names a file: the snapshot folder is built from a
digest of the repo id and the validated 40-hex commit sha, the file names are ours, and no ETag is
read at all (``hf_hub_download`` names its cached blob after the server's ETag). Each file is one
plain GET of our own (:func:`hubaudit.safehttp.open_get`: total deadline, the token never off the
endpoint's origin, a CDN redirect followed without it) streamed into a temp file inside the
snapshot folder, hashed on the way, and cut off as soon as the body runs past the size the
metadata promised (Content-Length is never trusted). Only a verified file gets its final name:
sha256 against ``siblings[].lfs.sha256`` for LFS files, the git blob id (sha1 of
``b"blob <len>\\0" + data``) for small regular files.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from hubaudit.httpclient import HubConfig, call_with_retry
from hubaudit.safehttp import iter_decoded, open_get

CHUNK = 1 << 20
_SHA = re.compile(r"[0-9a-f]{40}")  # a git commit id as the Hub writes it


@dataclass(frozen=True)
class Wanted:
    """A file to fetch and the hashes the Hub's metadata promises for it."""

    name: str
    size: int | None = None
    sha256: str | None = None  # LFS files
    blob_id: str | None = None  # git blob sha1 (regular files)


@dataclass(frozen=True)
class Fetched:
    """Either ``ok`` with the snapshot folder, or a per-adapter problem (``reason``, one-line ``message``)."""

    ok: bool
    folder: Path | None = None
    files: list[dict] = field(default_factory=list)  # [{"name", "size", "sha256", "verified"}]
    reason: str | None = None
    message: str | None = None


def file_hashes(path: str | Path) -> tuple[str, str, int]:
    """(sha256, git blob sha1, size) of a file in one streaming pass."""
    size = os.path.getsize(path)
    sha256 = hashlib.sha256()
    sha1 = hashlib.sha1(b"blob %d\0" % size)
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            sha256.update(chunk)
            sha1.update(chunk)
    return sha256.hexdigest(), sha1.hexdigest(), size


def _problem(w: Wanted, size: int, got256: str, got1: str) -> str | None:
    """Why a fetched file does not match its metadata, or None."""
    if w.size is not None and size != w.size:
        return f"{w.name}: {size} bytes, metadata says {w.size}"
    if w.sha256 is not None and got256 != w.sha256.lower():
        return f"{w.name}: sha256 {got256[:12]}… != LFS metadata {w.sha256[:12]}…"
    if w.sha256 is None and w.blob_id is not None and got1 != w.blob_id.lower():
        return f"{w.name}: git blob {got1[:12]}… != metadata {w.blob_id[:12]}…"
    return None


def snapshot_dir(cache_dir: str | Path, repo_id: str, sha: str) -> Path:
    """``snapshots/<sha256(repo id)[:32]>/<sha>``: only a digest we computed and a sha we
    validated, whatever the repo id holds (ValueError for anything but a 40-hex sha)."""
    if not (isinstance(sha, str) and _SHA.fullmatch(sha)):
        raise ValueError("a snapshot folder needs a 40-hex commit sha")
    return Path(cache_dir) / "snapshots" / hashlib.sha256(repo_id.encode()).hexdigest()[:32] / sha


class _TooLong(Exception):
    """The body ran past the size the metadata promised."""


def _stream(cfg: HubConfig, url: str, w: Wanted, folder: Path) -> tuple[Path, str, str, int]:
    """GET ``url`` into a temp file in ``folder``, hashing on the way; (temp path, sha256, git
    blob sha1, size). Raises :class:`_TooLong` at the first byte past ``w.size`` and
    ``ConnectionError`` on a short body; the temp file is gone whenever this raises."""
    size = w.size or 0
    tmp = folder / f".incoming-{uuid.uuid4().hex}"
    sha256, sha1, n = hashlib.sha256(), hashlib.sha1(b"blob %d\0" % size), 0
    try:
        with open_get(cfg, url, seconds=cfg.download_seconds(size), accept_encoding="identity") as resp, \
                open(tmp, "xb") as fh:
            for chunk in iter_decoded(resp, CHUNK):
                n += len(chunk)
                if n > size:
                    raise _TooLong()
                sha256.update(chunk)
                sha1.update(chunk)
                fh.write(chunk)
        if n < size:
            raise ConnectionError(f"short read: {n} of {size} bytes")
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp, sha256.hexdigest(), sha1.hexdigest(), n


def _write_verified(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".incoming-{uuid.uuid4().hex}")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def download_verified(cfg: HubConfig, repo_id: str, sha: str, wanted: list[Wanted], cache_dir: str | Path,
                      *, preloaded: dict[str, bytes] | None = None) -> Fetched:
    """Fetch each file at commit ``sha`` into ``cache_dir`` and verify it; all files end up in
    one snapshot folder (a verified copy already there, from a kept cache, is used as is).

    Files already in memory (``preloaded``, e.g. read whole by the header pre-check) are verified
    before they are written; the others are streamed (see the module docstring), each with a
    total deadline of ``cfg.download_seconds(size)``. A file needs a size in its metadata.
    Network failures beyond the retry budget propagate (the caller classifies them); a body
    longer than promised, or a hash or size mismatch, is ``reason="hash_mismatch"``, and nothing
    unverified is left behind.
    """
    from huggingface_hub import hf_hub_url

    folder = snapshot_dir(cache_dir, repo_id, sha)
    folder.mkdir(parents=True, exist_ok=True)
    out: list[dict] = []
    for w in wanted:
        if Path(w.name).name != w.name or w.name in ("", ".", ".."):
            raise ValueError("wanted file names are plain names chosen by the caller")
        if w.size is None:
            return Fetched(False, reason="hostile_metadata", message=f"{w.name}: the metadata gives no size")
        target = folder / w.name
        data = (preloaded or {}).get(w.name)
        cached = file_hashes(target) if data is None and target.is_file() else None
        problem: str | None = None
        if data is not None:
            got256 = hashlib.sha256(data).hexdigest()
            got1 = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
            size = len(data)
            problem = _problem(w, size, got256, got1)
            if problem is None:
                _write_verified(target, data)
        elif cached is not None and _problem(w, cached[2], cached[0], cached[1]) is None:
            got256, got1, size = cached
        else:
            url = hf_hub_url(repo_id, w.name, revision=sha, endpoint=cfg.endpoint)
            try:
                tmp, got256, got1, size = call_with_retry(lambda url=url, w=w: _stream(cfg, url, w, folder), cfg.retry)
            except _TooLong:
                return Fetched(False, reason="hash_mismatch",
                               message=f"{w.name}: the body runs past the {w.size} bytes the metadata promised")
            problem = _problem(w, size, got256, got1)
            if problem is None:
                os.replace(tmp, target)
            else:
                tmp.unlink(missing_ok=True)
        if problem is not None:
            return Fetched(False, reason="hash_mismatch", message=problem)
        out.append({"name": w.name, "size": size, "sha256": got256, "verified": bool(w.sha256 or w.blob_id)})
    return Fetched(True, folder=folder, files=out)


# -- cache housekeeping ----------------------------------------------------------------------

def task_cache_dir(cache_root: str | Path, keep: bool) -> Path:
    """Where one fetch writes: the shared persistent cache with ``keep`` (a re-run of a kept
    commit makes no request at all), else a private temp folder the caller removes."""
    root = Path(cache_root)
    path = root / "hub" if keep else root / "tmp" / uuid.uuid4().hex
    path.mkdir(parents=True, exist_ok=True)
    return path


def remove_tree(path: str | Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def sweep_stale(cache_root: str | Path, older_than_s: float = 3600.0) -> int:
    """Delete what killed runs left (older than ``older_than_s``): temp fetch folders, and partial
    downloads in the kept cache's snapshot folders. Returns how many."""
    root = Path(cache_root)
    cutoff = time.time() - older_than_s
    stale = [*(root / "tmp").glob("*"), *(root / "hub" / "snapshots").glob("*/*/.incoming-*")]
    removed = 0
    for path in stale:
        try:
            if path.lstat().st_mtime < cutoff:
                if path.is_dir() and not path.is_symlink():
                    remove_tree(path)
                else:
                    path.unlink()
                removed += 1
        except OSError:
            continue
    return removed
