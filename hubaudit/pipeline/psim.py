"""PSIM flows: train from a data file, calibrate τ on clean data, screen a data file, screen a probe battery.

The only place that wires data files, the PSIM stage, the probe batteries and the store: a
``--battery`` is read by the probe stage's loader (hubaudit.probe.batteries, torch-free), so ``psim
probe`` and ``probe`` accept the same names and files; τ is versioned per base in the store beside the
probe thresholds (pipeline.behaviour) and resolved there for every screen.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from hubaudit.errors import UsageError
from hubaudit.models import CalibrationRef
from hubaudit.pipeline.behaviour import Resolved, resolve_psim_tau, save_psim_calibration
from hubaudit.psim import data as psim_data
from hubaudit.psim import output

if TYPE_CHECKING:
    from hubaudit.psim.threshold import PsimTau
    from hubaudit.store import Store

BATTERY_DIR = Path(__file__).resolve().parent.parent / "probe" / "batteries"


def battery_items(spec: str) -> list[dict[str, Any]]:
    """The probes of a battery (a built-in name such as ``paper-21-B``, or a file) as PSIM screens them."""
    from hubaudit.probe.batteries import load_battery

    return [{"probe": p.prefix, "name": p.name, "category": p.category} for p in load_battery(spec).probes]


def train(*, model: str, data: str | Path, text_col: str, label_col: str, out: str | Path,
          adapter: str | Path | None = None, **options: Any) -> dict[str, Any]:
    """Read ``data``, train a PSIM on ``model`` (+ ``adapter``) and save it in ``out``; returns its metadata."""
    from hubaudit.psim.train import TrainOptions, train_psim

    opts = TrainOptions(**options)
    opts.validate()  # before reading a large file or loading a model
    table = psim_data.read_table(data)
    texts = psim_data.texts_of(table, text_col)
    labels, k = psim_data.labels_of(table, label_col)
    meta = train_psim(model, texts, labels, k, out, adapter=adapter, options=opts)
    meta["data"] = {"path": str(Path(data).resolve()), "text_col": text_col, "label_col": label_col, "rows": len(texts)}
    _rewrite_meta(out, meta)
    return meta


def _rewrite_meta(out: str | Path, meta: dict[str, Any]) -> None:
    import json

    from hubaudit.psim.train import CONFIG_FILE

    (Path(out) / CONFIG_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")


def read_meta(psim_dir: str | Path) -> dict[str, Any]:
    """The ``psim.json`` of ``psim_dir``; a one-line error when it is not a PSIM directory."""
    from hubaudit.psim.guard import read_meta as read

    return read(psim_dir)


def save_tau(store: Store, base: str, psim_dir: str | Path, tau: PsimTau | None = None) -> CalibrationRef:
    """Store ``tau`` (default: the τ saved in ``psim_dir`` at training) as ``base``'s newest PSIM calibration."""
    from hubaudit.psim.guard import folder_tau

    return save_psim_calibration(store, base, tau if tau is not None else folder_tau(psim_dir))


def calibrate(psim_dir: str | Path, *, data: str | Path, text_col: str | None = None,
              target_frr: float = 0.05) -> PsimTau:
    """τ of the PSIM in ``psim_dir`` fitted anew to ``target_frr`` on the known-clean rows of ``data``.

    The module's folder is left as it is; the result names the module by its weights' sha256.
    """
    from hubaudit.psim import threshold
    from hubaudit.psim.guard import Guard, folder_tau, read_meta

    if not 0.0 < target_frr < 1.0:
        raise UsageError("--target-frr must be between 0 and 1 (e.g. 0.05)")
    meta = read_meta(psim_dir)
    folder = folder_tau(psim_dir, meta)
    col = text_col or meta.get("data", {}).get("text_col") or "text"
    texts = psim_data.texts_of(psim_data.read_table(data), col)
    if not texts:
        raise psim_data.PsimDataError(f"{data}: no rows to calibrate on")
    conf = Guard.load(psim_dir).confidence(texts)
    tau = threshold.calibrate_tau(conf, target_frr)
    return threshold.PsimTau(tau=tau, target_frr=target_frr, n_clean=len(texts), psim_sha256=folder.psim_sha256,
                             frr_at_tau=threshold.rate(threshold.flag(conf, tau)), model=folder.model,
                             source=threshold.tau_source(len(texts), target_frr))  # fmt: skip


