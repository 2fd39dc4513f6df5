"""The Hub as an adapter source: enumerate adapters of a base, read pinned repo metadata.

The endpoint (``HF_ENDPOINT``) may be a mirror, proxy or attacker, so the requests are ours
(:mod:`hubaudit.safehttp`: bounded bytes and time, the token only on the endpoint's origin) and the
answers are parsed the way huggingface_hub parses them (``ModelInfo(**item)``), then validated:
a revision sha is 40 lowercase hex digits, a model_info answers for the sha we pinned, a repo id
is a Hub id. Listing pagination follows ``Link: rel="next"`` only on the endpoint's origin, never
to a page already seen, and for at most ``max_pages`` pages. Returns plain dataclasses; no other
stage sees a huggingface_hub object.

Two of the Hub's own signals are read too, never as verdicts: the security scan status of a pinned
revision (``securityRepoStatus``, :func:`hub_security`) and the repos that declare a model as their
base (the model tree, :meth:`HubSource.list_children`).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote

from hubaudit.errors import HubError
from hubaudit.httpclient import HubConfig, call_with_retry
from hubaudit.safehttp import HostileResponse, bind_token, get_json, origin, shown

# Exactly the properties the crawler stores and decides on.
LIST_EXPAND = ["sha", "lastModified", "createdAt", "tags", "gated", "private", "disabled", "downloads", "likes",
               "library_name", "cardData", "siblings"]
RELATIONS = ("adapter", "quantized", "finetune", "merge")
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt", ".pth")

SHA = re.compile(r"[0-9a-f]{40}")  # a git commit id as the Hub writes it
_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
_BLOB_ID = re.compile(r"[0-9a-fA-F]{40}")
# huggingface_hub's validate_repo_id: [namespace/]name of word characters, "-" and "."; no "--" or
# ".." anywhere, no leading or trailing "-"/"."; a name is at most 96 characters.
_REPO_PART = r"(?![.-])[\w.-]{1,96}(?<![.-])"
_REPO_ID = re.compile(rf"(?:{_REPO_PART}/)?{_REPO_PART}", re.ASCII)
_HINT = "HF_ENDPOINT sent a response hubaudit refuses; check the mirror or proxy it names"

# securityRepoStatus.filesWithIssues[].level as the Hub's API documents it; any other value is
# stored as UNKNOWN_LEVEL (never the server's string).
SECURITY_LEVELS = ("unscanned", "safe", "queued", "error", "caution", "suspicious", "unsafe")
UNKNOWN_LEVEL = "unknown"
MAX_SECURITY_FILES = 100  # entries kept per revision; the warning says how many the Hub listed
MAX_SECURITY_PATH = 256  # characters kept of a path, the rest replaced by "…"
# Children listings ask for these properties only (the relation is in the tags, baseModels is the fallback).
CHILD_EXPAND = ["tags", "baseModels"]


def _matches(pattern: re.Pattern, value: object) -> bool:
    return isinstance(value, str) and pattern.fullmatch(value) is not None


def is_sha(value: object) -> bool:
    return _matches(SHA, value)


def is_repo_id(value: object) -> bool:
    return (isinstance(value, str) and _REPO_ID.fullmatch(value) is not None
            and "--" not in value and ".." not in value)


def stand_in(kind: str, value: object) -> str:
    """A key we compute for a value the Hub sent that we refuse to use (the same value, the same
    key: a refused listing entry is recorded once and not refetched every run)."""
    return f"invalid-{kind}-" + hashlib.sha256(repr(value).encode("utf-8", "replace")).hexdigest()[:24]


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
    # Why the entry cannot be fetched (a forged sha or repo id, an unparsable entry): then repo_id
    # and sha are stand-ins we computed (:func:`stand_in`), never the server's strings.
    refused: str | None = None

    def meta(self) -> dict[str, Any]:
        """The ``meta`` dict of ``Store.upsert_adapter``."""
        d = asdict(self)
        d.pop("repo_id")
        d.pop("via")
        d.pop("refused")
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

    def problem(self) -> str | None:
        """Why this metadata cannot be used to fetch and verify the file, or None."""
        if not (isinstance(self.size, int) and not isinstance(self.size, bool) and self.size >= 0):
            return f"{self.name}: size {shown(self.size)} is not a byte count"
        if self.lfs_sha256 is not None and not _matches(_SHA256, self.lfs_sha256):
            return f"{self.name}: LFS sha256 {shown(self.lfs_sha256)} is not 64 hex digits"
        if self.lfs_sha256 is None and not _matches(_BLOB_ID, self.blob_id):
            return f"{self.name}: git blob id {shown(self.blob_id)} is not 40 hex digits"
        return None


@dataclass(frozen=True)
class RepoInfo:
    """A repo at one pinned commit, with per-file sizes and hashes (``files_metadata=True``)."""

    repo_id: str
    sha: str | None
    gated: bool | str | None
    disabled: bool | None
    files: tuple[RepoFile, ...]
    # The Hub's scan status as stored under provenance["hub_security"] (None: the Hub said nothing
    # usable) and why a malformed status was ignored or cut (:func:`hub_security`).
    hub_security: dict[str, Any] | None = None
    hub_security_warning: str | None = None
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


def _bounded_text(value: str, limit: int) -> tuple[str, bool]:
    """(``value`` cut to ``limit`` characters, whether it was cut); lone surrogates (JSON can carry
    "\ud800") become visible escapes first: PostgreSQL's json type refuses them."""
    text = value.encode("utf-8", "backslashreplace").decode("utf-8")
    return (text, False) if len(text) <= limit else (text[:limit - 1] + "…", True)


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", int: "a number",
             float: "a number"}
    return names.get(type(value), type(value).__name__)


