"""Further features from the same per-module statistics, in the registry's ``Feature`` form.

Scale-free profiles: within a stratum, alpha (α ≠ r multiplies every f_m by the same α/r), the
learning rate and the number of steps move all module norms together, and that shared factor is
most of the clean variance (arXiv 2605.30189). Dividing by the adapter's own mean cancels it and leaves
the *shape* of the update (which projections and which layers carry it), where a trigger that
has to be routed through a few attention heads or layers could show. Also per-projection
spectral concentration (arXiv 2602.15195's statistics are per projection).

Registered since feature set fs-2: ``hubaudit.stats.features.FEATURES`` = CORE_FEATURES +
EXTRA_FEATURES, so ``compute_features`` computes them; :func:`compute_extra` computes these alone.
Families use the
registry's ``{projection}`` placeholder; for ``layer_{projection}_frobN_rel`` it holds the layer
index and for ``module_{projection}_frobN_rel`` "layer.projection", so ``describe``'s prefix/suffix
matching works unchanged.
"""

from __future__ import annotations

import functools
import re
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import numpy as np

from hubaudit.models import ModuleStat
from hubaudit.stats._feature import Feature, Modules, compute, lookup, module_shares


def _f(ms: Modules) -> np.ndarray:
    return np.array([m.frob_norm for m in ms], dtype=np.float64)


def _by(ms: Modules, key: Callable[[ModuleStat], Any]) -> dict[Any, list[ModuleStat]]:
    out: defaultdict[Any, list[ModuleStat]] = defaultdict(list)
    for m in ms:
        k = key(m)
        if k is not None:
            out[k].append(m)
    return dict(sorted(out.items()))


def _proj_rel(ms: Modules) -> dict[str, float]:
    """mean f_m of a projection / mean f_m of the adapter."""
    g = float(np.mean(_f(ms))) if ms else 0.0
    if not g > 0:
        return {}
    return {f"proj_{p}_frobN_rel": float(np.mean(_f(v))) / g for p, v in _by(ms, lambda m: m.projection).items()}


def _layer_rel(ms: Modules) -> dict[str, float]:
    """mean f_m of a layer / mean f_m of the adapter (needs at least two layers)."""
    by = _by(ms, lambda m: m.layer)
    g = float(np.mean(_f(ms))) if ms else 0.0
    if len(by) < 2 or not g > 0:
        return {}
    return {f"layer_{k}_frobN_rel": float(np.mean(_f(v))) / g for k, v in by.items()}


def _module_rel(ms: Modules) -> dict[str, float]:
    """f_m / mean f_m for every module with a layer index (the whole normalised profile)."""
    g = float(np.mean(_f(ms))) if ms else 0.0
    if not g > 0:
        return {}
    return {f"module_{m.layer}.{_path_in_layer(m.name)}_frobN_rel": m.frob_norm / g for m in ms if m.layer is not None}


@functools.lru_cache(maxsize=8192)  # module paths repeat across every adapter of a base
def _path_in_layer(name: str) -> str:
    """The module path after its layer index ("attention.output.dense", "mlp.up_proj"): BERT has
    three modules called ``dense`` per layer, so the projection name alone is not unique."""
    parts = re.split(r"\.\d+\.", name, maxsplit=1)
    return parts[1] if len(parts) == 2 else name.rpartition(".")[2]


def _top1s(ms: Modules) -> np.ndarray:
    """σ1²/Σσ² of each module (NaN where ΔW = 0), in module order."""
    p = module_shares(ms)
    return p[:, 0] if p.shape[1] else np.full(len(ms), np.nan)


def _proj_top1(ms: Modules) -> dict[str, float]:
    top1 = _top1s(ms)
    by: dict[str, list[float]] = {}
    for m, t in zip(ms, top1.tolist()):
        if t == t:  # not NaN
            by.setdefault(m.projection, []).append(t)
    return {f"proj_{p}_top1_share_mean": float(np.mean(v)) for p, v in sorted(by.items())}


def _proj_cv(ms: Modules) -> dict[str, float]:
    """Spread of one projection's f_m over layers, relative to its mean."""
    out = {}
    for p, v in _by(ms, lambda m: m.projection).items():
        f = _f(v)
        if len(f) >= 2 and f.mean() > 0:
            out[f"proj_{p}_frobN_cv"] = float(f.std() / f.mean())
    return out


def _max_rel(ms: Modules) -> float | None:
    f = _f(ms)
    return float(f.max() / f.mean()) if len(f) and f.mean() > 0 else None


def _top1_max(ms: Modules) -> float | None:
    top1 = _top1s(ms)
    top1 = top1[~np.isnan(top1)]
    return float(top1.max()) if len(top1) else None


EXTRA_FEATURES: tuple[Feature, ...] = (
    Feature("proj_{projection}_frobN_rel", 1, "mean f_m of a projection / mean f_m of the adapter (scale-free)",
            "both", _proj_rel),
    Feature("layer_{projection}_frobN_rel", 1, "mean f_m of layer {i} / mean f_m of the adapter (scale-free)",
            "both", _layer_rel),
    Feature("module_{projection}_frobN_rel", 1,
            "f_m / mean f_m of one module ({layer}.{path inside the layer}; scale-free)",
            "both", _module_rel),
    Feature("proj_{projection}_top1_share_mean", 1, "mean σ1²/Σσ² of ΔW over the modules of a projection",
            "both", _proj_top1),
    Feature("proj_{projection}_frobN_cv", 1, "std/mean of f_m over the layers of a projection", "both", _proj_cv),
    Feature("global_frobN_max_rel", 1, "max f_m / mean f_m (one module standing out; scale-free)", "up", _max_rel),
    Feature("spectral_top1_share_max", 1, "max over modules of σ1²/Σσ² of ΔW", "up", _top1_max),
)  # fmt: skip


def compute_extra(modules: Modules) -> dict[str, float]:
    """All EXTRA_FEATURES over ``modules`` (pass ``scored_modules(all_modules)``); absent → omitted."""
    return compute(modules, EXTRA_FEATURES)


def describe_extra(name: str) -> Feature | None:
    """Registry entry of a computed extra feature name (families matched by prefix and suffix)."""
    return lookup(name, EXTRA_FEATURES)
