"""The Report data model: what every output format renders (pure; stdlib only).

``build.build_report`` turns store rows into a :class:`Report`; each format in ``formats/`` turns a
Report into text. Nothing here knows about the database, the terminal or the Hub.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import cached_property
from typing import Any

from hubaudit.models import CalibrationRef, ProbeResult, StratumFit
from hubaudit.vocab import RevisionStatus, StratumStatus

# Bump on any backwards-incompatible change to the JSON/JSONL report shape (docs/reports.md "JSON report schema").
SCHEMA_VERSION = "1"

HUB_URL = "https://huggingface.co"

# Statuses an audit row can have (hubaudit.store record_revision); only "scored" has a score.
AUDITED_STATUS = RevisionStatus.SCORED


# The Hub's repo id grammar (huggingface_hub's validate_repo_id): an optional namespace and a name of
# ASCII letters, digits, "_", "-" and ".", at most 96 characters each, not starting or ending with
# "-" or ".", without "--" or "..". Commit shas are lowercase hex.
_HUB_NAME = r"(?!.*(?:--|\.\.))[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,94}[A-Za-z0-9_])?"
_HUB_REPO_ID = re.compile(rf"(?:{_HUB_NAME}/)?{_HUB_NAME}", re.ASCII)
_HUB_SHA = re.compile(r"[0-9a-f]{7,64}", re.ASCII)


def is_hub_repo_id(repo_id: str) -> bool:
    """True when ``repo_id`` is a valid Hub repo id (so it is safe to put in a URL path as is)."""
    return _HUB_REPO_ID.fullmatch(repo_id) is not None


def hub_url(repo_id: str, sha: str | None) -> str | None:
    """Link to the exact revision on the Hub; None for local adapters (``local:<path>``).

    Built only from a valid repo id and a hex sha, so every report format may link to it: data that
    does not fit the grammar (a crafted id, a sha holding markup or a ``javascript:`` URL) gets no link.
    """
    if repo_id.startswith("local:") or not is_hub_repo_id(repo_id):
        return None
    if sha is None:
        return f"{HUB_URL}/{repo_id}"
    return f"{HUB_URL}/{repo_id}/tree/{sha}" if _HUB_SHA.fullmatch(sha) else None


@dataclass(frozen=True)
class Suppression:
    """One entry of a suppression file: accept a finding on ``repo`` (optionally one ``sha``) until ``expires``.

    ``expires`` is the last day the entry is honoured (inclusive, UTC).
    """

    repo: str
    reason: str
    expires: date
    sha: str | None = None
    origin: str = ""  # "FILE:entry N", for messages

    def matches(self, repo_id: str, sha: str | None) -> bool:
        """True when this entry covers (repo_id, sha); a short sha (>= 7 hex) matches as a prefix."""
        if repo_id != self.repo:
            return False
        if self.sha is None:
            return True
        return sha is not None and sha.lower().startswith(self.sha.lower())

    def is_expired(self, today: date) -> bool:
        return today > self.expires

    def to_dict(self) -> dict[str, Any]:
        return {"repo": self.repo, "sha": self.sha, "reason": self.reason, "expires": self.expires.isoformat()}


# What each verdict rule (calibrate/judge.py) compares with its threshold, and the unit of its margin.
RULE_STATISTIC = {
    "combined": ("combined D²/K", "ln(S/T)"),  # S = D²/K of the robust z over every calibrated feature
    "per-feature": ("largest feature exceedance", "σ"),  # robust σ past the nearest per-feature bound
}


@dataclass(frozen=True)
class StratumCalibration:
    """Thresholds of one comparable stratum (variant | rank | target modules).

    ``decision_threshold`` is the threshold the verdict rule compares with (``decision_statistic``,
    e.g. "combined D²/K": the statistic that decides, histogram lines); None when the stratum's fit has
    none (not calibrated). ``score_threshold`` is the paper's statistic's own upper threshold
    (global_frobN_std, arXiv 2605.30189), shown only as secondary; ``fit`` the threshold set's entry
    (``thresholds``: every stored threshold, as stored).
    """

    stratum: str
    n: int | None
    score_threshold: float | None
    status: str = StratumStatus.CALIBRATED  # calibrate/fit.py: calibrated | pooled | not_calibrated
    fit: StratumFit = field(default_factory=StratumFit)
    # the fit that judges the stratum (its own or its pool's) had too few adapters for its target FPR
    low_confidence_reason: str | None = None
    decision_statistic: str | None = None
    decision_threshold: float | None = None

    @property
    def low_confidence(self) -> bool:
        return self.low_confidence_reason is not None

    @property
    def thresholds(self) -> dict[str, Any]:
        """The entry as stored (a bare threshold value as ``{"threshold": value}``)."""
        return self.fit.to_dict()


@dataclass(frozen=True)
class Calibration:
    """The threshold set in force for a base (``calibrated`` False when the base has none)."""

    calibrated: bool
    threshold_set_id: int | None = None
    version: int | None = None
    method: str | None = None
    featureset_version: str | None = None
    n: int | None = None
    created_at: datetime | None = None
    strata: tuple[StratumCalibration, ...] = ()
    rule: str | None = None  # the verdict rule of the set (RULE_STATISTIC key): what decides flagged

    @property
    def decision_statistic(self) -> str | None:
        """What the rule compares with its threshold, e.g. "combined D²/K"."""
        return RULE_STATISTIC.get(self.rule or "", (None, None))[0]

    @property
    def margin_unit(self) -> str | None:
        """The unit of every verdict's ``margin`` under this set ("ln(S/T)" or "σ")."""
        return RULE_STATISTIC.get(self.rule or "", (None, None))[1]

    def stratum(self, key: str | None) -> StratumCalibration | None:
        return next((s for s in self.strata if s.stratum == key), None)


