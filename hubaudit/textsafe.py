"""Untrusted text made safe for the place it is written to: one function per sink.

Repo ids, shas, tensor names, declared base models, card fields, file paths and server messages
are chosen by whoever published an adapter (or named a file). Each output sink has one escaping
function here and every writer to that sink goes through it, so a new format cannot forget a case:

==============  =================  ==========================================================
sink            function           what reaches the sink
==============  =================  ==========================================================
terminal        ``terminal``       C0/C1 controls, DEL, bidi overrides, invisible format
                                   characters and lone surrogates as visible ``\\x1b``,
                                   ``\\u202e``, ``\\udcff`` escapes; nothing else changes
rich (CLI)      ``hubaudit.cli._options.DataConsole``: ``terminal`` and never markup or emoji
CSV             ``csv_cell``       ``terminal``, then OWASP "CSV Injection": a cell that starts
                                   with ``= + - @``, TAB or CR gets a leading ``'``
Markdown        ``markdown``       ``terminal``, CommonMark backslash escapes, ``< > &`` as
                                   entities, no autolinks
HTML            ``html``           ``terminal``, then ``html.escape`` (quotes included)
SARIF messages  ``sarif_message``  ``terminal`` and the SARIF 2.1.0 §3.11.6 embedded-link escapes
JSON            ``json_dumps``     ``json.dumps`` plus ``\\u`` escapes for the non-ASCII
                                   characters ``terminal`` would escape (still the same string)
plots           ``terminal`` for labels; hubaudit/report/formats/_plots.py turns mathtext off
==============  =================  ==========================================================

Pure functions of their input (stdlib only), importable from every stage.
"""

from __future__ import annotations

import html as _html
import json
import re
from typing import Any


def _escape_char(ch: str) -> str:
    cp = ord(ch)
    if cp < 0x100:
        return f"\\x{cp:02x}"
    if cp < 0x10000:
        return f"\\u{cp:04x}"
    return f"\\U{cp:08x}"


def terminal(text: object) -> str:
    """``text`` with every non-printable character shown as a Python-style escape.

    Non-printable is ``str.isprintable``: control characters (C0, DEL, C1, so no ECMA-48 escape or
    control sequence reaches the terminal), format characters (bidi overrides and isolates such as
    U+202E, zero-width characters), line/paragraph separators, lone surrogates (undecodable path
    bytes), private-use and unassigned code points, and spaces other than U+0020. Newlines and tabs
    are escaped too: a value never spans lines or columns.
    """
    s = text if isinstance(text, str) else str(text)
    if s.isprintable():
        return s
    return "".join(ch if ch.isprintable() else _escape_char(ch) for ch in s)


# OWASP "CSV Injection": cells starting with these are formulas to Excel, LibreOffice and Sheets.
# The fullwidth forms are read as formulas by spreadsheets in East Asian locales.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r", "\uff1d", "\uff0b", "\uff0d", "\uff20")


def csv_cell(value: Any) -> str:
    """One CSV cell: '' for None, ``true``/``false`` for booleans, ``repr`` for floats, ``str`` for ints.

    Text is escaped with :func:`terminal` (a CSV has no escape for control characters and is often
    read with ``cat``), then a cell that would start with a formula character gets a leading ``'``
    (OWASP "CSV Injection"), so ``=HYPERLINK(...)`` is shown as text, never evaluated. Numbers this
    code computed (ints and floats, e.g. a margin of ``-0.5``) stay numeric: their ``repr`` is digits,
    sign, point and exponent only, so it cannot carry a formula.
    """
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, int):
        return str(value)
    s = terminal(value)
    return "'" + s if s.startswith(FORMULA_PREFIXES) else s


# CommonMark allows a backslash before any ASCII punctuation; these are the ones that start
# emphasis, code, links, images, tables (GFM), strikethrough, headings, math (GitHub) or autolinks.
_MD_BACKSLASH = {c: "\\" + c for c in "\\`*_[]|~#:@$!"}
# As entities, so the output holds no raw '<' for an HTML-aware renderer to see as a tag.
_MD_ENTITIES = {"<": "&lt;", ">": "&gt;", "&": "&amp;"}
_MD_TABLE = str.maketrans(_MD_BACKSLASH | _MD_ENTITIES)
_WWW = re.compile(r"(www)\.", re.IGNORECASE)


def markdown(text: object) -> str:
    """Text for a Markdown (CommonMark + GFM) paragraph or table cell that renders as exactly ``text``.

    No inline syntax (emphasis, code, links, raw HTML, GitHub math) and no autolink can start inside
    it; ``|`` cannot end a table cell; newlines are escaped by :func:`terminal`, so it stays on one line.
    """
    s = terminal(text).translate(_MD_TABLE)
    return _WWW.sub(r"\1\\.", s)  # GFM's extended autolinks start at "www."


def html(text: object) -> str:
    """Text for HTML element content or a quoted attribute value: :func:`terminal`, then ``html.escape``.

    Control and bidi characters are shown as escapes too, so a U+202E in a repo id cannot reorder
    what a reader of the report sees."""
    return _html.escape(terminal(text), quote=True)


_SARIF_LINK = str.maketrans({"\\": "\\\\", "[": "\\[", "]": "\\]"})


def sarif_message(text: object) -> str:
    """A SARIF ``message.text``: :func:`terminal`, then backslash-escaped ``\\ [ ]`` so no embedded link
    (SARIF 2.1.0 §3.11.6, ``[text](target)``) can be formed by data."""
    return terminal(text).translate(_SARIF_LINK)


_NON_ASCII = re.compile(r"[^\x00-\x7e]")


def _json_escape(m: re.Match[str]) -> str:
    ch = m.group(0)
    if ch.isprintable():
        return ch
    cp = ord(ch)
    if cp < 0x10000:
        return f"\\u{cp:04x}"
    cp -= 0x10000
    return f"\\u{0xD800 + (cp >> 10):04x}\\u{0xDC00 + (cp & 0x3FF):04x}"


def json_dumps(obj: Any, **kwargs: Any) -> str:
    """``json.dumps`` (``ensure_ascii=False``, ``allow_nan=False`` unless given) that round-trips every
    string exactly, with DEL, C1 controls, bidi and other non-printable characters written as ``\\u``
    escapes (``json.dumps`` only escapes C0): a JSON document on a terminal cannot drive it.

    Outside strings JSON is ASCII, so every character replaced here is inside a string.
    """
    kwargs.setdefault("ensure_ascii", False)
    kwargs.setdefault("allow_nan", False)
    return _NON_ASCII.sub(_json_escape, json.dumps(obj, **kwargs))
