"""Fingerprints, imported blocklist entries and downstream Hub repos (mixed into Store).

Fingerprints are read back as one packed matrix (:class:`FingerprintSet`) so a similarity search
is one matrix-vector product over every stored adapter of a base.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import select

from hubaudit.constants import FINGERPRINT_VERSION
from hubaudit.models import Fingerprint
from hubaudit.store._sql import SQL_IN_CHUNK, chunks
from hubaudit.store.schema import (
    Adapter,
    AdapterFingerprint,
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


def fingerprint_row(revision_id: int, fp: Fingerprint, now: Any) -> dict[str, Any]:
    return dict(revision_id=revision_id, version=fp.version, dim=fp.dim, n_modules=fp.n_modules,
                vec=fp.to_bytes(), created_at=now)  # fmt: skip


class LineageMixin:
    """save_fingerprints / fingerprints / blocklist / downstream (mixed into Store)."""

    def save_fingerprints(self, items: list[tuple[int, Fingerprint]]) -> None:
        """Store (or replace) the fingerprint of each (revision id, fingerprint)."""
        if not items:
            return
        now = utcnow()
        for part in chunks(items, 2000):
            with self._write() as conn:  # type: ignore[attr-defined]
                self._upsert_fingerprints(conn, [fingerprint_row(rid, fp, now) for rid, fp in part])

    def _upsert_fingerprints(self, conn: Any, rows: list[dict[str, Any]]) -> None:
        ins = self._insert(AdapterFingerprint)  # type: ignore[attr-defined]
        cols = ("dim", "n_modules", "vec", "created_at")
        conn.execute(
            ins.on_conflict_do_update(index_elements=["revision_id", "version"], set_={c: ins.excluded[c] for c in cols}),
            rows,
        )

    def fingerprints(self, base: str, version: str = FINGERPRINT_VERSION, *,
                     revision_ids: Collection[int] | None = None) -> FingerprintSet:  # fmt: skip
        """Every stored fingerprint of ``version`` for the adapters of ``base`` (all revisions), or only
        those of ``revision_ids`` (a check compares one adapter with a few known-bad ones: reading
        100,000 fingerprints for it would cost ~200 MB)."""
        with self._read() as conn:  # type: ignore[attr-defined]
            bid = self._base_id(conn, base, create=False)  # type: ignore[attr-defined]
            q = (
                select(AdapterFingerprint.revision_id, Revision.repo_id, Revision.sha, Revision.adapter_id,
                       AdapterFingerprint.n_modules, AdapterFingerprint.dim, AdapterFingerprint.vec)
                .join(Revision, Revision.id == AdapterFingerprint.revision_id)
                .join(Adapter, Adapter.id == Revision.adapter_id)
                .where(Adapter.base_id == bid, AdapterFingerprint.version == version)
                .order_by(AdapterFingerprint.revision_id)
            )  # fmt: skip
            if bid is None:
                rows = []
            elif revision_ids is None:
                rows = conn.execute(q).all()
            else:
                rows = []
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
        latest = np.zeros(len(rows), dtype=bool)
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

    # -- blocklist ------------------------------------------------------------------------------

    def add_blocklist_entries(self, base: str, entries: list[dict[str, Any]]) -> int:
        """Import entries ``{"label", "source", "reason", "fingerprint": Fingerprint}``; returns how many
        are new (an entry with the same label and version replaces the old one)."""
        now = utcnow()
        with self._write() as conn:  # type: ignore[attr-defined]
            bid = self._base_id(conn, base)  # type: ignore[attr-defined]
            before = {(r.label, r.version) for r in conn.execute(
                select(BlocklistEntry.label, BlocklistEntry.version).where(BlocklistEntry.base_id == bid))}  # fmt: skip
            rows = [dict(base_id=bid, label=e["label"], source=e["source"], reason=e.get("reason"),
                         version=e["fingerprint"].version, dim=e["fingerprint"].dim,
                         n_modules=e["fingerprint"].n_modules, vec=e["fingerprint"].to_bytes(), created_at=now)
                    for e in entries]  # fmt: skip
            if rows:
                ins = self._insert(BlocklistEntry)  # type: ignore[attr-defined]
                cols = ("source", "reason", "dim", "n_modules", "vec", "created_at")
                conn.execute(ins.on_conflict_do_update(index_elements=["base_id", "label", "version"],
                                                       set_={c: ins.excluded[c] for c in cols}), rows)  # fmt: skip
        return sum(1 for r in rows if (r["label"], r["version"]) not in before)

    def blocklist(self, base: str, version: str | None = FINGERPRINT_VERSION) -> list[BlocklistRow]:
        """The imported blocklist entries of ``base`` (of one fingerprint version; None: all)."""
        with self._read() as conn:  # type: ignore[attr-defined]
            bid = self._base_id(conn, base, create=False)  # type: ignore[attr-defined]
            if bid is None:
                return []
            q = select(*BlocklistEntry.__table__.c).where(BlocklistEntry.base_id == bid)
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
        with self._write() as conn:  # type: ignore[attr-defined]
            bid = self._base_id(conn, base, create=False)  # type: ignore[attr-defined]
            aid = conn.scalar(select(Adapter.id).where(Adapter.base_id == bid, Adapter.repo_id == repo_id))
            if aid is None:
                raise ValueError(f"{repo_id} is not an adapter of {base} in the store")
            if children:
                ins = self._insert(DownstreamRepo)  # type: ignore[attr-defined]
                conn.execute(ins.on_conflict_do_update(index_elements=["adapter_id", "repo_id", "relation"],
                                                       set_={"last_seen": now}),
                             [dict(adapter_id=aid, repo_id=c, relation=rel, first_seen=now, last_seen=now)
                              for c, rel in sorted(set(children))])  # fmt: skip

    def downstream(self, base: str) -> dict[str, list[tuple[str, str]]]:
        """``{adapter repo id: [(child repo id, relation), ...]}`` for the adapters of ``base``."""
        with self._read() as conn:  # type: ignore[attr-defined]
            bid = self._base_id(conn, base, create=False)  # type: ignore[attr-defined]
            if bid is None:
                return {}
            q = (select(Adapter.repo_id.label("parent"), DownstreamRepo.repo_id, DownstreamRepo.relation)
                 .join(Adapter, Adapter.id == DownstreamRepo.adapter_id).where(Adapter.base_id == bid)
                 .order_by(Adapter.repo_id, DownstreamRepo.relation, DownstreamRepo.repo_id))  # fmt: skip
            out: dict[str, list[tuple[str, str]]] = {}
            for r in conn.execute(q):
                out.setdefault(r.parent, []).append((r.repo_id, r.relation))
            return out
