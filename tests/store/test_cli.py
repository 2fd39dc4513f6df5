"""`hubaudit db|ingest|calibrate` as a user runs them (in-process through the console script's entry
point, tests/_cli.py): exit codes, stdout carries data only."""

from __future__ import annotations

import json

import pytest

from tests._cli import CliResult, run_cli
from tests.store.adapters import write_lora

BASE = "sentence-transformers/all-MiniLM-L6-v2"


def run(*args: str, env: dict | None = None, input: str | None = None) -> CliResult:
    return run_cli(*args, env=env, input=input)


def test_db_commands(tmp_path):
    url = f"sqlite:///{tmp_path / 'x.db'}"
    r = run("db", "current", "--db", url)
    assert r.returncode == 0 and r.stdout == "none\n" and "db upgrade" in r.stderr
    r = run("db", "check", "--db", url)
    assert r.returncode == 3 and r.stdout == "" and "hubaudit db upgrade" in r.stderr and "Traceback" not in r.stderr
    r = run("db", "upgrade", "--db", url)
    assert r.returncode == 0 and r.stdout == "" and "upgraded" in r.stderr
    head = run("db", "current", "--db", url).stdout.strip()
    assert len(head) == 12
    assert run("db", "check", "--db", url).returncode == 0
    r = run("db", "upgrade", "--db", url)
    assert r.returncode == 0 and "already at" in r.stderr
    r = run("db", "upgrade", "--sql", "--db", f"sqlite:///{tmp_path / 'offline.db'}")
    assert r.returncode == 0 and "CREATE TABLE adapters" in r.stdout
    r = run("db", "current", env={"HUBAUDIT_DB_URL": url})  # env var instead of the flag
    assert r.stdout.strip() == head


def test_default_database_lives_under_hubaudit_home(tmp_path):
    home = tmp_path / "home"
    assert run("db", "upgrade", env={"HUBAUDIT_HOME": str(home)}).returncode == 0
    assert (home / "hubaudit.db").is_file()


def test_ingest_then_calibrate(tmp_path):
    url = f"sqlite:///{tmp_path / 'x.db'}"
    adapters = [str(write_lora(tmp_path / f"a{i}", seed=i)) for i in range(4)]
    r = run("ingest", *adapters, "--base", BASE, "--db", url, "--format", "json")  # empty db: created
    assert r.returncode == 0, r.stderr
    items = json.loads(r.stdout)
    assert [i["status"] for i in items] == ["scored"] * 4 and "4 scored" in r.stderr

    broken = tmp_path / "broken"  # looks like an adapter (has a config), cannot be scored: recorded as error
    broken.mkdir()
    (broken / "adapter_config.json").write_text("{}")
    r = run("ingest", adapters[0], str(broken), "--base", BASE, "--db", url)
    assert r.returncode == 3
    lines = r.stdout.splitlines()
    assert len(lines) == 3 and lines[0].startswith("status\t") and lines[1].startswith("scored\t")
    assert lines[2].startswith("error\t")
    assert run("ingest", adapters[0], str(tmp_path / "nope"), "--base", BASE, "--db", url).returncode == 2

    r = run("calibrate", "--base", BASE, "--db", url, "--format", "json")  # 4 < default min N
    assert r.returncode == 3 and "min N=30" in r.stderr
    assert json.loads(r.stdout)["verdicts"] == {"flagged": 0, "clean": 0, "not_calibrated": 4}

    r = run("calibrate", "--base", BASE, "--db", url, "--min-n", "3", "--reference", adapters[1], "--format", "json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["version"] == 2 and out["n"] == 4 and out["n_references"] == 1
    assert out["verdicts"]["not_calibrated"] == 0 and out["strata"][0]["stratum"] == "lora|r4|query,value"

    r = run("calibrate", "--base", "nobody/base", "--db", url)
    assert r.returncode == 3 and r.stdout == "" and "no scored adapters" in r.stderr


def test_commands_refuse_a_database_behind_the_code(tmp_path):
    import sqlite3

    db = tmp_path / "old.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE legacy (id INTEGER PRIMARY KEY)")  # not empty, never migrated
    con.commit()
    con.close()
    r = run("ingest", str(write_lora(tmp_path / "a")), "--base", BASE, "--db", f"sqlite:///{db}")
    assert r.returncode == 3 and r.stdout == ""
    assert "not initialised" in r.stderr and "hubaudit db upgrade" in r.stderr


@pytest.mark.postgres
def test_db_upgrade_on_postgresql(pg_url):
    r = run("db", "upgrade", "--db", pg_url)
    assert r.returncode == 0, r.stderr
    assert run("db", "check", "--db", pg_url).returncode == 0


def test_db_upgrade_with_a_config_file_as_cron_runs_it(tmp_path):
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'db_url = "sqlite:///{tmp_path / "nightly.db"}"\n')
    r = run("db", "upgrade", "--config", str(cfg))
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "nightly.db").is_file()
    r = run("db", "check", "--config", str(tmp_path / "missing.toml"))
    assert r.returncode == 3 and "no configuration file" in r.stderr


def test_declining_downgrade_exits_0_and_changes_nothing(tmp_path):
    # exit 1 means findings: a user saying "no" is neither a finding nor an error
    url = f"sqlite:///{tmp_path / 'x.db'}"
    assert run("db", "upgrade", "--db", url).returncode == 0
    head = run("db", "current", "--db", url).stdout.strip()
    r = run("db", "downgrade", "base", "--db", url, input="n\n")
    assert r.returncode == 0 and r.stdout == "" and "aborted" in r.stderr, r.stderr
    assert run("db", "current", "--db", url).stdout.strip() == head
    # no answer at all (stdin closed, a script without --yes) is a usage error, not a silent success
    r = run("db", "downgrade", "base", "--db", url, input="")
    assert r.returncode == 2 and "--yes" in r.stderr and "Traceback" not in r.stderr
    assert run("db", "current", "--db", url).stdout.strip() == head
