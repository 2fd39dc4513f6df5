"""What the weight scanner knows about one adapter (stats/scan.py), and the packed feature values the store
hands the calibration."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from hubaudit.vocab import ScanStatus

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
