"""τ calibration and detection metrics for PSIM (numpy only, no I/O).

PSIM flags x as poisoned iff c(x) = max_k softmax(G(x))_k > τ (strict, as in the authors'
``confidence.py``, arXiv 2402.12168). The authors hard-code τ = 0.7 for K = 2; we calibrate τ to a
target false-rejection rate on held-out clean samples instead, like STRIP's threshold (Gao et al.,
arXiv 1911.10312).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

AUTHORS_TAU = 0.7
#: The version of :meth:`PsimTau.to_dict`'s shape (stored in the database as a ``psim`` calibration).
PSIM_TAU_VERSION = 1


def tau_source(n_clean: int, target_frr: float) -> str:
    """The rule text of a τ fitted by :func:`calibrate_tau`."""
    return f"(1-FRR) order statistic of PSIM max-softmax on {n_clean} clean rows, target FRR {target_frr:g}"


@dataclass(frozen=True)
class PsimTau:
    """τ of one trained PSIM module and what it was fitted on.

    ``psim_sha256`` (the sha256 of the module's weights file) names the PSIM τ belongs to: a τ is a
    quantile of *that* module's confidences and means nothing for another one. ``n_clean`` clean rows
    were screened; at most ⌊target_frr·n_clean⌋ of them have confidence > τ (``frr_at_tau`` measured).
    """

    tau: float
    target_frr: float
    n_clean: int
    psim_sha256: str
    frr_at_tau: float | None = None
    model: str | None = None  # the suspect model the PSIM was trained on (a path or a repo id)
    source: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"psim_tau_version": PSIM_TAU_VERSION, **asdict(self)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PsimTau:
        """The inverse of :meth:`to_dict`; ValueError for a shape it cannot read."""
        try:
            tau = float(d["tau"])
            sha = d["psim_sha256"]
            frr = d.get("frr_at_tau")
            out = cls(tau=tau, target_frr=float(d["target_frr"]), n_clean=int(d["n_clean"]), psim_sha256=sha,
                      frr_at_tau=None if frr is None else float(frr), model=d.get("model"),
                      source=str(d.get("source", "")))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a PSIM calibration ({type(exc).__name__}: {exc})") from None
        if not isinstance(sha, str) or not sha or not math.isfinite(tau):
            raise ValueError("not a PSIM calibration (no PSIM fingerprint, or a non-finite tau)")
        return out


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
