"""``--format table`` (default): the terminal report, plain text that fits ``width`` columns (default 100).

Only findings are listed one by one (a population has thousands of passes); passes are counted, and
``--format json``/``csv`` list every revision.
"""

from __future__ import annotations

import textwrap

from hubaudit.report.evidence import source_kind_text
from hubaudit.report.formats._common import (
    MAX_LISTED,
    clip,
    downstream_summary,
    fmt_count,
    fmt_date,
    fmt_decision,
    fmt_margin,
    fmt_num,
    hub_issue_files,
    hub_said_something,
    hub_security_text,
    lineage_checked,
    low_confidence_text,
    margin_help,
    probe_calibration_text,
    probe_coverage_text,
    probe_text,
    short_sha,
    source_text,
    spot_check_text,
    spot_checks,
    state_text,
    thresholds_text,
    verdict_text,
)
from hubaudit.report.formats.interface import ReportFormat
from hubaudit.report.model import AdapterEntry, Calibration, Report
from hubaudit.textsafe import terminal

# Fixed columns of the findings table (the first is the deciding statistic, named per rule in _STAT);
# the repo column takes what is left.
_FIXED = (("stat", 9), ("margin", 9), ("probe", 10), ("downloads", 10), ("first seen", 11), ("state", 17))
_STAT = {"combined": "D²/K", "per-feature": "max σ"}
# Lines one evidence sentence may wrap to (JSON has every sentence whole).
_EVIDENCE_LINES = 3
# The fixed columns plus a usable repo column (narrower and the findings table had no room for it).
MIN_WIDTH = sum(w for _, w in _FIXED) + 14


def _fit(text: str, width: int) -> str:
    """One line (or cell) of the table: escaped for the terminal, since it quotes adapter data (repo
    ids, shas, strata, reasons, the declared base), then cut to ``width``."""
    return clip(terminal(text), width)


def _rule(width: int, title: str = "") -> str:
    if not title:
        return "─" * width
    head = f"── {title} "
    return head + "─" * max(width - len(head), 0)


def calibration_lines(cal: Calibration, width: int) -> list[str]:
    """The calibration block: version, method, N, and the threshold per stratum."""
    if not cal.calibrated:
        return [_fit("NOT CALIBRATED: no active threshold set for this base; no adapter is judged clean.", width)]
    created = fmt_date(cal.created_at)
    out = [
        _fit(
            f"threshold set v{cal.version} · {cal.method or '?'} · features {cal.featureset_version or '?'}"
            f" · N={cal.n} · fitted {created}",
            width,
        )
    ]
    if cal.strata:
        out += _wrap(f"verdict: {cal.decision_statistic or '?'} against its threshold per stratum; the paper's "
                     "statistic (global_frobN_std, arXiv 2605.30189) is shown as secondary and decides nothing", width)
        name_w = max(10, width - 2 - 8 - 12 - 12)
        out.append(f"  {'stratum':<{name_w}}{'n':>8}{'threshold':>12}{'paper thr.':>12}")
        for s in cal.strata:
            out.append(f"  {_fit(s.stratum, name_w):<{name_w}}{fmt_count(s.n):>8}{fmt_num(s.decision_threshold):>12}"
                       f"{fmt_num(s.score_threshold):>12}")
            if s.low_confidence and not s.stratum.startswith("pool:"):
                out.append(_fit(f"    low confidence: {s.low_confidence_reason}", width))
    return out


def _wrap(text: str, width: int, indent: str = "", more: str = "  ", max_lines: int = _EVIDENCE_LINES) -> list[str]:
    """``text`` escaped for the terminal and wrapped (not clipped) to ``width``, at most ``max_lines`` lines."""
    return textwrap.wrap(terminal(text), width, initial_indent=indent, subsequent_indent=indent + more,
                         max_lines=max_lines, placeholder=" …", break_on_hyphens=False)


