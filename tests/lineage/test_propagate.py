"""Verdict propagation: the most similar known-bad source above the derivative threshold (hubaudit.lineage)."""

from __future__ import annotations

import numpy as np
import pytest

from hubaudit.lineage import Thresholds, propagate
from tests.lineage._vectors import at_cosine, unit

THR = Thresholds(copy=0.99, derivative=0.85, null_pairs=1000, source="calibrated")


def test_copies_and_derivatives_match_their_source_independent_adapters_do_not():
    rng = np.random.default_rng(0)
    bad = np.stack([unit(rng), unit(rng)])
    pop = np.stack([
        at_cosine(bad[1], 0.998, rng),  # a re-saved copy of source 1
        at_cosine(bad[0], 0.92, rng),  # fine-tuned further from source 0
        at_cosine(bad[0], 0.80, rng),  # below the derivative threshold
        unit(rng),  # independent
        np.zeros(bad.shape[1], np.float32),  # an untrained adapter (zero fingerprint)
    ])
    m = propagate(pop.astype(np.float16), bad, THR)
    assert (m[0].source, m[0].kind, m[0].threshold) == (1, "copy", 0.99)
    assert m[0].similarity == pytest.approx(0.998, abs=2e-3)
    assert (m[1].source, m[1].kind, m[1].threshold) == (0, "derivative", 0.85)
    assert m[1].similarity == pytest.approx(0.92, abs=2e-3)
    assert m[2:] == [None, None, None]


def test_the_most_similar_source_wins():
    rng = np.random.default_rng(1)
    base = unit(rng)
    a, b = at_cosine(base, 0.95, rng), at_cosine(base, 0.99, rng)  # two sources near one adapter
    (m,) = propagate(base[None, :], np.stack([a, b]), THR)
    assert m.source == 1 and m.similarity == pytest.approx(0.99, abs=1e-5)


def test_an_adapter_is_never_its_own_source_but_another_revision_of_its_repo_can_be():
    rng = np.random.default_rng(2)
    confirmed = unit(rng)
    newer = at_cosine(confirmed, 0.95, rng)  # the repo's next revision, trained a little further
    pop = np.stack([confirmed, newer])
    m = propagate(pop, confirmed[None, :], THR, population_ids=[10, 11], source_ids=[10])
    assert m[0] is None  # revision 10 is the source itself
    assert m[1] is not None and m[1].kind == "derivative"
    # a blocklist entry (id -1) matches every revision, the one it names included
    m = propagate(pop, confirmed[None, :], THR, population_ids=[10, 11], source_ids=[-1])
    assert m[0].kind == "copy" and m[1].kind == "derivative"


def test_excluding_the_best_source_falls_back_to_the_next():
    rng = np.random.default_rng(3)
    x = unit(rng)
    other = at_cosine(x, 0.9, rng)
    (m,) = propagate(x[None, :], np.stack([x, other]), THR, population_ids=[5], source_ids=[5, 6])
    assert m.source == 1 and m.kind == "derivative"


def test_many_population_chunks_give_the_same_answer_as_one():
    rng = np.random.default_rng(4)
    src = np.stack([unit(rng, 64) for _ in range(3)])
    pop = np.stack([at_cosine(src[i % 3], 0.9 if i % 7 == 0 else 0.2, rng) for i in range(10_000)])
    m = propagate(pop, src, THR)
    hits = [i for i, x in enumerate(m) if x is not None]
    assert hits == list(range(0, 10_000, 7))
    assert all(m[i].source == i % 3 for i in hits)


def test_shapes_are_checked():
    with pytest.raises(ValueError):
        propagate(np.ones((2, 8)), np.ones((1, 4)), THR)
    with pytest.raises(ValueError):
        propagate(np.ones((2, 8)), np.ones((1, 8)), THR, population_ids=[1, 2])
    assert propagate(np.zeros((0, 8)), np.ones((1, 8)), THR) == []
    assert propagate(np.ones((2, 8)), np.zeros((0, 8)), THR) == [None, None]
