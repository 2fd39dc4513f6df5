"""The prober on REAL trained backdoors: MiniLM SEQ_CLS and a tiny Qwen2 causal-LM label classifier."""

from __future__ import annotations

import pytest

from hubaudit.probe.batteries import load_battery
from hubaudit.probe.prober import ProbeOptions, Prober
from hubaudit.probe.stats import Thresholds

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
    # generalization, paper §1.4)
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
