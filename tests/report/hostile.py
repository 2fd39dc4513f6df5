"""Hostile strings and the checks every output sink must pass with them (shared by the hostile tests).

The strategy mixes arbitrary Unicode (control characters included) with the pieces that broke or
could break a sink: rich markup, mathtext, formula prefixes, Markdown and HTML syntax, terminal
escape sequences, bidi overrides, autolink bait.
"""

from __future__ import annotations

import csv
import io
import re
import string

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from hubaudit.textsafe import FORMULA_PREFIXES

TOKENS = (
    "[/]", "[bold]", "[/bold]", "[link=https://evil.example]x[/link]", ":smile:", "$\\foo$", "$x^{2}$", "\\",
    "=", "+", "-", "@", "=HYPERLINK(\"https://evil.example\",\"x\")", ";=cmd|' /C calc'!A0", "\uff1d1+1",
    "|", "\\|", "\n", "\r", "\r\n", "\t", "`", "```", "*", "_", "~~", "#", "!", "&lt;", "&#60;",
    "<svg onload=alert(1)>", "<script>alert(1)</script>", "[x](javascript:alert(1))", "javascript:alert(1)",
    "www.evil.example", "x@evil.example", "https://evil.example/", "{0}",
    "\x1b]0;title\x07", "\x1b[2J", "\x1b[31m", "\x9b31m", "\x85", "\x00", "\x7f", "\u202e", "\u2066", "\u200b",
    "\u2028", "\ufeff", "é", "漢字", "🙂", "org/name", "0" * 40,
)  # fmt: skip

# Lone surrogates (undecodable path bytes) only where no database is involved: SQLite stores UTF-8.
hostile_text = st.lists(st.one_of(st.sampled_from(TOKENS), st.text(max_size=4)), min_size=1, max_size=6).map("".join)
hostile_text_surrogates = st.one_of(hostile_text, hostile_text.map(lambda s: s + "\udcff"))

HOSTILE_SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def controls(text: str, allowed: str = "\n") -> list[str]:
    """The non-printable characters of ``text`` (control, format, bidi, separators...) not in ``allowed``."""
    return [c for c in text if not c.isprintable() and c not in allowed]


def assert_terminal_safe(text: str, allowed: str = "\n") -> None:
    bad = controls(text, allowed)
    assert not bad, f"raw non-printable characters {sorted(set(bad))!r} in {text[:400]!r}"


def csv_rows(text: str) -> list[list[str]]:
    assert_terminal_safe(text)  # "\n" ends rows; a cell never holds one (escaped)
    rows = list(csv.reader(io.StringIO(text)))
    assert len(rows) == text.count("\n"), "a cell spans lines"
    return rows


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def assert_csv_safe(text: str, text_columns: tuple[str, ...] = ("repo_id", "sha", "base", "stratum", "reasons")) -> None:
    """No cell starts with a formula character, except numbers hubaudit wrote; named text columns never."""
    rows = csv_rows(text)
    header, body = rows[0], rows[1:]
    assert all(len(r) == len(header) for r in body)
    for r in body:
        for name, cell in zip(header, r):
            if cell.startswith(FORMULA_PREFIXES):
                assert name not in text_columns and _is_number(cell), (name, cell)


def _unescaped(line: str) -> str:
    """``line`` with every backslash escape (GFM pairs a backslash with any ASCII punctuation, a
    backslash included) replaced by NUL: what is left is Markdown syntax."""
    out, i = [], 0
    while i < len(line):
        if line[i] == "\\" and i + 1 < len(line) and line[i + 1] in string.punctuation:
            out.append("\0")
            i += 2
            continue
        out.append(line[i])
        i += 1
    return "".join(out)


def md_pipes(line: str) -> int:
    return _unescaped(line).count("|")


HUB_LINK = re.compile(r"https://huggingface\.co/[A-Za-z0-9_.\-]+(?:/[A-Za-z0-9_.\-]+)?(?:/tree/[0-9a-f]{7,64})?")


def assert_markdown_safe(text: str) -> None:
    """Table rows keep their column count; no raw '<', no javascript: link, links only to the Hub."""
    assert_terminal_safe(text)
    assert "<" not in text and "javascript:" not in text.lower()
    for block in text.split("\n\n"):
        rows = [ln for ln in block.splitlines() if ln.startswith("|")]
        assert len({md_pipes(ln) for ln in rows}) <= 1, block
    for line in text.splitlines():
        for m in re.finditer(r"\]\(([^)]*)\)", _unescaped(line)):  # a link destination follows an unescaped "]"
            assert HUB_LINK.fullmatch(m.group(1)), m.group(1)


def assert_html_safe(html: str) -> None:
    assert_terminal_safe(html)
    low = html.lower()
    assert "<script" not in low and "<svg" not in low  # data such as "javascript:" is only ever text
    hrefs = re.findall(r'href="([^"]*)"', html)
    assert all(h == "data:," or HUB_LINK.fullmatch(h) for h in hrefs), hrefs
    assert not re.search(r'src="(?!data:)', html)
