"""Real adapters written by peft (tiny models built from configs, a few training steps on random
tokens): every LoRA feature scans ok and matches peft's own ``get_delta_weight``."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
peft = pytest.importorskip("peft")
transformers = pytest.importorskip("transformers")

from peft import LoraConfig, get_peft_model  # noqa: E402
from peft.tuners.lora import LoraLayer  # noqa: E402

from hubaudit.stats import scan_path  # noqa: E402

pytestmark = pytest.mark.slow  # trains real adapters (about 10 s on one core)

LLAMA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def _llama():
    cfg = transformers.LlamaConfig(
        vocab_size=96, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
    )  # fmt: skip
    torch.manual_seed(0)
    return transformers.LlamaForCausalLM(cfg)


def _gpt2():
    cfg = transformers.GPT2Config(vocab_size=96, n_embd=32, n_layer=2, n_head=4, n_positions=64)
    torch.manual_seed(0)
    return transformers.GPT2LMHeadModel(cfg)


def _train_and_save(model, config: LoraConfig, out: Path, steps: int = 4):
    """A few real optimizer steps (B starts at zero) on random tokens, then save_pretrained."""
    pm = get_peft_model(model, config)
    opt = torch.optim.Adam([p for p in pm.parameters() if p.requires_grad], lr=5e-2)
    gen = torch.Generator().manual_seed(1)
    for _ in range(steps):
        ids = torch.randint(0, 96, (4, 12), generator=gen)
        loss = pm(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    pm.save_pretrained(out)
    return pm


def _reference(pm) -> dict[str, tuple[float, float, int, int]]:
    """module → (f_m from peft's get_delta_weight, scaling, d_in, d_out)."""
    out = {}
    for name, mod in pm.named_modules():
        if isinstance(mod, LoraLayer) and ("default" in mod.lora_A or "default" in mod.lora_embedding_A):
            with torch.no_grad():
                dw = mod.get_delta_weight("default").double()
            key = name.removeprefix("base_model.model.")
            out[key] = (float(dw.norm() / math.sqrt(dw.numel())), mod.scaling["default"], mod.in_features, mod.out_features)
    return out


VARIANTS = {
    "plain": (_llama, dict(r=4, lora_alpha=8, target_modules=LLAMA_TARGETS)),
    "rslora": (_llama, dict(r=4, lora_alpha=8, use_rslora=True, target_modules=LLAMA_TARGETS)),
    "dora": (_llama, dict(r=4, lora_alpha=8, use_dora=True, target_modules=["q_proj", "v_proj", "down_proj"])),
    "modules_to_save": (_llama, dict(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], modules_to_save=["lm_head"])),
    "patterns": (_llama, dict(r=4, lora_alpha=8, target_modules=LLAMA_TARGETS,
                              rank_pattern={"q_proj": 2, "layers.1.mlp.down_proj": 6},
                              alpha_pattern={"v_proj": 32, r"layers\.0\..*up_proj": 3})),
    "fan_in_fan_out": (_gpt2, dict(r=4, lora_alpha=16, fan_in_fan_out=True, target_modules=["c_attn", "c_proj", "c_fc"])),
    "lora_bias": (_llama, dict(r=4, lora_alpha=8, lora_bias=True, target_modules=["q_proj", "down_proj"])),
    "embedding": (_llama, dict(r=4, lora_alpha=8, target_modules=["embed_tokens", "q_proj", "v_proj"])),
}  # fmt: skip


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Each variant trained and saved once for the whole module."""
    out = {}
    for name, (build, kwargs) in VARIANTS.items():
        d = tmp_path_factory.mktemp(name)
        pm = _train_and_save(build(), LoraConfig(**kwargs), d)
        out[name] = (d, pm, _reference(pm))
    return out


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_scan_matches_peft_delta_weight(variant, trained):
    d, _, ref = trained[variant]
    res = scan_path(d)
    assert res.status == "ok", res.error
    got = {m.name: m for m in res.modules}
    assert set(got) == set(ref)
    for name, (f, s, d_in, d_out) in ref.items():
        m = got[name]
        assert m.frob_norm > 0, name  # trained: B moved off zero
        assert m.frob_norm == pytest.approx(f, rel=1e-6), name
        assert m.scaling == pytest.approx(s, rel=1e-12), name
        assert (m.d_in, m.d_out) == (d_in, d_out), name
    assert res.content_sha256 and res.file_bytes == (d / "adapter_model.safetensors").stat().st_size


def test_variant_specifics(trained):
    res = {v: scan_path(trained[v][0]) for v in VARIANTS}
    assert res["plain"].variant == "lora" and res["rslora"].variant == "rslora"
    assert res["plain"].n_modules == 14 and res["plain"].rank == 4
    assert set(res["plain"].target_modules) == set(LLAMA_TARGETS)

    dora = res["dora"]
    assert dora.variant == "dora" and set(dora.dora_magnitudes) == {m.name for m in dora.modules}
    pm = trained["dora"][1]
    for name, mod in pm.named_modules():
        if isinstance(mod, LoraLayer):
            mean = float(mod.lora_magnitude_vector["default"].weight.detach().double().mean())
            assert dora.dora_magnitudes[name.removeprefix("base_model.model.")] == pytest.approx(mean, rel=1e-6)

    saved = res["modules_to_save"].modules_to_save
    assert [t.name for t in saved] == ["base_model.model.lm_head.weight"]
    assert saved[0].shape == (96, 32) and saved[0].nbytes == 96 * 32 * 4

    ranks = {m.name: m.rank for m in res["patterns"].modules}
    assert ranks["model.layers.0.self_attn.q_proj"] == 2 and ranks["model.layers.1.mlp.down_proj"] == 6
    assert ranks["model.layers.0.mlp.down_proj"] == 4
    assert not any("differs from the config" in w for w in res["patterns"].warnings)

    gpt = {m.name: m for m in res["fan_in_fan_out"].modules}
    assert (gpt["transformer.h.0.attn.c_attn"].d_in, gpt["transformer.h.0.attn.c_attn"].d_out) == (32, 96)
    assert (gpt["transformer.h.0.mlp.c_proj"].d_in, gpt["transformer.h.0.mlp.c_proj"].d_out) == (128, 32)
    assert {"attn_frobN_mean", "mlp_frobN_mean", "attn_mlp_frobN_ratio"} <= set(res["fan_in_fan_out"].features)

    assert any("lora_B.bias" in w for w in res["lora_bias"].warnings)
    assert not any("lora_B.bias" in w for w in res["plain"].warnings)
    assert res["lora_bias"].n_modules == 4 and not res["lora_bias"].modules_to_save

    emb = {m.name: m for m in res["embedding"].modules}
    e = emb["model.embed_tokens"]
    assert e.kind == "embedding" and (e.d_in, e.d_out) == (96, 32)
    assert res["embedding"].n_modules == 4  # the score pools the linear LoRA modules (paper's key filter)


def test_conv2d_lora_matches_peft(tmp_path):
    """Conv LoRA (A (r, in, kh, kw), B (out, r, 1, 1)) is the matrix B·A over flattened kernels."""

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 6, 3)
            self.head = torch.nn.Linear(6, 2)

        def forward(self, x):
            return self.head(self.conv(x).mean(dim=(2, 3)))

    torch.manual_seed(0)
    pm = get_peft_model(Net(), LoraConfig(r=2, lora_alpha=4, target_modules=["conv"]))
    opt = torch.optim.Adam([p for p in pm.parameters() if p.requires_grad], lr=5e-2)
    for _ in range(3):
        loss = pm(torch.randn(4, 3, 8, 8)).pow(2).mean()
        loss.backward()
        opt.step()
        opt.zero_grad()
    pm.save_pretrained(tmp_path)
    (f, s, _, _), = _reference(pm).values()
    res = scan_path(tmp_path)
    assert res.status == "ok", res.error
    (m,) = res.modules
    assert (m.d_in, m.d_out, m.rank) == (3 * 3 * 3, 6, 2)
    assert m.frob_norm == pytest.approx(f, rel=1e-6) and m.scaling == pytest.approx(s)
