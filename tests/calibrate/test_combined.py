"""hubaudit.calibrate.combined: clean-only combined verdict (robust z, shrunk correlation, LOO threshold)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from hubaudit.calibrate.combined import MODES, fit_combined, judge_combined, score_combined

NAMES = ["a", "b", "c", "d"]


def _clean(n: int, seed: int = 0, rho: float = 0.0) -> list[dict[str, float]]:
    """Log-normal features; a and b share a factor with correlation rho (as Gram-pass features do)."""
    rng = np.random.default_rng(seed)
    common = rng.normal(size=n)
    rows = []
    for i in range(n):
        e = rng.normal(size=4)
        a = math.sqrt(rho) * common[i] + math.sqrt(1 - rho) * e[0]
        b = math.sqrt(rho) * common[i] + math.sqrt(1 - rho) * e[1]
        rows.append({"a": math.exp(0.1 * a), "b": math.exp(0.1 * b), "c": math.exp(0.1 * e[2]), "d": 1.0 + 0.1 * e[3]})
    return rows


@pytest.mark.parametrize("mode", MODES)
def test_false_positive_rate_on_fresh_clean_is_near_target(mode):
    model = fit_combined(_clean(60, seed=1), NAMES, target_fpr=0.05, mode=mode)
    assert model["status"] == "calibrated"
    fresh = _clean(4000, seed=2)
    fpr = float(np.mean(score_combined(model, fresh) > model["threshold"]))
    assert 0.005 < fpr < 0.15, fpr  # a 60-row fit estimates the 95 % point; it must not be wildly off


@pytest.mark.parametrize("mode", MODES)
def test_two_sided_flags_a_shift_down_as_well_as_up(mode):
    model = fit_combined(_clean(40), NAMES, target_fpr=0.01, mode=mode)
    base = {"a": 1.0, "b": 1.0, "c": 1.0, "d": 1.0}
    assert judge_combined(model, base)[0] is False
    for factor in (3.0, 1 / 3.0):  # ln-scale shift of ±1.1 = about 11 robust σ
        flagged, bd = judge_combined(model, {**base, "c": factor})
        assert flagged is True and bd["margin"] > 0
        assert bd["top"][0][0] == "c" and (bd["top"][0][1] > 0) == (factor > 1)


def test_mahalanobis_catches_a_broken_correlation_that_marginals_allow():
    """a and b move together on clean adapters; an adapter where they move apart is unusual even
    though each value alone is within 2.5 σ. The diagonal rule misses it, the whitened one does not."""
    rows = _clean(80, seed=3, rho=0.95)
    s = 0.1 * 2.2  # 2.2 σ on the ln scale, opposite signs
    odd = {"a": math.exp(s), "b": math.exp(-s), "c": 1.0, "d": 1.0}
    mahal = fit_combined(rows, NAMES, target_fpr=0.01, mode="mahal")
    diag = fit_combined(rows, NAMES, target_fpr=0.01, mode="diag")
    assert mahal["shrinkage"] < 0.5
    assert judge_combined(mahal, odd)[0] is True
    assert judge_combined(diag, odd)[0] is False


def test_contamination_barely_moves_the_fit():
    clean = _clean(50, seed=4)
    bad = [{**r, "c": r["c"] * 5.0} for r in _clean(5, seed=5)]  # 10 % poisoned in the population
    pure = fit_combined(clean, NAMES, mode="diag")
    mixed = fit_combined(clean + bad, NAMES, mode="diag")
    assert abs(mixed["loc"][2] - pure["loc"][2]) < 0.5 * pure["scale"][2]  # median: bounded influence
    flagged = [judge_combined(mixed, r)[0] for r in bad]
    assert all(flagged)


def test_not_calibrated_below_min_n_and_missing_values():
    model = fit_combined(_clean(4), NAMES, min_n=6)
    assert model["status"] == "not_calibrated" and "min_n" in model["reason"]
    flagged, bd = judge_combined(model, {"a": 1.0})
    assert flagged is None and bd["margin"] is None
    ok = fit_combined(_clean(30), NAMES)
    assert judge_combined(ok, {"zzz": 1.0})[0] is None  # no fitted feature present: never "clean"
    partial = judge_combined(ok, {"c": 50.0})  # the others missing: judged on what is there
    assert partial[0] is True


def test_feature_with_too_few_values_is_left_out():
    rows = _clean(20)
    for r in rows[3:]:
        r.pop("d")
    model = fit_combined(rows, NAMES, min_n=6)
    assert model["features"] == ["a", "b", "c"]


def test_model_is_json_serialisable_and_round_trips():
    rows = _clean(30, seed=6)
    model = fit_combined(rows, NAMES)
    again = json.loads(json.dumps(model))
    probe = _clean(10, seed=7)
    assert np.allclose(score_combined(model, probe), score_combined(again, probe))


def test_identical_clean_adapters_use_the_scale_floor():
    rows = [{"a": 1.0, "b": 2.0} for _ in range(10)]
    model = fit_combined(rows, ["a", "b"], mode="diag")
    assert model["status"] == "calibrated" and math.isfinite(model["threshold"])
    assert judge_combined(model, {"a": 1.0, "b": 2.0})[0] is False
    assert judge_combined(model, {"a": 1.5, "b": 2.0})[0] is True  # 40 % off with a 1 % floor


def test_invalid_arguments():
    with pytest.raises(ValueError):
        fit_combined(_clean(10), NAMES, mode="sum")
    with pytest.raises(ValueError):
        fit_combined(_clean(10), NAMES, target_fpr=1.5)
    with pytest.raises(ValueError):
        fit_combined(_clean(10), NAMES, min_n=2)


def test_strata_fit_pools_small_strata_and_leaves_unknown_uncalibrated():
    """The shipped fit (hubaudit.calibrate.fit, combined verdict): a small stratum is judged by its
    pool's combined detector; a stratum with no pool is not calibrated (never clean)."""
    from hubaudit.calibrate import fit, judge_many

    big = [("lora|r8|q,v", r) for r in _clean(40, seed=8)]
    small = [("lora|r16|q,v", r) for r in _clean(5, seed=9)]
    ts = fit(big + small, {n: "both" for n in NAMES}, 0.01, 20, method="combined")
    assert ts["strata"]["lora|r8|q,v"]["status"] == "calibrated" and "combined" in ts["strata"]["lora|r8|q,v"]
    pooled = ts["strata"]["lora|r16|q,v"]
    assert (pooled["status"], pooled["pool"], pooled["n"]) == ("pooled", "pool:lora|q,v", 5)
    odd = {"a": 1.0, "b": 1.0, "c": 4.0, "d": 1.0}
    verdicts = judge_many([("lora|r8|q,v", odd), ("lora|r16|q,v", odd), ("lora|r4|k", odd)], ts)
    assert [v[0] for v in verdicts] == [True, True, None]
    assert verdicts[1][1]["fit"] == "pool:lora|q,v" and "combined" in verdicts[1][1]


