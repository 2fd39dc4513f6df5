"""peft's ``rank_pattern``/``alpha_pattern`` key lookup, bounded and without backtracking.

peft (``peft.utils.other.get_pattern_key``) picks, for a module name, the first key in dict
order for which ``re.match(rf"(.*\\.)?({key})$", name)`` succeeds. The keys come from an
untrusted adapter_config.json, and Python's ``re`` backtracks: ``.{0,99}`` ten times then ``Z``
takes seconds on a 31-character module name and grows exponentially with its length.

Plain keys (letters, digits, ``_``, ``-``, ``\\.`` and ``.``: module paths, the bulk of large
configs) are matched exactly by position, with dict look-ups. Every other key is read by
Python's own parser, so its syntax and flags mean exactly what they mean to peft, and the
parse tree is written back out in RE2 syntax (google-re2: automata, no backtracking); one
``re2.Set`` tries them all in one pass over the name.

Exact for ASCII module names (every module of a transformers model): each character class is
written as the explicit set of ASCII characters Python's ``re`` puts in it under the flags in
force (IGNORECASE, ASCII, DOTALL), so RE2's own, ASCII-only ``\\d``/``\\w``/``\\s`` and its
case folding never come into play. Outside ASCII a class holds only the code points it names
(a negated class and ``.`` everything else): Unicode categories and case folding are not
carried over (:data:`NON_ASCII_NOTE`). Module names hold no newline (see ``layout``), so
Python's ``$`` is RE2's ``\\z``. Constructs no automaton has (backreferences, lookarounds,
conditionals, atomic groups, possessive repeats) and repeat counts over RE2's 1000 are refused
with :class:`PatternError`, as are configs beyond the caps below.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Sequence
from functools import lru_cache
from operator import itemgetter
from typing import Any

import re2

try:  # Python >= 3.11
    from re import _constants as C
    from re import _parser as sre_parse
except ImportError:  # Python 3.10
    import sre_constants as C  # type: ignore[no-redef]
    import sre_parse  # type: ignore[no-redef]

# Real configs hold a handful of keys, or one per module (EVA-initialised adapters: a few
# hundred); keys are module paths or short regexes. Beyond these caps the config is refused.
MAX_PATTERN_KEYS = 4096
MAX_PATTERN_KEY_CHARS = 512
# Python's parser costs ~1 µs per character: this caps the parse at ~0.1 s per pattern dict.
MAX_REGEX_CHARS = 128 * 1024
# Estimated RE2 program size of the non-plain keys together (see _emit): caps compile time.
MAX_REGEX_SIZE = 200_000
# RE2 memory for the compiled Set (program and automaton cache).
MATCHER_MEMORY = 64 << 20
RE2_MAX_REPEAT = 1000  # RE2's limit on a counted repeat {n,m}
# Work units (~2-4 ns each at worst) that matching one pattern dict against an adapter's module
# names may take. RE2's automaton for a set of keys can cost time proportional to the set's
# size for each character of a name when hostile names keep reaching new states, so the bound
# is size × characters: ~2-4 s at worst, for a hostile config and hostile names together.
# Real regex keys have sizes of 25-70: 20 of them against 10,000 module names cost ~5e8.
MAX_MATCH_WORK = 1_000_000_000
_PROBE_WORK = 100  # one dict probe from Python, in work units

NON_ASCII_NOTE = (
    "module name(s) outside ASCII: rank_pattern/alpha_pattern matched without Unicode classes "
    "or case folding (peft's re uses them)"
)

_IGNORECASE, _ASCII, _DOTALL, _MULTILINE = (
    C.SRE_FLAG_IGNORECASE, C.SRE_FLAG_ASCII, C.SRE_FLAG_DOTALL, C.SRE_FLAG_MULTILINE,
)  # fmt: skip
# "\." is a literal dot and "." any character but a newline, in Python's re and RE2 alike.
_PLAIN = re.compile(r"(?:[A-Za-z0-9_-]|\\\.|\.)+")
_ASCII_CHARS = "".join(map(chr, range(128)))
# Code points RE2 can see in UTF-8 text (no surrogates; module names have theirs replaced).
_NON_ASCII = ((0x80, 0xD7FF), (0xE000, 0x10FFFF))
_SURROGATE = re.compile("[\ud800-\udfff]")
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
    """A pattern dict that cannot be matched within the bounds (one-line reason)."""


def _options() -> Any:
    o = re2.Options()
    o.max_mem = MATCHER_MEMORY
    o.log_errors = False  # failures are reported as values, not on stderr
    return o


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


def _translate(key: str) -> tuple[str, int] | None:
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


# --- plain keys -----------------------------------------------------------------------------


def _plain(key: str) -> tuple[str, tuple[int, ...]]:
    """A plain key as (characters, wildcard positions): "\\." is a literal dot, "." any character."""
    chars: list[str] = []
    wild: list[int] = []
    i = 0
    while i < len(key):
        if key[i] == "\\":
            chars.append(".")
            i += 2
            continue
        if key[i] == ".":
            wild.append(len(chars))
        chars.append(key[i])
        i += 1
    return "".join(chars), tuple(wild)


class _PlainGroup:
    """Plain keys of one length and one wildcard layout: their literal characters → first index."""

    def __init__(self, length: int, wild: tuple[int, ...]) -> None:
        self.length = length
        wildcards = set(wild)
        fixed = [i for i in range(length) if i not in wildcards]
        self.project: Callable[[str], str]
        if not fixed:
            self.project = lambda s: ""
        elif len(fixed) == 1:
            self.project = itemgetter(fixed[0])
        else:
            getter = itemgetter(*fixed)
            self.project = lambda s: "".join(getter(s))
        self.first: dict[str, int] = {}


# --- the matcher ----------------------------------------------------------------------------


class KeyMatcher:
    """All keys of one pattern dict, compiled once: ``first(name)`` is peft's ``get_pattern_key``.

    A plain key K matches iff it matches the name's last len(K) characters position by
    position, and those start the name or follow a "." (``(.*\\.)?`` then ``$``). The other
    keys form one RE2 Set. Matching is metered in work units (:data:`MAX_MATCH_WORK`).
    """

    __slots__ = ("keys", "ignored", "regex_size", "_set", "_set_index", "_plain", "_work")

    def __init__(self, keys: Sequence[str] = (), ignored: Sequence[str] = (), regex_size: int = 0,
                 regex_set: Any = None, set_index: dict[int, int] | None = None,
                 plain: dict[int, list[_PlainGroup]] | None = None) -> None:  # fmt: skip
        self.keys = tuple(keys)  # the keys that take part, in dict order
        self.ignored = tuple(ignored)  # keys Python's re rejects (peft raises re.error on reaching them)
        self.regex_size = regex_size
        self._set = regex_set  # re2.Set; its index 0 is a sentinel that matches every name
        self._set_index = set_index or {}  # Set index → index in keys
        self._plain = plain or {}  # key length → groups
        self._work = 0

    def _lengths(self, name: str) -> list[int]:
        """Plain-key lengths whose tail of ``name`` starts the name or follows a "."."""
        n, out = len(name), []
        if n in self._plain:
            out.append(n)
        dot = name.find(".")
        while dot != -1:
            if n - dot - 1 in self._plain:
                out.append(n - dot - 1)
            dot = name.find(".", dot + 1)
        return out

    def work(self, names: Sequence[str]) -> int:
        """Work units (~3 ns each) that matching ``names`` costs at most."""
        total = 0
        for name in names:
            if self._set is not None:
                total += self.regex_size * len(name)
            total += sum((_PROBE_WORK + k) * len(self._plain[k]) for k in self._lengths(name))
        return total

    def check_work(self, names: Sequence[str], what: str) -> None:
        """Refuse, before any matching, module names that would cost more than the cap."""
        if self.work(names) > MAX_MATCH_WORK:
            raise PatternError(self._over(len(names), what))

    def _over(self, n_names: int, what: str) -> str:
        return (f"{what}: matching its {len(self.keys)} keys against {n_names} module name(s) takes over "
                f"{MAX_MATCH_WORK:.0e} steps (cap)")  # fmt: skip

    def first(self, name: str, what: str = "pattern") -> str | None:
        """The first key (dict order) matching ``name`` under peft's semantics, else None."""
        if not self.keys:
            return None
        self._work += self.work([name])
        if self._work > MAX_MATCH_WORK:
            raise PatternError(self._over(1, what))
        best = len(self.keys)
        for k in self._lengths(name):
            tail = name[len(name) - k :]
            for group in self._plain[k]:
                index = group.first.get(group.project(tail))
                if index is not None and index < best:
                    best = index
        if self._set is not None:
            if not name.isascii():
                name = _SURROGATE.sub("\ufffd", name)  # UTF-8 cannot hold them; "." still matches one
            hits = self._set.Match(name.encode("utf-8"))
            # A Set whose automaton ran out of memory answers "no match" for every pattern: the
            # sentinel tells that apart from a real miss.
            if not hits or 0 not in hits:
                raise PatternError(f"{what}: the matcher ran out of memory")
            best = min([best] + [self._set_index[i] for i in hits if i])
        return self.keys[best] if best < len(self.keys) else None


