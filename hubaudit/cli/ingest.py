"""``hubaudit ingest PATH... --base BASE``: scan local adapters into the store (no Hub needed)."""

from __future__ import annotations

import json
import os
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from hubaudit.cli._options import ConfigOpt, DbOpt, err_console, styled
from hubaudit.cli._output import Column, RowFormat, TableLook, emit_rows
from hubaudit.cli.app import app
from hubaudit.cli.scan import AllowPickleOpt
from hubaudit.errors import InputError
from hubaudit.pipeline.runs import recorded_run

EXIT_NOT_SCORED = 3
# The table's rows are IngestItem.to_dict() of the stored inputs.
TABLE_COLUMNS = [
    Column("status"),
    Column("score", cell=lambda r: f"{r['score']:.4e}" if r["score"] is not None else "-"),
    Column("stratum/reason", cell=lambda r: r["stratum"] or r["reason"] or "-"),
    Column("adapter", cell=lambda r: r["repo_id"] or "-"),
]


class IngestFormat(str, Enum):
    table = "table"
    json = "json"


def _check_inputs(paths: list[str]) -> None:
    """Refuse (exit 2, before the store is opened) a path that does not exist, or a batch with no adapter."""
    from hubaudit.pipeline.ingest import skip_reason

    resolved = [Path(p).expanduser().absolute() for p in paths]
    missing = [p for p in resolved if not os.path.lexists(p)]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise InputError(f"no such file or directory: {missing[0]}{more}",
                         hint="an unmatched shell glob is passed on as written; nothing was ingested")  # fmt: skip
    if all(skip_reason(p) is not None for p in resolved):
        raise InputError(f"none of the {len(paths)} input(s) is an adapter (a folder with adapter_config.json or "
                         "adapter weights, or a .safetensors/.bin file)",
                         hint="name adapter folders, e.g. `hubaudit ingest ./adapters/* --base B`")  # fmt: skip


@app.command("ingest")
def ingest(
    paths: Annotated[list[str], typer.Argument(help="Adapter directories or weights files (others are skipped).")],
    base: Annotated[str,
                    typer.Option("--base", "-b", help="Base model the adapters belong to, e.g. Qwen/Qwen2.5-1.5B.")],
    db: DbOpt = None,
    config: ConfigOpt = None,
    fmt: Annotated[IngestFormat, typer.Option("--format", "-f", help="Output format on stdout.")] = IngestFormat.table,
    allow_pickle: AllowPickleOpt = False,
) -> None:
    """Scan local adapters and store them under BASE as `local:<absolute path>` (idempotent per content).

    An input is an adapter when it is a folder holding adapter_config.json, adapter_model.safetensors
    or adapter_model.bin (a broken one is stored as an error: that is an outcome worth seeing), or a
    .safetensors/.bin file. Anything else (a README.md from a glob, a folder without those files) is
    skipped with a note on stderr and never stored. An adapter whose adapter_config.json declares
    another base is stored under BASE with a warning. A path that does not exist is a usage error
    (exit 2). Pickle weights are recorded unsupported unless --allow-pickle.

    Exit 0 when every adapter was scored, 3 when at least one could not be (all are recorded).
    """
    from hubaudit.pipeline.ingest import ingest as run_ingest
    from hubaudit.pipeline.similar import warm_cache
    from hubaudit.settings import Settings
    from hubaudit.stats import require_torch
    from hubaudit.store import Store

    _check_inputs(paths)
    if allow_pickle:
        require_torch()
    args = {"paths": paths, "base": base, "allow_pickle": allow_pickle}
    settings = Settings.resolve(db, config)
    with Store.open(settings.db_url, create=True) as store, recorded_run(store, "ingest", args) as run:
        summary = run_ingest(store, paths, base, allow_pickle=allow_pickle)
        counts = run.counts = summary.counts
        exit_status = run.exit_status = 0 if summary.all_scored else EXIT_NOT_SCORED
        warm_cache(store, [base], settings.home / "cache" / "fingerprints")
    if fmt is IngestFormat.json:
        # ASCII JSON as it has always been written (emit_rows' JSON would also write DEL as \u007f)
        sys.stdout.write(json.dumps([i.to_dict() for i in summary.items], allow_nan=False) + "\n")
    else:
        # Tab-separated: each field is escaped, so a tab or newline in a path cannot add a column or a row.
        emit_rows([i.to_dict() for i in summary.items if i.stored], TABLE_COLUMNS, RowFormat.table,
                  look=TableLook(plain=True))
    for i in summary.items:  # DataConsole and styled() escape every value quoted here
        if not i.stored:
            err_console.print(styled("skipped:", "dim", f"{i.path}: {i.error}"))
        elif i.base_mismatch:
            err_console.print(styled("warning:", "yellow", f"{i.path} declares base {i.declared_base}; "
                                                           f"ingested under --base {base}"))
    pickles = sum(1 for i in summary.items if i.reason == "pickle_format")
    if pickles and not allow_pickle:
        err_console.print(styled("Hint:", "dim", f"{pickles} adapter(s) in pickle format were recorded unsupported: "
                                                 "rerun with --allow-pickle to load them with "
                                                 "torch.load(weights_only=True) in a sandboxed "
                                                 "subprocess"))  # fmt: skip
    err_console.print(
        f"Ingested {counts['inputs'] - counts['skipped']} adapter(s) for {base}: {counts['scored']} scored, "
        f"{counts['unsupported']} unsupported, {counts['error']} error; {counts['skipped']} input(s) skipped "
        f"({store.url})"
    )
    if exit_status:
        raise typer.Exit(exit_status)
