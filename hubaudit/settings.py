"""Settings, read once at the edge (CLI callback or Python API) and passed down.

Priority, highest first: CLI flag, then ``HUBAUDIT_*`` environment variable, then the
configuration file (hubaudit.config: ``--config`` > ``HUBAUDIT_CONFIG`` > user config dir), then
the default. Every command builds its settings once with :meth:`Settings.resolve`; core modules
never read ``os.environ``.

Default database: the SQLite file ``hubaudit.db`` under ``HUBAUDIT_HOME`` when it is set, else
under ``platformdirs.user_data_dir("hubaudit")``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from hubaudit.constants import ENV_DB_URL, ENV_HOME

if TYPE_CHECKING:
    from hubaudit.config import Config

DB_FILENAME = "hubaudit.db"


def default_home(env: Mapping[str, str]) -> Path:
    """The data directory: ``HUBAUDIT_HOME`` if set, else the platform user data directory."""
    home = env.get(ENV_HOME)
    if home:
        return Path(home).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("hubaudit"))


def sqlite_url(path: Path) -> str:
    """SQLAlchemy URL of a SQLite file (absolute path, so the URL does not depend on the cwd)."""
    return f"sqlite:///{Path(path).expanduser().resolve()}"


@dataclass(frozen=True)
class Settings:
    """Resolved settings for one process (immutable; build a new one to change anything)."""

    home: Path
    db_url: str

    @classmethod
    def from_env(
        cls, env: Mapping[str, str] | None = None, *, db_url: str | None = None, config_db_url: str | None = None
    ) -> Settings:
        """Resolve settings: ``db_url`` (a flag) > ``HUBAUDIT_DB_URL`` > ``config_db_url`` (the
        configuration file's) > SQLite file in the home dir."""
        env = os.environ if env is None else env
        home = default_home(env)
        url = db_url or env.get(ENV_DB_URL) or config_db_url or sqlite_url(home / DB_FILENAME)
        return cls(home=home, db_url=url)

    @classmethod
    def resolve(
        cls,
        db_url: str | None = None,
        config_path: str | Path | None = None,
        *,
        env: Mapping[str, str] | None = None,
        config: Config | None = None,
    ) -> Settings:
        """The one resolution every command uses: flag > ``HUBAUDIT_*`` env > config file > default.

        ``config`` is an already loaded configuration (``hubaudit nightly`` needs the whole file);
        otherwise the file is read only when neither the flag nor ``HUBAUDIT_DB_URL`` decides, so
        a broken config file does not stop a command given ``--db``. An explicit ``config_path``
        must exist; the implicit ones (``HUBAUDIT_CONFIG``, the user config dir) may be absent.
        """
        env = os.environ if env is None else env
        if config is None and not (db_url or env.get(ENV_DB_URL)):
            from hubaudit.config import load_config

            config = load_config(config_path, dict(env), required=config_path is not None)
        return cls.from_env(env, db_url=db_url, config_db_url=config.db_url if config else None)


def resolve_db_url(db_url: str | None = None, config_path: str | Path | None = None) -> str:
    """The database URL for ``db_url`` (flag, may be None): ``Settings.resolve(...).db_url``."""
    return Settings.resolve(db_url, config_path).db_url
