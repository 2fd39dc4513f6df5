"""Fingerprints, imported blocklist entries and downstream Hub repos.

Fingerprints are read back as one packed matrix (:class:`FingerprintSet`) so a similarity search
is one matrix-vector product over every stored adapter of a base. The on-disk cache of that matrix
(_fingerprint_cache.py) reads the database only through :meth:`LineageRepository.fingerprint_state`,
:meth:`LineageRepository.packed_fingerprint_rows` and :meth:`LineageRepository.repo_revisions`.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import Connection, and_, func, select

from hubaudit.constants import FINGERPRINT_VERSION
from hubaudit.errors import StoreError
from hubaudit.models import Fingerprint
from hubaudit.store._sql import SQL_IN_CHUNK, chunks
from hubaudit.store.core import StoreCore, table_of
from hubaudit.store.schema import (
    Adapter,
    AdapterFingerprint,
    BaseModel,
    BlocklistEntry,
    DownstreamRepo,
    Revision,
    utcnow,
)

DOWNSTREAM_RELATIONS = ("adapter", "merge", "finetune", "quantized")


@dataclass(frozen=True)
class FingerprintSet:
    """Fingerprints of many revisions as one (n, dim) float16 matrix with parallel id lists.

    Rows are in revision-id order. ``latest[i]`` is True when row i is its adapter's newest
    fingerprinted revision.
    """

    version: str
    revision_ids: np.ndarray  # int64 (n,)
    repo_ids: tuple[str, ...]
    shas: tuple[str, ...]
    n_modules: np.ndarray  # int32 (n,)
    matrix: np.ndarray  # float16 (n, dim), unit rows
    latest: np.ndarray  # bool (n,)

    def __len__(self) -> int:
        return int(self.revision_ids.shape[0])

    def fingerprint(self, i: int) -> Fingerprint:
        return Fingerprint(self.version, self.matrix[i].astype(np.float32), int(self.n_modules[i]))


@dataclass(frozen=True)
class BlocklistRow:
    id: int
    base: str
    label: str
    source: str
    reason: str | None
    fingerprint: Fingerprint
    created_at: datetime


@dataclass(frozen=True)
class StoredRevision:
    """One stored revision of a repo, with its fingerprint of the asked version if it has one."""

    base: str
    revision_id: int
    repo_id: str
    sha: str
    status: str
    reason: str | None
    fingerprint: Fingerprint | None


@dataclass(frozen=True)
class FingerprintState:
    """What identifies the fingerprint rows of one version (every base together): any insert, delete or
    replacement of one changes the count, the largest id or the latest ``created_at``."""

    count: int
    max_id: int | None
    max_created: datetime | None

    @property
    def key(self) -> str:
        return f"{self.count}|{self.max_id}|{self.max_created}"


@dataclass(frozen=True)
class PackedFingerprintRows:
    """The fingerprints of one version of a base as stored (float16), with the state they were read under."""

    state: FingerprintState
    revision_ids: np.ndarray  # int64 (n,)
    n_modules: np.ndarray  # int32 (n,)
    matrix: np.ndarray  # float16 (n, dim), read-only view of the stored blobs


def fingerprint_row(revision_id: int, fp: Fingerprint, now: Any) -> dict[str, Any]:
    """The ``fingerprints`` row of one revision's fingerprint."""
    return dict(revision_id=revision_id, version=fp.version, dim=fp.dim, n_modules=fp.n_modules,
                vec=fp.to_bytes(), created_at=now)  # fmt: skip


