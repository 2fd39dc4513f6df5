"""Repositories of the fake Hub: files, git blob ids, LFS sha256, commit shas, card metadata.

A repo is built from a local folder (or a dict of files). Every content change makes a new
commit whose 40-hex sha is derived from the content, so the same files always get the same sha
and a changed file gets a new one (the crawler's incremental logic keys on it).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

# Files the real Hub stores in LFS (by extension); everything else is a plain git blob.
LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf", ".h5", ".msgpack", ".onnx")


def git_blob_sha1(data: bytes) -> str:
    """Git blob id: sha1(b"blob <len>\\0" + data)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    """The git-lfs pointer file stored in git for an LFS file (its length is ``pointerSize``)."""
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


@dataclass
class FakeFile:
    """One file of one commit."""

    path: str
    data: bytes
    lfs: bool
    sha256: str = ""
    blob_id: str = ""
    # Fault: the sha256 the metadata advertises instead of the real one (None = honest).
    advertised_sha256: str | None = None

    def __post_init__(self) -> None:
        self.sha256 = hashlib.sha256(self.data).hexdigest()
        # For an LFS file git stores the pointer, so the blob id is the pointer's.
        self.blob_id = git_blob_sha1(lfs_pointer(self.sha256, len(self.data)) if self.lfs else self.data)

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def etag(self) -> str:
        """Blob name the client caches under: sha256 for LFS, git blob sha1 otherwise (the Hub's ETag)."""
        return self.sha256 if self.lfs else self.blob_id

    def sibling(self, blobs: bool) -> dict[str, Any]:
        """``siblings[]`` entry of the model JSON; sizes and LFS info only with ``blobs=true``."""
        d: dict[str, Any] = {"rfilename": self.path}
        if blobs:
            d["size"] = self.size
            d["blobId"] = self.blob_id
            if self.lfs:
                d["lfs"] = {
                    "size": self.size,
                    "sha256": self.advertised_sha256 or self.sha256,
                    "pointerSize": len(lfs_pointer(self.sha256, self.size)),
                }
        return d


def commit_sha(files: dict[str, FakeFile], parent: str | None) -> str:
    """A deterministic fake commit id from the parent and the file contents."""
    h = hashlib.sha1((parent or "").encode())
    for path in sorted(files):
        h.update(path.encode() + b"\0" + files[path].blob_id.encode())
    return h.hexdigest()