@dataclass(frozen=True)
class DerivedFrom:
    """This adapter's fingerprint lies within a calibrated similarity of a known-bad adapter.

    ``kind``: "copy" (similarity ≥ the copy threshold: the same ΔW re-uploaded, rescaled or
    re-saved) or "derivative" (≥ the derivative threshold: merged or fine-tuned further from it).
    ``source_kind``: why the source is bad: "probe_confirmed" (a probe confirmed its backdoor),
    "blocklist" (an imported blocklist entry) or "weights_flagged".
    """

    source_repo_id: str
    source_sha: str | None
    similarity: float
    kind: str  # "copy" | "derivative"
    source_kind: str  # "probe_confirmed" | "blocklist" | "weights_flagged"
    threshold: float

    @property
    def reason(self) -> str:
        at = f"@{self.source_sha}" if self.source_sha else ""
        return f"derived_from {self.source_repo_id}{at} (similarity {self.similarity:.3f}, {self.kind})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "source_repo_id": self.source_repo_id, "source_sha": self.source_sha,
            "similarity": self.similarity, "kind": self.kind, "source_kind": self.source_kind,
            "threshold": self.threshold, "reason": self.reason,
        }  # fmt: skip


@dataclass(frozen=True)
class FiredFeature:
    """One weight feature past its own calibrated threshold (calibrate/judge.py ``fired``).

    ``value`` and ``threshold`` in the feature's units; ``direction`` "above" or "below" (the side of the
    threshold the value lies on); ``margin`` how far past it in robust σ (> 0 = beyond the threshold by
    that much), None when the verdict did not record it and the fit could not give it; ``z`` the robust z.
    """

    feature: str
    value: float | None
    threshold: float | None
    direction: str
    margin: float | None = None
    z: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"feature": self.feature, "value": self.value, "threshold": self.threshold,
                "direction": self.direction, "margin_sigma": self.margin, "z": self.z}  # fmt: skip


@dataclass(frozen=True)
class WeightDecision:
    """The statistic that decided the weight verdict, against its threshold.

    ``margin`` in ``unit`` (> 0 exactly when above the threshold, i.e. flagged by the weights): ln(S/T)
    for the combined statistic, robust σ for the per-feature rule. ``fit`` is the threshold-set entry
    (stratum or pool) that judged, fitted on ``n`` adapters. ``top``: the largest robust |z| (feature, z).
    """

    rule: str
    statistic: str
    value: float | None
    threshold: float | None
    margin: float | None
    unit: str
    fit: str | None = None
    n: int | None = None
    top: tuple[tuple[str, float], ...] = ()

    @property
    def above(self) -> bool | None:
        return None if self.margin is None else self.margin > 0

    def to_dict(self) -> dict[str, Any]:
        return {"rule": self.rule, "statistic": self.statistic, "value": self.value, "threshold": self.threshold,
                "margin": self.margin, "unit": self.unit, "fit": self.fit, "n": self.n,
                "top": [{"feature": f, "z": z} for f, z in self.top]}  # fmt: skip


