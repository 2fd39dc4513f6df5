"""``hubaudit scan PATH...``: score local adapters (directories or weights files) without a database."""

from __future__ import annotations

import json
import sys
from enum import Enum
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from hubaudit.cli._options import DataConsole, err_console
from hubaudit.cli.app import app
from hubaudit.models import ScanResult
from hubaudit.stats import require_torch, scan_many

EXIT_NOT_SCORED = 3


class ScanFormat(str, Enum):
    table = "table"
    json = "json"
    jsonl = "jsonl"


def _table(results: list[ScanResult]) -> None:
    # Paths and error messages are data: DataConsole escapes str cells (control characters, bidi,
    # the surrogate escapes of undecodable path bytes) and never reads them as markup.
    out = DataConsole(file=sys.stdout)
    out.width = min(out.width, 100) if out.is_terminal else 100
    table = Table(show_lines=False, expand=False, pad_edge=False)
    table.add_column("adapter", overflow="fold", ratio=2)
    table.add_column("status", no_wrap=True)
    table.add_column("score", justify="right", no_wrap=True)
    table.add_column("modules", justify="right", no_wrap=True)
    table.add_column("rank", justify="right", no_wrap=True)
    table.add_column("variant", no_wrap=True)
    table.add_column("error", overflow="fold", ratio=3)
    style = {"ok": "green", "unsupported": "yellow", "error": "red"}
    for r in results:
        table.add_row(
            r.source,
            Text(r.status, style=style[r.status]),
            f"{r.score:.4e}" if r.score is not None else "-",
            str(r.n_modules) if r.status == "ok" else "-",
            str(r.rank) if r.rank is not None else "-",
            r.variant or "-",
            r.error or "",
        )
    out.print(table)


def _dump(obj: object) -> str:
    # ASCII escapes keep undecodable path bytes (surrogates) representable on any stdout encoding
    return json.dumps(obj, ensure_ascii=True, allow_nan=False)


@app.command("scan")
def scan(
    paths: Annotated[
        list[str],
        typer.Argument(help="Adapter directories (adapter_config.json + adapter_model.safetensors) or weights files."),
    ],
    fmt: Annotated[ScanFormat, typer.Option("--format", "-f", help="Output format on stdout.")] = ScanFormat.table,
    allow_pickle: Annotated[
        bool,
        typer.Option(
            "--allow-pickle",
            help="Load adapter_model.bin with torch.load(weights_only=True) in a sandboxed subprocess (needs torch).",
        ),
    ] = False,
) -> None:
    """Score LoRA adapters on disk from their weights alone (global_frobN_std and the feature set).

    Exit 0 when every input was scored, 3 when at least one could not be (all are still reported).
    """
    if allow_pickle:
        require_torch()
    results = scan_many(paths, allow_pickle=allow_pickle)
    if fmt is ScanFormat.json:
        sys.stdout.write(_dump([r.to_dict() for r in results]) + "\n")
    elif fmt is ScanFormat.jsonl:
        for r in results:
            sys.stdout.write(_dump(r.to_dict()) + "\n")
    else:
        _table(results)
    bad = [r for r in results if r.status != "ok"]
    if bad:
        err_console.print(f"{len(bad)} of {len(results)} input(s) could not be scored")
        raise typer.Exit(EXIT_NOT_SCORED)
