"""Pinned downloads with our own integrity check, into a cache that does not grow without bound.

``hf_hub_download`` only checks the byte count, and names the cached blob after the server's ETag
(hub_api.md §0.5, §3.5); we hash every file ourselves: sha256 against ``siblings[].lfs.sha256``
for LFS files, the git blob id (sha1 of ``b"blob <len>\\0" + data``) for small regular files.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from hubaudit.fetch.header import WHOLE_FILE_BYTES, ranged_get
from hubaudit.httpclient import HubConfig, call_with_retry

CHUNK = 1 << 20


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
    """``models--ns--name/snapshots/<sha>`` of the HF cache layout: files written here directly are
    found by a later ``hf_hub_download(revision=sha)`` with no request (hub_api.md §3.1)."""
    return Path(cache_dir) / ("models--" + repo_id.replace("/", "--")) / "snapshots" / sha


def download_verified(cfg: HubConfig, repo_id: str, sha: str, wanted: list[Wanted], cache_dir: str | Path,
                      *, preloaded: dict[str, bytes] | None = None, small_file_bytes: int = WHOLE_FILE_BYTES) -> Fetched:
    """Fetch each file at commit ``sha`` into ``cache_dir`` and verify it; all files end up in
    one snapshot folder.

    Files already in memory (``preloaded``, e.g. read whole by the header pre-check) and small
    files of known size (one plain GET) are verified *before* they are written; larger files
    go through ``hf_hub_download`` (HEAD + GET, resumable) and are hashed on disk. Network
    failures beyond the retry budget propagate (the caller classifies them); a hash or size
    mismatch is returned as ``reason="hash_mismatch"`` and nothing unverified is left behind.
    """
    from huggingface_hub import hf_hub_download, hf_hub_url

    folder = snapshot_dir(cache_dir, repo_id, sha)
    folder.mkdir(parents=True, exist_ok=True)
    out: list[dict] = []
    for w in wanted:
        data = (preloaded or {}).get(w.name)
        if data is None and w.size is not None and w.size <= small_file_bytes:
            url = hf_hub_url(repo_id, w.name, revision=sha, endpoint=cfg.endpoint)
            data = call_with_retry(lambda url=url, w=w: ranged_get(cfg, url, 0, max(w.size - 1, 0)) if w.size else b"",
                                   cfg.retry)
        if data is not None:
            got256 = hashlib.sha256(data).hexdigest()
            got1 = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
            problem = _problem(w, len(data), got256, got1)
            if problem is None:
                (folder / w.name).write_bytes(data)
            size = len(data)
        else:
            path = call_with_retry(
                lambda w=w: hf_hub_download(repo_id, w.name, revision=sha, cache_dir=str(cache_dir),
                                            endpoint=cfg.endpoint, token=cfg.token or False, etag_timeout=cfg.timeout),
                cfg.retry,
            )
            got256, got1, size = file_hashes(path)
            problem = _problem(w, size, got256, got1)
            if problem is not None:  # never leave an unverified blob in a kept cache
                blob = Path(path).resolve()
                Path(path).unlink(missing_ok=True)
                blob.unlink(missing_ok=True)
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
    """Delete temp fetch folders left by killed runs (older than ``older_than_s``); returns how many."""
    tmp = Path(cache_root) / "tmp"
    if not tmp.is_dir():
        return 0
    cutoff = time.time() - older_than_s
    removed = 0
    for child in tmp.iterdir():
        try:
            if child.stat().st_mtime < cutoff:
                remove_tree(child)
                removed += 1
        except OSError:
            continue
    return removed
