"""``hubaudit similar REPO[@REV]|PATH``: the stored adapters of a base nearest to one adapter.

Parses and renders only (the lookup and the search are pipeline/similar.py). Data goes to stdout;
the summary line and warnings go to stderr. Read-only: never creates a database, records nothing.
"""

from __future__ import annotations

import sys
from enum import Enum
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from hubaudit.cli._options import ConfigOpt, DataConsole, DbOpt, err_console
from hubaudit.cli.app import app
from hubaudit.textsafe import json_dumps


class SimilarFormat(str, Enum):
    table = "table"
    json = "json"


def _verdict(flagged: bool | None, yes: str) -> Text:
    if flagged is None:
        return Text("-", style="dim")
    return Text(yes, style="bold red") if flagged else Text("clean", style="green")


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:.4f}"


def _table(result, width: int) -> None:  # result: pipeline.similar.SimilarResult
    # Repo ids and shas come from the Hub: DataConsole escapes every str cell and never reads markup.
    out = DataConsole(file=sys.stdout, width=width)
    q = result.query
    table = Table(title=f"nearest stored adapters of {q.base} to {q.repo_id}@{(q.sha or '?')[:12]}",
                  title_justify="left", pad_edge=False, expand=False)  # fmt: skip
    table.add_column("#", justify="right", no_wrap=True)
    table.add_column("similarity", justify="right", no_wrap=True)
    confirmed = any(n.exact_similarity is not None for n in result.neighbours)
    if confirmed:
        table.add_column("exact", justify="right", no_wrap=True)
    table.add_column("adapter", overflow="fold", ratio=1)
    table.add_column("modules", justify="right", no_wrap=True)
    table.add_column("weights", no_wrap=True)
    table.add_column("probe", no_wrap=True)
    for i, n in enumerate(result.neighbours, 1):
        cells = [str(i), _num(n.similarity)] + ([_num(n.exact_similarity)] if confirmed else [])
        cells += [f"{n.repo_id}@{n.sha[:12]}", str(n.shared_modules)]
        table.add_row(*cells, _verdict(n.flagged, "FLAGGED"), _verdict(n.probe_flagged, "backdoor"))
    out.print(table)


@app.command("similar")
def similar_cmd(
    target: Annotated[str, typer.Argument(help="REPO\\[@REV] (its stored fingerprint) or PATH (an adapter directory or "
                                               "weights file, scanned now).", show_default=False)],
    base: Annotated[str | None, typer.Option("--base", help="Compare within this base (default: the stored adapter's "
                                                               "base, or a PATH's declared base).")] = None,
    top: Annotated[int, typer.Option("--top", min=1, max=10_000, help="Show at most this many neighbours.")] = 10,
    min_similarity: Annotated[float, typer.Option("--min-similarity", min=-1.0, max=1.0,
                                                  help="Only neighbours at least this similar (cosine of ΔW, "
                                                       "fingerprint estimate).")] = 0.5,
    fmt: Annotated[SimilarFormat, typer.Option("--format", "-f", help="Output format.")] = SimilarFormat.table,
    confirm: Annotated[list[str] | None, typer.Option("--confirm", metavar="DIR", help="PATH queries: also compute the exact "
                                                         "similarity with this adapter directory (repeatable).")] = None,
    db: DbOpt = None,
    config: ConfigOpt = None,
) -> None:
    """List the stored adapters whose weight update ΔW = s·B·A is nearest to one adapter's (copies,
    re-uploads, rescaled or lightly fine-tuned derivatives), with their stored verdicts."""
    from hubaudit.cli.report import _open_store, _require_base, _table_width
    from hubaudit.pipeline.similar import resolve_query, search_similar
    from hubaudit.settings import Settings

    settings = Settings.resolve(db, config)
    with _open_store(settings.db_url, base) as store:
        query = resolve_query(store, target, base=base)
        _require_base(store, query.base)
        result = search_similar(store, query, top=top, min_similarity=min_similarity, confirm=confirm or (),
                                cache_dir=settings.home / "cache" / "fingerprints")  # fmt: skip
    if fmt is SimilarFormat.json:
        sys.stdout.write(json_dumps([n.to_dict() for n in result.neighbours], indent=2) + "\n")
    else:
        _table(result, _table_width())
    err_console.print(f"{result.matched} of {result.compared} stored revision(s) of {query.base} at similarity >= "
                      f"{min_similarity:g}; showing {result.ranked}")  # fmt: skip
