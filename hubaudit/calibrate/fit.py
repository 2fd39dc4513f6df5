"""Fit per-base, per-stratum thresholds from a contaminated population.

Two verdict rules share one fit (``method``; the threshold set records which one decides):

* ``"combined"`` (the default, ``robust-combined-mahal/1``): per stratum, the combined detector of
  combined.py over every calibrated feature (robust z, two-sided, Ledoit–Wolf-shrunk Mahalanobis,
  threshold from out-of-sample statistics), stored as ``strata[s]["combined"]``. Chosen because it is
  the best pooled row of evals/detection/RESULTS.md (mode "mahal", all features) and because a
  backdoor can move several correlated features a little each, which no single-feature bound sees.
  Fitted on the population itself (mostly clean, contaminated): median/MAD marginals, winsorised
  correlation and a median/MAD threshold on the cube root of the statistic bound the influence of
  ~10 % poisoned adapters, and the empirical-quantile floor of combined.py is off (it would sit among them);
  with ≥ min-N references the combined fit is made on the references alone.
* ``"per-feature"`` (``robust-mad-t/1``): flagged when any feature is beyond its own threshold.
  Its per-feature thresholds (below) are fitted under both methods and kept in every verdict's
  breakdown, as is the paper's statistic against its own threshold.

Per-feature thresholds, per stratum s and registered feature f:

1. Transform: x = ln(v) when every value of f in the stratum is > 0 (norms and shares are
   log-normal-ish and their scale moves multiplicatively with rank, alpha and learning rate),
   else x = v.
2. Location and scale that a contaminated population cannot drag: m = median(x),
   σ = max(1.4826 · MAD(x), floor). 1.4826 makes the MAD a consistent σ under normality; the
   median and MAD have a 50 % breakdown point, so ~10 % poisoned adapters move them by a small
   fraction of σ. The floor (``MIN_LOG_SCALE`` = 0.01 in ln units, i.e. 1 %; ``MIN_REL_SCALE``·|m|
   on raw features) keeps a σ=0 stratum (identical adapters) from flagging every change, as
   garak's MINIMUM_STD_DEV does.
3. Per-feature error budget, Bonferroni: α_f = target_fpr / K over the K features fitted, so
   P(any feature fires on a clean adapter) ≤ Σ α_f = target_fpr (the union bound; correlated
   features make it conservative). A two-sided feature ("both") spends α_f/2 per tail.
4. Critical value from Student's t with n−1 degrees of freedom, not the normal: with n near
   min-N the location and scale are themselves estimates and the normal quantile would
   under-cover. Thresholds: hi = m + t·σ (directions up/both), lo = m − t·σ (down/both).
5. Anchoring with known-clean references (optional): when a stratum has ≥ min-N references, m and
   σ come from the references alone (they are trusted, the population is not); otherwise from
   the population. Either way the thresholds are widened to cover every reference
   (hi ≥ max ref, lo ≤ min ref): a known-clean adapter is never flagged.

Large adapters: the per-module profile features (one per LoRA module, feature set fs-2) are fitted
only in strata whose adapters have at most ``MAX_MODULE_FEATURES`` (64) of them. Every adapter of
evals/detection (≤ 36 modules) keeps them; a Qwen2.5-1.5B all-linear LoRA (196 modules) would bring
196 of its 268 features, and there the per-layer and per-projection profile features carry its
shape. Measured on evals/detection's cohort (pooled, 45 poisoned): the combined detector over the
per-module features alone reaches TPR 0.07 at 1 % FPR (AUROC 0.65), over everything but them 0.22
(AUROC 0.75), over all 0.27 (AUROC 0.70): where per-module features are most of K (D²/K averages
over them) they would dilute the rest (per stratum the per-module profile alone is ahead only on
MiniLM r4, AUROC 0.90 vs 0.53; RESULTS.md). It also bounds the K×K correlation stored per stratum and
the cost of calibrating 100,000 large adapters (benchmarks/bench_store.py). The fit records how
many it left out (``per_module_features_left_out``).

Pooling rule for small strata: a stratum with n < min_n (population, references not counted)
borrows the fit of its pool, all strata with the same PEFT variant and target-module set across
ranks, if the pool has ≥ min_n members. The pool is fitted on the raw union, without rank
normalisation: its σ includes the between-rank spread, so pooled thresholds are looser (fewer
false flags, less power), and verdicts say ``source: pool``. A stratum whose pool is also
below min_n is "not calibrated": its adapters get flagged=None, never "clean".

Low confidence: ``--min-n`` may be set below what the target FPR needs. A calibrated fit (stratum or
pool) made on fewer than :func:`n_needed` adapters is stored with ``low_confidence: true`` and its
reason, and every verdict judged by it carries both (judge.py), so that a threshold fitted on three
adapters (Student t with 2 degrees of freedom puts it ~26× further out than the normal quantile at
the tails used here) can never yield a bare pass. The count is the one the fit was made on: the
references when the fit is anchored on them, else the population.
"""

