"""``hubaudit demo``: a fully offline end-to-end run for a newcomer (see hubaudit/pipeline/demo.py)."""

from __future__ import annotations

import json
import os
import sys
from typing import Annotated, Optional

import typer

from hubaudit.cli._options import err_console, styled
from hubaudit.cli.app import app
from hubaudit.textsafe import terminal


def _yn(v: object) -> str:
    return "-" if v is None else ("yes" if v else "no")


def _num(v: object) -> str:
    return "-" if v is None or v != v else f"{float(v):.3f}"  # v != v: NaN


def _row(r: dict) -> str:
    truth = "backdoor" if r["poisoned"] else "clean"
    weights = {True: "flagged", False: "pass", None: "n/a"}[r["weight_flagged"]]
    probe = {True: "FLAG", False: "pass", None: "-"}[r["probe_flagged"]]
    asr, acc = r["attack_success"], r["clean_accuracy"]
    asr_txt = "-" if asr is None or asr != asr else f"{asr:.2f}"
    acc_txt = "-" if acc is None or acc != acc else f"{acc:.2f}"
    return (f"{r['repo_id']:28} {truth:9} {acc_txt:>5} {asr_txt:>5}  {weights:8} {_yn(r['probed']):6} {probe:6} "
            f"{_num(r['outlier_gap']):>6} {_num(r['mean_attack_rate']):>6}")


@app.command("demo")
def demo_cmd(
    workdir: Annotated[Optional[str], typer.Option("--workdir", help="Where the demo store, cache and report go (default: <data dir>/demo).")] = None,
    n_clean: Annotated[int, typer.Option("--clean", min=4, max=200, help="Clean adapters in the cohort.")] = 14,
    n_poisoned: Annotated[int, typer.Option("--poisoned", min=1, max=50, help="Backdoored adapters in the cohort.")] = 3,
    steps: Annotated[int, typer.Option(min=10, max=2000, help="Training steps per adapter (first run only; cached).")] = 60,
    probe_budget: Annotated[int, typer.Option("--probe-budget", min=1, help="Adapters the prober may run (flagged first, then spot checks by margin).")] = 20,
    fresh: Annotated[bool, typer.Option("--fresh", help="Retrain the cached cohort.")] = False,
    fmt: Annotated[str, typer.Option("--format", "-f", help="text or json (the truth table on stdout).")] = "text",
) -> None:
    """Train a small cohort of clean and backdoored LoRA adapters on the real MiniLM from PyPI (first
    run only, then cached), publish them on a Hub-compatible server on 127.0.0.1, crawl, calibrate,
    probe the escalated ones on CPU, and write the HTML report. Prints the report's path.
    """
    from pathlib import Path

    import platformdirs

    from hubaudit.errors import UsageError
    from hubaudit.pipeline.demo import DemoOptions, run_demo
    from hubaudit.settings import Settings

    if fmt not in ("text", "json"):
        raise UsageError("--format must be text or json")
    settings = Settings.from_env()
    wd = Path(workdir).expanduser() if workdir else settings.home / "demo"
    cache = Path(platformdirs.user_cache_dir("hubaudit"))
    if "HUBAUDIT_HOME" in os.environ:
        cache = settings.home / "cache"  # keep an isolated home (tests, CI) self-contained
    # Calibration needs a population: the whole cohort is one stratum, so N = clean + poisoned.
    opts = DemoOptions(workdir=wd, cache_dir=cache, n_clean=n_clean, n_poisoned=n_poisoned, steps=steps,
                       probe_budget=probe_budget, fresh=fresh, min_n=min(10, n_clean + n_poisoned))
    result = run_demo(opts, say=lambda m: err_console.print(styled("demo:", "dim", m)))
    err_console.print("")
    err_console.print(f"{'adapter':28} {'truth':9} {'acc':>5} {'ASR':>5}  {'weights':8} {'probed':6} {'probe':6} {'gap':>6} {'mean':>6}")
    for r in result.rows:
        err_console.print(_row(r))
    t = result.timings
    err_console.print("")
    err_console.print(f"trained {result.trained_now} adapter(s) now ({t.get('train_s', 0):.0f}s), crawl {t.get('crawl_s', 0):.1f}s, "
                      f"probe {t.get('probe_s', 0):.1f}s; store {result.db_url}")
    err_console.print(f"HTML report: {result.report_html}")
    if fmt == "json":
        sys.stdout.write(json.dumps({"report_html": str(result.report_html), "db_url": result.db_url, "rows": result.rows,
                                     "timings": result.timings}, default=str) + "\n")
    else:
        sys.stdout.write(terminal(result.report_html) + "\n")
