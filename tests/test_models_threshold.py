"""The typed threshold set and verdict breakdown (hubaudit.models.ThresholdSet, VerdictBreakdown): every stored
shape parses, and writes back as stored.

Stored shapes come from the producers themselves: calibrate's real fit and judge_many on a synthetic feature
population (combined and per-feature rules, pooled, not-calibrated, low-confidence and reference-anchored
strata), and a real SQLite store calibrated through the pipeline; older shapes are those outputs with the
keys that later versions added taken out, and the report tests' hand-built flat layouts. Damaged JSON
(wrong types) reads as None, is logged, is kept as stored, and never crashes a report. Property tests throw
arbitrary JSON at the parsers.
"""

from __future__ import annotations

import json
import logging
import math
from datetime import datetime, timezone

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hubaudit.calibrate import fit, judge, judge_many, judge_typed, resolve
from hubaudit.models import (
    THRESHOLD_SET_VERSION,
    THRESHOLD_SET_VERSION_KEY,
    VERDICT_BREAKDOWN_VERSION,
    VERDICT_BREAKDOWN_VERSION_KEY,
    CombinedFit,
    Exceedance,
    FeatureFit,
    StratumFit,
    ThresholdParams,
    ThresholdSet,
    VerdictBreakdown,
    _record,
)
from hubaudit.vocab import StratumStatus

S = "lora|r8|q_proj,v_proj"
S4 = "lora|r4|q_proj,v_proj"
SMALL = "lora|r2|k_proj"
DIRECTIONS = {"global_frobN_std": "both", "layer_max_share": "up", "attn_frobN_mean": "down"}
NOW = datetime(2026, 12, 1, 9, 0, tzinfo=timezone.utc)


def _features(seed: int, shift: float = 0.0) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    return {"global_frobN_std": float(np.exp(rng.normal(-5.0 + shift, 0.1))),
            "layer_max_share": float(np.exp(rng.normal(-1.0 + shift, 0.1))),
            "attn_frobN_mean": float(np.exp(rng.normal(-6.0 - shift, 0.1)))}  # fmt: skip


OUTLIER = _features(999, shift=1.0)
POPULATION = ([(S, _features(i)) for i in range(40)] + [(S4, _features(100 + i)) for i in range(4)]
              + [(SMALL, _features(200 + i)) for i in range(2)])  # fmt: skip


def stored(d: dict) -> dict:
    """``d`` as the store gives it back (JSON: enum members become strings, tuples lists)."""
    return json.loads(json.dumps(d))


def round_trips(cls, d: dict):
    r = cls.from_dict(d)
    back = r.to_dict()
    assert back == d and list(back) == list(d)  # the same keys in the same order: the JSON is the same
    assert json.dumps(back) == json.dumps(d)
    return r


@pytest.fixture(scope="module")
def sets() -> dict[str, dict]:
    """Real threshold sets: both rules, a low-confidence one (min_n 3 at 5 % FPR), one anchored on references."""
    refs = [(S, _features(500 + i)) for i in range(30)]
    return {
        "combined": fit(POPULATION, DIRECTIONS, 0.01, 30),
        "per-feature": fit(POPULATION, DIRECTIONS, 0.01, 30, method="per-feature"),
        "low": fit(POPULATION, DIRECTIONS, 0.05, 3),
        "references": fit(POPULATION, DIRECTIONS, 0.01, 30, references=refs),
    }


ITEMS = [*POPULATION[:3], (S, OUTLIER), (S4, OUTLIER), (SMALL, OUTLIER), ("lora|r64|o_proj", OUTLIER),
         (S, {"global_frobN_std": None, "layer_max_share": 0.4}), (S, {})]  # fmt: skip


