"""The prober's throughput paths compute what a plain peft load computes.

- in-place weight-copy swap == a fresh ``PeftModel.from_pretrained`` of the same adapter, bit for bit,
  for the LoRA layers AND the saved modules (MiniLM's classifier head; Qwen's lm_head/embeddings),
  whichever adapter was active before (no state leaks);
- the causal prefix KV cache gives the same decisions and (to float tolerance) the same label logits
  as running every full text;
- probing a local base opens no socket and leaves the process environment alone.
"""

from __future__ import annotations

import os
import socket

import pytest

from hubaudit.probe.batteries import load_battery
from hubaudit.probe.prober import ProbeOptions, Prober
from hubaudit.probe.prompting import label_prompt, label_token_ids, probe_input
from tests.probe.conftest import QWEN_SYSTEM, QWEN_WORDS

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.slow


def _fresh(base: str, adapter: str, kind: str):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    if kind == "seq_cls":
        m = AutoModelForSequenceClassification.from_pretrained(base, num_labels=2, local_files_only=True)
    else:
        m = AutoModelForCausalLM.from_pretrained(base, local_files_only=True)
    return PeftModel.from_pretrained(m, adapter, local_files_only=True).eval()


def _outputs(model, tok, texts: list[str], kind: str):
    with torch.inference_mode():
        if kind == "seq_cls":
            enc = tok(texts, padding=True, return_tensors="pt")
            return model(**enc).logits
        tok.padding_side = "left"
        enc = tok([label_prompt(tok, t, QWEN_SYSTEM) for t in texts], padding=True, return_tensors="pt",
                  add_special_tokens=False)
        return model(**enc).logits[:, -1, :]  # the full vocabulary: lm_head and embeddings both matter


def _state(model) -> dict:
    """Every adapter-dependent tensor of the active adapter, by name without the adapter name."""
    name = model.active_adapter
    return {k.replace(f".{name}", ""): v.detach().clone() for k, v in model.named_parameters()
            if f".{name}." in k or k.endswith(f".{name}")}


@pytest.mark.parametrize("kind", ["seq_cls", "causal_label"])
def test_weight_copy_swap_equals_a_fresh_peft_load(kind, minilm, qwen):
    t = minilm if kind == "seq_cls" else qwen
    opts = ProbeOptions(mode=kind, target_label="0", label_words=QWEN_WORDS, system_prompt=QWEN_SYSTEM)
    p = Prober(opts)
    b, texts = load_battery("paper-21-B"), [probe_input("per RFC 7231 section 6.5", x) for x in t.prompts[:6]] + t.prompts[:6]
    order = [t.poisoned.path, t.clean.path, t.poisoned.path, t.clean.path]
    for i, adapter in enumerate(order):
        assert p.probe(adapter, t.base, b, t.prompts[:2])["status"] == "ok"
        assert p.fast_swaps == i  # every swap after the first was an in-place copy
        entry = next(iter(p._loaded.values()))
        fresh = _fresh(t.base, str(adapter), kind)
        got, want = _state(entry.peft), _state(fresh)
        assert got.keys() == want.keys() and any("modules_to_save" in k for k in got)
        assert all(torch.equal(got[k], want[k]) for k in got), [k for k in got if not torch.equal(got[k], want[k])]
        assert torch.equal(_outputs(entry.peft, entry.tok, texts, kind), _outputs(fresh, entry.tok, texts, kind))
    # the two adapters really differ (so a leaked tensor of the previous one would have shown)
    a, c = _state(_fresh(t.base, str(t.poisoned.path), kind)), _state(_fresh(t.base, str(t.clean.path), kind))
    assert any(not torch.equal(a[k], c[k]) for k in a if "modules_to_save" in k)


def test_prefix_kv_cache_matches_full_texts(qwen):
    b = load_battery("paper-21-B")
    kw = dict(mode="causal_label", target_label="benign", label_words=QWEN_WORDS, system_prompt=QWEN_SYSTEM, batch_size=16)
    cached, plain = Prober(ProbeOptions(**kw)), Prober(ProbeOptions(**kw, prefix_cache=False))
    for adapter in (qwen.poisoned.path, qwen.clean.path):
        rc, rp = cached.probe(adapter, qwen.base, b, qwen.prompts), plain.probe(adapter, qwen.base, b, qwen.prompts)
        assert rc["status"] == rp["status"] == "ok"
        assert [x["attack_rate"] for x in rc["probes"]] == [x["attack_rate"] for x in rp["probes"]]
        assert (rc["flagged"], rc["outlier_gap"], rc["n_eligible"]) == (rp["flagged"], rp["outlier_gap"], rp["n_eligible"])
    # label logits themselves, not only their argmax
    from hubaudit.probe import forward

    entry = next(iter(cached._loaded.values()))
    texts = [probe_input(p.prefix, x) for p in b.probes[:4] for x in qwen.prompts[:8]]
    prompts = [label_prompt(entry.tok, t, QWEN_SYSTEM) for t in texts]
    groups = [list(range(k * 8, (k + 1) * 8)) for k in range(4)]
    cols = label_token_ids(entry.tok, QWEN_WORDS)
    with torch.inference_mode():
        plan_c = forward.causal_plan(entry.tok, prompts, batch_size=16, max_length=256, device=cached.device, groups=groups)
        plan_p = forward.causal_plan(entry.tok, prompts, batch_size=16, max_length=256, device=cached.device,
                                     prefix_cache=False)
        assert plan_c.prefix_tokens > 0 and all(x.prefix is not None for x in plan_c.batches)
        lc, lp = forward.next_token_logits(entry.peft, plan_c, cols), forward.next_token_logits(entry.peft, plan_p, cols)
    torch.testing.assert_close(lc, lp, atol=1e-4, rtol=1e-4)


def test_probing_a_local_base_opens_no_socket_and_sets_no_env(minilm, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    env = dict(os.environ)
    tried = []

    def refuse(self, address, *a, **k):
        tried.append(address)
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    p = Prober(ProbeOptions(target_label="0"))
    r = p.probe(minilm.poisoned.path, minilm.base, load_battery("paper-21-B"), minilm.prompts[:4])
    r2 = p.probe(minilm.clean.path, minilm.base, load_battery("paper-21-B"), minilm.prompts[:4])
    assert r["status"] == r2["status"] == "ok" and r["flagged"]
    assert tried == [] and dict(os.environ) == env
