"""Escalation: every new revision of a base becomes a probe job in the store's durable queue.

Weights only rank; they never excuse a revision from probing. Every scored, not-removed revision
without a probe verdict is queued, and the nightly probe stage spends a per-base budget of
device-seconds on the queue in priority order, so over a few nights every adapter of the base is
probed. The order is lexicographic:

1. the weight verdict's ``margin`` (calibrate.judge: the largest exceedance over the threshold;
   > 0 when flagged, < 0 below the threshold, so flagged revisions come first and then the
   unflagged ones closest to their threshold); a revision without a margin (not judged) comes last;
2. downloads, more first, among equal margins.

The queue stores one number per job, so the order is encoded in it as

    priority = round(clip(margin, ±MARGIN_CAP) · 10^MARGIN_DIGITS) + log10(1 + downloads) / DOWNLOADS_SCALE

(the downloads term lies in [0, 1), below one margin step; a missing margin takes the step below the
lowest clipped one). Enqueueing is idempotent: a revision already queued, running or done is not
queued again; a still-queued job takes its new priority, since margins move when the base is
recalibrated. A job that failed for good (its attempts spent) is not queued again unless asked
(``retry_failed``): an adapter that always fails would otherwise spend every night's budget.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from hubaudit.store import Store
from hubaudit.vocab import ProbeJobStatus, RevisionStatus

#: Margins are compared to this many decimals (in their unit: ln(S/T) or σ); closer ones tie.
MARGIN_DIGITS = 4
#: Margins beyond ±MARGIN_CAP compare as ±MARGIN_CAP (keeps the encoding exact in a float64).
MARGIN_CAP = 1e4
#: log10(1 + downloads) / DOWNLOADS_SCALE < 1 for up to 10^15 downloads.
DOWNLOADS_SCALE = 16.0

_STEPS = round(MARGIN_CAP * 10**MARGIN_DIGITS)


def priority(margin: float | None, downloads: int | None) -> float:
    """The queue priority of a revision: margin first, then downloads (see the module docstring)."""
    m = None if margin is None else float(margin)
    if m is None or math.isnan(m):
        steps = -_STEPS - 1
    else:
        steps = round(max(-MARGIN_CAP, min(MARGIN_CAP, m)) * 10**MARGIN_DIGITS)
    tie = min(math.log10(1 + max(int(downloads or 0), 0)) / DOWNLOADS_SCALE, 1 - 1e-9)
    return steps + tie


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
        rows.append((priority((r.breakdown or {}).get("margin"), r.downloads), r))
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