# ---------------------------------------------------------------- real outputs round-trip
@pytest.mark.parametrize("name", ["combined", "per-feature", "low", "references"])
def test_fitted_sets_round_trip_in_memory_and_as_stored(sets, name):
    ts = sets[name]
    typed = round_trips(ThresholdSet, ts)
    round_trips(ThresholdSet, stored(ts))
    assert typed.version == THRESHOLD_SET_VERSION and typed.params is not None
    assert typed.params.threshold_set_version == ThresholdSet.SCHEMA_VERSION
    assert typed.rule == ts["params"]["verdict"] and typed.method == ts["method"] and typed.n == len(POPULATION)
    for key, entry in ts["strata"].items():
        fit_ = round_trips(StratumFit, entry)
        assert fit_.status == entry["status"] and fit_.extra == {}
        assert typed.fit(key) == fit_


@pytest.mark.parametrize("name", ["combined", "per-feature", "low", "references"])
def test_judged_breakdowns_round_trip_and_read_what_judge_wrote(sets, name):
    for flagged, bd in judge_many(ITEMS, sets[name]):
        b = round_trips(VerdictBreakdown, bd)
        round_trips(VerdictBreakdown, stored(bd))
        assert b.extra == {} and b.breakdown_version == VERDICT_BREAKDOWN_VERSION
        assert b.flagged == flagged and b.rule == sets[name]["params"]["verdict"]
        assert (b.not_calibrated is not None) == (flagged is None)


def test_typed_fields_read_what_the_fit_wrote(sets):
    ts = ThresholdSet.from_dict(sets["combined"])
    own, pooled, small = ts.fit(S), ts.fit(S4), ts.fit(SMALL)
    assert own is not None and own.calibrated and own.features is not None and own.combined is not None
    assert own.combined.calibrated and own.combined.threshold == sets["combined"]["strata"][S]["combined"]["threshold"]
    assert isinstance(own.features["global_frobN_std"], FeatureFit) and own.features["layer_max_share"].lo is None
    assert ts.score_threshold(S) == own.features["global_frobN_std"].threshold_high == own.paper_threshold
    assert pooled is not None and pooled.status == StratumStatus.POOLED and pooled.pool == "pool:lora|q_proj,v_proj"
    assert ts.judging_fit(S4) == ts.fit("pool:lora|q_proj,v_proj") and ts.score_threshold(S4) == ts.score_threshold(
        "pool:lora|q_proj,v_proj")  # fmt: skip
    assert small is not None and small.status == StratumStatus.NOT_CALIBRATED and small.reason == "n=2 < min_n=30"
    assert ts.judging_fit(SMALL) is None and ts.score_threshold(SMALL) is None and ts.judging_fit("nope") is None
    assert ts.params is not None and ts.params.directions == DIRECTIONS and ts.params.min_n == 30
    low = ThresholdSet.from_dict(sets["low"])
    assert low.low_confidence_reason(S4) == "fitted on 4 adapters; 19 needed for 5 % FPR"  # its pool's
    assert ThresholdSet.from_dict(sets["references"]).fit(S).source == "reference"  # type: ignore[union-attr]


def test_typed_breakdown_reads_the_fired_records_and_the_deciding_statistic(sets):
    flagged, b = judge_typed(OUTLIER, S, ThresholdSet.from_dict(sets["combined"]))
    _, bd = judge(OUTLIER, S, sets["combined"])
    assert flagged is True and b.to_dict() == bd and b.margin_unit == "ln(S/T)"
    assert b.combined is not None and b.margin == pytest.approx(math.log(b.combined.statistic / b.combined.threshold))
    assert b.fired and all(isinstance(f, Exceedance) and f.direction in ("above", "below") for f in b.fired)
    assert [f.margin for f in b.fired] == sorted((f.margin for f in b.fired), reverse=True)
    assert {f.feature for f in b.fired} == {n for n, d in (b.features or {}).items() if d.fired}
    assert b.paper is not None and b.paper.feature == "global_frobN_std" and b.per_feature is not None
    assert b.top and all(isinstance(name, str) for name, _ in b.top) and b.fit == S and b.n == 40
    fit_ = ThresholdSet.from_dict(sets["combined"]).fit(S)
    assert fit_ is not None and fit_.features is not None
    for f in b.fired:
        assert f.margin == pytest.approx(fit_.features[str(f.feature)].margin(f.value, str(f.direction)))
    none, nc = judge_typed(OUTLIER, "lora|r64|o_proj", sets["combined"])
    assert none is None and nc.margin is None and nc.flagged is None
    assert nc.not_calibrated == "stratum lora|r64|o_proj was not in the calibration population"


