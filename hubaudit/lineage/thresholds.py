"""Copy and derivative similarity thresholds, calibrated on the null of independently trained adapters.

The null: the latest fingerprints of *distinct* adapters of one stratum (variant | rank | target
modules) were, with few exceptions, trained independently, so their pairwise similarities are what
"unrelated" looks like on this base (the same target modules and rank make independent adapters
as alike as they get; across strata ΔW live on different modules). A Hub population also holds a
few real copies, so the threshold rests on a high quantile of the null, never on its maximum:

    q          = NULL_QUANTILE (0.99) quantile of the null similarities (numpy's linear interpolation)
    derivative = max(DERIVATIVE_FLOOR, (q + 1) / 2)   halfway from the null's tail to identity
    copy       = max(COPY_FLOOR, derivative)

Up to 1 % of the pairs may be copies (k copies of one adapter are k(k−1)/2 pairs) without moving q;
``null_max`` is reported beside it so a reader sees how far the tail went. A re-uploaded, rescaled,
re-parametrised or re-saved copy scores ≥ 0.99 by construction of the fingerprint, hence the copy
floor; the derivative floor keeps a base whose independent adapters barely overlap (q near 0) from
calling a 0.6 overlap a derivative. Fewer than MIN_NULL_PAIRS pairs: the documented defaults.

Cost is bounded: at most MAX_NULL_PAIRS pairs, every pair of a stratum while the population has no
more, else pairs sampled uniformly within each stratum in proportion to its pair count (seeded, so a
calibration is reproducible): O(MAX_NULL_PAIRS · dim) at 100,000 adapters as at 100.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from hubaudit.lineage.propagate import unit_rows, usable_rows

NULL_QUANTILE = 0.99
COPY_FLOOR = 0.99  # a copy (same ΔW, any parametrisation or dtype) scores at least this
DERIVATIVE_FLOOR = 0.8  # never call less overlap than this a derivative, whatever the null
DEFAULT_COPY = 0.99  # without a usable null (fewer than MIN_NULL_PAIRS pairs)
DEFAULT_DERIVATIVE = 0.9  # conservative without a null: where independent adapters lie is unknown
MIN_NULL_PAIRS = 300  # the 0.99 quantile then tolerates at least 3 copy pairs
MAX_NULL_PAIRS = 200_000
_CHUNK = 4096


@dataclass(frozen=True)
class Thresholds:
    """Similarities (dot products of fingerprints) at or above which an adapter is a copy / derivative.

    ``source``: "calibrated" (from ``null_pairs`` ≥ MIN_NULL_PAIRS pairs of the null) or "default".
    ``null_quantile``: the NULL_QUANTILE quantile of the null (None without pairs or when read back
    from stored params, which keep only the four contract keys).
    """

    copy: float
    derivative: float
    null_pairs: int = 0
    null_max: float | None = None
    source: str = "default"
    null_quantile: float | None = None

    def kind(self, similarity: float) -> str | None:
        """"copy", "derivative" or None for one similarity."""
        if similarity >= self.copy:
            return "copy"
        if similarity >= self.derivative:
            return "derivative"
        return None

    def to_params(self) -> dict[str, Any]:
        """The threshold set's ``params["similarity"]``."""
        return {"copy": self.copy, "derivative": self.derivative, "null_pairs": self.null_pairs,
                "null_max": self.null_max}  # fmt: skip

    @classmethod
    def from_params(cls, params: Mapping[str, Any] | None) -> Thresholds | None:
        """Thresholds stored by a calibration (``params["similarity"]``); None when absent or malformed.

        The floors apply on reading too: a hand-edited threshold set cannot lower them."""
        if not isinstance(params, Mapping):
            return None
        copy, derivative = _unit_float(params.get("copy")), _unit_float(params.get("derivative"))
        pairs = params.get("null_pairs")
        if copy is None or derivative is None or isinstance(pairs, bool) or not isinstance(pairs, int) or pairs < 0:
            return None
        null_max = _unit_float(params.get("null_max"), lo=-1.0)
        derivative = max(DERIVATIVE_FLOOR, derivative)
        copy = max(COPY_FLOOR, copy, derivative)
        return cls(copy, derivative, pairs, null_max, "calibrated" if pairs >= MIN_NULL_PAIRS else "default")


