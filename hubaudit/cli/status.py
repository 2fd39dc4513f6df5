"""``hubaudit status``: what the store holds per base and what last ran (read-only: never creates a database)."""

from __future__ import annotations

import sys
from datetime import datetime
from enum import Enum
from typing import Annotated

import typer

from hubaudit.cli._options import ConfigOpt, DbOpt, err_console, styled
from hubaudit.cli.app import app
from hubaudit.textsafe import json_dumps, terminal

MAX_STRATA_LISTED = 5


class StatusFormat(str, Enum):
    table = "table"
    json = "json"


def _when(ts: datetime | None) -> str:
    return ts.strftime("%Y-%m-%d %H:%M UTC") if ts is not None else "-"


def _listed(items: list[str]) -> str:
    shown = ", ".join(items[:MAX_STRATA_LISTED])
    return shown + (f" (+{len(items) - MAX_STRATA_LISTED} more)" if len(items) > MAX_STRATA_LISTED else "")


def _run_text(r, *, with_bases: bool = False) -> str:  # r: RunInfo
    end = f"exit {r.exit_status}" if r.exit_status is not None else "unfinished (still running, or killed)"
    counts = ", ".join(f"{k} {v}" for k, v in r.counts.items()
                       if isinstance(v, (int, float)) and not isinstance(v, bool))
    bases = f" for {_listed(r.bases)}" if with_bases and r.bases else ""
    return f"{r.command} #{r.run_id}{bases} {_when(r.started_at)}, {end}" + (f" ({counts})" if counts else "")


def _base_lines(b) -> list[str]:  # b: BaseStatus
    reasons = ", ".join(f"{k} {v}" for k, v in b.not_audited_by_reason.items())
    lines = [b.base,
             f"  adapters     {b.population}: {b.scored} scored, {b.not_audited} not audited"
             + (f" ({reasons})" if reasons else "")]  # fmt: skip
    c = b.calibration
    if c is None:
        lines.append(f"  calibration  none: nothing of this base is judged (`hubaudit calibrate --base {b.base}`)")
    else:
        lines.append(f"  calibration  v{c.version}, N={c.n}, {c.strata} strata, {_when(c.created_at)}")
        if c.low_confidence_strata:
            lines.append(f"               low confidence: {_listed(c.low_confidence_strata)}")
        if c.not_calibrated_strata:
            lines.append(f"               not calibrated: {_listed(c.not_calibrated_strata)}")
    lines.append(f"  verdicts     {b.judged} judged, {b.not_judged} scored but not judged, "
                 f"{b.low_confidence_passes} pass(es) with low confidence")  # fmt: skip
    lines.append(f"  findings     {b.weights_flagged} weights-flagged, {b.probe_confirmed} probe-confirmed")
    lines.append("  probe queue  " + " · ".join(f"{k} {v}" for k, v in b.probe_queue.items()))
    lines.append(f"  probing      probed {b.probed} of {b.probed + b.not_probed} scored revisions "
                 f"({b.not_probed} not yet probed)")
    for i, r in enumerate(b.last_runs):
        lines.append(("  last runs    " if i == 0 else "               ") + _run_text(r))
    if not b.last_runs:
        lines.append("  last runs    none recorded for this base")
    return lines


def render_table(st) -> str:  # st: StoreStatus
    """The human-readable status; every line escaped whole (base names and strata come from adapters)."""
    lines = [f"hubaudit store {st.db}: {len(st.bases)} base(s)"]
    for b in st.bases:
        lines += ["", *_base_lines(b)]
    lines += ["", "Last run of each command"]
    lines += [f"  {_run_text(r, with_bases=True)}" for r in st.last_runs] or ["  none recorded"]
    if st.runs_truncated:
        lines.append(f"  (from the newest {st.runs_read} runs only)")
    return "".join(terminal(line) + "\n" for line in lines)


@app.command("status")
def status(
    db: DbOpt = None,
    config: ConfigOpt = None,
    fmt: Annotated[StatusFormat, typer.Option("--format", "-f", help="Output format on stdout.")] = StatusFormat.table,
) -> None:
    """Per base known to the store: adapters, scored, not audited by reason, the calibration in force,
    findings, the probe queue and the last runs; then the last run of each command.

    Read-only: with no database it says what to run and exits 3, creating nothing.
    """
    from hubaudit.cli.report import _db_url, _open_store
    from hubaudit.pipeline.report import utcnow
    from hubaudit.pipeline.status import store_status

    with _open_store(_db_url(db, config)) as store:
        st = store_status(store, utcnow())
    if fmt is StatusFormat.json:
        sys.stdout.write(json_dumps(st.to_dict(), indent=2) + "\n")
    else:
        sys.stdout.write(render_table(st))
    if not st.bases:
        err_console.print(styled("Hint:", "dim", "the store knows no base yet: run `hubaudit crawl --base BASE` or "
                                                 "`hubaudit ingest PATH --base BASE`"))  # fmt: skip
