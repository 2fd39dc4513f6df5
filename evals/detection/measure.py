"""Detection metrics with clean-only, out-of-sample calibration.

Protocol per stratum g (clean set C, working-poisoned set P):
  the clean adapters are split into ``FOLDS`` folds; for each fold, every detector is fitted on the
  other folds' clean adapters only and scores the held-out clean fold and every poisoned adapter.
  A clean adapter's score is its held-out score; poisoned adapter j is scored by the fit of fold
  j mod k only, so it meets a fit exactly as a held-out clean adapter does (a median over fits
  would shrink poisoned scores and bias every two-sided AUROC downwards).
  Poisoned labels are never used to fit anything.

Reported per detector: AUROC of the out-of-sample scores; TPR at 1 % and 5 % FPR read off the
ROC (threshold = the held-out clean quantile; with fewer than 100 clean adapters "1 % FPR" is the
max clean, i.e. FPR 0 of n); and the *calibrated* verdict (threshold fitted on the calibration
folds only, at target FPR 1 %), realised FPR on held-out clean and TPR on poisoned, with Wilson
95 % intervals. Pooled rows pool the stratum-relative scores of all strata.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from hubaudit.calibrate.combined import fit_combined, score_combined

FOLDS = 4
Z95 = 1.959963984540054


def wilson(k: int, n: int) -> tuple[float, float]:
    """Wilson score 95 % interval for k successes of n."""
    if n == 0:
        return (math.nan, math.nan)
    p = k / n
    den = 1 + Z95**2 / n
    mid = (p + Z95**2 / (2 * n)) / den
    half = Z95 * math.sqrt(p * (1 - p) / n + Z95**2 / (4 * n * n)) / den
    return (max(0.0, mid - half), min(1.0, mid + half))


def auroc(pos: np.ndarray, neg: np.ndarray) -> float:
    """P(poisoned score > clean score) + ½ P(tie) (Mann–Whitney)."""
    pos, neg = pos[np.isfinite(pos)], neg[np.isfinite(neg)]
    if not len(pos) or not len(neg):
        return math.nan
    d = pos[:, None] - neg[None, :]
    return float(((d > 0).sum() + 0.5 * (d == 0).sum()) / d.size)


def tpr_at_fpr(pos: np.ndarray, neg: np.ndarray, fpr: float) -> tuple[int, int, float]:
    """(k flagged poisoned, n poisoned, threshold) at the smallest threshold whose held-out clean
    false-positive fraction is <= fpr (flag = score > threshold). NaN scores count as not flagged."""
    neg = np.sort(neg[np.isfinite(neg)])
    allowed = math.floor(fpr * len(neg))  # clean adapters allowed above the threshold
    thr = neg[len(neg) - 1 - allowed] if len(neg) else math.inf
    k = int(np.sum(np.nan_to_num(pos, nan=-np.inf) > thr))
    return k, len(pos), float(thr)


@dataclass
class Scores:
    """Out-of-sample scores of one detector in one stratum, and its calibrated verdicts."""

    clean: np.ndarray  # held-out score per clean adapter
    poisoned: np.ndarray  # score per poisoned adapter (fit of fold j mod k)
    clean_flag: np.ndarray  # calibrated verdict on held-out clean (bool)
    poisoned_flag: np.ndarray  # calibrated verdict on each poisoned adapter (0/1)
    normalized_clean: np.ndarray  # ln(score / calibrated threshold): comparable across strata
    normalized_poisoned: np.ndarray


# A detector: fit(clean rows) -> (score(rows) -> np.ndarray, threshold)
Detector = Callable[[Sequence[dict]], tuple[Callable[[Sequence[dict]], np.ndarray], float]]


def folds(n: int, k: int = FOLDS, seed: int = 0) -> list[np.ndarray]:
    """Held-out index sets (a seeded permutation split into k near-equal parts)."""
    perm = np.random.default_rng(seed).permutation(n)
    return [perm[i::k] for i in range(min(k, n))]


def cross_validate(det: Detector, clean: Sequence[dict], poisoned: Sequence[dict]) -> Scores:
    """The protocol of the module docstring for one detector and one stratum."""
    n = len(clean)
    cs, cf, cn = np.full(n, np.nan), np.zeros(n, bool), np.full(n, np.nan)
    log_norm = getattr(det, "log_norm", True)
    m = len(poisoned)
    p, f, pnorm = np.full(m, np.nan), np.zeros(m), np.full(m, np.nan)
    parts = folds(n)
    for fi, held in enumerate(parts):
        train = [clean[i] for i in range(n) if i not in set(held.tolist())]
        score, thr = det(train)
        s = score([clean[i] for i in held])
        cs[held] = s
        cf[held] = np.nan_to_num(s, nan=-np.inf) > thr
        cn[held] = _norm(s, thr, log_norm)
        mine = [j for j in range(m) if j % len(parts) == fi]  # each poisoned adapter meets one fit, as a held-out clean one
        if mine:
            sp = score([poisoned[j] for j in mine])
            p[mine] = sp
            f[mine] = np.nan_to_num(sp, nan=-np.inf) > thr
            pnorm[mine] = _norm(sp, thr, log_norm)
    return Scores(cs, p, cf, f, cn, pnorm)


def _norm(s: np.ndarray, thr: float, log_norm: bool) -> np.ndarray:
    """Stratum-relative score: ln(s/threshold) for positive statistics, the z itself for z-scores."""
    if not log_norm:
        return s
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log(s / thr) if thr > 0 and math.isfinite(thr) else np.full(len(s), np.nan)


# ---- detectors --------------------------------------------------------------------------------


def paper_detector(feature: str = "global_frobN_std") -> Detector:
    """The paper's rule (arXiv 2605.30189): one-sided up, threshold = max over the calibration clean set."""

    def fit(train: Sequence[dict]):
        vals = np.array([r.get(feature, np.nan) for r in train], dtype=float)
        thr = float(np.nanmax(vals))
        return (lambda rows: np.array([r.get(feature, np.nan) for r in rows], dtype=float)), thr

    return fit