def resolve_tau(psim_dir: str | Path, *, tau: float | None = None, base: str | None = None,
                store: Store | None = None) -> Resolved:  # fmt: skip
    """The τ a screen through ``psim_dir`` runs under (pipeline.behaviour.resolve_psim_tau): ``tau``, else
    ``base``'s newest in ``store`` (refused when fitted on another PSIM module), else the folder's."""
    from hubaudit.psim.guard import folder_tau

    return resolve_psim_tau(folder_tau(psim_dir), psim_dir, explicit=tau, base=base, store=store)


def screen(psim_dir: str | Path, *, data: str | Path, text_col: str | None = None,
           clean_out: str | Path | None = None, calibration: Resolved | None = None):
    """Screen every row of ``data``; optionally write the unflagged rows to ``clean_out``.

    Returns ``(table, text_col, ScreenResult)``. ``text_col`` defaults to the column PSIM was
    trained on. τ is ``calibration``'s (a :func:`resolve_tau` result), else the folder's.
    """
    from hubaudit.psim.guard import Guard, read_meta
    from hubaudit.psim.screen import screen_texts

    meta = read_meta(psim_dir)  # fail fast on a wrong directory, before reading data
    cal = calibration if calibration is not None else resolve_tau(psim_dir)
    col = text_col or meta.get("data", {}).get("text_col") or "text"
    table = psim_data.read_table(data)
    texts = psim_data.texts_of(table, col)
    if clean_out is not None:
        psim_data.detect_format(Path(clean_out))  # a bad suffix fails before the model loads
    result = screen_texts(Guard.load(psim_dir, tau=cal.value.tau), texts, target_frr=cal.value.target_frr,
                          calibration=cal.ref.to_dict())
    if clean_out is not None:
        keep = [row for row, f in zip(table.rows, result.flagged) if not f]
        psim_data.write_table(clean_out, table.columns, keep, table.schema if table.format == "parquet" else None)
    return table, col, result


def probe(psim_dir: str | Path, *, data: str | Path, battery: str | None = None, prefixes: list[str] | None = None,
          text_col: str | None = None, limit: int = 200, min_flag_rate: float = 0.5,
          calibration: Resolved | None = None):
    """Screen a probe battery (file/name and/or explicit prefixes) over up to ``limit`` texts of ``data``;
    τ as in :func:`screen`."""
    from hubaudit.psim.guard import Guard, read_meta
    from hubaudit.psim.screen import parse_battery, screen_battery

    items: list[dict[str, Any]] = []
    if battery:
        items += battery_items(battery)
    if prefixes:
        items += parse_battery(list(prefixes), "--probe")
    if not items:
        raise UsageError("give a probe battery (--battery FILE|NAME) or at least one --probe PREFIX")
    if not 0.0 < min_flag_rate <= 1.0:
        raise UsageError("--min-flag-rate must be in (0, 1]")
    meta = read_meta(psim_dir)
    cal = calibration if calibration is not None else resolve_tau(psim_dir)
    col = text_col or meta.get("data", {}).get("text_col") or "text"
    table = psim_data.read_table(data)
    texts = psim_data.texts_of(table, col)[: max(1, limit)]
    return screen_battery(Guard.load(psim_dir, tau=cal.value.tau), items, texts, min_flag_rate=min_flag_rate,
                          calibration=cal.ref.to_dict())


__all__ = ["train", "calibrate", "read_meta", "save_tau", "resolve_tau", "screen", "probe", "battery_items", "output"]
