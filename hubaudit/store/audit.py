"""Adapters, revisions and their outcomes, and the audit rows read back for reports, ``check`` and export.

A revision's outcome is keyed on (repo_id, sha) and its weight score on (revision_id,
featureset_version): recording either again replaces the stored values, never adds a row. The status
vocabulary, the retry rule and the commit points are hubaudit/store/CONTRACT.md.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Select, and_, bindparam, func, select, update

from hubaudit._gc import no_cyclic_gc
from hubaudit.constants import FEATURESET_VERSION
from hubaudit.store._sql import (
    BULK_CHUNK,
    SQL_IN_CHUNK,
    chunks,
    clean_json,
    feature_columns,
    pack_modules,
    unpack_modules,
)
from hubaudit.store.core import StoreCore, table_of
from hubaudit.store.lineage import fingerprint_row, upsert_fingerprint_rows
from hubaudit.store.rows import AuditRow
from hubaudit.store.schema import Adapter, BaseModel, ProbeResult, Revision, ThresholdSet, Verdict, WeightScore, utcnow
from hubaudit.vocab import FINAL_REVISION_STATUSES, RevisionStatus

if TYPE_CHECKING:
    from hubaudit.models import ScanResult

# The words are hubaudit.vocab's; members equal (and hash as) their strings, so rows read back compare equal.
REVISION_STATUSES: frozenset[str] = frozenset(RevisionStatus)
FINAL_STATUSES: frozenset[str] = FINAL_REVISION_STATUSES  # every status but "retry": the crawl does not revisit these
# A revision that failed transiently ("retry") this many runs in a row becomes a final "error"
# (reason "gave_up"): a repo that always times out must not cost every nightly crawl forever, and
# it stays visible as not audited (never clean). A new commit of the repo starts afresh.
RETRY_LIMIT = 5


class AuditRepository:
    """Adapters (upsert, meta, removed), revisions (record, outcomes) and the audit read side
    (audit_rows, find_revision, module_norms, probe_confirmed, bases)."""

    def __init__(self, core: StoreCore) -> None:
        self._core = core

    # -- bases and adapters ---------------------------------------------------------------------

    def bases(self) -> list[str]:
        """Every base model the store knows (has recorded adapters or a calibration for), sorted."""
        with self._core.read() as conn:
            return sorted(conn.scalars(select(BaseModel.name)).all())

    def upsert_adapter(self, base: str, repo_id: str, *, meta: dict[str, Any] | None = None,
                       source: str = "hub") -> int:
        """Insert or refresh one adapter of ``base``; merges ``meta`` into what is stored. Returns its id."""
        with self._core.write() as conn:
            return self._upsert_adapters(conn, base, [(repo_id, meta)], source)[repo_id]

    def upsert_adapters(self, base: str, items: list[tuple[str, dict[str, Any] | None]], *,
                        source: str = "hub") -> None:
        """:meth:`upsert_adapter` for many ``(repo_id, meta)`` pairs in one transaction (a listing page).

        A re-crawl of an unchanged base is one upsert per listed adapter: done one at a time, that was
        most of its time (benchmarks/bench_crawl.py).
        """
        if items:
            with self._core.write() as conn:
                self._upsert_adapters(conn, base, items, source)

    def _upsert_adapters(self, conn: Connection, base: str, items: list[tuple[str, dict[str, Any] | None]],
                         source: str) -> dict[str, int]:  # fmt: skip
        """Insert new adapters, refresh known ones (last_seen, removed=False, meta merged, author);
        returns {repo_id: adapter id}."""
        merged_items: dict[str, dict[str, Any]] = {}
        for repo_id, meta in items:  # a repo listed twice: metas merge in order, as repeated calls would
            merged_items.setdefault(repo_id, {}).update(clean_json(meta or {}))
        bid = self._core.base_id(conn, base)
        now = utcnow()
        old: dict[str, Any] = {}
        for part in chunks(sorted(merged_items), SQL_IN_CHUNK):
            q = select(Adapter.id, Adapter.repo_id, Adapter.meta, Adapter.author).where(
                Adapter.base_id == bid, Adapter.repo_id.in_(part))
            old.update({row.repo_id: row for row in conn.execute(q)})
        updates: list[dict[str, Any]] = []
        inserts: list[dict[str, Any]] = []
        for repo_id, meta in merged_items.items():
            prev = old.get(repo_id)
            merged = {**(dict(prev.meta) if prev is not None else {}), **meta}
            author = merged.get("author") or (prev.author if prev is not None else None) or _author(repo_id)
            if prev is not None:
                updates.append({"b_id": prev.id, "b_meta": merged, "b_author": author})
            else:
                inserts.append(dict(base_id=bid, repo_id=repo_id, author=author, source=source, first_seen=now,
                                    last_seen=now, removed=False, meta=merged))
        table = table_of(Adapter)
        if updates:
            conn.execute(
                update(table).where(table.c.id == bindparam("b_id")).values(
                    last_seen=now, removed=False, meta=bindparam("b_meta"), author=bindparam("b_author")),
                updates,
            )
        if inserts:
            conn.execute(table.insert(), inserts)
        ids = {repo_id: int(row.id) for repo_id, row in old.items()}
        if inserts:
            ids.update(self._adapter_ids(conn, bid, [r["repo_id"] for r in inserts]))
        return ids

    def revision_outcomes(self, keys: list[tuple[str, str]]) -> dict[tuple[str, str], str]:
        """:meth:`revision_outcome` for many ``(repo_id, sha)`` pairs; pairs never seen are absent."""
        wanted = set(keys)
        out: dict[tuple[str, str], str] = {}
        with self._core.read() as conn:
            for part in chunks(sorted({r for r, _ in wanted}), SQL_IN_CHUNK):
                q = (select(Revision.repo_id, Revision.sha, Revision.status)
                     .where(Revision.repo_id.in_(part)).order_by(Revision.id))
                for row in conn.execute(q):  # ascending id: the newest row of a pair wins, as in revision_outcome
                    if (row.repo_id, row.sha) in wanted:
                        out[(row.repo_id, row.sha)] = row.status
        return out

    def mark_removed(self, base: str, present_repo_ids: set[str]) -> list[str]:
        """Mark every Hub adapter of ``base`` not in ``present_repo_ids`` removed; returns those newly marked."""
        with self._core.write() as conn:
            bid = self._core.base_id(conn, base)
            rows = conn.execute(
                select(Adapter.id, Adapter.repo_id)
                .where(Adapter.base_id == bid, Adapter.source == "hub", Adapter.removed.is_(False))
            ).all()
            gone = [r for r in rows if r.repo_id not in present_repo_ids]
            for part in chunks([r.id for r in gone], SQL_IN_CHUNK):
                conn.execute(update(Adapter).where(Adapter.id.in_(part)).values(removed=True))
        return sorted(r.repo_id for r in gone)

    def adapter_meta(self, base: str, repo_id: str) -> dict[str, Any] | None:
        """The stored listing metadata of one adapter, plus author/source/first_seen/last_seen/removed."""
        with self._core.read() as conn:
            row = conn.execute(
                select(Adapter).join(BaseModel, BaseModel.id == Adapter.base_id)
                .where(BaseModel.name == base, Adapter.repo_id == repo_id)
            ).mappings().first()
        if row is None:
            return None
        return dict(row["meta"]) | {k: row[k] for k in ("author", "source", "first_seen", "last_seen", "removed")}

    # -- revisions ------------------------------------------------------------------------------

    def revision_outcome(self, repo_id: str, sha: str) -> str | None:
        """The stored status of (repo_id, sha), or None if never seen (see FINAL_STATUSES)."""
        with self._core.read() as conn:
            return conn.scalar(
                select(Revision.status).where(Revision.repo_id == repo_id, Revision.sha == sha)
                .order_by(Revision.id.desc()).limit(1)
            )

    def record_revision(
        self, *, base: str, repo_id: str, sha: str, status: str, reason: str | None = None, error: str | None = None,
        files: list[dict[str, Any]] | None = None, declared_base: str | None = None,
        provenance: dict[str, Any] | None = None, scan: ScanResult | None = None,
    ) -> int:  # fmt: skip
        """Record what happened to one revision (idempotent on (repo_id, sha)); stores the score of an ok scan."""
        item = dict(repo_id=repo_id, sha=sha, status=status, reason=reason, error=error, files=files,
                    declared_base=declared_base, provenance=provenance, scan=scan)  # fmt: skip
        with self._core.write() as conn:
            return self._record(conn, base, [item])[0]

    def record_revisions_bulk(self, base: str, items: list[dict[str, Any]]) -> list[int]:
        """:meth:`record_revision` for many items (dicts of its keyword arguments, minus ``base``).

        Commits every few thousand rows; returns the revision ids in input order.
        """
        ids: list[int] = []
        with no_cyclic_gc():
            for part in chunks(items, BULK_CHUNK):
                with self._core.write() as conn:
                    ids.extend(self._record(conn, base, part))
        return ids

    def _record(self, conn: Connection, base: str, items: list[dict[str, Any]]) -> list[int]:
        for it in items:
            if it["status"] not in REVISION_STATUSES:
                raise ValueError(f"unknown revision status {it['status']!r}")
        bid = self._core.base_id(conn, base)
        now = utcnow()
        repo_ids = sorted({it["repo_id"] for it in items})
        ins = self._core.insert(Adapter)
        conn.execute(
            ins.on_conflict_do_update(index_elements=["base_id", "repo_id"], set_={"last_seen": now, "removed": False}),
            [dict(base_id=bid, repo_id=r, author=_author(r), source="local" if r.startswith("local:") else "hub",
                  first_seen=now, last_seen=now, removed=False, meta={}) for r in repo_ids],
        )  # fmt: skip
        adapter_ids = self._adapter_ids(conn, bid, repo_ids)
        items = self._count_retries(conn, items)
        rev_rows = [
            dict(adapter_id=adapter_ids[it["repo_id"]], repo_id=it["repo_id"], sha=it["sha"], status=it["status"],
                 reason=it.get("reason"), error=_one_line(it.get("error")), files=it.get("files") or [],
                 declared_base=it.get("declared_base"), provenance=it.get("provenance") or {}, recorded_at=now)
            for it in items
        ]  # fmt: skip
        ins = self._core.insert(Revision)
        rev_cols = ("status", "reason", "error", "files", "declared_base", "provenance", "recorded_at")
        conn.execute(
            ins.on_conflict_do_update(index_elements=["adapter_id", "sha"],
                                      set_={c: ins.excluded[c] for c in rev_cols}),
            rev_rows,
        )
        rev_ids = self._revision_ids(conn, [(r["adapter_id"], r["sha"]) for r in rev_rows])
        ids = [rev_ids[(r["adapter_id"], r["sha"])] for r in rev_rows]
        scores = [_score_row(rid, it["scan"], now) for rid, it in zip(ids, items) if _scored(it)]
        if scores:
            ins = self._core.insert(WeightScore)
            score_cols = ("score", "stratum", "features", "feature_digest", "feature_vec", "module_norms", "summary",
                          "created_at")  # fmt: skip
            conn.execute(
                ins.on_conflict_do_update(
                    index_elements=["revision_id", "featureset_version"], set_={c: ins.excluded[c] for c in score_cols}
                ),
                scores,
            )
        prints = [fingerprint_row(rid, it["scan"].fingerprint, now)
                  for rid, it in zip(ids, items) if _scored(it) and it["scan"].fingerprint is not None]  # fmt: skip
        if prints:
            upsert_fingerprint_rows(self._core, conn, prints)
        return ids

    def _count_retries(self, conn: Connection, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Number the consecutive "retry" outcomes of each revision; the RETRY_LIMIT-th becomes "error"."""
        keys = {(it["repo_id"], it["sha"]) for it in items if it["status"] == "retry"}
        if not keys:
            return items
        prior: dict[tuple[str, str], int] = {}
        for part in chunks(sorted(keys), 400):
            q = select(Revision.repo_id, Revision.sha, Revision.provenance).where(
                Revision.status == "retry", Revision.repo_id.in_({r for r, _ in part}))
            for row in conn.execute(q):
                if (row.repo_id, row.sha) in keys:
                    prior[(row.repo_id, row.sha)] = int((row.provenance or {}).get("retry_attempts", 1))
        out = []
        for it in items:
            if it["status"] == "retry":
                n = prior.get((it["repo_id"], it["sha"]), 0) + 1
                it = {**it, "provenance": {**(it.get("provenance") or {}), "retry_attempts": n}}
                if n >= RETRY_LIMIT:
                    last = _one_line(it.get("error")) or it.get("reason") or "transient failure"
                    it.update(status="error", reason="gave_up",
                              error=f"gave up after {n} runs failed transiently ({it.get('reason')}): {last}")
            out.append(it)
        return out

    def _adapter_ids(self, conn: Connection, bid: int, repo_ids: list[str]) -> dict[str, int]:
        out: dict[str, int] = {}
        for part in chunks(repo_ids, SQL_IN_CHUNK):
            q = select(Adapter.repo_id, Adapter.id).where(Adapter.base_id == bid, Adapter.repo_id.in_(part))
            out.update({r.repo_id: r.id for r in conn.execute(q)})
        return out

    def _revision_ids(self, conn: Connection, keys: list[tuple[int, str]]) -> dict[tuple[int, str], int]:
        out: dict[tuple[int, str], int] = {}
        adapter_ids = sorted({a for a, _ in keys})
        for part in chunks(adapter_ids, SQL_IN_CHUNK):
            q = select(Revision.adapter_id, Revision.sha, Revision.id).where(Revision.adapter_id.in_(part))
            out.update({(r.adapter_id, r.sha): r.id for r in conn.execute(q)})
        return out


    # -- the read side --------------------------------------------------------------------------

    def audit_rows(self, base: str, *, since: datetime | None = None,
                   revision_ids: Collection[int] | None = None) -> list[AuditRow]:  # fmt: skip
        """One row per adapter of ``base`` (removed ones included, flagged by ``removed``) with its
        latest revision, that revision's score, its verdict under the active threshold set and
        its latest probe result. ``since``: only revisions recorded at or after that time.
        ``revision_ids``: the rows of exactly these revisions of ``base`` instead (latest or not)."""
        with self._core.read() as conn:
            bid = self._core.base_id(conn, base, create=False)
            if bid is None:
                return []
            if revision_ids is not None:
                q = self._audit_select(conn, base, bid).where(Adapter.base_id == bid).order_by(Revision.id)
                # ascending chunks of ascending ids: the rows come out in revision-id order, as one query would
                return [_row(base, r) for part in chunks(sorted(set(revision_ids)), SQL_IN_CHUNK)
                        for r in conn.execute(q.where(Revision.id.in_(part))).mappings()]  # fmt: skip
            latest = (
                select(func.max(Revision.id).label("rid"))
                .join(Adapter, Adapter.id == Revision.adapter_id)
                .where(Adapter.base_id == bid)
                .group_by(Revision.adapter_id)
                .subquery()
            )
            q = self._audit_select(conn, base, bid).join(latest, latest.c.rid == Revision.id)
            if since is not None:
                q = q.where(Revision.recorded_at >= since)
            return [_row(base, r) for r in conn.execute(q.order_by(Adapter.repo_id)).mappings()]

    def find_revision(self, repo_id: str, sha: str | None = None) -> AuditRow | None:
        """The audit row of ``repo_id`` at ``sha`` (None: its latest revision); None if unknown."""
        with self._core.read() as conn:
            q = (select(Revision.id, BaseModel.name, BaseModel.id.label("bid"))
                 .join(Adapter, Adapter.id == Revision.adapter_id))
            q = q.join(BaseModel, BaseModel.id == Adapter.base_id).where(Revision.repo_id == repo_id)
            if sha is not None:
                q = q.where(Revision.sha == sha)
            hit = conn.execute(q.order_by(Revision.id.desc()).limit(1)).first()
            if hit is None:
                return None
            r = conn.execute(
                self._audit_select(conn, hit.name, hit.bid).where(Revision.id == hit.id)
            ).mappings().first()
            return _row(hit.name, r) if r is not None else None

    def probe_confirmed(self, base: str) -> list[int]:
        """Ids of the revisions of ``base`` (any revision, not only the latest) whose latest probe
        result flagged a backdoor, ascending."""
        with self._core.read() as conn:
            bid = self._core.base_id(conn, base, create=False)
            if bid is None:
                return []
            last = select(func.max(ProbeResult.id).label("pid")).group_by(ProbeResult.revision_id).subquery()
            q = (select(ProbeResult.revision_id).join(last, last.c.pid == ProbeResult.id)
                 .join(Revision, Revision.id == ProbeResult.revision_id)
                 .join(Adapter, Adapter.id == Revision.adapter_id)
                 .where(Adapter.base_id == bid, ProbeResult.flagged.is_(True))
                 .order_by(ProbeResult.revision_id))  # fmt: skip
            return [int(r) for r in conn.scalars(q)]

    def module_norms(self, revision_id: int) -> list[dict[str, Any]]:
        """Per-module statistics (ModuleStat.to_dict()) of a scored revision; [] if none."""
        with self._core.read() as conn:
            norms = conn.scalar(
                select(WeightScore.module_norms).where(WeightScore.revision_id == revision_id)
                .order_by(WeightScore.id.desc()).limit(1)
            )
        return unpack_modules(norms)

    def _audit_select(self, conn: Any, base: str, bid: int) -> Select[Any]:
        active = conn.execute(
            select(ThresholdSet.id, ThresholdSet.featureset_version)
            .where(ThresholdSet.base_id == bid, ThresholdSet.active.is_(True))
        ).first()
        ts_id = active.id if active else None
        fv = active.featureset_version if active else FEATURESET_VERSION
        last_probe = (select(func.max(ProbeResult.id).label("pid"), ProbeResult.revision_id)
                      .group_by(ProbeResult.revision_id).subquery())
        return (
            select(
                Revision.id.label("revision_id"), Revision.repo_id, Revision.sha, Revision.status, Revision.reason,
                Revision.error, Revision.declared_base, Revision.provenance, Revision.files, Revision.recorded_at,
                Adapter.first_seen, Adapter.last_seen, Adapter.removed, Adapter.author, Adapter.meta, Adapter.source,
                WeightScore.score, WeightScore.features, WeightScore.stratum, WeightScore.featureset_version,
                Verdict.flagged, Verdict.breakdown, Verdict.threshold_set_id,
                ProbeResult.result.label("probe_result"), ProbeResult.flagged.label("probe_flagged"),
                ProbeResult.created_at.label("probe_at"),
            )  # fmt: skip
            .join(Adapter, Adapter.id == Revision.adapter_id)
            .outerjoin(WeightScore, and_(WeightScore.revision_id == Revision.id, WeightScore.featureset_version == fv))
            .outerjoin(Verdict, and_(Verdict.revision_id == Revision.id, Verdict.threshold_set_id == ts_id))
            .outerjoin(last_probe, last_probe.c.revision_id == Revision.id)
            .outerjoin(ProbeResult, ProbeResult.id == last_probe.c.pid)
        )



