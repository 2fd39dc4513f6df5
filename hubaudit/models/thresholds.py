"""Fitted threshold sets of the weight calibration (calibrate/fit.py), as every reader sees them.

The stored form of a threshold set is the JSON calibrate/fit.py's ``fit`` returns (``{"method", "n", "params",
"strata"}``; the store keeps ``strata`` and ``params`` in columns of their own); the dataclasses below are
its typed view (:class:`~hubaudit.models._record._Record`: every shape stored so far parses, and writes back
as stored). New threshold sets carry ``params["threshold_set_version"]``; sets stored before it have none
and parse the same way.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from hubaudit.models._parse import (
    _as_bool,
    _as_int,
    _as_list,
    _as_map,
    _as_num,
    _as_nums,
    _as_status,
    _as_str,
    _as_str_map,
    _as_strs,
    _Conv,
    _dump,
)
from hubaudit.models._record import _as_record, _as_record_map, _Record, _ser, _warn_once
from hubaudit.vocab import StratumStatus

THRESHOLD_SET_VERSION_KEY = "threshold_set_version"
THRESHOLD_SET_VERSION = 1
# The verdict rules a threshold set can name (``params["verdict"]``): what sets ``flagged`` and ``margin``.
# Sets stored before the rule was recorded, or naming one this version does not know, are "per-feature".
VERDICT_RULES = ("combined", "per-feature")
# The paper's statistic (arXiv 2605.30189): its own threshold is shown beside every verdict.
PAPER_FEATURE = "global_frobN_std"


def _finite(x: float | None) -> float | None:
    return x if x is not None and math.isfinite(x) else None


@dataclass(frozen=True)
class FeatureFit(_Record):
    """One feature's thresholds in one stratum (fit.py, per-feature steps 1-5).

    x = ln(value) when ``transform`` is "log", else the value; ``loc``/``scale`` the robust location and σ
    of x; ``lo``/``hi`` the bounds on x (None on a side the ``direction`` up/down/both does not watch),
    ``threshold_low``/``threshold_high`` the same bounds in feature units; ``crit`` the Student t critical
    value; ``anchored`` when a known-clean reference widened a bound; ``n`` the values fitted.
    """

    direction: str | None = None
    transform: str | None = None
    loc: float | None = None
    scale: float | None = None
    mad_scale: float | None = None
    crit: float | None = None
    lo: float | None = None
    hi: float | None = None
    anchored: bool | None = None
    n: int | None = None
    threshold_low: float | None = None
    threshold_high: float | None = None

    SPEC: ClassVar[dict[str, _Conv]] = {
        "direction": _as_str, "transform": _as_str, "loc": _as_num, "scale": _as_num, "mad_scale": _as_num,
        "crit": _as_num, "lo": _as_num, "hi": _as_num, "anchored": _as_bool, "n": _as_int, "threshold_low": _as_num,
        "threshold_high": _as_num,
    }  # fmt: skip

    def margin(self, value: float | None, side: str) -> float | None:
        """How far ``value`` lies past the bound on ``side`` ("above": ``hi``, "below": ``lo``) in robust σ:
        (x − hi)/σ or (lo − x)/σ with x = ln(value) under the log transform; None when the fit cannot say."""
        v, scale, bound = _finite(value), _finite(self.scale), _finite(self.hi if side == "above" else self.lo)
        if v is None or scale is None or scale <= 0 or bound is None:
            return None
        if self.transform == "log":
            if v <= 0:
                return None
            v = math.log(v)
        return (v - bound) / scale if side == "above" else (bound - v) / scale


def _float(x: float | None) -> float | None:
    """A finite stored number as a float (a threshold read for display); None otherwise."""
    return float(x) if x is not None and math.isfinite(x) else None


@dataclass(frozen=True)
class CombinedFit(_Record):
    """The combined detector of one stratum (calibrate/combined.py): D²/K of the robust z of ``features``
    (per feature ``transform``, ``loc``, ``scale``; ``corr`` the shrunk correlation, ``shrinkage`` its λ),
    flagged above ``threshold`` (``threshold_floor`` its lower bound, ``anchored`` when a known-clean
    reference raised it). ``status`` not_calibrated comes with a ``reason``; ``n`` adapters, ``n_fit`` of
    them fitted (a subsample above 20,000), ``loo`` the out-of-sample statistics the threshold came from.
    """

    method: str | None = None
    mode: str | None = None
    n: int | None = None
    target_fpr: float | None = None
    status: StratumStatus | None = None
    reason: str | None = None
    features: tuple[str, ...] | None = None
    transform: tuple[str, ...] | None = None
    loc: tuple[float, ...] | None = None
    scale: tuple[float, ...] | None = None
    corr: tuple[Any, ...] | None = None
    shrinkage: float | None = None
    threshold: float | None = None
    threshold_floor: float | None = None
    empirical_floor: bool | None = None
    n_fit: int | None = None
    loo: dict[str, Any] | None = None
    anchored: bool | None = None

    SPEC: ClassVar[dict[str, _Conv]] = {
        "method": _as_str, "mode": _as_str, "n": _as_int, "target_fpr": _as_num, "status": _as_status,
        "reason": _as_str, "features": _as_strs, "transform": _as_strs, "loc": _as_nums, "scale": _as_nums,
        "corr": _as_list, "shrinkage": _as_num, "threshold": _as_num, "threshold_floor": _as_num,
        "empirical_floor": _as_bool, "n_fit": _as_int, "loo": _as_map, "anchored": _as_bool,
    }  # fmt: skip

    @property
    def calibrated(self) -> bool:
        return self.status == StratumStatus.CALIBRATED


@dataclass(frozen=True)
class StratumFit(_Record):
    """One entry of a threshold set's ``strata``: a stratum, or a pool (key ``pool:<variant>|<modules>``,
    with its ``members``), as fit.py left it.

    ``status`` calibrated: fitted on ``n`` adapters (``n_ref`` references; ``source`` stratum, pool or
    reference), ``features`` the per-feature thresholds (``alpha_per_feature`` each;
    ``per_module_features_left_out`` per-module features not fitted), ``combined`` the combined detector
    (combined-rule sets), ``low_confidence`` with its reason when ``n_needed`` adapters were not there.
    pooled: judged by the fit of ``pool``. not_calibrated: ``reason`` says why. Sets stored in a flat layout
    (hand-built or legacy) hold ``n`` and ``score_threshold`` only and no status; ``bare`` marks an entry
    stored as a bare threshold value (kept in ``extra["threshold"]``).
    """

    status: StratumStatus | None = None
    source: str | None = None
    pool: str | None = None
    n: int | None = None
    n_ref: int | None = None
    reason: str | None = None
    alpha_per_feature: float | None = None
    features: dict[str, FeatureFit] | None = None
    per_module_features_left_out: int | None = None
    low_confidence: bool | None = None
    low_confidence_reason: str | None = None
    n_needed: int | None = None
    combined: CombinedFit | None = None
    members: tuple[str, ...] | None = None
    score_threshold: float | None = None
    bare: bool = field(default=False, kw_only=True)

    SPEC: ClassVar[dict[str, _Conv]] = {
        "status": _as_status, "source": _as_str, "pool": _as_str, "n": _as_int, "n_ref": _as_int, "reason": _as_str,
        "alpha_per_feature": _as_num, "features": _as_record_map(FeatureFit), "per_module_features_left_out": _as_int,
        "low_confidence": _as_bool, "low_confidence_reason": _as_str, "n_needed": _as_int,
        "combined": _as_record(CombinedFit), "members": _as_strs, "score_threshold": _as_num,
    }  # fmt: skip

    @classmethod
    def from_stored(cls, v: Any) -> StratumFit:
        """:meth:`from_dict` of a stored entry; one that is no object is a ``bare`` threshold value."""
        if isinstance(v, Mapping):
            return cls.from_dict(v)
        _warn_once(cls.__name__, "bare",
                   "StratumFit: a stratum stored as a bare value, not an object; read as its threshold")
        return cls(extra={"threshold": v}, bare=True)

    def stored(self) -> Any:
        """The stored form of the entry: :meth:`to_dict`, or the bare value."""
        return self.extra.get("threshold") if self.bare else self.to_dict()

    @property
    def calibrated(self) -> bool:
        return self.status == StratumStatus.CALIBRATED

    @property
    def flat(self) -> bool:
        """An entry stored without a status (a flat layout: hand-built or legacy sets, or a bare value)."""
        return self.bare or "status" not in self.stored_keys

    @property
    def paper_threshold(self) -> float | None:
        """The upper threshold on the paper's statistic (:data:`PAPER_FEATURE`, feature units) of this
        fit: a flat layout's ``score_threshold``, else its per-feature fit's ``threshold_high``."""
        if self.bare:
            value = self.extra.get("threshold")
            return _float(value) if _as_num(value)[0] else None
        if "score_threshold" in self.stored_keys:
            return _float(self.score_threshold)
        feature = (self.features or {}).get(PAPER_FEATURE)
        return _float(feature.threshold_high) if feature is not None else None


def _as_strata(v: Any) -> tuple[bool, Any]:
    return (True, {k: StratumFit.from_stored(x) for k, x in v.items()}) if isinstance(v, Mapping) else (False, v)


@dataclass(frozen=True)
class ThresholdParams(_Record):
    """How a threshold set was fitted (its ``params``): ``verdict`` the rule that sets flagged (see
    :attr:`rule`; ``combined_mode`` the combined statistic's mode), ``target_fpr`` and ``min_n``, the
    feature ``directions`` (up/down/both), ``n_references`` known-clean references (``references`` their
    paths), the robust-scale constants and ``max_module_features``; ``similarity`` the copy/derivative
    fingerprint thresholds calibrated with it (lineage); ``threshold_set_version`` the stored layout."""

    verdict: str | None = None
    combined_mode: str | None = None
    target_fpr: float | None = None
    min_n: int | None = None
    directions: dict[str, str] | None = None
    n_references: int | None = None
    mad_to_sigma: float | None = None
    min_log_scale: float | None = None
    min_rel_scale: float | None = None
    max_module_features: int | None = None
    threshold_set_version: int | None = None
    references: tuple[str, ...] | None = None
    similarity: dict[str, Any] | None = None

    SPEC: ClassVar[dict[str, _Conv]] = {
        "verdict": _as_str, "combined_mode": _as_str, "target_fpr": _as_num, "min_n": _as_int,
        "directions": _as_str_map, "n_references": _as_int, "mad_to_sigma": _as_num, "min_log_scale": _as_num,
        "min_rel_scale": _as_num, "max_module_features": _as_int, THRESHOLD_SET_VERSION_KEY: _as_int,
        "references": _as_strs, "similarity": _as_map,
    }  # fmt: skip

    @property
    def rule(self) -> str:
        """The verdict rule, one of :data:`VERDICT_RULES` ("per-feature" for sets stored before it)."""
        return self.verdict if self.verdict in VERDICT_RULES else "per-feature"


@dataclass(frozen=True)
class ThresholdSet(_Record):
    """A fitted threshold set of one base (calibrate/fit.py ``fit``; the store's threshold_sets row).

    ``strata`` maps every stratum key (models.stratum_key) and pool key to its :class:`StratumFit`;
    ``params`` how it was fitted; ``method`` the fit's id (e.g. ``robust-combined-mahal/1``), ``n`` the
    population size; ``featureset_version`` the feature set fitted (the stored row's; not in ``fit``'s
    output). Readers use :attr:`rule`, :meth:`judging_fit` and :meth:`score_threshold`; calibrate/judge.py
    judges against it.
    """

    method: str | None = None
    n: int | None = None
    featureset_version: str | None = None
    params: ThresholdParams | None = None
    strata: dict[str, StratumFit] | None = None

    SCHEMA_VERSION: ClassVar[int] = THRESHOLD_SET_VERSION
    SPEC: ClassVar[dict[str, _Conv]] = {
        "method": _as_str, "n": _as_int, "featureset_version": _as_str, "params": _as_record(ThresholdParams),
        "strata": _as_strata,
    }  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        known = {k: getattr(self, k) for k in self.SPEC}
        if self.strata is not None:
            known["strata"] = {k: f.stored() for k, f in self.strata.items()}
        return _dump(known, self.extra, self.stored_keys, _ser)

    @property
    def rule(self) -> str:
        """The verdict rule (:attr:`ThresholdParams.rule`)."""
        return (self.params or ThresholdParams()).rule

    @property
    def version(self) -> int | None:
        """The stored layout's version (None: stored before it was recorded)."""
        return None if self.params is None else self.params.threshold_set_version

    def fit(self, key: str | None) -> StratumFit | None:
        """The entry of stratum (or pool) ``key``; None when the set has none."""
        return (self.strata or {}).get(key) if key else None

    def judging_fit(self, key: str | None) -> StratumFit | None:
        """The fit that judges entry ``key``: its own when calibrated (a flat layout counts as calibrated),
        else its pool's when that is calibrated; None when neither (nor for a bare value)."""
        entry = self.fit(key)
        if entry is None or entry.bare:
            return None
        if entry.calibrated or entry.flat:
            return entry
        pool = self.fit(entry.pool)
        return pool if pool is not None and not pool.bare and pool.calibrated else None

    def score_threshold(self, key: str | None) -> float | None:
        """Upper threshold on the paper's statistic for stratum (or pool) ``key``, in score units: from
        its own fit, or its pool's when pooled; None without a fit."""
        entry = self.fit(key)
        if entry is not None and entry.status == StratumStatus.POOLED:
            entry = self.fit(entry.pool) or StratumFit()
        return None if entry is None else entry.paper_threshold

    def low_confidence_reason(self, key: str | None) -> str | None:
        """The low-confidence reason stored on the fit that judges entry ``key`` (its pool's when pooled)."""
        entry = self.fit(key)
        if entry is not None and entry.status == StratumStatus.POOLED:
            entry = self.fit(entry.pool) or StratumFit()
        if entry is None or entry.low_confidence is not True:
            return None
        return entry.low_confidence_reason or "too few adapters for the target FPR"
