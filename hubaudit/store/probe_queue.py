"""The durable probe queue: one job per revision, claimed under a lease.

A worker that dies mid-job leaves its job ``running`` with a lease that expires; the next claim
takes it back. Claims are atomic: on SQLite the write transaction holds the database write
lock from BEGIN IMMEDIATE; on PostgreSQL the candidates are locked ``FOR UPDATE SKIP LOCKED``.
Each method is one transaction, committed before it returns.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import and_, or_, select, update

from hubaudit.store._sql import SQL_IN_CHUNK, chunks, clean_json
from hubaudit.store.core import StoreCore, table_of
from hubaudit.store.rows import ProbeJobRow
from hubaudit.store.schema import Adapter, BaseModel, ProbeJob, ProbeResult, Revision, utcnow
from hubaudit.vocab import ProbeJobStatus

JOB_STATUSES = tuple(ProbeJobStatus)  # queued | running | done | failed (hubaudit.vocab)


class QueueRepository:
    """enqueue / claim / finish / fail probe jobs, and list them."""

    def __init__(self, core: StoreCore) -> None:
        self._core = core

    def enqueue_probe(self, revision_id: int, *, priority: float) -> int | None:
        """Queue ``revision_id`` for probing; None if it is already queued, running or done.

        A job that failed for good is queued again (attempts reset): re-escalation is deliberate. A job
        still queued takes the new priority (margins move when a base is recalibrated).
        """
        return self.enqueue_probes([(revision_id, priority)])[revision_id]

    def enqueue_probes(self, items: Sequence[tuple[int, float]]) -> dict[int, int | None]:
        """:meth:`enqueue_probe` for many ``(revision_id, priority)`` pairs in one transaction:
        revision id → the id of the job it queued, or None (already queued, running or done)."""
        now = utcnow()
        out: dict[int, int | None] = {}
        with self._core.write() as conn:
            for revision_id, priority in items:
                ins = self._core.insert(ProbeJob).values(
                    revision_id=revision_id, status="queued", priority=float(priority), attempts=0, created_at=now,
                    updated_at=now,
                )  # fmt: skip
                new_id = conn.execute(ins.on_conflict_do_nothing().returning(ProbeJob.id)).scalar()
                if new_id is None:
                    new_id = conn.execute(
                        update(ProbeJob)
                        .where(ProbeJob.revision_id == revision_id, ProbeJob.status == "failed")
                        .values(status="queued", priority=float(priority), attempts=0, worker=None,
                                lease_expires_at=None, updated_at=now)
                        .returning(ProbeJob.id)
                    ).scalar()  # fmt: skip
                if new_id is None:
                    conn.execute(update(ProbeJob)
                                 .where(ProbeJob.revision_id == revision_id, ProbeJob.status == "queued")
                                 .values(priority=float(priority)))  # fmt: skip
                out[revision_id] = int(new_id) if new_id is not None else None
        return out

    def claim_probe_jobs(self, worker: str, *, limit: int, lease_seconds: int, base: str | None = None,
                         after: tuple[float, int] | None = None) -> list[ProbeJobRow]:
        """Atomically move up to ``limit`` queued (or lease-expired running) jobs, highest priority
        first, to ``running`` under ``worker``; never hands one job to two workers. ``base``: only
        jobs whose adapter belongs to that base model (a prober holds one base in memory). ``after``:
        the (priority, id) of the last job an earlier claim of the same run handed out; only jobs
        after it in claim order are taken, so a job that failed and was requeued in this run is not
        claimed again by it."""
        now = utcnow()
        with self._core.write() as conn:
            claimable = or_(ProbeJob.status == "queued",
                            and_(ProbeJob.status == "running", ProbeJob.lease_expires_at < now))
            q = select(ProbeJob.id).where(claimable)
            if after is not None:
                q = q.where(or_(ProbeJob.priority < after[0],
                                and_(ProbeJob.priority == after[0], ProbeJob.id > after[1])))
            if base is not None:
                q = (q.join(Revision, Revision.id == ProbeJob.revision_id)
                     .join(Adapter, Adapter.id == Revision.adapter_id)
                     .join(BaseModel, BaseModel.id == Adapter.base_id).where(BaseModel.name == base))
            q = q.order_by(ProbeJob.priority.desc(), ProbeJob.id).limit(limit)
            ids = list(conn.scalars(q.with_for_update(skip_locked=True, of=ProbeJob)))
            rows: list[ProbeJobRow] = []
            for part in chunks(ids, SQL_IN_CHUNK):
                conn.execute(
                    update(ProbeJob)
                    .where(ProbeJob.id.in_(part))
                    .values(status="running", worker=worker, lease_expires_at=now + timedelta(seconds=lease_seconds),
                            attempts=ProbeJob.attempts + 1, updated_at=now)
                )
                rows.extend(self._jobs(conn, ProbeJob.id.in_(part)))
        order = {i: k for k, i in enumerate(ids)}
        return sorted(rows, key=lambda r: order[r.id])

    def finish_probe_job(self, job_id: int, result: dict[str, Any]) -> None:
        """Mark a job done and store its result (``result["flagged"]`` is copied to a column)."""
        now = utcnow()
        with self._core.write() as conn:
            rid = conn.scalar(select(ProbeJob.revision_id).where(ProbeJob.id == job_id))
            if rid is None:
                raise KeyError(f"no probe job {job_id}")
            conn.execute(
                update(ProbeJob).where(ProbeJob.id == job_id)
                .values(status="done", lease_expires_at=None, updated_at=now, last_error=None)
            )
            flagged = result.get("flagged")
            conn.execute(
                table_of(ProbeResult).insert().values(
                    job_id=job_id, revision_id=rid, result=clean_json(result),
                    flagged=None if flagged is None else bool(flagged), created_at=now,
                )  # fmt: skip
            )

    def fail_probe_job(self, job_id: int, reason: str, *, max_attempts: int = 3) -> None:
        """Record a failed attempt: back to ``queued`` until ``max_attempts``, then ``failed``."""
        now = utcnow()
        with self._core.write() as conn:
            attempts = conn.scalar(select(ProbeJob.attempts).where(ProbeJob.id == job_id))
            if attempts is None:
                raise KeyError(f"no probe job {job_id}")
            status = "failed" if attempts >= max_attempts else "queued"
            line = (reason.strip().splitlines() or [""])[0][:2000]
            conn.execute(
                update(ProbeJob)
                .where(ProbeJob.id == job_id)
                .values(status=status, worker=None, lease_expires_at=None, last_error=line, updated_at=now)
            )

    def probe_jobs(self, base: str | None = None, status: str | None = None) -> list[ProbeJobRow]:
        """Jobs, optionally of one base and/or one status, highest priority first."""
        conds: list[Any] = []
        if base is not None:
            conds.append(BaseModel.name == base)
        if status is not None:
            conds.append(ProbeJob.status == status)
        with self._core.read() as conn:
            return self._jobs(conn, *conds)

    def _jobs(self, conn: Any, *conds: Any) -> list[ProbeJobRow]:
        q = (
            select(ProbeJob.__table__, BaseModel.name.label("base"), Revision.repo_id, Revision.sha)
            .join(Revision, Revision.id == ProbeJob.revision_id)
            .join(Adapter, Adapter.id == Revision.adapter_id)
            .join(BaseModel, BaseModel.id == Adapter.base_id)
            .where(*conds)
            .order_by(ProbeJob.priority.desc(), ProbeJob.id)
        )
        return [
            ProbeJobRow(j.id, j.revision_id, j.base, j.repo_id, j.sha, j.status, j.priority, j.attempts, j.worker,
                        j.lease_expires_at, j.created_at, j.updated_at, j.last_error)  # fmt: skip
            for j in conn.execute(q)
        ]
