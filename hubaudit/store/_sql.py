"""Small SQL helpers shared by the Store modules: dialect upserts, JSON hygiene, row mapping."""

from __future__ import annotations

import math
from typing import Any

from sqlalchemy import Table


def insert_for(dialect: str, table: Table):  # type: ignore[no-untyped-def]
    """An INSERT that supports ``on_conflict_do_update``/``do_nothing`` (SQLite ≥ 3.24, PostgreSQL)."""
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert(table)


def clean_json(value: Any) -> Any:
    """Replace non-finite floats by None: PostgreSQL's json type rejects NaN and Infinity."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): clean_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean_json(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return clean_json(value.item())
    return value


def clean_features(features: dict[str, Any]) -> dict[str, float | None]:
    """Feature dicts are flat name -> float; the fast path of :func:`clean_json` for them."""
    out: dict[str, float | None] = {}
    for k, v in features.items():
        f = float(v) if v is not None else None
        out[str(k)] = f if f is not None and math.isfinite(f) else None
    return out


def chunks(items: list[Any], size: int) -> list[list[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]
