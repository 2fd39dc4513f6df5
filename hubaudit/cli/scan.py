"""``hubaudit scan PATH...``: score local adapters (directories or weights files); judge them when the store can.

The store is only read (never created): with a calibration for an adapter's base (``--base`` or its
declared base) the table gets the verdict ``hubaudit check PATH`` would give; without one, the
adapter is "not judged" and says why.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.table import Table
from rich.text import Text

from hubaudit.cli._options import ConfigOpt, DataConsole, DbOpt, err_console, styled
from hubaudit.cli.app import app
from hubaudit.models import ScanResult
from hubaudit.stats import require_torch
from hubaudit.textsafe import terminal
from hubaudit.vocab import ScanStatus, Verdict

EXIT_NOT_SCORED = 3
TABLE_WIDTH = 100
MIN_PATH_WIDTH = 24
MIN_VERDICT_WIDTH = 20
MAX_VERDICT_WIDTH = 40
ELLIPSIS = "…"

AllowPickleOpt = Annotated[
    bool,
    typer.Option(
        "--allow-pickle",
        help="Load adapter_model.bin with torch.load(weights_only=True) in a sandboxed subprocess (needs torch).",
    ),
]


class ScanFormat(str, Enum):
    table = "table"
    json = "json"
    jsonl = "jsonl"
    sarif = "sarif"


def middle_ellipsis(text: str, width: int) -> str:
    """``text`` in at most ``width`` characters, its middle replaced by one ellipsis (a path keeps its
    start and, longer, its end: the adapter's own folder name)."""
    if len(text) <= width:
        return text
    if width <= 1:
        return ELLIPSIS[:width]
    keep = width - 1
    tail = (2 * keep + 2) // 3
    return text[: keep - tail] + ELLIPSIS + text[len(text) - tail:]


def _table(results: list[ScanResult], judgements: list) -> None:
    # Paths and error messages are data: DataConsole escapes str cells (control characters, bidi,
    # the surrogate escapes of undecodable path bytes) and never reads them as markup.
    out = DataConsole(file=sys.stdout)
    out.width = min(out.width, TABLE_WIDTH) if out.is_terminal else TABLE_WIDTH
    style = {ScanStatus.OK: "green", ScanStatus.UNSUPPORTED: "yellow", ScanStatus.ERROR: "red"}
    vstyle = {Verdict.FLAGGED: "bold red", Verdict.PASS: "green", Verdict.PASS_LOW_CONFIDENCE: "yellow",
              Verdict.NOT_JUDGED: "dim"}
    rows = []
    for r, j in zip(results, judgements):
        # an input that was not scored says why in its verdict cell: the scanner's one-line reason
        label = j.label if r.status == ScanStatus.OK else f"not judged: {r.error or r.status}"
        rows.append((terminal(r.source), r.status, f"{r.score:.4e}" if r.score is not None else "-",
                     str(r.rank) if r.rank is not None else "-", terminal(label), j.verdict))  # fmt: skip
    headers = ("adapter", "status", "score", "rank", "verdict")
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(headers)]  # rows: never empty
    # A path never wraps: it gets the width the other columns leave (columns are 3 apart) and a longer
    # one loses its middle, escaped first so the width is what shows. Only the verdict folds (prose).
    fixed = sum(widths[1:4]) + 3 * (len(headers) - 1)
    verdict_width = min(widths[4], MAX_VERDICT_WIDTH)
    path_width = max(MIN_PATH_WIDTH, min(widths[0], out.width - fixed - verdict_width))
    verdict_width = max(MIN_VERDICT_WIDTH, min(verdict_width, out.width - fixed - path_width))
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, expand=False)
    table.add_column("adapter", no_wrap=True, width=path_width)
    table.add_column("status", no_wrap=True)
    table.add_column("score", justify="right", no_wrap=True)
    table.add_column("rank", justify="right", no_wrap=True)
    table.add_column("verdict", overflow="fold", width=verdict_width)
    for path, status, score, rank, label, verdict in rows:
        table.add_row(middle_ellipsis(path, path_width), Text(status, style=style[status]), score, rank,
                      Text(label, style=vstyle[verdict]))  # fmt: skip
    out.print(table)


def _dump(obj: object) -> str:
    # ASCII escapes keep undecodable path bytes (surrogates) representable on any stdout encoding.
    # Not emit_rows: its JSON would also write DEL as \u007f, and scan's JSON stays byte-for-byte.
    return json.dumps(obj, ensure_ascii=True, allow_nan=False)


def _db_url(db: str | None, config: str | None) -> str | None:
    """The store to judge with; a configuration problem is an error only when --db/--config named it."""
    from hubaudit.errors import ConfigError
    from hubaudit.settings import Settings

    try:
        return Settings.resolve(db, config).db_url
    except ConfigError as exc:
        if db or config:
            raise
        err_console.print(styled("note:", "dim", f"no verdicts: {exc}"))
        return None