from __future__ import annotations

import functools
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy import stats as sps

from hubaudit.calibrate._robust import (
    MAD_TO_SIGMA,
    MIN_ABS_SCALE,
    MIN_LOG_SCALE,
    MIN_REL_SCALE,
    feature_matrix,
    median_mad_rows,
)
from hubaudit.calibrate.combined import fit_combined_matrix, score_matrix
from hubaudit.models import THRESHOLD_SET_VERSION, THRESHOLD_SET_VERSION_KEY
from hubaudit.vocab import StratumStatus

METHODS = {"combined": "robust-combined-mahal/1", "per-feature": "robust-mad-t/1"}
DEFAULT_METHOD = "combined"
METHOD = METHODS["per-feature"]  # the per-feature fit's id (kept for older callers)
COMBINED_MODE = "mahal"
# Per-module profile features (``module_<layer>.<path>_frobN_rel``, one per LoRA module) enter a
# stratum's fit only while there are at most this many (module docstring, "Large adapters").
MAX_MODULE_FEATURES = 64
PER_MODULE_PREFIX = "module_"
DIRECTIONS = ("up", "down", "both")
# Adapters beyond which a fit is confident whatever its target FPR: at n = 30 the Student-t critical
# value at the Bonferroni tails used (≈1e-4 two-sided) is ~16 % beyond the normal one, so estimating
# location and scale no longer dominates the threshold; below, the order-statistic rule decides.
CONFIDENT_N = 30

Member = tuple[str, Mapping[str, float | None]]  # (stratum key, features)
__all__ = ["CONFIDENT_N", "DEFAULT_METHOD", "METHODS", "MAD_TO_SIGMA", "MIN_ABS_SCALE", "MIN_LOG_SCALE",
           "MIN_REL_SCALE", "fit", "low_confidence", "n_needed", "parse_stratum", "pool_key"]  # fmt: skip


def parse_stratum(key: str) -> tuple[str, str, str]:
    """``"lora|r16|k_proj,q_proj"`` -> (variant, "r16", modules); see models.stratum_key."""
    parts = key.split("|", 2)
    if len(parts) != 3:
        return key, "r?", ""
    return parts[0], parts[1], parts[2]


def n_needed(target_fpr: float) -> int:
    """Adapters a fit needs before its threshold is trusted at ``target_fpr`` (α).

    The order-statistic rule n ≥ ⌈1/α⌉ − 1: a new clean adapter exceeds the largest of n clean ones
    with probability 1/(n+1), so fewer than 1/α − 1 adapters cannot even in principle show that the
    threshold sits in the α tail rather than inside the population. Capped at CONFIDENT_N, where the
    parametric fit's t quantile already carries the estimation error (5 % → 19, 1 % → 30).
    """
    return max(2, min(math.ceil(1.0 / target_fpr - 1e-9) - 1, CONFIDENT_N))


def _confidence(n_fit: int, target_fpr: float) -> dict[str, Any]:
    need = n_needed(target_fpr)
    low = n_fit < need
    reason = f"fitted on {n_fit} adapters; {need} needed for {target_fpr * 100:g} % FPR" if low else None
    return {"low_confidence": low, "low_confidence_reason": reason, "n_needed": need}


