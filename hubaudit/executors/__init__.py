"""Executor seam (local thread pool, Ray). ``EXECUTORS`` maps the user-facing names to classes."""

from __future__ import annotations

from typing import Any

from hubaudit.executors.interface import Executor, TaskResult
from hubaudit.executors.local import LocalExecutor


def _ray_class() -> type[Executor]:
    from hubaudit.executors.ray_exec import RayExecutor

    return RayExecutor


# One place maps each `--executor` value to its implementation (loaded lazily: ray is optional).
EXECUTORS: dict[str, Any] = {"local": lambda: LocalExecutor, "ray": _ray_class}


def make_executor(name: str, *, workers: int, address: str | None = None, **options: Any) -> Executor:
    """Build the executor called ``name`` (``local`` ignores ``address`` and ``options``)."""
    if name not in EXECUTORS:
        raise ValueError(f"unknown executor {name!r}; choose from {', '.join(EXECUTORS)}")
    cls = EXECUTORS[name]()
    if name == "local":
        return cls(workers)
    return cls(workers, address=address, **options)


__all__ = ["EXECUTORS", "Executor", "LocalExecutor", "TaskResult", "make_executor"]
