"""Executors for probing: the shared seam (executors/__init__.py) with probe-specific resources.

- ``local``: one in-process worker (a single GPU, or the CPU, is used by one prober at a time;
  the per-process prober keeps each base loaded across the tasks of one executor run, and closing
  the executor releases it, so a nightly over several bases holds one base model at a time).
- ``ray``: one Ray task per (base, batch of adapters), ``num_gpus=1`` per task when the cluster
  has GPUs (else CPU tasks); results come back to the driver, which writes the store.
"""

from __future__ import annotations

import gc
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from hubaudit.errors import ExecutorError, MissingExtraError
from hubaudit.executors import Executor, make_executor
from hubaudit.executors.interface import one_line


@contextmanager
def prober_scope() -> Iterator[None]:
    """The probers this process creates inside the block (and the base models they hold) end with it."""
    try:
        yield
    finally:
        release_local_probers()


def release_local_probers() -> None:
    """Drop this process's probers and free their base models now, not at the next garbage collection."""
    from hubaudit.probe.task import release_probers

    release_probers()
    # peft and torch modules form reference cycles: without a collection the weights outlive the
    # prober until the collector happens to run, and the next base would load beside them.
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


class _LocalScoped:
    """The local executor; closing it also releases the in-process probers its tasks created."""

    def __init__(self, inner: Executor) -> None:
        self.inner = inner

    def map_unordered(self, fn, items):
        return self.inner.map_unordered(fn, items)

    def close(self) -> None:
        self.inner.close()
        release_local_probers()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _RayOwned:
    """Wraps the Ray executor and shuts down a Ray instance this module started."""

    def __init__(self, inner: Executor, owns: bool) -> None:
        self.inner, self.owns = inner, owns

    def map_unordered(self, fn, items):
        return self.inner.map_unordered(fn, items)

    def close(self) -> None:
        self.inner.close()
        if self.owns:
            import ray

            if ray.is_initialized():
                ray.shutdown()
            self.owns = False

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _open_local(address: str | None, workers: int) -> _LocalScoped:
    # one in-process worker whatever ``workers`` says: one prober holds the device at a time
    return _LocalScoped(make_executor("local", workers=1))


def _open_ray(address: str | None, workers: int) -> _RayOwned:
    try:
        import ray
    except ImportError:
        raise MissingExtraError("ray", "--executor ray") from None
    owns = False
    if not ray.is_initialized():
        try:
            ray.init(address=address or None, include_dashboard=False, log_to_driver=False, configure_logging=False)
        except Exception as exc:  # noqa: BLE001 - any failure to connect is run-level
            raise ExecutorError(f"cannot connect to Ray at {address or '(new local instance)'}: "
                                f"{one_line(exc)}") from None
        owns = True
    gpus = float(ray.cluster_resources().get("GPU", 0))
    inner = make_executor("ray", workers=max(1, workers), address=address, num_cpus=1, num_gpus=1 if gpus >= 1 else 0)
    return _RayOwned(inner, owns)


# Every executor of executors.EXECUTORS, opened for probe tasks (tested to cover the same names).
PROBE_EXECUTORS: dict[str, Callable[[str | None, int], _LocalScoped | _RayOwned]] = {"local": _open_local,
                                                                                    "ray": _open_ray}


def open_probe_executor(name: str, *, address: str | None = None, workers: int = 1):
    """An executor for probe tasks (a context manager); ExecutorError when Ray cannot be reached."""
    if name not in PROBE_EXECUTORS:
        raise ExecutorError(f"unknown executor {name!r}; choose from {', '.join(PROBE_EXECUTORS)}")
    return PROBE_EXECUTORS[name](address, workers)
