"""Executor seam (local thread pool, Ray). ``EXECUTORS`` maps the user-facing names to classes.

``EXECUTORS`` is the one list of executors: ``ExecutorName`` (the ``--executor`` choices of
``crawl`` and ``probe``) is built from it, and probing wraps each entry (probe_exec.py
``PROBE_EXECUTORS``, tested to cover the same names). Adding an executor is adding a module with an
:class:`Executor` subclass and a line here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hubaudit.executors.interface import Executor, TaskResult
from hubaudit.executors.local import LocalExecutor
from hubaudit.vocab import StrEnum


def _ray_class() -> type[Executor]:
    from hubaudit.executors.ray_exec import RayExecutor

    return RayExecutor


# One place maps each `--executor` value to its implementation (loaded lazily: ray is optional).
EXECUTORS: dict[str, Callable[[], type[Executor]]] = {"local": lambda: LocalExecutor, "ray": _ray_class}

# The `--executor` choices, generated from EXECUTORS (members named like their values: ExecutorName.ray).
ExecutorName = StrEnum("ExecutorName", {name: name for name in EXECUTORS})  # type: ignore[misc]


def make_executor(name: str, *, workers: int, address: str | None = None, **options: Any) -> Executor:
    """Build the executor called ``name`` (``local`` ignores ``address`` and ``options``)."""
    if name not in EXECUTORS:
        raise ValueError(f"unknown executor {name!r}; choose from {', '.join(EXECUTORS)}")
    return EXECUTORS[name]().create(workers, address=address, **options)


__all__ = ["EXECUTORS", "Executor", "ExecutorName", "LocalExecutor", "TaskResult", "make_executor"]
