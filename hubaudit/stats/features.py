"""Registered adapter-level features, all computed from the per-module statistics of one Gram pass.

Every feature has a name, a version, a description and a direction ("up": larger is more
suspicious, "down": smaller is, "both": either way). ``global_frobN_std`` is the paper's
statistic and the scan score (arXiv 2605.30189). A feature whose
inputs are absent (no MLP modules, one layer, ...) is omitted, never NaN. Families
(``proj_<name>_frobN_mean``) produce one feature per projection present. The registry ``FEATURES``
is CORE_FEATURES (below) followed by EXTRA_FEATURES (features_extra.py).
Changing any definition here or there means bumping ``constants.FEATURESET_VERSION``.
"""

from __future__ import annotations

import functools
import re
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np

from hubaudit.models import ModuleStat
from hubaudit.stats._feature import Direction, Feature, Modules, compute, lookup, module_shares
from hubaudit.stats.features_extra import EXTRA_FEATURES

__all__ = ["FEATURES", "CORE_FEATURES", "EXTRA_FEATURES", "Direction", "Feature", "Modules", "compute_features",
           "describe", "module_group", "scored_modules"]  # fmt: skip

# Attention vs MLP: path components decide first (GPT-2's c_proj is in attn.* and mlp.*, BERT's
# dense in attention.output.* and output.*), then the projection name.
_ATTN_PATH = re.compile(r"(^|\.)([\w]*attn[\w]*|[\w]*attention[\w]*)(\.|$)", re.IGNORECASE)
_MLP_PATH = re.compile(r"(^|\.)(mlp|ffn|feed_forward|feedforward|intermediate|densereludense|moe|experts)(\.|$)", re.I)
ATTN_PROJECTIONS = frozenset(
    {"q_proj", "k_proj", "v_proj", "o_proj", "qkv_proj", "out_proj", "c_attn", "query", "key", "value",
     "query_key_value", "Wqkv", "q", "k", "v", "o", "W_pack"}
)  # fmt: skip
MLP_PROJECTIONS = frozenset(
    {"gate_proj", "up_proj", "down_proj", "gate_up_proj", "c_fc", "fc1", "fc2", "fc_in", "fc_out", "w1", "w2",
     "w3", "wi", "wo", "dense_h_to_4h", "dense_4h_to_h"}
)  # fmt: skip


@functools.lru_cache(maxsize=8192)  # module paths repeat across every adapter of a base; regexes are the cost
def module_group(name: str) -> Literal["attn", "mlp"] | None:
    """"attn", "mlp" or None (embeddings, heads, unknown) for a module path."""
    parent, _, proj = name.rpartition(".")
    if _ATTN_PATH.search(parent):
        return "attn"
    if _MLP_PATH.search(parent):
        return "mlp"
    if proj in ATTN_PROJECTIONS:
        return "attn"
    if proj in MLP_PROJECTIONS:
        return "mlp"
    if proj == "dense" and parent.endswith(".output"):  # BERT layer.N.output.dense (after intermediate)
        return "mlp"
    return None


def _linear(ms: Modules) -> list[ModuleStat]:
    return [m for m in ms if m.kind == "linear"]


def _f(ms: Modules) -> np.ndarray:
    return np.array([m.frob_norm for m in ms], dtype=np.float64)


def _std(ms: Modules) -> float | None:
    return float(np.std(_f(ms), ddof=0)) if ms else None  # population std, as the paper


def _mean(ms: Modules) -> float | None:
    return float(np.mean(_f(ms))) if ms else None


def _group_mean(group: str) -> Callable[[Modules], float | None]:
    return lambda ms: _mean([m for m in ms if module_group(m.name) == group])


def _cv(ms: Modules) -> float | None:
    f = _f(ms)
    return float(np.std(f) / np.mean(f)) if len(f) and np.mean(f) > 0 else None


def _log_std(ms: Modules) -> float | None:
    f = _f(ms)
    return float(np.std(np.log(f))) if len(f) >= 2 and np.all(f > 0) else None


def _attn_mlp_ratio(ms: Modules) -> float | None:
    attn, mlp = _group_mean("attn")(ms), _group_mean("mlp")(ms)
    return attn / mlp if attn is not None and mlp else None


def _proj_means(ms: Modules) -> dict[str, float]:
    by: dict[str, list[ModuleStat]] = defaultdict(list)
    for m in ms:
        by[m.projection].append(m)
    return {f"proj_{p}_frobN_mean": float(np.mean(_f(v))) for p, v in sorted(by.items())}


def _layer_means(ms: Modules) -> tuple[np.ndarray, np.ndarray] | None:
    """Layer indices and per-layer mean f_m (None with fewer than two layers)."""
    by: dict[int, list[float]] = defaultdict(list)
    for m in ms:
        if m.layer is not None:
            by[m.layer].append(m.frob_norm)
    if len(by) < 2:
        return None
    layers = np.array(sorted(by), dtype=np.float64)
    return layers, np.array([np.mean(by[int(k)]) for k in layers])


