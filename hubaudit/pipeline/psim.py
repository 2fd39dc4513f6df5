"""PSIM flows: train from a data file, screen a data file, screen a probe battery.

The only place that wires data files, the PSIM stage and the probe batteries: a ``--battery`` is
read by the probe stage's loader (hubaudit.probe.batteries, torch-free), so ``psim probe`` and
``probe`` accept the same names and files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hubaudit.errors import UsageError
from hubaudit.psim import data as psim_data
from hubaudit.psim import output

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


def screen(psim_dir: str | Path, *, data: str | Path, text_col: str | None = None, tau: float | None = None,
           clean_out: str | Path | None = None):
    """Screen every row of ``data``; optionally write the unflagged rows to ``clean_out``.

    Returns ``(table, text_col, ScreenResult)``. ``text_col`` defaults to the column PSIM was
    trained on.
    """
    from hubaudit.psim.guard import Guard, read_meta
    from hubaudit.psim.screen import screen_texts

    meta = read_meta(psim_dir)  # fail fast on a wrong directory, before reading data
    col = text_col or meta.get("data", {}).get("text_col") or "text"
    table = psim_data.read_table(data)
    texts = psim_data.texts_of(table, col)
    if clean_out is not None:
        psim_data.detect_format(Path(clean_out))  # a bad suffix fails before the model loads
    result = screen_texts(Guard.load(psim_dir, tau=tau), texts)
    if clean_out is not None:
        keep = [row for row, f in zip(table.rows, result.flagged) if not f]
        psim_data.write_table(clean_out, table.columns, keep, table.schema if table.format == "parquet" else None)
    return table, col, result


def probe(psim_dir: str | Path, *, data: str | Path, battery: str | None = None, prefixes: list[str] | None = None,
          text_col: str | None = None, limit: int = 200, min_flag_rate: float = 0.5, tau: float | None = None):
    """Screen a probe battery (file/name and/or explicit prefixes) over up to ``limit`` texts of ``data``."""
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
    col = text_col or meta.get("data", {}).get("text_col") or "text"
    table = psim_data.read_table(data)
    texts = psim_data.texts_of(table, col)[: max(1, limit)]
    return screen_battery(Guard.load(psim_dir, tau=tau), items, texts, min_flag_rate=min_flag_rate)


__all__ = ["train", "screen", "probe", "battery_items", "output"]
