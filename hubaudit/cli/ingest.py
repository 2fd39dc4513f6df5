"""``hubaudit ingest PATH... --base BASE``: scan local adapters into the store (no Hub needed)."""

from __future__ import annotations

import json
import sys
from enum import Enum
from typing import Annotated

import typer

from hubaudit.cli._options import ConfigOpt, DbOpt, err_console
from hubaudit.cli.app import app
from hubaudit.pipeline.runs import recorded_run
from hubaudit.textsafe import terminal

EXIT_NOT_SCORED = 3


class IngestFormat(str, Enum):
    table = "table"
    json = "json"


@app.command("ingest")
def ingest(
    paths: Annotated[list[str], typer.Argument(help="Adapter directories or weights files.")],
    base: Annotated[str, typer.Option("--base", "-b", help="Base model the adapters belong to, e.g. Qwen/Qwen2.5-1.5B.")],
    db: DbOpt = None,
    config: ConfigOpt = None,
    fmt: Annotated[IngestFormat, typer.Option("--format", "-f", help="Output format on stdout.")] = IngestFormat.table,
) -> None:
    """Scan local adapters and store them under BASE as `local:<absolute path>` (idempotent per content).

    Exit 0 when every input was scored, 3 when at least one could not be (all are recorded).
    """
    from hubaudit.pipeline.ingest import ingest as run_ingest
    from hubaudit.settings import Settings
    from hubaudit.store import Store

    with Store.open(Settings.resolve(db, config).db_url, create=True) as store, \
            recorded_run(store, "ingest", {"paths": paths, "base": base}) as run:
        summary = run_ingest(store, paths, base)
        counts = run.counts = summary.counts
        exit_status = run.exit_status = 0 if summary.all_scored else EXIT_NOT_SCORED
    if fmt is IngestFormat.json:
        sys.stdout.write(json.dumps([i.to_dict() for i in summary.items], allow_nan=False) + "\n")
    else:
        for i in summary.items:
            score = f"{i.score:.4e}" if i.score is not None else "-"
            # Tab-separated: each field is escaped, so a tab or newline in a path cannot add a column or a row.
            fields = (i.status, score, i.stratum or i.reason or "-", i.repo_id)
            sys.stdout.write("\t".join(terminal(f) for f in fields) + "\n")
    err_console.print(
        f"Ingested {counts['inputs']} input(s) for {base}: {counts['scored']} scored, "
        f"{counts['unsupported']} unsupported, {counts['error']} error ({store.url})"
    )
    if exit_status:
        raise typer.Exit(exit_status)
