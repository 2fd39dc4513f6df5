"""``--format markdown``: GitHub-flavoured Markdown (issue comments, step summaries, wikis).

Every value that comes from data (repo ids, shas, strata, feature names, reasons, triggers) goes
through :func:`hubaudit.textsafe.markdown`, as plain escaped text (never a code span: GFM splits
table cells on ``|`` even inside one, and a backslash cannot be escaped there). The only links
are the Hub URLs :func:`hubaudit.report.model.hub_url` builds from a valid repo id and sha.
"""

from __future__ import annotations

from hubaudit.report.formats._common import (
    fired_names,
    fmt_count,
    fmt_date,
    fmt_margin,
    fmt_num,
    low_confidence_text,
    probe_text,
    search_info,
    short_sha,
    trigger_text,
    verdict_text,
)
from hubaudit.report.formats.interface import ReportFormat
from hubaudit.report.model import AdapterEntry, Report
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
        out += ["", "| population | audited | flagged | suppressed | probe-confirmed | passed | not judged | not audited |"]
        out.append("|---:|---:|---:|---:|---:|---:|---:|---:|")
        out.append(
            f"| {s.population} | {s.audited} | {s.flagged} | {s.suppressed} | {s.probe_confirmed}"
            f" | {s.not_flagged}" + (f" ({s.low_confidence} low confidence)" if s.low_confidence else "")
            + f" | {s.not_judged} | {s.not_audited} |"
        )
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
                out += ["", "| stratum | n | score threshold | confidence |", "|---|---:|---:|---|"]
                out += [f"| {md_escape(st.stratum)} | {fmt_count(st.n)} | {fmt_num(st.score_threshold)}"
                        f" | {'low: ' + md_escape(st.low_confidence_reason or '') if st.low_confidence else 'ok'} |"
                        for st in cal.strata]  # fmt: skip

        findings = report.findings
        out += ["", f"## Flagged adapter revisions ({len(findings)})", ""]
        if findings:
            out.append("| adapter | score | margin (σ) | features fired | probe | downloads | first seen | state |")
            out.append("|---|---:|---:|---|---|---:|---|---|")
            for e in findings:
                state = verdict_text(e)
                if e.low_confidence:
                    state += f" (low confidence: {md_escape(e.low_confidence_reason or '')})"
                fired = md_escape(fired_names(e.reasons)) or "-"
                if e.suppressed is not None:
                    state += f" until {e.suppressed.expires.isoformat()}: {md_escape(e.suppressed.reason)}"
                out.append(
                    f"| {_name(e)} | {fmt_num(e.score)} | {fmt_margin(e.margin)} | {fired}"
                    f" | {probe_text(e)} | {fmt_count(e.downloads)} | {fmt_date(e.first_seen)} | {state} |"
                )
        else:
            out.append("None." if cal.calibrated else "None can be named: the base is not calibrated.")

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


def _probe_section(report: Report) -> list[str]:
    """Every probed adapter (flagged or a spot check) with its battery numbers and recovered trigger."""
    probed = [e for e in report.adapters if e.probe]
    if not probed:
        return []
    out = ["", f"## Behavioural probes ({len(probed)})", "",
           "| adapter | probe | outlier gap | mean attack rate | recovered trigger | trigger attack rate | fires at |",
           "|---|---|---:|---:|---|---:|---|"]
    for e in probed:
        info = search_info(e.probe)
        if info is None:
            trig, rate, where = "-", "-", "-"
        elif info["status"] != "ok":
            trig, rate, where = md_escape(trigger_text(e.probe)), "-", "-"
        else:
            trig = md_escape(repr(info["trigger"])) if info["trigger"] is not None else "none"
            rate = fmt_num(info["attack_rate"], 3)
            where = md_escape(", ".join(f"{m} {r:.2f}" for m, r in info["rates_by_mode"].items())) or "-"
        out.append(f"| {_name(e)} | {probe_text(e)} | {fmt_num(e.probe.get('outlier_gap'), 3)}"
                   f" | {fmt_num(e.probe.get('mean_attack_rate'), 3)} | {trig} | {rate} | {where} |")
    return out
