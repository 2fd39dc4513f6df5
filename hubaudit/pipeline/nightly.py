"""``hubaudit nightly``: for each configured base, crawl → calibrate → escalate → probe → downstream → export.

Escalation queues every scored revision that has no probe verdict yet (weight-flagged ones first, see
:mod:`hubaudit.pipeline.escalate`); the probe stage then spends at most ``probe_budget_seconds``
device-seconds of the base's queue (and at most ``probe_budget`` jobs when that is set), and what is
left stays queued for the next night, so every new adapter of the base is probed within a few nights.
``probe_coverage`` in each base's outcome counts the scored revisions probed and not yet probed.

Every stage commits to the store as it goes (crawl per adapter, calibration per threshold set,
escalation per job, probing per job), so a run killed at any point (even SIGKILL) resumes on the
next invocation without redoing finished work: the crawl skips revisions with a final outcome,
enqueueing is idempotent, probe jobs are leased, and exports are rewritten atomically.

Exports land in ``<export_dir>/<YYYY-MM-DD>/<base-slug>/`` (``flagged.csv``, ``flagged.json``,
``flagged.jsonl``, ``report.sarif``, ``summary.json``); ``<export_dir>/latest`` is a symlink swapped
atomically (``os.replace``) to a complete copy, so a reader never sees a half-written set. Dated
folders older than ``retention_days`` are pruned.

The downstream step lists the Hub repos built on each finding (:mod:`hubaudit.pipeline.downstream`).
It is advisory: its failure is recorded in the base's ``errors`` and ``downstream`` and never undoes
or skips the earlier steps or the export (a Hub failure there counts as one for the run, exit 4).

Exit status: 0 when the run worked, whatever it found (findings are data); 4 when the Hub failed
for the run (finished work is kept); 3 for configuration problems (raised before any work).
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from hubaudit.config import BaseConfig, Config
from hubaudit.errors import HubError, NotCalibratedError
from hubaudit.httpclient import HubConfig
from hubaudit.pipeline.calibrate import calibrate_base
from hubaudit.pipeline.crawl import CrawlOptions, crawl
from hubaudit.pipeline.escalate import escalate
from hubaudit.pipeline.runs import recorded_run
from hubaudit.store import Store
from hubaudit.vocab import ProbeJobStatus

EXPORTS = (("flagged.csv", "csv"), ("flagged.json", "json"), ("flagged.jsonl", "jsonl"))


def slug(base: str) -> str:
    """A file-system-safe folder name for a base model id (``Qwen/Qwen2.5-1.5B`` → ``Qwen__Qwen2.5-1.5B``)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "__", base)


@dataclass
class BaseOutcome:
    """What the nightly run did for one base."""

    base: str
    crawl: dict[str, Any] | None = None
    calibration: dict[str, Any] | None = None
    escalation: dict[str, Any] | None = None
    probe: dict[str, Any] | None = None
    downstream: dict[str, Any] | None = None
    exports: dict[str, str] = field(default_factory=dict)
    flagged: int = 0
    probe_coverage: dict[str, int] = field(default_factory=dict)  # {"probed", "not_probed"} after this run
    errors: list[str] = field(default_factory=list)


@dataclass
class NightlySummary:
    """The run's summary (stderr lines; ``--format json`` prints :meth:`to_dict`)."""

    started_at: str
    finished_at: str | None = None
    duration_s: float = 0.0
    export_dir: str | None = None
    dated_dir: str | None = None
    latest_dir: str | None = None
    bases: list[BaseOutcome] = field(default_factory=list)
    exit_code: int = 0
    hub_error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class AlreadyRunning(Exception):
    """Another nightly run holds the lock (not an error: the caller exits 0)."""


