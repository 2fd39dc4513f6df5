"""Local executor: a bounded thread pool (downloads are I/O-bound; numpy releases the GIL)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import ClassVar

from hubaudit.executors.interface import Executor, R, T, TaskResult, bounded_map, one_line


class LocalExecutor(Executor):
    """``workers`` threads; never more than ``workers`` items submitted at once (bounded memory)."""

    name: ClassVar[str] = "local"

    def __init__(self, workers: int = 8) -> None:
        super().__init__(workers)
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="hubaudit")

    def map_unordered(self, fn: Callable[[T], R], items: Iterable[T]) -> Iterator[TaskResult[T, R]]:
        def collect(fut: Future, item: T) -> TaskResult[T, R]:
            exc = fut.exception()
            return TaskResult(item, error=one_line(exc)) if exc else TaskResult(item, value=fut.result())

        return bounded_map(items, self.workers, lambda item: self._pool.submit(fn, item),
                           lambda futs: wait(futs, return_when=FIRST_COMPLETED)[0], collect, Future.cancel)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
