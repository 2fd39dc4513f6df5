"""STRIP baseline for text (Gao et al., arXiv 1911.10312; OpenBackdoor's STRIPDefender).

Each input is perturbed ``repeat`` times by replacing a ``swap_ratio`` fraction of its words with
high-TF-IDF words from clean held-out sentences; the score is the mean prediction entropy of the
victim over the copies. A trigger dominates the prediction, so triggered inputs keep low entropy.
Threshold: the FRR-quantile of clean held-out entropies (flag iff entropy < threshold).
"""

from __future__ import annotations

import math
import random
from collections import Counter

import numpy as np


def tfidf_pool(texts: list[str], top: int = 200) -> list[str]:
    """The ``top`` words by summed TF-IDF over ``texts`` (the replacement pool)."""
    docs = [t.split() for t in texts]
    df = Counter(w for d in docs for w in set(d))
    score: Counter[str] = Counter()
    for d in docs:
        tf = Counter(d)
        for w, c in tf.items():
            score[w] += (c / len(d)) * math.log(len(docs) / df[w])
    return [w for w, _ in score.most_common(top)]


def perturb(text: str, pool: list[str], swap_ratio: float, rng: random.Random) -> str:
    """Replace ``swap_ratio`` of the word positions (at least one) with pool words."""
    words = text.split()
    k = max(1, int(round(swap_ratio * len(words))))
    for i in rng.sample(range(len(words)), min(k, len(words))):
        words[i] = rng.choice(pool)
    return " ".join(words)


def strip_entropy(predict_proba, texts: list[str], pool: list[str], *, repeat: int = 5, swap_ratio: float = 0.5,
                  seed: int = 0) -> np.ndarray:
    """Mean entropy H = −Σ p log p of the victim over ``repeat`` perturbed copies of each text."""
    rng = random.Random(seed)
    copies = [perturb(t, pool, swap_ratio, rng) for t in texts for _ in range(repeat)]
    p = np.clip(predict_proba(copies), 1e-12, 1.0)
    h = -(p * np.log(p)).sum(axis=1)
    return h.reshape(len(texts), repeat).mean(axis=1)


def strip_threshold(clean_entropy: np.ndarray, frr: float) -> float:
    """Entropy below which a clean held-out input is rejected at rate ≤ ``frr``."""
    return float(np.quantile(np.asarray(clean_entropy), frr, method="lower"))
