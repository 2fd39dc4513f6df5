"""Crawl throughput against the loopback Hub with injected latency.

    .venv/bin/python benchmarks/bench_crawl.py [--n 2000] [--latency 0.05] [--baseline-n 100]

Measures, in one run on one machine:
  * adapters/min of `hubaudit crawl` with default settings over N small adapters, every request
    delayed by LATENCY seconds (target: >= 1,000/min at N=2000, 50 ms);
  * the cost of a re-crawl where nothing changed: requests (all listing pages) and seconds;
  * a baseline: the same crawl with --workers 1 (sequential) over a subset, and the ratio.
The crawler runs as a subprocess (its own interpreter, as a user runs it); the Hub runs here.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hubaudit.demo.fakehub import FakeHub

BASE = "bench/Base-1B"
BASELINE_BASE = "bench/Base-1B-subset"


def _crawl(hub: FakeHub, base: str, home: Path, *args: str) -> tuple[dict, float]:
    env = dict(os.environ, HF_ENDPOINT=hub.url, HUBAUDIT_HOME=str(home), HF_HOME=str(home / "hf"),
               HF_HUB_DISABLE_TELEMETRY="1", HF_HUB_DISABLE_XET="1", HF_HUB_DISABLE_PROGRESS_BARS="1")
    env.pop("HF_TOKEN", None)
    env.pop("HUBAUDIT_DB_URL", None)
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "hubaudit", "crawl", "--base", base, "--format", "json", *args],
                          env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"crawl failed ({proc.returncode}): {proc.stderr.strip()}")
    return json.loads(proc.stdout), wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--latency", type=float, default=0.05)
    ap.add_argument("--baseline-n", type=int, default=100)
    ap.add_argument("--download-path", action="store_true",
                    help="also crawl with --whole-file-kb 0 (bodies via hf_hub_download HEAD+GET, as for MB-size adapters)")
    a = ap.parse_args()

    with FakeHub(latency=a.latency) as hub, tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        for i in range(a.n):
            hub.add_adapter(f"user{i}/lora-{i}", BASE, seed=i)
        for i in range(a.baseline_n):
            hub.add_adapter(f"sub{i}/lora-{i}", BASELINE_BASE, seed=100_000 + i)
        size = len(hub.repos["user0/lora-0"].files("main")["adapter_model.safetensors"].data)
        print(f"hub: {a.n} + {a.baseline_n} adapters ({size} B weights each) built in {time.perf_counter() - t0:.1f}s; "
              f"latency {a.latency * 1000:.0f} ms/request")

        home = Path(tmp) / "home"
        hub.reset_log()
        base_sum, base_wall = _crawl(hub, BASELINE_BASE, Path(tmp) / "home-baseline", "--workers", "1")
        base_rate = base_sum["scored"] / base_wall * 60
        base_reqs = hub.count()
        print(f"baseline  --workers 1 over {a.baseline_n}: scored {base_sum['scored']} in {base_wall:.1f}s "
              f"= {base_rate:,.0f} adapters/min ({base_reqs / max(base_sum['fetched'], 1):.1f} requests/adapter)")

        hub.reset_log()
        full_sum, full_wall = _crawl(hub, BASE, home)
        rate = full_sum["scored"] / full_wall * 60
        reqs = hub.count()
        print(f"default   (workers 8) over {a.n}: scored {full_sum['scored']} in {full_wall:.1f}s "
              f"(crawl itself {full_sum['duration_s']:.1f}s) = {rate:,.0f} adapters/min, {reqs} requests "
              f"[target >= 1,000/min] -> {'MET' if rate >= 1000 else 'NOT MET'}")
        print(f"speed-up vs baseline: {rate / base_rate:.1f}x")

        if a.download_path:
            hub.reset_log()
            dl_sum, dl_wall = _crawl(hub, BASE, Path(tmp) / "home-download", "--whole-file-kb", "0")
            dl_rate = dl_sum["scored"] / dl_wall * 60
            print(f"download path (--whole-file-kb 0, workers 8) over {a.n}: scored {dl_sum['scored']} in {dl_wall:.1f}s "
                  f"= {dl_rate:,.0f} adapters/min, {hub.count() / max(dl_sum['fetched'], 1):.1f} requests/adapter, "
                  f"{dl_rate / base_rate:.1f}x baseline")

        hub.reset_log()
        again_sum, again_wall = _crawl(hub, BASE, home)
        listing = hub.count("list")
        print(f"re-crawl, nothing changed: {hub.count()} requests ({listing} listing pages, "
              f"{hub.count() - listing} other), new {again_sum['new']}, {again_wall:.1f}s wall "
              f"(crawl itself {again_sum['duration_s']:.1f}s) vs {full_wall:.1f}s for the first crawl "
              f"= {full_wall / again_wall:.1f}x cheaper")


if __name__ == "__main__":
    main()
