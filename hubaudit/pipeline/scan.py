"""Flow ``scan``: find adapters on disk (``--recursive``) and, when the store can judge them, a verdict.

The store is only read: it is opened with ``must_exist`` (no file is created), and a verdict is
the one ``hubaudit check PATH`` gives (hubaudit/pipeline/check.py: the active threshold set of the
base, a stored probe result that flagged the adapter, a copy of a known-bad adapter). Without a
store, or without a calibration for the base, an adapter is "not judged", never "pass".
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from hubaudit.errors import InputError
from hubaudit.models import ScanResult
from hubaudit.pipeline.ingest import is_adapter_dir
from hubaudit.vocab import RevisionStatus, ScanStatus, Verdict

DEFAULT_MAX_ADAPTERS = 1000
MAX_FOLDERS_WALKED = 200_000  # a --recursive walk of a home directory or a disk ends here, with a message

# Why an adapter was not judged (ScanJudgement.why).
NO_DATABASE = "no_database"
STORE_UNAVAILABLE = "store_unavailable"  # a database that cannot be read (schema behind, bad configuration)
NO_BASE = "no_base"
BASE_UNKNOWN = "base_unknown"
NOT_CALIBRATED = "not_calibrated"
STRATUM_NOT_CALIBRATED = "stratum_not_calibrated"
NOT_SCORED = "not_scored"
PICKLE_NOT_JUDGED = "pickle_not_judged"
WHY_TEXT = {
    NO_DATABASE: "no database",
    STORE_UNAVAILABLE: "store unavailable",
    NO_BASE: "no base (use --base)",
    BASE_UNKNOWN: "base unknown",
    NOT_CALIBRATED: "base not calibrated",
    STRATUM_NOT_CALIBRATED: "stratum not calibrated",
    NOT_SCORED: "not scored",
    PICKLE_NOT_JUDGED: "pickle weights",
}


@dataclass
class Found:
    """The adapters found under the inputs, in a stable order, and what the walk left out."""

    paths: list[Path] = field(default_factory=list)
    empty_roots: list[Path] = field(default_factory=list)  # folders walked that held no adapter
    links_not_followed: int = 0


def find_adapters(inputs: Sequence[str | Path], *, recursive: bool, limit: int = DEFAULT_MAX_ADAPTERS) -> Found:
    """Each input as given; with ``recursive``, a folder that is not itself an adapter is walked instead.

    Every folder that holds adapter_config.json or an adapter weights file is one adapter (a training
    run's ``checkpoint-*`` folders inside it included). Hidden folders (``.git``, ``.cache``) are not
    entered and no symlinked folder is followed, so the walk never leaves the tree it was given.
    With ``recursive``, more than ``limit`` adapters (or more than MAX_FOLDERS_WALKED folders) is a usage
    error (InputError) raised before anything is scanned.
    """
    found = Found()
    walked = 0
    for raw in inputs:
        root = Path(raw).expanduser()
        if not recursive or not root.is_dir() or is_adapter_dir(root):
            found.paths.append(root)
            continue
        before = len(found.paths)
        for dirpath, dirnames, _ in os.walk(root, followlinks=False):
            walked += 1
            if walked > MAX_FOLDERS_WALKED:
                raise InputError(f"more than {MAX_FOLDERS_WALKED} folders under {root}; nothing was scanned",
                                 hint="name the folder that holds the adapters")  # fmt: skip
            here = Path(dirpath)
            kept = []
            for d in sorted(dirnames):
                if d.startswith("."):
                    continue
                if (here / d).is_symlink():
                    found.links_not_followed += 1
                    continue
                kept.append(d)
            dirnames[:] = kept  # os.walk enters only these, in this order
            if is_adapter_dir(here):
                found.paths.append(here)
                if len(found.paths) > limit:
                    raise InputError(f"more than {limit} adapters under {root}; nothing was scanned",
                                     hint="pass --max-adapters N to scan more, or name a smaller folder")  # fmt: skip
        if len(found.paths) == before:
            found.empty_roots.append(root)
    if recursive and len(found.paths) > limit:
        raise InputError(f"{len(found.paths)} adapters to scan, more than --max-adapters {limit}; nothing was scanned",
                         hint="pass --max-adapters N to scan more")  # fmt: skip
    return found


@dataclass
class ScanJudgement:
    """The verdict of one scanned adapter (``verdict``: one of vocab.SCAN_VERDICTS)."""

    verdict: Verdict
    why: str | None = None  # for not_judged: a key of WHY_TEXT
    base: str | None = None  # the base judged against (--base, else the declared one)
    declared_base: str | None = None
    base_mismatch: bool = False  # --base given and the adapter declares another
    calibration_version: int | None = None
    calibration_n: int | None = None
    stratum: str | None = None
    margin: float | None = None
    threshold: float | None = None
    weights_flagged: bool | None = None
    probe_flagged: bool = False  # a stored behavioural probe result flagged this revision
    derived_from: dict[str, Any] | None = None  # the known-bad adapter this one is a copy or derivative of
    low_confidence_reason: str | None = None
    reasons: list[str] = field(default_factory=list)
    note: str | None = None

    @property
    def label(self) -> str:
        """The table cell: FLAGGED / pass / pass (low confidence) / not judged: why."""
        if self.verdict == Verdict.FLAGGED:
            return "FLAGGED"
        if self.verdict == Verdict.PASS_LOW_CONFIDENCE:
            return "pass (low confidence)"
        if self.verdict == Verdict.PASS:
            return "pass"
        return f"not judged: {WHY_TEXT.get(self.why or '', self.why or '?')}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: a non-finite number (a margin over a zero spread) is null, never NaN/Infinity."""
        return _finite(dict(self.__dict__))


def score_adapters(paths: Sequence[Path], *, allow_pickle: bool) -> list[ScanResult]:
    """Each adapter of ``paths`` (``find_adapters(...).paths``) scored from its weights alone, in order;
    one bad adapter never stops the others."""
    from hubaudit.stats import scan_many

    return scan_many(paths, allow_pickle=allow_pickle)


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def not_judged(scan: ScanResult, why: str, base: str | None = None) -> ScanJudgement:
    """A verdict that was not given: for a scan without a store (``why`` NO_DATABASE), for instance; an
    input that was not scored is always NOT_SCORED."""
    return ScanJudgement(verdict=Verdict.NOT_JUDGED, why=why if scan.status == ScanStatus.OK else NOT_SCORED,
                         base=base or scan.base_model, declared_base=scan.base_model,
                         base_mismatch=bool(base and scan.base_model and scan.base_model != base),
                         stratum=scan.stratum if scan.status == ScanStatus.OK else None)  # fmt: skip


def judge_scan(store: Any, path: Path, scan: ScanResult, *, base: str | None, today: date) -> ScanJudgement:
    """The ``hubaudit check PATH`` verdict of a scanned adapter (the store is only read).

    ``check_target`` itself judges it, so the verdict is check's in every respect (thresholds, a stored
    probe result, copies of known-bad adapters); it reads the adapter again to do so. An adapter scanned
    only thanks to ``--allow-pickle`` is not judged: check never loads pickle weights.
    """
    from hubaudit.pipeline.check import check_target

    abs_path = path.expanduser().absolute()
    if scan.status != ScanStatus.OK or not os.path.lexists(abs_path):
        return not_judged(scan, NOT_SCORED, base)
    res = check_target(store, str(abs_path), base=base, suppressions=[], today=today)
    out = not_judged(scan, NOT_SCORED, res.base)
    out.base_mismatch = bool(base and scan.base_model and scan.base_model != base)
    out.calibration_version, out.calibration_n = res.calibration_version, res.calibration_n
    out.margin, out.threshold, out.reasons, out.note = res.margin, res.threshold, list(res.reasons), res.note
    out.weights_flagged = res.flagged
    out.probe_flagged = bool(res.probe and res.probe.get("flagged"))
    out.derived_from = getattr(res, "derived_from", None)
    out.low_confidence_reason = res.low_confidence_reason
    if res.verdict in (Verdict.FLAGGED, Verdict.PASS, Verdict.PASS_LOW_CONFIDENCE):
        out.verdict, out.why = res.verdict, None
    elif res.status != RevisionStatus.SCORED:
        out.why = PICKLE_NOT_JUDGED if res.status_reason == "pickle_format" else NOT_SCORED
    elif not res.base:
        out.why = NO_BASE
    elif res.calibration_version is None:
        out.why = NOT_CALIBRATED if res.base in store.bases() else BASE_UNKNOWN
    else:
        out.why = STRATUM_NOT_CALIBRATED
    return out