def _author(repo_id: str) -> str | None:
    if repo_id.startswith("local:") or "/" not in repo_id:
        return None
    return repo_id.split("/", 1)[0]


def _one_line(text: str | None) -> str | None:
    if text is None:
        return None
    return (text.strip().splitlines() or [""])[0][:2000]


def _scored(item: dict[str, Any]) -> bool:
    scan = item.get("scan")
    return scan is not None and scan.status == "ok" and item["status"] == "scored"


def _score_row(revision_id: int, scan: ScanResult, now: Any) -> dict[str, Any]:
    summary = scan.to_dict(with_modules=False)
    del summary["features"]  # stored in its own column
    return dict(
        revision_id=revision_id,
        featureset_version=scan.featureset_version or FEATURESET_VERSION,
        score=clean_json(scan.score),
        stratum=scan.stratum,
        **feature_columns(scan.features),
        module_norms=pack_modules(scan.modules),
        summary=summary,
        created_at=now,
    )


def _row(base: str, r: Any) -> AuditRow:
    meta = dict(r["meta"] or {})
    probe = None
    if r["probe_result"] is not None:
        probe = dict(r["probe_result"]) | {"flagged": r["probe_flagged"], "created_at": r["probe_at"].isoformat()}
    return AuditRow(
        revision_id=r["revision_id"], base=base, repo_id=r["repo_id"], sha=r["sha"], status=r["status"],
        reason=r["reason"], error=r["error"], score=r["score"], features=dict(r["features"] or {}),
        stratum=r["stratum"], featureset_version=r["featureset_version"], flagged=r["flagged"],
        breakdown=r["breakdown"], threshold_set_id=r["threshold_set_id"], first_seen=r["first_seen"],
        last_seen=r["last_seen"], recorded_at=r["recorded_at"], downloads=meta.get("downloads"),
        likes=meta.get("likes"), removed=bool(r["removed"]),
        author=r["author"], declared_base=r["declared_base"], provenance=dict(r["provenance"] or {}),
        files=list(r["files"] or []), meta=meta, probe=probe, source=r["source"],
    )  # fmt: skip