def upsert_fingerprint_rows(core: StoreCore, conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Insert or replace :func:`fingerprint_row` rows (keyed on (revision_id, version)) inside the caller's
    write transaction: recording a scored revision stores its fingerprint in the same commit."""
    ins = core.insert(AdapterFingerprint)
    cols = ("dim", "n_modules", "vec", "created_at")
    conn.execute(
        ins.on_conflict_do_update(index_elements=["revision_id", "version"], set_={c: ins.excluded[c] for c in cols}),
        rows,
    )


class LineageRepository:
    """save_fingerprints / fingerprints / blocklist / downstream, and the fingerprint cache's reads."""

    def __init__(self, core: StoreCore) -> None:
        self._core = core

    def save_fingerprints(self, items: list[tuple[int, Fingerprint]]) -> None:
        """Store (or replace) the fingerprint of each (revision id, fingerprint); commits every 2,000."""
        if not items:
            return
        now = utcnow()
        for part in chunks(items, 2000):
            with self._core.write() as conn:
                upsert_fingerprint_rows(self._core, conn, [fingerprint_row(rid, fp, now) for rid, fp in part])

    def fingerprints(self, base: str, version: str = FINGERPRINT_VERSION, *,
                     revision_ids: Collection[int] | None = None) -> FingerprintSet:  # fmt: skip
        """Every stored fingerprint of ``version`` for the adapters of ``base`` (all revisions), or only
        those of ``revision_ids`` (a check compares one adapter with a few known-bad ones: reading
        100,000 fingerprints for it would cost ~200 MB)."""
        with self._core.read() as conn:
            bid = self._core.base_id(conn, base, create=False)
            q = (
                select(AdapterFingerprint.revision_id, Revision.repo_id, Revision.sha, Revision.adapter_id,
                       AdapterFingerprint.n_modules, AdapterFingerprint.dim, AdapterFingerprint.vec)
                .join(Revision, Revision.id == AdapterFingerprint.revision_id)
                .join(Adapter, Adapter.id == Revision.adapter_id)
                .where(Adapter.base_id == bid, AdapterFingerprint.version == version)
                .order_by(AdapterFingerprint.revision_id)
            )  # fmt: skip
            rows: list[Any] = []
            if bid is not None and revision_ids is None:
                rows = list(conn.execute(q).all())
            elif bid is not None and revision_ids is not None:
                for part in chunks(sorted(set(revision_ids)), SQL_IN_CHUNK):
                    rows.extend(conn.execute(q.where(AdapterFingerprint.revision_id.in_(part))).all())
                rows.sort(key=lambda r: r.revision_id)
        dims = {r.dim for r in rows}
        if len(dims) > 1:
            raise ValueError(f"fingerprints of version {version} with several dimensions {sorted(dims)}")
        dim = dims.pop() if dims else 0
        matrix = np.frombuffer(b"".join(r.vec for r in rows), dtype="<f2").reshape(len(rows), dim)
        newest: dict[int, int] = {}
        for i, r in enumerate(rows):
            newest[r.adapter_id] = i  # revision ids ascend: the last one seen is the newest
        latest = np.zeros(len(rows), dtype=np.bool_)
        latest[list(newest.values())] = True
        return FingerprintSet(
            version=version,
            revision_ids=np.fromiter((r.revision_id for r in rows), dtype=np.int64, count=len(rows)),
            repo_ids=tuple(r.repo_id for r in rows),
            shas=tuple(r.sha for r in rows),
            n_modules=np.fromiter((r.n_modules for r in rows), dtype=np.int32, count=len(rows)),
            matrix=matrix,
            latest=latest,
        )

    def fingerprint_dim(self, base: str, version: str = FINGERPRINT_VERSION) -> int | None:
        """The dimension of the stored fingerprints of ``version`` for ``base`` (one row read), None if none."""
        with self._core.read() as conn:
            bid = self._core.base_id(conn, base, create=False)
            if bid is None:
                return None
            dim = conn.scalar(
                select(AdapterFingerprint.dim)
                .join(Revision, Revision.id == AdapterFingerprint.revision_id)
                .join(Adapter, Adapter.id == Revision.adapter_id)
                .where(Adapter.base_id == bid, AdapterFingerprint.version == version)
                .limit(1)
            )
        return None if dim is None else int(dim)

    def fingerprint_state(self, base: str, version: str = FINGERPRINT_VERSION) -> FingerprintState | None:
        """The :class:`FingerprintState` of ``version`` (the whole table's rows of that version, not only the
        base's: one index range, and a write to any base changes it); None when ``base`` is unknown."""
        with self._core.read() as conn:
            if self._core.base_id(conn, base, create=False) is None:
                return None
            return _state(conn, version)

    def packed_fingerprint_rows(self, base: str, version: str = FINGERPRINT_VERSION) -> PackedFingerprintRows | None:
        """The fingerprints of ``version`` of every revision of ``base``, in the order they were stored
        (the order of the version index, so SQLite need not sort 100,000 blobs), read in one transaction
        with the :class:`FingerprintState` they belong to; None when ``base`` is unknown."""
        with self._core.read() as conn:
            bid = self._core.base_id(conn, base, create=False)
            if bid is None:
                return None
            state = _state(conn, version)
            q = (
                select(AdapterFingerprint.revision_id, AdapterFingerprint.n_modules, AdapterFingerprint.dim,
                       AdapterFingerprint.vec)
                .join(Revision, Revision.id == AdapterFingerprint.revision_id)
                .join(Adapter, Adapter.id == Revision.adapter_id)
                .where(Adapter.base_id == bid, AdapterFingerprint.version == version)
                .order_by(AdapterFingerprint.id)
            )  # fmt: skip
            rows = conn.execute(q).all()
        if not rows:
            return PackedFingerprintRows(state, np.zeros(0, np.int64), np.zeros(0, np.int32), np.zeros((0, 0), "<f2"))
        rids, nmods, dims, vecs = zip(*rows)
        del rows
        if len(set(dims)) > 1:
            raise StoreError(f"fingerprints of version {version} with several dimensions {sorted(set(dims))}")
        dim = int(dims[0])
        if {len(v) for v in vecs} != {dim * 2}:
            raise StoreError(f"a stored fingerprint of version {version} does not hold {dim} float16 values")
        matrix = np.frombuffer(b"".join(vecs), dtype="<f2").reshape(len(vecs), dim)
        return PackedFingerprintRows(state, np.array(rids, dtype=np.int64), np.array(nmods, dtype=np.int32), matrix)

    def repo_revisions(self, repo_id: str, version: str = FINGERPRINT_VERSION) -> list[StoredRevision]:
        """Every stored revision of ``repo_id`` under every base, oldest first, each with its fingerprint
        of ``version`` if it has one."""
        with self._core.read() as conn:
            q = (
                select(BaseModel.name, Revision.id, Revision.repo_id, Revision.sha, Revision.status, Revision.reason,
                       AdapterFingerprint.n_modules, AdapterFingerprint.vec)
                .join(Adapter, Adapter.id == Revision.adapter_id)
                .join(BaseModel, BaseModel.id == Adapter.base_id)
                .outerjoin(AdapterFingerprint, and_(AdapterFingerprint.revision_id == Revision.id,
                                                    AdapterFingerprint.version == version))
                .where(Revision.repo_id == repo_id)
                .order_by(Revision.id)
            )  # fmt: skip
            rows = conn.execute(q).all()
        return [StoredRevision(r.name, int(r.id), r.repo_id, r.sha, r.status, r.reason,
                               Fingerprint.from_bytes(version, r.vec, int(r.n_modules)) if r.vec is not None else None)
                for r in rows]  # fmt: skip

    # -- blocklist ------------------------------------------------------------------------------

    def add_blocklist_entries(self, base: str, entries: list[dict[str, Any]]) -> int:
        """Import entries ``{"label", "source", "reason", "fingerprint": Fingerprint}``; returns how many
        are new (an entry with the same label and version replaces the old one)."""
        now = utcnow()
        with self._core.write() as conn:
            bid = self._core.base_id(conn, base)
            before = {(r.label, r.version) for r in conn.execute(
                select(BlocklistEntry.label, BlocklistEntry.version).where(BlocklistEntry.base_id == bid))}  # fmt: skip
            rows = [dict(base_id=bid, label=e["label"], source=e["source"], reason=e.get("reason"),
                         version=e["fingerprint"].version, dim=e["fingerprint"].dim,
                         n_modules=e["fingerprint"].n_modules, vec=e["fingerprint"].to_bytes(), created_at=now)
                    for e in entries]  # fmt: skip
            if rows:
                ins = self._core.insert(BlocklistEntry)
                cols = ("source", "reason", "dim", "n_modules", "vec", "created_at")
                conn.execute(ins.on_conflict_do_update(index_elements=["base_id", "label", "version"],
                                                       set_={c: ins.excluded[c] for c in cols}), rows)  # fmt: skip
        return sum(1 for r in rows if (r["label"], r["version"]) not in before)

    def blocklist(self, base: str, version: str | None = FINGERPRINT_VERSION) -> list[BlocklistRow]:
        """The imported blocklist entries of ``base`` (of one fingerprint version; None: all)."""
        with self._core.read() as conn:
            bid = self._core.base_id(conn, base, create=False)
            if bid is None:
                return []
            q = select(*table_of(BlocklistEntry).c).where(BlocklistEntry.base_id == bid)
            if version is not None:
                q = q.where(BlocklistEntry.version == version)
            rows = conn.execute(q.order_by(BlocklistEntry.id)).all()
            return [BlocklistRow(r.id, base, r.label, r.source, r.reason,
                                 Fingerprint.from_bytes(r.version, r.vec, r.n_modules), r.created_at)
                    for r in rows]  # fmt: skip

    # -- downstream repos -----------------------------------------------------------------------

    def record_downstream(self, base: str, repo_id: str, children: list[tuple[str, str]]) -> None:
        """Record the Hub repos (child repo id, relation) that declare ``repo_id`` (an adapter of
        ``base``) as their base; children seen before keep their first_seen."""
        for _, relation in children:
            if relation not in DOWNSTREAM_RELATIONS:
                raise ValueError(f"unknown downstream relation {relation!r}")
        now = utcnow()
        with self._core.write() as conn:
            bid = self._core.base_id(conn, base, create=False)
            aid = conn.scalar(select(Adapter.id).where(Adapter.base_id == bid, Adapter.repo_id == repo_id))
            if aid is None:
                raise ValueError(f"{repo_id} is not an adapter of {base} in the store")
            if children:
                ins = self._core.insert(DownstreamRepo)
                conn.execute(ins.on_conflict_do_update(index_elements=["adapter_id", "repo_id", "relation"],
                                                       set_={"last_seen": now}),
                             [dict(adapter_id=aid, repo_id=c, relation=rel, first_seen=now, last_seen=now)
                              for c, rel in sorted(set(children))])  # fmt: skip

    def downstream(self, base: str) -> dict[str, list[tuple[str, str]]]:
        """``{adapter repo id: [(child repo id, relation), ...]}`` for the adapters of ``base``."""
        with self._core.read() as conn:
            bid = self._core.base_id(conn, base, create=False)
            if bid is None:
                return {}
            q = (select(Adapter.repo_id.label("parent"), DownstreamRepo.repo_id, DownstreamRepo.relation)
                 .join(Adapter, Adapter.id == DownstreamRepo.adapter_id).where(Adapter.base_id == bid)
                 .order_by(Adapter.repo_id, DownstreamRepo.relation, DownstreamRepo.repo_id))  # fmt: skip
            out: dict[str, list[tuple[str, str]]] = {}
            for r in conn.execute(q):
                out.setdefault(r.parent, []).append((r.repo_id, r.relation))
            return out


def _state(conn: Connection, version: str) -> FingerprintState:
    count, max_id, max_created = conn.execute(
        select(func.count(), func.max(AdapterFingerprint.id), func.max(AdapterFingerprint.created_at))
        .where(AdapterFingerprint.version == version)
    ).one()
    return FingerprintState(int(count), max_id, max_created)
