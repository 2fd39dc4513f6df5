"""The engine and its transactions, shared by every repository of one Store.

Every repository (audit.py, calibration.py, probe_queue.py, lineage.py, runs.py) receives one
:class:`StoreCore` and reaches the database only through it: :meth:`StoreCore.read` and
:meth:`StoreCore.write` are the only places a transaction begins and ends, :meth:`StoreCore.insert`
is the only dialect switch, and :meth:`StoreCore.base_id` the only memo. The contract these
guarantees serve is hubaudit/store/CONTRACT.md.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Literal, cast, overload

from sqlalchemy import Connection, Table, select
from sqlalchemy.exc import OperationalError

from hubaudit.errors import StoreError
from hubaudit.store._sql import UpsertInsert, insert_for
from hubaudit.store.engine import BEGIN_OPTION
from hubaudit.store.schema import Base, BaseModel, utcnow

if TYPE_CHECKING:
    from sqlalchemy import Engine


def table_of(model: type[Base]) -> Table:
    """The Core table of an ORM model (statements run on Connections, never on Sessions)."""
    return cast(Table, model.__table__)


class StoreCore:
    """One engine, its dialect name and the base-name → id memo; the transactions of every repository."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        # No store method deletes a base row, so a committed id stays valid until a migration (see
        # forget_base_ids); ids created by a write that then fails are forgotten with it (see write).
        self._base_ids: dict[str, int] = {}

    @contextlib.contextmanager
    def write(self) -> Iterator[Connection]:
        """A write transaction, committed when the block exits normally and rolled back when it raises.

        On SQLite it begins with ``BEGIN IMMEDIATE`` (see engine.py): the write lock is taken up front,
        so a competing writer waits on ``busy_timeout`` instead of failing half-way.
        """
        known = set(self._base_ids)
        try:
            with self.engine.connect() as conn:
                conn.execution_options(**{BEGIN_OPTION: "BEGIN IMMEDIATE"})
                with conn.begin():
                    yield conn
        except BaseException as exc:
            for name in set(self._base_ids) - known:  # a base row inserted here was rolled back
                self._base_ids.pop(name, None)
            if isinstance(exc, OperationalError):
                raise StoreError(f"database write failed: {str(exc.orig).splitlines()[0]}") from exc
            raise

    @contextlib.contextmanager
    def read(self) -> Iterator[Connection]:
        """A read transaction. On SQLite (WAL) everything read inside the block comes from one snapshot;
        on PostgreSQL (READ COMMITTED) each statement sees what was committed when it started."""
        try:
            with self.engine.connect() as conn, conn.begin():
                yield conn
        except OperationalError as exc:
            raise StoreError(f"database read failed: {str(exc.orig).splitlines()[0]}") from exc

    def forget_base_ids(self) -> None:
        """Drop the base-id memo (after a migration, which may have dropped and recreated the tables)."""
        self._base_ids.clear()

    def insert(self, table: type[Base] | Table) -> UpsertInsert:
        """An INSERT of ``table`` (a model or a Table) with the dialect's ``on_conflict_do_*``."""
        return insert_for(self.dialect, table if isinstance(table, Table) else table_of(table))

    @overload
    def base_id(self, conn: Connection, base: str, *, create: Literal[True] = ...) -> int: ...

    @overload
    def base_id(self, conn: Connection, base: str, *, create: bool) -> int | None: ...

    def base_id(self, conn: Connection, base: str, *, create: bool = True) -> int | None:
        """The id of base model ``base``, inserted first when ``create`` (else None when unknown)."""
        if base in self._base_ids:
            return self._base_ids[base]
        bid = conn.scalar(select(BaseModel.id).where(BaseModel.name == base))
        if bid is None and create:
            conn.execute(self.insert(BaseModel).values(name=base, created_at=utcnow()).on_conflict_do_nothing())
            bid = conn.scalar(select(BaseModel.id).where(BaseModel.name == base))
        if bid is not None:
            self._base_ids[base] = bid
        return bid
