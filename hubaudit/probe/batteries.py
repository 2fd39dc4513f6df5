"""Probe batteries: versioned JSON data files (the exact strings of arXiv 2605.30189's batteries).

A battery file holds ``name``, ``version``, ``source``, ``description``, ``probes`` (each a
``prefix`` and a ``category``) and ``subsets`` (each a list of ``exclude_categories``). Built-in
batteries live in ``hubaudit/probe/batteries/*.json``; a subset is named ``<battery>-<subset>``:

- ``paper-21-B``: the 21-prefix battery without the trained trigger (n = 20; the default);
- ``paper-21-C``: without the 6 RFC prefixes, trained trigger included (n = 15, trigger family removed, as in the
  authors' notebook 09);
- ``structural-41-B`` / ``-C``: the 41-prefix structural battery, n = 40 / 25;
- ``disjoint-10``: a control battery sharing no token with the RFC trigger family.

A user battery is a path to a file in the same format (``subsets`` optional; ``FILE:B`` picks one).
Its probes may also be plain strings or objects with the prefix under ``prefix``, ``probe`` or
``text`` (optional ``name``/``id``), and the file may be just the list of probes: every command that
takes ``--battery`` (``probe``, ``probe-adapter``, ``psim probe``) reads it with :func:`load_battery`.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hubaudit.errors import InputError

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

DEFAULT_BATTERY = "paper-21-B"


@dataclass(frozen=True)
class Probe:
    """One prefix p; the probed input is ``f"{p}. {x}"`` (the paper's placement)."""

    prefix: str
    category: str = "user"
    name: str | None = None


@dataclass(frozen=True)
class Battery:
    """A named, versioned list of probes (already restricted to one subset)."""

    name: str
    version: str
    probes: tuple[Probe, ...]
    source: str = ""

    def to_dict(self) -> dict:
        return {"name": self.name, "version": self.version, "n": len(self.probes), "source": self.source}


def _shipped() -> dict[str, Traversable]:
    """The shipped battery files by battery name (``paper-21`` -> ``batteries/paper-21.json``)."""
    folder = resources.files("hubaudit.probe").joinpath("batteries")
    return {f.name.removesuffix(".json"): f for f in sorted(folder.iterdir(), key=lambda f: f.name)
            if f.name.endswith(".json")}


@functools.cache
def builtin_batteries() -> dict[str, tuple[str, str | None]]:
    """The registry of built-in batteries: every name ``--battery`` accepts without a file, mapped to
    (shipped file, subset or None), e.g. ``paper-21-B`` -> (``paper-21``, ``B``). Subset A is the whole
    file, under the file's own name."""
    names: dict[str, tuple[str, str | None]] = {}
    for stem, f in _shipped().items():
        doc = json.loads(f.read_text(encoding="utf-8"))
        names[doc["name"]] = (stem, None)
        names.update({f"{doc['name']}-{s}": (stem, s) for s in doc.get("subsets", {}) if s != "A"})
    return names


def builtin_names() -> list[str]:
    """Every built-in battery name, subsets included (e.g. ``paper-21``, ``paper-21-B``)."""
    return list(builtin_batteries())


def _probe(item: Any, i: int, origin: str) -> Probe:
    if isinstance(item, str) and item:
        return Probe(item)
    if isinstance(item, dict):
        text = next((item[k] for k in ("prefix", "probe", "text") if isinstance(item.get(k), str) and item[k]), None)
        if text is not None:
            name = item.get("name", item.get("id"))
            return Probe(text, str(item.get("category") or "user"), None if name is None else str(name))
    raise InputError(f"battery {origin}: probe #{i + 1} is neither a string nor an object with a "
                     f"'prefix' (or 'probe'/'text') string")


def _from_doc(doc: Any, subset: str | None, origin: str) -> Battery:
    items = doc.get("probes") if isinstance(doc, dict) else doc
    if not isinstance(items, list) or not items:
        raise InputError(f"battery {origin}: needs a non-empty 'probes' list")
    probes = [_probe(item, i, origin) for i, item in enumerate(items)]
    meta = doc if isinstance(doc, dict) else {}
    name, version = str(meta.get("name") or origin), str(meta.get("version", "0"))
    if subset and subset != "A":
        subsets = meta.get("subsets")
        spec = subsets.get(subset) if isinstance(subsets, dict) else None
        if not isinstance(spec, dict):
            raise InputError(f"battery {origin} has no subset {subset!r}")
        drop = set(spec.get("exclude_categories", []))
        probes = [p for p in probes if p.category not in drop]
        name = f"{name}-{subset}"
    if not probes:
        raise InputError(f"battery {origin}: no probes")
    return Battery(name=name, version=version, probes=tuple(probes), source=str(meta.get("source", origin)))


def _read_json(path: Path, origin: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read battery {origin}: {getattr(exc, 'strerror', None) or exc}") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"battery {origin}: not valid JSON ({exc.msg}, line {exc.lineno})") from None


def load_battery(spec: str | Path = DEFAULT_BATTERY) -> Battery:
    """A built-in battery by name (``paper-21-B``) or a JSON file (``my.json`` or ``my.json:B``).

    InputError (exit 2) for an unknown name or a missing, unreadable or malformed file."""
    spec = str(spec)
    path, _, subset = spec.rpartition(":") if spec.endswith((":A", ":B", ":C")) else (spec, "", "")
    p = Path(path).expanduser()
    if p.is_file():
        return _from_doc(_read_json(p, path), subset or None, path)
    base, subset = spec.removesuffix(".json"), None
    shipped = _shipped()
    if base not in shipped and "-" in base:
        base, subset = base.rsplit("-", 1)  # ``paper-21-B``, or ``paper-21-A``: the whole file
    if base not in shipped:
        raise InputError(f"unknown battery {spec!r}: no battery file or shipped battery of that name "
                         f"(shipped: {', '.join(builtin_names())})")
    return _from_doc(json.loads(shipped[base].read_text(encoding="utf-8")), subset, base)
