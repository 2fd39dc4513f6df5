"""The Hub as an adapter source: enumerate adapters of a base, read pinned repo metadata.

Uses the real ``huggingface_hub`` client with an explicit endpoint and token (both read by the
CLI/settings layer and passed down: the library reads ``HF_ENDPOINT`` at import time, so an
explicit ``HfApi(endpoint=...)`` is the only reliable way). Returns plain dataclasses; no other
stage sees a huggingface_hub object.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from hubaudit.httpclient import HubConfig, call_with_retry

# hub_api.md §8 step 1: exactly the properties the crawler stores and decides on.
LIST_EXPAND = ["sha", "lastModified", "createdAt", "tags", "gated", "private", "disabled", "downloads", "likes",
               "library_name", "cardData", "siblings"]
RELATIONS = ("adapter", "quantized", "finetune", "merge")
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt", ".pth")


@dataclass(frozen=True)
class ListedRepo:
    """One repo from a listing page (names of files only; sizes need :meth:`HubSource.repo_info`)."""

    repo_id: str
    sha: str | None
    author: str | None = None
    last_modified: datetime | None = None
    created_at: datetime | None = None
    downloads: int | None = None
    likes: int | None = None
    tags: tuple[str, ...] = ()
    gated: bool | str | None = None
    private: bool | None = None
    disabled: bool | None = None
    siblings: tuple[str, ...] = ()
    card_base_model: str | None = None
    library_name: str | None = None
    via: str | None = None  # the (derived) base it was listed under

    def meta(self) -> dict[str, Any]:
        """The ``meta`` dict of ``Store.upsert_adapter``."""
        d = asdict(self)
        d.pop("repo_id")
        d.pop("via")
        for k in ("last_modified", "created_at"):  # JSON column: ISO 8601 strings
            d[k] = d[k].isoformat() if d[k] is not None else None
        d["tags"] = list(self.tags)
        d["siblings"] = list(self.siblings)
        return d


@dataclass(frozen=True)
class RepoFile:
    name: str
    size: int | None
    blob_id: str | None
    lfs_sha256: str | None


@dataclass(frozen=True)
class RepoInfo:
    """A repo at one pinned commit, with per-file sizes and hashes (``files_metadata=True``)."""

    repo_id: str
    sha: str | None
    gated: bool | str | None
    disabled: bool | None
    files: tuple[RepoFile, ...]
    security_issues: tuple[dict, ...] = ()
    card_base_model: str | None = None

    def file(self, name: str) -> RepoFile | None:
        return next((f for f in self.files if f.name == name), None)


def card_base(card_data: Any) -> str | None:
    """``base_model`` of a card (a string, or a list for merges: comma-joined)."""
    if card_data is None:
        return None
    value = card_data.get("base_model") if hasattr(card_data, "get") else None
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value) or None
    return str(value) if value else None


def _listed(m: Any, via: str | None) -> ListedRepo:
    return ListedRepo(
        repo_id=m.id,
        sha=getattr(m, "sha", None),
        author=getattr(m, "author", None) or (m.id.split("/", 1)[0] if "/" in m.id else None),
        last_modified=getattr(m, "last_modified", None),
        created_at=getattr(m, "created_at", None),
        downloads=getattr(m, "downloads", None),
        likes=getattr(m, "likes", None),
        tags=tuple(getattr(m, "tags", None) or ()),
        gated=getattr(m, "gated", None),
        private=getattr(m, "private", None),
        disabled=getattr(m, "disabled", None),
        siblings=tuple(s.rfilename for s in (getattr(m, "siblings", None) or ())),
        card_base_model=card_base(getattr(m, "card_data", None)),
        library_name=getattr(m, "library_name", None),
        via=via,
    )


class HubSource:
    """Listing and pinned metadata through ``HfApi``; call inside :func:`hubaudit.httpclient.hub_client`."""

    def __init__(self, config: HubConfig) -> None:
        from huggingface_hub import HfApi

        self.config = config
        # token=False: never fall back to a token saved on disk by `hf auth login`.
        self._token: str | bool = config.token or False
        self.api = HfApi(endpoint=config.endpoint, token=self._token)

    def list_related(self, base: str, relation: str = "adapter", *, limit: int | None = None) -> Iterator[ListedRepo]:
        """Repos tagged ``base_model:<relation>:<base>`` (one API request per page).

        Pagination retries 429/5xx/408 inside the client (5 retries, honouring RateLimit,
        hub_api.md §3.4); what escapes is beyond the budget and the caller treats it as run-level.
        """
        if relation not in RELATIONS:
            raise ValueError(f"unknown relation {relation!r}")
        for m in self.api.list_models(filter=f"base_model:{relation}:{base}", expand=LIST_EXPAND, limit=limit,
                                      token=self._token):
            yield _listed(m, base)

    def repo_info(self, repo_id: str, revision: str | None) -> RepoInfo:
        """``model_info(revision=sha, files_metadata=True, securityStatus=True)`` with our retry
        (the client has none for this call, hub_api.md §0.3)."""
        info = call_with_retry(
            lambda: self.api.model_info(repo_id, revision=revision, files_metadata=True, securityStatus=True,
                                        timeout=self.config.timeout, token=self._token),
            self.config.retry,
        )
        files = tuple(
            RepoFile(s.rfilename, s.size, s.blob_id, s.lfs.sha256 if s.lfs is not None else None)
            for s in (info.siblings or ())
        )
        status = info.security_repo_status or {}
        return RepoInfo(
            repo_id=info.id,
            sha=info.sha,
            gated=info.gated,
            disabled=info.disabled,
            files=files,
            security_issues=tuple(status.get("filesWithIssues") or ()),
            card_base_model=card_base(info.card_data),
        )

    def weight_hashes(self, repo_id: str) -> dict[str, str]:
        """{weight file name: sha256} of a repo's head, from LFS metadata only (no download)."""
        info = self.repo_info(repo_id, None)
        return {f.name: f.lfs_sha256 for f in info.files if f.lfs_sha256 and f.name.endswith(WEIGHT_SUFFIXES)}
