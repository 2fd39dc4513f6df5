"""One settings path for every command: a db_url set only in the configuration file is where `crawl`
writes and where `report`, `check`, `escalate` and `db current` read (flag > HUBAUDIT_* env > config > default)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from hubaudit.store import Store
from tests.crawl.conftest import BASE, crawl_args
from tests.fakehub import populate


def _config(path: Path, db: Path) -> Path:
    path.write_text(f'db_url = "sqlite:///{db}"\n')
    return path


def test_crawl_and_report_share_the_database_named_only_in_the_config_file(hub, cli, tmp_path, monkeypatch):
    good = populate(hub, BASE, 3)
    db = tmp_path / "from-config.db"
    monkeypatch.setenv("HUBAUDIT_CONFIG", str(_config(tmp_path / "config.toml", db)))
    res = cli(*crawl_args(hub))
    assert res.code == 0, res.err
    assert json.loads(res.out)["scored"] == len(good)
    assert db.is_file() and not (Path(os.environ["HUBAUDIT_HOME"]) / "hubaudit.db").exists()
    with Store.open(f"sqlite:///{db}") as store:
        assert {r.repo_id for r in store.audit_rows(BASE)} == set(good)

    res = cli("report", "--base", BASE, "--format", "json")
    assert res.code == 0, res.err
    assert {a["repo_id"] for a in json.loads(res.out)["adapters"]} == set(good)
    res = cli("check", good[0], "--offline", "--format", "json")
    assert json.loads(res.out)["source"] != "not_in_store", res.out  # found in the config's database
    res = cli("escalate", "--base", BASE)
    assert res.code == 0, res.err
    res = cli("db", "current")
    assert res.code == 0 and res.out.strip() != "none"
    assert not (Path(os.environ["HUBAUDIT_HOME"]) / "hubaudit.db").exists()  # nobody fell back to the default


def test_flag_and_env_beat_the_config_file_for_crawl(hub, cli, tmp_path, monkeypatch):
    populate(hub, BASE, 1)
    monkeypatch.setenv("HUBAUDIT_CONFIG", str(_config(tmp_path / "config.toml", tmp_path / "from-config.db")))
    monkeypatch.setenv("HUBAUDIT_DB_URL", f"sqlite:///{tmp_path / 'from-env.db'}")
    assert cli(*crawl_args(hub)).code == 0
    assert (tmp_path / "from-env.db").is_file() and not (tmp_path / "from-config.db").exists()
    assert cli(*crawl_args(hub), "--db", f"sqlite:///{tmp_path / 'from-flag.db'}").code == 0
    assert (tmp_path / "from-flag.db").is_file() and not (tmp_path / "from-config.db").exists()
    # an explicit --config is read by crawl as by every other command
    monkeypatch.delenv("HUBAUDIT_DB_URL")
    monkeypatch.delenv("HUBAUDIT_CONFIG")
    other = _config(tmp_path / "other.toml", tmp_path / "other.db")
    assert cli(*crawl_args(hub), "--config", str(other)).code == 0
    assert (tmp_path / "other.db").is_file()
