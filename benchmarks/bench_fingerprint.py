"""Benchmark of the adapter fingerprint computed in the scan's streaming pass; not a test.

    .venv/bin/python benchmarks/bench_fingerprint.py [--repeat 7] [--n-small 200]

On synthetic adapters written to a temp dir (the shapes of bench_scan.py):
  1. a Qwen2.5-1.5B-shaped LoRA (28 layers × q,k,v,o,gate,up,down; r=16; fp32; ~74 MB):
     ``scan_path`` with the fingerprint (the default) vs ``fingerprint=False`` (the baseline),
     with and without sha256, warm page cache, contenders round-robin, wall and CPU time; the same
     adapter saved as fp16 (projected from its float64 block rounded to float32); plus the first
     scan in a process (the projections are generated then, and cached for the following scans);
  2. what seeding the projections per module name (instead of per shape) would cost: generating
     one Ψ and one Ω per module of that adapter, every scan (nothing to share between modules);
  3. 200 small MiniLM-like adapters (6 layers × 4 attention projections, r=8) in one process;
  4. bytes stored per adapter.
Target: the fingerprint adds a few percent to the scan.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.bench_scan import MINILM, QWEN_15B, Timing, make_adapter, round_robin  # noqa: E402
from hubaudit.stats import fingerprint, scan_path  # noqa: E402


def fresh_projections() -> None:
    """Forget every cached projection chunk (as in a new process)."""
    fingerprint._CACHE = fingerprint._ChunkCache(fingerprint._CACHE_BYTES)


def per_name_cost(repeat: int) -> float:
    """Seconds to generate Ψ (d_out×k) and Ω (d_in×k) for each of the 196 modules (median of ``repeat``)."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for layer in range(28):
            for proj, (d_in, d_out) in QWEN_15B.items():
                for role, n in (("omega", d_in), ("psi", d_out)):
                    fingerprint._gaussian(f"{role} model.layers.{layer}.{proj}".encode(), n * fingerprint.K)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def to_fp16(src: Path, dst: Path) -> Path:
    """The same adapter with every tensor stored as float16."""
    import shutil

    from safetensors.numpy import load_file, save_file

    dst.mkdir(parents=True, exist_ok=True)
    tensors = load_file(str(src / "adapter_model.safetensors"))
    save_file({k: v.astype("float16") for k, v in tensors.items()}, str(dst / "adapter_model.safetensors"))
    shutil.copy(src / "adapter_config.json", dst / "adapter_config.json")
    return dst


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--n-small", type=int, default=200)
    args = ap.parse_args()
    load0 = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-fp-") as tmp:
        root = Path(tmp)
        qwen = make_adapter(root / "qwen15b-r16", QWEN_15B, 28, 16, "model.layers")
        half = to_fp16(qwen, root / "qwen15b-r16-fp16")
        mb = (qwen / "adapter_model.safetensors").stat().st_size / 1e6

        fresh_projections()
        t0 = time.perf_counter()
        first = scan_path(qwen)
        t_first = time.perf_counter() - t0
        assert first.status == "ok" and first.fingerprint is not None and first.fingerprint.n_modules == 196
        t0 = time.perf_counter()
        scan_path(qwen)
        t_second = time.perf_counter() - t0

        warm = round_robin(
            {
                "base": lambda: scan_path(qwen, fingerprint=False),
                "fp": lambda: scan_path(qwen),
                "base_nohash": lambda: scan_path(qwen, hash_content=False, fingerprint=False),
                "fp_nohash": lambda: scan_path(qwen, hash_content=False),
                "half_base": lambda: scan_path(half, fingerprint=False),
                "half_fp": lambda: scan_path(half),
            },
            args.repeat,
        )
        t_names = per_name_cost(3)

        smalls = [make_adapter(root / f"small-{i}", MINILM, 6, 8, "bert.encoder.layer", seed=i) for i in range(args.n_small)]
        small: dict[str, list[float]] = {"base": [], "fp": []}
        for _ in range(3):
            for key, fp in (("base", False), ("fp", True)):
                t0 = time.perf_counter()
                assert all(scan_path(p, fingerprint=fp).status == "ok" for p in smalls)
                small[key].append(time.perf_counter() - t0)
        t_small = {k: statistics.median(v) for k, v in small.items()}
    nbytes = len(first.fingerprint.to_bytes())

    def fmt(t: Timing) -> str:
        return f"{t[0] * 1e3:7.1f} ms / {t[1] * 1e3:7.1f} ms / {t[2] * 1e3:7.1f} ms"

    def ratio(a: Timing, b: Timing) -> str:
        return f"{a[0] / b[0]:.3f}x wall (median), {a[1] / b[1]:.3f}x (min), {a[2] / b[2]:.3f}x CPU"

    w = warm
    rows = [
        ("adapter", f"Qwen2.5-1.5B shape, r=16, fp32, 196 modules, {mb:.1f} MB; k={fingerprint.K}, D={fingerprint.DIM}"),
        ("load average before / after", f"{load0[0]:.2f} / {os.getloadavg()[0]:.2f}"),
        ("WARM page cache", "median wall / min wall / median CPU"),
        ("scan, no fingerprint (baseline)", fmt(w["base"])),
        ("scan with fingerprint", fmt(w["fp"])),
        ("  ratio to baseline", ratio(w["fp"], w["base"])),
        ("scan without sha256, no fingerprint", fmt(w["base_nohash"])),
        ("scan without sha256, with fingerprint", fmt(w["fp_nohash"])),
        ("  ratio to baseline", ratio(w["fp_nohash"], w["base_nohash"])),
        ("fp16 copy: scan, no fingerprint", fmt(w["half_base"])),
        ("fp16 copy: scan with fingerprint", fmt(w["half_fp"])),
        ("  ratio to baseline", ratio(w["half_fp"], w["half_base"])),
        ("first scan in a process (projections made)", f"{t_first * 1e3:7.1f} ms (the next: {t_second * 1e3:.1f} ms)"),
        ("per-module-name seeds instead (every scan)",
         f"{t_names * 1e3:7.1f} ms to generate 196 Ψ and Ω = {t_names / w['base'][0]:.1f}x the baseline scan"),
        (f"{len(smalls)} small adapters, no fingerprint", f"{len(smalls) / t_small['base']:7.0f} adapters/s"),
        (f"{len(smalls)} small adapters, with fingerprint",
         f"{len(smalls) / t_small['fp']:7.0f} adapters/s (ratio of times {t_small['fp'] / t_small['base']:.3f}x)"),
        ("stored per adapter", f"{nbytes} bytes (float16 × {fingerprint.DIM})"),
    ]
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")


if __name__ == "__main__":
    main()