EMPTY = KeyMatcher()


def compile_keys(keys: Sequence[str], what: str) -> KeyMatcher:
    """Check the caps and compile the keys of pattern dict ``what``; :class:`PatternError` if refused."""
    if not keys:
        return EMPTY
    if len(keys) > MAX_PATTERN_KEYS:
        raise PatternError(f"{what} has {len(keys)} keys (cap {MAX_PATTERN_KEYS})")
    longest = max(map(len, keys))
    if longest > MAX_PATTERN_KEY_CHARS:
        raise PatternError(f"{what} has a key of {longest} characters (cap {MAX_PATTERN_KEY_CHARS})")
    regex_chars = sum(len(k) for k in keys if not _PLAIN.fullmatch(k))
    if regex_chars > MAX_REGEX_CHARS:
        raise PatternError(f"{what} keys hold {regex_chars} regex characters (cap {MAX_REGEX_CHARS})")
    used: list[str] = []
    ignored: list[str] = []
    sources: list[tuple[str, str, int]] = []  # (key, RE2 source, index in used)
    groups: dict[tuple[int, tuple[int, ...]], _PlainGroup] = {}
    size = 0
    for key in keys:
        if _PLAIN.fullmatch(key):
            chars, wild = _plain(key)
            group = groups.get((len(chars), wild))
            if group is None:
                group = groups[(len(chars), wild)] = _PlainGroup(len(chars), wild)
            group.first.setdefault(group.project(chars), len(used))
            used.append(key)
            continue
        try:
            translated = _translate(key)
        except PatternError as exc:
            raise PatternError(f"{what} key {_show(key)} {exc}") from None
        if translated is None:
            ignored.append(key)
            continue
        size += translated[1]
        if size > MAX_REGEX_SIZE:
            raise PatternError(f"{what} keys expand to over {MAX_REGEX_SIZE} regex instructions (cap)")
        sources.append((key, translated[0], len(used)))
        used.append(key)
    by_length: dict[int, list[_PlainGroup]] = {}
    for group in groups.values():
        by_length.setdefault(group.length, []).append(group)
    regex_set, set_index = _compile_set(sources, what) if sources else (None, {})
    return KeyMatcher(used, ignored, size, regex_set, set_index, by_length)


