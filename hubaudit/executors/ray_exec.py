"""Ray executor: each item is a Ray task on a cluster (``ray.init(address=...)``).

Tasks return values to the driver, which does all store writes, so workers need no database
access (the store can still be PostgreSQL for other readers). The task function must be
importable on the workers (hubaudit installed there).
"""

from __future__ import annotations

import re
import socket
from collections.abc import Callable, Iterable, Iterator
from typing import Any, ClassVar

from hubaudit.errors import ExecutorError, MissingExtraError
from hubaudit.executors.interface import Executor, R, T, TaskResult, bounded_map, one_line


class RayExecutor(Executor):
    """At most ``workers`` Ray tasks in flight; ``num_cpus``/``num_gpus`` per task (probing sets GPUs)."""

    name: ClassVar[str] = "ray"

    def __init__(self, workers: int = 8, *, address: str | None = None, num_cpus: float = 1, num_gpus: float = 0,
                 runtime_env: dict[str, Any] | None = None) -> None:
        super().__init__(workers)
        try:
            import ray
        except ImportError:
            raise MissingExtraError("ray", "--executor ray") from None
        self._ray = ray
        self._owns = False
        self._options = {"num_cpus": num_cpus, "num_gpus": num_gpus, "max_retries": 0}
        if not ray.is_initialized():
            _check_reachable(address)
            try:
                ray.init(address=address or None, include_dashboard=False, log_to_driver=False,
                         runtime_env=runtime_env, configure_logging=False)
            except Exception as exc:  # noqa: BLE001 - any failure to connect is run-level
                raise ExecutorError(f"cannot connect to Ray at {address or '(new local instance)'}: "
                                    f"{one_line(exc)}") from None
            self._owns = True

    @classmethod
    def create(cls, workers: int, *, address: str | None = None, **options: Any) -> RayExecutor:
        return cls(workers, address=address, **options)

    def map_unordered(self, fn: Callable[[T], R], items: Iterable[T]) -> Iterator[TaskResult[T, R]]:
        ray = self._ray
        remote = ray.remote(fn).options(**self._options)

        def collect(ref: Any, item: T) -> TaskResult[T, R]:
            try:
                return TaskResult(item, value=ray.get(ref))
            except Exception as exc:  # noqa: BLE001 - a task error is a value (RayTaskError etc.)
                return TaskResult(item, error=one_line(getattr(exc, "cause", None) or exc))

        def cancel(ref: Any) -> None:
            try:
                ray.cancel(ref)
            except Exception:  # noqa: BLE001 - best effort on shutdown
                pass

        return bounded_map(items, self.workers, remote.remote, lambda refs: ray.wait(refs, num_returns=1)[0],
                           collect, cancel)

    def close(self) -> None:
        if self._owns and self._ray.is_initialized():
            self._ray.shutdown()
            self._owns = False


def _check_reachable(address: str | None, timeout: float = 5.0) -> None:
    """Fail fast on a dead ``host:port``: ``ray.init`` keeps retrying a missing GCS for minutes."""
    m = re.fullmatch(r"(?:ray://)?\[?([^\]]+?)\]?:(\d+)", (address or "").strip())
    if m is None:
        return  # None (start a local instance) or "auto": Ray resolves it itself
    try:
        socket.create_connection((m.group(1), int(m.group(2))), timeout=timeout).close()
    except OSError as exc:
        raise ExecutorError(f"cannot connect to Ray at {address}: {exc.strerror or exc}") from None
