"""Alembic, behind four functions: upgrade, downgrade, current, check (and head, for the schema gate).

The migration scripts live in ``migrations/`` of a source checkout and ship in the wheel as
``hubaudit/_migrations`` (pyproject force-include); :func:`script_location` finds either. Alembic
runs on a connection we hand it (``config.attributes["connection"]``), so ``env.py`` never reads
settings or the environment on this path.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, inspect

if TYPE_CHECKING:
    from alembic.config import Config
    from sqlalchemy import Connection

# Alembic's command functions share module-level state (alembic.context proxies); serialise them
# within a process, as Prefect's alembic_commands.with_alembic_lock does for the same reason.
_ALEMBIC_LOCK = threading.Lock()
VERSION_TABLE = "alembic_version"
# Date-prefixed revision files (Prefect): `ls versions/` reads as a changelog.
FILE_TEMPLATE = "%%(year)d_%%(month).2d_%%(day).2d_%%(hour).2d%%(minute).2d%%(second).2d_%%(rev)s_%%(slug)s"


@contextlib.contextmanager
def script_location() -> Iterator[Path]:
    """The migrations directory: the checkout's ``migrations/`` if present, else the packaged copy."""
    import hubaudit

    checkout = Path(hubaudit.__file__).resolve().parent.parent / "migrations"
    if (checkout / "env.py").is_file():
        yield checkout
        return
    packaged = resources.files("hubaudit") / "_migrations"
    with resources.as_file(packaged) as path:
        if not (Path(path) / "env.py").is_file():
            from hubaudit.errors import StoreError

            raise StoreError("the database migration scripts are missing from this installation")
        yield Path(path)


def _config(location: Path, connection: Connection | None = None) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(location))
    cfg.set_main_option("file_template", FILE_TEMPLATE)
    cfg.set_main_option("path_separator", "os")
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


@functools.lru_cache(maxsize=1)
def _revisions() -> tuple[tuple[str, ...], frozenset[str]]:
    from alembic.script import ScriptDirectory

    with script_location() as loc:
        scripts = ScriptDirectory.from_config(_config(loc))
        return tuple(scripts.get_heads()), frozenset(s.revision for s in scripts.walk_revisions())


def head() -> str:
    """The head revision of the migration chain (one chain, one head: tested)."""
    heads = _revisions()[0]
    if len(heads) != 1:
        raise RuntimeError(f"the migration chain has {len(heads)} heads: {heads}")
    return heads[0]


def is_known(revision: str) -> bool:
    """Whether ``revision`` belongs to this code's chain (else the db is newer than the code)."""
    return revision in _revisions()[1]


def current(engine: Engine) -> str | None:
    """The revision the database is at (None: never migrated)."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def is_empty(engine: Engine) -> bool:
    """True when the database has no tables but Alembic's own (safe to create from scratch)."""
    with engine.connect() as conn:
        return not (set(inspect(conn).get_table_names()) - {VERSION_TABLE})


def _run(engine: Engine, fn_name: str, revision: str, *, sql: bool = False) -> None:
    from alembic import command

    with _ALEMBIC_LOCK, script_location() as loc:
        if sql:  # offline mode: print SQL, touch nothing
            cfg = _config(loc)
            cfg.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False))
            getattr(command, fn_name)(cfg, revision, sql=True)
            return
        with engine.connect() as conn:
            if engine.dialect.name == "sqlite":
                # Take the write lock up front: a migration that starts by reading the version
                # table and then writes cannot wait on busy_timeout (see engine.py).
                from hubaudit.store.engine import BEGIN_OPTION

                conn.execution_options(**{BEGIN_OPTION: "BEGIN IMMEDIATE"})
            getattr(command, fn_name)(_config(loc, conn), revision)
            conn.commit()


def upgrade(engine: Engine, revision: str = "head", *, sql: bool = False) -> None:
    """Upgrade the database to ``revision``."""
    _run(engine, "upgrade", revision, sql=sql)


def downgrade(engine: Engine, revision: str) -> None:
    """Downgrade the database to ``revision`` ("base" drops everything)."""
    _run(engine, "downgrade", revision)


def diff(engine: Engine) -> list[Any]:
    """Differences between the models and the database (``alembic check``: empty when they match)."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from hubaudit.store.schema import Base

    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True, "render_as_batch": True})
        return [d for d in compare_metadata(ctx, Base.metadata) if not _ignored(d)]


def _ignored(d: object) -> bool:
    # The alembic_version table is Alembic's own, not a model.
    return isinstance(d, tuple) and d[0] == "remove_table" and d[1].name == VERSION_TABLE
