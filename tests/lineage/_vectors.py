"""Fingerprints with controlled cosines: a base unit vector mixed with orthogonal noise."""

from __future__ import annotations

import numpy as np

DIM = 256


def unit(rng: np.random.Generator, dim: int = DIM) -> np.ndarray:
    v = rng.standard_normal(dim)
    return v / np.linalg.norm(v)


def at_cosine(u: np.ndarray, c: float, rng: np.random.Generator) -> np.ndarray:
    """A unit vector whose cosine with unit ``u`` is exactly ``c``."""
    w = rng.standard_normal(u.shape[0])
    w -= (w @ u) * u
    w /= np.linalg.norm(w)
    return (c * u + np.sqrt(max(0.0, 1.0 - c * c)) * w).astype(np.float32)


def stratum(rng: np.random.Generator, n: int, shared: float, dim: int = DIM) -> np.ndarray:
    """n adapters of one stratum whose pairwise cosines scatter around ``shared``² (a common component
    of weight ``shared`` plus independent noise): a null of independently trained adapters."""
    common = unit(rng, dim)
    return np.stack([at_cosine(common, shared, rng) for _ in range(n)])
