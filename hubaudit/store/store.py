"""The Store: every read and write of hubaudit's database (its public methods are the contract).

Writes commit before returning (a killed run loses at most the item in flight). On SQLite a
write transaction starts with ``BEGIN IMMEDIATE`` (see engine.py) so overlapping cron and
interactive runs queue on ``busy_timeout`` instead of failing. Sessions and ORM objects never
leave this package: callers get ids, dicts and the frozen rows of rows.py.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, bindparam, select, update
from sqlalchemy.exc import OperationalError

from hubaudit._gc import no_cyclic_gc
from hubaudit.constants import FEATURESET_VERSION
from hubaudit.errors import SchemaOutOfDateError, StoreError
from hubaudit.store import migrate
from hubaudit.store._calibration import _BULK_CHUNK, CalibrationMixin
from hubaudit.store._lineage import LineageMixin, fingerprint_row
from hubaudit.store._queue import QueueMixin
from hubaudit.store._read import ReadMixin
from hubaudit.store._sql import SQL_IN_CHUNK, chunks, clean_json, feature_columns, insert_for, pack_modules
from hubaudit.store.engine import BEGIN_OPTION, make_engine
from hubaudit.store.schema import Adapter, BaseModel, Revision, Run, WeightScore, utcnow

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from hubaudit.models import ScanResult

SUPPORTED_DIALECTS = ("sqlite", "postgresql")
REVISION_STATUSES = frozenset({"scored", "unsupported", "error", "skipped", "retry"})
FINAL_STATUSES = frozenset({"scored", "unsupported", "error", "skipped"})
# A revision that failed transiently ("retry") this many runs in a row becomes a final "error"
# (reason "gave_up"): a repo that always times out must not cost every nightly crawl forever, and
# it stays visible as not audited (never clean). A new commit of the repo starts afresh.
RETRY_LIMIT = 5


class MissingDatabaseError(StoreError):
    """A read-only command found no hubaudit database (no file, or one without tables): nothing to read."""

    hint = "run `hubaudit crawl --base BASE` or `hubaudit ingest PATH --base BASE` first, or pass --db URL"


def _sqlite_path(url: str) -> Any:
    """The file behind a SQLite URL (a Path), or None (another database, memory, a URI filename, a bad URL)."""
    from pathlib import Path

    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
    except Exception:  # noqa: BLE001 - make_engine reports a bad URL with its own message
        return None
    database = parsed.database if parsed.get_backend_name() == "sqlite" else None
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database).expanduser()


@contextlib.contextmanager
def _first_run_lock(engine: Engine) -> Iterator[None]:
    """An advisory flock on the SQLite file's directory while a first run may create the schema.

    The directory, not the database file: closing any descriptor of the database file would drop
    SQLite's own POSIX locks held by this process. No-op for other databases and where flock is
    missing (Windows), where the upgrade's own error handling still settles a race.
    """
    database = engine.url.database if engine.dialect.name == "sqlite" else None
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        fcntl = None  # type: ignore[assignment]
    if fcntl is None or not database or database == ":memory:" or database.startswith("file:"):
        yield
        return
    import os
    from pathlib import Path

    try:
        fd = os.open(Path(database).expanduser().resolve().parent, os.O_RDONLY)
    except OSError:  # an unreadable directory: go without the lock, as on Windows
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the flock


class Store(CalibrationMixin, ReadMixin, QueueMixin, LineageMixin):
    """hubaudit's database. Build with :meth:`Store.open`; use as a context manager to close it."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.url = engine.url.render_as_string(hide_password=True)
        self._dialect = engine.dialect.name
        self._base_ids: dict[str, int] = {}

    # -- lifecycle and migrations -------------------------------------------------------------

    @classmethod
    def open(cls, url: str, *, check_schema: bool = True, create: bool = False,
             must_exist: bool = False) -> Store:  # fmt: skip
        """Open the database at ``url`` (the CLI resolves it once per command: hubaudit.settings).

        ``create``: upgrade an *empty* database to head (first runs just work); a non-empty
        database that is behind is never upgraded implicitly. ``check_schema``: raise
        SchemaOutOfDateError unless the database is at the head revision. ``must_exist`` (read-only
        commands): raise MissingDatabaseError, creating no file and no directory, when a SQLite file
        does not exist or a database has no tables.
        """
        path = _sqlite_path(url) if must_exist else None
        if path is not None and not path.is_file():  # before make_engine, which creates the directory
            raise MissingDatabaseError(f"no hubaudit database at {path}")
        engine = make_engine(url)
        store = cls(engine)
        if store._dialect not in SUPPORTED_DIALECTS:
            engine.dispose()
            raise StoreError(f"unsupported database {store._dialect!r}: use SQLite or PostgreSQL (postgresql+psycopg://)")
        try:
            if must_exist and not create and migrate.is_empty(engine):
                raise MissingDatabaseError(f"the database at {store.url} is empty (no hubaudit tables)")
            if create:
                # Racing first runs (cron and an interactive run) on one new SQLite file: the first
                # connection switches the file to WAL and the upgrade creates the tables; both need
                # the exclusive lock, and SQLite answers some of those collisions with an immediate
                # "database is locked" instead of waiting on busy_timeout. Serialise this phase.
                with _first_run_lock(engine):
                    if migrate.is_empty(engine):
                        try:
                            migrate.upgrade(engine)
                        except Exception:
                            # A racer without the lock (another OS, a network share) got there first:
                            # the loser's CREATE TABLE fails, but the database is at head, as wanted.
                            if migrate.current(engine) != migrate.head():
                                raise
            if check_schema:
                store._assert_current()
        except OperationalError as exc:
            engine.dispose()
            raise StoreError(f"cannot open the database at {store.url}: {str(exc.orig).splitlines()[0]}") from exc
        except Exception:
            engine.dispose()
            raise
        return store

    def _assert_current(self) -> None:
        cur, head = migrate.current(self.engine), migrate.head()
        if cur == head:
            return
        if cur is None:
            raise SchemaOutOfDateError(f"the database at {self.url} is not initialised")
        if not migrate.is_known(cur):
            raise StoreError(
                f"the database at {self.url} is at revision {cur}, newer than this hubaudit knows (head {head})",
                hint="upgrade hubaudit, or use another --db",
            )
        raise SchemaOutOfDateError(f"the database at {self.url} is at revision {cur}, behind the code (head {head})")

    def close(self) -> None:
        """Release every connection."""
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def upgrade(self, revision: str = "head") -> None:
        """Apply migrations up to ``revision``."""
        migrate.upgrade(self.engine, revision)

    def downgrade(self, revision: str) -> None:
        """Revert migrations down to ``revision`` ("base": drop every table)."""
        migrate.downgrade(self.engine, revision)

    def current(self) -> str | None:
        """The revision the database is at (None: never migrated)."""
        return migrate.current(self.engine)

    def check(self) -> None:
        """Raise StoreError unless the database is at head and matches the models (``alembic check``)."""
        self._assert_current()
        diff = migrate.diff(self.engine)
        if diff:
            raise StoreError(f"the database schema differs from the models: {diff[0]!r} (+{len(diff) - 1} more)")

    # -- transactions -------------------------------------------------------------------------

    @contextlib.contextmanager
    def _write(self) -> Iterator[Connection]:
        """A write transaction, committed on exit (BEGIN IMMEDIATE on SQLite)."""
        try:
            with self.engine.connect() as conn:
                conn.execution_options(**{BEGIN_OPTION: "BEGIN IMMEDIATE"})
                with conn.begin():
                    yield conn
        except OperationalError as exc:
            raise StoreError(f"database write failed: {str(exc.orig).splitlines()[0]}") from exc

    @contextlib.contextmanager
    def _read(self) -> Iterator[Connection]:
        try:
            with self.engine.connect() as conn, conn.begin():
                yield conn
        except OperationalError as exc:
            raise StoreError(f"database read failed: {str(exc.orig).splitlines()[0]}") from exc

    def bases(self) -> list[str]:
        """Every base model the store knows (has recorded adapters or a calibration for), sorted."""
        with self._read() as conn:
            return sorted(conn.scalars(select(BaseModel.name)).all())

    def _insert(self, table: Any):  # type: ignore[no-untyped-def]
        return insert_for(self._dialect, table.__table__ if hasattr(table, "__table__") else table)

    def _base_id(self, conn: Connection, base: str, *, create: bool = True) -> int | None:
        if base in self._base_ids:
            return self._base_ids[base]
        bid = conn.scalar(select(BaseModel.id).where(BaseModel.name == base))
        if bid is None and create:
            stmt = self._insert(BaseModel).values(name=base, created_at=utcnow()).on_conflict_do_nothing()
            conn.execute(stmt)
            bid = conn.scalar(select(BaseModel.id).where(BaseModel.name == base))
        if bid is not None:
            self._base_ids[base] = bid
        return bid

    # -- runs -----------------------------------------------------------------------------------

    def start_run(self, command: str, args: dict) -> int:
        """Record the start of a command; returns the run id for :meth:`finish_run`."""
        with self._write() as conn:
            row = Run.__table__.insert().values(command=command, args=clean_json(args), started_at=utcnow(), counts={})
            return int(conn.execute(row.returning(Run.id)).scalar_one())

    def finish_run(self, run_id: int, *, counts: dict[str, int], exit_status: int) -> None:
        """Record the end of a run, its counts and its exit status."""
        with self._write() as conn:
            conn.execute(
                update(Run).where(Run.id == run_id).values(finished_at=utcnow(), counts=clean_json(counts), exit_status=exit_status)
            )

    def runs(self, limit: int = 50) -> list[dict[str, Any]]:
        """The latest runs, newest first."""
        with self._read() as conn:
            rows = conn.execute(select(Run).order_by(Run.id.desc()).limit(limit)).mappings().all()
        return [dict(r) for r in rows]

    # -- adapters -------------------------------------------------------------------------------

    def upsert_adapter(self, base: str, repo_id: str, *, meta: dict | None = None, source: str = "hub") -> int:
        """Insert or refresh one adapter of ``base``; merges ``meta`` into what is stored. Returns its id."""
        with self._write() as conn:
            return self._upsert_adapters(conn, base, [(repo_id, meta)], source)[repo_id]

    def upsert_adapters(self, base: str, items: list[tuple[str, dict | None]], *, source: str = "hub") -> None:
        """:meth:`upsert_adapter` for many ``(repo_id, meta)`` pairs in one transaction (a listing page).

        A re-crawl of an unchanged base is one upsert per listed adapter: done one at a time, that was
        most of its time (benchmarks/bench_crawl.py).
        """
        if items:
            with self._write() as conn:
                self._upsert_adapters(conn, base, items, source)

    def _upsert_adapters(self, conn: Connection, base: str, items: list[tuple[str, dict | None]],
                         source: str) -> dict[str, int]:  # fmt: skip
        """Insert new adapters, refresh known ones (last_seen, removed=False, meta merged, author);
        returns {repo_id: adapter id}."""
        merged_items: dict[str, dict] = {}
        for repo_id, meta in items:  # a repo listed twice: metas merge in order, as repeated calls would
            merged_items.setdefault(repo_id, {}).update(clean_json(meta or {}))
        bid = self._base_id(conn, base)
        now = utcnow()
        old: dict[str, Any] = {}
        for part in chunks(sorted(merged_items), SQL_IN_CHUNK):
            q = select(Adapter.id, Adapter.repo_id, Adapter.meta, Adapter.author).where(
                Adapter.base_id == bid, Adapter.repo_id.in_(part))
            old.update({row.repo_id: row for row in conn.execute(q)})
        updates, inserts = [], []
        for repo_id, meta in merged_items.items():
            prev = old.get(repo_id)
            merged = {**(dict(prev.meta) if prev is not None else {}), **meta}
            author = merged.get("author") or (prev.author if prev is not None else None) or _author(repo_id)
            if prev is not None:
                updates.append({"b_id": prev.id, "b_meta": merged, "b_author": author})
            else:
                inserts.append(dict(base_id=bid, repo_id=repo_id, author=author, source=source, first_seen=now,
                                    last_seen=now, removed=False, meta=merged))
        table = Adapter.__table__
        if updates:
            conn.execute(
                update(table).where(table.c.id == bindparam("b_id")).values(
                    last_seen=now, removed=False, meta=bindparam("b_meta"), author=bindparam("b_author")),
                updates,
            )
        if inserts:
            conn.execute(table.insert(), inserts)
        ids = {repo_id: int(row.id) for repo_id, row in old.items()}
        if inserts:
            ids.update(self._adapter_ids(conn, bid, [r["repo_id"] for r in inserts]))
        return ids

    def revision_outcomes(self, keys: list[tuple[str, str]]) -> dict[tuple[str, str], str]:
        """:meth:`revision_outcome` for many ``(repo_id, sha)`` pairs; pairs never seen are absent."""
        wanted = set(keys)
        out: dict[tuple[str, str], str] = {}
        with self._read() as conn:
            for part in chunks(sorted({r for r, _ in wanted}), SQL_IN_CHUNK):
                q = select(Revision.repo_id, Revision.sha, Revision.status).where(Revision.repo_id.in_(part)).order_by(Revision.id)
                for row in conn.execute(q):  # ascending id: the newest row of a pair wins, as in revision_outcome
                    if (row.repo_id, row.sha) in wanted:
                        out[(row.repo_id, row.sha)] = row.status
        return out

    def mark_removed(self, base: str, present_repo_ids: set[str]) -> list[str]:
        """Mark every Hub adapter of ``base`` not in ``present_repo_ids`` removed; returns those newly marked."""
        with self._write() as conn:
            bid = self._base_id(conn, base)
            rows = conn.execute(
                select(Adapter.id, Adapter.repo_id).where(Adapter.base_id == bid, Adapter.source == "hub", Adapter.removed.is_(False))
            ).all()
            gone = [r for r in rows if r.repo_id not in present_repo_ids]
            for part in chunks([r.id for r in gone], SQL_IN_CHUNK):
                conn.execute(update(Adapter).where(Adapter.id.in_(part)).values(removed=True))
        return sorted(r.repo_id for r in gone)

    def adapter_meta(self, base: str, repo_id: str) -> dict | None:
        """The stored listing metadata of one adapter, plus author/source/first_seen/last_seen/removed."""
        with self._read() as conn:
            row = conn.execute(
                select(Adapter).join(BaseModel, BaseModel.id == Adapter.base_id).where(BaseModel.name == base, Adapter.repo_id == repo_id)
            ).mappings().first()
        if row is None:
            return None
        return dict(row["meta"]) | {k: row[k] for k in ("author", "source", "first_seen", "last_seen", "removed")}

    # -- revisions ------------------------------------------------------------------------------

    def revision_outcome(self, repo_id: str, sha: str) -> str | None:
        """The stored status of (repo_id, sha), or None if never seen (see FINAL_STATUSES)."""
        with self._read() as conn:
            return conn.scalar(
                select(Revision.status).where(Revision.repo_id == repo_id, Revision.sha == sha).order_by(Revision.id.desc()).limit(1)
            )

    def record_revision(
        self, *, base: str, repo_id: str, sha: str, status: str, reason: str | None = None, error: str | None = None,
        files: list[dict] | None = None, declared_base: str | None = None, provenance: dict | None = None,
        scan: ScanResult | None = None,
    ) -> int:  # fmt: skip
        """Record what happened to one revision (idempotent on (repo_id, sha)); stores the score of an ok scan."""
        item = dict(repo_id=repo_id, sha=sha, status=status, reason=reason, error=error, files=files,
                    declared_base=declared_base, provenance=provenance, scan=scan)  # fmt: skip
        with self._write() as conn:
            return self._record(conn, base, [item])[0]

    def record_revisions_bulk(self, base: str, items: list[dict[str, Any]]) -> list[int]:
        """:meth:`record_revision` for many items (dicts of its keyword arguments, minus ``base``).

        Commits every few thousand rows; returns the revision ids in input order.
        """
        ids: list[int] = []
        with no_cyclic_gc():
            for part in chunks(items, _BULK_CHUNK):
                with self._write() as conn:
                    ids.extend(self._record(conn, base, part))
        return ids

    def _record(self, conn: Connection, base: str, items: list[dict[str, Any]]) -> list[int]:
        for it in items:
            if it["status"] not in REVISION_STATUSES:
                raise ValueError(f"unknown revision status {it['status']!r}")
        bid = self._base_id(conn, base)
        now = utcnow()
        repo_ids = sorted({it["repo_id"] for it in items})
        ins = self._insert(Adapter)
        conn.execute(
            ins.on_conflict_do_update(index_elements=["base_id", "repo_id"], set_={"last_seen": now, "removed": False}),
            [dict(base_id=bid, repo_id=r, author=_author(r), source="local" if r.startswith("local:") else "hub",
                  first_seen=now, last_seen=now, removed=False, meta={}) for r in repo_ids],
        )  # fmt: skip
        adapter_ids = self._adapter_ids(conn, bid, repo_ids)
        items = self._count_retries(conn, items)
        rev_rows = [
            dict(adapter_id=adapter_ids[it["repo_id"]], repo_id=it["repo_id"], sha=it["sha"], status=it["status"],
                 reason=it.get("reason"), error=_one_line(it.get("error")), files=it.get("files") or [],
                 declared_base=it.get("declared_base"), provenance=it.get("provenance") or {}, recorded_at=now)
            for it in items
        ]  # fmt: skip
        ins = self._insert(Revision)
        cols = ("status", "reason", "error", "files", "declared_base", "provenance", "recorded_at")
        conn.execute(
            ins.on_conflict_do_update(index_elements=["adapter_id", "sha"], set_={c: ins.excluded[c] for c in cols}), rev_rows
        )
        rev_ids = self._revision_ids(conn, [(r["adapter_id"], r["sha"]) for r in rev_rows])
        ids = [rev_ids[(r["adapter_id"], r["sha"])] for r in rev_rows]
        scores = [_score_row(rid, it["scan"], now) for rid, it in zip(ids, items) if _scored(it)]
        if scores:
            ins = self._insert(WeightScore)
            cols = ("score", "stratum", "features", "feature_digest", "feature_vec", "module_norms", "summary", "created_at")
            conn.execute(
                ins.on_conflict_do_update(
                    index_elements=["revision_id", "featureset_version"], set_={c: ins.excluded[c] for c in cols}
                ),
                scores,
            )
        prints = [fingerprint_row(rid, it["scan"].fingerprint, now)
                  for rid, it in zip(ids, items) if _scored(it) and it["scan"].fingerprint is not None]  # fmt: skip
        if prints:
            self._upsert_fingerprints(conn, prints)
        return ids

    def _count_retries(self, conn: Connection, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Number the consecutive "retry" outcomes of each revision; the RETRY_LIMIT-th becomes "error"."""
        keys = {(it["repo_id"], it["sha"]) for it in items if it["status"] == "retry"}
        if not keys:
            return items
        prior: dict[tuple[str, str], int] = {}
        for part in chunks(sorted(keys), 400):
            q = select(Revision.repo_id, Revision.sha, Revision.provenance).where(
                Revision.status == "retry", Revision.repo_id.in_({r for r, _ in part}))
            for row in conn.execute(q):
                if (row.repo_id, row.sha) in keys:
                    prior[(row.repo_id, row.sha)] = int((row.provenance or {}).get("retry_attempts", 1))
        out = []
        for it in items:
            if it["status"] == "retry":
                n = prior.get((it["repo_id"], it["sha"]), 0) + 1
                it = {**it, "provenance": {**(it.get("provenance") or {}), "retry_attempts": n}}
                if n >= RETRY_LIMIT:
                    last = _one_line(it.get("error")) or it.get("reason") or "transient failure"
                    it.update(status="error", reason="gave_up",
                              error=f"gave up after {n} runs failed transiently ({it.get('reason')}): {last}")
            out.append(it)
        return out

    def _adapter_ids(self, conn: Connection, bid: int, repo_ids: list[str]) -> dict[str, int]:
        out: dict[str, int] = {}
        for part in chunks(repo_ids, SQL_IN_CHUNK):
            q = select(Adapter.repo_id, Adapter.id).where(Adapter.base_id == bid, Adapter.repo_id.in_(part))
            out.update({r.repo_id: r.id for r in conn.execute(q)})
        return out

    def _revision_ids(self, conn: Connection, keys: list[tuple[int, str]]) -> dict[tuple[int, str], int]:
        out: dict[tuple[int, str], int] = {}
        adapter_ids = sorted({a for a, _ in keys})
        for part in chunks(adapter_ids, SQL_IN_CHUNK):
            q = select(Revision.adapter_id, Revision.sha, Revision.id).where(Revision.adapter_id.in_(part))
            out.update({(r.adapter_id, r.sha): r.id for r in conn.execute(q)})
        return out


def _author(repo_id: str) -> str | None:
    if repo_id.startswith("local:") or "/" not in repo_id:
        return None
    return repo_id.split("/", 1)[0]


def _one_line(text: str | None) -> str | None:
    if text is None:
        return None
    return (text.strip().splitlines() or [""])[0][:2000]


def _scored(item: dict[str, Any]) -> bool:
    scan = item.get("scan")
    return scan is not None and scan.status == "ok" and item["status"] == "scored"


def _score_row(revision_id: int, scan: ScanResult, now: Any) -> dict[str, Any]:
    summary = scan.to_dict(with_modules=False)
    del summary["features"]  # stored in its own column
    return dict(
        revision_id=revision_id,
        featureset_version=scan.featureset_version or FEATURESET_VERSION,
        score=clean_json(scan.score),
        stratum=scan.stratum,
        **feature_columns(scan.features),
        module_norms=pack_modules(scan.modules),
        summary=summary,
        created_at=now,
    )
