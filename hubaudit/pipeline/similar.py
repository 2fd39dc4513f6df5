"""Flow ``similar``: the stored adapters of a base nearest to one adapter (``hubaudit similar``).

The query is a stored revision (``REPO[@REV]``: its stored fingerprint) or a local adapter (``PATH``:
scanned now with stats.scan_path). Its fingerprint is compared with every stored fingerprint of the
same base and version in one matrix-vector product over them, packed as one float32 matrix
(hubaudit/store/_fingerprint_cache.py keeps it on disk between calls); the similarity is the
fingerprint's estimate of the cosine similarity of the two adapters' ΔW = s·B·A
(models.Fingerprint). ``confirm`` directories are compared exactly
(stats.fingerprint.exact_similarity). Each neighbour carries its stored weight verdict under the
active threshold set and its latest probe verdict. Read-only: records nothing.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hubaudit.constants import FINGERPRINT_VERSION
from hubaudit.errors import HubauditError, InputError, StoreError, UsageError
from hubaudit.models import Fingerprint
from hubaudit.store import AuditRow, Store
from hubaudit.store._fingerprint_cache import (
    StoredRevision,
    packed_fingerprints,
    repo_revisions,
)
from hubaudit.vocab import RevisionStatus, ScanStatus

# Same spelling rule as ``hubaudit check`` (pipeline/check.py): org/name, then an optional @revision.
_REPO_RE = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")
_MIN_SHA_PREFIX = 4
_ID_CHUNK = 900  # revision ids per IN (...) query


class NotFingerprintedError(HubauditError):
    """The query has no fingerprint to compare (unknown repo, unscored or older revision), or the base has none."""

    exit_code = 3


@dataclass(frozen=True)
class Query:
    """What is compared: one fingerprint, the base it is compared within, and where it came from."""

    target: str
    repo_id: str  # a Hub repo id, or local:<absolute path> for a PATH
    sha: str | None  # the stored revision's sha, or the weights' sha256 of a PATH
    base: str
    source: str  # "store" | "scanned"
    fingerprint: Fingerprint
    path: Path | None = None
    exclude: frozenset[int] = frozenset()  # revision ids of the query itself in the store


@dataclass
class Neighbour:
    """One stored revision near the query."""

    repo_id: str
    sha: str
    similarity: float | None  # fingerprint estimate of cos(ΔW_query, ΔW_this); None: no fingerprint
    shared_modules: int  # the stored module count, or the exact shared count once confirmed
    flagged: bool | None  # weight verdict under the base's active threshold set; None: not judged
    probe_flagged: bool | None  # latest behavioural probe verdict; None: never probed
    revision_id: int | None = None
    exact_similarity: float | None = None  # from --confirm DIR
    confirmed_by: str | None = None  # that DIR
    files: list[dict[str, Any]] = field(default_factory=list, repr=False)  # stored file digests (to match DIRs)

    def to_dict(self) -> dict[str, Any]:
        return {"repo_id": self.repo_id, "sha": self.sha, "similarity": self.similarity,
                "shared_modules": self.shared_modules, "flagged": self.flagged, "probe_flagged": self.probe_flagged,
                "exact_similarity": self.exact_similarity, "confirmed_by": self.confirmed_by}  # fmt: skip


@dataclass
class SimilarResult:
    query: Query
    neighbours: list[Neighbour]  # best first, then one row per --confirm DIR that matched none of them
    compared: int  # stored revisions compared with the query
    matched: int  # of those, how many reached min_similarity (``neighbours`` shows at most ``top``)
    min_similarity: float
    top: int
    loaded_from: str  # "cache" | "built" | "database" (see store/_fingerprint_cache.py)
    ranked: int = 0  # how many of ``neighbours`` are the ranked top (the rest are --confirm rows)


def _first_contact(base: str | None) -> str:
    b = base or "BASE"
    return f"run `hubaudit crawl --base {b}` or `hubaudit ingest PATH --base {b}` first"


def _short(sha: str | None) -> str:
    return (sha or "?")[:12]


# -- the query -------------------------------------------------------------------------------------


def resolve_query(store: Store, target: str, *, base: str | None = None, version: str = FINGERPRINT_VERSION) -> Query:
    """The fingerprint ``target`` names: an existing path is scanned now (it wins over a repo id of
    the same spelling), a ``REPO[@REV]`` is read from the store. Raises UsageError (exit 2) for bad
    input and NotFingerprintedError (exit 3) when there is nothing to compare."""
    p = Path(target).expanduser()
    if p.exists():
        return _scanned_query(store, target, p, base, version)
    repo, _, rev = target.partition("@")
    if not _REPO_RE.match(repo):
        raise UsageError(f"{target!r} is neither an existing path nor a Hub repo id (org/name[@revision])")
    return _stored_query(store, target, repo, rev or None, base, version)


def _stored_query(store: Store, target: str, repo: str, rev: str | None, base: str | None, version: str) -> Query:
    revs = repo_revisions(store, repo, version)
    if not revs:
        raise NotFingerprintedError(f"{repo} is not in the store at {store.url}: {_first_contact(base)}",
                                    hint="or download it and run `hubaudit similar PATH --base BASE`")  # fmt: skip
    bases = sorted({r.base for r in revs})
    if base is not None:
        revs = [r for r in revs if r.base == base]
        if not revs:
            raise NotFingerprintedError(f"{repo} is not an adapter of {base} in the store (it is stored under "
                                        f"{', '.join(bases)})", hint=f"pass --base {bases[0]}")  # fmt: skip
    elif len(bases) > 1:
        raise UsageError(f"{repo} is stored under several bases ({', '.join(bases)}): pass --base")
    base = revs[0].base
    if rev is not None:
        revs = _match_revision(repo, rev, revs)
    chosen = next((r for r in reversed(revs) if r.fingerprint is not None), None)
    if chosen is None:
        raise _no_fingerprint(revs[-1])
    return Query(target=target, repo_id=repo, sha=chosen.sha, base=base, source="store", fingerprint=chosen.fingerprint,
                 exclude=frozenset({chosen.revision_id}))  # fmt: skip


def _match_revision(repo: str, rev: str, revs: list[StoredRevision]) -> list[StoredRevision]:
    """The stored revisions whose sha is ``rev`` or starts with it (a short sha from a report)."""
    exact = [r for r in revs if r.sha == rev]
    if exact:
        return exact
    hits = [r for r in revs if len(rev) >= _MIN_SHA_PREFIX and r.sha.startswith(rev.lower())]
    if len({r.sha for r in hits}) > 1:
        raise UsageError(f"{repo}@{rev} is ambiguous: several stored revisions start with it")
    if not hits:
        known = ", ".join(_short(r.sha) for r in revs[-5:])
        raise NotFingerprintedError(f"{repo}@{rev} is not in the store (its stored revisions: {known})",
                                    hint="pass a stored sha, or download that revision and run "
                                         "`hubaudit similar PATH`")  # fmt: skip
    return hits


def _no_fingerprint(r: StoredRevision) -> NotFingerprintedError:
    where = f"{r.repo_id}@{_short(r.sha)}"
    if r.status != RevisionStatus.SCORED:
        return NotFingerprintedError(f"{where} was not scored ({r.reason or r.status}): it has no fingerprint",
                                     hint="only adapters whose weights were scored can be compared")  # fmt: skip
    return NotFingerprintedError(f"{where} has no stored fingerprint (it was scored before fingerprints were recorded)",
                                 hint=f"download it and run `hubaudit similar PATH --base {r.base}`")  # fmt: skip


def _scanned_query(store: Store, target: str, path: Path, base: str | None, version: str) -> Query:
    from hubaudit.pipeline.ingest import content_sha, file_digests, local_repo_id
    from hubaudit.stats import scan_path

    scan = scan_path(path)
    if scan.status != ScanStatus.OK:
        raise NotFingerprintedError(f"{target}: could not be scored ({scan.status}): {scan.error}",
                                    hint="only adapters whose weights can be scored have a fingerprint; "
                                         "`hubaudit scan PATH` shows why")  # fmt: skip
    base = base or scan.base_model
    if not base:
        raise UsageError(f"{target}: the adapter does not declare its base model: pass --base")
    if scan.fingerprint is None:
        raise NotFingerprintedError(f"{target}: the scanner computed no fingerprint for it")
    if scan.fingerprint.version != version:
        raise NotFingerprintedError(f"{target}: fingerprint version {scan.fingerprint.version}, the store is "
                                    f"searched for {version}")  # fmt: skip
    absolute = path.absolute()
    repo_id = local_repo_id(absolute)
    sha = content_sha(absolute, scan, file_digests(absolute))
    exclude = frozenset(r.revision_id for r in repo_revisions(store, repo_id, version)
                        if r.sha == sha and r.base == base)
    return Query(target=target, repo_id=repo_id, sha=sha, base=base, source="scanned", fingerprint=scan.fingerprint,
                 path=path, exclude=exclude)  # fmt: skip


# -- the search ------------------------------------------------------------------------------------


def similarities(matrix: np.ndarray, q: np.ndarray) -> np.ndarray:
    """``matrix @ q``: the estimated similarity of the query with every row (one BLAS pass)."""
    return np.asarray(matrix @ np.asarray(q, dtype=matrix.dtype), dtype=np.float32)


def rank(scores: np.ndarray, *, top: int, min_similarity: float, exclude: np.ndarray | None = None
         ) -> tuple[np.ndarray, int]:  # fmt: skip
    """Row indices of the ``top`` highest ``scores`` at or above ``min_similarity`` (best first, ties by
    row: the earlier stored first), skipping the rows in ``exclude``; and how many rows qualified in all.
    NaN never qualifies."""
    ok = scores >= min_similarity
    if exclude is not None and exclude.size:
        ok[exclude] = False
    idx = np.flatnonzero(ok)
    matched = int(idx.size)
    if idx.size > top:
        idx = idx[np.argpartition(-scores[idx], top - 1)[:top]]
    order = np.lexsort((idx, -scores[idx]))
    return idx[order], matched


def search_similar(
    store: Store,
    query: Query,
    *,
    top: int = 10,
    min_similarity: float = 0.5,
    cache_dir: Path | None = None,
    confirm: Sequence[str] = (),
) -> SimilarResult:
    """The ``top`` stored revisions of ``query.base`` most similar to the query (at least
    ``min_similarity``), the query's own revision excluded. ``cache_dir``: where the packed matrix
    is kept between calls (None: read the database). ``confirm``: adapter directories compared with a
    PATH query exactly."""
    if top < 1:
        raise UsageError("--top must be at least 1")
    if confirm and query.path is None:
        raise UsageError("--confirm needs a PATH query: the exact similarity reads both adapters' weights")
    fp = query.fingerprint
    packed, loaded_from = packed_fingerprints(store, query.base, fp.version, cache_dir=cache_dir)
    if len(packed) and packed.dim != fp.dim:
        raise StoreError(f"stored fingerprints of {query.base} have {packed.dim} values, the query {fp.dim}")
    scores = similarities(packed.matrix, fp.vec) if len(packed) else np.zeros(0, np.float32)
    if loaded_from == "cache" and not bool(np.isfinite(scores).all()):  # a damaged cache file: rebuilt
        packed, loaded_from = packed_fingerprints(store, query.base, fp.version, cache_dir=cache_dir, refresh=True)
        scores = similarities(packed.matrix, fp.vec)
    excluded = np.flatnonzero(np.isin(packed.revision_ids, np.fromiter(query.exclude, np.int64, len(query.exclude))))
    compared = len(packed) - int(excluded.size)
    if compared <= 0:
        raise NotFingerprintedError(f"the store holds no other fingerprinted adapter of {query.base} to compare with",
                                    hint=_first_contact(query.base))  # fmt: skip
    rows, matched = rank(scores, top=top, min_similarity=min_similarity, exclude=excluded)
    neighbours = _neighbours(store, query.base, packed.revision_ids[rows], scores[rows], packed.n_modules[rows])
    result = SimilarResult(query, neighbours, compared, matched, min_similarity, top, loaded_from, len(neighbours))
    for directory in confirm:
        _confirm(store, result, directory)
    return result


def _audit(store: Store, base: str, revision_ids: Sequence[int]) -> dict[int, AuditRow]:
    out: dict[int, AuditRow] = {}
    ids = [int(i) for i in revision_ids]
    for lo in range(0, len(ids), _ID_CHUNK):
        out.update({r.revision_id: r for r in store.audit_rows(base, revision_ids=ids[lo : lo + _ID_CHUNK])})
    return out


def _probe_flagged(row: AuditRow) -> bool | None:
    if not row.probe:
        return None
    flagged = row.probe.get("flagged")
    return None if flagged is None else bool(flagged)


def _clamp(x: float) -> float:
    # float16 rounding can put the dot product of two unit vectors a hair outside [-1, 1]
    return round(min(1.0, max(-1.0, float(x))), 4)


def _neighbours(store: Store, base: str, revision_ids: np.ndarray, scores: np.ndarray, n_modules: np.ndarray
                ) -> list[Neighbour]:  # fmt: skip
    rows = _audit(store, base, revision_ids.tolist())
    out = []
    for rid, s, n in zip(revision_ids.tolist(), scores.tolist(), n_modules.tolist()):
        r = rows.get(rid)
        if r is None:  # deleted since the matrix was read
            continue
        out.append(Neighbour(repo_id=r.repo_id, sha=r.sha, similarity=_clamp(s), shared_modules=int(n),
                             flagged=r.flagged, probe_flagged=_probe_flagged(r), revision_id=rid,
                             files=r.files))  # fmt: skip
    return out


def _confirm(store: Store, result: SimilarResult, directory: str) -> None:
    """Compare the query with ``directory`` exactly; attach the result to the neighbour it is a copy of
    (same weights sha256 as a stored revision of it), else add a row for the directory."""
    from hubaudit.pipeline.ingest import local_repo_id
    from hubaudit.stats import scan_path
    from hubaudit.stats.fingerprint import exact_similarity

    query = result.query
    path = Path(directory).expanduser()
    if not path.exists():
        raise InputError(f"--confirm {directory}: no such file or directory")
    scan = scan_path(path)
    if scan.status != ScanStatus.OK:
        raise InputError(f"--confirm {directory}: could not be scored ({scan.status}): {scan.error}")
    try:
        exact = exact_similarity(query.path, path)  # the cosine the fingerprint estimates
    except InputError as exc:
        raise InputError(f"--confirm {directory}: {exc}") from None
    similarity, shared = _clamp(exact.cosine), int(exact.shared_modules)
    digest = scan.content_sha256
    for nb in result.neighbours:
        if digest and (nb.sha == digest or any(f.get("sha256") == digest for f in nb.files)):
            nb.exact_similarity, nb.shared_modules, nb.confirmed_by = similarity, shared, directory
            return
    repo_id, sha = local_repo_id(path.absolute()), digest or ""
    stored = [r for r in repo_revisions(store, repo_id, query.fingerprint.version)
              if r.sha == sha and r.base == query.base]
    row = _audit(store, query.base, [stored[-1].revision_id]).get(stored[-1].revision_id) if stored else None
    estimate = _clamp(query.fingerprint.similarity(scan.fingerprint)) if scan.fingerprint is not None else None
    result.neighbours.append(Neighbour(
        repo_id=repo_id, sha=sha, similarity=estimate, shared_modules=shared,
        flagged=row.flagged if row else None, probe_flagged=_probe_flagged(row) if row else None,
        revision_id=row.revision_id if row else None, exact_similarity=similarity, confirmed_by=directory,
    ))  # fmt: skip


def warm_cache(store: Store, bases: Sequence[str], cache_dir: Path) -> None:
    """Rebuild the packed-matrix cache of ``bases`` after a write (crawl, ingest, nightly), so the next
    ``hubaudit similar`` is a cache hit instead of paying the rebuild. Best effort: the cache is only
    a speed-up, and any failure here leaves the next search to read the database."""
    for base in dict.fromkeys(bases):
        with contextlib.suppress(StoreError, OSError, ValueError):
            packed_fingerprints(store, base, cache_dir=cache_dir)
