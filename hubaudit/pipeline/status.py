"""Flow ``status``: what the store holds, per base, and what last ran (read-only).

Per base: the population (adapters, removed ones included, as ``report`` counts them), how many were
scored and why the others were not audited, the calibration in force (version, N, low-confidence and
uncalibrated strata, when), the findings (weights-flagged, probe-confirmed; suppression files are not
read here), the probe queue by state, how many scored revisions are probed and not yet probed, and the
last run of each command that named the base. Counts
come from the same code as ``hubaudit report`` (hubaudit/report/build.py), so the two never disagree.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from hubaudit import __version__
from hubaudit.report import build_report
from hubaudit.store import Store
from hubaudit.vocab import ProbeJobStatus, StratumStatus

STATUS_SCHEMA_VERSION = "1"
PROBE_STATES = tuple(ProbeJobStatus)
#: Runs read to find the last run of each command (newest first); older ones are not looked at.
RUNS_READ = 5000


@dataclass
class RunInfo:
    """One run of a command, from the runs table (``exit_status`` None: never finished, e.g. killed)."""

    command: str
    run_id: int
    started_at: datetime
    finished_at: datetime | None
    exit_status: int | None
    counts: dict[str, Any]
    bases: list[str]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["started_at"] = self.started_at.isoformat()
        d["finished_at"] = self.finished_at.isoformat() if self.finished_at else None
        return d


@dataclass
class CalibrationStatus:
    """The active threshold set of a base."""

    version: int
    n: int
    method: str | None
    created_at: datetime | None
    strata: int
    low_confidence_strata: list[str]
    not_calibrated_strata: list[str]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["created_at"] = self.created_at.isoformat() if self.created_at else None
        return d


@dataclass
class BaseStatus:
    """Everything ``hubaudit status`` says about one base."""

    base: str
    population: int
    scored: int
    not_audited: int
    not_audited_by_reason: dict[str, int]
    judged: int  # scored adapters with a verdict of the active calibration
    not_judged: int  # scored, but no verdict (not calibrated, or a stratum below min-N)
    low_confidence_passes: int
    weights_flagged: int
    probe_confirmed: int
    calibration: CalibrationStatus | None
    probe_queue: dict[str, int]
    probed: int = 0  # scored, still-listed revisions with a probe verdict (flagged or clean)
    not_probed: int = 0  # scored, still-listed revisions without one yet (queued or not)
    last_runs: list[RunInfo] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["calibration"] = self.calibration.to_dict() if self.calibration else None
        d["last_runs"] = [r.to_dict() for r in self.last_runs]
        return d


@dataclass
class StoreStatus:
    """The whole answer: per base, and the last run of every command."""

    db: str
    bases: list[BaseStatus]
    last_runs: list[RunInfo]
    runs_read: int
    runs_truncated: bool  # RUNS_READ runs were read: a command run only before them is not listed

    def to_dict(self) -> dict[str, Any]:
        return {"schema_version": STATUS_SCHEMA_VERSION, "db": self.db, "bases": [b.to_dict() for b in self.bases],
                "last_runs": [r.to_dict() for r in self.last_runs], "runs_read": self.runs_read,
                "runs_truncated": self.runs_truncated}  # fmt: skip


def _run_bases(args: Any) -> list[str]:
    if not isinstance(args, dict):
        return []
    out = [args["base"]] if isinstance(args.get("base"), str) else []
    bases = args.get("bases")
    if isinstance(bases, list):
        out += [b for b in bases if isinstance(b, str)]
    return out


def _last_per_command(runs: list[RunInfo]) -> list[RunInfo]:
    """The newest run of each command (``runs`` newest first), newest first."""
    seen: dict[str, RunInfo] = {}
    for r in runs:
        seen.setdefault(r.command, r)
    return list(seen.values())


def base_status(store: Store, base: str, runs: list[RunInfo], now: datetime) -> BaseStatus:
    """The status of one base (``runs``: newest first)."""
    threshold_set = store.active_threshold_set(base)
    report = build_report(base, store.audit_rows(base), threshold_set, generated_at=now, tool_version=__version__,
                          today=now.date())  # fmt: skip
    s, cal = report.summary, report.calibration
    calibration = None
    if cal.calibrated:
        calibration = CalibrationStatus(
            version=cal.version or 0, n=cal.n or 0, method=cal.method, created_at=cal.created_at,
            strata=len(cal.strata), low_confidence_strata=[x.stratum for x in cal.strata if x.low_confidence],
            not_calibrated_strata=[x.stratum for x in cal.strata if x.status == StratumStatus.NOT_CALIBRATED],
        )  # fmt: skip
    queue = Counter(j.status for j in store.probe_jobs(base=base))
    return BaseStatus(
        base=base, population=s.population, scored=s.audited, not_audited=s.not_audited,
        not_audited_by_reason=dict(s.not_audited_by_reason), judged=s.audited - s.not_judged, not_judged=s.not_judged,
        low_confidence_passes=s.low_confidence,
        weights_flagged=sum(1 for e in report.adapters if e.flagged is True), probe_confirmed=s.probe_confirmed,
        calibration=calibration,
        probe_queue={state: queue.get(state, 0) for state in (*PROBE_STATES, *sorted(set(queue) - set(PROBE_STATES)))},
        probed=s.probed, not_probed=s.not_probed,
        last_runs=_last_per_command([r for r in runs if base in r.bases]),
    )  # fmt: skip


def store_status(store: Store, now: datetime) -> StoreStatus:
    """The status of every base the store knows, and the last run of each command."""
    raw = store.runs(limit=RUNS_READ)
    runs = [RunInfo(command=r["command"], run_id=r["id"], started_at=r["started_at"], finished_at=r["finished_at"],
                    exit_status=r["exit_status"], counts=dict(r["counts"] or {}), bases=_run_bases(r["args"]))
            for r in raw]  # fmt: skip
    return StoreStatus(db=store.url, bases=[base_status(store, b, runs, now) for b in store.bases()],
                       last_runs=_last_per_command(runs), runs_read=len(runs),
                       runs_truncated=len(runs) >= RUNS_READ)  # fmt: skip
