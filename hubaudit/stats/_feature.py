"""The registry entry type shared by features.py and features_extra.py (kept apart so that the
registry in features.py can include features_extra.py's entries without an import cycle)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from hubaudit.models import ModuleStat

Direction = Literal["up", "down", "both"]
Modules = Sequence[ModuleStat]


@dataclass(frozen=True)
class Feature:
    """One registered feature (or family: ``name`` holds ``{projection}`` and fn returns a dict)."""

    name: str
    version: int
    description: str
    direction: Direction
    fn: Callable[[Modules], float | None | dict[str, float]]
