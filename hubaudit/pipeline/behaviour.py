"""Behavioural calibrations: which probe, τ_search and PSIM thresholds are in force, and saying so.

Probe and τ_search thresholds are looked up in one order, for each kind on its own: a file named on
the command line, else the base's newest calibration in the store, else the per-base file an older
hubaudit wrote under the data directory (read, with a one-line notice that it should be re-saved into
the store; never imported behind the user's back, so a read stays a read), else the built-in defaults.

PSIM's τ belongs to one trained PSIM module (arXiv 2402.12168): a value given on the command line,
else the base's newest ``psim`` calibration in the store, which must have been fitted on the same
module (its weights' sha256), else the τ saved in the module's folder at training time.

Each lookup returns the thresholds with a :class:`~hubaudit.models.CalibrationRef` naming where they
came from; probe results and PSIM screens record it, and reports name it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hubaudit.errors import InputError
from hubaudit.models import CalibrationRef
from hubaudit.probe.stats import Thresholds, load_thresholds
from hubaudit.psim.threshold import PsimTau
from hubaudit.store import BehaviourCalibrationRow, Store
from hubaudit.vocab import CalibrationKind, CalibrationOrigin

if TYPE_CHECKING:
    from hubaudit.probe.search_run import SearchThresholds

#: The kinds `hubaudit probe` resolves (PSIM's τ is resolved per PSIM module: resolve_psim_tau).
PROBE_KINDS = (CalibrationKind.PROBE, CalibrationKind.SEARCH)


@dataclass(frozen=True)
class Resolved:
    """Thresholds, the calibration they come from, and a line for stderr (a legacy file) or None."""

    value: Any  # Thresholds (probe), SearchThresholds (search) or PsimTau (psim)
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
    return calibration_record(
        CalibrationRef(CalibrationKind.PROBE, CalibrationOrigin.GIVEN, source=thresholds.source), tau)


def save_probe_calibration(store: Store, base: str, thresholds: Thresholds,
                           search: SearchThresholds | None = None) -> dict[str, CalibrationRef]:  # fmt: skip
    """Store `probe-calibrate`'s thresholds (and τ_search) as ``base``'s newest; returns their names by kind."""
    out = {}
    for kind, th in ((CalibrationKind.PROBE, thresholds), (CalibrationKind.SEARCH, search)):
        if th is not None:
            row = store.behaviour.save_behaviour_calibration(base, kind, th.to_dict(), source=th.source,
                                                             n_clean=th.n_clean)
            out[kind.value] = stored_ref(row)
    return out


def in_force(store: Store, base: str) -> dict[str, CalibrationRef | None]:
    """The stored probe and τ_search calibrations of ``base`` in force (None: none in the store)."""
    out: dict[str, CalibrationRef | None] = {}
    for kind in PROBE_KINDS:
        row = store.behaviour.behaviour_calibration(base, kind)
        out[kind.value] = stored_ref(row) if row is not None else None
    return out


def save_psim_calibration(store: Store, base: str, tau: PsimTau) -> CalibrationRef:
    """Store a PSIM module's τ (and what it was fitted on) as ``base``'s newest ``psim`` calibration."""
    row = store.behaviour.save_behaviour_calibration(base, CalibrationKind.PSIM, tau.to_dict(), source=tau.source,
                                                     n_clean=tau.n_clean)  # fmt: skip
    return stored_ref(row)


def resolve_psim_tau(folder: PsimTau, psim_dir: str | Path, *, explicit: float | None = None, base: str | None = None,
                     store: Store | None = None) -> Resolved:  # fmt: skip
    """The τ a PSIM screen runs under: ``explicit``, else ``base``'s newest ``psim`` calibration in ``store``,
    else ``folder`` (the τ saved with the module in ``psim_dir``); ``value`` is a :class:`PsimTau`.

    A stored calibration fitted on another PSIM module (``psim_sha256`` differs from ``folder``'s) is
    refused with an :class:`InputError`: its τ is a quantile of another module's confidences.
    """
    k = CalibrationKind.PSIM
    if explicit is not None:
        given = f"--tau {explicit:g}"
        value = PsimTau(tau=float(explicit), target_frr=folder.target_frr, n_clean=folder.n_clean,
                        psim_sha256=folder.psim_sha256, model=folder.model, source=given)  # fmt: skip
        return Resolved(value, CalibrationRef(k, CalibrationOrigin.EXPLICIT, source=given))
    if base and store is not None:
        row = store.behaviour.behaviour_calibration(base, k)
        if row is not None:
            ref = stored_ref(row)
            try:
                stored = PsimTau.from_dict(row.thresholds)
            except ValueError as exc:
                raise InputError(f"the PSIM calibration of {base} in the store ({ref.describe()}) is unreadable: "
                                 f"{exc}") from None
            if stored.psim_sha256 != folder.psim_sha256:
                raise InputError(f"the newest PSIM calibration of {base} (store #{row.id} v{row.version}) was fitted "
                                 f"on another PSIM module (sha256 {stored.psim_sha256[:12]}, {psim_dir} has "
                                 f"{folder.psim_sha256[:12]}): run `hubaudit psim calibrate {psim_dir} --base "
                                 f"{base}` or pass --tau")  # fmt: skip
            return Resolved(stored, ref)
        notice = f"no PSIM calibration of {base} in the store: tau from the model folder {psim_dir}"
        return Resolved(folder,
                        CalibrationRef(k, CalibrationOrigin.MODEL_DIR, path=str(psim_dir), source=folder.source),
                        notice)  # fmt: skip
    return Resolved(folder, CalibrationRef(k, CalibrationOrigin.MODEL_DIR, path=str(psim_dir), source=folder.source))
