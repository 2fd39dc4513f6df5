"""Tolerant parsing of stored JSON: the converters every typed view's ``SPEC`` is built from.

A converter answers (the value has the right type, the typed value); a value of the wrong type is never
an exception, so any shape stored so far parses. :func:`_dump` writes a typed view back as it was stored.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from hubaudit.vocab import StratumStatus

_Conv = Callable[[Any], tuple[bool, Any]]


def _as_str(v: Any) -> tuple[bool, Any]:
    return isinstance(v, str), v


def _as_bool(v: Any) -> tuple[bool, Any]:
    return isinstance(v, bool), v


def _as_num(v: Any) -> tuple[bool, Any]:
    """int or float as stored (1 stays 1, so the JSON written back is the same); bools are no numbers."""
    return isinstance(v, (int, float)) and not isinstance(v, bool), v


def _as_int(v: Any) -> tuple[bool, Any]:
    return isinstance(v, int) and not isinstance(v, bool), v


def _as_map(v: Any) -> tuple[bool, Any]:
    return (True, dict(v)) if isinstance(v, Mapping) else (False, v)


def _as_strs(v: Any) -> tuple[bool, Any]:
    ok = isinstance(v, list) and all(isinstance(x, str) for x in v)
    return (True, tuple(v)) if ok else (False, v)


def _as_ints(v: Any) -> tuple[bool, Any]:
    ok = isinstance(v, list) and all(isinstance(x, int) and not isinstance(x, bool) for x in v)
    return (True, tuple(v)) if ok else (False, v)


def _as_maps(v: Any) -> tuple[bool, Any]:
    ok = isinstance(v, list) and all(isinstance(x, Mapping) for x in v)
    return (True, tuple(dict(x) for x in v)) if ok else (False, v)


def _as_list(v: Any) -> tuple[bool, Any]:
    return (True, tuple(v)) if isinstance(v, list) else (False, v)


def _as_battery(v: Any) -> tuple[bool, Any]:
    """``Battery.to_dict()`` (name, version, n, source); a bare name in rows stored before it."""
    return _as_map(v) if isinstance(v, Mapping) else (isinstance(v, str), v)


def _parse(d: Mapping[str, Any], spec: Mapping[str, _Conv]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(typed values of ``spec``'s keys present in ``d``, the values of those keys that have the wrong type)."""
    typed, wrong = {}, {}
    for key, conv in spec.items():
        if key in d and d[key] is not None:
            ok, value = conv(d[key])
            if ok:
                typed[key] = value
            else:
                wrong[key] = d[key]
    return typed, wrong



_STRATUM_STATUSES = frozenset(s.value for s in StratumStatus)


def _as_status(v: Any) -> tuple[bool, Any]:
    """A StratumStatus word (a word this version does not know is of the wrong type)."""
    return (True, StratumStatus(v)) if isinstance(v, str) and v in _STRATUM_STATUSES else (False, v)


def _as_nums(v: Any) -> tuple[bool, Any]:
    ok = isinstance(v, list) and all(_as_num(x)[0] for x in v)
    return (True, tuple(v)) if ok else (False, v)


def _as_str_map(v: Any) -> tuple[bool, Any]:
    ok = isinstance(v, Mapping) and all(isinstance(x, str) for x in v.values())
    return (True, dict(v)) if ok else (False, v)


def _dump(known: Mapping[str, Any], extra: Mapping[str, Any], stored_keys: tuple[str, ...],
          out_value: Callable[[Any], Any]) -> dict[str, Any]:  # fmt: skip
    """The stored keys in their stored order (a stored null stays null, a wrong-typed value comes back
    from ``extra`` as stored), then any field set since (not None), then the remaining extra keys."""
    out = {k: extra[k] if k in extra else out_value(known.get(k)) for k in stored_keys}
    out |= {k: out_value(v) for k, v in known.items() if k not in out and v is not None}
    return out | {k: v for k, v in extra.items() if k not in out}
