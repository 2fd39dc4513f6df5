"""`hubaudit psim train|calibrate|screen|probe`: PSIM (arXiv 2402.12168) input and dataset screening."""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from hubaudit.cli._options import ConfigOpt, DbOpt, err_console, styled
from hubaudit.cli.app import app, sub_app
from hubaudit.psim.output import PROBE_FORMATS, SCREEN_FORMATS
from hubaudit.vocab import StrEnum

psim_app = sub_app(help="Screen inputs and datasets with a PEFT module trained on randomly reset labels (PSIM).")
app.add_typer(psim_app, name="psim")


class Peft(str, Enum):
    lora = "lora"
    p_tuning = "p-tuning"
    prompt_tuning = "prompt-tuning"


# The --format choices of `psim screen` and `psim probe`, from psim/output.py's renderer maps (the two
# commands offer the same formats; members named like their values: Fmt.table).
Fmt = StrEnum("Fmt", {f: f for f in dict.fromkeys(SCREEN_FORMATS + PROBE_FORMATS)})  # type: ignore[misc]


class FailOn(str, Enum):
    flagged = "flagged"
    never = "never"


class ProbeFailOn(str, Enum):
    extreme = "extreme"
    never = "never"


DataOpt = Annotated[Path, typer.Option("--data", help="CSV, JSONL or Parquet file.", show_default=False)]
TauOpt = Annotated[float | None, typer.Option("--tau", help="Override the calibrated threshold τ (flag iff "
                                                            "confidence > τ).")]
StoreBaseOpt = Annotated[str | None, typer.Option("--base", "-b", help="Store τ in the database as this base's newest "
                                                                       "PSIM calibration.")]
ScreenBaseOpt = Annotated[str | None, typer.Option("--base", "-b", help="Use this base's newest PSIM calibration in "
                                                                        "the database (default, and without one: "
                                                                        "the τ in PSIM_DIR).")]


def _store(db: str | None, config: str | None, *, write: bool):
    # A write (train, calibrate) creates a first database; a screen only reads one that exists.
    from hubaudit.settings import Settings
    from hubaudit.store import Store

    url = Settings.resolve(db, config).db_url
    return Store.open(url, create=True) if write else Store.open(url, must_exist=True)


def _resolve(psim_dir: Path, tau: float | None, base: str | None, db: str | None, config: str | None):
    """The τ a screen runs under (pipeline.psim.resolve_tau), the database opened only when --base decides it."""
    from hubaudit.pipeline import psim as flow

    if base is None or tau is not None:
        got = flow.resolve_tau(psim_dir, tau=tau)
    else:
        flow.read_meta(psim_dir)  # a wrong directory is named before the database is opened
        with _store(db, config, write=False) as store:
            got = flow.resolve_tau(psim_dir, base=base, store=store)
    if got.notice:
        err_console.print(f"Notice: {got.notice}")
    return got


