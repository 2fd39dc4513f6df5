"""Rows on stdout as a table, CSV, JSON Lines or JSON: one writer per format, one escaping per sink.

``ROW_FORMATS`` maps every :class:`RowFormat` to its writer (tested to be exhaustive); a command's
``--format`` choices are a subset built with :func:`choices`, so each choice has a writer. Rows are
dicts of data; :class:`Column` says how a table or CSV shows one field. Every sink escapes untrusted
text in one place: table cells go through :class:`~hubaudit.cli._options.DataConsole` (or
:func:`hubaudit.textsafe.terminal` for plain tables), CSV cells through
:func:`hubaudit.textsafe.csv_cell` (formula neutralisation, every field quoted), JSON through
:func:`hubaudit.textsafe.json_dumps` (``allow_nan=False``: NaN never reaches a consumer).
"""

from __future__ import annotations

import csv
import io
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import IO, Any, Literal

from rich import box as rich_box
from rich.table import Table
from rich.text import Text

from hubaudit.cli._options import DataConsole
from hubaudit.textsafe import csv_cell, json_dumps, terminal
from hubaudit.vocab import StrEnum

Row = Mapping[str, Any]


@dataclass(frozen=True)
class Column:
    """One column of a table or CSV.

    ``key``: the row field it shows. ``cell``: the table text of a row (default: the field, ``str``;
    a :class:`rich.text.Text` keeps its style); a column whose ``key`` is not a field of the rows has
    its CSV cell from ``cell`` too. ``number``: the column shows the row's 1-based position instead.
    """

    key: str
    header: str | None = None
    cell: Callable[[Row], str | Text] | None = None
    justify: Literal["left", "right"] = "left"
    no_wrap: bool = False
    overflow: Literal["fold", "crop", "ellipsis"] = "ellipsis"
    ratio: int | None = None
    number: bool = False

    @property
    def title(self) -> str:
        return self.key if self.header is None else self.header

    def text(self, row: Row, i: int) -> str | Text:
        if self.number:
            return str(i)
        if self.cell is not None:
            return self.cell(row)
        value = row.get(self.key)
        return "" if value is None else str(value)

    def value(self, row: Row, i: int) -> Any:
        if self.number:
            return i
        if self.key in row or self.cell is None:
            return row.get(self.key)
        shown = self.cell(row)
        return shown.plain if isinstance(shown, Text) else shown


@dataclass(frozen=True)
class TableLook:
    """How a ``table`` looks: rich's box-drawn table (``box``: a rich box, None for none), or ``plain``
    tab-separated lines with a header, for scripts (a tab or newline in data is escaped, so it can
    add no column or row)."""

    box: rich_box.Box | None = rich_box.HEAVY_HEAD
    pad_edge: bool = True
    plain: bool = False


class RowFormat(StrEnum):
    """Formats rows can be written in (member names are the values, as in ``--format`` choices)."""

    table = "table"
    csv = "csv"
    jsonl = "jsonl"
    json = "json"


@dataclass(frozen=True)
class _Sink:
    out: IO[str]
    title: str | None
    width: int | None
    soft_wrap: bool
    look: TableLook
    json_indent: int | None
    ensure_ascii: bool


def _table(rows: Sequence[Row], columns: Sequence[Column], sink: _Sink) -> None:
    if sink.look.plain:
        lines = [[c.title for c in columns]]
        lines += [[_plain(c.text(row, i)) for c in columns] for i, row in enumerate(rows, 1)]
        sink.out.write("".join("\t".join(terminal(cell) for cell in line) + "\n" for line in lines))
        return
    table = Table(title=sink.title, title_justify="left", box=sink.look.box, pad_edge=sink.look.pad_edge,
                  expand=False)
    for c in columns:
        table.add_column(c.title, justify=c.justify, no_wrap=c.no_wrap, overflow=c.overflow, ratio=c.ratio)
    for i, row in enumerate(rows, 1):
        table.add_row(*(c.text(row, i) for c in columns))
    # DataConsole escapes every str cell and the title (repo ids, paths) and never reads them as markup.
    DataConsole(file=sink.out, width=sink.width, soft_wrap=sink.soft_wrap).print(table)


def _plain(cell: str | Text) -> str:
    return cell.plain if isinstance(cell, Text) else cell


def _csv(rows: Sequence[Row], columns: Sequence[Column], sink: _Sink) -> None:
    buf = io.StringIO()
    # QUOTE_ALL and csv_cell: the OWASP "CSV Injection" defence of report/formats/csv.py
    writer = csv.writer(buf, lineterminator="\n", quoting=csv.QUOTE_ALL)
    writer.writerow([c.title for c in columns])
    writer.writerows([csv_cell(c.value(row, i)) for c in columns] for i, row in enumerate(rows, 1))
    sink.out.write(buf.getvalue())


def _jsonl(rows: Sequence[Row], columns: Sequence[Column], sink: _Sink) -> None:
    sink.out.write("".join(json_dumps(dict(row), ensure_ascii=sink.ensure_ascii) + "\n" for row in rows))


def _json(rows: Sequence[Row], columns: Sequence[Column], sink: _Sink) -> None:
    doc = [dict(row) for row in rows]
    sink.out.write(json_dumps(doc, indent=sink.json_indent, ensure_ascii=sink.ensure_ascii) + "\n")


# The one map of row formats to their writers (tests/test_registries.py checks it is exhaustive).
ROW_FORMATS: dict[RowFormat, Callable[[Sequence[Row], Sequence[Column], _Sink], None]] = {
    RowFormat.table: _table,
    RowFormat.csv: _csv,
    RowFormat.jsonl: _jsonl,
    RowFormat.json: _json,
}


def choices(name: str, *formats: RowFormat) -> type[StrEnum]:
    """A command's ``--format`` enum: the given row formats, in that order (each has a writer)."""
    unknown = [f for f in formats if f not in ROW_FORMATS]
    if unknown:
        raise ValueError(f"no writer for {unknown}")
    return StrEnum(name, {f.value: f.value for f in formats})  # type: ignore[return-value]


def emit_rows(
    rows: Sequence[Row],
    columns: Sequence[Column],
    fmt: str,
    *,
    title: str | None = None,
    out: IO[str] | None = None,
    width: int | None = None,
    soft_wrap: bool = False,
    look: TableLook = TableLook(),
    json_indent: int | None = None,
    ensure_ascii: bool = False,
) -> None:
    """Write ``rows`` to ``out`` (stdout) in ``fmt`` (a :class:`RowFormat` value).

    ``table`` and ``csv`` show ``columns``; ``jsonl`` and ``json`` carry every field of each row.
    ``title`` heads a rich table; ``width`` caps it (default: the console's, so ``COLUMNS`` or the
    terminal decides); ``soft_wrap`` lets a long title run past the width instead of wrapping.
    ``json_indent`` indents the ``json`` document; ``ensure_ascii`` writes non-ASCII text as ``\\u``
    escapes in both JSON formats.
    """
    sink = _Sink(out if out is not None else sys.stdout, title, width, soft_wrap, look, json_indent, ensure_ascii)
    ROW_FORMATS[RowFormat(fmt)](rows, columns, sink)


__all__ = ["Column", "ROW_FORMATS", "RowFormat", "TableLook", "choices", "emit_rows"]
