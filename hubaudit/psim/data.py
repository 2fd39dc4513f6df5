"""Tabular inputs for PSIM: CSV, JSONL and Parquet, read into plain Python rows.

Every problem a user can cause with a data file (missing column, empty file, non-UTF-8 bytes,
labels out of range, a single class) is a :class:`PsimDataError` whose message is one line naming
the file and what is wrong, so the CLI prints it without a traceback (exit code 2).
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hubaudit.errors import UsageError

FORMATS = ("csv", "jsonl", "parquet")
_SUFFIXES = {".csv": "csv", ".tsv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl",
             ".parquet": "parquet", ".pq": "parquet"}


class PsimDataError(UsageError):
    """A data file PSIM cannot use (exit code 2, one line)."""


@dataclass
class Table:
    """Rows of a data file, in file order, with the column names as the file gives them."""

    path: Path
    format: str
    columns: list[str]
    rows: list[dict[str, Any]]
    schema: Any = None  # the pyarrow schema of a Parquet input (kept for the cleaned copy)

    def column(self, name: str) -> list[Any]:
        """The values of one column; a clear error naming the available columns if it is absent."""
        if name not in self.columns:
            shown = ", ".join(self.columns[:20]) or "(none)"
            raise PsimDataError(f"{self.path}: no column '{name}' (columns: {shown})")
        return [r.get(name) for r in self.rows]


def detect_format(path: Path) -> str:
    """``csv`` | ``jsonl`` | ``parquet`` from the file suffix."""
    fmt = _SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise PsimDataError(f"{path}: unknown data format '{path.suffix}' (use .csv, .jsonl or .parquet)")
    return fmt


def read_table(path: str | Path) -> Table:
    """Read a CSV (header row), JSONL (one object a line) or Parquet file into a :class:`Table`."""
    p = Path(path)
    if not p.exists():
        raise PsimDataError(f"{p}: no such file")
    if p.is_dir():
        raise PsimDataError(f"{p}: is a directory, not a data file")
    fmt = detect_format(p)
    if p.stat().st_size == 0:
        raise PsimDataError(f"{p}: file is empty")
    schema = None
    if fmt == "parquet":
        columns, rows, schema = _read_parquet(p)
    else:
        raw = p.read_bytes()
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise PsimDataError(f"{p}: not valid UTF-8 (byte {exc.start}); re-encode the file as UTF-8") from None
        columns, rows = _read_csv(p, text) if fmt == "csv" else _read_jsonl(p, text)
    if not rows:
        raise PsimDataError(f"{p}: file has no data rows")
    return Table(path=p, format=fmt, columns=columns, rows=rows, schema=schema)


def _read_csv(p: Path, text: str) -> tuple[list[str], list[dict[str, Any]]]:
    delimiter = "\t" if p.suffix.lower() == ".tsv" else ","
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
        columns = list(reader.fieldnames or [])
        rows = [dict(r) for r in reader]
    except csv.Error as exc:
        raise PsimDataError(f"{p}: malformed CSV ({exc})") from None
    return columns, rows


def _read_jsonl(p: Path, text: str) -> tuple[list[str], list[dict[str, Any]]]:
    rows: list[dict[str, Any]] = []
    columns: dict[str, None] = {}
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise PsimDataError(f"{p}: line {lineno} is not valid JSON ({exc.msg})") from None
        if not isinstance(obj, dict):
            raise PsimDataError(f"{p}: line {lineno} is not a JSON object")
        rows.append(obj)
        columns.update(dict.fromkeys(obj))
    return list(columns), rows


def _read_parquet(p: Path) -> tuple[list[str], list[dict[str, Any]], Any]:
    try:
        import pyarrow.parquet as pq
    except ImportError:  # pragma: no cover - pyarrow is in the parquet extra
        from hubaudit.errors import MissingExtraError

        raise MissingExtraError("parquet", "reading Parquet files") from None
    try:
        table = pq.read_table(p)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises many types for a bad file
        raise PsimDataError(f"{p}: cannot read Parquet ({type(exc).__name__}: "
                            f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
    return list(table.column_names), table.to_pylist(), table.schema


def texts_of(table: Table, text_col: str) -> list[str]:
    """The text column as strings; a missing (null) or non-string value is an error naming its row."""
    out: list[str] = []
    for i, v in enumerate(table.column(text_col)):
        if v is None or (isinstance(v, float) and v != v):
            raise PsimDataError(f"{table.path}: row {i + 1} has no value in text column '{text_col}'")
        if not isinstance(v, str):
            v = str(v)
        out.append(v)
    return out


def labels_of(table: Table, label_col: str, *, num_labels: int | None = None) -> tuple[list[int], int]:
    """Integer class labels 0..K-1 and K.

    Labels may be integers (or integer strings, as CSV gives them) or names; names are mapped to
    0..K-1 in sorted order. ``num_labels`` (if given) is the model's K: any label ≥ K is an error.
    A single class is an error: PSIM's reset draws uniformly over K ≥ 2 classes.
    """
    values = table.column(label_col)
    ints: list[int] = []
    as_int = True
    for v in values:
        if v is None or (isinstance(v, str) and not v.strip()):
            idx = len(ints)
            raise PsimDataError(f"{table.path}: row {idx + 1} has no value in label column '{label_col}'")
        try:
            if isinstance(v, bool):
                raise ValueError
            f = float(v)
            if f != int(f):
                raise ValueError
            ints.append(int(f))
        except (TypeError, ValueError):
            as_int = False
            break
    if as_int:
        bad = [x for x in ints if x < 0 or (num_labels is not None and x >= num_labels)]
        if bad:
            rng = f"0..{num_labels - 1}" if num_labels is not None else "0 or above"
            raise PsimDataError(f"{table.path}: label {bad[0]} in column '{label_col}' is out of range "
                                f"(expected {rng})")
        k = num_labels if num_labels is not None else max(ints) + 1
        labels = ints
    else:
        names = sorted({str(v) for v in values})
        index = {n: i for i, n in enumerate(names)}
        labels = [index[str(v)] for v in values]
        k = len(names)
        if num_labels is not None and k > num_labels:
            raise PsimDataError(f"{table.path}: column '{label_col}' has {k} label names but the model has "
                                f"{num_labels} classes")
        k = num_labels if num_labels is not None else k
    if len(set(labels)) < 2:
        raise PsimDataError(f"{table.path}: column '{label_col}' has a single class ({labels[0]}); "
                            "PSIM needs at least 2")
    return labels, k


def write_table(path: str | Path, columns: list[str], rows: list[dict[str, Any]], schema: Any = None) -> None:
    """Write rows in the format of ``path``'s suffix (CSV with a header, JSONL, or Parquet)."""
    p = Path(path)
    fmt = detect_format(p)
    if p.parent and not p.parent.exists():
        raise PsimDataError(f"{p}: directory {p.parent} does not exist")
    if fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pylist(rows, schema=schema) if schema is not None else pa.Table.from_pylist(rows)
        pq.write_table(table, p)
        return
    with open(p, "w", encoding="utf-8", newline="") as fh:
        if fmt == "csv":
            w = csv.DictWriter(fh, fieldnames=columns, delimiter="\t" if p.suffix.lower() == ".tsv" else ",",
                               extrasaction="ignore")
            w.writeheader()
            w.writerows(rows)
        else:
            for r in rows:
                fh.write(json.dumps(r, ensure_ascii=False, default=str) + "\n")
