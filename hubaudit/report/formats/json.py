"""``--format json``: one object (docs/reports.md "JSON report schema"; ``schema_version`` "1")."""

from __future__ import annotations

from hubaudit.report.formats._common import adapter_dict, header_dict
from hubaudit.report.formats.interface import ReportFormat
from hubaudit.report.model import Report
from hubaudit.textsafe import json_dumps


class JsonFormat(ReportFormat):
    name = "json"
    suffix = ".json"
    media_type = "application/json"

    def render(self, report: Report) -> str:
        doc = header_dict(report)
        doc["adapters"] = [adapter_dict(e) for e in report.adapters]
        return json_dumps(doc, indent=2) + "\n"