def test_judge_takes_the_typed_set_and_gives_the_same_verdicts(sets):
    for name, ts in sets.items():
        typed = ThresholdSet.from_dict(stored(ts))
        assert judge_many(ITEMS, typed) == judge_many(ITEMS, stored(ts)), name
        assert resolve(S4, typed)[0] == resolve(S4, ts)[0]


# ---------------------------------------------------------------- older shapes
def _without(d: dict, *keys: str) -> dict:
    return {k: v for k, v in d.items() if k not in keys}


def test_sets_stored_before_the_rule_and_the_version_read_as_per_feature(sets):
    ts = stored(sets["per-feature"])
    old = ts | {"params": _without(ts["params"], "verdict", "combined_mode", "max_module_features",
                                   THRESHOLD_SET_VERSION_KEY),
                "strata": {k: _without(v, "low_confidence", "low_confidence_reason", "n_needed", "members")
                           for k, v in ts["strata"].items()}}  # fmt: skip
    typed = round_trips(ThresholdSet, old)
    assert typed.version is None and typed.rule == "per-feature" and typed.params is not None
    assert typed.params.verdict is None and typed.low_confidence_reason(S) is None
    assert judge_many(ITEMS, typed) == judge_many(ITEMS, old)  # judged as before
    for _, bd in judge_many(ITEMS, old):
        b = round_trips(VerdictBreakdown, _without(bd, "fired", "margin_unit", "verdict", VERDICT_BREAKDOWN_VERSION_KEY,
                                                   "not_calibrated"))  # fmt: skip
        assert b.breakdown_version is None and b.fired is None and b.rule is None
    assert ThresholdParams(verdict="majority").rule == "per-feature"  # a rule this version does not know


def test_flat_and_bare_layouts_read_as_their_score_threshold():
    # hand-built or legacy sets (tests/report/sample.py): n and score_threshold, no status; or a bare value
    d = {"method": "robust-mad", "n": 40, "params": {},
         "strata": {S: {"n": 30, "score_threshold": 0.02}, S4: 0.05, SMALL: "n/a"}}  # fmt: skip
    ts = round_trips(ThresholdSet, d)
    assert ts.rule == "per-feature" and ts.score_threshold(S) == 0.02 and ts.judging_fit(S) == ts.fit(S)
    bare = ts.fit(S4)
    assert bare is not None and bare.bare and ts.score_threshold(S4) == 0.05 and ts.judging_fit(S4) is None
    assert bare.to_dict() == {"threshold": 0.05} and ts.score_threshold(SMALL) is None


def test_hand_built_breakdowns_parse():
    for d in ({"reasons": ["global_frobN_std=0.02 above 0.01"], "margin": 0.4},
              {"reasons": [{"feature": "x", "detail": "y"}], "margin": 1},
              {"reasons": ["test verdict"], "margin": 1.0, "fired": [
                  {"feature": "f", "direction": "above", "value": None, "threshold": None, "margin": None}]},
              {}):  # fmt: skip
        b = round_trips(VerdictBreakdown, d)
        assert b.extra == {} and b.breakdown_version is None
    assert VerdictBreakdown.of(None) == VerdictBreakdown() and VerdictBreakdown.of([1]).to_dict() == {}


# ---------------------------------------------------------------- damaged JSON
@pytest.fixture()
def fresh_warnings(monkeypatch):
    monkeypatch.setattr(_record, "_WARNED", set())


