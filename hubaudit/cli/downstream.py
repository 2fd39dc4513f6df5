"""``hubaudit downstream --base BASE``: the Hub repos built on the base's findings."""

from __future__ import annotations

import json
import os
import sys
from enum import Enum
from typing import Annotated

import typer

from hubaudit.cli._options import ConfigOpt, DbOpt, err_console, styled
from hubaudit.cli._output import Column, RowFormat, TableLook, emit_rows
from hubaudit.cli.app import app


class DownstreamFormat(str, Enum):
    table = "table"
    json = "json"


COLUMNS = [Column(name, overflow="fold") for name in ("finding", "relation", "downstream repo")]


def _rows(summary) -> list[dict[str, str]]:  # summary: DownstreamSummary
    """finding → downstream repos, the finding named on its first row only."""
    from hubaudit.pipeline.downstream import describe

    rows = []
    for item in summary.findings:
        if not item.children:
            rows.append({"finding": item.repo_id, "relation": "-", "downstream repo": describe(item)})
            continue
        for i, (child, relation) in enumerate(item.children):
            rows.append({"finding": item.repo_id if i == 0 else "", "relation": relation, "downstream repo": child})
        if item.truncated:
            rows.append({"finding": "", "relation": "", "downstream repo": "(more not read: the cap on one listing)"})
    return rows


def _table(summary) -> None:  # summary: DownstreamSummary
    """The table on stdout (data); every cell is Hub data, escaped by emit_rows."""
    emit_rows(_rows(summary), COLUMNS, RowFormat.table, title=f"downstream repos of findings of {summary.base}",
              soft_wrap=True, look=TableLook(box=None))


@app.command("downstream")
def downstream_cmd(
    base: Annotated[str, typer.Option("--base", "-b", help="Base model id whose findings to look up, e.g. "
                                                           "Qwen/Qwen2.5-1.5B.", show_default=False)],
    fmt: Annotated[DownstreamFormat,
                   typer.Option("--format", "-f", help="table, or json (the run summary).")] = DownstreamFormat.table,
    timeout: Annotated[float,
                       typer.Option(min=0.1, help="Seconds one socket operation (connect, one read) may take.")] = 30.0,
    max_pages: Annotated[int, typer.Option(min=1, help="Most listing pages per finding.")] = 100,
    max_retries: Annotated[int, typer.Option(min=0, help="Retries per request on 5xx/408/429/connection errors.")] = 5,
    backoff: Annotated[float, typer.Option(min=0.0, help="Base of the exponential backoff, seconds (jittered).",
                                           hidden=True)] = 0.5,
    db: DbOpt = None,
    config: ConfigOpt = None,
) -> None:
    """List the Hub repos that declare a finding of BASE as their base model (adapters, merges,
    finetunes, quantized copies): where a backdoor may have spread. Only findings are queried (one
    listing each); the result is stored for the report.

    HF_ENDPOINT and HF_TOKEN are read from the environment. Exit 0 when the run completed (a
    finding whose listing failed is shown with the reason), 4 when the Hub failed for the whole run
    (what finished is stored), 3 when the store or the base is unknown.
    """
    from hubaudit.cli.report import _db_url, _open_store, _require_base
    from hubaudit.httpclient import RetryPolicy, hub_config_from_env
    from hubaudit.pipeline.downstream import downstream

    hub = hub_config_from_env(os.environ, timeout=timeout,
                              retry=RetryPolicy(max_retries=max_retries, base_delay=backoff), max_pages=max_pages)
    args = {"base": base, "endpoint": hub.endpoint}
    with _open_store(_db_url(db, config), base) as store:
        _require_base(store, base)
        summary = downstream(store, hub, base, command_args=args)
    if fmt is DownstreamFormat.json:
        sys.stdout.write(json.dumps(summary.to_dict()) + "\n")
    elif summary.findings:
        _table(summary)
    failed = sum(1 for f in summary.findings if f.error)
    err_console.print(f"downstream {base}: {len(summary.findings)} finding(s), {summary.queried} queried, "
                      f"{summary.children} downstream repo(s), {failed} listing(s) failed ({summary.duration_s:.1f}s)")
    if not summary.findings:
        err_console.print(f"{base} has no findings: nothing to look up")
    if summary.fatal is not None:
        err_console.print(styled("Hub failure:", "bold red", "what finished is stored; rerun to complete"))
        raise summary.fatal
