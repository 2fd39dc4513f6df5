"""``hubaudit ARGS`` in this process, through the console script's entry point.

:func:`run_cli` calls :func:`hubaudit.cli.main.main` with the arguments and program name the
``hubaudit`` script has, so argument parsing, the error table (one-line ``Error:``/``Hint:``) and the
exit codes are the real ones; it saves the 1-2 s of interpreter and torch/transformers start-up a
subprocess costs. The streams are what a pipe gives a process: stdout is UTF-8 with strict errors
(Python's default under a UTF-8 locale such as en_US.UTF-8, or with PYTHONIOENCODING=utf-8), stderr
UTF-8 with backslashreplace, stdin the ``input`` text (empty: end of file at once, like /dev/null),
and none is a terminal. The environment, ``sys.argv``, the standard streams and the working
directory are restored after each call, so one command cannot leak its settings (the ``env`` it ran with)
into the next, as a process could not.

Tests of the process boundary itself (signals and kills, the installed script's exit status, the
memory of a process, cron scripts) keep a real subprocess.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class CliResult:
    """What a finished command left: the names match :class:`subprocess.CompletedProcess`."""

    args: list[str]
    returncode: int
    stdout: str
    stderr: str


def _exit_status(code: object) -> tuple[int, str]:
    """The process exit status ``SystemExit(code)`` gives, and what Python prints for it on stderr."""
    if code is None:
        return 0, ""
    if isinstance(code, int):
        return code, ""
    return 1, f"{code}\n"


@contextlib.contextmanager
def _process_state(argv: list[str], env: Mapping[str, str | None] | None, cwd: str | os.PathLike | None,
                   stdin: io.TextIOBase, stdout: io.TextIOBase, stderr: io.TextIOBase) -> Iterator[None]:
    saved_env = dict(os.environ)
    saved = (sys.argv, sys.stdin, sys.stdout, sys.stderr)
    saved_cwd = os.getcwd()
    try:
        for key, value in (env or {}).items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = str(value)
        if cwd is not None:
            os.chdir(cwd)
        sys.argv, sys.stdin, sys.stdout, sys.stderr = argv, stdin, stdout, stderr
        yield
    finally:
        sys.argv, sys.stdin, sys.stdout, sys.stderr = saved
        os.chdir(saved_cwd)
        # Whatever the command set or removed (the env= overrides above) dies with it.
        for key in set(os.environ) - set(saved_env):
            del os.environ[key]
        for key, value in saved_env.items():
            if os.environ.get(key) != value:
                os.environ[key] = value


@contextlib.contextmanager
def _process_lifetime_hub_client() -> Iterator[None]:
    """A command that reaches the Hub outside a crawl installs a timeout-bound Hub client factory for
    the rest of its process (hubaudit.httpclient.ensure_hub_client); the process's exit takes it
    away, so here it is closed when the command returns."""
    from hubaudit import httpclient

    kept = len(httpclient._permanent)
    try:
        yield
    finally:
        while len(httpclient._permanent) > kept:
            httpclient._permanent.pop().__exit__(None, None, None)


def _arg(a: object) -> str:
    """One argv string, as a process would receive it: a str subclass (a str-valued Enum member)
    passes its characters, not its ``str()``."""
    if isinstance(a, str):
        return "".join([a])
    if isinstance(a, os.PathLike):
        return os.fspath(a)
    return str(a)


def run_cli(*args: object, env: Mapping[str, str | None] | None = None, input: str | None = None,
            cwd: str | os.PathLike | None = None) -> CliResult:
    """Run ``hubaudit ARGS`` through :func:`hubaudit.cli.main.main` and return (returncode, stdout, stderr).

    ``env`` is laid over the current environment for this call only (``None`` removes a variable);
    ``input`` is what the command reads on stdin. An exception that escapes ``main()`` (a bug, or
    ``HUBAUDIT_DEBUG=1``) propagates to the test, where a process would print a traceback and exit 1.
    """
    from hubaudit.cli.main import main

    argv = ["hubaudit", *(_arg(a) for a in args)]
    out_bytes, err_bytes = io.BytesIO(), io.BytesIO()
    out = io.TextIOWrapper(out_bytes, encoding="utf-8", errors="strict", write_through=True)
    err = io.TextIOWrapper(err_bytes, encoding="utf-8", errors="backslashreplace", write_through=True)
    message = ""
    with _process_state(argv, env, cwd, io.StringIO(input or ""), out, err), _process_lifetime_hub_client():
        try:
            main(argv[1:], prog_name="hubaudit")
            code = 0
        except SystemExit as exc:
            code, message = _exit_status(exc.code)
        finally:
            out.flush()
            err.flush()
    stderr = err_bytes.getvalue().decode("utf-8") + message
    return CliResult(argv[1:], code, out_bytes.getvalue().decode("utf-8"), stderr)
