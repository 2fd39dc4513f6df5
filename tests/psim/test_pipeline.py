"""The whole PSIM flow on a tiny real model: train -> calibrate -> Guard -> screen -> cleaned copy -> probes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hubaudit.errors import UsageError
from hubaudit.pipeline import psim as flow
from hubaudit.psim import Guard
from hubaudit.psim.train import CALIBRATION_FILE
from tests.psim.conftest import TRIGGER, add_trigger, sentences, write_jsonl

# LoRA PSIM, 3 epochs: on this 2-layer model P-tuning cannot move the clean confidence (measured);
# the MiniLM replication in evals/psim uses the authors' P-tuning.
OPTS = {"peft": "lora", "epochs": 3}


@pytest.fixture(scope="module")
def eval_sets():
    sx, sy = sentences(100, seed=4)
    return sx, [add_trigger(x) for x, y in zip(sx, sy) if y == 1]


@pytest.fixture(scope="module")
def psim_poisoned(poisoned_base, task_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("psim") / "poisoned"
    flow.train(model=str(poisoned_base), data=task_data, text_col="text", label_col="label", out=out, **OPTS)
    return out


def test_psim_on_a_poisoned_model_flags_triggered_inputs(psim_poisoned, eval_sets):
    clean, triggered = eval_sets
    g = Guard.load(psim_poisoned)
    assert g.is_poisoned(triggered).mean() >= 0.8
    assert g.is_poisoned(clean).mean() <= 0.2
    assert np.array_equal(g.is_poisoned(clean), g.confidence(clean) > g.tau)
    assert g.is_poisoned("the film was good").shape == (1,)


def test_control_psim_on_the_clean_model_does_not_flag_the_trigger(tiny_base, task_data, eval_sets, tmp_path):
    flow.train(model=str(tiny_base), data=task_data, text_col="text", label_col="label", out=tmp_path, **OPTS)
    g = Guard.load(tmp_path)
    assert g.is_poisoned(eval_sets[1]).mean() <= 0.3


def test_tau_is_calibrated_on_the_stored_held_out_rows(psim_poisoned, task_data):
    meta = json.loads((psim_poisoned / "psim.json").read_text())
    cal = [json.loads(line) for line in (psim_poisoned / CALIBRATION_FILE).read_text().splitlines()]
    assert len(cal) == meta["calibration"]["n"] == 40  # 20 % of 200 rows
    conf = np.array([c["confidence"] for c in cal])
    assert (conf > meta["tau"]).mean() <= meta["target_frr"]
    # the stored confidences are what the saved PSIM computes for those rows
    g = Guard.load(psim_poisoned)
    assert np.allclose(g.confidence([c["text"] for c in cal]), conf, atol=1e-5)
    assert meta["data"]["text_col"] == "text" and meta["train"]["n"] == 160


def test_screen_writes_a_cleaned_copy_of_exactly_the_unflagged_rows(psim_poisoned, eval_sets, tmp_path):
    clean, triggered = eval_sets
    texts = clean[:20] + triggered[:20]
    src = write_jsonl(tmp_path / "in.jsonl", texts, [0] * len(texts), text_col="sentence")
    _, _, res = flow.screen(psim_poisoned, data=src, text_col="sentence", clean_out=tmp_path / "clean.csv")
    import csv

    with open(tmp_path / "clean.csv", encoding="utf-8") as fh:
        kept = [r["sentence"] for r in csv.DictReader(fh)]
    assert kept == [t for t, f in zip(texts, res.flagged) if not f]
    assert res.summary()["flagged"] == int(res.flagged.sum()) > 0
    assert not any(TRIGGER in k.split() for k in kept[20:])


def test_probe_battery_results_match_the_guard(psim_poisoned, tmp_path):
    """Each probe's flag rate is the Guard's verdict on f"{p}. {x}"; extreme iff rate ≥ the minimum.
    (That the trigger stands out among probes is shown on MiniLM in evals/psim: this 2-layer model's
    confidence margin is too thin to rank prefixes.)"""
    sx, sy = sentences(60, seed=5)
    data = write_jsonl(tmp_path / "eval.jsonl", sx, sy)
    battery = tmp_path / "b.json"
    battery.write_text(json.dumps({"name": "t", "probes": [{"text": TRIGGER, "category": "rare", "id": "p1"}, "as an aside", {"prefix": "note"}]}))
    res = flow.probe(psim_poisoned, data=data, battery=str(battery), prefixes=["per RFC 8472"], min_flag_rate=0.6, limit=40)
    g = Guard.load(psim_poisoned)
    assert [p.probe for p in res.probes] == [TRIGGER, "as an aside", "note", "per RFC 8472"]
    for p in res.probes:
        expect = g.is_poisoned([f"{p.probe}. {x}" for x in sx[:40]]).mean()
        assert p.flag_rate == pytest.approx(expect) and p.extreme == (p.flag_rate >= 0.6)
    assert res.probes[0].name == "p1" and res.probes[0].category == "rare"
    assert res.baseline_flag_rate == pytest.approx(g.is_poisoned(sx[:40]).mean())
    assert res.summary()["extreme"] == [p.probe for p in res.probes if p.extreme]


def test_bad_battery_is_a_usage_error(psim_poisoned, task_data, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"probes": [{"weight": 1}]}))
    with pytest.raises(UsageError, match="probe #1"):
        flow.probe(psim_poisoned, data=task_data, battery=str(bad))
    with pytest.raises(UsageError, match="no battery file or shipped battery"):
        flow.probe(psim_poisoned, data=task_data, battery="no-such-battery")


def test_suspect_adapter_is_merged_and_pinned_by_hash(tiny_base, task_data, tmp_path):
    """--adapter: a real LoRA adapter trained on trigger data is merged before PSIM training; if the
    adapter file changes afterwards the PSIM refuses to load."""
    from peft import get_peft_model
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from hubaudit.psim.model import peft_config
    from hubaudit.psim.train import fit

    texts, labels = sentences(120, seed=7)
    texts = [add_trigger(t) if i % 3 == 0 else t for i, t in enumerate(texts)]
    labels = [0 if i % 3 == 0 else y for i, y in enumerate(labels)]
    tok = AutoTokenizer.from_pretrained(tiny_base)
    m = get_peft_model(AutoModelForSequenceClassification.from_pretrained(tiny_base), peft_config("lora"))
    fit(m, tok, texts, labels, epochs=2, lr=5e-3, batch_size=32, max_length=32, seed=0)
    adapter = tmp_path / "suspect-adapter"
    m.save_pretrained(adapter)
    out = tmp_path / "psim"
    meta = flow.train(model=str(tiny_base), adapter=adapter, data=task_data, text_col="text", label_col="label", out=out, epochs=1, peft="lora")
    assert set(meta["adapter_sha256"]) == {"adapter_config.json", "adapter_model.safetensors"}
    assert Guard.load(out).confidence(["the film was good"]).shape == (1,)
    (adapter / "adapter_model.safetensors").write_bytes((adapter / "adapter_model.safetensors").read_bytes() + b" ")
    with pytest.raises(UsageError, match="changed since PSIM training"):
        Guard.load(out)


def test_label_reset_is_uniform_over_k_classes():
    from hubaudit.psim.train import reset_labels

    y = np.array(reset_labels(6000, 3, seed=0))
    assert set(y.tolist()) == {0, 1, 2}
    assert np.allclose(np.bincount(y) / y.size, 1 / 3, atol=0.03)
