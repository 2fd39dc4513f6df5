"""The nightly configuration file (TOML), read once and passed down.

Where it is looked for: ``--config FILE`` > ``HUBAUDIT_CONFIG`` > ``<user config dir>/hubaudit/config.toml``.
Every key is optional except at least one ``[[base]]`` table for ``hubaudit nightly``::

    db_url = "sqlite:////var/lib/hubaudit/hubaudit.db"   # default: the user data dir SQLite file
    export_dir = "/var/lib/hubaudit/exports"             # dated folders + latest/
    retention_days = 30                                   # dated export folders older than this are pruned

    [defaults]                                            # apply to every base unless the base overrides
    workers = 8
    include_derived = false
    limit = 0                                             # 0 = no limit
    min_n = 30
    target_fpr = 0.01
    executor = "none"                                     # none | local | ray  (probing)
    ray_address = ""
    probe_budget_seconds = 3600                           # device-seconds of probing per base per night
    probe_budget = 0                                      # also at most this many probe jobs (0 = no cap)
    battery = "paper-21-B"
    prompts = ""                                          # JSONL with a "text" field; "" = built-in set
    base_model_path = ""                                  # local dir of the base weights (for probing)

    [[base]]
    id = "Qwen/Qwen2.5-1.5B"
    include_derived = true
    executor = "local"
    base_model_path = "/models/Qwen2.5-1.5B"
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

from hubaudit.constants import ENV_CONFIG
from hubaudit.errors import ConfigError
from hubaudit.executors import EXECUTORS as PROBE_EXECUTOR_NAMES

# A base's probe executor: "none" (escalated adapters stay queued) or a name of hubaudit.executors.EXECUTORS.
EXECUTORS = ("none", *PROBE_EXECUTOR_NAMES)


@dataclass(frozen=True)
class BaseConfig:
    """Per-base options of a nightly run (defaults merged in)."""

    id: str
    workers: int = 8
    include_derived: bool = False
    limit: int = 0
    min_n: int = 30
    target_fpr: float = 0.01
    executor: str = "none"
    ray_address: str = ""
    probe_budget_seconds: float = 3600.0  # device-seconds per base per night; jobs past it wait for the next
    probe_budget: int = 0  # at most this many probe jobs per base per night as well (0 = no cap)
    battery: str = "paper-21-B"
    prompts: str = ""
    base_model_path: str = ""


@dataclass(frozen=True)
class Config:
    """The whole configuration file."""

    path: Path | None = None
    db_url: str | None = None
    export_dir: Path | None = None
    retention_days: int = 30
    bases: tuple[BaseConfig, ...] = field(default_factory=tuple)


_BASE_KEYS = {f.name: f.type for f in fields(BaseConfig)}


def _check_base_table(table: dict, where: str) -> dict:
    unknown = sorted(set(table) - set(_BASE_KEYS))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}")
    out = dict(table)
    for key, value in table.items():
        want = {"str": str, "int": int, "bool": bool, "float": (int, float)}[str(_BASE_KEYS[key])]
        if isinstance(value, bool) and want is not bool:
            raise ConfigError(f"{where}: {key} must be {_BASE_KEYS[key]}, got a boolean")
        if not isinstance(value, want):
            raise ConfigError(f"{where}: {key} must be {_BASE_KEYS[key]}, got {type(value).__name__}")
    if out.get("executor", "none") not in EXECUTORS:
        raise ConfigError(f"{where}: executor must be one of {', '.join(EXECUTORS)}")
    if "probe_budget_seconds" in out and not out["probe_budget_seconds"] > 0:
        raise ConfigError(f"{where}: probe_budget_seconds must be positive")
    if "probe_budget" in out and out["probe_budget"] < 0:
        raise ConfigError(f"{where}: probe_budget must be 0 (no cap) or a positive number of jobs")
    return out


def parse_config(text: str, path: Path | None = None) -> Config:
    """Parse and validate TOML text; every problem is a one-line ConfigError."""
    where = str(path) if path else "config"
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where}: invalid TOML: {exc}") from None
    known = {"db_url", "export_dir", "retention_days", "defaults", "base"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}")
    defaults = _check_base_table(data.get("defaults", {}) or {}, f"{where} [defaults]")
    defaults.pop("id", None)
    bases: list[BaseConfig] = []
    seen: set[str] = set()
    for i, table in enumerate(data.get("base", []) or []):
        if not isinstance(table, dict) or not isinstance(table.get("id"), str) or not table["id"].strip():
            raise ConfigError(f"{where} [[base]] #{i + 1}: needs a string 'id'")
        merged = defaults | _check_base_table(table, f"{where} [[base]] {table['id']}")
        if merged["id"] in seen:
            raise ConfigError(f"{where}: base {merged['id']} is listed twice")
        seen.add(merged["id"])
        bases.append(BaseConfig(**merged))
    retention = data.get("retention_days", 30)
    if not isinstance(retention, int) or isinstance(retention, bool) or retention < 1:
        raise ConfigError(f"{where}: retention_days must be a positive integer")
    for key in ("db_url", "export_dir"):
        if key in data and not isinstance(data[key], str):
            raise ConfigError(f"{where}: {key} must be a string")
    return Config(
        path=path,
        db_url=data.get("db_url") or None,
        export_dir=Path(data["export_dir"]).expanduser() if data.get("export_dir") else None,
        retention_days=retention,
        bases=tuple(bases),
    )


def default_config_path(environ: dict[str, str] | None = None) -> Path:
    """``<user config dir>/hubaudit/config.toml`` (XDG_CONFIG_HOME honoured)."""
    import platformdirs

    env = os.environ if environ is None else environ
    if env.get("XDG_CONFIG_HOME"):
        return Path(env["XDG_CONFIG_HOME"]) / "hubaudit" / "config.toml"
    return Path(platformdirs.user_config_dir("hubaudit")) / "config.toml"


def load_config(path: str | Path | None = None, environ: dict[str, str] | None = None, *,
                required: bool = True) -> Config:
    """Find and load the configuration: explicit path > HUBAUDIT_CONFIG > user config dir."""
    env = os.environ if environ is None else environ
    chosen = Path(path) if path else (Path(env[ENV_CONFIG]) if env.get(ENV_CONFIG) else default_config_path(env))
    if not chosen.is_file():
        if required:
            raise ConfigError(
                f"no configuration file at {chosen}",
                hint="pass --config FILE, set HUBAUDIT_CONFIG, or copy cron/config.example.toml there",
            )
        return Config(path=None)
    try:
        text = chosen.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {chosen}: {exc}") from None
    return parse_config(text, chosen)
