"""The Typer application every command module registers on."""

from __future__ import annotations

from typing import Annotated

import typer

app = typer.Typer(
    name="hubaudit",
    help="Audit the LoRA adapters of a base model on the Hugging Face Hub for backdoors.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _print_version(value: bool) -> None:
    if value:
        from hubaudit import __version__

        typer.echo(f"hubaudit {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_print_version, is_eager=True, help="Print hubaudit's version and exit.")
    ] = False,
) -> None:
    # A group callback keeps `hubaudit <command>` a subcommand even while only one command module
    # is installed (Typer otherwise collapses a one-command app and `scan` becomes an argument).
    pass
