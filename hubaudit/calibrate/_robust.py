"""Robust-scale constants and the feature-matrix helpers shared by the per-feature fit (fit.py), the
combined detector (combined.py) and judge.py."""

from __future__ import annotations

import itertools
import operator
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from hubaudit.models import FeatureBlock, FeatureRow

MAD_TO_SIGMA = 1.4826  # 1/Φ⁻¹(3/4): MAD of a normal sample estimates 0.6745·σ
MIN_LOG_SCALE = 0.01  # σ floor on ln features: 1 % relative change
MIN_REL_SCALE = 0.01  # σ floor on raw features, relative to |median|
MIN_ABS_SCALE = 1e-12  # σ floor on raw features whose median is 0


def feature_matrix(rows: Sequence[Mapping[str, float | None]], names: Sequence[str]) -> np.ndarray:
    """n×K float64 matrix of the features ``names`` of ``rows`` (mappings); None or absent -> NaN.

    A base's re-judgement builds this for 100,000 adapters (benchmarks/bench_store.py): rows of a
    :class:`FeatureBlock` are gathered column-wise from its matrix; for other mappings an
    ``itemgetter`` per row is C-level, and rows missing a feature fall back to ``dict.get``.
    """
    names = list(names)
    n, k = len(rows), len(names)
    if not names:
        return np.empty((n, 0))
    blocks: dict[int, tuple[FeatureBlock, list[int], list[int]]] = {}
    other: list[int] = []
    for pos, r in enumerate(rows):
        if type(r) is FeatureRow:
            entry = blocks.get(id(r.block))
            if entry is None:
                entry = blocks[id(r.block)] = (r.block, [], [])
            entry[1].append(pos)
            entry[2].append(r.i)
        else:
            other.append(pos)
    if not blocks:
        return _from_mappings(rows, names)
    if len(blocks) == 1 and not other:
        ((blk, _, idx),) = blocks.values()  # positions are 0..n-1 in order
        if all(name in blk.index for name in names):  # the common case: two takes, no scatter
            rows_x = blk.x.take(idx, axis=0) if idx != list(range(blk.x.shape[0])) else blk.x
            cols = [blk.index[name] for name in names]
            return rows_x.take(cols, axis=1) if cols != list(range(blk.x.shape[1])) else rows_x.copy()
    out = np.full((n, k), np.nan)
    for blk, positions, idx in blocks.values():
        have = [j for j, name in enumerate(names) if name in blk.index]
        cols = [blk.index[names[j]] for j in have]
        out[np.ix_(positions, have)] = blk.x[np.ix_(idx, cols)]
    if other:
        out[other] = _from_mappings([rows[i] for i in other], names)
    return out


def feature_names(rows: Iterable[Mapping[str, float | None]]) -> set[str]:
    """Every feature name that occurs in ``rows``; rows of a FeatureBlock contribute its names once."""
    out: set[str] = set()
    seen: set[int] = set()
    for r in rows:
        if type(r) is FeatureRow:
            if id(r.block) not in seen:
                seen.add(id(r.block))
                out.update(r.block.names)
        else:
            out.update(r)
    return out


def _from_mappings(rows: Sequence[Mapping[str, float | None]], names: list[str]) -> np.ndarray:
    n, k = len(rows), len(names)
    get = operator.itemgetter(*names)
    one = k == 1
    out = []
    for r in rows:
        try:
            v = get(r)
            out.append((v,) if one else v)
        except KeyError:
            out.append(tuple(r.get(name) for name in names))
    try:  # the common case (every value a float) without numpy's per-object conversion
        return np.fromiter(itertools.chain.from_iterable(out), dtype=np.float64, count=n * k).reshape(n, k)
    except TypeError:  # a None somewhere
        return np.array(out, dtype=np.float64).reshape(n, k)


def column_median_mad(t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(median, median absolute deviation) of every column of an n×K matrix without NaN: the numbers
    of ``np.median(t, 0)`` and ``np.median(|t − median|, 0)``, bit for bit, ~4× faster, from one
    transposed copy (a calibration of 100,000 adapters takes thousands of these, benchmarks/bench_store.py)."""
    return median_mad_rows(np.array(t.T, order="C"))  # a copy: partition works in place


def median_mad_rows(tt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`column_median_mad` of ``tt.T``, overwriting ``tt`` (K×n, C-ordered): a median does not
    depend on the order of the values, so partitioning in place and then taking |tt − loc| in place
    gives the same numbers without another n×K allocation."""
    loc = _row_median_inplace(tt)
    tt -= loc[:, None]
    np.abs(tt, out=tt)
    return loc, _row_median_inplace(tt)


def _row_median_inplace(t: np.ndarray) -> np.ndarray:
    """Median of every row, reordering ``t``. np.median partitions at both middle positions through
    a strided view; one partition at n//2 places the upper middle there and the lower half before
    it, whose maximum is the lower middle; their mean is taken as np.median takes it ((a + b)/2)."""
    n = t.shape[1]
    if n == 0:
        return np.full(t.shape[0], np.nan)
    h = n // 2
    t.partition(h, axis=1)
    hi = t[:, h]
    if n % 2:
        return hi.copy()
    return (t[:, :h].max(axis=1) + hi) / 2.0
