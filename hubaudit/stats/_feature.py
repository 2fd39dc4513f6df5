"""The registry entry type, the per-module spectral table and the registry walks (compute, lookup)
shared by features.py and features_extra.py: kept apart so that the registry in features.py can
include features_extra.py's entries and neither module imports the other."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from hubaudit.models import ModuleStat

Direction = Literal["up", "down", "both"]
Modules = Sequence[ModuleStat]


@dataclass(frozen=True)
class Feature:
    """One registered feature (or family: ``name`` holds ``{projection}`` and fn returns a dict)."""

    name: str
    version: int
    description: str
    direction: Direction
    fn: Callable[[Modules], float | dict[str, float] | None]


# The last module tuple's spectral table: four features (and features_extra) read it on every
# scan. One entry holding a reference to the tuple, so the identity check is safe, and only for
# tuples (compute_features passes one), which cannot change in place; a list is computed afresh.
# Threads scanning at once at worst recompute it (the entry is one tuple, read and written whole).
_SHARES_MEMO: tuple[object, np.ndarray] | None = None


def module_shares(ms: Modules) -> np.ndarray:
    """Per module p = σ²/Σσ² of ΔW (rows padded with zeros to the largest rank; NaN rows where
    ΔW = 0), in module order; the vectorised form of gram.spectral_shares over a list."""
    global _SHARES_MEMO
    memo = _SHARES_MEMO
    if memo is not None and memo[0] is ms and isinstance(ms, tuple):
        return memo[1]
    width = max((len(m.singular_values) for m in ms), default=0)
    sq = np.zeros((len(ms), width), dtype=np.float64)
    for i, m in enumerate(ms):
        sq[i, : len(m.singular_values)] = m.singular_values
    np.square(sq, out=sq)
    total = sq.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = np.where(total > 0.0, sq / total, np.nan)
    if isinstance(ms, tuple):
        _SHARES_MEMO = (ms, p)
    return p


def compute(modules: Modules, registry: Sequence[Feature]) -> dict[str, float]:
    """Every feature of ``registry`` over ``modules``; a feature whose inputs are absent is omitted."""
    out: dict[str, float] = {}
    modules = tuple(modules)  # immutable for the whole computation (module_shares memoises on it)
    for feat in registry:
        value = feat.fn(modules)
        if isinstance(value, dict):
            out.update({k: v for k, v in value.items() if math.isfinite(v)})
        elif value is not None and math.isfinite(value):
            out[feat.name] = value
    return out


def lookup(name: str, registry: Sequence[Feature]) -> Feature | None:
    """The entry of ``registry`` that computes feature ``name`` (families matched by their pattern)."""
    for feat in registry:
        if feat.name == name:
            return feat
        if "{" in feat.name:
            head, _, tail = feat.name.partition("{projection}")
            if name.startswith(head) and name.endswith(tail) and len(name) > len(head) + len(tail):
                return feat
    return None
