"""Renderers for PSIM screening results: one function per ``--format`` (stdout carries data only).

``table``/``csv``/``jsonl`` carry per-sample rows only (the summary goes to stderr, printed by the
CLI); ``json`` carries ``{"summary": ..., "samples": [...]}``. Texts are data from the screened file:
each sink escapes them through :mod:`hubaudit.textsafe` (terminal, CSV formula neutralisation, JSON).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from typing import Any

from hubaudit.models import CalibrationRef
from hubaudit.textsafe import csv_cell, json_dumps, terminal

SCREEN_FORMATS = ("table", "json", "jsonl", "csv")
PROBE_FORMATS = ("table", "json", "jsonl", "csv")


def _samples(result, texts: list[str]) -> list[dict[str, Any]]:
    rows = result.records()
    for r, t in zip(rows, texts):
        r["text"] = t
    return rows


def _short(t: str, n: int = 70) -> str:
    t = terminal(" ".join(t.split()))
    return t if len(t) <= n else t[: n - 1] + "…"


def _table(rows: list[dict[str, Any]], cols: list[str]) -> str:
    cells = [[("yes" if v is True else "no" if v is False else _short(str(v)) if isinstance(v, str)
               else f"{v:.4f}" if isinstance(v, float) else str(v))
              for v in (r.get(c) for c in cols)] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(cols)]
    out = ["  ".join(c.ljust(w) for c, w in zip(cols, widths))]
    out += ["  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in cells]
    return "\n".join(out) + "\n"


def _csv(rows: list[dict[str, Any]], cols: list[str]) -> str:
    buf = io.StringIO()
    # Every field quoted and text cells neutralised (OWASP "CSV Injection"); numbers and booleans as before.
    w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore", lineterminator="\n", quoting=csv.QUOTE_ALL)
    w.writeheader()
    w.writerows({k: csv_cell(v) if isinstance(v, str) else v for k, v in r.items()} for r in rows)
    return buf.getvalue()


def _jsonl(rows: list[dict[str, Any]]) -> str:
    return "".join(json_dumps(r, allow_nan=True) + "\n" for r in rows)


SCREEN_COLS = ["index", "confidence", "flagged", "text"]
_SCREEN: dict[str, Callable[[list[dict[str, Any]], dict[str, Any]], str]] = {
    "table": lambda rows, s: _table(rows, SCREEN_COLS),
    "csv": lambda rows, s: _csv(rows, SCREEN_COLS),
    "jsonl": lambda rows, s: _jsonl(rows),
    "json": lambda rows, s: json_dumps({"summary": s, "samples": rows}, indent=2, allow_nan=True) + "\n",
}


def render_screen(result, texts: list[str], fmt: str, extra_summary: dict[str, Any] | None = None) -> str:
    """The stdout text of ``hubaudit psim screen`` in ``fmt`` (one of :data:`SCREEN_FORMATS`)."""
    return _SCREEN[fmt](_samples(result, texts), result.summary() | (extra_summary or {}))


PROBE_COLS = ["probe", "name", "category", "flag_rate", "mean_confidence", "extreme"]
_PROBE: dict[str, Callable[[list[dict[str, Any]], dict[str, Any]], str]] = {
    "table": lambda rows, s: _table(rows, PROBE_COLS),
    "csv": lambda rows, s: _csv(rows, PROBE_COLS),
    "jsonl": lambda rows, s: _jsonl(rows),
    "json": lambda rows, s: json_dumps({"summary": s, "probes": rows}, indent=2, allow_nan=True) + "\n",
}


def render_probe(result, fmt: str) -> str:
    """The stdout text of ``hubaudit psim probe`` in ``fmt`` (one of :data:`PROBE_FORMATS`)."""
    return _PROBE[fmt]([p.to_dict() for p in result.probes], result.summary())


def calibration_phrase(summary: dict[str, Any]) -> str:
    """``tau from <the calibration in force>`` (store id and version, model folder, or explicit)."""
    cal = summary.get("calibration")
    return f"tau from {CalibrationRef.from_dict(cal).describe()}" if cal else "tau from the caller"


def summary_line(summary: dict[str, Any]) -> str:
    """The one-line human summary for stderr, naming the calibration τ comes from."""
    return (f"{summary['flagged']} of {summary['n']} flagged ({summary['flagged_rate']:.1%}) at "
            f"tau={summary['tau']:.4f} (calibrated clean FRR {summary['target_frr']:.1%}; "
            f"~{summary['expected_clean_flags']:.1f} flags expected on clean data); {calibration_phrase(summary)}")
