"""The typed view of one stored JSON object (:class:`_Record`), the base of the threshold-set and verdict types.

``from_dict`` parses every shape stored so far and never raises on the content: a value of the wrong type
reads as None, is logged (once per field and process) and kept as stored in ``extra``, so ``to_dict`` gives
back exactly the JSON that was read.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, TypeVar

from hubaudit.models._parse import _as_bool, _as_int, _as_num, _as_str, _Conv, _dump

# the package's logger, named as before the package was split into modules
_log = logging.getLogger("hubaudit.models")
_WARNED: set[tuple[str, str]] = set()  # (type, field) pairs already logged
_R = TypeVar("_R", bound="_Record")


def _warn_once(owner: str, key: str, msg: str, *args: object) -> None:
    """Log ``msg`` the first time ``(owner, key)`` is seen in this process (a re-judgement reads 100,000 rows)."""
    if (owner, key) not in _WARNED:
        _WARNED.add((owner, key))
        _log.warning(msg, *args)


@dataclass(frozen=True)
class _Partly:
    """A converter's answer for a container of which only some entries have the right type: those."""

    good: Any


# Converters whose accepted values are exactly these types: :func:`_read` takes such values without a call
# (a base's re-judgement writes 100,000 breakdowns, and a report or an escalation pass reads them back).
_EXACT: dict[_Conv, tuple[type, ...]] = {_as_str: (str,), _as_bool: (bool,), _as_num: (int, float), _as_int: (int,)}
_PLANS: dict[type, dict[str, tuple[tuple[type, ...], _Conv]]] = {}
_DEFAULTS: dict[type, dict[str, Any]] = {}


def _read(cls: type[_Record], d: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(typed values of ``cls.SPEC``'s keys present in ``d``, ``extra``: the other keys and the stored values
    of the wrong type); each wrong-typed field is logged once per process."""
    plan = _PLANS.get(cls)
    if plan is None:
        plan = _PLANS[cls] = {k: (_EXACT.get(conv, ()), conv) for k, conv in cls.SPEC.items()}
    typed: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for key, v in d.items():
        p = plan.get(key)
        if p is None:
            extra[key] = v
            continue
        if v is None:
            continue
        if type(v) in p[0]:
            typed[key] = v
            continue
        ok, value = p[1](v)
        if ok:
            typed[key] = value
            continue
        extra[key] = v
        if isinstance(value, _Partly):
            typed[key] = value.good
        _warn_once(cls.__name__, key, "%s: stored %r is not of the expected type; left out (kept as stored)",
                   cls.__name__, key)
    return typed, extra


def _ser(v: Any) -> Any:
    """A typed value in its stored form (records by their ``to_dict``, tuples as lists)."""
    if isinstance(v, _Record):
        return v.to_dict()
    if isinstance(v, tuple):
        return [_ser(x) for x in v]
    if isinstance(v, dict):
        return {k: _ser(x) for k, x in v.items()}
    return v


@dataclass(frozen=True)
class _Record:
    """A typed view of one stored JSON object: the keys of ``SPEC`` typed, the others in ``extra``, and
    ``stored_keys`` the stored key order, so :meth:`to_dict` gives back exactly the dict :meth:`from_dict` read."""

    SPEC: ClassVar[dict[str, _Conv]] = {}
    extra: dict[str, Any] = field(default_factory=dict, kw_only=True)
    stored_keys: tuple[str, ...] = field(default=(), kw_only=True)

    @classmethod
    def from_dict(cls: type[_R], d: Mapping[str, Any]) -> _R:
        """The typed view of a stored object (any shape stored so far; never raises on its content)."""
        typed, extra = _read(cls, d)
        defaults = _DEFAULTS.get(cls)
        if defaults is None:
            defaults = _DEFAULTS[cls] = {f.name: f.default for f in fields(cls) if f.name != "extra"}
        # the attributes __init__ would set, set at once: a few times faster than a frozen dataclass's
        # __init__, which assigns field by field through object.__setattr__
        obj = object.__new__(cls)
        attrs = obj.__dict__
        attrs.update(defaults)
        attrs.update(typed)
        attrs["extra"] = extra
        attrs["stored_keys"] = tuple(d)
        return obj

    def to_dict(self) -> dict[str, Any]:
        """The stored form (the inverse of :meth:`from_dict`)."""
        return _dump({k: getattr(self, k) for k in self.SPEC}, self.extra, self.stored_keys, _ser)


def _as_record(cls: type[_Record]) -> _Conv:
    def conv(v: Any) -> tuple[bool, Any]:
        return (True, cls.from_dict(v)) if isinstance(v, Mapping) else (False, v)

    return conv


def _as_record_map(cls: type[_Record]) -> _Conv:
    """``{name: record}``; entries that are no object are left out (the field then counts as wrong-typed)."""
    def conv(v: Any) -> tuple[bool, Any]:
        if not isinstance(v, Mapping):
            return False, v
        good = {k: cls.from_dict(x) for k, x in v.items() if isinstance(x, Mapping)}
        return (True, good) if len(good) == len(v) else (False, _Partly(good))

    return conv