def default_thresholds(null_pairs: int = 0, null_max: float | None = None) -> Thresholds:
    """The documented defaults (no calibration, or too few null pairs)."""
    return Thresholds(DEFAULT_COPY, DEFAULT_DERIVATIVE, null_pairs, null_max, "default")


def _unit_float(value: Any, lo: float = 0.0) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    v = float(value)
    return v if math.isfinite(v) and lo <= v <= 1.0 else None


def _row_dots(matrix: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    out = np.empty(len(i), dtype=np.float64)
    for s in range(0, len(i), _CHUNK):
        a, _ = unit_rows(matrix[i[s:s + _CHUNK]])
        b, _ = unit_rows(matrix[j[s:s + _CHUNK]])
        out[s:s + _CHUNK] = np.einsum("ij,ij->i", a, b)
    return out


def null_similarities(
    matrix: np.ndarray, strata: Sequence[str | None], *, max_pairs: int = MAX_NULL_PAIRS, seed: int = 0
) -> np.ndarray:
    """Similarities of pairs of distinct rows of one stratum (the null), at most about ``max_pairs``.

    ``matrix``: one fingerprint per adapter (its latest; float16 as stored is fine), ``strata[i]`` its
    stratum (None: left out). Zero fingerprints (no ΔW, e.g. an untrained adapter) are left out: they
    resemble nothing."""
    if np.ndim(matrix) != 2 or len(strata) != np.shape(matrix)[0]:
        raise ValueError(f"{len(strata)} strata for fingerprints of shape {np.shape(matrix)}")
    valid = usable_rows(matrix)
    groups: dict[str, list[int]] = {}
    for i, key in enumerate(strata):
        if key is not None and valid[i]:
            groups.setdefault(key, []).append(i)
    pairs = {k: len(v) * (len(v) - 1) // 2 for k, v in groups.items() if len(v) >= 2}
    total = sum(pairs.values())
    rng = np.random.default_rng(seed)
    parts = [np.empty(0)]
    for key in sorted(pairs):
        idx = np.asarray(groups[key], dtype=np.int64)
        budget = pairs[key] if total <= max_pairs else max(1, int(max_pairs * pairs[key] / total))
        if budget >= pairs[key]:  # every pair: the block has at most ~√(2·max_pairs) rows
            block, _ = unit_rows(matrix[idx])
            upper = np.triu_indices(len(idx), 1)
            parts.append((block @ block.T)[upper].astype(np.float64))
        else:  # uniform pairs i ≠ j of the stratum, with replacement
            n = len(idx)
            a = rng.integers(0, n, budget)
            b = rng.integers(0, n - 1, budget)
            b += b >= a
            parts.append(_row_dots(matrix, idx[a], idx[b]))
    return np.concatenate(parts)


def similarity_thresholds(
    matrix: np.ndarray,
    strata: Sequence[str | None],
    *,
    quantile: float = NULL_QUANTILE,
    min_pairs: int = MIN_NULL_PAIRS,
    max_pairs: int = MAX_NULL_PAIRS,
    seed: int = 0,
) -> Thresholds:
    """Copy and derivative thresholds from the null of ``matrix``'s rows (module docstring).

    Returns the defaults (``source`` "default") when fewer than ``min_pairs`` null pairs exist."""
    null = null_similarities(matrix, strata, max_pairs=max_pairs, seed=seed)
    n = int(null.shape[0])
    null_max = float(np.clip(np.max(null), -1.0, 1.0)) if n else None  # rounding can pass 1
    if n < min_pairs:
        return default_thresholds(n, null_max)
    q = float(np.quantile(null, quantile))
    derivative = min(1.0, max(DERIVATIVE_FLOOR, (q + 1.0) / 2.0))
    copy = min(1.0, max(COPY_FLOOR, derivative))
    return Thresholds(copy, derivative, n, null_max, "calibrated", q)
