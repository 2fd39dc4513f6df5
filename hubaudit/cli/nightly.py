"""``hubaudit nightly``: the cron job: crawl, calibrate, escalate, probe and export every configured base."""

from __future__ import annotations

import json
import os
import sys
from enum import Enum
from typing import Annotated

import typer

from hubaudit.cli._options import ConfigOpt, DbOpt, err_console, styled
from hubaudit.cli.app import app


class NightlyFormat(str, Enum):
    text = "text"
    json = "json"


def _print(summary) -> None:  # summary: NightlySummary
    for b in summary.bases:
        crawl = b.crawl or {}
        cal = b.calibration or {}
        probe = b.probe or {}
        cal_txt = f"calibration v{cal.get('version')} N={cal.get('n')}" if cal.get("calibrated") else "not calibrated"
        esc = b.escalation or {}
        ran = (f" ({probe.get('probed', 0)} probed, {probe.get('flagged', 0)} confirmed, "
               f"{probe.get('seconds_used', 0):.0f} of {probe.get('budget_seconds') or 0:.0f} device-seconds)")
        err_console.print(
            f"{b.base}: listed {crawl.get('listed', '-')}, new {crawl.get('new', '-')}, scored "
            f"{crawl.get('scored', '-')}; {cal_txt}; flagged {b.flagged}; queued {esc.get('queued', 0)} new probe "
            f"job(s) ({esc.get('queued_flagged', 0)} flagged, {esc.get('queued_unflagged', 0)} unflagged); "
            f"probe {probe.get('status')}" + (ran if probe.get("status") == "ran" else f" ({probe.get('note', '')})")
        )
        cov = b.probe_coverage
        if cov:
            err_console.print(f"  probed {cov['probed']} of {cov['probed'] + cov['not_probed']} scored revisions "
                              f"({cov['not_probed']} not yet probed)")
        down = b.downstream or {}
        if down.get("status") == "ran":
            err_console.print(f"  downstream: {down.get('children', 0)} repo(s) built on {down.get('queried', 0)} "
                              f"finding(s), {down.get('failed', 0)} listing(s) failed")
        for e in b.errors:
            err_console.print(f"  {b.base}: {e}")
    err_console.print(f"exports: {summary.dated_dir} (latest: {summary.latest_dir}); {summary.duration_s:.1f}s")
    if summary.hub_error:
        err_console.print(styled("Hub failure:", "bold red", f"{summary.hub_error} (finished work is kept; the "
                                                             "next run resumes)"))


@app.command("nightly")
def nightly_cmd(
    config: ConfigOpt = None,
    db: DbOpt = None,
    export_dir: Annotated[str | None,
                          typer.Option("--export-dir", help="Override the configuration's export_dir.")] = None,
    fmt: Annotated[NightlyFormat,
                   typer.Option("--format", "-f", help="json: print the run summary on stdout.")] = NightlyFormat.text,
    timeout: Annotated[float, typer.Option(min=0.1, help="Seconds before any single Hub request times out.")] = 30.0,
) -> None:
    """For each base in the configuration: crawl, calibrate, escalate, probe (when an executor is
    configured), list the Hub repos built on each finding, then export the flagged lists (CSV, JSON,
    JSONL, SARIF) into a dated folder and an atomically swapped ``latest``.

    Exit 0 when the run worked, even if it found backdoors (findings are data); 4 when the Hub failed
    (finished work is kept, the next run resumes); 3 for configuration or schema problems. A second
    invocation while one runs exits 0 at once.
    """
    from pathlib import Path

    from hubaudit.config import load_config
    from hubaudit.errors import ConfigError
    from hubaudit.httpclient import RetryPolicy, hub_config_from_env
    from hubaudit.pipeline.nightly import AlreadyRunning, RunLock, default_export_dir, nightly
    from hubaudit.settings import Settings
    from hubaudit.store import Store

    cfg = load_config(config)
    if not cfg.bases:
        raise ConfigError(f"{cfg.path}: no [[base]] tables: nothing to audit")
    settings = Settings.resolve(db, config=cfg)
    out_dir = Path(export_dir).expanduser() if export_dir else (cfg.export_dir or default_export_dir(settings.home))
    hub = hub_config_from_env(os.environ, timeout=timeout, retry=RetryPolicy())
    try:
        with RunLock(settings.home / "nightly.lock"), Store.open(settings.db_url, create=True) as store:
            summary = nightly(store, cfg, hub, home=settings.home, export_dir=out_dir)
    except AlreadyRunning as exc:
        err_console.print(f"another hubaudit nightly run holds {exc}; nothing to do")
        raise typer.Exit(0) from None
    _print(summary)
    if fmt is NightlyFormat.json:
        sys.stdout.write(json.dumps(summary.to_dict(), default=str) + "\n")
    raise typer.Exit(summary.exit_code)
