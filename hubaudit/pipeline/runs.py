"""The run record of a command or flow: started on entry, always finished with the exit status the process ends with."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from hubaudit.errors import HubauditError

#: What a run that ended in an exception the CLI does not map is recorded with (cli/main.py's code).
EXIT_INTERNAL = 70
EXIT_INTERRUPTED = 130


@dataclass
class RunRecord:
    """The open run: the command sets ``counts`` and, when it ends normally, ``exit_status``."""

    id: int
    counts: dict[str, int] = field(default_factory=dict)
    exit_status: int = 0


def exit_status_of(exc: BaseException) -> int:
    """The exit code the CLI turns ``exc`` into (the table in cli/main.py)."""
    if isinstance(exc, HubauditError):
        return exc.exit_code
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    if isinstance(exc, SystemExit):
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    code = getattr(exc, "exit_code", None)  # typer.Exit / click's Exit carry the code they exit with
    if isinstance(code, int):
        return code
    return EXIT_INTERNAL


@contextmanager
def recorded_run(store: Any, command: str, args: dict[str, Any]) -> Iterator[RunRecord]:
    """Record ``command`` in the store's runs for the duration of the block.

    The run is finished whatever happens inside: a normal end records ``run.exit_status``; an
    exception records the exit code the CLI will map it to (and propagates), so a failed run never
    stays "running" and never reads as a success.
    """
    run = RunRecord(store.start_run(command, args))
    try:
        yield run
    except BaseException as exc:
        store.finish_run(run.id, counts=run.counts, exit_status=exit_status_of(exc))
        raise
    store.finish_run(run.id, counts=run.counts, exit_status=run.exit_status)
