"""Settings resolution: flag > HUBAUDIT_* env > config file > default (HUBAUDIT_HOME, else the platform data dir)."""

from __future__ import annotations

from pathlib import Path

from hubaudit.settings import Settings


def test_flag_beats_env_beats_default(tmp_path):
    env = {"HUBAUDIT_HOME": str(tmp_path / "h"), "HUBAUDIT_DB_URL": "sqlite:////env.db"}
    assert Settings.from_env(env, db_url="sqlite:////flag.db").db_url == "sqlite:////flag.db"
    assert Settings.from_env(env).db_url == "sqlite:////env.db"
    s = Settings.from_env({"HUBAUDIT_HOME": str(tmp_path / "h")})
    assert s.home == tmp_path / "h" and s.db_url == f"sqlite:///{tmp_path / 'h' / 'hubaudit.db'}"


def test_platform_data_dir_without_hubaudit_home(tmp_path):
    import platformdirs

    s = Settings.from_env({})
    assert s.home == Path(platformdirs.user_data_dir("hubaudit"))
    assert s.db_url.endswith("/hubaudit.db")


def test_config_file_sits_between_env_and_default(tmp_path, monkeypatch):
    from hubaudit.settings import resolve_db_url

    cfg = tmp_path / "config.toml"
    cfg.write_text(f'db_url = "sqlite:///{tmp_path / "from-config.db"}"\n')
    assert resolve_db_url(None, cfg) == f"sqlite:///{tmp_path / 'from-config.db'}"
    monkeypatch.setenv("HUBAUDIT_CONFIG", str(cfg))
    assert resolve_db_url() == f"sqlite:///{tmp_path / 'from-config.db'}"
    monkeypatch.setenv("HUBAUDIT_DB_URL", "sqlite:////env.db")
    assert resolve_db_url() == "sqlite:////env.db"
    assert resolve_db_url("sqlite:////flag.db") == "sqlite:////flag.db"
    monkeypatch.delenv("HUBAUDIT_DB_URL")
    monkeypatch.delenv("HUBAUDIT_CONFIG")
    assert resolve_db_url().endswith("/hubaudit.db")  # no config file anywhere: the default


def test_resolve_is_the_one_path_and_reads_the_config_file_only_when_needed(tmp_path):
    import pytest

    from hubaudit.errors import ConfigError

    home = str(tmp_path / "h")
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'db_url = "sqlite:///{tmp_path / "c.db"}"\n')
    assert Settings.resolve(env={"HUBAUDIT_HOME": home, "HUBAUDIT_CONFIG": str(cfg)}).db_url == f"sqlite:///{tmp_path / 'c.db'}"
    assert Settings.resolve(None, cfg, env={"HUBAUDIT_HOME": home}).db_url == f"sqlite:///{tmp_path / 'c.db'}"
    # flag and env decide without reading the file: a broken config does not stop `--db`
    broken = tmp_path / "broken.toml"
    broken.write_text("db_url = [\n")
    env = {"HUBAUDIT_HOME": home, "HUBAUDIT_CONFIG": str(broken)}
    assert Settings.resolve("sqlite:////flag.db", env=env).db_url == "sqlite:////flag.db"
    assert Settings.resolve(env=env | {"HUBAUDIT_DB_URL": "sqlite:////env.db"}).db_url == "sqlite:////env.db"
    with pytest.raises(ConfigError):
        Settings.resolve(env=env)
    with pytest.raises(ConfigError, match="no configuration file"):
        Settings.resolve(None, tmp_path / "missing.toml", env={"HUBAUDIT_HOME": home})


def test_the_db_option_leaves_hubaudit_db_url_to_settings():
    """HUBAUDIT_DB_URL is read in one place: were it also the --db option's envvar, the env value would
    arrive as a "flag" and the order could not be kept in Settings.resolve alone."""
    import typing

    from hubaudit.cli._options import DbOpt

    (option,) = typing.get_args(DbOpt)[1:]
    assert not option.envvar
