"""The Store: every read and write of hubaudit's database, composed of one repository per concern.

The contract (transactions and commit points, idempotency keys, status vocabulary, the probe queue's
leases, what never leaves this package, the migration rule) is written in hubaudit/store/CONTRACT.md.
"""

from __future__ import annotations

import contextlib
from collections.abc import Collection, Iterator, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy.exc import OperationalError

from hubaudit.constants import FEATURESET_VERSION, FINGERPRINT_VERSION
from hubaudit.errors import MissingDatabaseError, SchemaOutOfDateError, StoreError
from hubaudit.store import migrate
from hubaudit.store.audit import FINAL_STATUSES, RETRY_LIMIT, REVISION_STATUSES, AuditRepository
from hubaudit.store.behaviour import BehaviourCalibrationRepository
from hubaudit.store.calibration import CalibrationRepository
from hubaudit.store.core import StoreCore
from hubaudit.store.engine import make_engine
from hubaudit.store.lineage import BlocklistRow, FingerprintSet, LineageRepository
from hubaudit.store.probe_queue import QueueRepository
from hubaudit.store.rows import AuditRow, PopulationRow, ProbeJobRow, ThresholdSetRow
from hubaudit.store.runs import RunLogRepository

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from hubaudit.models import Fingerprint, ScanResult

__all__ = ["FINAL_STATUSES", "RETRY_LIMIT", "REVISION_STATUSES", "SUPPORTED_DIALECTS", "MissingDatabaseError", "Store"]

SUPPORTED_DIALECTS = ("sqlite", "postgresql")


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