def _judge_all(results: list[ScanResult], base: str | None, db_url: str | None) -> list:
    """One ScanJudgement per result: from the store when there is one (read-only), else 'not judged'."""
    from hubaudit.errors import MissingDatabaseError, StoreError
    from hubaudit.pipeline.scan import (
        NO_DATABASE,
        STORE_UNAVAILABLE,
        judge_scan,
        not_judged,
    )
    from hubaudit.store import Store

    if db_url is None:
        return [not_judged(r, STORE_UNAVAILABLE, base) for r in results]
    try:
        store = Store.open(db_url, must_exist=True)
    except StoreError as exc:  # a missing (or unusable) store: scores stand, verdicts are not available
        missing = isinstance(exc, MissingDatabaseError)
        b = base or "BASE"
        hint = (f"`hubaudit ingest PATH --base {b}` then `hubaudit calibrate --base {b}` to judge adapters"
                if missing else (exc.hint or ""))  # fmt: skip
        err_console.print(styled("note:", "dim", f"no verdicts: {exc}" + (f"; {hint}" if hint else "")))
        return [not_judged(r, NO_DATABASE if missing else STORE_UNAVAILABLE, base) for r in results]
    today = datetime.now(timezone.utc).date()
    with store:
        return [judge_scan(store, Path(r.source), r, base=base, today=today) for r in results]


@app.command("scan")
def scan(
    paths: Annotated[
        list[str],
        typer.Argument(help="Adapter directories (adapter_config.json + adapter_model.safetensors) or weights files; "
                            "with --recursive, folders to search for adapters."),
    ],
    fmt: Annotated[ScanFormat, typer.Option("--format", "-f", help="Output format on stdout.")] = ScanFormat.table,
    allow_pickle: AllowPickleOpt = False,
    recursive: Annotated[bool, typer.Option(
        "--recursive", "-r",
        help="Scan every adapter under the folders given: each folder holding adapter_config.json or adapter weights "
             "is one adapter; hidden folders and symlinked folders are not entered.")] = False,
    max_adapters: Annotated[int, typer.Option(
        "--max-adapters", min=1, help="With --recursive: refuse to scan more adapters than this (exit 2).")] = 1000,
    base: Annotated[str | None, typer.Option(
        "--base", "-b", help="Judge against this base (default: each adapter's declared base).")] = None,
    db: DbOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Score LoRA adapters on disk from their weights alone (global_frobN_std and the feature set), and give
    each the verdict `hubaudit check PATH` would when the store has a calibration for its base.

    The store is only read and never created; without it (or without a calibration) an adapter is "not
    judged". Exit 0 when every input was scored, 3 when at least one could not be (all are still reported).
    """
    from hubaudit.errors import InputError
    from hubaudit.pipeline.scan import find_adapters, score_adapters

    if allow_pickle:
        require_torch()
    db_url = _db_url(db, config)
    found = find_adapters(paths, recursive=recursive, limit=max_adapters)
    for root in found.empty_roots:
        err_console.print(styled("note:", "dim", f"no adapter under {root}"))
    if found.links_not_followed:
        err_console.print(styled("note:", "dim", f"{found.links_not_followed} symlinked folder(s) not followed"))
    if not found.paths:
        raise InputError("no adapter found under the folders given", hint="name adapter folders or weights files")
    results = score_adapters(found.paths, allow_pickle=allow_pickle)
    if not recursive:
        from hubaudit.pipeline.ingest import is_adapter_dir

        for r in results:
            p = Path(r.source)
            if r.status != ScanStatus.OK and p.is_dir() and not is_adapter_dir(p):
                err_console.print(styled("note:", "dim", f"{r.source} is not an adapter folder; --recursive scans the "
                                                         "adapters under it"))  # fmt: skip
    judgements = _judge_all(results, base, db_url)
    if fmt is ScanFormat.json:
        sys.stdout.write(_dump([r.to_dict() | {"judgement": j.to_dict()} for r, j in zip(results, judgements)]) + "\n")
    elif fmt is ScanFormat.jsonl:
        for r, j in zip(results, judgements):
            sys.stdout.write(_dump(r.to_dict() | {"judgement": j.to_dict()}) + "\n")
    elif fmt is ScanFormat.sarif:
        from hubaudit.cli._scan_sarif import render_sarif

        sys.stdout.write(render_sarif(results, judgements))
    else:
        _table(results, judgements)
    verdicts = [j.verdict for j in judgements]
    err_console.print(f"{len(results)} adapter(s): {verdicts.count(Verdict.FLAGGED)} FLAGGED, "
                      f"{verdicts.count(Verdict.PASS)} pass, {verdicts.count(Verdict.PASS_LOW_CONFIDENCE)} pass (low "
                      f"confidence), {verdicts.count(Verdict.NOT_JUDGED)} not judged")  # fmt: skip
    bad = [r for r in results if r.status != ScanStatus.OK]
    if bad:
        err_console.print(f"{len(bad)} of {len(results)} input(s) could not be scored")
        raise typer.Exit(EXIT_NOT_SCORED)