def test_wrong_typed_fields_are_logged_left_out_and_kept_as_stored(sets, fresh_warnings, caplog):
    bd = stored(judge(OUTLIER, S, sets["combined"])[1])
    damaged = bd | {"margin": "big", "n": "40", "low_confidence": "yes", "combined": [1, 2], "reasons": "prose",
                    "top": [["layer_max_share", 3.0], [1, 2], "x"], "fired": [bd["fired"][0], {"feature": 3}, 7],
                    "features": {"a": 1} | bd["features"], "future_key": {"x": [1]}}  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="hubaudit.models"):
        b = round_trips(VerdictBreakdown, damaged)
        VerdictBreakdown.from_dict(damaged)  # logged once per field, not once per row
    assert b.margin is None and b.n is None and b.low_confidence is None and b.combined is None and b.reasons is None
    assert b.top == (("layer_max_share", 3.0),) and b.fired is not None and len(b.fired) == 1  # the good entries
    assert b.features is not None and "a" not in b.features and b.extra["future_key"] == {"x": [1]}
    assert b.extra["margin"] == "big" and b.extra["fired"] == damaged["fired"]
    logged = [r.getMessage().split(" is not")[0] for r in caplog.records]
    assert sorted(logged) == sorted([f"VerdictBreakdown: stored {k!r}" for k in (
        "margin", "n", "low_confidence", "combined", "reasons", "top", "fired", "features")]
        + ["Exceedance: stored 'feature'"])  # fmt: skip

    entry = stored(sets["combined"]["strata"][S])
    ts = stored(sets["combined"]) | {"n": "many", "params": {"verdict": 3, "min_n": 2.5, "directions": ["up"]},
                                      "strata": {S: entry | {"status": "frozen", "n": "40", "combined": "x",
                                                             "features": entry["features"] | {"global_frobN_std": 1}}}}
    typed = round_trips(ThresholdSet, ts)
    fit_ = typed.fit(S)
    assert typed.n is None and typed.rule == "per-feature" and typed.params is not None and typed.params.min_n is None
    assert fit_ is not None and fit_.status is None and fit_.extra["status"] == "frozen" and fit_.combined is None
    assert fit_.features is not None and "global_frobN_std" not in fit_.features and typed.score_threshold(S) is None


def test_a_report_over_damaged_rows_renders_every_format(sets, fresh_warnings):
    from types import SimpleNamespace

    from hubaudit.report import build_report, get_format
    from hubaudit.report.formats import OutputFormat

    ts = stored(sets["combined"])
    ts["strata"][S] = ts["strata"][S] | {"status": 5, "features": [1], "low_confidence": "1", "combined": {"threshold": "T"}}
    ts["strata"]["lora|r1|x"] = ["not", "a", "fit"]
    ts["params"] = "corrupt"
    verdicts = judge_many([(S, OUTLIER), (S, POPULATION[0][1]), (S4, OUTLIER)], sets["combined"])
    breakdowns = [stored(bd) for _, bd in verdicts] + [
        {"margin": [], "fired": {"f": 1}, "features": [], "top": 5, "verdict": "combined", "combined": {"statistic": "S"}},
        {"fired": [{"feature": "f", "direction": "sideways"}], "margin": float("nan"), "reasons": [None, 3]},
        "not an object"]  # fmt: skip
    rows = [{"revision_id": i, "repo_id": f"org/a-{i}", "sha": f"{i:040x}", "status": "scored", "score": 0.01,
             "features": {}, "stratum": S, "flagged": i % 2 == 0, "breakdown": bd, "threshold_set_id": 1,
             "first_seen": NOW, "last_seen": NOW, "downloads": 1, "likes": 0, "removed": False, "provenance": {}}
            for i, bd in enumerate(breakdowns)]  # fmt: skip
    row = SimpleNamespace(id=1, base="b", version=1, method=ts["method"], featureset_version="fs-2", n=ts["n"],
                          strata=ts["strata"], params=ts["params"], created_at=NOW)  # fmt: skip
    report = build_report("b", rows, row, generated_at=NOW, tool_version="t", today=NOW.date())
    assert report.calibration.rule == "per-feature" and len(report.adapters) == len(rows)
    for fmt in OutputFormat:
        assert get_format(fmt.value).render(report)
    doc = json.loads(get_format("json").render(report))
    assert {s["stratum"]: s["thresholds"] for s in doc["calibration"]["strata"]}[S] == ts["strata"][S]  # as stored


