"""Entry point: register every command module, run Typer, map errors to exit codes.

Exit codes (README "Exit codes"): 0 ok; 1 findings (report/check --fail-on); 2 usage; 3 could not
be audited / not calibrated / config or schema problem; 4 Hub failure for the whole run;
6 executor failure; 70 internal error (a bug; traceback with HUBAUDIT_DEBUG=1); 130 interrupted.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Sequence

from hubaudit.cli.app import app
from hubaudit.errors import HubauditError

# One module per command (group). Adding a command is adding a module and a name here.
COMMAND_MODULES = (
    "scan",
    "db",
    "ingest",
    "calibrate",
    "crawl",
    "report",
    "similar",
    "blocklist",
    "probe",
    "psim",
    "nightly",
    "downstream",
    "status",
    "demo",
)


def _register() -> None:
    for name in COMMAND_MODULES:
        try:
            importlib.import_module(f"hubaudit.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"hubaudit.cli.{name}":
                raise


def _fail(message: str, hint: str | None, code: int) -> None:
    from hubaudit.cli._options import err_console, styled

    # Messages quote server responses, repo ids and paths: styled() escapes them for the terminal
    # and they are never read as rich markup (a "[/]" in a header must not turn exit 4 into a crash).
    first_line = (message.strip().splitlines() or ["error"])[0]
    err_console.print(styled("Error:", "bold red", first_line))
    if hint:
        err_console.print(styled("Hint:", "dim", hint))
    sys.exit(code)


def main(argv: Sequence[str] | None = None, *, prog_name: str | None = None) -> None:
    """Console-script entry point. ``argv`` (default ``sys.argv[1:]``) and ``prog_name`` (default: as
    Click detects it) let a caller in this process (the tests) run a command exactly as the script does."""
    debug = os.environ.get("HUBAUDIT_DEBUG", "") not in ("", "0")
    try:
        _register()
        app(args=None if argv is None else list(argv), prog_name=prog_name, standalone_mode=True)
    except HubauditError as exc:
        if debug:
            raise
        _fail(str(exc), exc.hint, exc.exit_code)
    except KeyboardInterrupt:
        _fail("interrupted; finished work is committed", None, 130)
    except Exception as exc:  # the last line of defence: a bug, not a traceback
        if debug:
            raise
        _fail(f"internal error: {type(exc).__name__}: {exc}",
              "rerun with HUBAUDIT_DEBUG=1 and report the traceback", 70)
