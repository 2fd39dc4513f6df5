"""Propagate verdicts: each adapter's most similar known-bad source above the derivative threshold.

One matrix product sources × population (in population chunks, so memory stays bounded at 100,000
adapters). Who counts as a source is the caller's decision; this module only compares fingerprints.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from hubaudit.lineage.thresholds import Thresholds

# A stored fingerprint is unit-norm or all zeros (every ΔW zero); float16 storage moves the norm by
# ~1e-3. Below this norm a row is a zero fingerprint: it resembles nothing and matches nothing.
MIN_NORM = 0.5
_CHUNK = 4096
_CELLS = 4_000_000


@dataclass(frozen=True)
class Match:
    """Population row's best source: ``source`` (row index into the sources), its similarity, the kind
    ("copy" | "derivative") and the threshold that kind needs."""

    source: int
    similarity: float
    kind: str
    threshold: float


def unit_rows(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(float32 rows re-normalised to unit length, mask of usable rows): zero or non-finite rows are
    set to zero and masked out. Converts the whole input: call it on blocks of a large matrix."""
    m = np.array(matrix, dtype=np.float32)  # a copy: normalised in place
    if m.ndim != 2:
        raise ValueError(f"fingerprints must be a 2-d matrix, not {m.ndim}-d")
    with np.errstate(over="ignore", invalid="ignore"):
        norms = np.linalg.norm(m, axis=1)
    valid = np.isfinite(norms) & (norms >= MIN_NORM)
    m[~valid] = 0.0
    np.divide(m, norms[:, None], out=m, where=valid[:, None])
    return m, valid


def usable_rows(matrix: np.ndarray) -> np.ndarray:
    """:func:`unit_rows`'s mask, computed block by block (memory: one block in float32)."""
    n = int(np.shape(matrix)[0])
    return np.concatenate([unit_rows(matrix[s:s + _CHUNK])[1] for s in range(0, n, _CHUNK)] or [np.zeros(0, bool)])


def propagate(
    population: np.ndarray,
    sources: np.ndarray,
    thresholds: Thresholds,
    *,
    population_ids: Sequence[int] | np.ndarray | None = None,
    source_ids: Sequence[int] | np.ndarray | None = None,
) -> list[Match | None]:
    """For every population row, the most similar source at or above ``thresholds.derivative`` (None: none).

    ``population_ids``/``source_ids`` (e.g. revision ids; -1 for a source that is no population
    member, such as an imported blocklist entry): a source never matches the row with its own id, so
    an adapter is never its own source, while another revision of the same repo can be.
    Similarities are dot products of re-normalised rows; ties go to the lower source index."""
    src, src_ok = unit_rows(sources)
    n, s = int(np.shape(population)[0]), src.shape[0]
    out: list[Match | None] = [None] * n
    if n == 0 or s == 0 or not src_ok.any():
        return out
    if np.ndim(population) != 2 or np.shape(population)[1] != src.shape[1]:
        raise ValueError(f"fingerprint dimensions differ (population {np.shape(population)}, {src.shape[1]} sources)")
    pids = None if population_ids is None else np.asarray(population_ids, dtype=np.int64)
    sids = None if source_ids is None else np.asarray(source_ids, dtype=np.int64)
    if (pids is None) != (sids is None) or (
        pids is not None and sids is not None and (len(pids) != n or len(sids) != s)
    ):
        raise ValueError("population_ids and source_ids go together, one id per row")
    step = max(64, min(_CHUNK, _CELLS // s))  # an (s, step) block of similarities at a time
    for start in range(0, n, step):
        stop = min(n, start + step)
        pop, pop_ok = unit_rows(population[start:stop])
        sims = (src @ pop.T).astype(np.float64)  # (s, chunk)
        sims[~src_ok, :] = -np.inf
        sims[:, ~pop_ok] = -np.inf
        if pids is not None and sids is not None:  # both or neither (checked above)
            sims[sids[:, None] == pids[None, start:stop]] = -np.inf
        best = np.argmax(sims, axis=0)
        top = sims[best, np.arange(stop - start)]
        for k in np.nonzero(top >= thresholds.derivative)[0]:
            sim = float(min(1.0, top[k]))
            kind = thresholds.kind(sim) or "derivative"
            out[start + int(k)] = Match(int(best[k]), sim, kind,
                                        thresholds.copy if kind == "copy" else thresholds.derivative)  # fmt: skip
    return out
