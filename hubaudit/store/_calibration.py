"""Calibration reads and writes: the population of a base, threshold sets, verdicts (mixed into Store)."""

from __future__ import annotations

from sqlalchemy import and_, func, select, update

from hubaudit.constants import FEATURESET_VERSION
from hubaudit.store._sql import chunks, clean_json
from hubaudit.store.rows import PopulationRow, ThresholdSetRow
from hubaudit.store.schema import Adapter, BaseModel, Revision, ThresholdSet, Verdict, WeightScore, utcnow

_BULK_CHUNK = 5000  # rows per transaction in bulk writes: bounded memory, progress survives a kill


class CalibrationMixin:
    """population / save_threshold_set / active_threshold_set / threshold_sets / save_verdicts."""

    def population(self, base: str, featureset_version: str = FEATURESET_VERSION) -> list[PopulationRow]:
        """The latest scored revision of every non-removed adapter of ``base`` (the calibration population)."""
        with self._read() as conn:  # type: ignore[attr-defined]
            bid = self._base_id(conn, base, create=False)  # type: ignore[attr-defined]
            if bid is None:
                return []
            latest = (
                select(func.max(Revision.id).label("rid"))
                .join(Adapter, Adapter.id == Revision.adapter_id)
                .join(WeightScore, and_(WeightScore.revision_id == Revision.id, WeightScore.featureset_version == featureset_version))
                .where(Adapter.base_id == bid, Adapter.removed.is_(False), Revision.status == "scored")
                .group_by(Revision.adapter_id)
                .subquery()
            )
            q = (
                select(Revision.id, Revision.repo_id, Revision.sha, WeightScore.stratum, WeightScore.score, WeightScore.features)
                .join(latest, latest.c.rid == Revision.id)
                .join(WeightScore, and_(WeightScore.revision_id == Revision.id, WeightScore.featureset_version == featureset_version))
                .order_by(Revision.id)
            )
            return [PopulationRow(r.id, r.repo_id, r.sha, r.stratum, r.score, r.features) for r in conn.execute(q)]

    def save_threshold_set(
        self, base: str, *, method: str, featureset_version: str, n: int, strata: dict, params: dict
    ) -> int:
        """Store a new threshold-set version for ``base`` and make it the only active one; returns its id."""
        with self._write() as conn:  # type: ignore[attr-defined]
            bid = self._base_id(conn, base)  # type: ignore[attr-defined]
            version = (conn.scalar(select(func.max(ThresholdSet.version)).where(ThresholdSet.base_id == bid)) or 0) + 1
            conn.execute(update(ThresholdSet).where(ThresholdSet.base_id == bid).values(active=False))
            ins = ThresholdSet.__table__.insert().values(
                base_id=bid, version=version, method=method, featureset_version=featureset_version, n=n,
                strata=clean_json(strata), params=clean_json(params), created_at=utcnow(), active=True,
            )  # fmt: skip
            return int(conn.execute(ins.returning(ThresholdSet.id)).scalar_one())

    def active_threshold_set(self, base: str) -> ThresholdSetRow | None:
        """The active threshold set of ``base`` (None: never calibrated)."""
        return self._threshold_set(base, active=True)

    def threshold_sets(self, base: str) -> list[ThresholdSetRow]:
        """Every threshold set of ``base``, oldest first."""
        return self._threshold_set(base, active=None)  # type: ignore[return-value]

    def _threshold_set(self, base: str, *, active: bool | None):  # type: ignore[no-untyped-def]
        with self._read() as conn:  # type: ignore[attr-defined]
            q = select(ThresholdSet.__table__, BaseModel.name.label("base")).join(BaseModel, BaseModel.id == ThresholdSet.base_id)
            q = q.where(BaseModel.name == base).order_by(ThresholdSet.version)
            if active:
                q = q.where(ThresholdSet.active.is_(True))
            rows = [
                ThresholdSetRow(t.id, t.base, t.version, t.method, t.featureset_version, t.n, t.strata, t.params, t.created_at, t.active)
                for t in conn.execute(q)
            ]
        return (rows[-1] if rows else None) if active else rows

    def save_verdicts(self, threshold_set_id: int, verdicts: list[tuple[int, bool | None, dict]]) -> None:
        """Store (revision_id, flagged, breakdown) verdicts under one threshold set (idempotent)."""
        now = utcnow()
        ins = self._insert(Verdict)  # type: ignore[attr-defined]
        stmt = ins.on_conflict_do_update(
            index_elements=["revision_id", "threshold_set_id"],
            set_={"flagged": ins.excluded.flagged, "breakdown": ins.excluded.breakdown, "created_at": now},
        )
        for part in chunks(verdicts, _BULK_CHUNK):
            rows = [dict(revision_id=rid, threshold_set_id=threshold_set_id, flagged=flagged,
                         breakdown=breakdown, created_at=now) for rid, flagged, breakdown in part]  # fmt: skip
            with self._write() as conn:  # type: ignore[attr-defined]
                conn.execute(stmt, rows)

