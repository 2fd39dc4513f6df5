"""The status and verdict words every stage shares: one ``StrEnum`` per vocabulary.

A member *is* its string (``ScanStatus.OK == "ok"``, ``str()``, f-strings, ``json.dumps`` and the
database drivers all see ``"ok"``), so stored rows, JSON outputs and rows read back as plain
strings compare equal to the members. Stdlib only: importable from every stage, the pure core
included.
"""

from __future__ import annotations

import sys
from enum import Enum

if sys.version_info >= (3, 11):
    from enum import StrEnum
else:  # pragma: no cover - Python 3.10

    class StrEnum(str, Enum):
        """``enum.StrEnum`` of Python 3.11: ``str()`` and ``format()`` give the value."""

        def __str__(self) -> str:
            return str.__str__(self)

        def __format__(self, format_spec: str) -> str:
            return str.__format__(self, format_spec)


class ScanStatus(StrEnum):
    """Outcome of the weight scanner on one adapter (``ScanResult.status``)."""

    OK = "ok"  # scored
    ERROR = "error"  # malformed, hostile or unreadable
    UNSUPPORTED = "unsupported"  # well formed but not scored (IA3, prompt tuning, pickle, ...)


class RevisionStatus(StrEnum):
    """The stored status of one adapter revision (one row of the store per repo and sha)."""

    SCORED = "scored"
    UNSUPPORTED = "unsupported"
    ERROR = "error"
    SKIPPED = "skipped"  # gated, disabled, oversize, no adapter files, not an adapter
    RETRY = "retry"  # a transient failure: the next crawl tries again


# Statuses a crawl does not revisit: everything but RETRY.
FINAL_REVISION_STATUSES = frozenset(RevisionStatus) - {RevisionStatus.RETRY}


def revision_status(scan: ScanStatus | str) -> RevisionStatus:
    """The stored status of a scanner outcome: ``ok`` is ``scored``, the others keep their word."""
    return RevisionStatus.SCORED if scan == ScanStatus.OK else RevisionStatus(scan)


class ProbeJobStatus(StrEnum):
    """State of one behavioural-probe job in the queue."""

    QUEUED = "queued"
    RUNNING = "running"  # claimed by a worker under a lease
    DONE = "done"
    FAILED = "failed"  # out of attempts


class ProbeStatus(StrEnum):
    """Outcome of one behavioural probe of an adapter, or of its blind trigger search."""

    OK = "ok"
    ERROR = "error"  # with a ``reason`` code: it could not run (never a pass)


class StratumStatus(StrEnum):
    """Calibration state of one stratum (or of a combined fit) in a threshold set."""

    CALIBRATED = "calibrated"  # thresholds fitted on this stratum's own adapters
    POOLED = "pooled"  # judged by the thresholds of its pool
    NOT_CALIBRATED = "not_calibrated"  # too few adapters: never judged


class Verdict(StrEnum):
    """Verdict words. ``hubaudit check`` gives PASS, PASS_LOW_CONFIDENCE, FLAGGED, SUPPRESSED,
    NOT_CALIBRATED or NOT_AUDITED; ``hubaudit scan`` gives FLAGGED, PASS, PASS_LOW_CONFIDENCE or
    NOT_JUDGED; a calibration counts FLAGGED, CLEAN and NOT_CALIBRATED adapters."""

    PASS = "pass"
    PASS_LOW_CONFIDENCE = "pass_low_confidence"  # passed thresholds fitted on too few adapters
    FLAGGED = "flagged"
    SUPPRESSED = "suppressed"  # flagged, and a suppression entry covers it
    CLEAN = "clean"  # not flagged by the weights (calibration counts)
    NOT_CALIBRATED = "not_calibrated"
    NOT_AUDITED = "not_audited"
    NOT_JUDGED = "not_judged"


class CalibrationKind(StrEnum):
    """What a behavioural calibration of a base holds (one versioned series per base and kind)."""

    PROBE = "probe"  # the battery's τ_gap and τ_mean (probe.stats.Thresholds)
    SEARCH = "search"  # τ_search of the blind search / target inversion (probe.search_run.SearchThresholds)
    PSIM = "psim"  # PSIM's confidence threshold τ (arXiv 2402.12168)


class CalibrationOrigin(StrEnum):
    """Where the behavioural thresholds a probe (or a PSIM screen) was judged under came from."""

    STORE = "store"  # the newest calibration of the base and kind in the database
    FILE = "file"  # a thresholds file named on the command line
    LEGACY_FILE = "legacy_file"  # a per-base file under the data directory, written before the store held them
    DEFAULTS = "defaults"  # nothing calibrated: the built-in defaults
    GIVEN = "given"  # thresholds handed in by the caller, origin not recorded
    MODEL_DIR = "model_dir"  # PSIM: the τ saved in the trained PSIM's own folder at training time
    EXPLICIT = "explicit"  # a value given on the command line (psim --tau)


CHECK_VERDICTS = (Verdict.PASS, Verdict.PASS_LOW_CONFIDENCE, Verdict.FLAGGED, Verdict.SUPPRESSED,
                  Verdict.NOT_CALIBRATED, Verdict.NOT_AUDITED)
SCAN_VERDICTS = (Verdict.FLAGGED, Verdict.PASS, Verdict.PASS_LOW_CONFIDENCE, Verdict.NOT_JUDGED)

__all__ = [
    "CHECK_VERDICTS",
    "CalibrationKind",
    "CalibrationOrigin",
    "FINAL_REVISION_STATUSES",
    "SCAN_VERDICTS",
    "ProbeJobStatus",
    "ProbeStatus",
    "RevisionStatus",
    "ScanStatus",
    "StrEnum",
    "StratumStatus",
    "Verdict",
    "revision_status",
]