def _iso(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


@dataclass
class FakeRepo:
    """A model repository: the head commit plus every earlier commit (pinned revisions keep working)."""

    id: str
    tags: list[str] = field(default_factory=list)
    card_data: dict[str, Any] | None = None
    gated: bool | str = False
    private: bool = False
    disabled: bool = False
    downloads: int = 0
    likes: int = 0
    library_name: str | None = None
    pipeline_tag: str | None = None
    created_at: datetime = field(default_factory=lambda: datetime(2025, 1, 1, tzinfo=timezone.utc))
    last_modified: datetime = field(default_factory=lambda: datetime(2025, 1, 1, tzinfo=timezone.utc))
    # securityRepoStatus when a model_info asks securityStatus=true: {"scansDone": scans_done,
    # "filesWithIssues": security_issues}; scans_done None: the key is left out (the Hub says nothing).
    security_issues: list[dict[str, str]] = field(default_factory=list)
    scans_done: bool | None = True
    commits: dict[str, dict[str, FakeFile]] = field(default_factory=dict)
    head: str = ""
    # Listed by /api/models but 404 everywhere else ("deleted between listing and fetch").
    deleted: bool = False
    # Hostile endpoint: fields that replace the real ones in the listing entry / the model JSON.
    listing_overrides: dict[str, Any] = field(default_factory=dict)
    info_overrides: dict[str, Any] = field(default_factory=dict)

    @property
    def author(self) -> str:
        return self.id.split("/", 1)[0]

    def commit(self, files: dict[str, bytes], *, when: datetime | None = None) -> str:
        """Add a commit with exactly these files; returns its sha (unchanged content = same sha)."""
        ff = {p: FakeFile(p, bytes(d), lfs=p.endswith(LFS_SUFFIXES)) for p, d in files.items()}
        sha = commit_sha(ff, self.head or None)
        if self.head and commit_sha(ff, None) == commit_sha(self.commits[self.head], None):
            return self.head
        self.commits[sha] = ff
        self.head = sha
        self.last_modified = when or datetime.now(timezone.utc)
        return sha

    def files(self, rev: str) -> dict[str, FakeFile] | None:
        """Files at a revision: a commit sha or "main" (the only branch)."""
        return self.commits.get(self.resolve(rev) or "")

    def resolve(self, rev: str) -> str | None:
        # A forged listing sha is answered like the head, as a hostile server would.
        if rev in ("main", "refs/heads/main") or rev == self.listing_overrides.get("sha"):
            return self.head
        return rev if rev in self.commits else None

    def field(self, name: str, rev: str, blobs: bool = False) -> Any:
        """One property of the model JSON, by its API name (expand values)."""
        files = self.files(rev) or {}
        values = {
            "author": self.author,
            "sha": self.resolve(rev),
            "lastModified": _iso(self.last_modified),
            "createdAt": _iso(self.created_at),
            "tags": list(self.tags),
            "gated": self.gated,
            "private": self.private,
            "disabled": self.disabled,
            "downloads": self.downloads,
            "likes": self.likes,
            "library_name": self.library_name,
            "pipeline_tag": self.pipeline_tag,
            "cardData": self.card_data,
            "siblings": [files[p].sibling(blobs) for p in sorted(files)],
            "baseModels": self._base_models(),
        }
        return values.get(name)

    def _base_models(self) -> dict[str, Any] | None:
        for tag in self.tags:
            parts = tag.split(":", 2)
            if len(parts) == 3 and parts[0] == "base_model":
                return {"relation": parts[1], "models": [{"id": parts[2]}]}
        return None

    def model_json(self, rev: str, *, blobs: bool, security: bool) -> dict[str, Any]:
        """GET /api/models/{id}[/revision/{rev}] body."""
        d: dict[str, Any] = {"_id": hashlib.md5(self.id.encode()).hexdigest()[:24], "id": self.id, "modelId": self.id}
        for name in ("author", "sha", "lastModified", "createdAt", "private", "disabled", "gated", "downloads",
                     "likes", "tags", "library_name", "pipeline_tag", "cardData", "siblings"):
            d[name] = self.field(name, rev, blobs)
        if security and self.scans_done is not None:
            d["securityRepoStatus"] = {"scansDone": self.scans_done, "filesWithIssues": list(self.security_issues)}
        return d

    def matches(self, filters: list[str], author: str | None, search: str | None) -> bool:
        """``/api/models`` filtering: every filter must be a tag (library names are tags too)."""
        tags = set(self.tags) | ({self.library_name} if self.library_name else set())
        if any(f not in tags for f in filters):
            return False
        if author and self.author != author:
            return False
        return not (search and search.lower() not in self.id.lower())


def read_folder(folder: str | Path) -> dict[str, bytes]:
    """All regular files under ``folder`` as {relative posix path: bytes}."""
    root = Path(folder)
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def adapter_card(base: str, *, relation: str = "adapter") -> tuple[list[str], dict[str, Any]]:
    """Tags and cardData the Hub derives for a peft adapter of ``base``."""
    tags = ["peft", "safetensors", "lora", f"base_model:{base}", f"base_model:{relation}:{base}"]
    return tags, {"base_model": base, "library_name": "peft", "tags": ["lora"]}


def child_tags(parent: str, relation: str) -> list[str]:
    """Tags the Hub gives a repo that declares ``parent`` as its base with ``relation`` (model tree)."""
    return [f"base_model:{parent}", f"base_model:{relation}:{parent}"]
