"""Python regex → RE2 regex with the same meaning on ASCII text (see ``pattern_keys``).

Python's own parser reads the pattern, so its syntax and flags mean what they mean to
Python's ``re``; the parse tree is written back out in RE2 syntax. Each character class
becomes the explicit set of ASCII characters Python's ``re`` puts in it under the flags in
force (IGNORECASE, ASCII, DOTALL), so RE2's ASCII-only ``\\d``/``\\w``/``\\s`` and its case
folding never come into play; outside ASCII a class holds only the code points it names (a
negated class and ``.`` everything else). Text is assumed to hold no newline, so Python's
``$`` is RE2's ``\\z``.
"""

from __future__ import annotations

import re
import warnings
from functools import lru_cache
from typing import Any

try:  # Python >= 3.11
    from re import _constants as C
    from re import _parser as sre_parse
except ImportError:  # Python 3.10
    import sre_constants as C  # type: ignore[no-redef]
    import sre_parse  # type: ignore[no-redef]

RE2_MAX_REPEAT = 1000  # RE2's limit on a counted repeat {n,m}

_IGNORECASE, _ASCII, _DOTALL, _MULTILINE = (
    C.SRE_FLAG_IGNORECASE, C.SRE_FLAG_ASCII, C.SRE_FLAG_DOTALL, C.SRE_FLAG_MULTILINE,
)  # fmt: skip
_ASCII_CHARS = "".join(map(chr, range(128)))
# Code points RE2 can see in UTF-8 text (no surrogates: callers replace them).
_NON_ASCII = ((0x80, 0xD7FF), (0xE000, 0x10FFFF))
_CATEGORY = {
    C.CATEGORY_DIGIT: r"\d", C.CATEGORY_NOT_DIGIT: r"\D", C.CATEGORY_SPACE: r"\s",
    C.CATEGORY_NOT_SPACE: r"\S", C.CATEGORY_WORD: r"\w", C.CATEGORY_NOT_WORD: r"\W",
}  # fmt: skip
_NO_AUTOMATON = {
    C.GROUPREF: "a backreference", C.GROUPREF_EXISTS: "a conditional group", C.ASSERT: "a lookaround",
    C.ASSERT_NOT: "a lookaround",
}  # fmt: skip
for _name, _what in (("ATOMIC_GROUP", "an atomic group"), ("POSSESSIVE_REPEAT", "a possessive repeat")):
    if hasattr(C, _name):  # Python >= 3.11
        _NO_AUTOMATON[getattr(C, _name)] = _what


class PatternError(ValueError):
    """A pattern or pattern dict that cannot be matched within the bounds (one-line reason)."""


# --- character classes ------------------------------------------------------------------


