"""Executor-side entry point: probe a batch of adapters that share one base (one task per (base, batch)).

:func:`run_probe_task` is a module-level function of a picklable :class:`ProbeTask`, so the local
executor and Ray run the same code. The :class:`Prober` is kept per process: a Ray worker or the
local process that gets several tasks for one base loads that base once. Results go back to the
driver, which alone writes to the store.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

from hubaudit.probe.batteries import Battery
from hubaudit.probe.stats import Thresholds
from hubaudit.vocab import ProbeStatus

_PROBERS: dict = {}


@dataclass(frozen=True)
class AdapterRef:
    """One adapter to probe: its local directory, and the queue job it belongs to (None = ad hoc)."""

    adapter_dir: str
    job_id: int | None = None
    label: str = ""


@dataclass(frozen=True)
class ProbeTask:
    """Everything a worker needs; no database handle (workers never touch the store)."""

    base_path: str
    adapters: tuple[AdapterRef, ...]
    battery: Battery
    prompts: tuple[str, ...]
    thresholds: Thresholds
    options: object  # hubaudit.probe.prober.ProbeOptions (kept untyped: importing it pulls no torch, but stays lazy)
    search: object = None  # hubaudit.probe.search.SearchConfig: also run the blind trigger search
    search_thresholds: object = None  # hubaudit.probe.search_run.SearchThresholds (None = uncalibrated default)
    invert: object = None  # hubaudit.probe.invert.InversionConfig: generative adapters get target inversion


def run_probe_task(task: ProbeTask) -> list[tuple[AdapterRef, dict]]:
    """Probe every adapter of ``task``; each gets a result dict (``status`` ok or error with a reason)."""
    try:
        from hubaudit.probe.prober import Prober
    except ImportError as exc:  # the probe extra is missing on this worker: every adapter fails alike
        return [(a, {"status": ProbeStatus.ERROR, "reason": "missing_extra",
                     "error": f"probe extra not installed: {exc}"})
                for a in task.adapters]
    key = repr(task.options)
    prober = _PROBERS.get(key)
    if prober is None:
        prober = _PROBERS[key] = Prober(task.options)  # type: ignore[arg-type]
    out = []
    for ref in task.adapters:
        if task.search is not None:
            from hubaudit.probe.search_run import probe_with_search

            result = probe_with_search(prober, ref.adapter_dir, task.base_path, task.battery, list(task.prompts),
                                       task.thresholds, search=task.search, tau=task.search_thresholds,
                                       invert=task.invert)
        else:
            result = prober.probe(ref.adapter_dir, task.base_path, task.battery, list(task.prompts), task.thresholds)
        # where it ran, and how many base loads this worker has done so far (hot-swap audit trail)
        out.append((ref, result | {"base_loads": prober.base_loads, "worker_host": socket.gethostname(),
                                   "worker_pid": os.getpid()}))
    return out


def release_probers() -> None:
    """Drop the per-process probers (frees the loaded bases)."""
    for p in _PROBERS.values():
        p.close()
    _PROBERS.clear()