class Store:
    """hubaudit's database. Build with :meth:`Store.open`; use as a context manager to close it.

    The structure is the repositories, each given the one :class:`StoreCore` (engine, transactions,
    dialect upserts, the base-id memo): ``store.audit`` (adapters, revisions, audit rows),
    ``store.calibration`` (population, re-scored features, threshold sets, verdicts), ``store.behaviour``
    (versioned probe, τ_search and PSIM thresholds per base), ``store.queue``
    (probe jobs and results), ``store.lineage`` (fingerprints, blocklist, downstream repos) and
    ``store.run_log`` (runs). The public methods below are the stable facade: each is one line that
    delegates to its repository, so callers written against ``store.audit_rows(...)`` keep working;
    new code may use either. What every repository guarantees is written in hubaudit/store/CONTRACT.md.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.url = engine.url.render_as_string(hide_password=True)
        self._core = StoreCore(engine)
        self.audit = AuditRepository(self._core)
        self.calibration = CalibrationRepository(self._core)
        self.behaviour = BehaviourCalibrationRepository(self._core)
        self.queue = QueueRepository(self._core)
        self.lineage = LineageRepository(self._core)
        self.run_log = RunLogRepository(self._core)

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
        if store._core.dialect not in SUPPORTED_DIALECTS:
            engine.dispose()
            raise StoreError(f"unsupported database {store._core.dialect!r}: use SQLite or PostgreSQL "
                             "(postgresql+psycopg://)")
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
        self._core.forget_base_ids()
        migrate.upgrade(self.engine, revision)

    def downgrade(self, revision: str) -> None:
        """Revert migrations down to ``revision`` ("base": drop every table)."""
        self._core.forget_base_ids()
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

    # -- the facade: one line per method, documented on the repository ---------------------------

    # runs (RunLogRepository)
    def start_run(self, command: str, args: dict[str, Any]) -> int:
        return self.run_log.start_run(command, args)

    def finish_run(self, run_id: int, *, counts: dict[str, int], exit_status: int) -> None:
        return self.run_log.finish_run(run_id, counts=counts, exit_status=exit_status)

    def runs(self, limit: int = 50) -> list[dict[str, Any]]:
        return self.run_log.runs(limit)

    # bases, adapters, revisions and audit rows (AuditRepository)
    def bases(self) -> list[str]:
        return self.audit.bases()

    def upsert_adapter(self, base: str, repo_id: str, *, meta: dict[str, Any] | None = None,
                       source: str = "hub") -> int:
        return self.audit.upsert_adapter(base, repo_id, meta=meta, source=source)

    def upsert_adapters(self, base: str, items: list[tuple[str, dict[str, Any] | None]], *,
                        source: str = "hub") -> None:
        return self.audit.upsert_adapters(base, items, source=source)

    def mark_removed(self, base: str, present_repo_ids: set[str]) -> list[str]:
        return self.audit.mark_removed(base, present_repo_ids)

    def adapter_meta(self, base: str, repo_id: str) -> dict[str, Any] | None:
        return self.audit.adapter_meta(base, repo_id)

    def revision_outcome(self, repo_id: str, sha: str) -> str | None:
        return self.audit.revision_outcome(repo_id, sha)

    def revision_outcomes(self, keys: list[tuple[str, str]]) -> dict[tuple[str, str], str]:
        return self.audit.revision_outcomes(keys)

    def record_revision(
        self, *, base: str, repo_id: str, sha: str, status: str, reason: str | None = None, error: str | None = None,
        files: list[dict[str, Any]] | None = None, declared_base: str | None = None,
        provenance: dict[str, Any] | None = None, scan: ScanResult | None = None,
    ) -> int:  # fmt: skip
        return self.audit.record_revision(base=base, repo_id=repo_id, sha=sha, status=status, reason=reason,
                                          error=error, files=files, declared_base=declared_base, provenance=provenance,
                                          scan=scan)  # fmt: skip

    def record_revisions_bulk(self, base: str, items: list[dict[str, Any]]) -> list[int]:
        return self.audit.record_revisions_bulk(base, items)

    def audit_rows(self, base: str, *, since: datetime | None = None,
                   revision_ids: Collection[int] | None = None) -> list[AuditRow]:  # fmt: skip
        return self.audit.audit_rows(base, since=since, revision_ids=revision_ids)

    def find_revision(self, repo_id: str, sha: str | None = None) -> AuditRow | None:
        return self.audit.find_revision(repo_id, sha)

    def module_norms(self, revision_id: int) -> list[dict[str, Any]]:
        return self.audit.module_norms(revision_id)

    def probe_confirmed(self, base: str) -> list[int]:
        return self.audit.probe_confirmed(base)

    # calibration (CalibrationRepository)
    def population(self, base: str, featureset_version: str = FEATURESET_VERSION) -> list[PopulationRow]:
        return self.calibration.population(base, featureset_version)

    def stale_scores(self, base: str, featureset_version: str = FEATURESET_VERSION, *, after: int = 0,
                     limit: int | None = None) -> list[dict[str, Any]]:  # fmt: skip
        return self.calibration.stale_scores(base, featureset_version, after=after, limit=limit)

    def add_rescored(self, featureset_version: str, rows: list[dict[str, Any]]) -> None:
        return self.calibration.add_rescored(featureset_version, rows)

    def save_threshold_set(self, base: str, *, method: str, featureset_version: str, n: int, strata: dict[str, Any],
                           params: dict[str, Any]) -> int:  # fmt: skip
        return self.calibration.save_threshold_set(base, method=method, featureset_version=featureset_version, n=n,
                                                   strata=strata, params=params)  # fmt: skip

    def active_threshold_set(self, base: str) -> ThresholdSetRow | None:
        return self.calibration.active_threshold_set(base)

    def threshold_sets(self, base: str) -> list[ThresholdSetRow]:
        return self.calibration.threshold_sets(base)

    def save_verdicts(self, threshold_set_id: int, verdicts: list[tuple[int, bool | None, dict[str, Any]]]) -> None:
        return self.calibration.save_verdicts(threshold_set_id, verdicts)

    # the probe queue (QueueRepository)
    def enqueue_probe(self, revision_id: int, *, priority: float) -> int | None:
        return self.queue.enqueue_probe(revision_id, priority=priority)

    def enqueue_probes(self, items: Sequence[tuple[int, float]]) -> dict[int, int | None]:
        return self.queue.enqueue_probes(items)

    def claim_probe_jobs(self, worker: str, *, limit: int, lease_seconds: int, base: str | None = None,
                         after: tuple[float, int] | None = None) -> list[ProbeJobRow]:
        return self.queue.claim_probe_jobs(worker, limit=limit, lease_seconds=lease_seconds, base=base, after=after)

    def finish_probe_job(self, job_id: int, result: dict[str, Any]) -> None:
        return self.queue.finish_probe_job(job_id, result)

    def fail_probe_job(self, job_id: int, reason: str, *, max_attempts: int = 3) -> None:
        return self.queue.fail_probe_job(job_id, reason, max_attempts=max_attempts)

    def probe_jobs(self, base: str | None = None, status: str | None = None) -> list[ProbeJobRow]:
        return self.queue.probe_jobs(base, status)

    # fingerprints, blocklist, downstream repos (LineageRepository)
    def save_fingerprints(self, items: list[tuple[int, Fingerprint]]) -> None:
        return self.lineage.save_fingerprints(items)

    def fingerprints(self, base: str, version: str = FINGERPRINT_VERSION, *,
                     revision_ids: Collection[int] | None = None) -> FingerprintSet:  # fmt: skip
        return self.lineage.fingerprints(base, version, revision_ids=revision_ids)

    def fingerprint_dim(self, base: str, version: str = FINGERPRINT_VERSION) -> int | None:
        return self.lineage.fingerprint_dim(base, version)

    def add_blocklist_entries(self, base: str, entries: list[dict[str, Any]]) -> int:
        return self.lineage.add_blocklist_entries(base, entries)

    def blocklist(self, base: str, version: str | None = FINGERPRINT_VERSION) -> list[BlocklistRow]:
        return self.lineage.blocklist(base, version)

    def record_downstream(self, base: str, repo_id: str, children: list[tuple[str, str]]) -> None:
        return self.lineage.record_downstream(base, repo_id, children)

    def downstream(self, base: str) -> dict[str, list[tuple[str, str]]]:
        return self.lineage.downstream(base)


def _same_doc() -> None:
    """Give each facade method its repository method's docstring, so help(Store.audit_rows) reads as before."""
    for cls in (RunLogRepository, AuditRepository, CalibrationRepository, QueueRepository, LineageRepository):
        for name, fn in vars(cls).items():
            if not name.startswith("_") and callable(fn) and name in vars(Store):
                vars(Store)[name].__doc__ = fn.__doc__


_same_doc()