def _finding_lines(e: AdapterEntry, repo_w: int, width: int) -> list[str]:
    repo = _fit(f"{e.repo_id}@{short_sha(e.sha)[:8]}", repo_w - 1)
    cells = (
        fmt_decision(e),
        fmt_margin(e.margin),
        probe_text(e),
        fmt_count(e.downloads),
        fmt_date(e.first_seen),
        verdict_text(e),
    )
    line = f"{repo:<{repo_w}}" + "".join(f" {c:>{w - 1}}" for c, (_, w) in zip(cells[:-1], _FIXED[:-1]))
    line += f"  {cells[-1]:<{_FIXED[-1][1] - 2}}"
    out = [_fit(line.rstrip(), width)]
    if e.low_confidence:
        out += _wrap(f"weights judged with low confidence: {e.low_confidence_reason}", width, indent="    ",
                     max_lines=2)
    for sentence in e.evidence or ("no evidence recorded",):  # wrapped, not clipped: each number matters
        out += _wrap("why: " + sentence, width, indent="    ", more="     ")
    for note in e.notes:
        out += _wrap(note, width, indent="    ", more="  ")
    if hub_said_something(e):
        out += _hub_lines(e, width)
    if e.suppressed is not None:
        out.append(_fit(f"    suppressed until {e.suppressed.expires.isoformat()}: {e.suppressed.reason}", width))
    if e.provenance_mismatch:
        out.append(_fit(f"    declared base: {e.declared_base}", width))
    if e.url:
        out.append(_fit("    " + e.url, width))
    return out


def _hub_lines(e: AdapterEntry, width: int, indent: str = "    ") -> list[str]:
    """The Hub's own scan status: one line, then one line per file the Hub did not call safe."""
    assert e.hub_security is not None
    files = hub_issue_files(e.hub_security)
    if not files:
        return [_fit(indent + hub_security_text(e.hub_security), width)]
    out = [_fit(f"{indent}Hub scan: issues in {len(files)} file(s) (the Hub's scan, not a hubaudit verdict)", width)]
    out += [_fit(f"{indent}  {level}: {path}", width) for path, level in files[:MAX_LISTED]]
    if len(files) > MAX_LISTED:
        out.append(_fit(f"{indent}  … {len(files) - MAX_LISTED} more (--format json lists them all)", width))
    return out


def lineage_lines(report: Report, width: int) -> list[str]:
    """The "Copies and derivatives" section (thresholds in force, then each derived finding) and the
    "Downstream of findings" section; [] when the report has no lineage results."""
    out: list[str] = []
    derived = [e for e in report.findings if e.derived_from is not None]
    if lineage_checked(report):
        out += ["", _rule(width, f"Copies and derivatives ({len(derived)})"),
                *textwrap.wrap(terminal("thresholds in force: " + thresholds_text(report.similarity_thresholds)),
                               width, subsequent_indent="  ")]
        for e in derived:
            d = e.derived_from
            assert d is not None
            out.append(_fit(f"{e.repo_id}@{short_sha(e.sha)[:8]}  {d.kind}, similarity {d.similarity:.3f}"
                            f" (≥ {d.threshold:.3f})  {verdict_text(e)}", width))
            out.append(_fit(f"    source: {source_text(d)}", width))
            out.append(_fit(f"    source is known-bad: {source_kind_text(d.source_kind)}", width))
        if not derived:
            out.append("none")
    with_downstream = [e for e in report.findings if e.downstream]
    if with_downstream:
        n = sum(len(e.downstream) for e in with_downstream)
        out += ["", _rule(width, f"Downstream of findings ({n})")]
        for e in with_downstream:
            out.append(_fit(f"{e.repo_id}@{short_sha(e.sha)[:8]}  {verdict_text(e)}: {len(e.downstream)} Hub repo(s)"
                            " declare it as their base", width))
            for ds in e.downstream[:MAX_LISTED]:
                out.append(_fit(f"    {ds.relation:<10} {ds.repo_id}" + (f"  {ds.url}" if ds.url else ""), width))
            if len(e.downstream) > MAX_LISTED:
                out.append(_fit(f"    … {len(e.downstream) - MAX_LISTED} more (--format json lists them all)", width))
    return out


def hub_issue_lines(report: Report, width: int) -> list[str]:
    """Adapters hubaudit did not flag but the Hub's scan reports issues on (the Hub's word, shown as such)."""
    others = [e for e in report.adapters
              if not e.is_finding and e.hub_security is not None and e.hub_security.status == "issues"]
    if not others:
        return []
    out = ["", _rule(width, f"Hub scan issues on adapters hubaudit did not flag ({len(others)})")]
    for e in others:
        out.append(_fit(f"{e.repo_id}@{short_sha(e.sha)[:8]}  hubaudit: {state_text(e)}", width))
        out += _hub_lines(e, width)
    return out


