"""Behavioural calibrations: which probe and τ_search thresholds are in force, and saying so.

Thresholds are looked up in one order, for each kind on its own: a file named on the command line,
else the base's newest calibration in the store, else the per-base file an older hubaudit wrote
under the data directory (read, with a one-line notice that it should be re-saved into the store;
never imported behind the user's back, so a read stays a read), else the built-in defaults. Each
lookup returns the thresholds with a :class:`~hubaudit.models.CalibrationRef` naming where they
came from; probe results record it, and reports name it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hubaudit.models import CalibrationRef
from hubaudit.probe.stats import Thresholds, load_thresholds
from hubaudit.store import BehaviourCalibrationRow, Store
from hubaudit.vocab import CalibrationKind, CalibrationOrigin

if TYPE_CHECKING:
    from hubaudit.probe.search_run import SearchThresholds

#: The kinds `hubaudit probe` resolves (PSIM's τ belongs to one trained PSIM module, kept in its folder).
PROBE_KINDS = (CalibrationKind.PROBE, CalibrationKind.SEARCH)


@dataclass(frozen=True)
class Resolved:
    """Thresholds, the calibration they come from, and a line for stderr (a legacy file) or None."""

    value: Any  # Thresholds (probe) or SearchThresholds (search)
    ref: CalibrationRef
    notice: str | None = None


def thresholds_path(home: str | Path, base: str) -> Path:
    """The per-base probe thresholds file older hubaudit versions wrote (read for compatibility)."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "__", base)
    return Path(home) / "probe_thresholds" / f"{slug}.json"


def search_thresholds_path(home: str | Path, base: str) -> Path:
    """The per-base τ_search file older hubaudit versions wrote, next to the probe thresholds file."""
    return thresholds_path(home, base).with_suffix(".search.json")


def stored_ref(row: BehaviourCalibrationRow) -> CalibrationRef:
    """The name of a stored calibration."""
    return CalibrationRef(kind=row.kind, origin=CalibrationOrigin.STORE, id=row.id, version=row.version,
                          created_at=row.created_at.isoformat(), fingerprint=row.fingerprint, source=row.source)


def _codec(kind: CalibrationKind):  # type: ignore[no-untyped-def]
    """(load a file, from a stored dict, the default, the legacy path function) of ``kind``."""
    if kind is CalibrationKind.PROBE:
        return load_thresholds, Thresholds.from_dict, Thresholds, thresholds_path
    if kind is CalibrationKind.SEARCH:
        from hubaudit.probe.search_run import SearchThresholds, load_search_thresholds

        return load_search_thresholds, SearchThresholds.from_dict, SearchThresholds, search_thresholds_path
    raise ValueError(f"{kind} thresholds are not resolved per base")


def resolve_calibration(kind: CalibrationKind | str, home: str | Path, base: str | None, file: str | Path | None = None,
                        store: Store | None = None) -> Resolved:  # fmt: skip
    """The ``kind`` thresholds for ``base``: ``file``, else the store's newest, else the legacy file, else defaults."""
    k = CalibrationKind(kind)
    load, from_dict, default, legacy_path = _codec(k)
    if file:
        value = load(file)
        return Resolved(value, CalibrationRef(k, CalibrationOrigin.FILE, path=str(file), source=value.source))
    if base and store is not None:
        row = store.behaviour.behaviour_calibration(base, k)
        if row is not None:
            return Resolved(from_dict(row.thresholds), stored_ref(row))
    legacy = legacy_path(home, base) if base else None
    if legacy is not None and legacy.is_file():
        value = load(legacy)
        notice = (f"{k} thresholds of {base} read from {legacy}, outside the store: re-run "
                  f"`hubaudit probe-calibrate --base {base}` to version them in the database")  # fmt: skip
        return Resolved(value, CalibrationRef(k, CalibrationOrigin.LEGACY_FILE, path=str(legacy), source=value.source),
                        notice)  # fmt: skip
    value = default()
    return Resolved(value, CalibrationRef(k, CalibrationOrigin.DEFAULTS, source=value.source))


def calibration_record(probe: CalibrationRef, search: CalibrationRef | None = None) -> dict[str, Any]:
    """What a probe result stores under ``"calibration"``: ``{"probe": ref, "search": ref or None}`` as dicts."""
    return {"probe": probe.to_dict(), "search": search.to_dict() if search is not None else None}


def given_record(thresholds: Thresholds, searched: bool, search: SearchThresholds | None) -> dict[str, Any]:
    """The calibration record of thresholds handed in without a recorded origin (``searched``: the
    blind search ran, under ``search`` or, when None, its uncalibrated default)."""
    if not searched:
        tau = None
    elif search is None:
        tau = CalibrationRef(CalibrationKind.SEARCH, CalibrationOrigin.DEFAULTS)
    else:
        tau = CalibrationRef(CalibrationKind.SEARCH, CalibrationOrigin.GIVEN, source=search.source)
    return calibration_record(CalibrationRef(CalibrationKind.PROBE, CalibrationOrigin.GIVEN, source=thresholds.source), tau)


def save_probe_calibration(store: Store, base: str, thresholds: Thresholds,
                           search: SearchThresholds | None = None) -> dict[str, CalibrationRef]:  # fmt: skip
    """Store `probe-calibrate`'s thresholds (and τ_search) as ``base``'s newest; returns their names by kind."""
    out = {}
    for kind, th in ((CalibrationKind.PROBE, thresholds), (CalibrationKind.SEARCH, search)):
        if th is not None:
            row = store.behaviour.save_behaviour_calibration(base, kind, th.to_dict(), source=th.source, n_clean=th.n_clean)
            out[kind.value] = stored_ref(row)
    return out


def in_force(store: Store, base: str) -> dict[str, CalibrationRef | None]:
    """The stored probe and τ_search calibrations of ``base`` in force (None: none in the store)."""
    out: dict[str, CalibrationRef | None] = {}
    for kind in PROBE_KINDS:
        row = store.behaviour.behaviour_calibration(base, kind)
        out[kind.value] = stored_ref(row) if row is not None else None
    return out
