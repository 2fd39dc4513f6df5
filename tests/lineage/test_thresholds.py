"""Copy/derivative thresholds from a synthetic null of independent adapters (hubaudit.lineage)."""

from __future__ import annotations

import numpy as np
import pytest

from hubaudit.lineage import (
    COPY_FLOOR,
    DEFAULT_COPY,
    DEFAULT_DERIVATIVE,
    DERIVATIVE_FLOOR,
    Thresholds,
    null_similarities,
    similarity_thresholds,
)
from tests.lineage._vectors import at_cosine, stratum, unit


def population(rng, shared=0.85, sizes=(60, 40, 30)):
    blocks = [stratum(rng, n, shared) for n in sizes]
    strata = [f"lora|r{8 * (i + 1)}|q_proj,v_proj" for i, n in enumerate(sizes) for _ in range(n)]
    return np.concatenate(blocks), strata


def test_threshold_rests_on_the_null_quantile_not_on_planted_copies():
    rng = np.random.default_rng(7)
    matrix, strata = population(rng)  # null cosines around 0.85² ≈ 0.72
    clean = similarity_thresholds(matrix, strata)
    # plant 6 near-exact copies of adapters of the first stratum (as a Hub population holds a few)
    copies = np.stack([at_cosine(matrix[i], 0.999, rng) for i in range(6)])
    planted = similarity_thresholds(np.concatenate([matrix, copies]), strata + [strata[0]] * 6)
    assert planted.source == clean.source == "calibrated"
    assert planted.null_max > 0.99  # the copies are in the null ...
    assert clean.null_max < 0.95
    # ... and move neither threshold noticeably (a max-based threshold would sit at ~0.999)
    assert abs(planted.derivative - clean.derivative) < 0.01
    assert abs(planted.copy - clean.copy) < 0.01
    null = null_similarities(matrix, strata)
    q = float(np.quantile(null, 0.99))
    assert clean.null_quantile == pytest.approx(q)
    assert clean.derivative == pytest.approx((q + 1) / 2)  # above the floor here: the null decides
    assert clean.derivative > DERIVATIVE_FLOOR and clean.copy >= max(COPY_FLOOR, clean.derivative)
    assert clean.null_pairs == 60 * 59 // 2 + 40 * 39 // 2 + 30 * 29 // 2


def test_pairs_are_only_within_a_stratum():
    rng = np.random.default_rng(1)
    a, b = stratum(rng, 30, 0.0), stratum(rng, 30, 0.0)
    b[0] = a[0]  # identical fingerprints in two different strata: not a null pair
    t = similarity_thresholds(np.concatenate([a, b]), ["s1"] * 30 + ["s2"] * 30)
    assert t.null_pairs == 2 * 435
    assert t.null_max < 0.9


def test_floors_hold_when_independent_adapters_barely_overlap():
    rng = np.random.default_rng(2)
    matrix, strata = population(rng, shared=0.0)  # null cosines around 0
    t = similarity_thresholds(matrix, strata)
    assert t.source == "calibrated" and t.null_quantile < 0.5
    assert (t.copy, t.derivative) == (COPY_FLOOR, DERIVATIVE_FLOOR)


def test_too_few_pairs_gives_the_defaults():
    rng = np.random.default_rng(3)
    t = similarity_thresholds(stratum(rng, 20, 0.5), ["s"] * 20)  # 190 pairs < MIN_NULL_PAIRS
    assert (t.copy, t.derivative, t.source, t.null_pairs) == (DEFAULT_COPY, DEFAULT_DERIVATIVE, "default", 190)
    empty = similarity_thresholds(np.zeros((0, 16), np.float16), [])
    assert (empty.null_pairs, empty.null_max, empty.source) == (0, None, "default")


def test_zero_fingerprints_and_unknown_strata_stay_out_of_the_null():
    rng = np.random.default_rng(4)
    m = stratum(rng, 30, 0.3)
    m[:5] = 0.0  # untrained adapters (B = 0): zero fingerprints
    assert null_similarities(m, ["s"] * 30).shape[0] == 25 * 24 // 2
    assert null_similarities(m, [None] * 10 + ["s"] * 20).shape[0] == 20 * 19 // 2


def test_large_strata_are_sampled_to_the_pair_budget_and_agree_with_all_pairs():
    rng = np.random.default_rng(5)
    matrix, strata = population(rng, shared=0.6, sizes=(200, 100))
    full = similarity_thresholds(matrix.astype(np.float16), strata)
    sampled = similarity_thresholds(matrix.astype(np.float16), strata, max_pairs=5000)
    assert full.null_pairs == 200 * 199 // 2 + 100 * 99 // 2
    assert 4990 <= sampled.null_pairs <= 5000  # each stratum in proportion to its pairs
    assert abs(sampled.null_quantile - full.null_quantile) < 0.02
    again = similarity_thresholds(matrix.astype(np.float16), strata, max_pairs=5000)
    assert again == sampled  # seeded: a calibration is reproducible


def test_stored_params_round_trip_and_floors_apply_on_reading():
    t = Thresholds(0.995, 0.87, 1234, 0.93, "calibrated", 0.74)
    back = Thresholds.from_params(t.to_params())
    assert (back.copy, back.derivative, back.null_pairs, back.null_max, back.source) == (0.995, 0.87, 1234, 0.93, "calibrated")
    assert set(t.to_params()) == {"copy", "derivative", "null_pairs", "null_max"}
    lowered = Thresholds.from_params({"copy": 0.5, "derivative": 0.1, "null_pairs": 1000, "null_max": None})
    assert (lowered.copy, lowered.derivative) == (COPY_FLOOR, DERIVATIVE_FLOOR)
    assert Thresholds.from_params({"copy": 0.99, "derivative": 0.9, "null_pairs": 3, "null_max": 0.2}).source == "default"
    for bad in (None, [], {"copy": "x", "derivative": 0.9, "null_pairs": 1}, {"copy": 0.99, "derivative": float("nan"),
                "null_pairs": 1}, {"copy": 0.99, "derivative": 0.9, "null_pairs": -1}, {"copy": 2.0, "derivative": 0.9,
                "null_pairs": 1}, {"copy": 0.99, "derivative": 0.9, "null_pairs": True}):  # fmt: skip
        assert Thresholds.from_params(bad) is None, bad


def test_kind_of_a_similarity():
    t = Thresholds(0.99, 0.85)
    assert (t.kind(0.995), t.kind(0.99), t.kind(0.9), t.kind(0.85), t.kind(0.849)) == (
        "copy", "copy", "derivative", "derivative", None)


def test_unit_helper_gives_the_asked_cosine():
    rng = np.random.default_rng(0)
    u = unit(rng)
    assert float(at_cosine(u, 0.93, rng) @ u) == pytest.approx(0.93, abs=1e-6)
