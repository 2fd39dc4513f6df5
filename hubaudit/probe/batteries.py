"""Probe batteries: versioned JSON data files (exact strings of papers_lora_backdoor.md §1.6).

A battery file holds ``name``, ``version``, ``source``, ``description``, ``probes`` (each a
``prefix`` and a ``category``) and ``subsets`` (each a list of ``exclude_categories``). Built-in
batteries live in ``hubaudit/probe/batteries/*.json``; a subset is named ``<battery>-<subset>``:

- ``paper-21-B``: the 21-prefix battery without the trained trigger (n = 20; the default);
- ``paper-21-C``: without the 6 RFC prefixes, trained trigger included (n = 15, trigger family removed, nb09);
- ``structural-41-B`` / ``-C``: the 41-prefix structural battery, n = 40 / 25;
- ``disjoint-10``: a control battery sharing no token with the RFC trigger family.

A user battery is a path to a file in the same format (``subsets`` optional; ``FILE:B`` picks one).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

DEFAULT_BATTERY = "paper-21-B"


@dataclass(frozen=True)
class Probe:
    """One prefix p; the probed input is ``f"{p}. {x}"`` (§1.5)."""

    prefix: str
    category: str = "user"


@dataclass(frozen=True)
class Battery:
    """A named, versioned list of probes (already restricted to one subset)."""

    name: str
    version: str
    probes: tuple[Probe, ...]
    source: str = ""

    def to_dict(self) -> dict:
        return {"name": self.name, "version": self.version, "n": len(self.probes), "source": self.source}


def builtin_names() -> list[str]:
    """Every built-in battery name, subsets included (e.g. ``paper-21``, ``paper-21-B``)."""
    names = []
    for f in sorted(resources.files("hubaudit.probe").joinpath("batteries").iterdir()):
        if f.name.endswith(".json"):
            doc = json.loads(f.read_text())
            names.append(doc["name"])
            names += [f"{doc['name']}-{s}" for s in doc.get("subsets", {}) if s != "A"]
    return names


def _from_doc(doc: dict, subset: str | None, origin: str) -> Battery:
    try:
        probes = [Probe(str(p["prefix"]), str(p.get("category", "user"))) for p in doc["probes"]]
        name, version = str(doc.get("name") or origin), str(doc.get("version", "0"))
    except (KeyError, TypeError) as exc:
        raise ValueError(f"battery {origin}: malformed ({exc})") from None
    if subset and subset != "A":
        spec = doc.get("subsets", {}).get(subset)
        if spec is None:
            raise ValueError(f"battery {origin} has no subset {subset!r}")
        drop = set(spec.get("exclude_categories", []))
        probes = [p for p in probes if p.category not in drop]
        name = f"{name}-{subset}"
    if not probes:
        raise ValueError(f"battery {origin}: no probes")
    return Battery(name=name, version=version, probes=tuple(probes), source=str(doc.get("source", origin)))


def load_battery(spec: str | Path = DEFAULT_BATTERY) -> Battery:
    """A built-in battery by name (``paper-21-B``) or a JSON file (``my.json`` or ``my.json:B``)."""
    spec = str(spec)
    path, _, subset = spec.partition(":") if spec.endswith((":A", ":B", ":C")) else (spec, "", "")
    if Path(path).is_file():
        return _from_doc(json.loads(Path(path).read_text()), subset or None, path)
    base, subset = spec, None
    folder = resources.files("hubaudit.probe").joinpath("batteries")
    if not folder.joinpath(f"{base}.json").is_file() and "-" in spec:
        base, subset = spec.rsplit("-", 1)
    f = folder.joinpath(f"{base}.json")
    if not f.is_file():
        raise ValueError(f"unknown battery {spec!r}; built-in: {', '.join(builtin_names())}, or a JSON file")
    return _from_doc(json.loads(f.read_text()), subset, base)
