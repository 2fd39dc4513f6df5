"""Pure calibration: robust to contamination, two-sided, min-N, pooling, σ floor, references, FPR."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hubaudit.calibrate import fit, judge, pool_key

S = "lora|r8|k_proj,q_proj,v_proj"


def lognormal_pop(rng, n, mu=0.0, sigma=0.2, stratum=S, name="f"):
    return [(stratum, {name: float(math.exp(rng.normal(mu, sigma)))}) for _ in range(n)]


def test_ten_percent_poisoned_do_not_drag_the_threshold_over_them():
    rng = np.random.default_rng(1)
    clean = lognormal_pop(rng, 180)
    poisoned = [(S, {"f": float(math.exp(rng.normal(1.5, 0.05)))}) for _ in range(20)]  # ~4.5× larger
    mixed = fit(clean + poisoned, {"f": "up"}, target_fpr=0.01, min_n=30)
    pure = fit(clean, {"f": "up"}, target_fpr=0.01, min_n=30)
    hi_mixed = mixed["strata"][S]["features"]["f"]["hi"]
    hi_pure = pure["strata"][S]["features"]["f"]["hi"]
    assert hi_mixed < min(math.log(p[1]["f"]) for p in poisoned)
    assert all(judge(p, S, mixed)[0] is True for _, p in poisoned)
    # the shift caused by contamination is far smaller than the clean/poisoned gap
    assert abs(hi_mixed - hi_pure) < 0.25 * (1.5 - hi_pure)
    # a mean/std fit (what robustness avoids) would have been dragged over them
    x = np.log([v["f"] for _, v in clean + poisoned])
    assert x.mean() + 2.6 * x.std() > 1.5 - 0.15


def test_empirical_false_positive_rate_is_near_the_target():
    rng = np.random.default_rng(2)
    names = {f"f{i}": d for i, d in enumerate(["up", "down", "both", "up"])}
    pop = [(S, {k: float(math.exp(rng.normal(0, 0.3))) for k in names}) for _ in range(400)]
    ts = fit(pop, names, target_fpr=0.02, min_n=30, method="per-feature")
    fresh = [{k: float(math.exp(rng.normal(0, 0.3))) for k in names} for _ in range(20000)]
    fpr = np.mean([judge(f, S, ts)[0] for f in fresh])
    assert 0.002 < fpr < 0.04  # Bonferroni over 4 features: at most ~target, not wildly below


def test_two_sided_features_fire_on_both_tails_one_sided_only_on_theirs():
    rng = np.random.default_rng(3)
    pop = [(S, {"up": float(math.exp(rng.normal(0, 0.1))), "both": float(math.exp(rng.normal(0, 0.1))),
                "down": float(math.exp(rng.normal(0, 0.1)))}) for _ in range(100)]  # fmt: skip
    ts = fit(pop, {"up": "up", "both": "both", "down": "down"}, 0.01, 30, method="per-feature")
    mid = {"up": 1.0, "both": 1.0, "down": 1.0}
    assert judge(mid, S, ts)[0] is False
    for name, value, fires in [("up", 3.0, True), ("up", 0.3, False), ("down", 0.3, True), ("down", 3.0, False),
                               ("both", 3.0, True), ("both", 0.3, True)]:  # fmt: skip
        flagged, bd = judge(mid | {name: value}, S, ts)
        assert flagged is fires, (name, value)
        assert (name in bd["features"]) is fires and any(t[0] == name for t in bd["top"])
        if fires:
            assert bd["features"][name]["fired"] and bd["features"][name]["threshold"] > 0
        assert (bd["margin"] > 0) is fires
        if fires:
            assert bd["reasons"][0].startswith(f"{name}=")
    f = ts["strata"][S]["features"]
    assert f["up"]["lo"] is None and f["down"]["hi"] is None and None not in (f["both"]["lo"], f["both"]["hi"])


def test_below_min_n_is_not_calibrated_never_clean():
    rng = np.random.default_rng(4)
    ts = fit(lognormal_pop(rng, 10), {"f": "up"}, 0.01, min_n=30)
    assert ts["strata"][S]["status"] == "not_calibrated"
    flagged, bd = judge({"f": 1.0}, S, ts)
    assert flagged is None and bd["margin"] is None and "not calibrated" in bd["reasons"][0]
    flagged, bd = judge({"f": 1.0}, "lora|r2|other", ts)  # a stratum never seen
    assert flagged is None and "not in the calibration population" in bd["reasons"][0]


def test_small_strata_borrow_their_pool_across_ranks():
    rng = np.random.default_rng(5)
    big = lognormal_pop(rng, 40, stratum="lora|r16|q_proj,v_proj")
    small = lognormal_pop(rng, 5, stratum="lora|r4|q_proj,v_proj")
    other = lognormal_pop(rng, 5, stratum="dora|r4|q_proj,v_proj")
    ts = fit(big + small + other, {"f": "up"}, 0.01, min_n=30)
    assert ts["strata"]["lora|r16|q_proj,v_proj"]["status"] == "calibrated"
    assert ts["strata"]["lora|r4|q_proj,v_proj"] == {"status": "pooled", "pool": "pool:lora|q_proj,v_proj", "n": 5, "n_ref": 0}
    assert ts["strata"][pool_key("lora|r4|q_proj,v_proj")]["n"] == 45
    flagged, bd = judge({"f": 50.0}, "lora|r4|q_proj,v_proj", ts)
    assert flagged is True and bd["source"] == "pool" and bd["fit"] == "pool:lora|q_proj,v_proj"
    assert judge({"f": 1.0}, "lora|r8|q_proj,v_proj", ts)[1]["source"] == "pool"  # unseen rank, same pool
    assert judge({"f": 1.0}, "dora|r4|q_proj,v_proj", ts)[0] is None  # its pool is too small


def test_zero_spread_stratum_uses_the_scale_floor():
    ts = fit([(S, {"f": 0.5, "g": 0.0})] * 50, {"f": "up", "g": "both"}, 0.01, 30, method="per-feature")
    feat = ts["strata"][S]["features"]
    assert feat["f"]["scale"] == pytest.approx(0.01) and feat["g"]["transform"] == "identity"
    assert judge({"f": 0.5 * 1.005, "g": 0.0}, S, ts)[0] is False  # 0.5 % is noise, not a finding
    assert judge({"f": 0.5 * 1.5, "g": 0.0}, S, ts)[0] is True
    assert judge({"f": 0.5, "g": 1e-3}, S, ts)[0] is True


def test_reference_anchoring():
    rng = np.random.default_rng(6)
    pop = lognormal_pop(rng, 60, sigma=0.1)
    refs = [(S, {"f": math.exp(0.6)}), (S, {"f": math.exp(0.1)})]  # a known-clean adapter beyond the robust threshold
    plain = fit(pop, {"f": "up"}, 0.01, 30)
    anchored = fit(pop, {"f": "up"}, 0.01, 30, references=refs)
    assert judge(refs[0][1], S, plain)[0] is True
    assert judge(refs[0][1], S, anchored)[0] is False  # never flag a known-clean reference
    f = anchored["strata"][S]["features"]["f"]
    assert f["anchored"] and f["hi"] == pytest.approx(0.6)
    # enough references: location/scale from the trusted sample, not the (possibly poisoned) population
    shifted = [(S, {"f": float(math.exp(rng.normal(1.0, 0.1)))}) for _ in range(60)]
    trusted = lognormal_pop(rng, 30, sigma=0.1)
    ts = fit(shifted, {"f": "up"}, 0.01, 30, references=trusted)
    assert ts["strata"][S]["source"] == "reference"
    assert np.mean([judge(v, S, ts)[0] for _, v in shifted]) > 0.9


def test_missing_and_non_finite_features_are_skipped_not_fired():
    rng = np.random.default_rng(7)
    pop = [(S, {"f": float(math.exp(rng.normal(0, 0.1))), "g": float(rng.normal())}) for _ in range(50)]
    ts = fit(pop, {"f": "up", "g": "both"}, 0.01, 30)
    flagged, bd = judge({"f": None, "g": 0.0}, S, ts)
    assert flagged is False and bd["features"]["f"]["missing"] is True
    flagged, bd = judge({}, S, ts)
    assert flagged is None and "no calibrated feature" in bd["reasons"][0]


def test_invalid_arguments():
    with pytest.raises(ValueError):
        fit([], {"f": "sideways"})
    with pytest.raises(ValueError):
        fit([], {"f": "up"}, target_fpr=0)
    with pytest.raises(ValueError):
        fit([], {"f": "up"}, min_n=1)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(1e-6, 1e6), min_size=30, max_size=60), st.floats(1e-6, 1e7), st.sampled_from(["up", "down", "both"]))
def test_margin_positive_exactly_when_flagged(values, probe, direction):
    ts = fit([(S, {"f": v}) for v in values], {"f": direction}, 0.01, 30, method="per-feature")
    flagged, bd = judge({"f": probe}, S, ts)
    assert flagged is (bd["margin"] > 0)
    assert flagged is any(f["fired"] for f in bd["features"].values())
    assert [t[0] for t in bd["top"]] == ["f"]


def test_judge_many_equals_judge_one_by_one():
    from hubaudit.calibrate import judge_many

    rng = np.random.default_rng(8)
    names = {"a": "up", "b": "both", "c": "down"}
    pop = [(s, {k: float(math.exp(rng.normal(0, 0.2))) for k in names}) for s in ("lora|r8|q", "lora|r4|q") for _ in range(35)]
    ts = fit(pop, names, 0.01, 30)
    items = [(s, {k: float(math.exp(rng.normal(0, 0.6))) for k in names}) for s in ("lora|r8|q", "lora|r2|q", "dora|r2|x")
             for _ in range(30)]  # fmt: skip
    items.append(("lora|r8|q", {"a": None, "b": -1.0}))
    assert judge_many(items, ts) == [judge(f, s, ts) for s, f in items]


def test_a_pooled_fit_does_not_depend_on_the_hash_seed():
    # the pool's matrix concatenates its member strata: in set order it followed PYTHONHASHSEED, and
    # the pooled correlation, threshold and verdicts moved in their last digits from run to run
    import subprocess
    import sys

    script = (
        "import json, numpy as np\n"
        "from hubaudit.calibrate.fit import fit\n"
        "rng = np.random.default_rng(0)\n"
        "pop = [(f'lora|r{r}|q_proj,v_proj', {'a': float(rng.lognormal()), 'b': float(rng.lognormal()),"
        " 'c': float(rng.lognormal())}) for r in (4, 8, 16, 32, 64, 128) for _ in range(7 + r)]\n"
        "ts = fit(pop, {'a': 'up', 'b': 'both', 'c': 'down'}, min_n=10)\n"
        "print(json.dumps(ts['strata']['pool:lora|q_proj,v_proj'], sort_keys=True, default=str))\n"
    )
    outs = {subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                           env={"PYTHONHASHSEED": seed, "PATH": "/usr/bin:/bin"}).stdout for seed in ("1", "2", "7", "11")}
    assert len(outs) == 1 and '"status": "calibrated"' in next(iter(outs)), outs
