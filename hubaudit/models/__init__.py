"""Domain types shared by all stages (the contract between stats, store, calibrate, report).

Plain frozen dataclasses; every stage imports these and nothing of another stage.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeVar

from hubaudit.vocab import CalibrationOrigin, ProbeStatus, ScanStatus, StratumStatus

if TYPE_CHECKING:
    import numpy as np


@dataclass(frozen=True)
class ModuleStat:
    """One LoRA module (an A/B pair) of an adapter, statistics of its ΔW = s·B·A.

    ``frob_norm`` is the dimension-normalized Frobenius norm ‖ΔW‖_F / √(d_out·d_in) (arXiv 2605.30189),
    i.e. the RMS entry of ΔW, with PEFT scaling applied. ``singular_values`` are those of ΔW
    (scaled), descending, at most ``rank`` of them.
    """

    name: str  # module path without the "base_model.model." prefix, e.g. "model.layers.3.self_attn.q_proj"
    layer: int | None  # transformer block index if the path has one
    projection: str  # last path component, e.g. "q_proj", "c_attn", "embed_tokens"
    kind: Literal["linear", "embedding"]
    d_in: int
    d_out: int
    rank: int
    scaling: float
    frob_norm: float
    singular_values: tuple[float, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["singular_values"] = list(self.singular_values)
        return d


@dataclass(frozen=True)
class SavedTensor:
    """A full tensor that replaces a base weight (modules_to_save, bias='all', resized embeddings)."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    nbytes: int


@dataclass(frozen=True)
class Fingerprint:
    """A fixed-size sketch of an adapter's ΔW = s·B·A over all its modules (stats/fingerprint.py).

    ``vec`` is float32, unit L2 norm (all zeros when every ΔW is zero), so the similarity of two
    fingerprints of one ``version`` is their dot product, an estimate of the cosine similarity of the
    two adapters' ΔW (concatenated over modules). Invariant to LoRA's reparametrisations
    (B·R with R⁻¹·A, B·c with A/c, alpha/r) and, up to rounding, to the stored dtype.
    Stored as little-endian float16 (:meth:`to_bytes`).
    """

    version: str
    vec: np.ndarray
    n_modules: int

    @property
    def dim(self) -> int:
        return int(self.vec.shape[0])

    def to_bytes(self) -> bytes:
        import numpy as np

        return np.asarray(self.vec, dtype="<f2").tobytes()

    @classmethod
    def from_bytes(cls, version: str, data: bytes, n_modules: int) -> Fingerprint:
        import numpy as np

        return cls(version, np.frombuffer(data, dtype="<f2").astype(np.float32), n_modules)

    def similarity(self, other: Fingerprint) -> float:
        """Estimated cosine similarity of the two adapters' ΔW; ValueError across versions."""
        import numpy as np

        if self.version != other.version or self.dim != other.dim:
            raise ValueError(f"fingerprints of different versions ({self.version}, {other.version})")
        return float(np.dot(self.vec.astype(np.float64), other.vec.astype(np.float64)))


@dataclass
class ScanResult:
    """Everything the weight scanner knows about one adapter.

    status ``ok``: scored; ``error``: malformed/hostile/unreadable (``error`` says why, one line);
    ``unsupported``: a well-formed adapter we do not score (IA3, prompt tuning, pickle, ...).
    ``score`` is the paper's global_frobN_std with PEFT scaling (population std, ddof=0, of
    ``ModuleStat.frob_norm`` over all LoRA modules); None unless status is ``ok``.
    """

    source: str
    status: ScanStatus
    error: str | None = None
    score: float | None = None
    peft_type: str | None = None
    variant: str | None = None  # "lora" | "rslora" | "dora" | "rslora+dora"
    rank: int | None = None  # the config rank (or the most common tensor rank)
    alpha: float | None = None
    target_modules: tuple[str, ...] = ()  # sorted projection names that carry LoRA
    base_model: str | None = None  # adapter_config base_model_name_or_path
    task_type: str | None = None
    n_modules: int = 0
    features: dict[str, float] = field(default_factory=dict)
    modules: list[ModuleStat] = field(default_factory=list)
    modules_to_save: list[SavedTensor] = field(default_factory=list)
    dora_magnitudes: dict[str, float] = field(default_factory=dict)  # module -> mean magnitude
    warnings: list[str] = field(default_factory=list)
    content_sha256: str | None = None  # sha256 of the weights file
    config_sha256: str | None = None
    file_bytes: int | None = None
    featureset_version: str | None = None
    fingerprint: Fingerprint | None = None  # status ok only; not part of to_dict (stored on its own)

    @property
    def stratum(self) -> str:
        """Comparable-population key: variant, rank and target-module set."""
        return stratum_key(self.variant, self.rank, self.target_modules)

    def to_dict(self, *, with_modules: bool = True) -> dict[str, Any]:
        d: dict[str, Any] = {
            "source": self.source,
            "status": self.status,
            "error": self.error,
            "score": self.score,
            "peft_type": self.peft_type,
            "variant": self.variant,
            "rank": self.rank,
            "alpha": self.alpha,
            "target_modules": list(self.target_modules),
            "base_model": self.base_model,
            "task_type": self.task_type,
            "n_modules": self.n_modules,
            "stratum": self.stratum if self.status == ScanStatus.OK else None,
            "features": dict(self.features),
            "modules_to_save": [asdict(t) | {"shape": list(t.shape)} for t in self.modules_to_save],
            "dora_magnitudes": dict(self.dora_magnitudes),
            "warnings": list(self.warnings),
            "content_sha256": self.content_sha256,
            "file_bytes": self.file_bytes,
            "featureset_version": self.featureset_version,
        }
        if with_modules:
            d["modules"] = [m.to_dict() for m in self.modules]
        return d


