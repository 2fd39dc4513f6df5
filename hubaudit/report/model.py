"""The Report data model: what every output format renders (pure; stdlib only).

``build.build_report`` turns store rows into a :class:`Report`; each format in ``formats/`` turns a
Report into text. Nothing here knows about the database, the terminal or the Hub.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

# Bump on any backwards-incompatible change to the JSON/JSONL report shape (README "JSON schema").
SCHEMA_VERSION = "1"

HUB_URL = "https://huggingface.co"

# Statuses an audit row can have (STORE_API.md record_revision); only "scored" has a score.
AUDITED_STATUS = "scored"


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


@dataclass(frozen=True)
class StratumCalibration:
    """Thresholds of one comparable stratum (variant | rank | target modules).

    ``score_threshold`` is the upper threshold on the headline score when the calibration has one
    (used for histogram lines); ``thresholds`` carries every per-feature threshold as stored.
    """

    stratum: str
    n: int | None
    score_threshold: float | None
    status: str = "calibrated"  # calibrate/fit.py: calibrated | pooled | not_calibrated
    thresholds: dict[str, Any] = field(default_factory=dict)
    # the fit that judges the stratum (its own or its pool's) had too few adapters for its target FPR
    low_confidence_reason: str | None = None

    @property
    def low_confidence(self) -> bool:
        return self.low_confidence_reason is not None


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

    @property
    def url(self) -> str | None:
        return hub_url(self.repo_id, None)


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
                out.append(cls(r["name"], size if type(size) is int else None, digest if isinstance(digest, str) else None))
        return tuple(out)


@dataclass(frozen=True)
class AdapterEntry:
    """One adapter revision as a report shows it.

    ``flagged``: True/False from the active threshold set, None when it was not judged (base or
    stratum not calibrated, or not scored). ``margin``: the largest signed exceedance over any
    calibrated feature's threshold, in robust σ units (calibrate/judge.py; > 0 exactly when
    flagged). ``threshold``: the upper threshold on the headline score, in score units.
    """

    repo_id: str
    sha: str | None
    status: str
    reason: str | None = None  # machine code when not scored (pickle_format, gated, ...)
    error: str | None = None  # one human line
    score: float | None = None
    flagged: bool | None = None
    reasons: tuple[str, ...] = ()
    margin: float | None = None  # robust σ units, the largest signed exceedance over any feature (judge.py)
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

    @property
    def low_confidence(self) -> bool:
        return self.low_confidence_reason is not None

    @property
    def low_confidence_pass(self) -> bool:
        """Passed, but only against thresholds that cannot support their target FPR."""
        return self.low_confidence and self.flagged is False and not self.is_finding

    @property
    def url(self) -> str | None:
        return hub_url(self.repo_id, self.sha)

    @property
    def fired(self) -> tuple[str, ...]:
        """Names of the features that fired (each judge.py reason reads ``name=value above bound (...)``)."""
        if not self.flagged:
            return ()
        return tuple(dict.fromkeys(r.split("=", 1)[0].strip() for r in self.reasons))

    @property
    def audited(self) -> bool:
        return self.status == AUDITED_STATUS

    @property
    def probe_flagged(self) -> bool | None:
        """The probe's verdict (True = behavioural backdoor confirmed), None when never probed."""
        if not self.probe:
            return None
        value = self.probe.get("flagged")
        return None if value is None else bool(value)

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
    population_scores: tuple[tuple[str, float], ...] = ()  # (stratum, score) of every scored revision
    norm_maps: tuple[NormMap, ...] = ()
    since: datetime | None = None
    flagged_only: bool = False
    suppressions_active: int = 0
    expired_suppressions: tuple[Suppression, ...] = ()
    similarity_thresholds: SimilarityThresholds | None = None  # copy/derivative thresholds in force
    schema_version: str = SCHEMA_VERSION

    @property
    def findings(self) -> tuple[AdapterEntry, ...]:
        return tuple(a for a in self.adapters if a.is_finding)

    def norm_map(self, repo_id: str, sha: str | None) -> NormMap | None:
        return next((m for m in self.norm_maps if m.repo_id == repo_id and m.sha == sha), None)
