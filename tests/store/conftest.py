"""Store fixtures: a real SQLite file per test and a real PostgreSQL server per session.

``store`` and ``migrated_url`` hand out databases at head copied from one migrated per session (a
SQLite file copy, PostgreSQL's CREATE DATABASE ... TEMPLATE); ``db_url``, ``sqlite_url`` and
``pg_url`` are empty databases for the tests of migrations and first runs.

The PostgreSQL server is started from the Debian binaries (/usr/lib/postgresql/*/bin) in a
temporary directory on a free 127.0.0.1 port, as the ``postgres`` user when we run as root
(initdb refuses root), and stopped at teardown. Without the binaries the PostgreSQL tests skip.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from hubaudit.store import Store


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


class PgServer:
    """A throwaway PostgreSQL cluster; ``new_url()`` creates a fresh empty database."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="hubaudit-pg-", dir="/tmp"))
        self.data = self.root / "data"
        self.port = _free_port()
        self.prefix: list[str] = []
        if os.geteuid() == 0:
            import pwd

            pw = pwd.getpwnam("postgres")
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
            self.prefix = ["runuser", "-u", "postgres", "--"]
        os.chmod(self.root, 0o755)

    def _run(self, *args: str) -> None:
        subprocess.run([*self.prefix, *args], check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        self._run(str(self.bindir / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")
        opts = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-o", opts, "-l", str(self.root / "log"), "-w", "start")

    def stop(self) -> None:
        try:
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def new_url(self, template: str | None = None) -> str:
        """A fresh database: empty, or a copy of the database named ``template`` (which must have no
        open connection)."""
        import psycopg

        name = "t_" + uuid.uuid4().hex[:12]
        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres", autocommit=True) as c:
            c.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{name}"


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    bindir = _pg_bin()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries not installed (/usr/lib/postgresql/*/bin)")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip("psycopg not installed (pip install 'hubaudit[postgres]')")
    server = PgServer(bindir)
    try:
        server.start()
    except (subprocess.CalledProcessError, KeyError) as exc:
        shutil.rmtree(server.root, ignore_errors=True)
        pytest.skip(f"cannot start a PostgreSQL server here: {exc}")
    yield server
    server.stop()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'hubaudit.db'}"


@pytest.fixture
def pg_url(pg_server: PgServer) -> str:
    return pg_server.new_url()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'hubaudit.db'}"
    return request.getfixturevalue("pg_url")


@pytest.fixture(scope="session")
def _pg_template(pg_server: PgServer) -> str:
    """Name of a PostgreSQL database upgraded to head by the real migrations, once per session."""
    url = pg_server.new_url()
    Store.open(url, create=True).close()  # close disposes the engine: no connection left to block TEMPLATE
    return url.rsplit("/", 1)[1]


@pytest.fixture
def migrated_pg_url(pg_server: PgServer, _pg_template: str) -> str:
    return pg_server.new_url(template=_pg_template)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def migrated_url(request: pytest.FixtureRequest, tmp_path: Path, migrated_sqlite) -> str:
    """``db_url``'s backends, at head: a copy of the session's migrated database."""
    if request.param == "sqlite":
        return migrated_sqlite(tmp_path / "hubaudit.db")
    return request.getfixturevalue("migrated_pg_url")


@pytest.fixture
def store(migrated_url: str) -> Iterator[Store]:
    s = Store.open(migrated_url, create=True)
    yield s
    s.close()
