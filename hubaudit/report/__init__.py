"""Read side: turn audit rows into a Report and render it (table, json, jsonl, csv, markdown, html, sarif).

Pure: no database, network or terminal here; ``hubaudit/pipeline/report.py`` does the store queries.
"""

from hubaudit.report.build import build_report, norm_map
from hubaudit.report.formats import FORMATS, OutputFormat, get_format
from hubaudit.report.model import AdapterEntry, Calibration, NormMap, Report, Summary, Suppression
from hubaudit.report.suppress import load_suppressions, match_suppression, parse_suppressions

__all__ = [
    "FORMATS",
    "AdapterEntry",
    "Calibration",
    "NormMap",
    "OutputFormat",
    "Report",
    "Summary",
    "Suppression",
    "build_report",
    "get_format",
    "load_suppressions",
    "match_suppression",
    "norm_map",
    "parse_suppressions",
]
