"""``hubaudit calibrate --base BASE``: fit per-stratum thresholds and re-derive every verdict."""

from __future__ import annotations

import json
import sys
from enum import Enum
from typing import Annotated

import typer

from hubaudit.cli._options import ConfigOpt, DbOpt, err_console, styled
from hubaudit.cli.app import app
from hubaudit.pipeline.runs import recorded_run
from hubaudit.textsafe import terminal


class CalibrateMethod(str, Enum):
    combined = "combined"
    per_feature = "per-feature"


class CalibrateFormat(str, Enum):
    table = "table"
    json = "json"


def similarity_line(sim: dict, source: str) -> str:
    """The copy/derivative thresholds of a calibration, one line."""
    null = (f"{source} from {sim['null_pairs']} null pairs of independent adapters"
            + (f", null max {sim['null_max']:.3f}" if sim.get("null_max") is not None else ""))
    if source != "calibrated":
        null = f"defaults: {sim['null_pairs']} null pairs, too few to calibrate"
    return f"Similarity thresholds: copy >= {sim['copy']:.3f}, derivative >= {sim['derivative']:.3f} ({null})"


@app.command("calibrate")
def calibrate(
    base: Annotated[str, typer.Option("--base", "-b", help="Base model whose stored adapters are calibrated.")],
    reference: Annotated[
        list[str] | None,
        typer.Option("--reference", "-r", help="A known-clean adapter (dir or file); repeatable. "
                                               "Anchors the thresholds."),
    ] = None,
    target_fpr: Annotated[
        float, typer.Option("--target-fpr", min=1e-9, max=0.5, help="False-positive rate of the combined verdict "
                                                                    "on clean adapters.")
    ] = 0.01,
    min_n: Annotated[
        int, typer.Option("--min-n", min=2, help="Adapters a stratum (or its pool) needs to be calibrated; below: 'not "
                     "calibrated'. A fit on fewer than the target FPR needs (⌈1/FPR⌉−1, at most 30) is "
                     "marked low confidence.")
    ] = 30,
    method: Annotated[
        CalibrateMethod,
        typer.Option("--method", "-m", help="Verdict rule: 'combined' (one robust Mahalanobis statistic over every "
                     "feature; default) or 'per-feature' (flag when any feature is beyond its own threshold)."),
    ] = CalibrateMethod.combined,
    db: DbOpt = None,
    config: ConfigOpt = None,
    fmt: Annotated[CalibrateFormat,
                   typer.Option("--format", "-f", help="Output format on stdout.")] = CalibrateFormat.table,
) -> None:
    """Fit robust per-stratum thresholds for BASE from its stored adapters, store them as a
    new threshold-set version, and re-judge every stored adapter of BASE.

    Exit 0 when at least one adapter could be judged, 3 when nothing is calibrated.
    """
    from hubaudit.errors import NotCalibratedError
    from hubaudit.pipeline.calibrate import calibrate_base
    from hubaudit.pipeline.check import calibrate_hint
    from hubaudit.settings import Settings
    from hubaudit.store import Store

    args = {"base": base, "reference": reference or [], "target_fpr": target_fpr, "min_n": min_n,
            "method": method.value}
    with Store.open(Settings.resolve(db, config).db_url, create=True) as store, \
            recorded_run(store, "calibrate", args) as run:
        summary = calibrate_base(store, base, references=reference or [], target_fpr=target_fpr, min_n=min_n,
                                 method=method.value)  # fmt: skip
        run.counts = {"n": summary.n, **summary.verdicts}
        run.exit_status = 0 if summary.calibrated else NotCalibratedError.exit_code
    if fmt is CalibrateFormat.json:
        sys.stdout.write(json.dumps(summary.to_dict(), allow_nan=False) + "\n")
    else:
        for s in summary.strata:
            # Strata name target modules (adapter data): each field escaped, one line per stratum.
            fields = (s["status"], s["n"], s["flagged"], s["fit"] or "-", s["stratum"])
            sys.stdout.write("\t".join(terminal(f) for f in fields) + "\n")
    v = summary.verdicts
    if summary.rescored:
        err_console.print(f"Re-derived {summary.rescored} adapter(s) scored under an older feature set "
                          f"({summary.featureset_version}) from their stored per-module statistics")  # fmt: skip
    err_console.print(
        f"Threshold set v{summary.version} for {base} ({summary.verdict} verdict, {summary.method}, N={summary.n}, "
        f"target FPR {summary.target_fpr}, min N {summary.min_n}, {summary.n_references} reference(s)): "
        f"{v['flagged']} flagged, {v['clean']} clean"
        + (f" ({summary.clean_low_confidence} of them low confidence)" if summary.clean_low_confidence else "") + ", "
        f"{v['not_calibrated']} not calibrated"
    )
    err_console.print(similarity_line(summary.similarity, summary.similarity_source))
    for s in summary.low_confidence:
        # a fit this small can put its threshold orders of magnitude above every score: say so once here,
        # and every verdict it gives carries it (check exits 3 on such a pass unless told to accept it)
        err_console.print(styled("warning:", "yellow", f"stratum {s['stratum']} is low confidence: "
                                 f"{s['low_confidence_reason']}; its passes are not plain passes"))  # fmt: skip
    if summary.low_confidence:
        err_console.print(styled("Hint:", "dim", calibrate_hint(base, low=True)))
    if not summary.calibrated:
        raise NotCalibratedError(f"no stratum of {base} has min N={min_n} adapters (N={summary.n})",
                                 hint=calibrate_hint(base))  # fmt: skip
