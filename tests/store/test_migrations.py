"""Migrations: one head, empty → head on SQLite and PostgreSQL, round trip with data, models == migrations,
the schema gate, and the migration scripts found from a wheel-style install (hubaudit/_migrations)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import inspect, text

from hubaudit.errors import SchemaOutOfDateError, StoreError
from hubaudit.store import Store, migrate
from hubaudit.store.schema import Base
from tests.store.scans import scan

REPO = Path(__file__).resolve().parents[2]


def test_single_head_and_date_prefixed_files():
    from alembic.script import ScriptDirectory

    with migrate.script_location() as loc:
        scripts = ScriptDirectory.from_config(migrate._config(loc))
        assert len(scripts.get_heads()) == 1
        files = sorted(p.name for p in (loc / "versions").glob("*.py"))
    assert files, "no migration scripts"
    for name in files:
        assert re.fullmatch(r"\d{4}_\d{2}_\d{2}_\d{6}_[0-9a-f]{12}_\w+\.py", name), name


def _tables(store: Store) -> set[str]:
    with store.engine.connect() as conn:
        return set(inspect(conn).get_table_names()) - {migrate.VERSION_TABLE}


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_empty_to_head_matches_models(backend, request, tmp_path):
    url = f"sqlite:///{tmp_path / 'a.db'}" if backend == "sqlite" else request.getfixturevalue("pg_url")
    store = Store.open(url, check_schema=False)
    try:
        assert store.current() is None
        store.upgrade()
        assert store.current() == migrate.head()
        assert _tables(store) == set(Base.metadata.tables)
        assert migrate.diff(store.engine) == []  # the `alembic check` equivalent
        store.check()
    finally:
        store.close()


def test_check_detects_a_schema_the_models_do_not_have(sqlite_url):
    store = Store.open(sqlite_url, create=True)
    with store.engine.begin() as conn:
        conn.execute(text("CREATE TABLE stray (id INTEGER PRIMARY KEY)"))
    with pytest.raises(StoreError, match="differs from the models"):
        store.check()
    store.close()


def _fill(store: Store) -> int:
    rid = store.record_revision(base="org/base", repo_id="u/a", sha="a" * 40, status="scored", scan=scan(0.02))
    ts = store.save_threshold_set("org/base", method="m", featureset_version="fs-1", n=1, strata={}, params={})
    store.save_verdicts(ts, [(rid, True, {"reasons": ["x"], "margin": 1.0})])
    job = store.enqueue_probe(rid, priority=1.0)
    store.claim_probe_jobs("w", limit=1, lease_seconds=60)
    store.finish_probe_job(job, {"flagged": True})
    store.finish_run(store.start_run("ingest", {"x": 1}), counts={"n": 1}, exit_status=0)
    store.behaviour.save_behaviour_calibration("org/base", "probe", {"gap": 0.1, "mean": 0.1}, source="s", n_clean=1)
    return rid


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_downgrade_upgrade_round_trip_with_data(backend, request, tmp_path):
    url = f"sqlite:///{tmp_path / 'a.db'}" if backend == "sqlite" else request.getfixturevalue("pg_url")
    store = Store.open(url, create=True)
    _fill(store)
    assert store.audit_rows("org/base")[0].flagged is True
    store.downgrade("base")
    assert store.current() is None and _tables(store) == set()
    store.upgrade()
    assert store.current() == migrate.head() and migrate.diff(store.engine) == []
    store.close()
    store = Store.open(url)  # a fresh process-like open on the rebuilt schema
    _fill(store)
    assert [r.repo_id for r in store.audit_rows("org/base")] == ["u/a"]
    store.close()


def test_schema_gate(tmp_path):
    url = f"sqlite:///{tmp_path / 'a.db'}"
    with pytest.raises(SchemaOutOfDateError, match="not initialised") as err:
        Store.open(url)
    assert "hubaudit db upgrade" in (err.value.hint or "")
    Store.open(url, create=True).close()  # empty → created
    Store.open(url).close()

    # non-empty but never migrated: create=True must not touch it
    other = f"sqlite:///{tmp_path / 'b.db'}"
    s = Store.open(other, check_schema=False)
    with s.engine.begin() as conn:
        conn.execute(text("CREATE TABLE someone_elses (id INTEGER PRIMARY KEY)"))
    s.close()
    with pytest.raises(SchemaOutOfDateError):
        Store.open(other, create=True)

    # a database from a newer hubaudit (revision unknown to this code)
    s = Store.open(url, check_schema=False)
    with s.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = 'ffffffffffff'"))
    s.close()
    with pytest.raises(StoreError, match="newer than this hubaudit"):
        Store.open(url)


def _wheel_layout(dest: Path) -> Path:
    """Build the wheel if a build backend is available, else lay out what its force-include produces."""
    site = dest / "site"
    try:
        import hatchling  # noqa: F401

        subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dest), str(REPO)],
            check=True, capture_output=True, timeout=300,
        )  # fmt: skip
        import zipfile

        (wheel,) = dest.glob("hubaudit-*.whl")
        zipfile.ZipFile(wheel).extractall(site)
    except ImportError:
        shutil.copytree(REPO / "hubaudit", site / "hubaudit", ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copytree(REPO / "migrations", site / "hubaudit" / "_migrations", ignore=shutil.ignore_patterns("__pycache__"))
    assert (site / "hubaudit" / "_migrations" / "env.py").is_file()
    assert not (site / "migrations").exists()
    return site


@pytest.mark.slow
def test_migrations_work_from_a_wheel_install(tmp_path):
    site = _wheel_layout(tmp_path)
    code = (
        "import sys, hubaudit; from hubaudit.store import Store, migrate\n"
        "assert hubaudit.__file__.startswith(sys.argv[1]), hubaudit.__file__\n"
        "with migrate.script_location() as loc: print(loc)\n"
        "s = Store.open(sys.argv[2], create=True); print(s.current()); s.check(); s.close()\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"PYTHONPATH": str(site)}
    out = subprocess.run(
        [sys.executable, "-c", code, str(site), f"sqlite:///{tmp_path / 'w.db'}"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    loc, rev = out.stdout.split()
    assert Path(loc) == site / "hubaudit" / "_migrations"
    assert rev == migrate.head()


def test_unreachable_database_is_a_store_error():
    with pytest.raises(StoreError, match="cannot open the database"):
        Store.open("postgresql+psycopg://postgres@127.0.0.1:1/nothing")
    with pytest.raises(StoreError, match="invalid database URL"):
        Store.open("not a url")


def _first_run(url, queue):  # type: ignore[no-untyped-def]
    try:
        Store.open(url, create=True).close()
        queue.put("ok")
    except Exception as exc:  # noqa: BLE001
        queue.put(repr(exc))


def test_racing_first_runs_both_succeed(tmp_path):
    import multiprocessing as mp

    url = f"sqlite:///{tmp_path / 'race.db'}"
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_first_run, args=(url, queue)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert sorted(queue.get(timeout=5) for _ in procs) == ["ok"] * 3
    with Store.open(url) as s:
        assert s.current() == migrate.head()
