"""``--format csv``: one row per listed adapter revision, stable columns (``REPORT_CSV_COLUMNS``).

Columns are only ever appended, never renamed or reordered, within one ``schema_version``.
Lists (``reasons``) are joined with ``;``; missing values are empty cells; booleans are
``true``/``false``.
"""

from __future__ import annotations

import csv
import io
from typing import Any

from hubaudit.report.formats._common import iso, search_info
from hubaudit.report.formats.interface import ReportFormat
from hubaudit.report.model import AdapterEntry, Report

REPORT_CSV_COLUMNS = (
    "schema_version",
    "base",
    "repo_id",
    "sha",
    "status",
    "status_reason",
    "score",
    "flagged",
    "suppressed",
    "margin",
    "threshold",
    "stratum",
    "threshold_set_version",
    "reasons",
    "probe_flagged",
    "first_seen",
    "downloads",
    "url",
    "probe_trigger",  # appended (issue 10): the blind search's recovered trigger, its rate, where it fires
    "probe_trigger_rate",
    "probe_trigger_positions",
)


def cell(value: Any) -> str:
    """CSV cell text: '' for None, true/false for booleans, repr-exact floats."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def write_csv(columns: tuple[str, ...], rows: list[dict[str, Any]]) -> str:
    """RFC 4180 CSV with a header row and ``\\n`` line ends."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), lineterminator="\n", extrasaction="raise")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: cell(row.get(k)) for k in columns})
    return buf.getvalue()


def _row(report: Report, e: AdapterEntry) -> dict[str, Any]:
    return {
        "schema_version": report.schema_version,
        "base": report.base,
        "repo_id": e.repo_id,
        "sha": e.sha,
        "status": e.status,
        "status_reason": e.reason,
        "score": e.score,
        "flagged": e.flagged,
        "suppressed": e.suppressed is not None,
        "margin": e.margin,
        "threshold": e.threshold,
        "stratum": e.stratum,
        "threshold_set_version": e.threshold_set_version,
        "reasons": ";".join(e.reasons),
        "probe_flagged": e.probe_flagged,
        "first_seen": iso(e.first_seen),
        "downloads": e.downloads,
        "url": e.url,
    } | _search_cells(e)


def _search_cells(e: AdapterEntry) -> dict[str, Any]:
    """The recovered trigger's cells (empty when no search ran; the status when it did not finish)."""
    info = search_info(e.probe)
    if info is None:
        return {}
    if info["status"] != "ok":
        return {"probe_trigger": f"search {info['status']}"}
    return {"probe_trigger": info["trigger"], "probe_trigger_rate": info["attack_rate"],
            "probe_trigger_positions": ";".join(info["positions"])}


class CsvFormat(ReportFormat):
    name = "csv"
    suffix = ".csv"
    media_type = "text/csv"

    def render(self, report: Report) -> str:
        return write_csv(REPORT_CSV_COLUMNS, [_row(report, e) for e in report.adapters])
