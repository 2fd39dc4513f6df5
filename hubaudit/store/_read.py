"""The read side for reports, ``check`` and export: one row per adapter with everything known."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any

from sqlalchemy import Select, and_, func, select

from hubaudit.constants import FEATURESET_VERSION
from hubaudit.store._sql import unpack_modules
from hubaudit.store.rows import AuditRow
from hubaudit.store.schema import Adapter, BaseModel, ProbeResult, Revision, ThresholdSet, Verdict, WeightScore


class ReadMixin:
    """audit_rows / find_revision / module_norms (mixed into Store)."""

    def audit_rows(self, base: str, *, since: datetime | None = None,
                   revision_ids: Collection[int] | None = None) -> list[AuditRow]:  # fmt: skip
        """One row per adapter of ``base`` (removed ones included, flagged by ``removed``) with its
        latest revision, that revision's score, its verdict under the active threshold set and
        its latest probe result. ``since``: only revisions recorded at or after that time.
        ``revision_ids``: the rows of exactly these revisions of ``base`` instead (latest or not)."""
        with self._read() as conn:  # type: ignore[attr-defined]
            bid = self._base_id(conn, base, create=False)  # type: ignore[attr-defined]
            if bid is None:
                return []
            if revision_ids is not None:
                q = self._audit_select(conn, base, bid).where(Adapter.base_id == bid, Revision.id.in_(sorted(revision_ids)))
                return [_row(base, r) for r in conn.execute(q.order_by(Revision.id)).mappings()]
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
        with self._read() as conn:  # type: ignore[attr-defined]
            q = select(Revision.id, BaseModel.name, BaseModel.id.label("bid")).join(Adapter, Adapter.id == Revision.adapter_id)
            q = q.join(BaseModel, BaseModel.id == Adapter.base_id).where(Revision.repo_id == repo_id)
            if sha is not None:
                q = q.where(Revision.sha == sha)
            hit = conn.execute(q.order_by(Revision.id.desc()).limit(1)).first()
            if hit is None:
                return None
            r = conn.execute(self._audit_select(conn, hit.name, hit.bid).where(Revision.id == hit.id)).mappings().first()
            return _row(hit.name, r) if r is not None else None

    def probe_confirmed(self, base: str) -> list[int]:
        """Ids of the revisions of ``base`` (any revision, not only the latest) whose latest probe
        result flagged a backdoor, ascending."""
        with self._read() as conn:  # type: ignore[attr-defined]
            bid = self._base_id(conn, base, create=False)  # type: ignore[attr-defined]
            if bid is None:
                return []
            last = select(func.max(ProbeResult.id).label("pid")).group_by(ProbeResult.revision_id).subquery()
            q = (select(ProbeResult.revision_id).join(last, last.c.pid == ProbeResult.id)
                 .join(Revision, Revision.id == ProbeResult.revision_id).join(Adapter, Adapter.id == Revision.adapter_id)
                 .where(Adapter.base_id == bid, ProbeResult.flagged.is_(True)).order_by(ProbeResult.revision_id))  # fmt: skip
            return [int(r) for r in conn.scalars(q)]

    def module_norms(self, revision_id: int) -> list[dict]:
        """Per-module statistics (ModuleStat.to_dict()) of a scored revision; [] if none."""
        with self._read() as conn:  # type: ignore[attr-defined]
            norms = conn.scalar(
                select(WeightScore.module_norms).where(WeightScore.revision_id == revision_id).order_by(WeightScore.id.desc()).limit(1)
            )
        return unpack_modules(norms)

    def _audit_select(self, conn: Any, base: str, bid: int) -> Select:
        active = conn.execute(
            select(ThresholdSet.id, ThresholdSet.featureset_version).where(ThresholdSet.base_id == bid, ThresholdSet.active.is_(True))
        ).first()
        ts_id = active.id if active else None
        fv = active.featureset_version if active else FEATURESET_VERSION
        last_probe = select(func.max(ProbeResult.id).label("pid"), ProbeResult.revision_id).group_by(ProbeResult.revision_id).subquery()
        return (
            select(
                Revision.id.label("revision_id"), Revision.repo_id, Revision.sha, Revision.status, Revision.reason, Revision.error,
                Revision.declared_base, Revision.provenance, Revision.files, Revision.recorded_at,
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


def _row(base: str, r: Any) -> AuditRow:
    meta = dict(r["meta"] or {})
    probe = None
    if r["probe_result"] is not None:
        probe = dict(r["probe_result"]) | {"flagged": r["probe_flagged"], "created_at": r["probe_at"].isoformat()}
    return AuditRow(
        revision_id=r["revision_id"], base=base, repo_id=r["repo_id"], sha=r["sha"], status=r["status"], reason=r["reason"],
        error=r["error"], score=r["score"], features=dict(r["features"] or {}), stratum=r["stratum"],
        featureset_version=r["featureset_version"], flagged=r["flagged"], breakdown=r["breakdown"],
        threshold_set_id=r["threshold_set_id"], first_seen=r["first_seen"], last_seen=r["last_seen"],
        recorded_at=r["recorded_at"], downloads=meta.get("downloads"), likes=meta.get("likes"), removed=bool(r["removed"]),
        author=r["author"], declared_base=r["declared_base"], provenance=dict(r["provenance"] or {}),
        files=list(r["files"] or []), meta=meta, probe=probe, source=r["source"],
    )  # fmt: skip
