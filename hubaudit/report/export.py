"""``hubaudit export``: a stable, versioned blocklist of adapter revisions (export_schema_version "1").

One row per adapter revision. Columns (docs/reports.md, "`export`"), never renamed or reordered within a
version; new columns are only appended:

======================  ====================================================================
export_schema_version   "1"
base                    base model id the adapter is listed under
repo_id                 adapter repo on the Hub (``local:<path>`` for local ingests)
sha                     the exact commit sha that was audited (block this revision)
status                  ``scored`` | ``unsupported`` | ``error`` | ``skipped`` | ``retry``
flagged                 true/false from the active calibration; empty when not judged
score                   weight score (global_frobN_std with PEFT scaling, arXiv 2605.30189)
threshold               the threshold the margin is measured against
margin                  how far past the threshold (positive = past it)
stratum                 comparable population: variant|rank|target modules
threshold_set_version   version of the threshold set that judged it
reasons                 names of the features that fired (``;``-separated in CSV); ``probe`` when
                        only a behavioural probe flagged it; ``derived_from <repo>@<sha> (similarity
                        0.998, copy)`` for a copy/derivative of a known-bad adapter
probe_flagged           true/false from behavioural probing; empty when not probed
suppressed              true when a live suppression covers it (only with --include-suppressed)
first_seen              when hubaudit first saw the adapter (ISO-8601 UTC)
url                     https://huggingface.co/{repo_id}/tree/{sha}; empty when the repo id or
                        sha is not valid Hub syntax (no link is built from such data)
low_confidence          true when the verdict came from thresholds fitted on too few adapters for
                        their target FPR: flagged=false then is no evidence of clean; empty when not
                        judged (appended)
similarity              fingerprint similarity to the known-bad adapter this one is a copy or
                        derivative of; empty when it is none (appended, as are the four below)
source_repo_id          that known-bad adapter's repo id
source_sha              its commit sha
derived_kind            ``copy`` | ``derivative``
source_kind             why the source is bad: ``probe_confirmed`` | ``blocklist`` |
                        ``weights_flagged``
======================  ====================================================================

``flagged`` stays the weight verdict: a copy/derivative (like a probe-confirmed backdoor) is in the
blocklist whatever its weights say, with its ``derived_from`` reason and the columns above.

CSV cells are quoted and neutralised against spreadsheet formula injection (see
:mod:`hubaudit.report.formats.csv`); JSON and JSONL carry every string unchanged.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from hubaudit.report.formats._common import iso
from hubaudit.report.formats.csv import write_csv
from hubaudit.report.formats.cyclonedx import CycloneDxFormat
from hubaudit.report.model import AdapterEntry, Report
from hubaudit.textsafe import json_dumps

EXPORT_SCHEMA_VERSION = "1"
EXPORT_FORMATS = ("csv", "json", "jsonl", "cyclonedx")
EXPORT_COLUMNS = (
    "export_schema_version",
    "base",
    "repo_id",
    "sha",
    "status",
    "flagged",
    "score",
    "threshold",
    "margin",
    "stratum",
    "threshold_set_version",
    "reasons",
    "probe_flagged",
    "suppressed",
    "first_seen",
    "url",
    "low_confidence",  # appended
    "similarity",  # appended: a copy/derivative of a known-bad adapter, and that source
    "source_repo_id",
    "source_sha",
    "derived_kind",
    "source_kind",
)


def export_row(base: str, e: AdapterEntry) -> dict[str, Any]:
    """One export row; ``reasons`` is a list here (``;``-joined in CSV)."""
    d = e.derived_from
    return {
        "export_schema_version": EXPORT_SCHEMA_VERSION,
        "base": base,
        "repo_id": e.repo_id,
        "sha": e.sha,
        "status": e.status,
        "flagged": e.flagged,
        "score": e.score,
        "threshold": e.threshold,
        "margin": e.margin,
        "stratum": e.stratum,
        "threshold_set_version": e.threshold_set_version,
        "reasons": _reasons(e),
        "probe_flagged": e.probe_flagged,
        "suppressed": e.suppressed is not None,
        "first_seen": iso(e.first_seen),
        "url": e.url,
        "low_confidence": e.low_confidence if e.flagged is not None else None,
        "similarity": None if d is None else d.similarity,
        "source_repo_id": None if d is None else d.source_repo_id,
        "source_sha": None if d is None else d.source_sha,
        "derived_kind": None if d is None else d.kind,
        "source_kind": None if d is None else d.source_kind,
    }


def _reasons(e: AdapterEntry) -> list[str]:
    """The features that fired, then the ``derived_from`` reason; ``probe`` when only a probe flagged it."""
    out = list(e.fired) + ([e.derived_from.reason] if e.derived_from is not None else [])
    return out or (["probe"] if e.probe_flagged else [])


def select_entries(report: Report, *, flagged: bool, include_suppressed: bool) -> list[AdapterEntry]:
    """Findings only with ``flagged`` (the blocklist); suppressed ones only with ``include_suppressed``."""
    out = [e for e in report.adapters if e.is_finding] if flagged else list(report.adapters)
    if not include_suppressed:
        out = [e for e in out if e.suppressed is None]
    return out


def render_export(report: Report, fmt: str, *, flagged: bool = True, include_suppressed: bool = False) -> str:
    """The export document in ``fmt`` (csv | json | jsonl | cyclonedx)."""
    selected = select_entries(report, flagged=flagged, include_suppressed=include_suppressed)
    if fmt == "cyclonedx":  # the selected revisions as an SBOM, their findings as VEX (formats/cyclonedx.py)
        return CycloneDxFormat().render(replace(report, adapters=tuple(selected), flagged_only=flagged))
    rows = [export_row(report.base, e) for e in selected]
    if fmt == "csv":
        return write_csv(EXPORT_COLUMNS, [r | {"reasons": ";".join(r["reasons"])} for r in rows])
    if fmt == "jsonl":
        return "".join(json_dumps(r) + "\n" for r in rows)
    if fmt == "json":
        doc = {
            "export_schema_version": EXPORT_SCHEMA_VERSION,
            "base": report.base,
            "generated_at": iso(report.generated_at),
            "calibration_version": report.calibration.version,
            "columns": list(EXPORT_COLUMNS),
            "rows": rows,
        }
        return json_dumps(doc, indent=2) + "\n"
    raise ValueError(f"unknown export format {fmt!r} (expected one of {', '.join(EXPORT_FORMATS)})")
