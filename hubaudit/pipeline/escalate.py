"""Escalation: every new revision of a base becomes a probe job in the store's durable queue.

Weights only rank; they never excuse a revision from probing. Every scored, not-removed revision
without a probe verdict is queued, and the nightly probe stage spends a per-base budget of
device-seconds on the queue in priority order (hubaudit.probe.priority: weight margin first, then
downloads), so over a few nights every adapter of the base is probed.

Enqueueing is idempotent: a revision already queued, running or done is not queued again; a
still-queued job takes its new priority, since margins move when the base is recalibrated. A job
that failed for good (its attempts spent) is not queued again unless asked (``retry_failed``): an
adapter that always fails would otherwise spend every night's budget.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hubaudit.probe.priority import priority
from hubaudit.store import Store
from hubaudit.vocab import ProbeJobStatus, RevisionStatus


@dataclass
class EscalateSummary:
    """What one escalation pass did. ``flagged``/``unflagged``: the base's scored, not-removed
    revisions without a probe verdict, by weight verdict (``unflagged`` includes the not judged);
    ``queued`` = ``queued_flagged`` + ``queued_unflagged`` new jobs; ``already``: queued, running or
    done before (their queued jobs re-prioritised); ``failed``: jobs that failed for good, left out
    (not re-queued without ``retry_failed``); ``probed``: revisions with a probe verdict."""

    base: str
    flagged: int = 0
    unflagged: int = 0
    queued: int = 0
    queued_flagged: int = 0
    queued_unflagged: int = 0
    already: int = 0
    failed: int = 0
    probed: int = 0
    flagged_only: bool = False
    job_ids: list[int] = field(default_factory=list)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def escalate(store: Store, base: str, *, limit: int | None = None, flagged_only: bool = False,
             retry_failed: bool = False) -> EscalateSummary:
    """Queue every scored, not-removed revision of ``base`` that has no probe verdict, in priority
    order (at most ``limit`` new jobs; ``flagged_only``: only the weight-flagged ones; ``retry_failed``:
    also the revisions whose job failed for good, attempts reset)."""
    out = EscalateSummary(base, flagged_only=flagged_only)
    rows = []
    for r in store.audit_rows(base):
        if r.status != RevisionStatus.SCORED or r.removed:
            continue
        if r.probe is not None and r.probe.get("flagged") is not None:
            out.probed += 1
            continue
        if r.flagged:
            out.flagged += 1
        else:
            out.unflagged += 1
            if flagged_only:
                continue
        rows.append((priority(r.verdict_breakdown.margin, r.downloads), r))
    rows.sort(key=lambda pr: -pr[0])
    existing = {j.revision_id: j.status for j in store.probe_jobs(base)}
    refresh, new = [], []
    for p, r in rows:
        state = existing.get(r.revision_id)
        if state in (ProbeJobStatus.QUEUED, ProbeJobStatus.RUNNING, ProbeJobStatus.DONE):
            out.already += 1
            if state == ProbeJobStatus.QUEUED:
                refresh.append((r.revision_id, p))
        elif state == ProbeJobStatus.FAILED and not retry_failed:
            out.failed += 1
        elif limit is None or len(new) < limit:
            new.append((p, r))
    jobs = store.enqueue_probes(refresh + [(r.revision_id, p) for p, r in new]) if refresh or new else {}
    for _, r in new:
        job = jobs[r.revision_id]
        if job is None:  # queued by another process since the read above
            out.already += 1
            continue
        out.queued += 1
        out.queued_flagged += int(bool(r.flagged))
        out.queued_unflagged += int(not r.flagged)
        out.job_ids.append(job)
    return out
