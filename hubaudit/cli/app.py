"""The Typer application every command module registers on."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="hubaudit",
    help="Audit the LoRA adapters of a base model on the Hugging Face Hub for backdoors.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def _root() -> None:
    # A group callback keeps `hubaudit <command>` a subcommand even while only one command module
    # is installed (Typer otherwise collapses a one-command app and `scan` becomes an argument).
    pass
