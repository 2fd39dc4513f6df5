"""The executor seam: the name map is exhaustive, the local pool is bounded, failures are values."""

from __future__ import annotations

import threading
import time

import pytest

from hubaudit.cli.crawl import ExecutorName
from hubaudit.executors import EXECUTORS, Executor, LocalExecutor, make_executor


def test_every_cli_executor_name_maps_to_an_implementation():
    assert set(EXECUTORS) == {e.value for e in ExecutorName}
    assert issubclass(EXECUTORS["local"](), Executor)
    assert EXECUTORS["local"]().name == "local"
    pytest.importorskip("ray")
    assert issubclass(EXECUTORS["ray"](), Executor) and EXECUTORS["ray"]().name == "ray"


class _Gauge:
    def __init__(self) -> None:
        self.now = self.peak = 0
        self.lock = threading.Lock()

    def __call__(self, x: int) -> int:
        with self.lock:
            self.now += 1
            self.peak = max(self.peak, self.now)
        time.sleep(0.01)
        with self.lock:
            self.now -= 1
        if x == 7:
            raise ValueError("bad item 7")
        return x * x


def test_local_pool_is_bounded_and_turns_exceptions_into_values():
    gauge = _Gauge()
    pulled = []

    def items():
        for i in range(40):
            pulled.append(i)
            yield i

    with make_executor("local", workers=3) as ex:
        results = list(ex.map_unordered(gauge, items()))
    assert gauge.peak <= 3 and gauge.peak >= 2
    assert sorted(r.item for r in results) == list(range(40))
    bad = [r for r in results if r.error]
    assert [(r.item, r.error) for r in bad] == [(7, "ValueError: bad item 7")]
    assert all(r.value == r.item**2 for r in results if r.item != 7)


def test_closing_early_stops_pulling_new_items():
    pulled = []

    def items():
        for i in range(1000):
            pulled.append(i)
            yield i

    with LocalExecutor(2) as ex:
        it = ex.map_unordered(lambda x: x, items())
        next(it)
        it.close()
    assert len(pulled) <= 4  # lazily fed: at most the in-flight window (+1) was ever pulled


def test_workers_must_be_positive():
    with pytest.raises(ValueError):
        LocalExecutor(0)
