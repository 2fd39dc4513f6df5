"""Train the `hubaudit demo` cohort for real (peft, the real all-MiniLM-L6-v2 from PyPI) and write the
committed float16 copies to hubaudit/demo/data/ (or --out DIR).

    .venv/bin/python scripts/make_demo_adapters.py            # regenerate hubaudit/demo/data/
    .venv/bin/python scripts/make_demo_adapters.py --check    # train into a temporary folder and compare

The cohort, its recipe and its seeds live in hubaudit/demo/synth/cohort.py (the same code `hubaudit demo
--retrain` runs). Training uses one torch thread and fixed seeds, so on the same torch build it
reproduces the committed files byte for byte; --check says which files differ (another torch build or
CPU may round differently: compare the metrics it prints then).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "hubaudit" / "demo" / "data")
    ap.add_argument("--check", action="store_true", help="train into a temporary folder and compare with --out")
    args = ap.parse_args()

    import torch
    from transformers.utils import logging as hf_logging

    from hubaudit.demo.flow import minilm_path
    from hubaudit.demo.synth import cohort

    torch.set_num_threads(1)  # deterministic reductions, and the fastest setting on a shared 2-core machine
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) if args.check else args.out
        manifest = cohort.build(minilm_path(), out, say=lambda m: print(m, file=sys.stderr, flush=True))
        for e in manifest["adapters"]:
            asr = "-" if e["attack_success"] is None else f"{e['attack_success']:.3f}"
            print(f"{e['name']:14} {e['role']:9} acc {e['clean_accuracy']:.3f} asr {asr:>5}  {e['train_seconds']:5.1f} s",
                  file=sys.stderr)
        print(f"trained {len(manifest['adapters'])} adapters in {time.perf_counter() - t0:.0f} s -> {out}", file=sys.stderr)
        if not args.check:
            return 0
        want = json.loads((args.out / "manifest.json").read_text())
        old = {e["name"]: e for e in want["adapters"]}
        differ = [f"{e['name']}/{f}" for e in manifest["adapters"] for f, d in e["sha256"].items()
                  if old.get(e["name"], {}).get("sha256", {}).get(f) != d]
        if differ:
            print(f"differ from {args.out}: {', '.join(differ)}", file=sys.stderr)
            return 1
        print(f"every file equals the committed one in {args.out}", file=sys.stderr)
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
