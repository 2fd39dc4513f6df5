"""``--format jsonl``: one adapter per line, then one closing ``summary`` line (garak-style).

Every line has ``entry_type`` ("adapter" or "summary"), ``schema_version`` and ``base``, so a
consumer can filter lines without reading the whole file and a truncated file is still useful.
"""

from __future__ import annotations

from hubaudit.report.formats._common import adapter_dict, header_dict
from hubaudit.report.formats.interface import ReportFormat
from hubaudit.report.model import Report
from hubaudit.textsafe import json_dumps


class JsonlFormat(ReportFormat):
    name = "jsonl"
    suffix = ".jsonl"
    media_type = "application/x-ndjson"

    def render(self, report: Report) -> str:
        lines = []
        for e in report.adapters:
            row = {"entry_type": "adapter", "schema_version": report.schema_version, "base": report.base}
            row.update(adapter_dict(e))
            lines.append(json_dumps(row))
        summary = {"entry_type": "summary"}
        summary.update(header_dict(report))
        lines.append(json_dumps(summary))
        return "\n".join(lines) + "\n"