def stratum_key(variant: str | None, rank: int | None, target_modules: tuple[str, ...] | list[str]) -> str:
    """``"lora|r16|k_proj,q_proj,v_proj"``: adapters are only compared within one stratum."""
    return f"{variant or '?'}|r{rank if rank is not None else '?'}|{','.join(sorted(target_modules))}"


class FeatureBlock:
    """Feature values of many adapters as one n×K float64 matrix (NaN = missing) with its column
    names: the store's packed form of the ``features`` dicts (store/_sql.feature_columns). Rows are
    handed out as :class:`FeatureRow` mappings, and calibrate/_robust.feature_matrix gathers their
    columns without building a dict per adapter (a 100,000-adapter calibration,
    benchmarks/bench_store.py)."""

    __slots__ = ("names", "x", "index")

    def __init__(self, names: Sequence[str], x: np.ndarray) -> None:
        self.names = tuple(names)
        self.x = x
        self.index = {n: j for j, n in enumerate(self.names)}

    def rows(self) -> list[FeatureRow]:
        return [FeatureRow(self, i) for i in range(self.x.shape[0])]


class FeatureRow(Mapping[str, float | None]):
    """Row ``i`` of a :class:`FeatureBlock` as a read-only ``{feature: value}`` mapping; a missing
    (NaN) value reads as None, as in the stored JSON."""

    __slots__ = ("block", "i")

    def __init__(self, block: FeatureBlock, i: int) -> None:
        self.block = block
        self.i = i

    def __getitem__(self, name: str) -> float | None:
        v = float(self.block.x[self.i, self.block.index[name]])
        return None if v != v else v

    def __iter__(self) -> Iterator[str]:
        return iter(self.block.names)

    def __len__(self) -> int:
        return len(self.block.names)

    def __repr__(self) -> str:
        return f"FeatureRow({dict(self)!r})"


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


# ---------------------------------------------------------------- behavioural probe results
# The stored form of a probe result is its JSON dict (probe/prober.py, probe/search_run.py, the probe
# task's bookkeeping); the dataclasses below are the typed view every reader uses. New results carry
# ``probe_result_version``; rows stored before it have none and parse the same way.
PROBE_RESULT_VERSION_KEY = "probe_result_version"
PROBE_RESULT_VERSION = 1

_Conv = Callable[[Any], tuple[bool, Any]]


def _as_str(v: Any) -> tuple[bool, Any]:
    return isinstance(v, str), v


def _as_bool(v: Any) -> tuple[bool, Any]:
    return isinstance(v, bool), v


def _as_num(v: Any) -> tuple[bool, Any]:
    """int or float as stored (1 stays 1, so the JSON written back is the same); bools are no numbers."""
    return isinstance(v, (int, float)) and not isinstance(v, bool), v


def _as_int(v: Any) -> tuple[bool, Any]:
    return isinstance(v, int) and not isinstance(v, bool), v


def _as_map(v: Any) -> tuple[bool, Any]:
    return (True, dict(v)) if isinstance(v, Mapping) else (False, v)


def _as_strs(v: Any) -> tuple[bool, Any]:
    ok = isinstance(v, list) and all(isinstance(x, str) for x in v)
    return (True, tuple(v)) if ok else (False, v)


def _as_ints(v: Any) -> tuple[bool, Any]:
    ok = isinstance(v, list) and all(isinstance(x, int) and not isinstance(x, bool) for x in v)
    return (True, tuple(v)) if ok else (False, v)


