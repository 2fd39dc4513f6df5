"""Rows the store hands out: plain frozen dataclasses (no ORM objects leave hubaudit/store/)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from functools import cached_property
from typing import Any

from hubaudit.models import ThresholdSet, VerdictBreakdown


@dataclass(frozen=True)
class PopulationRow:
    """One member of a base's calibration population: the latest scored revision of an adapter."""

    revision_id: int
    repo_id: str
    sha: str
    stratum: str
    score: float | None
    features: dict[str, float]


@dataclass(frozen=True)
class ThresholdSetRow:
    """A stored calibration: ``strata`` and ``params`` in their stored form (hubaudit.calibrate.fit's
    output); :attr:`threshold_set` is the typed view readers use."""

    id: int
    base: str
    version: int
    method: str
    featureset_version: str
    n: int
    strata: dict[str, Any]
    params: dict[str, Any]
    created_at: datetime
    active: bool = True

    @property
    def stored(self) -> dict[str, Any]:
        """The set in its stored form, the shape hubaudit.calibrate.judge computes on."""
        return {"method": self.method, "n": self.n, "featureset_version": self.featureset_version,
                "params": self.params, "strata": self.strata}

    @cached_property
    def threshold_set(self) -> ThresholdSet:
        """The typed view of the stored set (``featureset_version`` included)."""
        return ThresholdSet.from_dict(self.stored)


@dataclass(frozen=True)
class AuditRow:
    """One adapter of a base with its latest revision, score, verdict and probe result.

    ``flagged`` is the verdict of the base's active threshold set: True/False, or None when the
    adapter is not calibrated (stratum below min-N, no calibration yet, or not scored); ``breakdown`` its
    stored form (calibrate/judge.py), :attr:`verdict_breakdown` the typed view readers use.
    """

    revision_id: int
    base: str
    repo_id: str
    sha: str
    status: str
    reason: str | None
    error: str | None
    score: float | None
    features: dict[str, float]
    stratum: str | None
    featureset_version: str | None
    flagged: bool | None
    breakdown: dict[str, Any] | None
    threshold_set_id: int | None
    first_seen: datetime
    last_seen: datetime
    recorded_at: datetime
    downloads: int | None
    likes: int | None
    removed: bool
    author: str | None
    declared_base: str | None
    provenance: dict[str, Any]
    files: list[dict[str, Any]]
    meta: dict[str, Any]
    probe: dict[str, Any] | None
    source: str | None = None  # the adapter's ``adapters.source``: "hub" (a Hub listing) | "local" (ingested)

    @cached_property
    def verdict_breakdown(self) -> VerdictBreakdown:
        """The typed view of ``breakdown`` (an empty one when there is no verdict)."""
        return VerdictBreakdown.of(self.breakdown)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("first_seen", "last_seen", "recorded_at"):
            d[k] = d[k].isoformat() if d[k] is not None else None
        return d


@dataclass(frozen=True)
class ProbeJobRow:
    """One escalation job."""

    id: int
    revision_id: int
    base: str
    repo_id: str
    sha: str
    status: str
    priority: float
    attempts: int
    worker: str | None
    lease_expires_at: datetime | None
    created_at: datetime
    updated_at: datetime
    last_error: str | None


@dataclass(frozen=True)
class BehaviourCalibrationRow:
    """A stored behavioural calibration: ``thresholds`` is the thresholds object's ``to_dict()``
    (probe.stats.Thresholds, probe.search_run.SearchThresholds, or PSIM's ``{"tau", ...}``)."""

    id: int
    base: str
    kind: str  # CalibrationKind
    version: int
    thresholds: dict[str, Any]
    source: str
    n_clean: int
    fingerprint: str
    created_at: datetime
