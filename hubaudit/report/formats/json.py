"""``--format json``: one object (README "JSON report schema"; ``schema_version`` "1")."""

from __future__ import annotations

import json

from hubaudit.report.formats._common import adapter_dict, header_dict
from hubaudit.report.formats.interface import ReportFormat
from hubaudit.report.model import Report


class JsonFormat(ReportFormat):
    name = "json"
    suffix = ".json"
    media_type = "application/json"

    def render(self, report: Report) -> str:
        doc = header_dict(report)
        doc["adapters"] = [adapter_dict(e) for e in report.adapters]
        return json.dumps(doc, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