class TableFormat(ReportFormat):
    name = "table"
    suffix = ".txt"
    media_type = "text/plain"

    def __init__(self, width: int = 100) -> None:
        self.width = max(int(width), MIN_WIDTH)

    def render(self, report: Report) -> str:
        w = self.width
        s = report.summary
        out = [_fit(f"hubaudit report · {report.base} · {report.generated_at:%Y-%m-%d %H:%M} UTC", w)]
        if report.since is not None:
            out.append(_fit(f"revisions seen since {report.since:%Y-%m-%d %H:%M} UTC", w))
        out.append(_fit(f"population {s.population} · audited {s.audited} · not audited {s.not_audited}", w))
        out.append(
            _fit(
                f"flagged {s.flagged} ({s.suppressed} suppressed, {s.probe_confirmed} probe-confirmed)"
                f" · passed {s.not_flagged}" + (f" ({s.low_confidence} low confidence)" if s.low_confidence else "")
                + f" · not judged {s.not_judged}"
                + (f" · base mismatch {s.provenance_mismatch}" if s.provenance_mismatch else ""),
                w,
            )
        )
        out.append(_fit(probe_coverage_text(report), w))
        probe_cal = probe_calibration_text(report)
        if probe_cal:  # wrapped, not clipped: the fingerprint at its end names the calibration
            out += textwrap.wrap(terminal(probe_cal), w)
        if lineage_checked(report):
            out.append(_fit(f"copies/derivatives of known-bad adapters {s.derived}", w))
        downstream = downstream_summary(report)
        if downstream:
            out.append(_fit(downstream, w))
        low = low_confidence_text(report)
        if low:  # a wrapped warning, not clipped: it is the one thing a reader of this report must see
            out += ["", *textwrap.wrap(terminal(low), w)]
        out += ["", _rule(w, "Calibration in force"), *calibration_lines(report.calibration, w)]

        findings = report.findings
        out += ["", _rule(w, f"Flagged adapter revisions ({len(findings)})")]
        if findings:
            repo_w = w - sum(width for _, width in _FIXED)
            names = [_STAT.get(report.calibration.rule or "", "stat"), *(name for name, _ in _FIXED[1:])]
            header = f"{'repo@sha':<{repo_w}}" + "".join(f" {name:>{width - 1}}" for name, (_, width)
                                                         in zip(names[:-1], _FIXED[:-1]))  # fmt: skip
            out += _wrap("margin: " + margin_help(report), w, more="  ", max_lines=4)
            out.append((header + f"  {names[-1]}").rstrip())
            for e in findings:
                out += _finding_lines(e, repo_w, w)
        else:
            out.append("none" if report.calibration.calibrated else "none can be named: the base is not calibrated")

        out += lineage_lines(report, w)
        out += hub_issue_lines(report, w)

        spot = spot_checks(report)
        if spot:  # probed but not flagged (spot checks): one entry each, --format json has the records
            out += ["", _rule(w, f"Probed, not flagged ({len(spot)})")]
            for e in spot:
                out += _wrap(f"{e.repo_id}@{short_sha(e.sha)[:8]}  {spot_check_text(e)}", w, more="    ", max_lines=2)

        out += ["", _rule(w, f"Not audited ({s.not_audited})")]
        if s.not_audited_by_reason:
            parts = [terminal(f"{reason} {n}") for reason, n in s.not_audited_by_reason.items()]
            line = ""
            for part in parts:  # wrap the "reason count" list at the width
                candidate = f"{line} · {part}" if line else part
                if len(candidate) > w and line:
                    out.append(clip(line, w))
                    candidate = part
                line = candidate
            out.append(_fit(line, w))
        else:
            out.append("none")

        if report.expired_suppressions:
            out += ["", _rule(w, f"Expired suppressions ({len(report.expired_suppressions)})")]
            for sup in report.expired_suppressions:
                target = f"{sup.repo}@{sup.sha}" if sup.sha else sup.repo
                out.append(_fit(f"{target} expired {sup.expires.isoformat()}: {sup.reason}", w))
        return "\n".join(line.rstrip() for line in out) + "\n"
