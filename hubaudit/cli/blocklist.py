"""``hubaudit blocklist import FILE --base B`` and ``hubaudit blocklist export --base B [-o FILE]``."""

from __future__ import annotations

from typing import Annotated

import typer

from hubaudit.cli._options import ConfigOpt, DbOpt, err_console
from hubaudit.cli.app import app, sub_app

blocklist_app = sub_app(
    name="blocklist",
    help="Exchange fingerprints of known-bad adapters (probe-confirmed and derived findings) with other teams.",
)  # fmt: skip
app.add_typer(blocklist_app, name="blocklist")

BaseOpt = Annotated[str, typer.Option("--base", help="Base model id, e.g. Qwen/Qwen2.5-1.5B.", show_default=False)]


@blocklist_app.command("import")
def import_cmd(
    file: Annotated[str, typer.Argument(help="A hubaudit-blocklist JSON file (untrusted: checked whole before "
                                             "anything is stored).",
                                        show_default=False)],
    base: BaseOpt,
    db: DbOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Import a blocklist: its entries become known-bad sources, so `report` and `check` flag their
    copies and derivatives. A malformed file exits 2 and imports nothing."""
    from hubaudit.pipeline.blocklist import import_blocklist
    from hubaudit.pipeline.runs import recorded_run
    from hubaudit.settings import Settings
    from hubaudit.store import Store

    with Store.open(Settings.resolve(db, config).db_url, create=True) as store, \
            recorded_run(store, "blocklist import", {"base": base}) as run:  # fmt: skip
        n, new = import_blocklist(store, base, file)
        run.counts = {"entries": n, "new": new}
    err_console.print(f"imported {n} blocklist entr{'y' if n == 1 else 'ies'} for {base} ({new} new, "
                      f"{n - new} replaced)")


@blocklist_app.command("export")
def export_cmd(
    base: BaseOpt,
    output: Annotated[str | None,
                      typer.Option("-o", "--output", help="Write to FILE (atomically) instead of stdout.")] = None,
    db: DbOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Export the fingerprints of BASE's current findings (probe-confirmed adapters and their copies and
    derivatives) as a blocklist file another team can import."""
    from hubaudit.cli.report import _db_url, _emit, _open_store, _require_base
    from hubaudit.pipeline.blocklist import export_blocklist, render

    with _open_store(_db_url(db, config), base) as store:
        _require_base(store, base)
        doc, left_out = export_blocklist(store, base)
    _emit(render(doc), output)
    n = len(doc["entries"])
    err_console.print(f"exported {n} blocklist entr{'y' if n == 1 else 'ies'} for {base}"
                      + (f" to {output}" if output else ""))
    if left_out["no_fingerprint"]:
        err_console.print(f"left out {left_out['no_fingerprint']} finding(s) without a stored fingerprint "
                          "(scored before fingerprints existed: rescan them)")  # fmt: skip
    if left_out["label"]:
        err_console.print(f"left out {left_out['label']} finding(s) whose repo id does not fit a blocklist label")