def _compile_set(sources: list[tuple[str, str, int]], what: str) -> tuple[Any, dict[int, int]]:
    """One RE2 Set of the regex keys, and its index → key index map."""
    matcher = re2.Set.MatchSet(_options())
    matcher.Add("")  # the sentinel, index 0
    index = {}
    for key, source, key_index in sources:
        try:
            index[matcher.Add(source)] = key_index
        except (re2.error, UnicodeEncodeError):
            raise PatternError(f"{what} key {_show(key)} is refused by RE2: {_re2_reason(source)}") from None
    too_big = f"{what}: its regex keys need more than RE2's {MATCHER_MEMORY >> 20} MiB"
    try:
        matcher.Compile()
    except re2.error:
        raise PatternError(too_big) from None
    if 0 not in (matcher.Match(b"") or ()):  # the automaton is first built here
        raise PatternError(too_big)
    return matcher, index


def _show(key: str) -> str:
    shown = repr(key)
    return shown if len(shown) <= 60 else shown[:59] + "…"


def _re2_reason(source: str) -> str:
    try:
        re2.compile(source, _options())
    except re2.error as exc:
        msg = exc.args[0] if exc.args else exc
        return msg.decode("utf-8", "replace") if isinstance(msg, bytes) else str(msg)
    except UnicodeEncodeError:
        return "it holds a lone surrogate"
    return "too large"
