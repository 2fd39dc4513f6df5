"""Benchmark of the streaming weight scanner (`hubaudit scan`); not a test.

    .venv/bin/python benchmarks/bench_scan.py [--repeat 5] [--keep DIR]

Measures, on synthetic adapters written to a temp dir (warm page cache for every contender):
  1. a Qwen2.5-1.5B-shaped LoRA (28 layers × q,k,v,o,gate,up,down; hidden 1536, kv 256,
     intermediate 8960; r=16; fp32; ~74 MB): hubaudit scan_path vs the naive route (torch:
     load the file, materialize B@A per module in float32, torch.linalg.norm) vs the floor
     (read every byte of the file once, 8 MiB buffer);
  2. peak RSS growth while scanning the same shapes at r=64 (~295 MB), in a fresh subprocess
     (VmHWM before/after the scan);
  3. adapters per second for 200 small adapters (MiniLM-like: 6 layers × q,k,v,o; 384; r=8)
     scanned in one process.
Targets (DESIGN §2): ≥40× faster than naive, ≤2.5× the read floor, ≤100 MB peak RSS growth.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from hubaudit.stats import scan_path  # noqa: E402

QWEN_15B = {  # projection: (d_in, d_out)
    "self_attn.q_proj": (1536, 1536), "self_attn.k_proj": (1536, 256), "self_attn.v_proj": (1536, 256),
    "self_attn.o_proj": (1536, 1536), "mlp.gate_proj": (1536, 8960), "mlp.up_proj": (1536, 8960),
    "mlp.down_proj": (8960, 1536),
}  # fmt: skip
MINILM = {"attention.self.query": (384, 384), "attention.self.key": (384, 384),
          "attention.self.value": (384, 384), "attention.output.dense": (384, 384)}  # fmt: skip


def make_adapter(d: Path, shapes: dict, layers: int, r: int, prefix: str, seed: int = 0) -> Path:
    """Write adapter_model.safetensors (fp32) + adapter_config.json; tensors written one by one."""
    from safetensors.numpy import save_file

    rng = np.random.default_rng(seed)
    d.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for layer in range(layers):
        for proj, (d_in, d_out) in shapes.items():
            base = f"base_model.model.{prefix}.{layer}.{proj}"
            tensors[f"{base}.lora_A.weight"] = rng.standard_normal((r, d_in), dtype=np.float32) * 0.02
            tensors[f"{base}.lora_B.weight"] = rng.standard_normal((d_out, r), dtype=np.float32) * 1e-3
    save_file(tensors, str(d / "adapter_model.safetensors"), metadata={"format": "pt"})
    targets = sorted({p.rsplit(".", 1)[-1] for p in shapes})
    cfg = {"peft_type": "LORA", "r": r, "lora_alpha": r, "target_modules": targets}
    (d / "adapter_config.json").write_text(json.dumps(cfg))
    return d


def naive(d: Path) -> float:
    """The route DESIGN §2 avoids: materialize ΔW per module in torch float32."""
    import torch
    from safetensors.torch import load_file

    sd = load_file(str(d / "adapter_model.safetensors"))
    f = []
    for k, a in sd.items():
        if k.endswith(".lora_A.weight"):
            b = sd[k.replace("lora_A", "lora_B")]
            dw = b.float() @ a.float()
            f.append(float(torch.linalg.norm(dw)) / dw.numel() ** 0.5)
    return float(np.std(f))


def read_floor(d: Path) -> int:
    """Read every byte once into a reused 8 MiB buffer: what any scanner must at least do."""
    buf = bytearray(8 << 20)
    n = 0
    with open(d / "adapter_model.safetensors", "rb", buffering=0) as fh:
        while k := fh.readinto(buf):
            n += k
    return n


def read_sha256_floor(d: Path) -> str:
    """Read every byte once and sha256 it: the floor for a scanner that reports a content hash."""
    import hashlib

    buf = bytearray(8 << 20)
    h = hashlib.sha256()
    with open(d / "adapter_model.safetensors", "rb", buffering=0) as fh:
        while k := fh.readinto(buf):
            h.update(memoryview(buf)[:k])
    return h.hexdigest()


def best_of(fn, repeat: int) -> tuple[float, float, float]:
    """(median wall, min wall, median CPU) seconds over ``repeat`` runs after one warm-up run.

    CPU time (all threads of this process) is reported too: on a shared, oversubscribed host it
    is far steadier than wall time.
    """
    fn()
    walls, cpus = [], []
    for _ in range(repeat):
        c0, t0 = time.process_time(), time.perf_counter()
        fn()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return statistics.median(walls), min(walls), statistics.median(cpus)


RSS_CHILD = r"""
import sys, json
sys.path.insert(0, sys.argv[1])
from hubaudit.stats import scan_path
def hwm():
    for line in open('/proc/self/status'):
        if line.startswith('VmHWM:'):
            return int(line.split()[1]) * 1024