class RunLock:
    """An exclusive, non-blocking file lock for one nightly run per home directory."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def __enter__(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise AlreadyRunning(str(self.path)) from None
        self._fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def _probe(store: Store, base: BaseConfig, hub: HubConfig, home: Path, queued: int) -> dict[str, Any]:
    """Work through the probe queue of ``base`` when an executor is configured and usable."""
    if base.executor == "none":
        return {"status": "not_configured", "queued": queued,
                "note": "no probe executor configured: escalated adapters stay queued"}
    try:
        import torch  # noqa: F401 - only to learn whether the probe extra is installed
    except ImportError:
        return {"status": "unavailable", "queued": queued,
                "note": "the probe extra (torch, peft, transformers) is not installed: jobs stay queued"}
    from hubaudit.pipeline.behaviour import calibration_record, resolve_calibration
    from hubaudit.pipeline.probe import ProbeRunOptions, probe_queue
    from hubaudit.vocab import CalibrationKind

    th = resolve_calibration(CalibrationKind.PROBE, home, base.id, store=store)
    opts = ProbeRunOptions(
        base=base.id, base_model_path=base.base_model_path or None, executor=base.executor,
        address=base.ray_address or None, budget=base.probe_budget or None,
        budget_seconds=base.probe_budget_seconds, battery=base.battery,
        prompts_file=base.prompts or None, thresholds=th.value, calibration=calibration_record(th.ref), hub=hub,
        cache_dir=str(home / "cache" / "probe"),
    )  # fmt: skip
    summary = probe_queue(store, opts)
    if th.notice:
        summary["notice"] = th.notice
    summary.pop("results", None)
    summary["status"] = "ran"
    return summary


def _downstream(store: Store, base: str, hub: HubConfig, out: BaseOutcome, summary: NightlySummary) -> None:
    """List the repos built on the base's findings; any failure is recorded, never raised."""
    from hubaudit.pipeline.downstream import downstream

    if summary.hub_error is not None:
        out.downstream = {"status": "skipped", "note": "the Hub failed earlier in this run"}
        return
    try:
        result = downstream(store, hub, base, command_args={"base": base, "nightly": True})
    except Exception as exc:  # noqa: BLE001 - an advisory step: recorded, the export still runs
        line = (str(exc).splitlines() or [""])[0]
        out.downstream = {"status": "failed", "error": f"{type(exc).__name__}: {line}"}
        out.errors.append(f"downstream: {type(exc).__name__}: {line}")
        return
    out.downstream = {"status": "failed" if result.fatal else "ran", "findings": len(result.findings),
                      "queried": result.queried, "children": result.children,
                      "failed": sum(1 for f in result.findings if f.error), "hub_error": result.hub_error}
    if result.fatal is not None:
        summary.hub_error = result.hub_error
        out.errors.append(f"downstream: {result.hub_error}")


def _export(store: Store, base: str, folder: Path) -> tuple[dict[str, str], int, dict[str, int]]:
    """Write the flagged lists and SARIF of ``base`` into ``folder`` (each file atomically), all
    rendered from one report read from the store; also its findings and probe coverage counts."""
    from hubaudit.pipeline.report import load_report, write_atomic
    from hubaudit.report import get_format
    from hubaudit.report.export import render_export, select_entries

    folder.mkdir(parents=True, exist_ok=True)
    report = load_report(store, base)
    written: dict[str, str] = {}
    for name, fmt in EXPORTS:
        written[name] = str(write_atomic(folder / name,
                                         render_export(report, fmt, flagged=True, include_suppressed=False)))
    for name, fmt in (("report.sarif", "sarif"), ("report.json", "json")):
        written[name] = str(write_atomic(folder / name, get_format(fmt).render(report)))
    coverage = {"probed": report.summary.probed, "not_probed": report.summary.not_probed}
    return written, len(select_entries(report, flagged=True, include_suppressed=False)), coverage


