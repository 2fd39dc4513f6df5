"""Domain types shared by all stages (the contract between stats, store, calibrate, report).

Plain frozen dataclasses; every stage imports these and nothing of another stage.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from hubaudit.vocab import CalibrationOrigin, ProbeStatus, ScanStatus

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


def _dump(known: Mapping[str, Any], extra: Mapping[str, Any], stored_keys: tuple[str, ...]) -> dict[str, Any]:
    """The stored keys in their stored order (a stored null stays null, a wrong-typed value comes back
    from ``extra`` as stored), then any field set since (not None), then the remaining extra keys."""
    out = {k: extra[k] if k in extra else _out(known.get(k)) for k in stored_keys}
    out |= {k: _out(v) for k, v in known.items() if k not in out and v is not None}
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
