"""Process-level helper shared by the stages that build hundreds of thousands of small objects."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def no_cyclic_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector: judging a base allocates 100,000 verdict dicts and a bulk
    upsert a few dicts per row (none in a cycle), and every 700 allocations CPython would otherwise
    rescan them, and every other object the process holds (about a third of the time of a
    100,000-adapter calibration, 18 % of an upsert of 50,000 large adapters; benchmarks/bench_store.py).
    Reference counting still frees everything."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