def _publish_latest(export_dir: Path, dated: Path) -> Path:
    """Point ``export_dir/latest`` at a complete copy of ``dated``, atomically (symlink swap)."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    copy = export_dir / f".latest-{stamp}"
    shutil.copytree(dated, copy)
    link_tmp = export_dir / f".latest-link-{stamp}"
    os.symlink(copy.name, link_tmp)
    latest = export_dir / "latest"
    if latest.exists() and not latest.is_symlink():
        # A real directory from an older layout: move it aside so the swap can happen.
        shutil.rmtree(latest)
    os.replace(link_tmp, latest)
    for old in export_dir.glob(".latest-*"):
        if old.name != copy.name and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)
        elif old.is_symlink() and old != latest:
            old.unlink(missing_ok=True)
    return latest


def _prune(export_dir: Path, retention_days: int, today: datetime) -> list[str]:
    """Delete dated export folders older than ``retention_days``."""
    cutoff = (today - timedelta(days=retention_days)).date()
    gone = []
    for d in export_dir.iterdir():
        if not d.is_dir() or d.is_symlink() or not re.fullmatch(r"\d{4}-\d{2}-\d{2}", d.name):
            continue
        if datetime.strptime(d.name, "%Y-%m-%d").date() < cutoff:
            shutil.rmtree(d, ignore_errors=True)
            gone.append(d.name)
    return gone


def nightly(store: Store, cfg: Config, hub: HubConfig, *, home: Path, export_dir: Path) -> NightlySummary:
    """Run every stage for every base of ``cfg``; see the module docstring."""
    t0 = time.monotonic()
    now = datetime.now(timezone.utc)
    summary = NightlySummary(started_at=now.isoformat(), export_dir=str(export_dir))
    dated = export_dir / now.strftime("%Y-%m-%d")
    summary.dated_dir = str(dated)
    # Finished whatever happens: an executor or store failure mid-run is recorded with its exit code.
    with recorded_run(store, "nightly", {"bases": [b.id for b in cfg.bases], "config": str(cfg.path or "")}) as run:
        run_id = run.id
        for base in cfg.bases:
            out = BaseOutcome(base.id)
            summary.bases.append(out)
            if summary.hub_error is None:
                options = CrawlOptions(
                    bases=(base.id,), cache_root=home / "cache", limit=base.limit or None, workers=base.workers,
                    include_derived=base.include_derived,
                )  # fmt: skip
                try:
                    out.crawl = crawl(store, hub, options,
                                      command_args={"bases": [base.id], "nightly_run": run_id}).to_dict()
                except HubError as exc:
                    # The Hub failed for the run: keep going with what is stored (calibrate, export) so
                    # the morning's lists stay current, but report exit 4 and crawl no further base.
                    summary.hub_error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                    out.errors.append(f"crawl: {summary.hub_error}")
            else:
                out.errors.append("crawl skipped: the Hub failed earlier in this run")
            try:
                cal = calibrate_base(store, base.id, target_fpr=base.target_fpr, min_n=base.min_n)
                out.calibration = cal.to_dict() | {"calibrated": cal.calibrated}
            except NotCalibratedError as exc:
                out.calibration = {"calibrated": False, "reason": str(exc)}
            esc = escalate(store, base.id)
            out.escalation = {k: v for k, v in esc.to_dict().items() if k != "job_ids"}  # counts; ids stay in the store
            queued = len(store.probe_jobs(base.id, status=ProbeJobStatus.QUEUED))
            out.probe = _probe(store, base, hub, home, queued)
            _downstream(store, base.id, hub, out, summary)
            out.exports, out.flagged, out.probe_coverage = _export(store, base.id, dated / slug(base.id))
        from hubaudit.pipeline.similar import warm_cache

        warm_cache(store, [b.id for b in cfg.bases], home / "cache" / "fingerprints")  # the morning's searches hit it
        export_dir.mkdir(parents=True, exist_ok=True)
        summary.exit_code = 4 if summary.hub_error else 0
        summary.latest_dir = str(export_dir / "latest")
        summary.duration_s = round(time.monotonic() - t0, 3)
        summary.finished_at = datetime.now(timezone.utc).isoformat()
        write_summary(summary, dated)
        _publish_latest(export_dir, dated)
        _prune(export_dir, cfg.retention_days, now)
        run.counts = {"bases": len(cfg.bases), "flagged": sum(b.flagged for b in summary.bases)}
        run.exit_status = summary.exit_code
    return summary


def write_summary(summary: NightlySummary, folder: Path) -> None:
    """Keep the run summary beside the exports (``summary.json`` in the dated folder)."""
    from hubaudit.pipeline.report import write_atomic

    folder.mkdir(parents=True, exist_ok=True)
    write_atomic(folder / "summary.json", json.dumps(summary.to_dict(), indent=2, default=str) + "\n")


def default_export_dir(home: Path) -> Path:
    """Where exports go when the configuration names no ``export_dir``."""
    return home / "exports"
