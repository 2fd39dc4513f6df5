"""τ calibration and detection metrics for PSIM (numpy only, no I/O).

PSIM flags x as poisoned iff c(x) = max_k softmax(G(x))_k > τ (strict, as in the authors'
``confidence.py``, paper_psim.md §3). The authors hard-code τ = 0.7 for K = 2; we calibrate τ to a
target false-rejection rate on held-out clean samples instead (paper_psim.md §9, note 1), like
STRIP's threshold (Gao et al., arXiv 1911.10312).
"""

from __future__ import annotations

import numpy as np

AUTHORS_TAU = 0.7


def calibrate_tau(clean_conf, target_frr: float) -> float:
    """The smallest observed confidence τ with FRR = #{c > τ}/n ≤ ``target_frr`` on clean data.

    With k = ⌊FRR·n⌋ rejections allowed, τ = c₍ₙ₋ₖ₎ (the (n−k)-th smallest confidence): at most k
    clean values lie strictly above it, and any lower observed value would reject more than k.
    """
    c = np.asarray(clean_conf, dtype=np.float64)
    if c.size == 0:
        raise ValueError("no calibration samples")
    if not 0.0 <= target_frr < 1.0:
        raise ValueError(f"target FRR must be in [0, 1), got {target_frr}")
    k = int(np.floor(target_frr * c.size + 1e-9))
    return float(np.sort(c)[c.size - 1 - k])


def flag(conf, tau: float) -> np.ndarray:
    """Boolean flags c > τ."""
    return np.asarray(conf, dtype=np.float64) > tau


def rate(flags) -> float:
    """Fraction of True (0.0 for an empty array)."""
    f = np.asarray(flags, dtype=bool)
    return float(f.mean()) if f.size else 0.0


def auroc(pos_scores, neg_scores) -> float:
    """Area under the ROC curve, P(score_pos > score_neg) + ½ P(tie) (Mann-Whitney U / (n₊ n₋))."""
    pos = np.asarray(pos_scores, dtype=np.float64)
    neg = np.asarray(neg_scores, dtype=np.float64)
    if pos.size == 0 or neg.size == 0:
        return float("nan")
    allv = np.concatenate([pos, neg])
    order = np.argsort(allv, kind="mergesort")
    ranks = np.empty(allv.size, dtype=np.float64)
    sorted_v = allv[order]
    # average ranks over ties
    i = 0
    while i < sorted_v.size:
        j = i
        while j + 1 < sorted_v.size and sorted_v[j + 1] == sorted_v[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    u = ranks[: pos.size].sum() - pos.size * (pos.size + 1) / 2.0
    return float(u / (pos.size * neg.size))