@dataclass(frozen=True)
class HubSecurity:
    """The Hub's own scan status of one revision (``securityRepoStatus`` of the model API).

    Shown beside hubaudit's verdict, never instead of it: a Hub "safe" never clears a finding.
    ``files_with_issues``: (path, level) pairs, level one of unscanned | safe | queued | error |
    caution | suspicious | unsafe.
    """

    scans_done: bool | None
    files_with_issues: tuple[tuple[str, str], ...] = ()

    @property
    def status(self) -> str:
        """"issues" when any file has a level other than safe, else "scanned", "pending" or "unknown"."""
        if any(level != "safe" for _, level in self.files_with_issues):
            return "issues"
        if self.scans_done is None:
            return "unknown"
        return "scanned" if self.scans_done else "pending"

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status, "scans_done": self.scans_done,
                "files_with_issues": [{"path": p, "level": lv} for p, lv in self.files_with_issues]}  # fmt: skip


@dataclass(frozen=True)
class DownstreamRepo:
    """A Hub repo that declares a finding as its base (``base_model:<relation>:<finding>``)."""

    repo_id: str
    relation: str  # "adapter" | "merge" | "finetune" | "quantized"
    on_hub: bool = True  # listed by huggingface.co itself (not a mirror or loopback endpoint): linkable there

    @property
    def url(self) -> str | None:
        return hub_url(self.repo_id, None) if self.on_hub else None


@dataclass(frozen=True)
class SimilarityThresholds:
    """The fingerprint similarities above which an adapter counts as a copy or a derivative.

    ``source``: "calibrated" (from the null of independently trained adapters of each stratum,
    ``null_pairs`` pairs) or "default" (the base has no calibration with fingerprints).
    """

    copy: float
    derivative: float
    source: str
    null_pairs: int = 0
    null_max: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"copy": self.copy, "derivative": self.derivative, "source": self.source,
                "null_pairs": self.null_pairs, "null_max": self.null_max}  # fmt: skip


@dataclass(frozen=True)
class StoredFile:
    """One file of a revision as the store recorded it when it was fetched or ingested.

    ``size`` in bytes; ``sha256`` the lowercase hex digest of the bytes, None when not recorded.
    """

    name: str
    size: int | None
    sha256: str | None

    @classmethod
    def from_rows(cls, rows: Any) -> tuple[StoredFile, ...]:
        """From the store's ``[{"name", "size", "sha256"}]``; entries without a string name are dropped."""
        out = []
        for r in rows or ():
            if isinstance(r, Mapping) and isinstance(r.get("name"), str):
                size, digest = r.get("size"), r.get("sha256")
                out.append(cls(r["name"], size if type(size) is int else None,
                               digest if isinstance(digest, str) else None))
        return tuple(out)


