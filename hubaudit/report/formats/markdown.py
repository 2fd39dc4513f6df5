"""``--format markdown``: GitHub-flavoured Markdown (issue comments, step summaries, wikis).

Every value that comes from data (repo ids, shas, strata, feature names, reasons, triggers) goes
through :func:`hubaudit.textsafe.markdown`, as plain escaped text (never a code span: GFM splits
table cells on ``|`` even inside one, and a backslash cannot be escaped there). The only links
are the Hub URLs :func:`hubaudit.report.model.hub_url` builds from a valid repo id and sha.
"""

from __future__ import annotations

from hubaudit.report.evidence import source_kind_text
from hubaudit.report.formats._common import (
    MAX_LISTED,
    downstream_counts,
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
    margin_unit,
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
    why_text,
)
from hubaudit.report.formats.interface import ReportFormat
from hubaudit.report.model import AdapterEntry, Report, hub_url
from hubaudit.textsafe import markdown as md_escape


def _name(e: AdapterEntry) -> str:
    """``repo@sha`` escaped; a link only to the Hub URL the model builds from a valid repo id and sha."""
    name = md_escape(f"{e.repo_id}@{short_sha(e.sha)}")  # "@" escaped too: no e-mail autolink
    return f"[{name}]({e.url})" if e.url else name


class MarkdownFormat(ReportFormat):
    name = "markdown"
    suffix = ".md"
    media_type = "text/markdown"

    def render(self, report: Report) -> str:
        s = report.summary
        cal = report.calibration
        out = [f"# hubaudit report: {md_escape(report.base)}", ""]
        out.append(f"Generated {report.generated_at:%Y-%m-%d %H:%M} UTC by hubaudit {report.tool_version}.")
        if report.since is not None:
            out.append(f"Revisions seen since {report.since:%Y-%m-%d %H:%M} UTC.")
        # the lineage counts are columns only when the report carries lineage results
        lineage = lineage_checked(report)
        repos, _ = downstream_counts(report)
        extra_head = (" copies/derivatives |" if lineage else "") + (" downstream repos of findings |" if repos else "")
        extra = (f" {s.derived} |" if lineage else "") + (f" {repos} |" if repos else "")
        out += ["", "| population | audited | flagged | suppressed | probe-confirmed | passed "
                    "| not judged | not audited |"
                + extra_head]
        out.append("|---:|---:|---:|---:|---:|---:|---:|---:|" + "---:|" * extra.count("|"))
        out.append(
            f"| {s.population} | {s.audited} | {s.flagged} | {s.suppressed} | {s.probe_confirmed}"
            f" | {s.not_flagged}" + (f" ({s.low_confidence} low confidence)" if s.low_confidence else "")
            + f" | {s.not_judged} | {s.not_audited} |" + extra
        )
        coverage = probe_coverage_text(report)
        out += ["", coverage[0].upper() + coverage[1:] + "."]
        probe_cal = probe_calibration_text(report)
        if probe_cal:
            out += ["", md_escape(probe_cal[0].upper() + probe_cal[1:]) + "."]
        downstream = downstream_summary(report)
        if downstream:
            out += ["", md_escape(downstream[0].upper() + downstream[1:]) + "."]
        low = low_confidence_text(report)
        if low:
            out += ["", f"> **Warning:** {md_escape(low)}"]
        out += ["", "## Calibration in force", ""]
        if not cal.calibrated:
            out.append("**Not calibrated**: no active threshold set for this base; no adapter is judged clean.")
        else:
            out.append(
                f"Threshold set **v{cal.version}** ({md_escape(cal.method or '?')}, features"
                f" {md_escape(cal.featureset_version or '?')}), N = {cal.n}, fitted {fmt_date(cal.created_at)}."
            )
            if cal.strata:
                stat = md_escape(cal.decision_statistic or "?")
                paper = md_escape("global_frobN_std")
                out += ["", (f"The weights' verdict is **{stat}** against its threshold per stratum; the paper's "
                             f"statistic ({paper}, arXiv 2605.30189) is shown as secondary and decides nothing.")]
                out += ["", (f"| stratum | n | threshold: {stat} (decides) | paper statistic threshold (secondary) "
                             "| confidence |"), "|---|---:|---:|---:|---|"]
                out += [f"| {md_escape(st.stratum)} | {fmt_count(st.n)} | {fmt_num(st.decision_threshold)}"
                        f" | {fmt_num(st.score_threshold)}"
                        f" | {'low: ' + md_escape(st.low_confidence_reason or '') if st.low_confidence else 'ok'} |"
                        for st in cal.strata]  # fmt: skip

        findings = report.findings
        out += ["", f"## Flagged adapter revisions ({len(findings)})", ""]
        if findings:
            hub = any(hub_said_something(e) for e in findings)
            stat, unit = md_escape(cal.decision_statistic or "statistic"), md_escape(margin_unit(report))
            out += [f"Margin: {md_escape(margin_help(report))}.", ""]
            out.append(f"| adapter | {stat} | margin ({unit}) | why | probe | downloads | first seen | state |"
                       + (" Hub scan (not a hubaudit verdict) |" if hub else ""))
            out.append("|---|---:|---:|---|---|---:|---|---|" + ("---|" if hub else ""))
            for e in findings:
                state = verdict_text(e)
                if e.low_confidence:
                    state += f" (low confidence: {md_escape(e.low_confidence_reason or '')})"
                if e.suppressed is not None:
                    state += f" until {e.suppressed.expires.isoformat()}: {md_escape(e.suppressed.reason)}"
                hub_cell = (f" {_hub_cell(e)} |" if hub else "")
                out.append(
                    f"| {_name(e)} | {fmt_decision(e)} | {fmt_margin(e.margin)} | {md_escape(why_text(e))}"
                    f" | {probe_text(e)} | {fmt_count(e.downloads)} | {fmt_date(e.first_seen)} | {state} |" + hub_cell
                )
        else:
            out.append("None." if cal.calibrated else "None can be named: the base is not calibrated.")

        out += _evidence_section(report)
        out += _lineage_section(report)
        out += _downstream_section(report)
        out += _hub_issues_section(report)
        out += _probe_section(report)
        out += ["", f"## Not audited ({s.not_audited})", ""]
        if s.not_audited_by_reason:
            out += ["| reason | revisions |", "|---|---:|"]
            out += [f"| {md_escape(reason)} | {n} |" for reason, n in s.not_audited_by_reason.items()]
        else:
            out.append("None.")
        if report.expired_suppressions:
            out += ["", f"## Expired suppressions ({len(report.expired_suppressions)})", ""]
            for sup in report.expired_suppressions:
                target = f"{sup.repo}@{sup.sha}" if sup.sha else sup.repo
                out.append(f"- {md_escape(target)} expired {sup.expires.isoformat()}: {md_escape(sup.reason)}")
        return "\n".join(out) + "\n"


