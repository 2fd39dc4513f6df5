"""Alembic environment for hubaudit (one chain for every dialect; batch mode on SQLite).

Programmatic runs (hubaudit.store.migrate) pass an open connection in
``config.attributes["connection"]``. A developer running the ``alembic`` CLI from the checkout
(``alembic -c alembic.ini upgrade head``) gets the URL from ``-x db=URL``, ``HUBAUDIT_DB_URL``
or the default SQLite file, through hubaudit.settings.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, text

from hubaudit.store.schema import Base

config = context.config
target_metadata = Base.metadata


def _configure(connection: Connection) -> None:
    sqlite = connection.dialect.name == "sqlite"
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite's ALTER TABLE cannot drop or alter columns/constraints: batch mode copies the
        # table instead, which needs every constraint named (schema.NAMING_CONVENTION).
        render_as_batch=sqlite,
        # One transaction per migration: a failure leaves the db at the last good revision.
        transaction_per_migration=True,
        compare_type=True,
    )


def _run(connection: Connection) -> None:
    sqlite = connection.dialect.name == "sqlite"
    if sqlite:
        # A batch copy drops and renames tables; with FKs enforced that would cascade or fail.
        # The pragma is a no-op inside a transaction, so it goes to the driver connection (in
        # autocommit mode, see hubaudit/store/engine.py) before Alembic begins one.
        _pragma(connection, "PRAGMA foreign_keys = OFF")
    _configure(connection)
    with context.begin_transaction():
        context.run_migrations()
    if sqlite:
        if connection.in_transaction():
            connection.commit()
        _pragma(connection, "PRAGMA foreign_keys = ON")


def _pragma(connection: Connection, sql: str) -> None:
    driver = connection.connection.driver_connection
    if getattr(driver, "isolation_level", "") is None:  # hubaudit engine: autocommit driver
        driver.execute(sql)
    else:  # someone else's engine: best effort through SQLAlchemy
        connection.execute(text(sql))


def run_migrations_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=True,
        transaction_per_migration=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    from hubaudit.settings import resolve_db_url
    from hubaudit.store.engine import make_engine

    url = context.get_x_argument(as_dictionary=True).get("db") or config.get_main_option("sqlalchemy.url")
    engine = make_engine(url or resolve_db_url())
    with engine.connect() as conn:
        _run(conn)
        conn.commit()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
