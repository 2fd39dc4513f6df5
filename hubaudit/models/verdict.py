"""Why one adapter got its weight verdict (calibrate/judge.py): the breakdown stored beside the verdict.

The stored form is the dict calibrate/judge.py writes per adapter; :class:`VerdictBreakdown` is its typed
view (:class:`~hubaudit.models._record._Record`: every shape stored so far parses, and writes back as
stored). New breakdowns carry ``breakdown_version``; rows stored before it have none and parse the same way.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from hubaudit.models._parse import _as_bool, _as_int, _as_list, _as_num, _as_str, _Conv
from hubaudit.models._record import _as_record, _as_record_map, _Partly, _Record

VERDICT_BREAKDOWN_VERSION_KEY = "breakdown_version"
VERDICT_BREAKDOWN_VERSION = 1
SIDES = ("above", "below")  # the side of its threshold a fired feature's value lies on


@dataclass(frozen=True)
class CombinedScore(_Record):
    """The combined statistic S of one adapter against its stratum's threshold T (flagged when S > T)."""

    statistic: float | None = None
    threshold: float | None = None
    mode: str | None = None
    flagged: bool | None = None

    SPEC: ClassVar[dict[str, _Conv]] = {"statistic": _as_num, "threshold": _as_num, "mode": _as_str,
                                        "flagged": _as_bool}


@dataclass(frozen=True)
class PaperScore(_Record):
    """The paper's statistic (arXiv 2605.30189) of one adapter against its own per-feature threshold."""

    feature: str | None = None
    value: float | None = None
    threshold: float | None = None
    z: float | None = None
    above: bool | None = None

    SPEC: ClassVar[dict[str, _Conv]] = {
        "feature": _as_str, "value": _as_num, "threshold": _as_num, "z": _as_num, "above": _as_bool}


@dataclass(frozen=True)
class PerFeatureScore(_Record):
    """The per-feature rule's verdict, kept under either rule: flagged when ``margin`` (the largest
    exceedance, robust σ) > 0; None when no calibrated feature has a value."""

    flagged: bool | None = None
    margin: float | None = None

    SPEC: ClassVar[dict[str, _Conv]] = {"flagged": _as_bool, "margin": _as_num}


@dataclass(frozen=True)
class FeatureScore(_Record):
    """One feature of one adapter that fired or is missing: its ``value``, robust ``z``; when fired, the
    crossed bound (``threshold``, feature units) and the ``side`` ("above"/"below") the value lies on."""

    value: float | None = None
    z: float | None = None
    fired: bool | None = None
    threshold: float | None = None
    side: str | None = None
    missing: bool | None = None

    SPEC: ClassVar[dict[str, _Conv]] = {
        "value": _as_num, "z": _as_num, "fired": _as_bool, "threshold": _as_num, "side": _as_str, "missing": _as_bool}


@dataclass(frozen=True)
class Exceedance(_Record):
    """A feature past its own threshold: ``value`` and ``threshold`` in the feature's units, ``direction``
    "above" or "below" (the side of the threshold the value lies on), ``margin`` how far past it in robust
    σ (> 0), ``z`` its robust z."""

    feature: str | None = None
    value: float | None = None
    threshold: float | None = None
    direction: str | None = None
    margin: float | None = None
    z: float | None = None

    SPEC: ClassVar[dict[str, _Conv]] = {
        "feature": _as_str, "value": _as_num, "threshold": _as_num, "direction": _as_str, "margin": _as_num,
        "z": _as_num,
    }  # fmt: skip


def _as_fired(v: Any) -> tuple[bool, Any]:
    """Exceedance records; one without a feature name or a side is left out (the field then counts as wrong)."""
    if not isinstance(v, list):
        return False, v
    good = tuple(r for r in (Exceedance.from_dict(x) for x in v if isinstance(x, Mapping))
                 if r.feature is not None and r.direction in SIDES)  # fmt: skip
    return (True, good) if len(good) == len(v) else (False, _Partly(good))


def _as_top(v: Any) -> tuple[bool, Any]:
    """[feature, z] pairs (z finite); a malformed pair is left out (the field then counts as wrong)."""
    if not isinstance(v, list):
        return False, v
    good = tuple((t[0], t[1]) for t in v if isinstance(t, (list, tuple)) and len(t) == 2 and isinstance(t[0], str)
                 and _as_num(t[1])[0] and math.isfinite(t[1]))  # fmt: skip
    return (True, good) if len(good) == len(v) else (False, _Partly(good))


@dataclass(frozen=True)
class VerdictBreakdown(_Record):
    """Why one adapter got its weight verdict (calibrate/judge.py), as stored beside it.

    ``verdict`` the rule that set flagged and ``margin`` (:attr:`rule`: "combined" or "per-feature");
    ``margin`` > 0 exactly when flagged, in ``margin_unit`` ("ln(S/T)" or "σ"), None when not judged
    (``not_calibrated`` then says why). ``fit`` the threshold-set entry that judged (the ``stratum`` itself
    or its pool; ``source`` stratum/pool/reference), fitted on ``n`` adapters; ``low_confidence`` and its
    reason when that fit had too few adapters for its target FPR. ``combined`` S against T, ``paper`` the
    paper's statistic against its own threshold, ``per_feature`` the per-feature rule's verdict; ``fired``
    the features past their own thresholds (largest margin first; absent when none fired, and in verdicts
    stored before it), ``features`` the fired and missing features, ``top`` the largest robust |z|
    (feature, z). ``reasons`` are sentences for people: no reader parses them.
    """

    verdict: str | None = None
    reasons: tuple[Any, ...] | None = None
    margin: float | None = None
    margin_unit: str | None = None
    stratum: str | None = None
    fit: str | None = None
    source: str | None = None
    n: int | None = None
    low_confidence: bool | None = None
    low_confidence_reason: str | None = None
    not_calibrated: str | None = None
    combined: CombinedScore | None = None
    paper: PaperScore | None = None
    per_feature: PerFeatureScore | None = None
    top: tuple[tuple[str, float], ...] | None = None
    features: dict[str, FeatureScore] | None = None
    fired: tuple[Exceedance, ...] | None = None
    breakdown_version: int | None = None

    SCHEMA_VERSION: ClassVar[int] = VERDICT_BREAKDOWN_VERSION
    SPEC: ClassVar[dict[str, _Conv]] = {
        "verdict": _as_str, "reasons": _as_list, "margin": _as_num, "margin_unit": _as_str, "stratum": _as_str,
        "fit": _as_str, "source": _as_str, "n": _as_int, "low_confidence": _as_bool, "low_confidence_reason": _as_str,
        "not_calibrated": _as_str, "combined": _as_record(CombinedScore), "paper": _as_record(PaperScore),
        "per_feature": _as_record(PerFeatureScore), "top": _as_top, "features": _as_record_map(FeatureScore),
        "fired": _as_fired, VERDICT_BREAKDOWN_VERSION_KEY: _as_int,
    }  # fmt: skip

    @classmethod
    def of(cls, stored: Any) -> VerdictBreakdown:
        """The typed view of a stored breakdown; anything that is no object (None: no verdict) is an empty one."""
        return cls.from_dict(stored) if isinstance(stored, Mapping) else cls()

    @property
    def rule(self) -> str | None:
        """The rule that decided (``verdict``); None in breakdowns stored before it was recorded."""
        return self.verdict

    @property
    def flagged(self) -> bool | None:
        """The weight verdict this breakdown records: margin > 0; None when not judged."""
        return None if self.margin is None else self.margin > 0