def _evidence_section(report: Report) -> list[str]:
    """Each finding's evidence sentences (report/evidence.py), then (in italics) what the checks that did not
    flag it said."""
    findings = report.findings
    if not findings:
        return []
    out = ["", "## Why each finding is flagged"]
    for e in findings:
        out += ["", f"**{_name(e)}** ({md_escape(state_text(e))})", ""]
        out += [f"- {md_escape(x)}" for x in e.evidence or ("no evidence recorded",)]
        out += [f"- _{md_escape(x)}_" for x in e.notes]
    return out


def _probe_section(report: Report) -> list[str]:
    """Probed adapters that are not findings: one line each (--format json has the probe records)."""
    spot = spot_checks(report)
    if not spot:
        return []
    return ["", f"## Probed, not flagged ({len(spot)})", "",
            *(f"- {_name(e)}: {md_escape(spot_check_text(e))}" for e in spot)]


def _hub_cell(e: AdapterEntry) -> str:
    """The Hub's own scan status for a table cell ('-' where the Hub said nothing)."""
    if not hub_said_something(e):
        return "-"
    assert e.hub_security is not None
    return md_escape(hub_security_text(e.hub_security).removeprefix("Hub scan: "))


def _lineage_section(report: Report) -> list[str]:
    """Each copy/derivative of a known-bad adapter: its source, why the source is bad, similarity, kind,
    and the thresholds in force."""
    if not lineage_checked(report):
        return []
    derived = [e for e in report.findings if e.derived_from is not None]
    out = ["", f"## Copies and derivatives ({len(derived)})", "",
           f"Thresholds in force: {md_escape(thresholds_text(report.similarity_thresholds))}.", ""]
    if not derived:
        return [*out, "None."]
    out += ["| adapter | kind | similarity | threshold | source | source is known-bad because | state |",
            "|---|---|---:|---:|---|---|---|"]
    for e in derived:
        d = e.derived_from
        assert d is not None
        src = _link_to(source_text(d), hub_url(d.source_repo_id, d.source_sha))
        out.append(f"| {_name(e)} | {md_escape(d.kind)} | {d.similarity:.3f} | {d.threshold:.3f} | {src}"
                   f" | {md_escape(source_kind_text(d.source_kind))} | {md_escape(state_text(e))} |")
    return out


def _link_to(text: str, url: str | None) -> str:
    """``text`` escaped, linked only to a URL the model built from a valid Hub id (``hub_url``)."""
    return f"[{md_escape(text)}]({url})" if url else md_escape(text)


def _downstream_section(report: Report) -> list[str]:
    """For each finding, the Hub repos that declare it as their base."""
    with_downstream = [e for e in report.findings if e.downstream]
    if not with_downstream:
        return []
    n = sum(len(e.downstream) for e in with_downstream)
    out = ["", f"## Downstream of findings ({n})", "", "| finding | relation | Hub repo |", "|---|---|---|"]
    for e in with_downstream:
        out += [f"| {_name(e)} | {md_escape(d.relation)} | {_link_to(d.repo_id, d.url)} |"
                for d in e.downstream[:MAX_LISTED]]
        if len(e.downstream) > MAX_LISTED:
            out.append(f"| {_name(e)} | … | {len(e.downstream) - MAX_LISTED} more (--format json lists them all) |")
    return out


def _hub_issues_section(report: Report) -> list[str]:
    """Adapters hubaudit did not flag but the Hub's scan reports issues on, as the Hub's word."""
    others = [e for e in report.adapters
              if not e.is_finding and e.hub_security is not None and e.hub_security.status == "issues"]
    if not others:
        return []
    out = ["", f"## Hub scan issues on adapters hubaudit did not flag ({len(others)})", "",
           "The Hub's own scan, shown beside hubaudit's verdict; not a hubaudit verdict.", "",
           "| adapter | hubaudit | file | Hub level |", "|---|---|---|---|"]
    for e in others:
        assert e.hub_security is not None
        files = hub_issue_files(e.hub_security)
        out += [f"| {_name(e)} | {md_escape(state_text(e))} | {md_escape(p)} | {md_escape(lv)} |"
                for p, lv in files[:MAX_LISTED]]
        if len(files) > MAX_LISTED:
            out.append(f"| {_name(e)} | … | {len(files) - MAX_LISTED} more | … |")
    return out
