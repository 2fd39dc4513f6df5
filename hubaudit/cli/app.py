"""The Typer application every command module registers on.

``--help`` is laid out by Click's two-column formatter: option names (and their type) on the left,
the description wrapped in the rest of the line, a long option name on a line of its own. Typer's
rich option table puts the long name, the negative flag (``--no-search``) and the type in columns
of their own and leaves the description what remains: at 80 columns that is one or two words per
line, and rich offers no setting to give that column a minimum width. Errors keep Typer's rich
panel. :class:`HubauditTyper` gives every command and sub-app this layout, so a module registers
commands as usual (``@app.command``, ``sub_app``).
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from typer.core import TyperCommand, TyperGroup

# Wider terminals get longer lines, up to this many columns; narrower ones wrap at their width.
HELP_MAX_WIDTH = 100
CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": HELP_MAX_WIDTH}


class _ClickHelp:
    """Mixin: ``--help`` through Typer's own path for ``rich_markup_mode=None`` (Click's formatter),
    errors still through rich (the mode is restored once the help is written)."""

    rich_markup_mode: Any

    def format_help(self, ctx: Any, formatter: Any) -> None:
        mode, self.rich_markup_mode = self.rich_markup_mode, None
        try:
            super().format_help(ctx, formatter)  # type: ignore[misc]
        finally:
            self.rich_markup_mode = mode


class HelpCommand(_ClickHelp, TyperCommand):
    """A command whose ``--help`` uses Click's two-column layout (the module docstring says why)."""


class HelpGroup(_ClickHelp, TyperGroup):
    """A command group whose ``--help`` uses Click's two-column layout."""


class HubauditTyper(typer.Typer):
    """``typer.Typer`` whose commands and groups default to :class:`HelpCommand` and :class:`HelpGroup`."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("cls", HelpGroup)
        super().__init__(**kwargs)

    def command(self, name: str | None = None, *, cls: type[TyperCommand] | None = None, **kwargs: Any) -> Any:
        return super().command(name, cls=cls or HelpCommand, **kwargs)


def sub_app(**kwargs: Any) -> HubauditTyper:
    """A command group under ``hubaudit`` (``hubaudit psim ...``), laid out like the rest."""
    kwargs.setdefault("no_args_is_help", True)
    return HubauditTyper(**kwargs)


app = HubauditTyper(
    name="hubaudit",
    help="Audit the LoRA adapters of a base model on the Hugging Face Hub for backdoors.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings=CONTEXT_SETTINGS,
)


def _print_version(value: bool) -> None:
    if value:
        from hubaudit import __version__

        typer.echo(f"hubaudit {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Print hubaudit's version and exit.")
    ] = False,
) -> None:
    # A group callback keeps `hubaudit <command>` a subcommand even while only one command module
    # is installed (Typer otherwise collapses a one-command app and `scan` becomes an argument).
    pass
