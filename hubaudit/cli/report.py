"""``hubaudit report``, ``hubaudit export`` and ``hubaudit check``: the read side and the gate.

Data (the report, the export, the verdict) goes to stdout or, atomically, to ``-o FILE``; notes,
warnings and summaries go to stderr.
"""

from __future__ import annotations

import re
import shutil
import sys
from collections.abc import Iterable
from datetime import datetime, timedelta, timezone
from enum import Enum
from typing import Annotated

import typer

from hubaudit.cli._options import ConfigOpt, DbOpt, err_console, styled
from hubaudit.cli.app import app
from hubaudit.cli.probe import (
    BatteryOpt,
    Mode,
    ModeOpt,
    PromptsOpt,
    SearchThrOpt,
    ThrOpt,
)
from hubaudit.errors import UsageError
from hubaudit.report import OutputFormat, Suppression
from hubaudit.report.export import EXPORT_FORMATS
from hubaudit.textsafe import json_dumps, terminal
from hubaudit.vocab import ProbeStatus, StrEnum, Verdict

BaseOpt = Annotated[str, typer.Option("--base", help="Base model id, e.g. Qwen/Qwen2.5-1.5B.", show_default=False)]
OutputOpt = Annotated[
    str | None, typer.Option("-o", "--output", help="Write to FILE (atomically) instead of stdout.")
]
SuppressOpt = Annotated[
    str | None,
    typer.Option("--suppress", help="Suppression file (TOML, or YAML with PyYAML): repo, sha, reason, expires."),
]
_SINCE_RE = re.compile(r"^\s*(\d+)\s*([hdw])\s*$")


class FailOn(str, Enum):
    flagged = "flagged"
    never = "never"


# Values of ``hubaudit export --format``, generated from report/export.py EXPORT_FORMATS (members
# named like their values: ExportFormat.csv).
ExportFormat = StrEnum("ExportFormat", {f: f for f in EXPORT_FORMATS})  # type: ignore[misc]


class CheckFormat(str, Enum):
    table = "table"
    json = "json"


def parse_since(text: str | None, now: datetime) -> datetime | None:
    """``7d`` / ``24h`` / ``2w`` before ``now``, or an ISO date/time (UTC when no zone is given)."""
    if not text:
        return None
    m = _SINCE_RE.match(text)
    if m:
        n, unit = int(m.group(1)), m.group(2)
        return now - timedelta(**{{"h": "hours", "d": "days", "w": "weeks"}[unit]: n})
    try:
        ts = datetime.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(f"--since {text!r}: use a duration like 7d, 24h, 2w or an ISO date like 2026-11-01") from None
    return ts if ts.tzinfo else ts.replace(tzinfo=timezone.utc)


def _db_url(db: str | None, config: str | None) -> str:
    from hubaudit.settings import Settings

    return Settings.resolve(db, config).db_url


def _first_contact(base: str | None) -> str:
    b = base or "BASE"
    return f"run `hubaudit crawl --base {b}` or `hubaudit ingest PATH --base {b}` first"


def _open_store(db_url: str, base: str | None = None):
    """The store, opened for reading: these commands never create a database (a mistyped --db or a
    first run must not leave an empty file behind that later reads as "nothing flagged")."""
    from hubaudit.errors import MissingDatabaseError
    from hubaudit.store import Store

    try:
        return Store.open(db_url, must_exist=True)
    except MissingDatabaseError as exc:
        raise MissingDatabaseError(f"{exc}: {_first_contact(base)}",
                                   hint="or pass --db URL (or set it in the config file) to read an existing "
                                        "database") from None


def _require_base(store, base: str) -> None:
    """Exit 3 with what to run when the store has never seen ``base`` (rather than report 'population 0')."""
    known = store.bases()
    if base in known:
        return
    from hubaudit.errors import NotCalibratedError

    listed = ", ".join(known[:10]) + (f" (+{len(known) - 10} more)" if len(known) > 10 else "")
    raise NotCalibratedError(f"base {base} is unknown to the store at {store.url}: {_first_contact(base)}",
                             hint=f"the store knows: {listed}" if known else "the store knows no base yet")  # fmt: skip