def test_many_features_take_the_blas_route_with_the_same_numbers(monkeypatch):
    """An fs-2 scan of a large adapter has ~270 features: above BLAS_MIN_K the K×K products go to
    BLAS; fit and scores must equal the einsum route's (and the statistic its textbook form)."""
    import hubaudit.calibrate.combined as comb

    rng = np.random.default_rng(7)
    k = comb.BLAS_MIN_K + 36
    names = [f"f{i}" for i in range(k)]
    mix = rng.normal(size=(k, k)) / math.sqrt(k)
    x = np.exp(0.3 * rng.normal(size=(400, k)) @ mix)  # correlated, positive (log-transformed)
    rows = [dict(zip(names, r)) for r in x]
    x[5, 3] = np.nan  # one row with a missing feature takes the per-pattern route
    rows[5].pop("f3")
    blas = fit_combined(rows, names, mode="mahal")
    blas_scores = score_combined(blas, rows)
    monkeypatch.setattr(comb, "BLAS_MIN_K", 10_000)
    plain = fit_combined(rows, names, mode="mahal")
    plain_scores = score_combined(plain, rows)
    assert blas["status"] == plain["status"] == "calibrated"
    assert blas["threshold"] == pytest.approx(plain["threshold"], rel=1e-9)
    np.testing.assert_allclose(blas_scores, plain_scores, rtol=1e-9)
    # D²/K = zᵀ R⁻¹ z / K for a complete row, computed here from the stored model
    z = (np.log(x[0]) - np.asarray(blas["loc"])) / np.asarray(blas["scale"])
    d2 = z @ np.linalg.solve(np.asarray(blas["corr"]), z) / k
    assert blas_scores[0] == pytest.approx(d2, rel=1e-9)
