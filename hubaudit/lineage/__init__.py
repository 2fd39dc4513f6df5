"""Lineage: which adapters are copies or derivatives of a known-bad one (pure; numpy only).

An adapter's fingerprint (``hubaudit.models.Fingerprint``) sketches its ΔW = s·B·A, so the dot product
of two fingerprints estimates the cosine similarity of two adapters' weight updates whatever their
LoRA parametrisation (B·R with R⁻¹·A, B·c with A/c, alpha/r, dtype). :func:`similarity_thresholds`
calibrates the similarities that count as a copy or a derivative from the null of independently
trained adapters; :func:`propagate` finds, for every adapter, the most similar known-bad source above
the derivative threshold. Neither touches the store, the network or the terminal.
"""

from __future__ import annotations

from hubaudit.lineage.propagate import Match, propagate, unit_rows, usable_rows
from hubaudit.lineage.thresholds import (
    COPY_FLOOR,
    DEFAULT_COPY,
    DEFAULT_DERIVATIVE,
    DERIVATIVE_FLOOR,
    MAX_NULL_PAIRS,
    MIN_NULL_PAIRS,
    NULL_QUANTILE,
    Thresholds,
    default_thresholds,
    null_similarities,
    similarity_thresholds,
)

__all__ = [
    "COPY_FLOOR", "DEFAULT_COPY", "DEFAULT_DERIVATIVE", "DERIVATIVE_FLOOR", "MAX_NULL_PAIRS", "MIN_NULL_PAIRS",
    "NULL_QUANTILE", "Match", "Thresholds", "default_thresholds", "null_similarities", "propagate",
    "similarity_thresholds", "unit_rows", "usable_rows",
]  # fmt: skip