@dataclass(frozen=True)
class AdapterEntry:
    """One adapter revision as a report shows it.

    ``flagged``: True/False from the active threshold set, None when it was not judged (base or
    stratum not calibrated, or not scored). ``margin``: the deciding statistic against its threshold
    (calibrate/judge.py) in ``margin_unit`` (ln(S/T) for the combined statistic, robust σ for the
    per-feature rule): > 0 exactly when flagged by the weights, < 0 = below the threshold by that
    much (a finding by probe or lineage keeps its weights' negative margin). ``threshold``: the
    paper's statistic's upper threshold, in score units (secondary; ``decision`` has the deciding one).
    ``evidence``: one sentence per reason it is a finding (battery, blind search, target inversion,
    lineage, weights), built from structured data; ``source``: where the store has the repo from
    ("hub" or "local"; None when the row did not say): only a Hub repo gets a Hub link.
    """

    repo_id: str
    sha: str | None
    status: str
    reason: str | None = None  # machine code when not scored (pickle_format, gated, ...)
    error: str | None = None  # one human line
    score: float | None = None
    flagged: bool | None = None
    reasons: tuple[str, ...] = ()
    margin: float | None = None  # the deciding statistic vs its threshold, in margin_unit (judge.py)
    threshold: float | None = None
    stratum: str | None = None
    threshold_set_version: int | None = None
    probe: dict[str, Any] | None = None
    first_seen: datetime | None = None
    last_seen: datetime | None = None
    downloads: int | None = None
    likes: int | None = None
    declared_base: str | None = None
    provenance_mismatch: bool = False
    removed: bool = False  # no longer listed on the Hub (still reported: copies may be in use)
    suppressed: Suppression | None = None
    revision_id: int | None = None
    # judged by a fit with too few adapters for its target FPR (calibrate/fit.py): its pass is no plain
    # pass, e.g. "fitted on 3 adapters; 19 needed for 5 % FPR"; None when confident or not judged
    low_confidence_reason: str | None = None
    # fingerprint within the derivative threshold of a known-bad adapter (a finding of its own)
    derived_from: DerivedFrom | None = None
    hub_security: HubSecurity | None = None  # the Hub's own scan status; never overrides a finding
    downstream: tuple[DownstreamRepo, ...] = ()  # Hub repos built on this adapter (shown for findings)
    files: tuple[StoredFile, ...] = ()  # the revision's stored files (the SBOM's hashes)
    # why it is flagged, from structured data (judge.py's breakdown, the probe result; report/evidence.py)
    margin_unit: str | None = None  # "ln(S/T)" | "σ"; None when not judged
    decision: WeightDecision | None = None
    fired_features: tuple[FiredFeature, ...] = ()  # largest margin first
    weight_evidence: tuple[str, ...] = ()  # the weights' verdict in words (flagged: why; passed: by how much)
    probe_evidence: tuple[str, ...] = ()  # why the probe flagged it (battery, blind search, target inversion)
    probe_summary: str | None = None  # one line on a probe that found nothing (spot checks)
    # the calibration its probe verdict was judged under (evidence.calibration_text)
    probe_calibration: str | None = None
    source: str | None = None  # "hub" | "local" (the store's adapters.source); None: unknown

    @property
    def low_confidence(self) -> bool:
        return self.low_confidence_reason is not None

    @property
    def low_confidence_pass(self) -> bool:
        """Passed, but only against thresholds that cannot support their target FPR."""
        return self.low_confidence and self.flagged is False and not self.is_finding

    @property
    def evidence(self) -> tuple[str, ...]:
        """One sentence per reason it is a finding: the probe's, the copy/derivative match (its ``reason``,
        as the copies section shows it), the weights' when they flagged it; () for a non-finding."""
        out = [*self.probe_evidence] if self.probe_flagged else []
        if self.derived_from is not None:
            out.append(self.derived_from.reason)
        if self.flagged:
            out += self.weight_evidence
        return tuple(out)

    @property
    def notes(self) -> tuple[str, ...]:
        """What the other checks said about a finding: the weights' pass (why its margin is negative), a
        probe that found nothing."""
        if not self.is_finding:
            return ()
        out = [*self.weight_evidence] if self.flagged is False else []
        return tuple(out + ([self.probe_summary] if self.probe_summary else []))

    @property
    def hub_sourced(self) -> bool:
        """The store has this repo from a Hub listing (not ingested from a local path)."""
        return self.source in (None, "hub") and not self.repo_id.startswith("local:")

    @property
    def url(self) -> str | None:
        """Link to the revision on the Hub; None for repos that did not come from a Hub."""
        return hub_url(self.repo_id, self.sha) if self.hub_sourced else None

    @property
    def fired(self) -> tuple[str, ...]:
        """Names of the features past their own thresholds when the weights flagged it (largest margin first)."""
        if not self.flagged:
            return ()
        return tuple(dict.fromkeys(f.feature for f in self.fired_features))

    @property
    def audited(self) -> bool:
        return self.status == AUDITED_STATUS

    @cached_property
    def probe_result(self) -> ProbeResult | None:
        """The typed view of the stored probe result (``probe``, rendered as stored); None when never probed."""
        return ProbeResult.from_dict(self.probe) if self.probe else None

    @property
    def probe_flagged(self) -> bool | None:
        """The probe's verdict (True = behavioural backdoor confirmed), None when never probed or not recorded."""
        result = self.probe_result
        return None if result is None else result.flagged

    @property
    def is_finding(self) -> bool:
        """Flagged by the weights, by a probe, or as a copy/derivative of a known-bad adapter."""
        return bool(self.flagged) or bool(self.probe_flagged) or self.derived_from is not None

    @property
    def is_active_finding(self) -> bool:
        """A finding that no live suppression covers: what fails the gate."""
        return self.is_finding and self.suppressed is None


