"""peft's ``rank_pattern``/``alpha_pattern`` key lookup, bounded and without backtracking.

peft (``peft.utils.other.get_pattern_key``) picks, for a module name, the first key in dict
order for which ``re.match(rf"(.*\\.)?({key})$", name)`` succeeds. The keys come from an
untrusted adapter_config.json, and Python's ``re`` backtracks: ``.{0,99}`` ten times then ``Z``
takes seconds on a 31-character module name and grows exponentially with its length.

Plain keys (letters, digits, ``_``, ``-``, ``\\.`` and ``.``: module paths, the bulk of large
configs) are matched exactly by position, with dict look-ups. Every other key is translated by
:mod:`hubaudit._re2_syntax` (Python's own parse, written back out in RE2 syntax with the
same meaning on ASCII names: every module of a transformers model) and one ``re2.Set``
(google-re2: automata, no backtracking) tries them all in one pass over the name. Outside
ASCII, Unicode classes and case folding are not carried over (:data:`NON_ASCII_NOTE`).
Constructs no automaton has (backreferences, lookarounds, conditionals, atomic groups,
possessive repeats), repeat counts over RE2's 1000 and configs beyond the caps below are
refused with :class:`PatternError`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from operator import itemgetter
from typing import Any

import re2

from hubaudit._re2_syntax import PatternError, translate

__all__ = ["EMPTY", "KeyMatcher", "PatternError", "compile_keys"]

# Real configs hold a handful of keys, or one per module (EVA-initialised adapters: a few
# hundred); keys are module paths or short regexes. Beyond these caps the config is refused.
MAX_PATTERN_KEYS = 4096
MAX_PATTERN_KEY_CHARS = 512
# Python's parser costs ~1 µs per character: this caps the parse at ~0.1 s per pattern dict.
MAX_REGEX_CHARS = 128 * 1024
# Estimated RE2 program size of the non-plain keys together (see _re2_syntax): caps compile time.
MAX_REGEX_SIZE = 200_000
# RE2 memory for the compiled Set (program and automaton cache).
MATCHER_MEMORY = 64 << 20
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

# "\." is a literal dot and "." any character but a newline, in Python's re and RE2 alike.
_PLAIN = re.compile(r"(?:[A-Za-z0-9_-]|\\\.|\.)+")
_SURROGATE = re.compile("[\ud800-\udfff]")


def _options() -> Any:
    o = re2.Options()
    o.max_mem = MATCHER_MEMORY
    o.log_errors = False  # failures are reported as values, not on stderr
    return o


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
            translated = translate(key)
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
