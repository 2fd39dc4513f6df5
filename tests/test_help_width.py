"""Every ``--help`` is readable in an 80-column terminal.

Two measurable properties, on the help of the root and of every command and sub-command:

- the description column keeps at least MIN_TEXT_COLUMNS columns on every line (no option or
  command description is squeezed into a column of one or two words), and no line is wider than
  the terminal;
- prose is wrapped, not broken: a line of a paragraph ends only where the next word would not fit
  (a docstring's own line breaks do not leave half-empty lines).
"""

from __future__ import annotations

import itertools
import re

import pytest
import typer

from tests._cli import run_cli

WIDTH = 80
MIN_TEXT_COLUMNS = 30
# Click wraps help text two columns short of the terminal width.
WRAP_WIDTH = WIDTH - 2
BOX = re.compile("[\u2500-\u257f]")  # box-drawing characters: panel borders are not text
SECTION = re.compile(r"^(Options|Arguments|Commands)\b")  # a section heading, or a rich panel's title


def _command_paths() -> list[tuple[str, ...]]:
    from hubaudit.cli.app import app
    from hubaudit.cli.main import _register

    _register()
    paths: list[tuple[str, ...]] = []

    def walk(cmd, prefix: tuple[str, ...]) -> None:
        paths.append(prefix)
        for name, sub in sorted(getattr(cmd, "commands", {}).items()):
            if not sub.hidden:
                walk(sub, (*prefix, name))

    walk(typer.main.get_command(app), ())
    return paths


def _help(path: tuple[str, ...]) -> list[str]:
    p = run_cli(*path, "--help", env={"COLUMNS": str(WIDTH), "LINES": "50", "TERMINAL_WIDTH": None})
    assert p.returncode == 0, p.stderr
    return [BOX.sub(" ", line).rstrip() for line in p.stdout.splitlines()]


def _text_start(line: str) -> int:
    """Where the description text of a line starts: after the name column of an option or command
    row ("  --base <str>   Compare within ..."), else at the line's indentation."""
    indent = len(line) - len(line.lstrip(" "))
    m = re.match(r" {1,4}\S.*?\S {2,}(?=\S)", line)  # a row: a name column, two or more spaces, the text
    return m.end() if m and indent <= 4 else indent


PATHS = _command_paths()


def test_every_command_is_covered():
    names = {" ".join(p) for p in PATHS}
    assert {"", "scan", "probe", "crawl", "report", "check", "psim train", "db upgrade"} <= names


@pytest.mark.parametrize("path", PATHS, ids=lambda p: " ".join(p) or "hubaudit")
def test_help_keeps_a_wide_description_column(path):
    lines = _help(path)
    assert lines, "empty help"
    too_wide = [line for line in lines if len(line) > WIDTH]
    assert not too_wide, too_wide
    squeezed = [line for line in lines if line.strip() and WIDTH - _text_start(line) < MIN_TEXT_COLUMNS]
    assert not squeezed, "\n".join(squeezed)


@pytest.mark.parametrize("path", PATHS, ids=lambda p: " ".join(p) or "hubaudit")
def test_help_prose_is_wrapped_not_broken(path):
    """In the description above the sections, a line is never broken before it is full."""
    lines = _help(path)
    start = next(i for i, line in enumerate(lines) if line.strip().startswith("Usage:")) + 1
    prose = []
    for line in lines[start:]:
        if SECTION.match(line.strip()):
            break
        prose.append(line)
    early = [(a, b) for a, b in itertools.pairwise(prose)
             if a.strip() and b.strip() and len(a) + 1 + len(b.split()[0]) <= WRAP_WIDTH]
    assert not early, "\n".join(f"{a!r} / {b!r}" for a, b in early)
