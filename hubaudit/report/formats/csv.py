"""``--format csv``: one row per listed adapter revision, stable columns (``REPORT_CSV_COLUMNS``).

Columns are only ever appended, never renamed or reordered, within one ``schema_version``.
Lists (``reasons``, ``downstream``, the files in ``hub_security``) are joined with ``;``; missing
values are empty cells; booleans are ``true``/``false``.

Cells are safe to open in a spreadsheet (OWASP "CSV Injection"), here and in ``hubaudit export``:
every cell is quoted, and a text cell that would start with ``=``, ``+``, ``-``, ``@``, a tab or a
carriage return (or their fullwidth forms) gets a leading ``'``, so a repo id or sha such as
``=HYPERLINK(...)`` is shown as text, never evaluated (strip one leading ``'`` to get the raw value;
the JSON formats carry it unchanged). Control characters in text are written as visible escapes
(``\x1b``). Numbers hubaudit computed (score, margin, threshold, counts) are written as plain
numbers even when negative (``-0.5``): they cannot hold a formula. See :func:`hubaudit.textsafe.csv_cell`.
"""

from __future__ import annotations

import csv
import io
from typing import Any

from hubaudit.report.formats._common import iso, search_info
from hubaudit.report.formats.interface import ReportFormat
from hubaudit.report.model import AdapterEntry, Report
from hubaudit.textsafe import csv_cell
from hubaudit.vocab import ProbeStatus

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
    "probe_trigger",  # appended: the blind search's recovered trigger, its rate, where it fires
    "probe_trigger_rate",
    "probe_trigger_positions",
    "low_confidence",  # appended: judged by thresholds fitted on too few adapters for their target FPR
    "low_confidence_reason",
    "derived_from",  # appended: the reason "derived_from <repo>@<sha> (similarity 0.998, copy)" of a copy/derivative
    "similarity",  # its fingerprint similarity to that known-bad adapter
    "hub_security",  # the Hub's own scan status (issues|scanned|pending|unknown), then "path (level)" per issue
    "downstream",  # Hub repos that declare this adapter as their base, "relation:repo_id" each
)


def write_csv(columns: tuple[str, ...], rows: list[dict[str, Any]]) -> str:
    """RFC 4180 CSV with a header row and ``\\n`` line ends; every cell quoted and neutralised by
    :func:`hubaudit.textsafe.csv_cell` (the module docstring says how)."""
    buf = io.StringIO()
    # QUOTE_ALL: a spreadsheet that splits on ";" or a tab (locale defaults) still sees one cell, so
    # "a;=cmd" cannot become a formula cell of its own (OWASP "CSV Injection": quote every field).
    writer = csv.DictWriter(buf, fieldnames=list(columns), lineterminator="\n", extrasaction="raise",
                            quoting=csv.QUOTE_ALL)
    writer.writeheader()
    for row in rows:
        writer.writerow({k: csv_cell(row.get(k)) for k in columns})
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
        "low_confidence": e.low_confidence if e.flagged is not None else None,
        "low_confidence_reason": e.low_confidence_reason,
    } | _search_cells(e) | _lineage_cells(e)


def _lineage_cells(e: AdapterEntry) -> dict[str, Any]:
    """The copy/derivative, Hub scan and downstream cells (empty when the report has none)."""
    cells: dict[str, Any] = {"downstream": ";".join(f"{d.relation}:{d.repo_id}" for d in e.downstream) or None}
    if e.derived_from is not None:
        cells |= {"derived_from": e.derived_from.reason, "similarity": e.derived_from.similarity}
    if e.hub_security is not None:
        h = e.hub_security
        cells["hub_security"] = ";".join([h.status, *(f"{p} ({lv})" for p, lv in h.files_with_issues if lv != "safe")])
    return cells


def _search_cells(e: AdapterEntry) -> dict[str, Any]:
    """The recovered trigger's cells (empty when no search ran; the status when it did not finish)."""
    info = search_info(e.probe)
    if info is None:
        return {}
    if info["status"] != ProbeStatus.OK:
        return {"probe_trigger": f"search {info['status']}"}
    return {"probe_trigger": info["trigger"], "probe_trigger_rate": info["attack_rate"],
            "probe_trigger_positions": ";".join(info["positions"])}


class CsvFormat(ReportFormat):
    name = "csv"
    suffix = ".csv"
    media_type = "text/csv"

    def render(self, report: Report) -> str:
        return write_csv(REPORT_CSV_COLUMNS, [_row(report, e) for e in report.adapters])
