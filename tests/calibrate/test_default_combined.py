"""The default verdict is the combined detector: what it catches that per-feature bounds miss,
contamination, the per-feature method, the paper statistic in every breakdown, fs versions."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from hubaudit.calibrate import DEFAULT_METHOD, METHODS, PAPER, fit, judge, judge_many
from hubaudit.pipeline.calibrate import calibrate_base, fit_threshold_set, judge_revisions
from hubaudit.store import Store
from tests._cli import run_cli
from tests.store.scans import scan

S = "lora|r8|q_proj,v_proj"
K = 6
NAMES = [PAPER] + [f"f{i}" for i in range(1, K)]
DIRS = {n: "up" for n in NAMES}


def _population(n: int, seed: int, rho: float = 0.9) -> list[dict[str, float]]:
    """Log-normal features sharing one factor with correlation rho (Gram-pass features move together)."""
    rng = np.random.default_rng(seed)
    common = rng.normal(size=(n, 1))
    z = math.sqrt(rho) * common + math.sqrt(1 - rho) * rng.normal(size=(n, K))
    return [dict(zip(NAMES, np.exp(0.1 * row).tolist())) for row in z]


def _odd(sign_pattern: list[int], size: float = 2.2) -> dict[str, float]:
    """Every feature within ~2.2 robust σ of its median (no per-feature bound at 1 %/K is near), but
    half of them up and half down: a pattern the shared factor never produces on clean adapters."""
    return {n: math.exp(0.1 * size * s) for n, s in zip(NAMES, sign_pattern)}


def test_default_method_is_combined_and_recorded():
    ts = fit([(S, r) for r in _population(120, 0)], DIRS, 0.01, 30)
    assert DEFAULT_METHOD == "combined" and ts["method"] == METHODS["combined"] and ts["params"]["verdict"] == "combined"
    assert ts["strata"][S]["combined"]["status"] == "calibrated" and ts["strata"][S]["combined"]["mode"] == "mahal"
    per = fit([(S, r) for r in _population(120, 0)], DIRS, 0.01, 30, method="per-feature")
    assert per["method"] == METHODS["per-feature"] and "combined" not in per["strata"][S]
    with pytest.raises(ValueError):
        fit([], DIRS, method="vote")


def test_combined_flags_a_feature_combination_no_single_feature_flags():
    pop = [(S, r) for r in _population(300, 1)]
    combined = fit(pop, DIRS, 0.01, 30)
    per_feature = fit(pop, DIRS, 0.01, 30, method="per-feature")
    odd = _odd([+1, -1, +1, -1, +1, -1])
    flagged, bd = judge(odd, S, combined)
    assert flagged is True and bd["margin"] > 0 and bd["verdict"] == "combined"
    assert bd["features"] == {} and bd["per_feature"]["flagged"] is False  # no feature alone fired
    assert judge(odd, S, per_feature)[0] is False
    assert bd["reasons"][0].startswith("combined mahal D²/K ") and "above threshold" in bd["reasons"][0]
    # the clean population itself: at most about the target FPR flagged (in-sample)
    rate = np.mean([f for f, _ in judge_many(pop, combined)])
    assert rate <= 0.03


def test_ten_percent_poisoned_in_the_population_do_not_drag_the_combined_threshold_over_them():
    clean = [(S, r) for r in _population(270, 2)]
    bad = [(S, {**r, "f3": r["f3"] * math.exp(0.6), "f4": r["f4"] * math.exp(-0.6)}) for r in _population(30, 3)]
    pure, mixed = fit(clean, DIRS, 0.01, 30), fit(clean + bad, DIRS, 0.01, 30)
    t_pure, t_mixed = pure["strata"][S]["combined"]["threshold"], mixed["strata"][S]["combined"]["threshold"]
    stats_mixed = [bd["combined"]["statistic"] for _, bd in judge_many(bad, mixed)]
    margin = float(np.median(np.log([bd["combined"]["statistic"] / t_pure for _, bd in judge_many(bad, pure)])))
    assert margin > 0
    assert abs(math.log(t_mixed / t_pure)) < margin  # the shift is smaller than the clean/poisoned margin
    assert min(stats_mixed) > t_mixed  # every poisoned adapter still beyond the threshold fitted with them in
    assert all(f for f, _ in judge_many(bad, mixed))


def test_paper_statistic_is_reported_beside_the_verdict():
    pop = [(S, r) for r in _population(100, 4)]
    ts = fit(pop, DIRS, 0.01, 30)
    high = {**pop[0][1], PAPER: pop[0][1][PAPER] * 3}
    flagged, bd = judge(high, S, ts)
    paper = bd["paper"]
    assert paper["feature"] == PAPER and paper["above"] is True and paper["value"] == high[PAPER]
    assert paper["threshold"] == pytest.approx(ts["strata"][S]["features"][PAPER]["threshold_high"])
    assert any(r.startswith(f"paper statistic {PAPER} ") and "above its threshold" in r for r in bd["reasons"])
    assert any(r.startswith(f"{PAPER}=") for r in bd["reasons"])  # it also fired as a feature
    assert flagged is True and bd["combined"]["statistic"] > bd["combined"]["threshold"]
    _, ok = judge(pop[1][1], S, ts)
    assert ok["paper"]["above"] is False and ok["combined"]["flagged"] is False


def test_below_min_n_stays_not_calibrated_under_the_combined_rule():
    ts = fit([(S, r) for r in _population(10, 5)], DIRS, 0.01, 30)
    flagged, bd = judge(_population(1, 6)[0], S, ts)
    assert flagged is None and bd["margin"] is None and bd["reasons"][0].startswith("not calibrated")


def test_references_are_never_flagged_by_the_combined_threshold():
    pop = [(S, r) for r in _population(100, 7)]
    ref = (S, _odd([+1, -1, +1, -1, +1, -1], size=3.0))
    assert judge(ref[1], S, fit(pop, DIRS, 0.01, 30))[0] is True
    anchored = fit(pop, DIRS, 0.01, 30, references=[ref])
    assert judge(ref[1], S, anchored)[0] is False and anchored["strata"][S]["combined"]["anchored"] is True


def test_fit_threshold_set_is_what_calibrate_base_stores(tmp_path, migrated_sqlite):
    rows = _population(40, 8)
    with Store.open(migrated_sqlite(tmp_path / "db.sqlite"), create=True) as store:
        for i, r in enumerate(rows):
            store.record_revision(base="b/x", repo_id=f"u/a{i}", sha="s", status="scored", scan=scan(r[PAPER], features=r))
        summary = calibrate_base(store, "b/x", min_n=30)
        stored = store.active_threshold_set("b/x")
        pop = store.population("b/x")
    direct = fit_threshold_set([(r.stratum, r.features) for r in pop], min_n=30)
    assert summary.verdict == "combined" and stored.method == direct["method"] and stored.params["verdict"] == "combined"
    key = pop[0].stratum
    assert stored.strata[key]["combined"]["threshold"] == pytest.approx(direct["strata"][key]["combined"]["threshold"])


def test_older_feature_set_scores_are_rederived_not_mixed(tmp_path, migrated_sqlite):
    """Rows scored under fs-1 get fs-2 features from their stored per-module statistics; a
    calibration never mixes versions and every adapter gets a verdict."""
    rng = np.random.default_rng(9)
    with Store.open(migrated_sqlite(tmp_path / "db.sqlite"), create=True) as store:
        for i in range(40):
            v = float(math.exp(rng.normal(-4, 0.1)))
            s = scan(v, features={PAPER: 123.0})  # a stale, wrong fs-1 value: must not be used
            old = dataclasses.replace(s, featureset_version="fs-1") if i % 2 else s
            if i % 2:  # fs-1 rows: their modules are what the features get re-derived from
                mods = [dataclasses.replace(m, frob_norm=v * (1 + j)) for j, m in enumerate(s.modules)]
                old = dataclasses.replace(old, modules=mods)
            else:
                old = dataclasses.replace(s, features={PAPER: v})
            store.record_revision(base="b/x", repo_id=f"u/a{i}", sha="s", status="scored", scan=old)
        assert len(store.population("b/x")) == 20  # fs-2 rows only
        assert len(store.stale_scores("b/x")) == 20
        summary = calibrate_base(store, "b/x", min_n=30, method="per-feature")
        assert summary.rescored == 20 and summary.n == 40 and summary.verdicts["not_calibrated"] == 0
        assert store.stale_scores("b/x") == []
        pop = {r.repo_id: r for r in store.population("b/x")}
        assert len(pop) == 40 and all(r.features[PAPER] != 123.0 for r in pop.values())
        odd = pop["u/a1"].features  # re-derived: the registry's features, not the stored fs-1 dict
        assert "global_frobN_mean" in odd and any(k.endswith("_frobN_rel") for k in odd)
        assert store.active_threshold_set("b/x").method == METHODS["per-feature"]
        assert set(judge_revisions(store, "b/x").values()) <= {True, False}


def test_cli_method_option_is_recorded(tmp_path, migrated_sqlite):
    import json

    url = migrated_sqlite(tmp_path / "db.sqlite")
    with Store.open(url, create=True) as store:
        for i, r in enumerate(_population(40, 10)):
            store.record_revision(base="b/x", repo_id=f"u/a{i}", sha="s", status="scored", scan=scan(r[PAPER], features=r))
    for method, expected in (("per-feature", METHODS["per-feature"]), (None, METHODS["combined"])):
        args = ["calibrate", "--base", "b/x", "--db", url, "--format", "json"] + (["--method", method] if method else [])
        r = run_cli(*args)
        assert r.returncode == 0, r.stderr
        out = json.loads(r.stdout)
        assert out["method"] == expected and out["verdict"] == (method or "combined")
        assert f"{method or 'combined'} verdict" in r.stderr
    r = run_cli("calibrate", "--base", "b/x", "--db", url, "--method", "vote")
    assert r.returncode != 0 and "Traceback" not in r.stderr


def test_an_unseen_rank_is_judged_by_its_pool_under_the_combined_rule():
    pop = [("lora|r8|q_proj,v_proj", r) for r in _population(40, 11)] + [("lora|r16|q_proj,v_proj", r) for r in _population(40, 12)]
    ts = fit(pop, DIRS, 0.01, 30)
    assert ts["strata"]["pool:lora|q_proj,v_proj"]["combined"]["status"] == "calibrated"
    fresh = judge_many([("lora|r4|q_proj,v_proj", r) for r in _population(200, 13)], ts)  # rank 4 never seen
    assert all(f is not None and bd["source"] == "pool" and "combined" in bd for f, bd in fresh)
    assert sum(f for f, _ in fresh) <= 8  # clean adapters of the unseen rank: a small false-positive rate
    assert judge(_odd([+1, -1, +1, -1, +1, -1], 3.0), "lora|r4|q_proj,v_proj", ts)[0] is True


@pytest.mark.parametrize("n_modules, kept", [(64, True), (65, False)])
def test_per_module_profile_is_fitted_only_up_to_the_cap(n_modules, kept):
    """A stratum of adapters with more per-module profile features than MAX_MODULE_FEATURES is fitted
    on the rest (recorded); at the cap they stay, in the per-feature and the combined fit alike."""
    from hubaudit.calibrate.fit import MAX_MODULE_FEATURES

    assert MAX_MODULE_FEATURES == 64
    rng = np.random.default_rng(3)
    mods = [f"module_{i // 2}.self_attn.{'qv'[i % 2]}_proj_frobN_rel" for i in range(n_modules)]
    rows = []
    for base in _population(40, 4):
        rows.append(base | dict(zip(mods, np.exp(rng.normal(0, 0.1, n_modules)).tolist())))
    ts = fit([(S, r) for r in rows], {n: "both" for n in [*NAMES, *mods]}, 0.01, 30)
    entry = ts["strata"][S]
    fitted = set(entry["features"])
    assert set(NAMES) <= fitted and set(entry["combined"]["features"]) == fitted
    assert (set(mods) <= fitted) is kept and (fitted & set(mods) == set()) is (not kept)
    assert entry["per_module_features_left_out"] == (0 if kept else n_modules)
    assert entry["alpha_per_feature"] == pytest.approx(0.01 / len(fitted))  # Bonferroni over what is fitted
    assert ts["params"]["max_module_features"] == 64
    flagged, bd = judge(rows[0], S, ts)
    assert flagged is not None and bd["combined"]["statistic"] > 0


def test_rescoring_goes_in_batches_from_the_newest_older_score(tmp_path, migrated_sqlite):
    """rescore_stale pages through the stale revisions (memory stays bounded); a revision with two
    older scores is re-derived once, from the newer one, even when a page ends between its rows."""
    from sqlalchemy import select

    from hubaudit.pipeline.calibrate import rescore_stale
    from hubaudit.store.schema import WeightScore

    with Store.open(migrated_sqlite(tmp_path / "db.sqlite"), create=True) as store:
        for i in range(7):
            s = scan(0.01 * (1 + i))
            for fs in ("fs-0", "fs-1") if i % 2 else ("fs-1",):
                store.record_revision(base="b/x", repo_id=f"u/a{i}", sha="s", status="scored",
                                      scan=dataclasses.replace(s, featureset_version=fs))  # fmt: skip
        assert len(store.stale_scores("b/x")) == 7 and len(store.stale_scores("b/x", limit=2)) <= 2
        assert rescore_stale(store, "b/x", batch=2) == 7
        assert store.stale_scores("b/x") == [] and len(store.population("b/x")) == 7
        with store.engine.connect() as conn:
            rows = conn.execute(select(WeightScore.summary).where(WeightScore.featureset_version == "fs-2")).all()
        assert len(rows) == 7 and {r.summary["rescored_from"] for r in rows} == {"fs-1"}
