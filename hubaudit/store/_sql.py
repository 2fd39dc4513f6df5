"""Small SQL helpers shared by the Store modules: dialect upserts, JSON hygiene, row mapping."""

from __future__ import annotations

import dataclasses
import hashlib
import math
import operator
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Union

import numpy as np
from sqlalchemy import Table

from hubaudit.models import ModuleStat

if TYPE_CHECKING:
    from sqlalchemy.dialects.postgresql.dml import Insert as PostgresInsert
    from sqlalchemy.dialects.sqlite.dml import Insert as SqliteInsert


# Values per SQL ``IN (...)`` list or multi-row statement chunk. SQLite compiled before 3.32 allows 999
# bound parameters per statement; PostgreSQL allows 65,535. One constant for every store module.
SQL_IN_CHUNK = 900
# Rows per transaction in bulk writes (revisions, re-scored features): bounded memory, and a killed
# run keeps every chunk committed before it.
BULK_CHUNK = 5000


# The two dialect INSERTs share the upsert surface the store uses (on_conflict_do_update/do_nothing, excluded).
UpsertInsert = Union["SqliteInsert", "PostgresInsert"]


def insert_for(dialect: str, table: Table) -> UpsertInsert:
    """An INSERT that supports ``on_conflict_do_update``/``do_nothing`` (SQLite ≥ 3.24, PostgreSQL)."""
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as postgres_insert

        return postgres_insert(table)
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(table)


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


def feature_digest(names: Sequence[str]) -> str:
    """The key of a feature-name list in ``weight_scores.feature_digest`` (names in stored order)."""
    return hashlib.blake2b("\x1f".join(names).encode(), digest_size=16).hexdigest()


def feature_columns(features: Mapping[str, Any]) -> dict[str, Any]:
    """The weight_scores columns of a feature dict: ``features`` (JSON; finite floats, None for
    anything else, names sorted), ``feature_vec`` (the same values as float64 little-endian, NaN for
    None) and ``feature_digest`` (of the name list). One numpy pass per adapter: a crawl stores
    hundreds of features for each of 100,000 adapters (benchmarks/bench_store.py)."""
    key = tuple(features)
    hit = _PACKING.get(key)
    if hit is None:  # adapters of one base share their feature names
        names = tuple(sorted(key))
        hit = (names, feature_digest(names))
        if len(_PACKING) < 256:
            _PACKING[key] = hit
    names, digest = hit
    vec = np.array([features[n] for n in names], dtype="<f8")  # None -> NaN
    vec[~np.isfinite(vec)] = np.nan  # ±inf: PostgreSQL's json rejects it, and no feature is infinite
    return {"features": dict(zip(names, [None if v != v else v for v in vec.tolist()])), "feature_digest": digest,
            "feature_vec": vec.tobytes()}  # fmt: skip


_PACKING: dict[tuple[str, ...], tuple[tuple[str, ...], str]] = {}


def chunks(items: list[Any], size: int) -> list[list[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


_MODULE_FIELDS = tuple(f.name for f in dataclasses.fields(ModuleStat))
_module_row = operator.attrgetter(*_MODULE_FIELDS)


def pack_modules(modules: list[ModuleStat]) -> dict[str, Any]:
    """Per-module statistics stored column-wise: ``{"fields": [...], "rows": [[...], ...]}``.

    ModuleStat.to_dict() per module goes through dataclasses.asdict (a deepcopy per field) and
    repeats every key in the JSON; a crawl stores tens of modules for each of 100,000 adapters
    (benchmarks/bench_store.py). :func:`unpack_modules` gives the to_dict() shape back.
    """
    return {"fields": list(_MODULE_FIELDS), "rows": list(map(_module_row, modules))}


def unpack_modules(packed: Any) -> list[dict[str, Any]]:
    if not packed:
        return []
    if isinstance(packed, list):  # already a list of dicts
        return packed
    fields = packed["fields"]
    return [dict(zip(fields, row)) for row in packed["rows"]]
