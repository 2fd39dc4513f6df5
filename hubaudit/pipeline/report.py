"""Flows ``report`` and ``export``: store queries → :class:`hubaudit.report.Report` → text.

Wires the store (audit rows, active threshold set, per-module norms) to the pure report stage.
``check`` (one adapter) lives in :mod:`hubaudit.pipeline.check`.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from datetime import date, datetime, timezone
from pathlib import Path

from hubaudit import __version__
from hubaudit.pipeline.behaviour import in_force
from hubaudit.pipeline.lineage import lineage_args
from hubaudit.report import NormMap, Report, Suppression, build_report, norm_map
from hubaudit.store import Store
from hubaudit.vocab import RevisionStatus

# Population revisions read for the median heat map (per stratum): enough for a stable median,
# bounded so an HTML report of a 10,000-adapter base stays a few hundred queries.
MEDIAN_SAMPLE = 200


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _norm_maps(store: Store, report: Report, rows: Sequence, sample: int) -> list[NormMap]:
    """Heat-map data for every weight-flagged finding: its module norms beside its stratum's median."""
    by_stratum: dict[str, list[int]] = {}
    for r in rows:
        if r.status == RevisionStatus.SCORED and r.stratum is not None:
            by_stratum.setdefault(r.stratum, []).append(r.revision_id)
    cache: dict[str, list[list[dict]]] = {}
    out = []
    for e in report.findings:
        if e.revision_id is None or not e.audited:
            continue
        modules = store.module_norms(e.revision_id)
        if not modules:
            continue
        key = e.stratum or "?"
        if key not in cache:
            ids = by_stratum.get(key, [])
            # An even spread over the (repo-ordered) stratum rather than its first N entries.
            step = max(1, len(ids) // sample)
            cache[key] = [m for m in (store.module_norms(i) for i in ids[::step][:sample]) if m]
        nm = norm_map(e.repo_id, e.sha, modules, cache[key])
        if nm is not None:
            out.append(nm)
    return out


def load_report(
    store: Store,
    base: str,
    *,
    since: datetime | None = None,
    flagged_only: bool = False,
    suppressions: Sequence[Suppression] = (),
    with_norm_maps: bool = False,
    now: datetime | None = None,
    median_sample: int = MEDIAN_SAMPLE,
) -> Report:
    """The report of ``base`` from the store; ``with_norm_maps`` reads per-module norms (HTML)."""
    now = now or utcnow()
    today: date = now.astimezone(timezone.utc).date()
    rows = store.audit_rows(base, since=since)
    threshold_set = store.active_threshold_set(base)
    args = dict(generated_at=now, tool_version=__version__, today=today, suppressions=suppressions, since=since,
                probe_calibration=in_force(store, base), **lineage_args(store, base, rows, threshold_set))
    report = build_report(base, rows, threshold_set, flagged_only=flagged_only, **args)
    if with_norm_maps and report.findings:
        maps = _norm_maps(store, report, rows, median_sample)
        report = build_report(base, rows, threshold_set, flagged_only=flagged_only, norm_maps=maps, **args)
    return report


def write_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` via a temp file in the same directory and a rename, so a reader
    never sees a half-written report and a failed run leaves the previous file in place."""
    target = Path(path).expanduser()
    directory = target.parent if str(target.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return target


def read_suppressions(path: str | Path | None) -> list[Suppression]:
    """The entries of a suppression file (none without a path); invalid files raise ConfigError."""
    from hubaudit.report import load_suppressions

    return load_suppressions(path) if path else []


def run_report(
    store: Store,
    base: str,
    fmt: str,
    *,
    width: int = 100,
    since: datetime | None = None,
    flagged_only: bool = False,
    suppressions: Sequence[Suppression] = (),
    now: datetime | None = None,
) -> tuple[Report, str]:
    """``hubaudit report``: the Report and its rendering in ``fmt`` (norm maps only for html)."""
    from hubaudit.report import get_format

    report = load_report(store, base, since=since, flagged_only=flagged_only, suppressions=suppressions,
                         with_norm_maps=fmt == "html", now=now)  # fmt: skip
    return report, get_format(fmt, width=width).render(report)


def run_export(
    store: Store,
    base: str,
    fmt: str,
    *,
    flagged: bool = True,
    include_suppressed: bool = False,
    suppressions: Sequence[Suppression] = (),
    now: datetime | None = None,
) -> tuple[Report, str, int]:
    """``hubaudit export``: the Report, the export document (schema v1) and its row count."""
    from hubaudit.report.export import render_export, select_entries

    report = load_report(store, base, suppressions=suppressions, now=now)
    text = render_export(report, fmt, flagged=flagged, include_suppressed=include_suppressed)
    return report, text, len(select_entries(report, flagged=flagged, include_suppressed=include_suppressed))
