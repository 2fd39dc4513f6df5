"""The run log: one row per command invocation, the audit trail cron leaves behind."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update

from hubaudit.store._sql import clean_json
from hubaudit.store.core import StoreCore, table_of
from hubaudit.store.schema import Run, utcnow


class RunLogRepository:
    """start_run / finish_run / runs."""

    def __init__(self, core: StoreCore) -> None:
        self._core = core

    def start_run(self, command: str, args: dict[str, Any]) -> int:
        """Record the start of a command (committed at once); returns the run id for :meth:`finish_run`."""
        with self._core.write() as conn:
            row = table_of(Run).insert().values(command=command, args=clean_json(args), started_at=utcnow(), counts={})
            return int(conn.execute(row.returning(Run.id)).scalar_one())

    def finish_run(self, run_id: int, *, counts: dict[str, int], exit_status: int) -> None:
        """Record the end of a run, its counts and its exit status."""
        with self._core.write() as conn:
            conn.execute(
                update(Run).where(Run.id == run_id)
                .values(finished_at=utcnow(), counts=clean_json(counts), exit_status=exit_status)
            )

    def runs(self, limit: int = 50) -> list[dict[str, Any]]:
        """The latest runs, newest first, as plain dicts of the ``runs`` columns."""
        with self._core.read() as conn:
            rows = conn.execute(select(Run).order_by(Run.id.desc()).limit(limit)).mappings().all()
        return [dict(r) for r in rows]