def _emit(text: str, output: str | None) -> None:
    if output:
        from hubaudit.pipeline.report import write_atomic

        write_atomic(output, text)
    else:
        sys.stdout.write(text)
        sys.stdout.flush()


def _warn(message: str) -> None:
    err_console.print(styled("warning:", "yellow", message))


def _warn_expired(sups: Iterable[Suppression]) -> None:
    for s in sups:
        target = f"{s.repo}@{s.sha}" if s.sha else s.repo
        _warn(f"suppression for {target} expired {s.expires.isoformat()} ({s.origin}); it no longer suppresses")


def _table_width() -> int:
    # COLUMNS (or the terminal) decides, capped at 100 so a report pasted anywhere stays readable.
    return min(shutil.get_terminal_size((100, 24)).columns, 100)


@app.command("report")
def report_cmd(
    base: BaseOpt,
    since: Annotated[str | None, typer.Option("--since", help="Only revisions recorded since: 7d, 24h, "
                                                              "2w or an ISO date.")] = None,
    flagged_only: Annotated[bool, typer.Option("--flagged-only", help="List only flagged adapters "
                                                                      "(counts stay over all).")] = False,
    fmt: Annotated[OutputFormat, typer.Option("--format", "-f", help="Output format.")] = OutputFormat.table,
    output: OutputOpt = None,
    fail_on: Annotated[FailOn, typer.Option("--fail-on", help="Exit 1 on an unsuppressed finding (probe-confirmed and "
                                            "copies count without calibration); else 3 if the base is not calibrated "
                                            "or an adapter passed only with low confidence.")] = FailOn.never,
    accept_low_confidence: Annotated[bool, typer.Option(
        "--accept-low-confidence",
        help="With --fail-on: passes judged by thresholds fitted on too few adapters do not exit 3.")] = False,
    suppress: SuppressOpt = None,
    db: DbOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Report on the adapters of one base: calibration, flagged revisions, what could not be audited."""
    from hubaudit.pipeline.report import read_suppressions, run_report, utcnow

    now = utcnow()
    since_ts = parse_since(since, now)
    sups = read_suppressions(suppress)
    with _open_store(_db_url(db, config), base) as store:
        _require_base(store, base)
        report, text = run_report(store, base, fmt.value, width=_table_width(), since=since_ts,
                                  flagged_only=flagged_only, suppressions=sups, now=now)  # fmt: skip
    _emit(text, output)
    _warn_expired(report.expired_suppressions)
    s = report.summary
    if not report.calibration.calibrated:
        what = "unknown to the store" if s.population == 0 else "not calibrated"
        _warn(f"{base} is {what}: no adapter of it is judged clean")
    if output:
        err_console.print(f"wrote {fmt.value} report to {output}: {s.flagged_unsuppressed} flagged "
                          f"({s.suppressed} suppressed) of {s.population} adapters")  # fmt: skip
    if s.low_confidence:
        _warn(f"{s.low_confidence} adapter(s) of {base} passed only with low confidence (thresholds fitted on too "
              f"few adapters): add --reference CLEAN_ADAPTER or more adapters and recalibrate; --min-n set this low "
              f"is what allows such fits")  # fmt: skip
    if fail_on is FailOn.flagged:
        # A finding needs no calibration to count (a probe-confirmed backdoor, a copy of one): 1 before 3.
        if s.flagged_unsuppressed:
            raise typer.Exit(1)
        if not report.calibration.calibrated:
            raise typer.Exit(3)
        if s.low_confidence and not accept_low_confidence:  # could not be audited, as for `check`
            raise typer.Exit(3)


@app.command("export")
def export_cmd(
    base: BaseOpt,
    flagged: Annotated[bool,
                       typer.Option("--flagged/--all", help="Only findings (a blocklist), or every revision.")] = True,
    fmt: Annotated[ExportFormat, typer.Option("--format", "-f", help="Export format.")] = ExportFormat.csv,
    output: OutputOpt = None,
    include_suppressed: Annotated[bool, typer.Option("--include-suppressed", help="Keep suppressed findings "
                                                                                  "(column suppressed=true).")] = False,
    suppress: SuppressOpt = None,
    db: DbOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Export adapter revisions in the stable export schema (export_schema_version 1), e.g. as a blocklist."""
    from hubaudit.pipeline.report import read_suppressions, run_export, utcnow

    sups = read_suppressions(suppress)
    with _open_store(_db_url(db, config), base) as store:
        _require_base(store, base)
        report, text, n = run_export(store, base, fmt.value, flagged=flagged, include_suppressed=include_suppressed,
                                     suppressions=sups, now=utcnow())  # fmt: skip
    _emit(text, output)
    _warn_expired(report.expired_suppressions)
    if not report.calibration.calibrated:
        _warn(f"{base} is not calibrated: the export cannot list weight findings")
    err_console.print(f"exported {n} revision(s) of {base}" + (f" to {output}" if output else ""))


def _check_text(r) -> str:  # r: CheckResult
    word = {Verdict.PASS: "PASS", Verdict.PASS_LOW_CONFIDENCE: "PASS", Verdict.FLAGGED: "FLAGGED",
            Verdict.SUPPRESSED: "SUPPRESSED", Verdict.NOT_CALIBRATED: "NOT CALIBRATED",
            Verdict.NOT_AUDITED: "NOT AUDITED"}[r.verdict]  # fmt: skip
    if r.low_confidence:  # never a bare PASS from thresholds fitted on too few adapters
        word += f" (low confidence: {r.low_confidence_reason})"
    lines = [f"{word}  {r.repo_id}@{(r.sha or 'latest')[:12]}"]
    if r.base:
        lines.append(f"  base        {r.base}")
    if r.score is not None:
        thr = f" (threshold {r.threshold:.4g})" if r.threshold is not None else ""
        lines.append(f"  score       {r.score:.4g}{thr}")
    if r.margin is not None:
        lines.append(f"  margin      {r.margin:+.2f} σ")
    if r.stratum:
        lines.append(f"  stratum     {r.stratum}")
    if r.calibration_version is not None:
        lines.append(f"  calibration v{r.calibration_version}, N={r.calibration_n}")
    lines += _probe_lines(r)
    for reason in r.reasons:
        lines.append(f"  - {reason}")
    if r.suppressed:
        lines.append(f"  suppressed until {r.suppressed['expires']}: {r.suppressed['reason']}")
    lines.append(f"  source      {r.source}")
    if r.note:
        lines.append(f"  {r.note}")
    # Repo id, declared base, stratum and reasons come from the adapter: each line is escaped whole,
    # so a newline or an escape sequence in one of them stays inside its line, visibly.
    return "".join(terminal(line) + "\n" for line in lines)


def _probe_lines(r) -> list[str]:  # r: CheckResult
    p = r.probe
    if not p:
        return []
    if not r.probed:  # a result stored by an earlier `hubaudit probe` run
        return [f"  probe       {'backdoor' if p.get('flagged') else 'clean'} (stored)"]
    if p.get("status") != ProbeStatus.OK:
        return [f"  probed      could not run: {p.get('reason')}" + (f" ({p['error']})" if p.get("error") else "")]
    th = p.get("thresholds") or {}
    lines = [f"  probed      {'backdoor' if p['flagged'] else 'clean'} ({p.get('mode')})",
             (f"  battery     {'flagged' if p['battery_flagged'] else 'clean'} ({p.get('battery')}): outlier_gap "
              f"{p['outlier_gap']:.4f} (τ {th.get('gap')}), mean_attack_rate {p['mean_attack_rate']:.4f} "
              f"(τ {th.get('mean')})")]
    s = p.get("search") or {}
    if s.get("status") == ProbeStatus.OK:
        uncal = ", uncalibrated: never flags" if s.get("tau_uncalibrated") else ""
        if s.get("method") == "target_inversion":
            lines.append(f"  search      {'flagged' if s['flagged'] else 'clean'}: target {s['target']!r} score "
                         f"{s['target_score']:.4f} (τ_search {s['tau']}{uncal}), trigger {s.get('trigger')!r}")
        else:
            lines.append(f"  search      {'flagged' if s['flagged'] else 'clean'}: trigger {s.get('trigger')!r} robust "
                         f"rate {s['robust_rate']:.4f} (τ_search {s['tau']}{uncal})")
    elif s:
        lines.append(f"  search      {s.get('status')}: {s.get('reason')}")
    return lines


@app.command("check")
def check_cmd(
    target: Annotated[str, typer.Argument(help="REPO[@REV] (from the store, else fetched from the Hub) or "
                                               "PATH (scored now).", show_default=False)],
    base: Annotated[str | None, typer.Option("--base", help="Judge against this base (default: the "
                                                            "adapter's declared base).")] = None,
    fmt: Annotated[CheckFormat, typer.Option("--format", "-f", help="Output format.")] = CheckFormat.table,
    suppress: SuppressOpt = None,
    offline: Annotated[bool, typer.Option("--offline", help="Never contact the Hub: a repo not in the "
                                                            "store is not audited.")] = False,
    timeout: Annotated[float, typer.Option(min=0.1, help="Seconds before any single Hub request times out.")] = 30.0,
    accept_low_confidence: Annotated[bool, typer.Option(
        "--accept-low-confidence",
        help="Exit 0 on a pass judged by thresholds fitted on too few adapters for their target FPR "
             "(default: exit 3).")] = False,
    base_model: Annotated[str | None, typer.Option("--base-model",
                                                   help="Local directory of the base weights: also probe the adapter "
                                                        "behaviourally (battery, blind search, target inversion for "
                                                        "generative adapters). Without it only the weights are "
                                                        "judged.")] = None,
    prompts: PromptsOpt = None,
    battery: BatteryOpt = "paper-21-B",
    mode: ModeOpt = Mode.auto,
    thresholds: ThrOpt = None,
    search_thresholds: SearchThrOpt = None,
    no_chat_template: Annotated[bool, typer.Option("--no-chat-template", help="With --base-model: inversion prompts as "
                                                                          "raw text, not through the tokenizer's chat "
                                                                          "template.")] = False,
    db: DbOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Gate one adapter before loading it: exit 0 pass, 1 flagged, 3 not calibrated, not audited, or a
    low-confidence pass (thresholds fitted on too few adapters; --accept-low-confidence: exit 0).

    A Hub repo that is not in the store is fetched (pinned, verified) and scored now, from HF_ENDPOINT
    with HF_TOKEN if set (never stored or logged); a PATH is scored from disk. With --base-model the
    adapter is also probed behaviourally: a probe flag makes it FLAGGED (exit 1), a probe that could not
    run is exit 3 unless the weights flagged it. Without it the verdict judges the weights only.
    """
    import os

    from hubaudit.httpclient import hub_config_from_env
    from hubaudit.pipeline.check import check_target
    from hubaudit.pipeline.report import read_suppressions, utcnow
    from hubaudit.settings import Settings

    sups = read_suppressions(suppress)
    today = utcnow().date()
    _warn_expired(s for s in sups if s.is_expired(today))
    settings = Settings.resolve(db, config)
    hub = None if offline else hub_config_from_env(os.environ, timeout=timeout)
    live_probe = None
    with _open_store(settings.db_url, base) as store:
        if base_model is not None:
            from hubaudit.cli.probe import probe_one_kwargs
            from hubaudit.pipeline.probe import probe_one

            # Options are read (and bad files refused, exit 2) before any adapter is scored; the base's
            # probe thresholds come from this store unless files are named.
            kwargs = probe_one_kwargs(battery=battery, prompts=prompts, thresholds=thresholds, mode=mode,
                                      search_thresholds=search_thresholds, base=base, no_chat_template=no_chat_template,
                                      store=store)

            def live_probe(adapter_dir: str) -> dict:
                return probe_one(adapter_dir, base_model, **kwargs)
        result = check_target(store, target, base=base, suppressions=sups, today=today, hub=hub,
                              cache_root=settings.home / "cache", accept_low_confidence=accept_low_confidence,
                              live_probe=live_probe)  # fmt: skip
    if fmt is CheckFormat.json:
        sys.stdout.write(json_dumps(result.to_dict(), indent=2, allow_nan=True, default=str) + "\n")
    else:
        sys.stdout.write(_check_text(result))
    if result.hint:
        err_console.print(styled("Hint:", "dim", result.hint))
    raise typer.Exit(result.exit_code)