def hub_security(value: Any) -> tuple[dict[str, Any] | None, str | None]:
    """``securityRepoStatus`` of a model_info as ``({"scans_done", "files_with_issues"}, warning)``.

    Never raises: whatever the endpoint sent, the adapter's audit goes on. Absent or null: (None,
    None). Not an object, or ``filesWithIssues`` not a list: (None, warning): the status is unknown,
    never "no issues". ``scansDone`` other than a boolean is None. Entries that are not objects with
    a string ``path`` are dropped; at most :data:`MAX_SECURITY_FILES` are kept, paths cut to
    :data:`MAX_SECURITY_PATH` characters, a level outside :data:`SECURITY_LEVELS` becomes
    :data:`UNKNOWN_LEVEL`; each change is named in the warning. Paths are stored as sent (within
    the cap): every sink escapes them.
    """
    if value is None:
        return None, None
    if not isinstance(value, dict):
        return None, f"securityRepoStatus is {_json_type(value)}, not an object: ignored"
    notes: list[str] = []
    scans_done = value.get("scansDone")
    if scans_done is not None and not isinstance(scans_done, bool):
        notes.append(f"scansDone is {_json_type(scans_done)}, not a boolean")
        scans_done = None
    raw = value.get("filesWithIssues")
    if raw is None:
        raw = []
    if not isinstance(raw, list):
        return None, f"securityRepoStatus.filesWithIssues is {_json_type(raw)}, not an array: ignored"
    files: list[dict[str, str]] = []
    dropped = unknown = cut = 0
    for entry in raw:
        path = entry.get("path") if isinstance(entry, dict) else None
        if not isinstance(path, str):
            dropped += 1
            continue
        if len(files) >= MAX_SECURITY_FILES:
            continue
        level = entry.get("level")
        if isinstance(level, str) and level.lower() in SECURITY_LEVELS:
            level = level.lower()
        else:
            level = UNKNOWN_LEVEL
            unknown += 1
        path, was_cut = _bounded_text(path, MAX_SECURITY_PATH)
        cut += was_cut
        files.append({"path": path, "level": level})
    kept_of = len(raw) - dropped
    if dropped:
        notes.append(f"{dropped} filesWithIssues entries without a string path dropped")
    if kept_of > len(files):
        notes.append(f"{kept_of} files with issues listed, the first {len(files)} kept")
    if unknown:
        notes.append(f"{unknown} levels outside {'|'.join(SECURITY_LEVELS)} stored as {UNKNOWN_LEVEL!r}")
    if cut:
        notes.append(f"{cut} paths longer than {MAX_SECURITY_PATH} characters cut")
    return {"scans_done": scans_done, "files_with_issues": files}, "; ".join(notes) or None


@dataclass(frozen=True)
class ChildRepo:
    """A repo from a model-tree listing: it declares the listed parent as its base.

    ``relations``: the ``base_model:<relation>:<parent>`` relations it carries (one of
    :data:`RELATIONS` each). ``refused``: why the entry is not used (an id that is not a Hub id, no
    relation to the parent); then ``repo_id`` is a stand-in (:func:`stand_in`)."""

    repo_id: str
    relations: tuple[str, ...] = ()
    refused: str | None = None