def feature_detector(feature: str, side: str) -> Detector:
    """One feature as a robust z on ln scale (median/MAD of the calibration clean set);
    side "up", "down" or "both" (|z|); threshold from the t quantile at 1 % (as calibrate/fit.py)."""

    def fit(train: Sequence[dict]):
        model = fit_combined(train, [feature], mode="max", target_fpr=0.01, min_n=3)
        if model["status"] != "calibrated":
            return (lambda rows: np.full(len(rows), np.nan)), math.inf
        loc, scale, log = model["loc"][0], model["scale"][0], model["transform"][0] == "log"

        def score(rows):
            v = np.array([r.get(feature, np.nan) for r in rows], dtype=float)
            with np.errstate(divide="ignore", invalid="ignore"):
                z = ((np.log(v) if log else v) - loc) / scale
            return {"up": z, "down": -z, "both": np.abs(z)}[side]

        return score, model["threshold"]  # the leave-one-out |z| bound, for every side

    fit.log_norm = False  # type: ignore[attr-defined]  # pooled on the z scale
    return fit


def combined_detector(names: Sequence[str], mode: str, target_fpr: float = 0.01) -> Detector:
    """hubaudit.calibrate.combined over ``names``."""

    def fit(train: Sequence[dict]):
        model = fit_combined(train, list(names), mode=mode, target_fpr=target_fpr, min_n=3)
        if model["status"] != "calibrated":
            return (lambda rows: np.full(len(rows), np.nan)), math.inf
        return (lambda rows: score_combined(model, rows)), float(model["threshold"])

    return fit


SHIPPED_STRATUM = "eval|r?|cohort"  # every training fold is one stratum; the key only names it


def shipped_detector(method: str = "combined", min_n: int = 6, target_fpr: float = 0.01) -> Detector:
    """The verdict ``hubaudit calibrate --method METHOD`` ships: the threshold set fitted by
    hubaudit.pipeline.calibrate.fit_threshold_set (the function calibrate_base calls) and judged by
    hubaudit.calibrate.judge_many, on the calibration folds' clean adapters as the population.
    ``min_n`` is lowered from the CLI's 30 because a stratum here has 9-18 calibration adapters.

    Score: the combined statistic S with threshold T (breakdown["combined"]) for "combined"; the
    per-feature margin (σ, threshold 0) for "per-feature". flagged = score > threshold is exactly
    the stored verdict (margin > 0).
    """
    from hubaudit.calibrate import judge_many
    from hubaudit.pipeline.calibrate import fit_threshold_set

    def fit(train: Sequence[dict]):
        ts = fit_threshold_set([(SHIPPED_STRATUM, r) for r in train], target_fpr=target_fpr, min_n=min_n, method=method)
        entry = ts["strata"].get(SHIPPED_STRATUM, {})
        if entry.get("status") != "calibrated":
            return (lambda rows: np.full(len(rows), np.nan)), math.inf

        def score(rows):
            out = []
            for flagged, bd in judge_many([(SHIPPED_STRATUM, r) for r in rows], ts):
                if flagged is None:
                    out.append(math.nan)
                elif method == "combined":
                    out.append(bd["combined"]["statistic"])
                else:
                    out.append(bd["margin"])
            return np.array(out, dtype=float)

        return score, (float(entry["combined"]["threshold"]) if method == "combined" else 0.0)

    fit.log_norm = method == "combined"  # type: ignore[attr-defined]  # per-feature margins are already σ units
    return fit


def summarize(s: Scores) -> dict:
    """The metrics of one detector in one stratum (or pooled)."""
    out = {"auroc": auroc(s.poisoned, s.clean), "n_clean": len(s.clean), "n_poisoned": len(s.poisoned)}
    for fpr in (0.01, 0.05):
        k, n, _ = tpr_at_fpr(s.poisoned, s.clean, fpr)
        out[f"tpr@{fpr:g}"] = (k / n if n else math.nan, *wilson(k, n))
    kc, nc = int(s.clean_flag.sum()), len(s.clean_flag)
    kp = float(s.poisoned_flag.sum())
    out["cal_fpr"] = (kc / nc if nc else math.nan, *wilson(kc, nc))
    out["cal_tpr"] = (kp / len(s.poisoned_flag) if len(s.poisoned_flag) else math.nan,
                      *wilson(round(kp), len(s.poisoned_flag)))  # fmt: skip
    return out


def pool(parts: Sequence[Scores]) -> Scores:
    """Stratum-relative (threshold-normalised) scores of several strata as one Scores."""
    cat = lambda xs: np.concatenate(xs) if xs else np.array([])  # noqa: E731
    nc, npn = cat([p.normalized_clean for p in parts]), cat([p.normalized_poisoned for p in parts])
    return Scores(nc, npn, cat([p.clean_flag for p in parts]), cat([p.poisoned_flag for p in parts]), nc, npn)
