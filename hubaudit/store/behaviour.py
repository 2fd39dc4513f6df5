"""Behavioural calibrations: versioned probe-battery thresholds, τ_search and PSIM τ per base and kind."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from sqlalchemy import func, select

from hubaudit.store._sql import clean_json
from hubaudit.store.core import StoreCore, table_of
from hubaudit.store.rows import BehaviourCalibrationRow
from hubaudit.store.schema import BaseModel, BehaviourCalibration, utcnow
from hubaudit.vocab import CalibrationKind


def thresholds_fingerprint(thresholds: dict[str, Any]) -> str:
    """The first 16 hex digits of the sha256 of the canonical JSON of ``thresholds`` (sorted keys,
    no whitespace, non-finite floats as null): equal thresholds give equal fingerprints."""
    doc = json.dumps(clean_json(thresholds), sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(doc.encode("utf-8")).hexdigest()[:16]


def _kind(kind: str) -> CalibrationKind:
    try:
        return CalibrationKind(kind)
    except ValueError:
        raise ValueError(f"unknown calibration kind {kind!r} (one of {', '.join(CalibrationKind)})") from None


class BehaviourCalibrationRepository:
    """save_behaviour_calibration / behaviour_calibration / behaviour_calibrations."""

    def __init__(self, core: StoreCore) -> None:
        self._core = core

    def save_behaviour_calibration(self, base: str, kind: str, thresholds: dict[str, Any], *, source: str,
                                   n_clean: int) -> BehaviourCalibrationRow:  # fmt: skip
        """Store ``thresholds`` (a thresholds object's ``to_dict()``) as the next version of ``base``'s
        ``kind`` calibration, which is then the one in force; returns the stored row."""
        k = _kind(kind)
        doc = clean_json(dict(thresholds))
        with self._core.write() as conn:
            bid = self._core.base_id(conn, base)
            latest = select(func.max(BehaviourCalibration.version)).where(BehaviourCalibration.base_id == bid,
                                                                           BehaviourCalibration.kind == k.value)
            version = (conn.scalar(latest) or 0) + 1
            now = utcnow()
            values = dict(base_id=bid, kind=k.value, version=version, thresholds=doc, source=source,
                          n_clean=int(n_clean), fingerprint=thresholds_fingerprint(doc), created_at=now)  # fmt: skip
            new_id = int(conn.execute(table_of(BehaviourCalibration).insert().values(**values)
                                      .returning(BehaviourCalibration.id)).scalar_one())  # fmt: skip
        return BehaviourCalibrationRow(new_id, base, k.value, version, doc, source, int(n_clean),
                                       values["fingerprint"], now)

    def behaviour_calibration(self, base: str, kind: str) -> BehaviourCalibrationRow | None:
        """The calibration of ``base`` and ``kind`` in force (its newest version); None: never calibrated."""
        rows = self._rows(base, _kind(kind), newest_only=True)
        return rows[0] if rows else None

    def behaviour_calibrations(self, base: str, kind: str | None = None) -> list[BehaviourCalibrationRow]:
        """Every behavioural calibration of ``base`` (of ``kind`` only, when given), oldest first per kind."""
        return self._rows(base, _kind(kind) if kind is not None else None, newest_only=False)

    def _rows(self, base: str, kind: CalibrationKind | None, *, newest_only: bool) -> list[BehaviourCalibrationRow]:
        t = BehaviourCalibration
        with self._core.read() as conn:
            q = select(table_of(t), BaseModel.name.label("base")).join(BaseModel, BaseModel.id == t.base_id)
            q = q.where(BaseModel.name == base)
            if kind is not None:
                q = q.where(t.kind == kind.value)
            q = q.order_by(t.kind, t.version.desc() if newest_only else t.version)
            if newest_only:
                q = q.limit(1)
            return [BehaviourCalibrationRow(r.id, r.base, r.kind, r.version, r.thresholds, r.source, r.n_clean,
                                            r.fingerprint, r.created_at) for r in conn.execute(q)]  # fmt: skip