def _as_maps(v: Any) -> tuple[bool, Any]:
    ok = isinstance(v, list) and all(isinstance(x, Mapping) for x in v)
    return (True, tuple(dict(x) for x in v)) if ok else (False, v)


def _as_list(v: Any) -> tuple[bool, Any]:
    return (True, tuple(v)) if isinstance(v, list) else (False, v)


def _as_battery(v: Any) -> tuple[bool, Any]:
    """``Battery.to_dict()`` (name, version, n, source); a bare name in rows stored before it."""
    return _as_map(v) if isinstance(v, Mapping) else (isinstance(v, str), v)


def _parse(d: Mapping[str, Any], spec: Mapping[str, _Conv]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(typed values of ``spec``'s keys present in ``d``, the values of those keys that have the wrong type)."""
    typed, wrong = {}, {}
    for key, conv in spec.items():
        if key in d and d[key] is not None:
            ok, value = conv(d[key])
            if ok:
                typed[key] = value
            else:
                wrong[key] = d[key]
    return typed, wrong


def _out(v: Any) -> Any:
    if isinstance(v, tuple):
        return list(v)
    if isinstance(v, (ProbeResult, SearchResult)):
        return v.to_dict()
    return v


def _dump(known: Mapping[str, Any], extra: Mapping[str, Any], stored_keys: tuple[str, ...],
          out_value: Callable[[Any], Any] = _out) -> dict[str, Any]:  # fmt: skip
    """The stored keys in their stored order (a stored null stays null, a wrong-typed value comes back
    from ``extra`` as stored), then any field set since (not None), then the remaining extra keys."""
    out = {k: extra[k] if k in extra else out_value(known.get(k)) for k in stored_keys}
    out |= {k: out_value(v) for k, v in known.items() if k not in out and v is not None}
    return out | {k: v for k, v in extra.items() if k not in out}


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
        return _dump(known, self.extra, self.stored_keys)


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
        return _dump(known, self.extra, self.stored_keys)


# ---------------------------------------------------------------- weight calibration: threshold sets and verdicts
# The stored form of a threshold set is the JSON calibrate/fit.py's ``fit`` returns (``{"method", "n",
# "params", "strata"}``; the store keeps ``strata`` and ``params`` in columns of their own) and that of a
# verdict's breakdown the dict calibrate/judge.py writes per adapter. The dataclasses below are the typed
# views every reader uses. Like the probe result's, their ``from_dict`` parses every shape stored so far
# and never raises on the content: a value of the wrong type reads as None, is logged (once per field)
# and kept as stored in ``extra``, so ``to_dict`` gives back exactly the JSON that was read. New threshold
# sets carry ``params["threshold_set_version"]``, new breakdowns ``breakdown_version``; rows stored
# before them have none and parse the same way.
THRESHOLD_SET_VERSION_KEY = "threshold_set_version"
THRESHOLD_SET_VERSION = 1
VERDICT_BREAKDOWN_VERSION_KEY = "breakdown_version"
VERDICT_BREAKDOWN_VERSION = 1
# The verdict rules a threshold set can name (``params["verdict"]``): what sets ``flagged`` and ``margin``.
# Sets stored before the rule was recorded, or naming one this version does not know, are "per-feature".
VERDICT_RULES = ("combined", "per-feature")
# The paper's statistic (arXiv 2605.30189): its own threshold is shown beside every verdict.
PAPER_FEATURE = "global_frobN_std"
SIDES = ("above", "below")  # the side of its threshold a fired feature's value lies on

_log = logging.getLogger(__name__)
_WARNED: set[tuple[str, str]] = set()
_R = TypeVar("_R", bound="_Record")


@dataclass(frozen=True)
class _Partly:
    """A converter's answer for a container of which only some entries have the right type: those."""

    good: Any


# Converters whose accepted values are exactly these types: :func:`_read` takes such values without a call
# (a base's re-judgement writes 100,000 breakdowns, and a report or an escalation pass reads them back).
_EXACT: dict[_Conv, tuple[type, ...]] = {_as_str: (str,), _as_bool: (bool,), _as_num: (int, float), _as_int: (int,)}
_PLANS: dict[type, dict[str, tuple[tuple[type, ...], _Conv]]] = {}
_DEFAULTS: dict[type, dict[str, Any]] = {}


def _read(cls: type[_Record], d: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(typed values of ``cls.SPEC``'s keys present in ``d``, ``extra``: the other keys and the stored values
    of the wrong type); each wrong-typed field is logged once per process."""
    plan = _PLANS.get(cls)
    if plan is None:
        plan = _PLANS[cls] = {k: (_EXACT.get(conv, ()), conv) for k, conv in cls.SPEC.items()}
    typed: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for key, v in d.items():
        p = plan.get(key)
        if p is None:
            extra[key] = v
            continue
        if v is None:
            continue
        if type(v) in p[0]:
            typed[key] = v
            continue
        ok, value = p[1](v)
        if ok:
            typed[key] = value
            continue
        extra[key] = v
        if isinstance(value, _Partly):
            typed[key] = value.good
        if (cls.__name__, key) not in _WARNED:
            _WARNED.add((cls.__name__, key))
            _log.warning("%s: stored %r is not of the expected type; left out (kept as stored)", cls.__name__, key)
    return typed, extra


def _ser(v: Any) -> Any:
    """A typed value in its stored form (records by their ``to_dict``, tuples as lists)."""
    if isinstance(v, _Record):
        return v.to_dict()
    if isinstance(v, tuple):
        return [_ser(x) for x in v]
    if isinstance(v, dict):
        return {k: _ser(x) for k, x in v.items()}
    return v


@dataclass(frozen=True)
class _Record:
    """A typed view of one stored JSON object: the keys of ``SPEC`` typed, the others in ``extra``, and
    ``stored_keys`` the stored key order, so :meth:`to_dict` gives back exactly the dict :meth:`from_dict` read."""

    SPEC: ClassVar[dict[str, _Conv]] = {}
    extra: dict[str, Any] = field(default_factory=dict, kw_only=True)
    stored_keys: tuple[str, ...] = field(default=(), kw_only=True)

    @classmethod
    def from_dict(cls: type[_R], d: Mapping[str, Any]) -> _R:
        """The typed view of a stored object (any shape stored so far; never raises on its content)."""
        typed, extra = _read(cls, d)
        defaults = _DEFAULTS.get(cls)
        if defaults is None:
            defaults = _DEFAULTS[cls] = {f.name: f.default for f in fields(cls) if f.name != "extra"}
        # the attributes __init__ would set, set at once: a few times faster than a frozen dataclass's
        # __init__, which assigns field by field through object.__setattr__
        obj = object.__new__(cls)
        attrs = obj.__dict__
        attrs.update(defaults)
        attrs.update(typed)
        attrs["extra"] = extra
        attrs["stored_keys"] = tuple(d)
        return obj

    def to_dict(self) -> dict[str, Any]:
        """The stored form (the inverse of :meth:`from_dict`)."""
        return _dump({k: getattr(self, k) for k in self.SPEC}, self.extra, self.stored_keys, _ser)


_STRATUM_STATUSES = frozenset(s.value for s in StratumStatus)


def _as_status(v: Any) -> tuple[bool, Any]:
    """A StratumStatus word (a word this version does not know is of the wrong type)."""
    return (True, StratumStatus(v)) if isinstance(v, str) and v in _STRATUM_STATUSES else (False, v)


def _as_nums(v: Any) -> tuple[bool, Any]:
    ok = isinstance(v, list) and all(_as_num(x)[0] for x in v)
    return (True, tuple(v)) if ok else (False, v)


def _as_str_map(v: Any) -> tuple[bool, Any]:
    ok = isinstance(v, Mapping) and all(isinstance(x, str) for x in v.values())
    return (True, dict(v)) if ok else (False, v)


def _as_record(cls: type[_Record]) -> _Conv:
    def conv(v: Any) -> tuple[bool, Any]:
        return (True, cls.from_dict(v)) if isinstance(v, Mapping) else (False, v)

    return conv


def _as_record_map(cls: type[_Record]) -> _Conv:
    """``{name: record}``; entries that are no object are left out (the field then counts as wrong-typed)."""
    def conv(v: Any) -> tuple[bool, Any]:
        if not isinstance(v, Mapping):
            return False, v
        good = {k: cls.from_dict(x) for k, x in v.items() if isinstance(x, Mapping)}
        return (True, good) if len(good) == len(v) else (False, _Partly(good))

    return conv


def _finite(x: float | None) -> float | None:
    return x if x is not None and math.isfinite(x) else None


# ---- threshold sets (calibrate/fit.py)
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
        if (cls.__name__, "bare") not in _WARNED:
            _WARNED.add((cls.__name__, "bare"))
            _log.warning("StratumFit: a stratum stored as a bare value, not an object; read as its threshold")
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


# ---- verdicts (calibrate/judge.py)
@dataclass(frozen=True)
class CombinedScore(_Record):
    """The combined statistic S of one adapter against its stratum's threshold T (flagged when S > T)."""

    statistic: float | None = None
    threshold: float | None = None
    mode: str | None = None
    flagged: bool | None = None

    SPEC: ClassVar[dict[str, _Conv]] = {"statistic": _as_num, "threshold": _as_num, "mode": _as_str, "flagged": _as_bool}


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
