"""Run-level errors. Each carries the exit code and a hint the CLI prints (one table, cli/main.py).

Per-adapter problems are *values* (a status + reason on the scan result or revision row), never
these exceptions: a malformed adapter must not stop a crawl of 10,000 adapters.
"""

from __future__ import annotations

from typing import ClassVar


class HubauditError(Exception):
    """Base of every error the CLI maps to a one-line message and an exit code."""

    exit_code: ClassVar[int] = 70
    hint: ClassVar[str | None] = None

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        if hint is not None:
            self.hint = hint  # type: ignore[misc]


class UsageError(HubauditError):
    """Bad arguments that Typer could not catch (a path that does not exist, a bad duration)."""

    exit_code = 2


class InputError(UsageError, ValueError):
    """A file the user named is missing, unreadable or malformed (a prompts file, a battery, a thresholds file).

    Also a ValueError, so code that treats a bad value as a per-item outcome keeps doing so.
    """


class ConfigError(HubauditError):
    """Invalid settings or configuration file."""

    exit_code = 3


class StoreError(HubauditError):
    """The database cannot be opened or used."""

    exit_code = 3


class MissingDatabaseError(StoreError):
    """A read-only command found no hubaudit database (no file, or one without tables): nothing to read."""

    hint = "run `hubaudit crawl --base BASE` or `hubaudit ingest PATH --base BASE` first, or pass --db URL"


class SchemaOutOfDateError(StoreError):
    """The database schema is behind the code."""

    hint = "run `hubaudit db upgrade` (add --db URL if you use one)"


class NotCalibratedError(HubauditError):
    """A verdict was asked for a base (or stratum) that has no calibration: never 'clean'."""

    exit_code = 3
    hint = "run `hubaudit calibrate --base BASE` once enough adapters are stored"


class HubError(HubauditError):
    """The Hub (or the endpoint in HF_ENDPOINT) failed for the whole run."""

    exit_code = 4


class HubUnavailableError(HubError):
    """Connection refused, DNS failure, or repeated 5xx beyond the retry budget."""

    hint = "check the network and HF_ENDPOINT; finished work is committed and the next run resumes"


class HubAuthError(HubError):
    """The token was rejected."""

    hint = "check HF_TOKEN (it is read from the environment and never stored)"


class RateLimitedError(HubError):
    """429s beyond the retry budget."""

    hint = "rerun later or with a token (higher limits); finished work is committed"


class ExecutorError(HubauditError):
    """A probing executor is unavailable or failed as a whole (not one job)."""

    exit_code = 6


class MissingExtraError(HubauditError):
    """An optional dependency group is not installed."""

    exit_code = 3

    def __init__(self, extra: str, what: str) -> None:
        super().__init__(
            f"{what} needs the optional '{extra}' dependencies",
            hint=f"pip install 'hubaudit[{extra}]'",
        )
