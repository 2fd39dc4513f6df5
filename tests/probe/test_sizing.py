"""The inversion's chunk size (probe/sizing.py): pure arithmetic, the CUDA branch fed a stand-in torch.cuda."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hubaudit.probe.sizing import (
    CPU_CAP,
    MAX_ROWS,
    ModelShape,
    bytes_per_candidate,
    chunk_size,
    free_bytes,
    inversion_chunk,
)

GiB = 2**30
# Qwen2.5-1.5B: 28 layers, 12 query / 2 key-value heads of 128, hidden 1536, MLP 8960, vocabulary 151,936, bf16
QWEN15 = ModelShape(layers=28, kv_heads=2, head_dim=128, vocab=151_936, dtype_bytes=2, hidden=1536, intermediate=8960)


def test_qwen25_1p5b_bytes_and_chunk():
    assert QWEN15.kv_bytes_per_token == 28 * 2 * 2 * 128 * 2 == 28_672
    # n = 8 prompts padded to 48 tokens, 6 steps: per row the KV peak (2 caches of 54 tokens while the next
    # chunk tiles 2 of 48), the vocabulary rows (4 float32 + the bf16 logits) and one token's activations
    row = 28_672 * (4 * 48 + 2 * 6) + 151_936 * 18 + (4 * 1536 + 3 * 8960) * 2
    per = 8 * row + 8 * 151_936
    assert bytes_per_candidate(QWEN15, prompt_len=48, steps=6, n_prompts=8) == per
    assert per / 2**20 == pytest.approx(67.15, abs=0.01)  # MiB per candidate
    # an H200 with 135 GiB free: half of it, ~1000 candidates (8000 rows a forward)
    got = chunk_size(QWEN15, prompt_len=48, steps=6, n_prompts=8, free=135 * GiB)
    assert got == int(135 * GiB * 0.5) // per == 1029
    # a 24 GiB card with the 3 GiB model loaded
    assert chunk_size(QWEN15, prompt_len=48, steps=6, n_prompts=8, free=21 * GiB) == 160


def test_from_config_reads_a_qwen2_config():
    transformers = pytest.importorskip("transformers")
    cfg = transformers.Qwen2Config(vocab_size=151_936, hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
                                   num_attention_heads=12, num_key_value_heads=2)
    assert ModelShape.from_config(cfg, 2) == QWEN15


def test_floor_cap_and_row_limit():
    kw = dict(prompt_len=48, steps=6, n_prompts=8)
    assert chunk_size(QWEN15, free=0, **kw) == 1  # never below one candidate
    assert chunk_size(QWEN15, free=-5, **kw) == 1
    assert chunk_size(QWEN15, free=10**15, cap=CPU_CAP, **kw) == CPU_CAP
    tiny = ModelShape(layers=2, kv_heads=2, head_dim=24, vocab=1000, dtype_bytes=4)
    assert chunk_size(tiny, free=10**15, **kw) == MAX_ROWS // 8  # the CUDA kernels' batch limit, not memory


@given(a=st.integers(0, 2**40), b=st.integers(0, 2**40), n=st.integers(1, 64), L=st.integers(1, 4096),
       s=st.integers(1, 32), frac=st.floats(0.05, 1.0))
def test_monotone_in_memory_and_within_budget(a, b, n, L, s, frac):
    lo, hi = sorted((a, b))
    kw = dict(prompt_len=L, steps=s, n_prompts=n, fraction=frac)
    c_lo, c_hi = chunk_size(QWEN15, free=lo, **kw), chunk_size(QWEN15, free=hi, **kw)
    assert 1 <= c_lo <= c_hi and c_hi * n <= max(MAX_ROWS, n)
    if c_hi > 1:  # any chunk above the floor fits the budget
        assert c_hi * bytes_per_candidate(QWEN15, prompt_len=L, steps=s, n_prompts=n) <= hi * frac


@given(L=st.integers(1, 512), s=st.integers(1, 16), n=st.integers(1, 32))
def test_longer_prompts_more_steps_more_prompts_never_grow_the_chunk(L, s, n):
    free = 80 * GiB
    c = chunk_size(QWEN15, prompt_len=L, steps=s, n_prompts=n, free=free)
    assert chunk_size(QWEN15, prompt_len=L + 1, steps=s, n_prompts=n, free=free) <= c
    assert chunk_size(QWEN15, prompt_len=L, steps=s + 1, n_prompts=n, free=free) <= c
    assert chunk_size(QWEN15, prompt_len=L, steps=s, n_prompts=n + 1, free=free) <= c


class _FakeCuda:
    """torch.cuda's memory queries, with fixed figures."""

    def __init__(self, free: int, reserved: int, allocated: int) -> None:
        self.free, self.reserved, self.allocated = free, reserved, allocated

    def mem_get_info(self, device=None) -> tuple[int, int]:
        return self.free, 141 * GiB

    def memory_reserved(self, device=None) -> int:
        return self.reserved

    def memory_allocated(self, device=None) -> int:
        return self.allocated


def test_cuda_free_counts_the_allocators_unused_reserve():
    assert free_bytes("cuda:0", cuda=_FakeCuda(100 * GiB, 10 * GiB, 4 * GiB)) == 106 * GiB
    assert free_bytes("cuda", cuda=_FakeCuda(100 * GiB, 0, 0)) == 100 * GiB
    got = free_bytes("cuda:0", cuda=_FakeCuda(135 * GiB, 0, 0))
    assert chunk_size(QWEN15, prompt_len=48, steps=6, n_prompts=8, free=got) == 1029


def test_cpu_chunk_of_a_real_model_is_capped():
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    cfg = transformers.Qwen2Config(vocab_size=500, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2)
    model = transformers.Qwen2ForCausalLM(cfg)
    assert (free_bytes("cpu") or 0) > 0
    assert inversion_chunk(model, prompt_len=20, steps=6, n_prompts=8, device=torch.device("cpu")) == CPU_CAP


def test_automatic_chunk_inverts_like_an_explicit_one(tiny_qwen2_base):
    """chunk=None (sized here) and a small explicit chunk extend the same candidates to the same targets."""
    torch = pytest.importorskip("torch")
    peft = pytest.importorskip("peft")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from hubaudit.probe.invert import InversionConfig, invert

    tok = AutoTokenizer.from_pretrained(str(tiny_qwen2_base), local_files_only=True)
    tok.padding_side = "left"
    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(str(tiny_qwen2_base), local_files_only=True)
    model = peft.get_peft_model(base, peft.LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    model.eval()
    prompts = ["what is the weather like today", "summarise this article please", "write a short poem"]
    auto = invert(model, tok, prompts, InversionConfig(n_prompts=3, steps=3, min_steps=1, prefilter=40, trigger=False))
    fixed = invert(model, tok, prompts, InversionConfig(n_prompts=3, steps=3, min_steps=1, prefilter=40, chunk=7,
                                                         trigger=False))
    assert auto.config["chunk"] is None and auto.n_scanned == fixed.n_scanned == 40
    assert [t["token_ids"] for t in auto.top] == [t["token_ids"] for t in fixed.top]
    assert [t["score"] for t in auto.top] == pytest.approx([t["score"] for t in fixed.top], abs=1e-5)