@dataclass(frozen=True)
class NormMap:
    """Per-layer × per-projection ‖ΔW‖ RMS norms of one adapter beside the population median.

    ``adapter[i][j]`` / ``median[i][j]`` are for ``layers[i]`` and ``projections[j]``; None where
    the module is absent. ``population_n`` revisions went into the median.
    """

    repo_id: str
    sha: str | None
    layers: tuple[int, ...]
    projections: tuple[str, ...]
    adapter: tuple[tuple[float | None, ...], ...]
    median: tuple[tuple[float | None, ...], ...]
    population_n: int


@dataclass(frozen=True)
class Summary:
    """Counts over the whole population of the base (not only the entries listed)."""

    population: int  # adapters (latest revision each) known for the base
    audited: int  # scored
    flagged: int  # findings (weights or probe), suppressed included
    flagged_unsuppressed: int
    suppressed: int
    not_flagged: int
    not_judged: int  # scored but no verdict (stratum/base not calibrated)
    probe_confirmed: int
    not_audited: int
    not_audited_by_reason: dict[str, int] = field(default_factory=dict)
    provenance_mismatch: int = 0  # adapters whose config names another base
    low_confidence: int = 0  # of not_flagged: passes judged by a low-confidence fit (never plain passes)
    derived: int = 0  # findings that are copies/derivatives of a known-bad adapter
    # of the scored revisions still listed (not removed): with a probe verdict (flagged or clean), and
    # without one yet (queued or not); escalation queues every one, so the second count only shrinks
    probed: int = 0
    not_probed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "population": self.population,
            "audited": self.audited,
            "flagged": self.flagged,
            "flagged_unsuppressed": self.flagged_unsuppressed,
            "suppressed": self.suppressed,
            "not_flagged": self.not_flagged,
            "not_judged": self.not_judged,
            "probe_confirmed": self.probe_confirmed,
            "not_audited": self.not_audited,
            "not_audited_by_reason": dict(self.not_audited_by_reason),
            "provenance_mismatch": self.provenance_mismatch,
            "low_confidence": self.low_confidence,
            "derived": self.derived,
            "probed": self.probed,
            "not_probed": self.not_probed,
        }


@dataclass(frozen=True)
class Report:
    """Everything one ``hubaudit report`` run says about one base model."""

    base: str
    generated_at: datetime
    tool_version: str
    calibration: Calibration
    summary: Summary
    adapters: tuple[AdapterEntry, ...]  # the listed entries (all, or findings only with --flagged-only)
    population_scores: tuple[tuple[str, float], ...] = ()  # (stratum, paper's score) of every scored revision
    # (fit key, deciding statistic) of every judged revision: what the histogram shows (Calibration.rule)
    decision_scores: tuple[tuple[str, float], ...] = ()
    norm_maps: tuple[NormMap, ...] = ()
    since: datetime | None = None
    flagged_only: bool = False
    suppressions_active: int = 0
    expired_suppressions: tuple[Suppression, ...] = ()
    similarity_thresholds: SimilarityThresholds | None = None  # copy/derivative thresholds in force
    # (kind, the base's stored calibration in force or None) for the probe battery and τ_search; () when not read
    probe_calibration: tuple[tuple[str, CalibrationRef | None], ...] = ()
    schema_version: str = SCHEMA_VERSION

    @property
    def findings(self) -> tuple[AdapterEntry, ...]:
        return tuple(a for a in self.adapters if a.is_finding)

    def norm_map(self, repo_id: str, sha: str | None) -> NormMap | None:
        return next((m for m in self.norm_maps if m.repo_id == repo_id and m.sha == sha), None)
