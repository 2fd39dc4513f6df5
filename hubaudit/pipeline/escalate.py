"""Escalation: flagged revisions of a base become probe jobs in the store's durable queue.

Priority (higher = probed first) combines how far past its threshold the weight verdict is and how
widely the adapter is used:

    priority = max(margin, 0) + W_DOWNLOADS · log10(1 + downloads)

``margin`` is the verdict breakdown's largest exceedance (calibrate.judge); downloads enter on a
log scale so that a popular adapter with a modest margin outranks an obscure one with a slightly
larger margin, but a large margin still dominates. Enqueueing is idempotent: a revision already
queued, running or done is not queued again (the store returns None).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from hubaudit.store import Store
from hubaudit.vocab import RevisionStatus

W_DOWNLOADS = 0.5


def priority(margin: float | None, downloads: int | None) -> float:
    """The queue priority of a flagged revision (see the module docstring)."""
    m = max(float(margin), 0.0) if margin is not None and math.isfinite(float(margin)) else 0.0
    return m + W_DOWNLOADS * math.log10(1 + max(int(downloads or 0), 0))


@dataclass
class EscalateSummary:
    """What one escalation pass did."""

    base: str
    flagged: int = 0
    queued: int = 0
    already: int = 0
    job_ids: list[int] = field(default_factory=list)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def escalate(store: Store, base: str, *, limit: int | None = None) -> EscalateSummary:
    """Queue every flagged, scored, not-removed revision of ``base`` (at most ``limit`` new jobs)."""
    out = EscalateSummary(base)
    rows = [r for r in store.audit_rows(base) if r.flagged and r.status == RevisionStatus.SCORED and not r.removed]
    rows.sort(key=lambda r: -priority((r.breakdown or {}).get("margin"), r.downloads))
    for r in rows:
        out.flagged += 1
        if limit is not None and out.queued >= limit:
            continue
        job = store.enqueue_probe(r.revision_id, priority=priority((r.breakdown or {}).get("margin"), r.downloads))
        if job is None:
            out.already += 1
        else:
            out.queued += 1
            out.job_ids.append(job)
    return out
