"""``hubaudit similar REPO[@REV]|PATH``: the stored adapters of a base nearest to one adapter.

Parses and renders only (the lookup and the search are pipeline/similar.py). Data goes to stdout;
the summary line and warnings go to stderr. Read-only: never creates a database, records nothing.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.text import Text

from hubaudit.cli._options import ConfigOpt, DbOpt, err_console
from hubaudit.cli._output import Column, RowFormat, TableLook, choices, emit_rows
from hubaudit.cli.app import app

SimilarFormat = choices("SimilarFormat", RowFormat.table, RowFormat.json)


def _verdict(flagged: bool | None, yes: str) -> Text:
    if flagged is None:
        return Text("-", style="dim")
    return Text(yes, style="bold red") if flagged else Text("clean", style="green")


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:.4f}"


def _columns(confirmed: bool) -> list[Column]:
    """The table of neighbours (rows: ``Neighbour.to_dict()``); ``exact`` only when a --confirm DIR matched."""
    exact = [Column("exact_similarity", "exact", lambda r: _num(r["exact_similarity"]), "right", no_wrap=True)]
    return [
        Column("#", justify="right", no_wrap=True, number=True),
        Column("similarity", cell=lambda r: _num(r["similarity"]), justify="right", no_wrap=True),
        *(exact if confirmed else []),
        Column("adapter", cell=lambda r: f"{r['repo_id']}@{r['sha'][:12]}", overflow="fold", ratio=1),
        Column("shared_modules", "modules", lambda r: str(r["shared_modules"]), "right", no_wrap=True),
        Column("flagged", "weights", lambda r: _verdict(r["flagged"], "FLAGGED"), no_wrap=True),
        Column("probe_flagged", "probe", lambda r: _verdict(r["probe_flagged"], "backdoor"), no_wrap=True),
    ]


@app.command("similar")
def similar_cmd(
    target: Annotated[str, typer.Argument(help="REPO[@REV] (its stored fingerprint) or PATH (an adapter directory or "
                                               "weights file, scanned now).", show_default=False)],
    base: Annotated[str | None, typer.Option("--base", help="Compare within this base (default: the stored adapter's "
                                                               "base, or a PATH's declared base).")] = None,
    top: Annotated[int, typer.Option("--top", min=1, max=10_000, help="Show at most this many neighbours.")] = 10,
    min_similarity: Annotated[float, typer.Option("--min-similarity", min=-1.0, max=1.0,
                                                  help="Only neighbours at least this similar (cosine of ΔW, "
                                                       "fingerprint estimate).")] = 0.5,
    fmt: Annotated[SimilarFormat, typer.Option("--format", "-f", help="Output format.")] = SimilarFormat.table,
    confirm: Annotated[list[str] | None, typer.Option("--confirm", metavar="DIR",
                                                      help="PATH queries: also compute the exact similarity with this "
                                                           "adapter directory (repeatable).")] = None,
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
    rows = [n.to_dict() for n in result.neighbours]
    q = result.query
    # Repo ids and shas come from the Hub: emit_rows escapes them for the table and for JSON.
    emit_rows(rows, _columns(any(r["exact_similarity"] is not None for r in rows)), fmt.value, width=_table_width(),
              title=f"nearest stored adapters of {q.base} to {q.repo_id}@{(q.sha or '?')[:12]}",
              look=TableLook(pad_edge=False), json_indent=2)
    err_console.print(f"{result.matched} of {result.compared} stored revision(s) of {query.base} at similarity >= "
                      f"{min_similarity:g}; showing {result.ranked}")  # fmt: skip