# ---------------------------------------------------------------- the store
def test_the_store_keeps_the_stored_form_and_hands_out_the_typed_views(tmp_path):
    from hubaudit.constants import FEATURESET_VERSION
    from hubaudit.pipeline.calibrate import calibrate_base
    from hubaudit.stats import scan_path
    from hubaudit.store import Store
    from tests.report.conftest import write_lora

    with Store.open(f"sqlite:///{tmp_path / 'h.db'}", create=True) as store:
        for i in range(6):
            scan = scan_path(write_lora(tmp_path / f"a{i}", seed=i, hot=8.0 if i == 5 else 1.0))
            store.upsert_adapter("org/base", f"org/a-{i}", meta={"sha": f"{i + 1:040x}"})
            store.record_revision(base="org/base", repo_id=f"org/a-{i}", sha=f"{i + 1:040x}", status="scored", scan=scan)
        summary = calibrate_base(store, "org/base", min_n=3, target_fpr=0.05)
        row = store.active_threshold_set("org/base")
        assert row is not None
        ts = row.threshold_set
        assert ts.featureset_version == FEATURESET_VERSION and ts.version == THRESHOLD_SET_VERSION
        assert ts.to_dict()["strata"] == row.strata and ts.to_dict()["params"] == row.params
        assert ts.params is not None and ts.params.references == () and ts.params.similarity == summary.similarity
        assert list(row.params)[-3:] == [THRESHOLD_SET_VERSION_KEY, "references", "similarity"]
        audit = store.audit_rows("org/base")
        assert all(r.verdict_breakdown.to_dict() == r.breakdown for r in audit)
        assert any(r.verdict_breakdown.low_confidence for r in audit)  # 6 adapters: 19 needed at 5 %
        # a typed breakdown is stored in its stored form
        first = audit[0]
        store.save_verdicts(row.id, [(first.revision_id, first.flagged, first.verdict_breakdown)])
        again = next(r for r in store.audit_rows("org/base") if r.revision_id == first.revision_id)
        assert again.breakdown == first.breakdown


# ---------------------------------------------------------------- arbitrary stored JSON
_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8)
_json = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                                            max_size=3), max_leaves=8)


def _objects(cls) -> st.SearchStrategy:
    return st.dictionaries(st.sampled_from([*sorted(cls.SPEC), "extra", "stored_keys", "bare", "novel"]), _json,
                           max_size=10)  # fmt: skip


@given(_objects(VerdictBreakdown), _objects(Exceedance), _objects(CombinedFit))
def test_any_json_object_parses_as_a_breakdown_and_round_trips(d, fired, combined):
    round_trips(VerdictBreakdown, d)
    round_trips(VerdictBreakdown, d | {"fired": [fired, fired | {"feature": "f", "direction": "below"}]})
    round_trips(CombinedFit, combined)


@given(_objects(ThresholdSet), st.dictionaries(st.text(max_size=6), _objects(StratumFit) | _json, max_size=3),
       _objects(ThresholdParams), _objects(FeatureFit))  # fmt: skip
def test_any_json_object_parses_as_a_threshold_set_and_round_trips(d, strata, params, feature):
    round_trips(ThresholdSet, d)
    typed = round_trips(ThresholdSet, d | {"strata": strata, "params": params})
    for key in strata:
        typed.score_threshold(key), typed.judging_fit(key), typed.low_confidence_reason(key)
    round_trips(StratumFit, {"features": {"f": feature}, "status": "pooled", "pool": "p"})
