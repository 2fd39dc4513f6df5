"""The repository stands alone: no tracked text cites a document it does not contain.

Code, docs and committed results may cite papers (arXiv id, title, venue) and public third-party
pages by URL, but not design notes, research digests or planning labels that live outside the
repository ("DESIGN §4", "paper_psim.md §3", "notes/STORE_API.md", "issue 10", "seed 001"):
whoever reads the repository does not have them. A Markdown file name is allowed when the
repository holds a file of that name, or when it is part of a URL.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SELF = "tests/test_references.py"  # states the patterns it looks for
DIRS = ("hubaudit/", "tests/", "benchmarks/", "evals/", "scripts/", "docs/", "cron/", ".ci/")
FILES = ("README.md", "pyproject.toml")
EXTS = (".py", ".md", ".toml", ".sh", ".cfg", ".txt", ".yml", ".yaml", ".json")
ANY_EXT_DIRS = (".ci/", "cron/")  # scripts and unit files without a telling extension

#: (what it is, a substring every match holds, pattern). Each pattern is anchored to the form a
#: reference takes, so ordinary words ("issues a request", "files_with_issues", "seed 0", "shared
#: prefix") do not match; the substring skips files quickly (matched in lower case).
RULES: tuple[tuple[str, str, re.Pattern[str]], ...] = (
    ("planning label: numbered issue", "issue", re.compile(r"\bissues?[ -]?#?\d+\b", re.IGNORECASE)),
    ("planning label: numbered seed", "seed", re.compile(r"\bseed[ -]0\d{2}\b", re.IGNORECASE)),
    ("design note", "design", re.compile(r"\bDESIGN\b")),
    ("notes folder", "notes/", re.compile(r"(?<![\w.-])notes/")),
    ("research folder", "research/", re.compile(r"(?<![\w.-])research/")),
    # ../shared/real-adapters is optional test data beside the clone (README, "Skips"), not a document
    ("folder beside the repository", "../shared", re.compile(r"\.\./shared\b(?!/real-adapters\b)")),
)
MD_NAME = re.compile(r"(?<![\w./-])(?:[\w.-]+/)*([\w.-]+\.md)\b")
URL = re.compile(r"\b(?:https?|file)://\S+")


def _tracked() -> list[str]:
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout: the tracked files are unknown")
    return [p for p in out.decode().split("\0") if p]


def _scanned(tracked: list[str]) -> list[str]:
    return [p for p in tracked if p != SELF and (
        p in FILES
        or (p.startswith(DIRS) and p.endswith(EXTS))
        or p.startswith(ANY_EXT_DIRS))]


def _hits(path: str, text: str, md_names: set[str]) -> list[str]:
    lower = text.lower()
    found = [(m.start(), what, m.group(0))
             for what, needle, rx in RULES if needle in lower for m in rx.finditer(text)]
    if ".md" in lower:
        no_urls = URL.sub(lambda m: " " * len(m.group(0)), text) if "://" in text else text  # same offsets
        found += [(m.start(), "Markdown file not in the repository", m.group(0))
                  for m in MD_NAME.finditer(no_urls) if m.group(1) not in md_names]
    return [f"{path}:{text.count(chr(10), 0, at) + 1}: {what}: {s!r}" for at, what, s in sorted(found)]


def test_rules_match_references_and_spare_ordinary_words():
    md = {"README.md"}
    bad = ["see DESIGN §4", "(issue 10)", "issue-2 round", "Issue 3 acceptance", "seed 001",
           "paper_psim.md §3", "notes/STORE_API.md", "research/papers_lora_backdoor.md", "../shared/DESIGN.md"]
    good = ["the Hub issues a request", "files_with_issues", "seed 0", "a shared prefix", "README.md",
            "https://github.com/o/r/blob/main/docs/x.md", "../shared/real-adapters", "release-notes/x",
            "arXiv 2605.30189", "SARIF 2.1.0 §3.11.6", "GitHub issue comments",
            "a known bug (https://github.com/huggingface/huggingface_hub/issues/1234)"]
    assert all(_hits("f", s, md) for s in bad), [s for s in bad if not _hits("f", s, md)]
    assert not any(_hits("f", s, md) for s in good), [h for s in good for h in _hits("f", s, md)]


def test_no_reference_to_documents_outside_the_repository():
    tracked = _tracked()
    md_names = {Path(p).name for p in tracked if p.endswith(".md")}
    hits = []
    for path in _scanned(tracked):
        data = (ROOT / path).read_bytes()
        if b"\0" in data:
            continue
        hits += _hits(path, data.decode("utf-8", errors="replace"), md_names)
    assert not hits, "cite the reason or the paper instead:\n" + "\n".join(hits)
