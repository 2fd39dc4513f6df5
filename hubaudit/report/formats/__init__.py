"""Report formats: the ``--format`` enum and its one map to implementations (tested to be exhaustive)."""

from __future__ import annotations

from enum import Enum

from hubaudit.report.formats.csv import CsvFormat
from hubaudit.report.formats.cyclonedx import CycloneDxFormat
from hubaudit.report.formats.html import HtmlFormat
from hubaudit.report.formats.interface import ReportFormat
from hubaudit.report.formats.json import JsonFormat
from hubaudit.report.formats.jsonl import JsonlFormat
from hubaudit.report.formats.markdown import MarkdownFormat
from hubaudit.report.formats.sarif import SarifFormat
from hubaudit.report.formats.table import TableFormat


class OutputFormat(str, Enum):
    """Values of ``hubaudit report --format``."""

    table = "table"
    json = "json"
    jsonl = "jsonl"
    csv = "csv"
    markdown = "markdown"
    html = "html"
    sarif = "sarif"
    cyclonedx = "cyclonedx"


FORMATS: dict[OutputFormat, type[ReportFormat]] = {
    OutputFormat.table: TableFormat,
    OutputFormat.json: JsonFormat,
    OutputFormat.jsonl: JsonlFormat,
    OutputFormat.csv: CsvFormat,
    OutputFormat.markdown: MarkdownFormat,
    OutputFormat.html: HtmlFormat,
    OutputFormat.sarif: SarifFormat,
    OutputFormat.cyclonedx: CycloneDxFormat,
}


def get_format(fmt: OutputFormat | str, *, width: int = 100) -> ReportFormat:
    """The implementation of ``fmt`` (``width`` only matters for the table)."""
    cls = FORMATS[OutputFormat(fmt)]
    return cls(width=width) if cls is TableFormat else cls()


__all__ = ["FORMATS", "OutputFormat", "ReportFormat", "get_format"]