@psim_app.command("train")
def train_cmd(
    model: Annotated[str, typer.Option("--model", help="Suspect base model: a local directory or a repo id in "
                                                       "the local HF cache.")],
    data: DataOpt,
    out: Annotated[Path, typer.Option("-o", "--out", help="PSIM_DIR to write (PEFT module, τ, calibration data).")],
    adapter: Annotated[Path | None, typer.Option("--adapter", help="Suspect LoRA adapter merged on the base "
                                                                   "before PSIM training.")] = None,
    text_col: Annotated[str, typer.Option("--text-col", help="Text column.")] = "text",
    label_col: Annotated[str, typer.Option("--label-col", help="Label column (ints 0..K-1 or class names).")] = "label",
    peft: Annotated[Peft,
                    typer.Option("--peft", help="PEFT method of the PSIM module (authors: p-tuning).")] = Peft.p_tuning,
    epochs: Annotated[int, typer.Option("--epochs", help="Training epochs (authors: 1).")] = 1,
    lr: Annotated[float | None, typer.Option("--lr", help="Learning rate (default per method: p-tuning/prompt-tuning "
                                                          "2e-3, lora 5e-4).")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size")] = 32,
    max_length: Annotated[int, typer.Option("--max-length", help="Truncation length in tokens.")] = 128,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    target_frr: Annotated[float, typer.Option("--target-frr", help="False-rejection rate τ is calibrated to on "
                                                                   "held-out clean rows.")] = 0.05,
    holdout: Annotated[float, typer.Option("--holdout", help="Fraction of rows held out to calibrate τ.")] = 0.2,
    train_head: Annotated[bool, typer.Option("--train-head/--frozen-head",
                                             help="Also train the classification head (authors' code); "
                                                  "frozen by default.")] = False,
    base: StoreBaseOpt = None,
    db: DbOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Train a PSIM on a suspect model (+ adapter) with uniformly reset labels and calibrate τ (saved in
    PSIM_DIR; with --base also stored in the database as BASE's newest PSIM calibration)."""
    import contextlib

    from hubaudit.pipeline import psim as flow

    # The database is opened first: a bad --db fails before minutes of training.
    with _store(db, config, write=True) if base else contextlib.nullcontext() as store:
        meta = flow.train(model=model, data=data, text_col=text_col, label_col=label_col, out=out, adapter=adapter,
                          peft=peft.value, epochs=epochs, lr=lr, batch_size=batch_size, max_length=max_length,
                          seed=seed, target_frr=target_frr, holdout=holdout, train_head=train_head)
        stored = flow.save_tau(store, base, out) if store is not None and base else None
    cal = meta["calibration"]
    err_console.print(
        f"PSIM ({meta['train']['peft']}, {meta['train']['n']} rows, {meta['num_labels']} classes) written to {out}: "
        f"tau={meta['tau']:.4f} at FRR {cal['frr_at_tau']:.1%} on {cal['n']} held-out rows "
        f"(mean confidence {cal['mean_confidence']:.3f}, uniform {cal['uniform_confidence']:.3f})"
        + (f"; stored as {base}'s PSIM calibration {stored.describe()}" if stored is not None else "")
    )
    if cal["n"] < 20:
        err_console.print(styled("Warning:", "yellow", f"only {cal['n']} calibration rows; tau is coarse (use more "
                                                       "data or --holdout)"))


@psim_app.command("calibrate")
def calibrate_cmd(
    psim_dir: Annotated[Path, typer.Argument(help="PSIM_DIR written by `hubaudit psim train`.", show_default=False)],
    data: Annotated[Path, typer.Option("--data", help="Known-clean rows (CSV, JSONL or Parquet).", show_default=False)],
    text_col: Annotated[str | None, typer.Option("--text-col", help="Text column (default: the one PSIM "
                                                                    "was trained on).")] = None,
    target_frr: Annotated[float, typer.Option("--target-frr", help="False-rejection rate τ is fitted to "
                                                                   "on the clean rows.")] = 0.05,
    base: StoreBaseOpt = None,
    db: DbOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Fit τ of a trained PSIM anew on known-clean data; print it (JSON) and with --base store it as BASE's
    newest PSIM calibration. PSIM_DIR is left as it is."""
    import json

    from hubaudit.pipeline import psim as flow

    flow.read_meta(psim_dir)
    if base is None:
        tau = flow.calibrate(psim_dir, data=data, text_col=text_col, target_frr=target_frr)
        stored = None
    else:
        with _store(db, config, write=True) as store:
            tau = flow.calibrate(psim_dir, data=data, text_col=text_col, target_frr=target_frr)
            stored = flow.save_tau(store, base, psim_dir, tau)
    sys.stdout.write(json.dumps(tau.to_dict() | {"stored": stored.to_dict() if stored is not None else None}) + "\n")
    dest = (f"stored as {base}'s PSIM calibration {stored.describe()}" if stored is not None
            else "not stored (give --base BASE)")
    err_console.print(f"tau={tau.tau:.4f} at FRR {tau.frr_at_tau:.1%} on {tau.n_clean} clean rows "
                      f"(target {tau.target_frr:.1%}) -> {dest}")
    if tau.n_clean < 20:
        err_console.print(styled("Warning:", "yellow", f"only {tau.n_clean} calibration rows; tau is coarse"))


@psim_app.command("screen")
def screen_cmd(
    psim_dir: Annotated[Path, typer.Argument(help="PSIM_DIR written by `hubaudit psim train`.", show_default=False)],
    data: DataOpt,
    text_col: Annotated[str | None, typer.Option("--text-col", help="Text column (default: the one PSIM "
                                                                    "was trained on).")] = None,
    clean_out: Annotated[Path | None, typer.Option("-o", "--clean-out", help="Write the unflagged rows here "
                                                                             "(.csv/.jsonl/.parquet).")] = None,
    fmt: Annotated[Fmt, typer.Option("--format", help="stdout format of the per-sample results.")] = Fmt.table,
    fail_on: Annotated[FailOn, typer.Option("--fail-on", help="Exit 1 when any row is flagged.")] = FailOn.never,
    tau: TauOpt = None,
    base: ScreenBaseOpt = None,
    db: DbOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Per-sample confidence and flag for every row of a data file, a summary, and a cleaned copy.
    τ: --tau, else BASE's newest PSIM calibration in the database (--base), else the one in PSIM_DIR."""
    from hubaudit.pipeline import psim as flow

    cal = _resolve(psim_dir, tau, base, db, config)
    table, col, result = flow.screen(psim_dir, data=data, text_col=text_col, clean_out=clean_out, calibration=cal)
    texts = [str(r.get(col)) for r in table.rows]
    extra = {"data": str(data), "clean_out": str(clean_out) if clean_out else None}
    sys.stdout.write(flow.output.render_screen(result, texts, fmt.value, extra))
    summary = result.summary()
    if fmt.value != "json":
        err_console.print(flow.output.summary_line(summary))
    if clean_out is not None:
        err_console.print(f"{summary['n'] - summary['flagged']} unflagged rows written to {clean_out}")
    if fail_on is FailOn.flagged and summary["flagged"]:
        raise typer.Exit(1)


@psim_app.command("probe")
def probe_cmd(
    psim_dir: Annotated[Path,
                        typer.Argument(help="PSIM_DIR trained on the suspect base (+ adapter).", show_default=False)],
    data: Annotated[Path, typer.Option("--data", help="Evaluation texts (CSV, JSONL or Parquet).", show_default=False)],
    battery: Annotated[str | None,
                       typer.Option("--battery", help="Battery JSON file, or the name of a shipped battery.")] = None,
    probe: Annotated[list[str] | None, typer.Option("--probe", help="A probe prefix, applied as "
                                                                    "'{probe}. {text}' (repeatable).")] = None,
    text_col: Annotated[str | None, typer.Option("--text-col")] = None,
    limit: Annotated[int, typer.Option("--limit", help="Use at most this many evaluation texts.")] = 200,
    min_flag_rate: Annotated[float, typer.Option("--min-flag-rate",
                                                 help="A probe is extreme when PSIM flags at least this "
                                                      "fraction of its inputs.")] = 0.5,
    fmt: Annotated[Fmt, typer.Option("--format")] = Fmt.table,
    fail_on: Annotated[ProbeFailOn,
                       typer.Option("--fail-on", help="Exit 1 when any probe is extreme.")] = ProbeFailOn.never,
    tau: TauOpt = None,
    base: ScreenBaseOpt = None,
    db: DbOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Screen a probe battery through a PSIM: which probes push the suspect model to extreme confidence.
    τ as for `psim screen`."""
    from hubaudit.pipeline import psim as flow

    cal = _resolve(psim_dir, tau, base, db, config)
    result = flow.probe(psim_dir, data=data, battery=battery, prefixes=probe, text_col=text_col, limit=limit,
                        min_flag_rate=min_flag_rate, calibration=cal)
    sys.stdout.write(flow.output.render_probe(result, fmt.value))
    s = result.summary()
    if fmt.value != "json":
        err_console.print(f"{len(s['extreme'])} of {s['n_probes']} probes extreme (flag rate ≥ "
                          f"{s['min_flag_rate']:.0%}); baseline flag rate without a probe "
                          f"{s['baseline_flag_rate']:.1%}, outlier gap {s['outlier_gap']:.3f}; "
                          f"{flow.output.calibration_phrase(s)}")
    if fail_on is ProbeFailOn.extreme and s["extreme"]:
        raise typer.Exit(1)
