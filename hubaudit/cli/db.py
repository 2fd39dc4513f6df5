"""``hubaudit db upgrade|downgrade|current|check``: the database schema (Alembic, one chain)."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from hubaudit.cli._options import ConfigOpt, DbOpt, err_console
from hubaudit.cli.app import app, sub_app

db_app = sub_app(name="db", help="Create, upgrade and check the hubaudit database schema.")
app.add_typer(db_app, name="db")


def _open(db: str | None, config: str | None):  # type: ignore[no-untyped-def]
    from hubaudit.settings import Settings
    from hubaudit.store import Store

    return Store.open(Settings.resolve(db, config).db_url, check_schema=False)


def _confirm(question: str) -> bool:
    """Ask on stderr, read stdin; typer.confirm would echo part of its prompt on stdout (data only)."""
    from hubaudit.errors import UsageError

    err_console.print(f"{question} [y/N]: ", end="")
    try:
        answer = sys.stdin.readline()
    except KeyboardInterrupt:
        err_console.print("")
        raise
    if not answer:
        # stdin closed before an answer: nobody declined, the caller forgot --yes
        err_console.print("")
        raise UsageError("no answer to the confirmation (stdin closed)", hint="pass --yes to run it unattended")
    return answer.strip().lower() in ("y", "yes")


@db_app.command("upgrade")
def upgrade(
    db: DbOpt = None,
    config: ConfigOpt = None,
    revision: Annotated[str, typer.Option("--revision", help="Target revision.")] = "head",
    sql: Annotated[bool, typer.Option("--sql", help="Print the SQL to stdout instead of applying it.")] = False,
) -> None:
    """Upgrade the database schema to head (creates an empty database). Safe to run every time."""
    from hubaudit.store import migrate

    with _open(db, config) as store:
        if sql:
            migrate.upgrade(store.engine, revision, sql=True)
            return
        before = store.current()
        store.upgrade(revision)
        after = store.current()
    if before == after:
        err_console.print(f"{store.url}: already at {after}")
    else:
        err_console.print(f"{store.url}: upgraded {before or 'empty database'} -> {after}")


@db_app.command("downgrade")
def downgrade(
    revision: Annotated[str, typer.Argument(help="Target revision ('base' drops every table and all data).")],
    db: DbOpt = None,
    config: ConfigOpt = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Downgrade the database schema (data in dropped tables or columns is lost).

    Declining the confirmation exits 0 with "aborted" on stderr and changes nothing (exit 1 means
    findings); with no answer at all (stdin closed, e.g. cron without --yes) it is a usage error, 2.
    """
    with _open(db, config) as store:
        if not yes and not _confirm(f"Downgrade {store.url} to {revision}? Data may be lost."):
            err_console.print(f"aborted: {store.url} left at {store.current() or 'base'}")
            return
        store.downgrade(revision)
        err_console.print(f"{store.url}: now at {store.current() or 'base'}")


@db_app.command("current")
def current(db: DbOpt = None, config: ConfigOpt = None) -> None:
    """Print the database's schema revision on stdout ('none' if never created); state on stderr."""
    from hubaudit.store import migrate

    with _open(db, config) as store:
        cur, head = store.current(), migrate.head()
    sys.stdout.write(f"{cur or 'none'}\n")
    if cur == head:
        err_console.print(f"{store.url}: at head")
    else:
        err_console.print(f"{store.url}: head is {head}; run `hubaudit db upgrade`")


@db_app.command("check")
def check(db: DbOpt = None, config: ConfigOpt = None) -> None:
    """Exit 0 if the database is at head and matches the models (the `alembic check` of hubaudit), else 3."""
    with _open(db, config) as store:
        store.check()
        err_console.print(f"{store.url}: schema at {store.current()} and up to date")
