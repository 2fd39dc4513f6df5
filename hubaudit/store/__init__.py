"""The store stage: hubaudit's database (SQLite by default, PostgreSQL by URL) and its migrations.

``from hubaudit.store import Store`` is the whole public surface; rows come back as the frozen
dataclasses of :mod:`hubaudit.store.rows`. What the Store guarantees is written in
hubaudit/store/CONTRACT.md.
"""

from __future__ import annotations

from hubaudit.store.rows import AuditRow, BehaviourCalibrationRow, PopulationRow, ProbeJobRow, ThresholdSetRow
from hubaudit.store.store import FINAL_STATUSES, REVISION_STATUSES, Store

__all__ = ["Store", "AuditRow", "BehaviourCalibrationRow", "PopulationRow", "ProbeJobRow", "ThresholdSetRow",
           "FINAL_STATUSES", "REVISION_STATUSES"]
