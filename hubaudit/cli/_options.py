"""Option aliases shared across commands, and the stderr console."""

from __future__ import annotations

from typing import IO, Annotated, Any

import typer
from rich.console import Console
from rich.text import Text

from hubaudit.textsafe import terminal


class DataConsole(Console):
    """A rich Console for text that quotes untrusted data (repo ids, paths, server messages).

    Every ``str`` it renders (``print`` arguments, table cells, rule titles) passes through
    :meth:`render_str`, which escapes it with :func:`hubaudit.textsafe.terminal` and never parses it
    as rich markup (``[/]`` in a repo id neither crashes nor restyles the line), emoji codes or
    highlighting. Style comes only from :class:`rich.text.Text` objects the code builds itself,
    such as :func:`styled`'s.
    """

    def __init__(self, *, file: IO[str] | None = None, stderr: bool = False, **kwargs: Any) -> None:
        super().__init__(file=file, stderr=stderr, markup=False, emoji=False, highlight=False, **kwargs)

    def render_str(self, text: str, **kwargs: Any) -> Text:  # type: ignore[override]
        kwargs.update(markup=False, emoji=False, highlight=False)
        return super().render_str(terminal(text), **kwargs)


def styled(label: str, style: str, message: str = "") -> Text:
    """``label`` (our own words) in ``style``, then ``message`` (may quote data) escaped, as one line."""
    line = Text(label, style=style)
    if message:
        line.append(" ")
        line.append(terminal(message))
    return line


# Everything that is not data goes to stderr (STYLE: stdout carries data only).
err_console = DataConsole(stderr=True, soft_wrap=True)

DbOpt = Annotated[
    str | None,
    # No Typer envvar: HUBAUDIT_DB_URL is read by Settings.resolve alone, so the flag > env >
    # config file > default order lives in one place.
    typer.Option(
        "--db",
        help="SQLAlchemy database URL (default: HUBAUDIT_DB_URL, else the configuration file's db_url, "
        "else a SQLite file in the user data directory).",
    ),
]

ConfigOpt = Annotated[
    str | None,
    typer.Option(
        "--config",
        help="Configuration file (TOML; default: HUBAUDIT_CONFIG, else the user config dir); its db_url is used "
        "when neither --db nor HUBAUDIT_DB_URL is given.",
    ),
]
