"""``hubaudit demo``: a fully offline end-to-end run for a newcomer (see hubaudit/demo/flow.py).

stderr: one sentence per step, in order, then a truth table and the command that opens the results.
stdout: ``--format json`` the summary document; ``--format text`` the HTML report's path.
"""

from __future__ import annotations

import math
import os
import sys
from typing import Annotated

import typer

from hubaudit.cli._options import err_console, styled
from hubaudit.cli.app import app
from hubaudit.textsafe import json_dumps, terminal


def _num(v: float | None, fmt: str = ".2f") -> str:
    return "-" if v is None or math.isnan(v) else format(float(v), fmt)


def _row(a: dict) -> str:
    t, p, w = a["truth"], a["probe"], a["weights"]
    truth = "backdoor" if t["poisoned"] else "clean"
    weights = {True: "flagged", False: "pass", None: "n/a"}[w["flagged"]] + ("*" if w["low_confidence"] else "")
    probe = {True: "FLAG", False: "pass", None: "-"}[p["flagged"]]
    by = "+".join(x for x, on in (("battery", p["battery_flagged"]), ("search", p["search_flagged"])) if on) or "-"
    trig = terminal(p["recovered_trigger"]) if p["recovered_trigger"] else "-"
    return (f"{terminal(a['name']):14} {terminal(a['repo_id']):24} {truth:8} {_num(a['clean_accuracy']):>5} "
            f"{_num(a['attack_success']):>5}  {weights:8} {probe:5} {by:14} {trig:8} {p['target_label'] or '-'}")


@app.command("demo")
def demo_cmd(
    workdir: Annotated[str | None, typer.Option("--workdir", help="Where the demo store, cache and report go (default: "
                                                                  "<data dir>/demo).")] = None,
    retrain: Annotated[bool, typer.Option("--retrain", help="Train the 11 adapters again now (about 70 CPU-seconds) "
                                          "instead of using the committed ones.")] = False,
    workers: Annotated[int | None, typer.Option("--workers", min=1, max=16, help="Probe processes (default: 2, or 1 "
                                                  "on a single core); the store's queue splits the adapters.")] = None,
    threads: Annotated[int, typer.Option("--threads", min=1, max=64, help="torch threads per process (1 is fastest "
                                         "on a shared 2-core machine).")] = 1,
    fmt: Annotated[str, typer.Option("--format", "-f", help="text (stdout: the HTML report's path) or "
                                                            "json (the summary).")] = "text",
) -> None:
    """Audit 7 LoRA adapters of the real all-MiniLM-L6-v2 (4 clean, 3 backdoored by data poisoning)
    end to end and offline: publish them on a Hub-compatible server on 127.0.0.1, crawl, score and
    calibrate their weights, calibrate the probe thresholds on 4 known-clean reference adapters,
    probe every audited adapter (battery, then blind trigger search), write the HTML report,
    and print the `hubaudit report` command that opens the results.
    """
    from pathlib import Path

    import platformdirs

    from hubaudit.demo.flow import DemoOptions, run_demo
    from hubaudit.errors import UsageError
    from hubaudit.settings import Settings

    if fmt not in ("text", "json"):
        raise UsageError("--format must be text or json")
    settings = Settings.from_env()
    wd = Path(workdir).expanduser() if workdir else settings.home / "demo"
    cache = Path(platformdirs.user_cache_dir("hubaudit"))
    if "HUBAUDIT_HOME" in os.environ:
        cache = settings.home / "cache"  # keep an isolated home (tests, CI) self-contained
    n = workers or min(2, os.cpu_count() or 1)
    result = run_demo(DemoOptions(workdir=wd, cache_dir=cache, retrain=retrain, threads=threads, workers=n),
                      say=lambda m: err_console.print(styled("demo:", "dim", m)))
    err_console.print("")
    err_console.print(f"{'adapter':14} {'repo':24} {'truth':8} {'acc':>5} {'ASR':>5}  {'weights':8} {'probe':5} "
                      f"{'flagged by':14} {'trigger':8} target")
    for a in result.adapters:
        err_console.print(_row(a))
    t = result.timings
    err_console.print("* weights verdict from a low-confidence fit (too few adapters for its target FPR)"
                      if any(a["weights"]["low_confidence"] for a in result.adapters) else "")
    err_console.print(f"time: {t['total']['wall_s']:.0f} s (cohort {t['cohort']['wall_s']:.1f}, crawl "
                      f"{t['crawl']['wall_s']:.1f}, probe thresholds {t['probe_calibration']['wall_s']:.0f}, probe "
                      f"{t['probe']['wall_s']:.0f}, report {t['report']['wall_s']:.1f}); load average "
                      f"{result.load['loadavg_start'][0]:.1f} at start")
    err_console.print(f"HTML report: {result.report_html}")
    err_console.print(f"open the results: {result.report_command}")
    if fmt == "json":
        sys.stdout.write(json_dumps(result.to_dict()) + "\n")
    else:
        sys.stdout.write(terminal(result.report_html) + "\n")
