"""Behavioral probing flows: work through the probe queue, probe one adapter, calibrate thresholds.

Queue semantics come from the store (leases): a claimed job is ``running`` under this worker until
it is finished or failed; a killed run's jobs become claimable again when their lease expires, so
a job is never lost and never run by two workers at once. Every per-job failure (base weights
missing, adapter incompatible with the base, OOM, worker crash, adapter not available locally) is
``fail_probe_job(reason)``: requeued until ``max_attempts``, then ``failed`` with the reason.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from hubaudit.errors import UsageError
from hubaudit.executors.probe_exec import open_probe_executor, prober_scope
from hubaudit.pipeline.behaviour import given_record, resolve_calibration
from hubaudit.probe.batteries import DEFAULT_BATTERY, Battery, load_battery
from hubaudit.probe.invert import LABEL as INVERSION_LABEL
from hubaudit.probe.invert import InversionConfig
from hubaudit.probe.prompting import load_prompts
from hubaudit.probe.stats import Thresholds, calibrate, save_thresholds
from hubaudit.probe.task import AdapterRef, ProbeTask, run_probe_task
from hubaudit.store import Store
from hubaudit.vocab import CalibrationKind, ProbeJobStatus, ProbeStatus

#: Reasons worth no retry: they will fail the same way next time (recorded as failed at once).
PERMANENT = {"incompatible", "unsupported", "no_eligible_prompts", "usage"}


@dataclass
class ProbeRunOptions:
    """One `hubaudit probe` run."""

    base: str
    base_model_path: str | None = None
    executor: str = "local"
    address: str | None = None
    budget: int | None = None  # at most this many jobs claimed this run (None: no cap)
    budget_seconds: float | None = None  # stop claiming once this many device-seconds are spent (None: no bound)
    adapters_per_task: int = 8
    workers: int = 1
    battery: str = DEFAULT_BATTERY
    prompts_file: str | None = None
    thresholds: Thresholds = field(default_factory=Thresholds)
    probe_options: object = None  # ProbeOptions; None = defaults
    worker: str | None = None
    lease_seconds: int = 3600
    max_attempts: int = 3
    hub: object = None  # HubConfig to fetch Hub adapters; None = only local adapters
    cache_dir: str | None = None
    search: object = None  # hubaudit.probe.search.SearchConfig; None = battery only
    search_thresholds: object = None  # hubaudit.probe.search_run.SearchThresholds
    invert: InversionConfig | None = None  # with search: generative adapters get target inversion
    # {"probe": CalibrationRef dict, "search": ... or None} (pipeline.behaviour.calibration_record): stored
    # with every result; None: the thresholds above were handed in without a recorded origin
    calibration: dict[str, Any] | None = None
    # What a worker runs per task, and the clock that times it (a module-level function: Ray pickles it).
    run_task: Callable[[ProbeTask], list[tuple[AdapterRef, dict]]] = run_probe_task
    clock: Callable[[], float] = time.monotonic


def resolve_thresholds(home: str | Path, base: str | None, file: str | None = None,
                       store: Store | None = None) -> Thresholds:
    """The probe thresholds of ``base``: ``file``, else the store's newest, else the legacy file, else the
    defaults (pipeline.behaviour.resolve_calibration also says which)."""
    return resolve_calibration(CalibrationKind.PROBE, home, base, file, store).value


def resolve_search_thresholds(home: str | Path, base: str | None, file: str | None = None, store: Store | None = None):
    """τ_search of ``base`` in the same order; the uncalibrated default never flags."""
    return resolve_calibration(CalibrationKind.SEARCH, home, base, file, store).value


def _options(o: object):
    from hubaudit.probe.prober import ProbeOptions  # torch-free import; the prober imports torch lazily

    return o if o is not None else ProbeOptions()


def _base_dir(opts: ProbeRunOptions) -> tuple[str | None, str | None]:
    """(local base directory, None) or (None, why not): never downloads (no network for bases)."""
    if opts.base_model_path:
        return (opts.base_model_path, None) if Path(opts.base_model_path).is_dir() else \
            (None, f"base model directory {opts.base_model_path} does not exist")
    try:
        from huggingface_hub import snapshot_download

        return snapshot_download(opts.base, local_files_only=True), None
    except Exception as exc:  # noqa: BLE001 - not in the local cache: a recorded job failure
        return None, f"base {opts.base} is not available locally ({type(exc).__name__}); pass --base-model-path"


def _adapter_dir(store: Store, job, opts: ProbeRunOptions) -> tuple[str | None, str | None]:
    """(adapter directory, None) or (None, reason line)."""
    if job.repo_id.startswith("local:"):
        p = Path(job.repo_id[len("local:") :])
        return (str(p), None) if p.is_dir() else (None, f"adapter_unavailable: {p} does not exist")
    if opts.hub is None:
        return None, "adapter_unavailable: Hub adapter and no Hub configuration given"
    from hubaudit.constants import ADAPTER_CONFIG, ADAPTER_SAFETENSORS
    from hubaudit.fetch import Wanted, download_verified

    row = store.find_revision(job.repo_id, job.sha)
    files = {f.get("name"): f for f in (row.files if row else [])}
    wanted = [Wanted(n, files.get(n, {}).get("size"), files.get(n, {}).get("sha256"))
              for n in (ADAPTER_CONFIG, ADAPTER_SAFETENSORS)]
    try:
        got = download_verified(opts.hub, job.repo_id, job.sha, wanted,
                                opts.cache_dir or Path.home() / ".cache" / "hubaudit")
    except Exception as exc:  # noqa: BLE001 - the Hub failing for one adapter is that job's failure
        return None, f"adapter_unavailable: {type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
    return (str(got.folder), None) if got.ok else (None, f"{got.reason}: {got.message}")


def probe_queue(store: Store, opts: ProbeRunOptions) -> dict:
    """Probe the queued jobs of ``opts.base`` in priority order within the run's budget; write each
    result or failure to the store.

    Jobs are claimed a task at a time (``adapters_per_task``), lazily as the executor has room, so
    claiming stops once the device-seconds spent reach ``budget_seconds`` (or ``budget`` jobs were
    claimed); a task that started before then finishes. A task's seconds run from its hand-over to
    the executor to its result (its probe work: adapter downloads happen before, on this process).
    Unclaimed jobs stay queued for the next run. The summary has ``seconds_used``,
    ``budget_seconds``, ``remaining_queued`` and ``stopped`` (why claiming ended: ``budget_seconds``,
    ``max_jobs``, ``queue_empty`` or ``base_unavailable``).
    """
    worker = opts.worker or f"{socket.gethostname()}:{os.getpid()}"
    battery = load_battery(opts.battery)
    prompts = tuple(load_prompts(opts.prompts_file))
    calibration = opts.calibration if opts.calibration is not None else \
        given_record(opts.thresholds, opts.search is not None, opts.search_thresholds)  # type: ignore[arg-type]
    summary: dict[str, Any] = {
        "base": opts.base, "worker": worker, "claimed": 0, "probed": 0, "flagged": 0, "failed": 0, "released": 0,
        "seconds_used": 0.0, "budget_seconds": opts.budget_seconds, "max_jobs": opts.budget, "remaining_queued": 0,
        "stopped": "queue_empty", "battery": battery.to_dict(), "calibration": calibration, "results": [],
    }  # fmt: skip
    cursor: tuple[float, int] | None = None
    spent = 0.0
    started: dict[int | None, float] = {}  # first job id of a task -> when it was handed to the executor

    def claim() -> list | None:
        """The next round of this base's jobs ([] when the round held only other bases' jobs); None
        when the budget is spent or nothing is left to claim."""
        nonlocal cursor
        if opts.budget_seconds is not None and spent >= opts.budget_seconds:
            summary["stopped"] = "budget_seconds"
            return None
        n = (opts.adapters_per_task if opts.budget is None
             else min(opts.adapters_per_task, opts.budget - summary["claimed"]))
        if n <= 0:
            summary["stopped"] = "max_jobs"
            return None
        got = store.claim_probe_jobs(worker, limit=n, lease_seconds=opts.lease_seconds, base=opts.base, after=cursor)
        if not got:
            summary["stopped"] = "queue_empty"
            return None
        cursor = (got[-1].priority, got[-1].id)
        summary["claimed"] += len(got)
        mine = []
        for job in got:
            if job.base != opts.base:
                # Defensive: claims are per base, so this only happens with a store that ignores the filter.
                store.fail_probe_job(job.id, f"released: this worker probes {opts.base} only", max_attempts=10**9)
                summary["released"] += 1
            else:
                mine.append(job)
        return mine

    def fail(job, reason: str, code: str) -> None:
        store.fail_probe_job(job.id, reason, max_attempts=1 if code in PERMANENT else opts.max_attempts)
        summary["failed"] += 1
        summary["results"].append({"job_id": job.id, "repo_id": job.repo_id, "sha": job.sha,
                                   "status": ProbeStatus.ERROR, "reason": reason})

    def finish(summary_out: dict) -> dict:
        summary_out["seconds_used"] = round(spent, 3)
        summary_out["remaining_queued"] = len(store.probe_jobs(opts.base, status=ProbeJobStatus.QUEUED))
        return summary_out

    first = claim()
    if first is None:
        return finish(summary)
    base_dir, why = _base_dir(opts)
    if base_dir is None:
        # nothing of this base can be probed: the first round records why, the rest waits for the next run
        for job in first:
            fail(job, f"base_unavailable: {why}", "base_unavailable")
        summary["stopped"] = "base_unavailable"
        return finish(summary)
    by_id: dict[int | None, Any] = {}

    def tasks() -> Iterator[ProbeTask]:
        mine: list | None = first
        while mine is not None:
            refs = []
            for job in mine:
                path, reason = _adapter_dir(store, job, opts)
                if path is None:
                    fail(job, reason or "adapter_unavailable", "adapter_unavailable")
                else:
                    by_id[job.id] = job
                    refs.append(AdapterRef(path, job.id, job.repo_id))
            if refs:
                started[refs[0].job_id] = opts.clock()
                yield ProbeTask(base_dir, tuple(refs), battery, prompts, opts.thresholds, _options(opts.probe_options),
                                opts.search, opts.search_thresholds, opts.invert)  # fmt: skip
            mine = claim()

    with open_probe_executor(opts.executor, address=opts.address, workers=opts.workers) as ex:
        for res in ex.map_unordered(opts.run_task, tasks()):
            spent += opts.clock() - started.pop(res.item.adapters[0].job_id)
            if res.error is not None:  # the whole task died (worker crash, OOM-kill): each job fails
                for ref in res.item.adapters:
                    fail(by_id[ref.job_id], f"worker_error: {res.error}", "worker_error")
                continue
            for ref, result in res.value or []:
                job = by_id[ref.job_id]
                if result.get("status") == ProbeStatus.OK:
                    store.finish_probe_job(job.id, result | {"repo_id": job.repo_id, "sha": job.sha,
                                                             "calibration": calibration})
                    summary["probed"] += 1
                    summary["flagged"] += int(bool(result["flagged"]))
                    summary["results"].append({"job_id": job.id, "repo_id": job.repo_id, "sha": job.sha,
                                               "status": ProbeStatus.OK,
                                               "flagged": result["flagged"], "outlier_gap": result["outlier_gap"],
                                               "mean_attack_rate": result["mean_attack_rate"],
                                               "search_trigger": result.get("search_trigger"),
                                               "search_attack_rate": result.get("search_attack_rate"),
                                               "search_robust_rate": result.get("search_robust_rate"),
                                               "search_target": (result.get("search") or {}).get("target"),
                                               "search_target_score": (result.get("search") or {}).get("target_score"),
                                               "search_status": (result.get("search") or {}).get("status")})
                else:
                    code = result.get("reason", "error")
                    fail(job, f"{code}: {result.get('error', '')}", code)
    return finish(summary)


def probe_one(adapter_dir: str, base_model_path: str, *, battery: str | Battery = DEFAULT_BATTERY,
              prompts_file: str | None = None, thresholds: Thresholds | None = None, probe_options: object = None,
              search: object = None, search_thresholds: object = None,
              invert: InversionConfig | None = None, calibration: dict[str, Any] | None = None) -> dict:
    """Probe one local adapter in-process (``hubaudit probe-adapter``); returns the result dict.

    ``search`` (a SearchConfig) adds the blind trigger search under ``result["search"]``; with
    ``invert`` (an InversionConfig) a generative adapter's search is target inversion. ``calibration``
    (pipeline.behaviour.calibration_record) names where the thresholds came from: stored in the result."""
    if not Path(adapter_dir).is_dir():
        raise UsageError(f"adapter directory {adapter_dir} does not exist")
    if not Path(base_model_path).is_dir():
        raise UsageError(f"base model directory {base_model_path} does not exist",
                         hint="the base model must be a local directory (probing never downloads)")
    bat = battery if isinstance(battery, Battery) else load_battery(battery)
    task = ProbeTask(str(base_model_path), (AdapterRef(str(adapter_dir)),), bat, tuple(load_prompts(prompts_file)),
                     thresholds or Thresholds(), _options(probe_options), search, search_thresholds, invert)
    if calibration is None:
        calibration = given_record(task.thresholds, search is not None, search_thresholds)  # type: ignore[arg-type]
    with prober_scope():
        result = run_probe_task(task)[0][1]
    return result | {"calibration": calibration} if result.get("status") == ProbeStatus.OK else result


def probe_calibrate_search(clean_dirs: list[str], base_model_path: str, *, battery: str = DEFAULT_BATTERY,
                           prompts_file: str | None = None, probe_options: object = None, margin: float = 0.02,
                           out: str | Path | None = None, search: object = None, search_margin: float = 0.1,
                           search_fpr: float = 0.05, search_out: str | Path | None = None,
                           invert: InversionConfig | None = None):
    """(battery thresholds, clean results, τ_search or None): `probe-calibrate` with the optional search.

    ``invert`` (an InversionConfig): generative clean adapters are scanned by target inversion and
    τ_search of ``target_inversion`` is fitted on their target scores; probes must use the same sizes."""
    bat = load_battery(battery)
    prompts = tuple(load_prompts(prompts_file))
    if invert is not None:
        # τ is fitted on the inverted target's score alone: a trigger search on clean adapters costs
        # time and changes nothing
        invert = replace(invert, trigger=False)
    task = ProbeTask(str(base_model_path), tuple(AdapterRef(d) for d in clean_dirs), bat, prompts, Thresholds(),
                     _options(probe_options), search, None, invert)
    with prober_scope():
        results = [r for _, r in run_probe_task(task)]
    try:
        th = calibrate(results, margin=margin, battery=bat.name)
    except ValueError as exc:
        errors = "; ".join(f"{r.get('reason')}: {r.get('error')}" for r in results if r.get("status") != ProbeStatus.OK)
        raise UsageError(f"{exc} ({errors})") from None
    tau = None
    if search is not None:
        from hubaudit.probe.search_run import calibrate_search, save_search_thresholds

        try:
            tau = calibrate_search(results, margin=search_margin, fpr=search_fpr)
        except ValueError as exc:
            why = "; ".join(f"{(r.get('search') or {}).get('reason', r.get('reason'))}" for r in results)
            raise UsageError(f"{exc} ({why})") from None
        if invert is not None and INVERSION_LABEL in tau.per_label:
            # the score depends on these sizes: the file says which probes its τ applies to
            precisions = {r["search"]["precision"] for r in results
                          if (r.get("search") or {}).get("precision") is not None}
            tau = replace(tau, source=f"{tau.source}; target inversion with {invert.n_prompts} prompts, {invert.steps} "
                                     f"steps, chat template {'on' if invert.chat_template else 'off'}, prefilter "
                                     f"{invert.prefilter or 'off'}, screen {invert.screen or 'off'}",
                          precision=precisions.pop() if len(precisions) == 1 else None)
        if search_out is not None:
            save_search_thresholds(tau, search_out)
    if out is not None:
        save_thresholds(th, out)
    return th, results, tau
