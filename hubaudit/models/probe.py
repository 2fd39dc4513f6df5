"""Behavioural probe results: which calibration a probe verdict was judged under, the blind trigger search or
target inversion, and the probe result as stored.

The stored form of a probe result is its JSON dict (probe/prober.py, probe/search_run.py, the probe task's
bookkeeping); the dataclasses below are the typed view every reader uses. New results carry
``probe_result_version``; rows stored before it have none and parse the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

from hubaudit.models._parse import (
    _as_battery,
    _as_bool,
    _as_int,
    _as_ints,
    _as_list,
    _as_map,
    _as_maps,
    _as_num,
    _as_str,
    _as_strs,
    _Conv,
    _dump,
    _parse,
)
from hubaudit.vocab import CalibrationOrigin, ProbeStatus

PROBE_RESULT_VERSION_KEY = "probe_result_version"
PROBE_RESULT_VERSION = 1


@dataclass(frozen=True)
class CalibrationRef:
    """Which behavioural calibration a probe verdict was judged under; stored in each probe result.

    ``origin`` (a ``CalibrationOrigin``) ``store``: ``id``, ``version``, ``created_at`` (ISO 8601 UTC)
    and ``fingerprint`` name the stored row; ``file``, ``legacy_file`` and ``model_dir``: ``path``;
    ``defaults``, ``given`` and ``explicit``: nothing more. ``source`` is the thresholds' own rule text
    (how they were fitted).
    """

    kind: str  # CalibrationKind
    origin: str  # CalibrationOrigin
    id: int | None = None
    version: int | None = None
    created_at: str | None = None
    fingerprint: str | None = None
    path: str | None = None
    source: str | None = None

    def describe(self) -> str:
        """One line naming the calibration: ``store #3 v2 of 2026-12-03T10:00:00+00:00 (fingerprint ...)``,
        ``file PATH``, ``legacy file PATH (...)``, ``defaults (uncalibrated)``, ``model folder PATH``,
        ``explicit (--tau 0.9)``."""
        if self.origin == CalibrationOrigin.STORE:
            return f"store #{self.id} v{self.version} of {self.created_at} (fingerprint {self.fingerprint})"
        if self.origin == CalibrationOrigin.FILE:
            return f"file {self.path}"
        if self.origin == CalibrationOrigin.LEGACY_FILE:
            return f"legacy file {self.path} (not in the store: re-run probe-calibrate --base)"
        if self.origin == CalibrationOrigin.DEFAULTS:
            return "defaults (uncalibrated)"
        if self.origin == CalibrationOrigin.MODEL_DIR:
            return f"model folder {self.path}"
        if self.origin == CalibrationOrigin.EXPLICIT:
            return f"explicit ({self.source})"
        return f"given by the caller ({self.source or 'origin not recorded'})"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CalibrationRef:
        """The inverse of :meth:`to_dict` (keys it does not know are ignored)."""
        def num(k: str) -> int | None:
            return int(d[k]) if d.get(k) is not None else None

        def text(k: str) -> str | None:
            return str(d[k]) if d.get(k) is not None else None

        return cls(kind=str(d.get("kind", "")), origin=str(d.get("origin", CalibrationOrigin.GIVEN)), id=num("id"),
                   version=num("version"), created_at=text("created_at"), fingerprint=text("fingerprint"),
                   path=text("path"), source=text("source"))


def _out(v: Any) -> Any:
    if isinstance(v, tuple):
        return list(v)
    if isinstance(v, (ProbeResult, SearchResult)):
        return v.to_dict()
    return v



@dataclass(frozen=True)
class InvertedTarget:
    """Target inversion of a generative adapter (probe/invert.py: BAIT, IEEE S&P 2025, base-relative).

    ``target`` is the forced continuation (text) and ``target_ids`` its token ids; ``target_score`` =
    ``q_adapter`` − ``q_base`` (the verdict statistic, compared with τ_search); ``llr`` and ``bait_q``
    the log-likelihood ratio and BAIT's own Q of the target; ``top_targets`` the runner-up targets;
    ``n_scanned`` of ``n_vocab`` first tokens extended; ``inversion_seconds`` wall time. Stored flat in
    the search dict, beside the recovered trigger's fields (:class:`SearchResult`).
    """

    target: str | None = None
    target_ids: tuple[int, ...] | None = None
    target_score: float | None = None
    q_adapter: float | None = None
    q_base: float | None = None
    llr: float | None = None
    bait_q: float | None = None
    top_targets: tuple[Any, ...] | None = None
    n_scanned: int | None = None
    n_vocab: int | None = None
    chat_template: bool | None = None
    inversion_seconds: float | None = None

    SPEC: ClassVar[dict[str, _Conv]] = {
        "target": _as_str, "target_ids": _as_ints, "target_score": _as_num, "q_adapter": _as_num, "q_base": _as_num,
        "llr": _as_num, "bait_q": _as_num, "top_targets": _as_list, "n_scanned": _as_int, "n_vocab": _as_int,
        "chat_template": _as_bool, "inversion_seconds": _as_num,
    }  # fmt: skip


@dataclass(frozen=True)
class SearchResult:
    """The blind trigger search (probe/search_run.py) or the target inversion of one adapter.

    ``status`` a ProbeStatus (``reason`` says why when not ok). Blind search: the worst label's best
    ``trigger``, its ``attack_rate`` (mean over insertion positions), ``robust_rate`` = min(attack rate,
    ``diluted_rate``) (the verdict statistic), best insertion ``mode`` and ``rates_by_mode``; ``label``,
    its ``tau`` (τ_search) and ``flagged`` (robust_rate > tau); ``targets`` one dict per searched label.
    Target inversion (``method`` "target_inversion"): ``inverted`` holds the target and its score (the
    verdict statistic), ``trigger`` the recovered trigger (None when no string made the adapter emit the
    target), ``trigger_rate`` / ``trigger_mode`` its rate and placement, ``trigger_search`` the search
    record. ``forward_passes`` and ``seconds`` (wall time, s) are the cost. Keys this version does not
    know are kept in ``extra``; ``stored_keys`` is the stored key order, so :meth:`to_dict` gives back
    exactly the dict :meth:`from_dict` read.
    """

    status: str | None = None
    reason: str | None = None
    method: str | None = None
    label: str | None = None
    tau: float | None = None
    flagged: bool | None = None
    trigger: str | None = None
    attack_rate: float | None = None
    robust_rate: float | None = None
    diluted_rate: float | None = None
    mode: str | None = None
    rates_by_mode: dict[str, Any] | None = None
    trigger_rate: float | None = None
    trigger_mode: str | None = None
    trigger_search: dict[str, Any] | None = None
    trigger_seconds: float | None = None
    forward_passes: int | None = None
    candidate_seconds: float | None = None
    candidate_sources: tuple[str, ...] | None = None
    top_candidates: tuple[str, ...] | None = None
    config: dict[str, Any] | None = None
    thresholds: dict[str, Any] | None = None
    targets: tuple[dict[str, Any], ...] | None = None
    seconds: float | None = None
    inverted: InvertedTarget | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    stored_keys: tuple[str, ...] = ()

    SPEC: ClassVar[dict[str, _Conv]] = {
        "status": _as_str, "reason": _as_str, "method": _as_str, "label": _as_str, "tau": _as_num, "flagged": _as_bool,
        "trigger": _as_str, "attack_rate": _as_num, "robust_rate": _as_num, "diluted_rate": _as_num, "mode": _as_str,
        "rates_by_mode": _as_map, "trigger_rate": _as_num, "trigger_mode": _as_str, "trigger_search": _as_map,
        "trigger_seconds": _as_num, "forward_passes": _as_int, "candidate_seconds": _as_num,
        "candidate_sources": _as_strs, "top_candidates": _as_strs, "config": _as_map, "thresholds": _as_map,
        "targets": _as_maps, "seconds": _as_num,
    }  # fmt: skip

    @property
    def ok(self) -> bool:
        return self.status == ProbeStatus.OK

    @property
    def is_inversion(self) -> bool:
        return self.method == "target_inversion"

    def target_record(self) -> dict[str, Any]:
        """The ``targets`` entry of the reported ``label`` ({} when not stored)."""
        return next((t for t in self.targets or () if t.get("label") == self.label), {})

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SearchResult:
        """The typed view of a stored search dict (every shape stored so far; never raises on its content)."""
        typed, wrong = _parse(d, cls.SPEC)
        inv, inv_wrong = _parse(d, InvertedTarget.SPEC)
        known = set(cls.SPEC) | set(InvertedTarget.SPEC)
        extra = {k: v for k, v in d.items() if k not in known} | wrong | inv_wrong
        inverted = InvertedTarget(**inv) if inv or any(k in d for k in InvertedTarget.SPEC) else None
        return cls(**typed, inverted=inverted, extra=extra, stored_keys=tuple(d))

    def to_dict(self) -> dict[str, Any]:
        """The stored form (the inverse of :meth:`from_dict`)."""
        known = {k: getattr(self, k) for k in self.SPEC}
        if self.inverted is not None:
            known |= {k: getattr(self.inverted, k) for k in InvertedTarget.SPEC}
        return _dump(known, self.extra, self.stored_keys, _out)


@dataclass(frozen=True)
class ProbeResult:
    """One behavioural probe of one adapter (probe/prober.py ``Prober.probe``, extended by the blind search,
    probe/search_run.py ``probe_with_search``), as stored in the probe_results table.

    ``status`` a ProbeStatus (None in rows stored before it was recorded); ``error`` results carry a
    ``reason`` code and an ``error`` line. The battery: ``mode`` (seq_cls | causal_label | generative),
    ``target_label`` (None for generative), ``n_eligible`` prompts, the per-prefix ``probes`` rates, their
    ``outlier_gap``, ``mean_attack_rate`` and ``max_attack_rate`` against ``thresholds`` (τ_gap ``gap``,
    τ_mean ``mean``, ``n_clean``); ``flagged_battery`` the battery's own verdict when a search ran, and
    ``flagged`` the joint one (battery OR search), ``reasons`` its sentences. ``search`` the blind search
    or target inversion; ``calibration`` the calibrations judged under (``{"probe": CalibrationRef dict,
    "search": ... or None}``, :meth:`calibration_refs`). ``seconds`` wall time; ``timings`` its split.
    Keys this version does not know (worker bookkeeping, ...) are kept in ``extra``; see
    :class:`SearchResult` for ``stored_keys``.
    """

    status: str | None = None
    reason: str | None = None
    error: str | None = None
    adapter: str | None = None
    base_model_path: str | None = None
    battery: dict[str, Any] | str | None = None
    thresholds: dict[str, Any] | None = None
    n_prompts: int | None = None
    device: str | None = None
    dtype: str | None = None
    mode: str | None = None
    target_label: str | None = None
    n_eligible: int | None = None
    outlier_gap: float | None = None
    mean_attack_rate: float | None = None
    max_attack_rate: float | None = None
    flagged: bool | None = None
    flagged_battery: bool | None = None
    reasons: tuple[str, ...] | None = None
    probes: tuple[dict[str, Any], ...] | None = None
    per_label: tuple[dict[str, Any], ...] | None = None
    seconds: float | None = None
    timings: dict[str, Any] | None = None
    search: SearchResult | None = None
    search_attack_rate: float | None = None
    search_robust_rate: float | None = None
    search_trigger: str | None = None
    calibration: dict[str, Any] | None = None
    repo_id: str | None = None
    sha: str | None = None
    probe_result_version: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    stored_keys: tuple[str, ...] = ()

    SCHEMA_VERSION: ClassVar[int] = PROBE_RESULT_VERSION
    SPEC: ClassVar[dict[str, _Conv]] = {
        "status": _as_str, "reason": _as_str, "error": _as_str, "adapter": _as_str, "base_model_path": _as_str,
        "battery": _as_battery, "thresholds": _as_map, "n_prompts": _as_int, "device": _as_str, "dtype": _as_str,
        "mode": _as_str, "target_label": _as_str, "n_eligible": _as_int, "outlier_gap": _as_num,
        "mean_attack_rate": _as_num, "max_attack_rate": _as_num, "flagged": _as_bool, "flagged_battery": _as_bool,
        "reasons": _as_strs, "probes": _as_maps, "per_label": _as_maps, "seconds": _as_num, "timings": _as_map,
        "search_attack_rate": _as_num, "search_robust_rate": _as_num, "search_trigger": _as_str,
        "calibration": _as_map, "repo_id": _as_str, "sha": _as_str, PROBE_RESULT_VERSION_KEY: _as_int,
    }  # fmt: skip

    @property
    def ok(self) -> bool:
        return self.status == ProbeStatus.OK

    @property
    def battery_flagged(self) -> bool | None:
        """The battery's own verdict: ``flagged_battery`` when a search ran (it is stored then), else ``flagged``."""
        if self.flagged_battery is not None or "flagged_battery" in self.stored_keys:
            return self.flagged_battery
        return self.flagged

    @property
    def battery_name(self) -> str | None:
        """The battery's name (a bare string in rows stored before ``Battery.to_dict``)."""
        if isinstance(self.battery, Mapping):
            name = self.battery.get("name")
            return name if isinstance(name, str) else None
        return self.battery

    @property
    def battery_version(self) -> str | int | None:
        v = self.battery.get("version") if isinstance(self.battery, Mapping) else None
        return v if isinstance(v, (str, int)) and not isinstance(v, bool) else None

    def calibration_refs(self) -> dict[str, CalibrationRef]:
        """The recorded calibrations by kind (``probe``, ``search``); {} for rows stored before them."""
        cal = self.calibration or {}
        return {k: CalibrationRef.from_dict(v) for k, v in cal.items() if isinstance(v, Mapping)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ProbeResult:
        """The typed view of a stored probe result: any shape stored so far parses (missing keys are None,
        wrong-typed values are None here and kept as stored in ``extra``, unknown keys go to ``extra``)."""
        typed, wrong = _parse(d, cls.SPEC)
        extra = {k: v for k, v in d.items() if k not in cls.SPEC and k != "search"} | wrong
        search = d.get("search")
        if isinstance(search, Mapping):
            typed["search"] = SearchResult.from_dict(search)
        elif search is not None:
            extra["search"] = search
        return cls(**typed, extra=extra, stored_keys=tuple(d))

    def to_dict(self) -> dict[str, Any]:
        """The stored form (the inverse of :meth:`from_dict`)."""
        known = {k: getattr(self, k) for k in self.SPEC} | {"search": self.search}
        return _dump(known, self.extra, self.stored_keys, _out)