def _layer_slope(ms: Modules) -> float | None:
    """Least-squares slope of layer-mean f over depth in [0, 1], relative to the overall mean."""
    lm = _layer_means(ms)
    if lm is None or not lm[1].mean() > 0:
        return None
    depth = (lm[0] - lm[0].min()) / (lm[0].max() - lm[0].min())
    return float(np.polyfit(depth, lm[1], 1)[0] / lm[1].mean())


def _layer_cv(ms: Modules) -> float | None:
    lm = _layer_means(ms)
    return float(lm[1].std() / lm[1].mean()) if lm is not None and lm[1].mean() > 0 else None


def _layer_max_share(ms: Modules) -> float | None:
    """Largest share of the total ‖ΔW‖²_F held by one layer (energy concentrated in a block)."""
    energy: dict[int, float] = defaultdict(float)
    for m in ms:
        if m.layer is not None:
            energy[m.layer] += m.frob_norm**2 * m.d_in * m.d_out
    total = sum(energy.values())
    return max(energy.values()) / total if len(energy) >= 2 and total > 0 else None


def _valid_shares(ms: Modules) -> np.ndarray:
    p = module_shares(ms)
    return p[~np.isnan(p[:, 0])] if p.shape[1] else p[:0]


def _entropies(p: np.ndarray) -> np.ndarray:
    """Row-wise H = −Σ p ln p (nats), 0 ln 0 = 0 (gram.spectral_entropy per row)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)
    return -terms.sum(axis=1)


def _top1_share(ms: Modules) -> float | None:
    ps = _valid_shares(ms)
    return float(np.mean(ps[:, 0])) if len(ps) else None


def _entropy(ms: Modules) -> float | None:
    ps = _valid_shares(ms)
    return float(np.mean(_entropies(ps))) if len(ps) else None


def _eff_rank(ms: Modules) -> float | None:
    ps = _valid_shares(ms)
    return float(np.mean(np.exp(_entropies(ps)))) if len(ps) else None


CORE_FEATURES: tuple[Feature, ...] = (
    Feature("global_frobN_std", 1, "population std (ddof=0) of f_m = ‖s·BA‖_F/√(d_out·d_in) over all LoRA "
            "modules; the paper's statistic and the scan score", "up", _std),
    Feature("global_frobN_mean", 1, "mean of f_m over all LoRA modules", "up", _mean),
    Feature("global_frobN_max", 1, "max of f_m over all LoRA modules", "up",
            lambda ms: float(np.max(_f(ms))) if ms else None),
    Feature("global_frobN_cv", 1, "std/mean of f_m (scale-free spread; learning rate cancels)", "both", _cv),
    Feature("global_log_frobN_std", 1, "std of ln f_m (scale-free spread)", "both", _log_std),
    Feature("attn_frobN_mean", 1, "mean f_m over attention projections", "up", _group_mean("attn")),
    Feature("mlp_frobN_mean", 1, "mean f_m over MLP projections", "up", _group_mean("mlp")),
    Feature("attn_mlp_frobN_ratio", 1, "attn_frobN_mean / mlp_frobN_mean (paper: lower when poisoned)",
            "down", _attn_mlp_ratio),
    Feature("proj_{projection}_frobN_mean", 1, "mean f_m per projection name", "up", _proj_means),
    Feature("layer_profile_slope", 1, "slope of per-layer mean f_m over depth in [0,1], / overall mean",
            "both", _layer_slope),
    Feature("layer_profile_cv", 1, "std/mean of the per-layer mean f_m", "up", _layer_cv),
    Feature("layer_max_share", 1, "largest share of total ‖ΔW‖²_F in one layer", "up", _layer_max_share),
    Feature("spectral_top1_share_mean", 1, "mean over modules of σ1²/Σσ² of ΔW", "up", _top1_share),
    Feature("spectral_entropy_mean", 1, "mean over modules of −Σ p ln p, p = σ²/Σσ² (nats)", "down", _entropy),
    Feature("effective_rank_mean", 1, "mean over modules of exp(spectral entropy)", "down", _eff_rank),
)  # fmt: skip

# The registry (feature set "fs-2", constants.FEATURESET_VERSION): fs-1 was CORE_FEATURES alone; fs-2 adds
# the scale-free profile features of features_extra.py, which the combined verdict needs.
FEATURES: tuple[Feature, ...] = CORE_FEATURES + EXTRA_FEATURES


def scored_modules(modules: Modules) -> list[ModuleStat]:
    """The modules the score pools: the linear lora_A/lora_B pairs (the paper pairs keys holding
    ``.lora_A.weight``), so embedding LoRA, whose d_in is a vocabulary size, is left out;
    an adapter with only embedding LoRA is scored over those."""
    return _linear(modules) or list(modules)


def compute_features(modules: Modules, registry: Sequence[Feature] | None = None) -> dict[str, float]:
    """All features of ``registry`` (default: the registered FEATURES) over ``modules`` (pass
    ``scored_modules(all_modules)``); a feature whose inputs are absent is omitted."""
    return compute(modules, FEATURES if registry is None else registry)


def describe(name: str, registry: Sequence[Feature] | None = None) -> Feature | None:
    """Registry entry for a computed feature name (families matched by their pattern)."""
    return lookup(name, FEATURES if registry is None else registry)