def _child_item(item: Any, parent: str) -> ChildRepo:
    """One children-listing entry: the id checked against the Hub grammar, the relations read from
    the tags (``base_model:<relation>:<parent>``), else from ``baseModels``."""
    raw_id = item.get("id") if isinstance(item, dict) else None
    if not is_repo_id(raw_id):
        return ChildRepo(stand_in("repo", raw_id), refused=f"the listing gave repo id {shown(raw_id)}, "
                                                           "not a Hub repo id")
    if raw_id.lower() == parent.lower():
        return ChildRepo(raw_id, refused="the repo names itself as its base")
    prefix = "base_model:"
    suffix = f":{parent.lower()}"
    tags = item.get("tags")
    lowered = [t.lower() for t in (tags if isinstance(tags, list) else ()) if isinstance(t, str)]
    found = {t[len(prefix):-len(suffix)] for t in lowered if t.startswith(prefix) and t.endswith(suffix)}
    relations = [r for r in RELATIONS if r in found]
    if not relations:
        base_models = item.get("baseModels")
        models = base_models.get("models") if isinstance(base_models, dict) else None
        names = {m.get("id").lower() for m in (models if isinstance(models, list) else ())
                 if isinstance(m, dict) and isinstance(m.get("id"), str)}
        relation = base_models.get("relation") if isinstance(base_models, dict) else None
        if parent.lower() in names and relation in RELATIONS:
            relations = [relation]
    if not relations:
        return ChildRepo(raw_id,
                         refused="lists the base but carries no adapter|merge|finetune|quantized relation to it")
    return ChildRepo(raw_id, tuple(relations))


def _listed_item(item: Any, via: str) -> ListedRepo:
    """One listing entry, parsed as huggingface_hub's ``list_models`` does, then validated."""
    from huggingface_hub.hf_api import ModelInfo

    raw_id = item.get("id") if isinstance(item, dict) else None
    if not is_repo_id(raw_id):
        return ListedRepo(stand_in("repo", raw_id), stand_in("sha", raw_id), via=via,
                          refused=f"the listing gave repo id {shown(raw_id)}, not a Hub repo id")
    try:
        item.setdefault("siblings", None)
        repo = _listed(ModelInfo(**item), via)
    except Exception as exc:  # noqa: BLE001 - any field of any type may arrive
        return ListedRepo(raw_id, stand_in("sha", item.get("sha")), via=via,
                          refused=f"unparsable listing entry: {type(exc).__name__}: {shown(str(exc))}")
    if repo.sha is not None and not is_sha(repo.sha):
        return ListedRepo(raw_id, stand_in("sha", repo.sha), via=via,
                          refused=f"the listing gave revision sha {shown(repo.sha)}, not 40 lowercase hex digits")
    return repo


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
        siblings=tuple(str(s.rfilename) for s in (getattr(m, "siblings", None) or ())),
        card_base_model=card_base(getattr(m, "card_data", None)),
        library_name=getattr(m, "library_name", None),
        via=via,
    )


def _page_key(url: Any) -> tuple:
    # The same page whatever the order of its query parameters.
    return (*origin(url), url.path, tuple(sorted(url.params.multi_items())))


