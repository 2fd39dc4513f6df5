"""Option aliases shared across commands, and the stderr console."""

from __future__ import annotations

from typing import Annotated, Optional

import typer
from rich.console import Console

# Everything that is not data goes to stderr (STYLE: stdout carries data only).
err_console = Console(stderr=True, highlight=False, soft_wrap=True)

DbOpt = Annotated[
    Optional[str],
    typer.Option(
        "--db",
        envvar="HUBAUDIT_DB_URL",
        help="SQLAlchemy database URL (default: SQLite file in the user data directory).",
        show_envvar=True,
    ),
]

ConfigOpt = Annotated[
    Optional[str],
    typer.Option(
        "--config",
        help="Configuration file (TOML; default: HUBAUDIT_CONFIG, else the user config dir); its db_url is used "
        "when neither --db nor HUBAUDIT_DB_URL is given.",
    ),
]