scan_path(sys.argv[3])              # warm-up on a small adapter: imports, BLAS buffers
before = hwm()
res = scan_path(sys.argv[2])
after = hwm()
print(json.dumps({"before": before, "after": after, "status": res.status, "bytes": res.file_bytes}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--n-small", type=int, default=200)
    ap.add_argument("--keep", type=Path, default=None, help="write adapters here instead of a temp dir")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-scan-") as tmp:
        root = args.keep or Path(tmp)
        qwen = make_adapter(root / "qwen15b-r16", QWEN_15B, 28, 16, "model.layers")
        size = (qwen / "adapter_model.safetensors").stat().st_size
        res = scan_path(qwen)
        assert res.status == "ok" and res.n_modules == 196, res.error
        ref = naive(qwen)
        # float32 accumulation over ~14M entries drifts (~6e-4 per module on gate/up/down); report it
        naive_rel_err = abs(ref - res.score) / res.score
        assert naive_rel_err < 1e-2, (ref, res.score)

        t_scan = best_of(lambda: scan_path(qwen), args.repeat)
        t_nohash = best_of(lambda: scan_path(qwen, hash_content=False), args.repeat)
        t_naive = best_of(lambda: naive(qwen), args.repeat)
        t_floor = best_of(lambda: read_floor(qwen), args.repeat)
        t_shafloor = best_of(lambda: read_sha256_floor(qwen), args.repeat)

        big = make_adapter(root / "qwen15b-r64", QWEN_15B, 28, 64, "model.layers")
        small0 = make_adapter(root / "small-0", MINILM, 6, 8, "bert.encoder.layer")
        out = subprocess.run(
            [sys.executable, "-c", RSS_CHILD, str(REPO), str(big), str(small0)],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        rss = json.loads(out.stdout)
        assert rss["status"] == "ok"
        (big / "adapter_model.safetensors").unlink()

        smalls = [small0] + [
            make_adapter(root / f"small-{i}", MINILM, 6, 8, "bert.encoder.layer", seed=i) for i in range(1, args.n_small)
        ]
        t0 = time.perf_counter()
        statuses = [scan_path(p).status for p in smalls]
        t_small = time.perf_counter() - t0
        assert set(statuses) == {"ok"}

    mb = size / 1e6
    growth = (rss["after"] - rss["before"]) / 2**20
    def fmt(t: tuple[float, float, float]) -> str:
        return f"{t[0] * 1e3:8.1f} ms / {t[1] * 1e3:8.1f} ms / {t[2] * 1e3:8.1f} ms"

    rows = [
        ("adapter", f"Qwen2.5-1.5B shape, r=16, fp32, 196 modules, {mb:.1f} MB"),
        ("timings", "  median wall / min wall / median CPU"),
        ("hubaudit scan", fmt(t_scan) + f"  ({mb / t_scan[0]:.0f} MB/s)"),
        ("hubaudit scan, hash_content=False", fmt(t_nohash)),
        ("naive torch B@A", fmt(t_naive)),
        ("read-once floor", fmt(t_floor) + f"  ({mb / t_floor[0]:.0f} MB/s)"),
        ("read+sha256 floor", fmt(t_shafloor)),
        ("speed-up vs naive (target >= 40x)", f"{t_naive[0] / t_scan[0]:8.1f}x wall, {t_naive[2] / t_scan[2]:.1f}x CPU"),
        ("scan / read floor (target <= 2.5x)", f"{t_scan[0] / t_floor[0]:8.2f}x wall, {t_scan[2] / t_floor[2]:.2f}x CPU"),
        ("scan / read+sha256 floor", f"{t_scan[0] / t_shafloor[0]:8.2f}x wall, {t_scan[2] / t_shafloor[2]:.2f}x CPU"),
        ("scan without hash / read floor", f"{t_nohash[0] / t_floor[0]:8.2f}x wall, {t_nohash[2] / t_floor[2]:.2f}x CPU"),
        ("naive fp32 score vs hubaudit fp64", f"{naive_rel_err:8.1e} relative difference"),
        ("peak RSS growth, r=64 adapter", f"{growth:8.1f} MiB while scanning {rss['bytes'] / 1e6:.0f} MB (target <= 100)"),
        (f"{len(smalls)} small adapters, one process", f"{len(smalls) / t_small:8.0f} adapters/s ({t_small:.2f} s total)"),
    ]
    width = max(len(k) for k, _ in rows)
    print(f"{'measure':<{width}}  value")
    print("-" * (width + 60))
    for k, v in rows:
        print(f"{k:<{width}}  {v}")


if __name__ == "__main__":
    main()