def low_confidence(entry: Mapping[str, Any], params: Mapping[str, Any] | None = None) -> str | None:
    """Why a calibrated fit (a threshold set's ``strata`` entry) is low-confidence, or None.

    Threshold sets stored before fits carried the mark are judged by the same rule from their
    ``n``/``n_ref`` and ``params["target_fpr"]``.
    """
    if entry.get("status") != StratumStatus.CALIBRATED:
        return None
    if "low_confidence" in entry:
        return (entry.get("low_confidence_reason") or "too few adapters") if entry["low_confidence"] else None
    fpr = (params or {}).get("target_fpr")
    if not fpr:
        return None
    n_fit = entry.get("n_ref") if entry.get("source") == "reference" else entry.get("n")
    return _confidence(int(n_fit or 0), float(fpr))["low_confidence_reason"]


def pool_key(stratum: str) -> str:
    """The pool a stratum belongs to: same variant and target-module set, any rank."""
    variant, _, modules = parse_stratum(stratum)
    return f"pool:{variant}|{modules}"


def fit(
    population: Sequence[Member],
    directions: Mapping[str, str],
    target_fpr: float = 0.01,
    min_n: int = 30,
    references: Sequence[Member] = (),
    method: str = DEFAULT_METHOD,
) -> dict[str, Any]:
    """Fit a threshold set (see module docstring for the methods).

    ``population`` and ``references`` are (stratum, {feature: value}) pairs; ``directions`` maps
    each feature to calibrate to "up", "down" or "both" (features not in it are ignored).
    ``method``: "combined" (default) or "per-feature": which rule judge.py uses for ``flagged``.
    Returns ``{"method", "n", "params", "strata"}``; ``strata`` maps every stratum seen (and
    every pool, under ``"pool:<variant>|<modules>"``) to its fit or to a "not_calibrated" entry.
    ``params["verdict"]`` is the method's short name. This is the threshold set's stored form, computed
    as dicts; :meth:`hubaudit.models.ThresholdSet.from_dict` gives its typed view.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {sorted(METHODS)}")
    if not 0.0 < target_fpr < 1.0:
        raise ValueError(f"target_fpr must be in (0, 1), got {target_fpr}")
    if min_n < 2:
        raise ValueError(f"min_n must be at least 2, got {min_n}")
    bad = {d for d in directions.values() if d not in DIRECTIONS}
    if bad:
        raise ValueError(f"unknown feature directions {sorted(bad)}; expected one of {DIRECTIONS}")
    names = sorted(directions)
    pop, refs = _by_stratum(population), _by_stratum(references)
    pools: dict[str, list[str]] = defaultdict(list)
    for s in sorted(set(pop) | set(refs)):  # a fixed member order: the pooled matrix is the same every run
        pools[pool_key(s)].append(s)

    # one pass over the rows per stratum: an n×K matrix (NaN = missing), reused by the pools
    pop_x = {s: feature_matrix(rows, names) for s, rows in pop.items()}
    ref_x = {s: feature_matrix(rows, names) for s, rows in refs.items()}
    empty = np.empty((0, len(names)))
    combined = method == "combined"
    strata: dict[str, Any] = {}
    for s in sorted(set(pop) | set(refs)):
        strata[s] = _fit_one(pop_x.get(s, empty), ref_x.get(s, empty), names, directions, target_fpr, min_n,
                             source="stratum", combined=combined)  # fmt: skip
    for pk, members in sorted(pools.items()):
        if len(members) == 1 and strata[members[0]]["status"] == StratumStatus.CALIBRATED:
            strata[pk] = dict(strata[members[0]], source="pool")  # a one-stratum pool is that stratum's fit
        else:
            # also fitted when every member has its own fit: an adapter of an unseen rank (hubaudit check,
            # a crawl after calibration) is judged by its pool (judge.resolve)
            strata[pk] = _fit_one(np.concatenate([pop_x.get(s, empty) for s in members]),
                                  np.concatenate([ref_x.get(s, empty) for s in members]), names, directions,
                                  target_fpr, min_n, source="pool", combined=combined)  # fmt: skip
        strata[pk]["members"] = sorted(members)
    for s in pop.keys() | refs.keys():  # small strata borrow their pool's fit (module docstring)
        if (strata[s]["status"] != StratumStatus.CALIBRATED
                and strata[pool_key(s)]["status"] == StratumStatus.CALIBRATED):
            strata[s] = {"status": StratumStatus.POOLED, "pool": pool_key(s), "n": strata[s]["n"],
                         "n_ref": strata[s]["n_ref"]}
    return {
        "method": METHODS[method],
        "n": len(population),
        "params": {
            "verdict": method,
            "combined_mode": COMBINED_MODE if combined else None,
            "target_fpr": target_fpr,
            "min_n": min_n,
            "directions": {k: directions[k] for k in names},
            "n_references": len(references),
            "mad_to_sigma": MAD_TO_SIGMA,
            "min_log_scale": MIN_LOG_SCALE,
            "min_rel_scale": MIN_REL_SCALE,
            "max_module_features": MAX_MODULE_FEATURES,
            THRESHOLD_SET_VERSION_KEY: THRESHOLD_SET_VERSION,
        },
        "strata": strata,
    }


def _by_stratum(rows: Sequence[Member]) -> dict[str, list[Mapping[str, float | None]]]:
    out: dict[str, list[Mapping[str, float | None]]] = defaultdict(list)
    for stratum, feats in rows:
        out[stratum].append(feats)
    return dict(out)


def _fit_one(
    pop: np.ndarray,
    refs: np.ndarray,
    names: Sequence[str],
    directions: Mapping[str, str],
    target_fpr: float,
    min_n: int,
    *,
    source: str,
    combined: bool,
) -> dict[str, Any]:
    n, n_ref = int(pop.shape[0]), int(refs.shape[0])
    use_refs = n_ref >= min_n  # enough trusted adapters: location/scale from them alone
    if n < min_n and not use_refs:
        return {"status": StratumStatus.NOT_CALIBRATED, "source": source, "n": n, "n_ref": n_ref,
                "reason": f"n={n} < min_n={min_n}"}  # fmt: skip
    base_x = refs if use_refs else pop
    columns = {}
    for j, name in enumerate(names):
        col = base_x[:, j]
        col = col[np.isfinite(col)]
        if col.size >= min_n:
            r = refs[:, j]
            columns[name] = (col, r[np.isfinite(r)])
    left_out = [name for name in columns if name.startswith(PER_MODULE_PREFIX)]
    if len(left_out) <= MAX_MODULE_FEATURES:
        left_out = []
    for name in left_out:  # the profile of a large adapter (module docstring)
        del columns[name]
    k = len(columns)
    if k == 0:
        return {"status": StratumStatus.NOT_CALIBRATED, "source": source, "n": n, "n_ref": n_ref,
                "reason": "no feature has min_n finite values"}  # fmt: skip
    alpha = target_fpr / k  # Bonferroni (module docstring, step 3)
    pre = _complete_columns(base_x, refs, names, columns)
    fitted = {name: _fit_feature(b, r, directions[name], alpha, pre.get(name)) for name, (b, r) in columns.items()}
    out = {"status": StratumStatus.CALIBRATED, "source": "reference" if use_refs else source, "n": n, "n_ref": n_ref,
           "alpha_per_feature": alpha, "features": fitted,
           "per_module_features_left_out": len(left_out),
           **_confidence(n_ref if use_refs else n, target_fpr)}  # fmt: skip
    if combined:
        out["combined"] = _fit_combined(base_x, refs, names, list(columns), target_fpr, min_n, trusted=use_refs)
    return out


def _fit_combined(x: np.ndarray, refs: np.ndarray, names: Sequence[str], used: Sequence[str], target_fpr: float,
                  min_n: int, *, trusted: bool) -> dict[str, Any]:  # fmt: skip
    """The combined detector (combined.py) over the per-feature fit's features; a known-clean
    reference is never beyond its threshold (step 5, as for the per-feature thresholds)."""
    cols = [names.index(u) for u in used]
    model = fit_combined_matrix(x[:, cols], list(used), target_fpr=target_fpr, mode=COMBINED_MODE,
                                min_n=max(min_n, 3), empirical_floor=trusted)  # fmt: skip
    model["anchored"] = False
    if model["status"] == StratumStatus.CALIBRATED and refs.shape[0]:
        stat, _ = score_matrix(model, refs[:, [names.index(u) for u in model["features"]]])
        top = float(np.nanmax(stat)) if np.isfinite(stat).any() else -math.inf
        if top > model["threshold"]:
            model["threshold"], model["anchored"] = top, True
    return model


def _complete_columns(
    base_x: np.ndarray, refs: np.ndarray, names: Sequence[str], columns: Mapping[str, tuple[np.ndarray, np.ndarray]],
) -> dict[str, tuple[bool, float, float]]:  # fmt: skip
    """(log transform, median, MAD) of every fitted feature with no missing value in ``base_x``, all
    columns in one vectorised pass over one transposed copy: the numbers _fit_feature would compute
    one column at a time (thousands of columns in a 100,000-adapter calibration, benchmarks/bench_store.py)."""
    j_all = [j for j, name in enumerate(names) if name in columns]
    if not j_all or base_x.shape[0] == 0:
        return {}
    x = base_x if j_all == list(range(base_x.shape[1])) else base_x[:, j_all]
    full = np.isfinite(x).all(axis=0)
    if not full.any():
        return {}
    js = [j for j, f in zip(j_all, full) if f]
    if not full.all():
        x = x[:, full]
    ref_pos = np.array([bool(np.all(columns[names[j]][1] > 0)) for j in js])
    log = np.all(x > 0, axis=0) & ref_pos
    tt = np.array(x.T, order="C")  # K×n scratch
    np.log(tt, out=tt, where=log[:, None])  # every value of a log column is > 0 here
    loc, mad = median_mad_rows(tt)
    return {names[j]: (bool(lg), float(m), float(d)) for j, lg, m, d in zip(js, log, loc, mad)}


def _fit_feature(base: np.ndarray, ref: np.ndarray, direction: str, alpha: float,
                 pre: tuple[bool, float, float] | None = None) -> dict[str, Any]:  # fmt: skip
    if pre is None:
        both = np.concatenate([base, ref])
        log = bool(both.size and np.all(both > 0))
        x = np.log(base) if log else base
        m = float(np.median(x))
        mad = float(np.median(np.abs(x - m)))
    else:  # computed for all complete columns at once (_complete_columns)
        log, m, mad = pre
        x = base
    floor = MIN_LOG_SCALE if log else max(MIN_REL_SCALE * abs(m), MIN_ABS_SCALE)
    scale = max(MAD_TO_SIGMA * mad, floor)
    tail = alpha / 2 if direction == "both" else alpha
    crit = _t_isf(tail, max(x.size - 1, 1))
    lo = m - crit * scale if direction in ("down", "both") else None
    hi = m + crit * scale if direction in ("up", "both") else None
    anchored = False
    if ref.size:  # a known-clean reference is never beyond a threshold (module docstring, step 5)
        r = np.log(ref) if log else ref
        if hi is not None and r.max() > hi:
            hi, anchored = float(r.max()), True
        if lo is not None and r.min() < lo:
            lo, anchored = float(r.min()), True
    return {
        "direction": direction,
        "transform": "log" if log else "identity",
        "loc": m,
        "scale": scale,
        "mad_scale": MAD_TO_SIGMA * mad,
        "crit": crit,
        "lo": lo,
        "hi": hi,
        "anchored": anchored,
        "n": int(x.size),
        # the same thresholds in feature units, for people reading a breakdown
        "threshold_low": None if lo is None else _inverse(lo, log),
        "threshold_high": None if hi is None else _inverse(hi, log),
    }


@functools.lru_cache(maxsize=256)
def _t_isf(tail: float, df: int) -> float:
    """Student t upper quantile; every complete feature of a stratum asks for the same one."""
    return float(sps.t.isf(tail, df=df))


def _inverse(x: float, log: bool) -> float:
    if not log:
        return x
    return math.exp(x) if x < 700 else math.inf
