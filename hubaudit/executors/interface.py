"""The executor seam: run one function over many items with bounded concurrency.

Used by crawling (fetch-and-score) and probing. Implementations are siblings (local.py,
ray_exec.py); adding one is adding a file and a line in ``EXECUTORS``. A task function must be a
module-level function of picklable arguments returning a picklable value, and should return its
failures as values; if it raises anyway, the executor turns that into a :class:`TaskResult`
with ``error`` set, so one bad item never stops the batch.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class TaskResult(Generic[T, R]):
    """One finished item: ``value`` when the function returned, ``error`` (one line) when it raised."""

    item: T
    value: R | None = None
    error: str | None = None


class Executor(ABC):
    """Bounded-concurrency map. Use as a context manager so resources are released."""

    name: ClassVar[str]

    def __init__(self, workers: int) -> None:
        if workers < 1:
            raise ValueError("workers must be >= 1")
        self.workers = workers

    @classmethod
    def create(cls, workers: int, *, address: str | None = None, **options: Any) -> Executor:
        """The executor from the options every caller may pass; one that has no use for ``address`` or an
        option ignores it (the local pool has neither)."""
        return cls(workers)

    @abstractmethod
    def map_unordered(self, fn: Callable[[T], R], items: Iterable[T]) -> Iterator[TaskResult[T, R]]:
        """Yield a :class:`TaskResult` per item as each finishes, with at most ``workers`` in flight.

        Items are pulled lazily. Closing the iterator early (``break``) cancels work that has not
        started; work already running is allowed to finish and is discarded.
        """

    def close(self) -> None:  # noqa: B027 - a hook: an executor that holds nothing has nothing to release
        """Release workers/connections. Idempotent."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def one_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"[:300]


def bounded_map(
    items: Iterable[T],
    workers: int,
    submit: Callable[[T], Any],
    wait_done: Callable[[list[Any]], Iterable[Any]],
    collect: Callable[[Any, T], TaskResult[T, R]],
    cancel: Callable[[Any], None],
) -> Iterator[TaskResult[T, R]]:
    """The submission loop both executors share: keep at most ``workers`` handles in flight (items
    are taken lazily), yield each finished one as a TaskResult, cancel what is left on exit."""
    it = iter(items)
    pending: dict[Any, T] = {}
    try:
        while True:
            while len(pending) < workers:
                try:
                    item = next(it)
                except StopIteration:
                    break
                pending[submit(item)] = item
            if not pending:
                return
            for handle in wait_done(list(pending)):
                yield collect(handle, pending.pop(handle))
    finally:
        for handle in pending:
            cancel(handle)
