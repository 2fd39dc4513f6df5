"""Engines, built lazily per URL (never at import): SQLite with WAL discipline, or anything SQLAlchemy speaks.

SQLite transactions: the pysqlite driver is put in autocommit mode and BEGIN is emitted by us
(SQLAlchemy's documented pysqlite recipe), so write transactions can start with
``BEGIN IMMEDIATE``: they take the write lock up front and wait out ``busy_timeout`` instead of
failing with SQLITE_BUSY when a read-started transaction would have to upgrade to a writer
after another process committed (which busy_timeout cannot retry).
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url

from hubaudit.errors import StoreError
from hubaudit.store._sql import clean_json

# cron and interactive runs overlap: a writer waits up to this long for another writer's lock.
SQLITE_BUSY_TIMEOUT_MS = 30_000
BEGIN_OPTION = "hubaudit_sqlite_begin"


def _setup_sqlite(dbapi_connection: Any, connection_record: Any) -> None:
    # We emit BEGIN ourselves (see _sqlite_begin); the driver must not open transactions behind our back.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    # Wait for a competing writer instead of failing at once with "database is locked"; first,
    # because switching to WAL below itself needs a lock another process may hold.
    cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS};")
    # Write-ahead log: readers never block the writer and the writer never blocks readers, so a
    # report can run while the nightly crawl writes. (Prefect configurations.py::setup_sqlite)
    # 16 KiB pages for a new file (a no-op on an existing one): a weight score is several KB to tens
    # of KB of JSON, which 4 KiB pages store as long overflow chains; upserting 100,000 scores took
    # 11-19 % less time and a small-adapter database is 30 % smaller (benchmarks/bench_store.py).
    cursor.execute("PRAGMA page_size = 16384;")
    cursor.execute("PRAGMA journal_mode = WAL;")
    # SQLite ignores REFERENCES unless asked; we rely on ON DELETE CASCADE and on FK integrity.
    cursor.execute("PRAGMA foreign_keys = ON;")
    # In WAL mode NORMAL is still corruption-safe; it only risks the last commits on power loss,
    # and every item is re-derivable by re-running the crawl. FULL costs an fsync per commit.
    cursor.execute("PRAGMA synchronous = NORMAL;")
    cursor.close()


def _sqlite_begin(conn: Any) -> None:
    # "BEGIN IMMEDIATE" for write transactions (Store._write), plain deferred BEGIN for reads.
    conn.exec_driver_sql(conn.get_execution_options().get(BEGIN_OPTION, "BEGIN"))


try:  # ~5x faster JSON; a calibration writes a breakdown for each of 100,000 adapters
    import orjson
except ImportError:  # pragma: no cover - optional speed-up, the stdlib path is equivalent
    orjson = None  # type: ignore[assignment, unused-ignore]  # needed where orjson (typed) is installed


def json_dumps(value: Any) -> str:
    """JSON for JSON columns: compact, and NaN/Infinity become null (PostgreSQL's json rejects them).

    orjson writes non-finite floats as null itself; the stdlib path's allow_nan=False check is
    its fast path, and only a document holding a non-finite float pays for the recursive clean-up.
    """
    if orjson is not None:
        try:
            return orjson.dumps(value).decode()
        except TypeError:  # e.g. a numpy scalar or a non-str key: normalise, then the stdlib encoder
            pass
    try:
        return json.dumps(value, allow_nan=False, separators=(",", ":"))
    except (ValueError, TypeError):
        return json.dumps(clean_json(value), allow_nan=False, separators=(",", ":"))


def json_loads(text: str | bytes) -> Any:
    return orjson.loads(text) if orjson is not None else json.loads(text)


def make_engine(url: str) -> Engine:
    """Build the engine for ``url``; for a SQLite file, create its parent directory first."""
    try:
        parsed = make_url(url)
    except Exception as exc:  # any parse failure is a bad URL for the user
        raise StoreError(f"invalid database URL {url!r}: {exc}") from exc
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if database and database != ":memory:" and not database.startswith("file:"):
            from pathlib import Path

            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(parsed, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
                               json_serializer=json_dumps, json_deserializer=json_loads)
        event.listen(engine, "connect", _setup_sqlite)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    try:
        return create_engine(parsed, pool_pre_ping=True, json_serializer=json_dumps, json_deserializer=json_loads)
    except ModuleNotFoundError as exc:
        raise StoreError(
            f"no database driver for {parsed.drivername!r} ({exc.name} is not installed)",
            hint="for PostgreSQL: pip install 'hubaudit[postgres]' and use postgresql+psycopg://...",
        ) from exc