def _merge(parts: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for a, b in sorted(parts):
        if out and a <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def _clip_non_ascii(lo: int, hi: int) -> list[tuple[int, int]]:
    return [(max(lo, a), min(hi, b)) for a, b in _NON_ASCII if max(lo, a) <= min(hi, b)]


def _complement(parts: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Non-ASCII code points outside ``parts`` (merged, non-ASCII ranges)."""
    out: list[tuple[int, int]] = []
    for lo, hi in _NON_ASCII:
        cursor = lo
        for a, b in parts:
            a, b = max(a, lo), min(b, hi)
            if a > b:
                continue
            if a > cursor:
                out.append((cursor, a - 1))
            cursor = max(cursor, b + 1)
        if cursor <= hi:
            out.append((cursor, hi))
    return out


def _py_source(op: Any, av: Any) -> str:
    """Python ``re`` source for one single-character node, to ask ``re`` what it matches."""
    if op is C.LITERAL:
        return f"\\U{av:08x}"
    if op is C.NOT_LITERAL:
        return f"[^\\U{av:08x}]"
    parts = []
    for item_op, item_av in av:
        if item_op is C.NEGATE:
            parts.insert(0, "^")
        elif item_op is C.LITERAL:
            parts.append(f"\\U{item_av:08x}")
        elif item_op is C.RANGE:
            parts.append(f"\\U{item_av[0]:08x}-\\U{item_av[1]:08x}")
        elif item_op is C.CATEGORY and item_av in _CATEGORY:
            parts.append(_CATEGORY[item_av])
        else:
            raise PatternError(f"uses the unsupported class item {item_op}")
    return "[" + "".join(parts) + "]"


def _non_ascii_part(op: Any, av: Any) -> list[tuple[int, int]]:
    if op is C.LITERAL:
        return _clip_non_ascii(av, av)
    if op is C.NOT_LITERAL:
        return _complement(_clip_non_ascii(av, av))
    named: list[tuple[int, int]] = []
    for item_op, item_av in av:
        if item_op is C.LITERAL:
            named += _clip_non_ascii(item_av, item_av)
        elif item_op is C.RANGE:
            named += _clip_non_ascii(*item_av)
    named = _merge(named)
    return _complement(named) if any(item_op is C.NEGATE for item_op, _ in av) else named


@lru_cache(maxsize=8192)
def _char_class(op: Any, av: Any, flags: int) -> str:
    """RE2 class for one single-character node under ``flags`` (see the module docstring)."""
    if op is C.ANY:  # RE2's "." is Python's: any character but a newline (all of them with DOTALL)
        return "(?s:.)" if flags & _DOTALL else "."
    prefix = "".join(f for f, bit in (("i", _IGNORECASE), ("a", _ASCII)) if flags & bit)
    source = (f"(?{prefix})" if prefix else "") + _py_source(op, av)
    members = [ord(c) for c in re.findall(source, _ASCII_CHARS)]  # Python's own answer on ASCII
    parts = _merge([(c, c) for c in members] + _non_ascii_part(op, av))
    if not parts:
        return r"[^\x{0}-\x{10ffff}]"  # matches nothing, as the Python class does
    if len(parts) == 1 and parts[0][0] == parts[0][1]:
        return f"\\x{{{parts[0][0]:x}}}"
    return "[" + "".join(f"\\x{{{a:x}}}" if a == b else f"\\x{{{a:x}}}-\\x{{{b:x}}}" for a, b in parts) + "]"


def _hashable(av: Any) -> Any:
    return tuple((op, tuple(a) if isinstance(a, list) else a) for op, a in av) if isinstance(av, list) else av


# --- Python parse tree → RE2 --------------------------------------------------------------


def _repeat(lo: int, hi: int) -> str:
    if hi == C.MAXREPEAT:
        return {0: "*", 1: "+"}.get(lo, f"{{{lo},}}")
    return "?" if (lo, hi) == (0, 1) else f"{{{lo}}}" if lo == hi else f"{{{lo},{hi}}}"


def _emit(items: Any, flags: int) -> tuple[str, int]:
    """RE2 source for a parsed Python pattern (a sequence of (op, av) nodes) and its size.

    The size estimates RE2's program: 1 per single character, 8 per wider class (UTF-8
    byte-range fan-out), repeats copied out as RE2 copies them.
    """
    out, size = [], 0
    for op, av in items:
        if op in (C.LITERAL, C.NOT_LITERAL, C.ANY, C.IN):
            cls = _char_class(op, _hashable(av), flags & (_IGNORECASE | _ASCII | _DOTALL))
            out.append(cls)
            size += 1 if cls.startswith("\\x") else 8
        elif op is C.BRANCH:
            alts = [_emit(alt, flags) for alt in av[1]]
            out.append("(?:" + "|".join(a for a, _ in alts) + ")")
            size += 1 + sum(n for _, n in alts)
        elif op is C.SUBPATTERN:
            _group, add, remove, sub = av
            inner, n = _emit(sub, (flags | add) & ~remove)
            out.append("(?:" + inner + ")")
            size += n
        elif op in (C.MAX_REPEAT, C.MIN_REPEAT):  # lazy or greedy: the same names match
            lo, hi, sub = av
            if max(lo, 0 if hi == C.MAXREPEAT else hi) > RE2_MAX_REPEAT:
                raise PatternError(f"has a repeat count over {RE2_MAX_REPEAT} (RE2's limit)")
            inner, n = _emit(sub, flags)
            out.append("(?:" + inner + ")" + _repeat(lo, hi))
            size += 1 + n * max(1, lo if hi == C.MAXREPEAT else hi)
        elif op is C.AT:
            multiline = bool(flags & _MULTILINE)
            out.append({
                C.AT_BEGINNING: "(?m:^)" if multiline else r"\A", C.AT_BEGINNING_STRING: r"\A",
                C.AT_END: "(?m:$)" if multiline else r"\z", C.AT_END_STRING: r"\z",
                C.AT_BOUNDARY: r"\b", C.AT_NON_BOUNDARY: r"\B",
            }[av])  # fmt: skip
            size += 1
        elif op in _NO_AUTOMATON:
            raise PatternError(f"uses {_NO_AUTOMATON[op]}, which no linear-time matcher supports")
        else:
            raise PatternError(f"uses the unsupported regex construct {op}")
    return "".join(out), size


def translate(key: str) -> tuple[str, int] | None:
    """RE2 source for peft's ``(.*\\.)?({key})$`` and its size; None when Python's re rejects it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "possible nested set" and other FutureWarnings
        try:
            parsed = sre_parse.parse(rf"(.*\.)?({key})$", 0)
        except (re.error, RecursionError, OverflowError, ValueError):
            return None
    try:
        return _emit(parsed.data, parsed.state.flags)
    except RecursionError:
        raise PatternError("is nested too deeply") from None