class HubSource:
    """Listing and pinned metadata; call inside :func:`hubaudit.httpclient.hub_client`."""

    def __init__(self, config: HubConfig) -> None:
        self.config = config
        bind_token(config)  # from now on the token goes to this endpoint's origin only

    def list_related(self, base: str, relation: str = "adapter", *, limit: int | None = None) -> Iterator[ListedRepo]:
        """Repos tagged ``base_model:<relation>:<base>``, one API request per page (each retried).

        The query is huggingface_hub's ``list_models(filter=..., expand=LIST_EXPAND, limit=...)``.
        A next page on another origin, a page already seen, more than ``max_pages`` pages, or a
        page that is not a JSON list ends the listing with :class:`~hubaudit.errors.HubError`
        (nothing is requested from another origin). A failure beyond the retries propagates.
        """
        if relation not in RELATIONS:
            raise ValueError(f"unknown relation {relation!r}")
        params = [("filter", f"base_model:{relation}:{base}"), *(("expand", e) for e in LIST_EXPAND)]
        if limit is not None:
            params.append(("limit", str(limit)))  # the page size, too, as for huggingface_hub
        for item in self._items(base, params, limit):
            yield _listed_item(item, base)

    def list_children(self, repo_id: str, *, limit: int | None = None) -> Iterator[ChildRepo]:
        """Every repo that declares ``repo_id`` as its base, whatever the relation, in one listing.

        Repeated ``filter`` values are AND-ed by the Hub (huggingface_hub's ``list_datasets``
        docs: ``filter=("language:ru", "task_ids:language-modeling")`` is "in Russian *and* for
        language modeling"), so the four ``base_model:<relation>:<repo>`` tags cannot be OR-ed in
        one query. The Hub also tags every direct child with ``base_model:<repo>``, whatever the
        relation: one query on that tag lists them all, and each child's
        ``base_model:<relation>:<repo>`` tag (or ``baseModels``) says which relation it is.
        ``limit``: at most this many entries (not sent: the server's page size stays). The same
        bounds as :meth:`list_related`; entries we refuse come back with ``refused`` set.
        """
        if not is_repo_id(repo_id):
            raise ValueError(f"{repo_id!r} is not a Hub repo id")
        params = [("filter", f"base_model:{repo_id}"), *(("expand", e) for e in CHILD_EXPAND)]
        for item in self._items(f"children of {repo_id}", params, limit):
            yield _child_item(item, repo_id)

    def _items(self, what: str, params: list[tuple[str, str]], limit: int | None) -> Iterator[Any]:
        """The raw entries of a ``/api/models`` listing, page by page (see :meth:`list_related`)."""
        import httpx2

        cfg = self.config
        url: httpx2.URL | None = httpx2.URL(f"{cfg.endpoint}/api/models", params=params)
        seen: set[tuple] = set()
        yielded = 0
        while url is not None:
            if len(seen) >= cfg.max_pages:
                raise HubError(f"listing {what}: stopped after {cfg.max_pages} pages (the cap on one listing)",
                               hint=_HINT)
            seen.add(_page_key(url))
            page, link = call_with_retry(lambda u=url: get_json(cfg, u, "listing page"), cfg.retry)
            if not isinstance(page, list):
                raise HubError(f"listing {what}: page {len(seen)} is not a JSON list", hint=_HINT)
            for item in page:
                yield item
                yielded += 1
                if limit is not None and yielded >= limit:
                    return
            url = None if link is None else self._next_page(what, link, seen)

    def _next_page(self, what: str, link: str, seen: set[tuple]) -> Any:
        import httpx2

        try:
            url = httpx2.URL(link)
            off_origin = origin(url) != origin(self.config.endpoint)
        except Exception:  # noqa: BLE001 - whatever the header holds
            raise HubError(f"listing {what}: unusable next-page link {shown(link)}", hint=_HINT) from None
        if off_origin:
            raise HubError(f"listing {what}: the next page is on another origin than HF_ENDPOINT "
                           f"({shown(link)}); not followed", hint=_HINT)
        if _page_key(url) in seen:
            raise HubError(f"listing {what}: the next page repeats an earlier page ({shown(link)})", hint=_HINT)
        return url

    def repo_info(self, repo_id: str, revision: str | None) -> RepoInfo:
        """huggingface_hub's ``model_info(revision=..., files_metadata=True, securityStatus=True)``,
        retried, bounded, validated: raises :class:`~hubaudit.safehttp.HostileResponse` (final)
        for an invalid repo id, a body that is not a model, or a sha that is not the one pinned."""
        from huggingface_hub.hf_api import ModelInfo

        cfg = self.config
        if not is_repo_id(repo_id):
            raise HostileResponse(f"repo id {shown(repo_id)} is not a Hub repo id")
        url = f"{cfg.endpoint}/api/models/{quote(repo_id, safe='/')}"
        if revision is not None:
            url += f"/revision/{quote(revision, safe='')}"
        url += "?securityStatus=true&blobs=true"
        data, _ = call_with_retry(lambda: get_json(cfg, url, "model_info"), cfg.retry)
        # Parsed on its own: a malformed scan status is a warning, never a failed audit.
        security, warning = hub_security(data.pop("securityRepoStatus", None) if isinstance(data, dict) else None)
        try:
            info = ModelInfo(**data)
            files = tuple(
                RepoFile(str(s.rfilename), s.size, s.blob_id, s.lfs.sha256 if s.lfs is not None else None)
                for s in (info.siblings or ()))
            card = card_base(info.card_data)
        except Exception as exc:  # noqa: BLE001 - any field of any type may arrive
            raise HostileResponse(f"model_info body is not a model description: {type(exc).__name__}: "
                                  f"{shown(str(exc))}", "malformed") from None
        if not is_sha(info.sha):
            raise HostileResponse(f"model_info gave revision sha {shown(info.sha)}, not 40 lowercase hex digits")
        if is_sha(revision) and info.sha != revision:
            raise HostileResponse(f"model_info answered for revision {info.sha[:12]}, not the pinned {revision[:12]}")
        return RepoInfo(repo_id=repo_id, sha=info.sha, gated=info.gated, disabled=info.disabled, files=files,
                        hub_security=security, hub_security_warning=warning, card_base_model=card)

    def weight_hashes(self, repo_id: str) -> dict[str, str]:
        """{weight file name: sha256} of a repo's head, from LFS metadata only (no download)."""
        info = self.repo_info(repo_id, None)
        return {f.name: f.lfs_sha256 for f in info.files if f.lfs_sha256 and f.name.endswith(WEIGHT_SUFFIXES)}
