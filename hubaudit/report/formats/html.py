"""``--format html``: one self-contained page (inline CSS, base64 PNG plots, no scripts, no external URLs
other than the links to the adapters on the Hub).

Every value from data is written through :func:`hubaudit.textsafe.html` (the one HTML escape); links
are only the Hub URLs :func:`hubaudit.report.model.hub_url` builds from a valid repo id and sha; plot
labels are never parsed as mathtext (formats/_plots.py)."""

from __future__ import annotations

import base64

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
from hubaudit.report.formats._plots import decision_histogram, norm_heatmaps
from hubaudit.report.formats.interface import ReportFormat
from hubaudit.report.model import AdapterEntry, Report, hub_url
from hubaudit.textsafe import (
    html as escape,  # html.escape, control and bidi characters shown as escapes
)

# Heat maps are a PNG each: cap them so a population with many findings still yields a usable file.
MAX_HEATMAPS = 50

_CSS = """
:root{--ink:#111827;--muted:#6b7280;--line:#e5e7eb;--bg:#f8fafc;--flag:#dc2626;--warn:#d97706;--ok:#059669}
*{box-sizing:border-box}
body{margin:0;font:14px/1.5 -apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;color:var(--ink);
background:var(--bg)}
header{background:#0f172a;color:#f8fafc;padding:22px 32px}
header h1{margin:0;font-size:20px;font-weight:600}
header .sub{color:#cbd5e1;font-size:13px;margin-top:4px}
main{max-width:1180px;margin:0 auto;padding:20px 32px 48px}
section{background:#fff;border:1px solid var(--line);border-radius:8px;padding:18px 22px;margin:18px 0}
h2{font-size:16px;margin:0 0 12px}
h3{font-size:14px;margin:18px 0 8px}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(112px,1fr));gap:12px}
.card{border:1px solid var(--line);border-radius:8px;padding:10px 14px;background:#fff}
.card .n{font-size:24px;font-weight:600}
.card .l{color:var(--muted);font-size:12px;text-transform:uppercase;letter-spacing:.04em}
.card.flag .n{color:var(--flag)} .card.warn .n{color:var(--warn)}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{text-align:left;padding:6px 8px;border-bottom:1px solid var(--line);vertical-align:top}
th{color:var(--muted);font-weight:600;font-size:12px;text-transform:uppercase;letter-spacing:.03em}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td.nw{white-space:nowrap}
code{font:12px/1.4 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;background:#f1f5f9;padding:1px 4px;
border-radius:4px}
.badge{display:inline-block;padding:1px 8px;border-radius:999px;font-size:12px;font-weight:600}
.b-flagged,.b-probe-confirmed{background:#fee2e2;color:#991b1b}.b-suppressed{background:#fef3c7;color:#92400e}
.b-notcal{background:#e0e7ff;color:#3730a3}
.alert{border-left:4px solid var(--flag);background:#fef2f2;padding:10px 14px;border-radius:4px}
.muted{color:var(--muted)} a{color:#1d4ed8;text-decoration:none} a:hover{text-decoration:underline}
img.plot{max-width:100%;height:auto;display:block;margin:6px 0}
.finding{border-top:1px solid var(--line);padding-top:12px;margin-top:12px}
table.kv{width:auto;min-width:360px} table.kv th{text-transform:none;letter-spacing:0;font-size:13px;
color:var(--muted);font-weight:500;padding-right:24px}
footer{color:var(--muted);font-size:12px;text-align:center;margin-top:24px}
ul.evidence{margin:4px 0 8px;padding-left:20px} ul.evidence li{margin:2px 0}
ul.spot{list-style:none;margin:0;padding:0;font-size:12px} ul.spot li{padding:3px 0;border-bottom:1px solid var(--line)}
td.why{min-width:280px;max-width:440px}
"""


def _img(png: bytes | None, alt: str, css_id: str | None = None, cls: str = "plot") -> str:
    if not png:
        return f'<p class="muted">{escape(alt)}: no data.</p>'
    data = base64.b64encode(png).decode("ascii")
    id_attr = f' id="{css_id}"' if css_id else ""
    return f'<img{id_attr} class="{cls}" alt="{escape(alt)}" src="data:image/png;base64,{data}">'


def _badge(e: AdapterEntry) -> str:
    text = verdict_text(e)
    return f'<span class="badge b-{text.replace(" ", "-")}">{escape(text)}</span>'


def _link(e: AdapterEntry) -> str:
    label = f"{escape(e.repo_id)}@<code>{escape(short_sha(e.sha))}</code>"
    return _a(label, e.url)


def _a(label: str, url: str | None) -> str:
    """``label`` (already HTML) as a link to ``url``, which only :func:`hubaudit.report.model.hub_url` builds
    (from a valid Hub repo id and sha); the bare label when there is none."""
    if url:
        return f'<a href="{escape(url)}" rel="noopener noreferrer">{label}</a>'
    return label


def _cards(report: Report) -> str:
    s = report.summary
    items = [
        ("population", s.population, ""), ("audited", s.audited, ""), ("flagged", s.flagged_unsuppressed, "flag"),
        ("probe-confirmed", s.probe_confirmed, "flag"), ("suppressed", s.suppressed, "warn"),
        ("passed", s.not_flagged, ""), ("not judged", s.not_judged, "warn"), ("not audited", s.not_audited, "warn"),
        ("probed", s.probed, ""), ("not yet probed", s.not_probed, "warn" if s.not_probed else ""),
    ]
    if s.low_confidence:
        items.insert(6, ("passed, low confidence", s.low_confidence, "warn"))
    if lineage_checked(report):
        items.insert(4, ("copies / derivatives", s.derived, "flag"))
    repos, _ = downstream_counts(report)
    if repos:
        items.append(("downstream repos of findings", repos, "warn"))
    cards = "".join(f'<div class="card {c}"><div class="n">{n}</div><div class="l">{escape(label)}</div></div>'
                    for label, n, c in items)
    low = low_confidence_text(report)
    alert = f'<div class="alert" id="low-confidence">{escape(low)}</div>' if low else ""
    coverage = probe_coverage_text(report)
    alert += f'<p id="probe-coverage">{escape(coverage[0].upper() + coverage[1:])}.</p>'
    probe_cal = probe_calibration_text(report)
    if probe_cal:
        alert += f'<p id="probe-calibration">{escape(probe_cal[0].upper() + probe_cal[1:])}.</p>'
    downstream = downstream_summary(report)
    if downstream:
        alert += f'<p id="downstream-summary">{escape(downstream[0].upper() + downstream[1:])}.</p>'
    return f'<section id="summary"><h2>Summary</h2><div class="cards">{cards}</div>{alert}</section>'


def _calibration(report: Report) -> str:
    cal = report.calibration
    if not cal.calibrated:
        body = ('<div class="alert"><strong>Not calibrated.</strong> No active threshold set for this base: '
                'no adapter is judged clean. Run <code>hubaudit calibrate --base BASE</code>.</div>')
    else:
        stat = escape(cal.decision_statistic or "?")
        body = (f"<p>Threshold set <strong>v{cal.version}</strong> · method <code>{escape(cal.method or '?')}</code> · "
                f"features <code>{escape(cal.featureset_version or '?')}</code> · N = {cal.n} · fitted "
                f"{fmt_date(cal.created_at)}</p><p>The weights' verdict is <strong>{stat}</strong> against its "
                "threshold per stratum; the paper's statistic (global_frobN_std, arXiv 2605.30189) is shown "
                "beside it and decides nothing.</p>")
        if cal.strata:
            rows = "".join(f"<tr><td><code>{escape(s.stratum)}</code></td><td class=num>{fmt_count(s.n)}</td>"
                           f"<td class=num>{fmt_num(s.decision_threshold)}</td>"
                           f"<td class=num>{fmt_num(s.score_threshold)}</td>"
                           f"<td>{'low: ' + escape(s.low_confidence_reason or '') if s.low_confidence else 'ok'}"
                           "</td></tr>"
                           for s in cal.strata)  # fmt: skip
            body += (f'<table id="calibration-table"><thead><tr><th>stratum</th><th class=num>n</th>'
                     f"<th class=num>threshold: {stat} (decides)</th>"
                     "<th class=num>paper statistic threshold (secondary)</th>"
                     f"<th>confidence</th></tr></thead><tbody>{rows}</tbody></table>")
    return f'<section id="calibration"><h2>Calibration in force</h2>{body}</section>'


def _evidence(e: AdapterEntry) -> str:
    """The finding's evidence sentences, then (muted) what the checks that did not flag it said."""
    items = [f"<li>{escape(x)}</li>" for x in e.evidence]
    items += [f'<li class="muted">{escape(x)}</li>' for x in e.notes]
    if not items:
        items.append('<li class="muted">No evidence recorded.</li>')
    return f'<ul class="evidence">{"".join(items)}</ul>'


def _spot_checks(report: Report) -> str:
    """Probed adapters that are not findings: one line each (the full probe records are in --format json)."""
    spot = spot_checks(report)
    if not spot:
        return ""
    items = "".join(f'<li class="spot-check" id="spot-check-{i}">{_link(e)}: {escape(spot_check_text(e))}</li>'
                    for i, e in enumerate(spot))
    return (f'<section id="spot-checks"><h2>Probed, not flagged ({len(spot)})</h2><ul class="spot">{items}</ul>'
            '<p class="muted">Full probe records: <code>--format json</code>.</p></section>')


def _findings(report: Report) -> str:
    findings = report.findings
    if not findings:
        msg = "None." if report.calibration.calibrated else "None can be named: the base is not calibrated."
        return f'<section id="findings"><h2>Flagged adapter revisions (0)</h2><p class="muted">{msg}</p></section>'
    hub = any(hub_said_something(e) for e in findings)
    stat = escape(report.calibration.decision_statistic or "statistic")
    unit = escape(margin_unit(report))
    head = (f"<tr><th>adapter</th><th class=num title='the statistic that decides the weight verdict'>{stat}</th>"
            f"<th class=num title='{escape(margin_help(report))}'>margin {unit}</th><th>why</th>"
            "<th>probe</th><th class=num>downloads</th><th>first seen</th><th>state</th>"
            + ("<th title='the Hub&#x27;s own scan, not a hubaudit verdict'>Hub scan</th>" if hub else "") + "</tr>")
    rows = "".join(
        f'<tr class="finding-row"><td>{_link(e)}</td><td class=num>{fmt_decision(e)}</td>'
        f'<td class=num>{fmt_margin(e.margin)}</td><td class="why">{escape(why_text(e))}</td>'
        f"<td>{probe_text(e)}</td><td class=num>{fmt_count(e.downloads)}</td><td class=nw>{fmt_date(e.first_seen)}</td>"
        f"<td>{_badge(e)}</td>" + (f'<td class="hub-scan">{_hub_cell(e)}</td>' if hub else "") + "</tr>"
        for e in findings
    )
    details = []
    for i, e in enumerate(findings):
        parts = [f'<div class="finding" id="finding-{i}"><h3>{_link(e)} {_badge(e)}</h3>', _evidence(e)]
        if e.low_confidence:
            parts.append(f"<p>Low confidence: {escape(e.low_confidence_reason or '')}</p>")
        if e.suppressed is not None:
            parts.append(f"<p>Suppressed until {e.suppressed.expires.isoformat()}: {escape(e.suppressed.reason)}</p>")
        if e.derived_from is not None:
            parts.append('<p class="derived muted">Source, similarity and thresholds: see Copies and derivatives.</p>')
        if hub_said_something(e):
            parts.append(_hub_block(e))
        nm = report.norm_map(e.repo_id, e.sha)
        if nm is not None and i < MAX_HEATMAPS:
            parts.append(_img(norm_heatmaps(nm), f"norm heat map of {e.repo_id}", cls="plot heatmap"))
        details.append("".join(parts) + "</div>")
    return (f'<section id="findings"><h2>Flagged adapter revisions ({len(findings)})</h2>'
            f'<p class="muted">Margin: {escape(margin_help(report))}. Full probe records: '
            '<code>--format json</code>.</p>'
            f"<table><thead>{head}</thead><tbody>{rows}</tbody></table>{''.join(details)}</section>")


def _hub_cell(e: AdapterEntry) -> str:
    """The Hub's own scan status in a table cell: its word, never a hubaudit verdict."""
    if not hub_said_something(e):
        return '<span class="muted">-</span>'
    assert e.hub_security is not None
    return escape(hub_security_text(e.hub_security).removeprefix("Hub scan: "))


def _hub_block(e: AdapterEntry) -> str:
    """The Hub's scan status of one revision, with each file it did not call safe and its level."""
    assert e.hub_security is not None
    files = hub_issue_files(e.hub_security)
    if not files:
        return f'<p class="hub-scan">{escape(hub_security_text(e.hub_security))}.</p>'
    items = "".join(f"<li><code>{escape(p)}</code>: {escape(lv)}</li>" for p, lv in files[:MAX_LISTED])
    if len(files) > MAX_LISTED:
        items += f"<li>{len(files) - MAX_LISTED} more (--format json lists them all)</li>"
    return (f'<div class="hub-scan"><p>Hub scan: issues in {len(files)} file(s) (the Hub&#x27;s own scan, not a '
            f"hubaudit verdict):</p><ul>{items}</ul></div>")


def _lineage(report: Report) -> str:
    """Copies and derivatives of known-bad adapters: source, why it is bad, similarity, kind, thresholds."""
    if not lineage_checked(report):
        return ""
    derived = [e for e in report.findings if e.derived_from is not None]
    thresholds = ('<p id="similarity-thresholds">Thresholds in force: '
                  f'{escape(thresholds_text(report.similarity_thresholds))}.</p>')
    if not derived:
        body = '<p class="muted">None.</p>'
    else:
        rows = []
        for e in derived:
            d = e.derived_from
            assert d is not None
            src = _a(escape(source_text(d)), hub_url(d.source_repo_id, d.source_sha))
            rows.append(f'<tr class="derived-row"><td>{_link(e)}</td><td>{escape(d.kind)}</td>'
                        f"<td class=num>{d.similarity:.3f}</td><td class=num>{d.threshold:.3f}</td><td>{src}</td>"
                        f"<td>{escape(source_kind_text(d.source_kind))}</td><td>{escape(state_text(e))}</td></tr>")
        body = ("<table><thead><tr><th>adapter</th><th>kind</th><th class=num>similarity</th>"
                "<th class=num>threshold</th><th>source</th><th>source is known-bad because</th>"
                "<th>state</th></tr></thead>"
                f"<tbody>{''.join(rows)}</tbody></table>")
    return f'<section id="derived"><h2>Copies and derivatives ({len(derived)})</h2>{thresholds}{body}</section>'


def _downstream(report: Report) -> str:
    """For each finding, the Hub repos that declare it as their base (linked only when a valid Hub id)."""
    with_downstream = [e for e in report.findings if e.downstream]
    if not with_downstream:
        return ""
    rows = []
    for e in with_downstream:
        rows += [f'<tr class="downstream-row"><td>{_link(e)}</td><td>{escape(d.relation)}</td>'
                 f"<td>{_a(escape(d.repo_id), d.url)}</td></tr>" for d in e.downstream[:MAX_LISTED]]
        if len(e.downstream) > MAX_LISTED:
            rows.append(f"<tr><td>{_link(e)}</td><td></td><td>{len(e.downstream) - MAX_LISTED} more "
                        "(--format json lists them all)</td></tr>")
    n = sum(len(e.downstream) for e in with_downstream)
    return (f'<section id="downstream"><h2>Downstream of findings ({n})</h2><table><thead><tr><th>finding</th>'
            f"<th>relation</th><th>Hub repo</th></tr></thead><tbody>{''.join(rows)}</tbody></table></section>")


def _hub_issues(report: Report) -> str:
    """Adapters hubaudit did not flag but the Hub's scan reports issues on, as the Hub's word."""
    others = [e for e in report.adapters
              if not e.is_finding and e.hub_security is not None and e.hub_security.status == "issues"]
    if not others:
        return ""
    blocks = "".join(f'<div class="hub-issue"><h3>{_link(e)} <span class="muted">hubaudit: {escape(state_text(e))}'
                     f"</span></h3>{_hub_block(e)}</div>" for e in others)
    return (f'<section id="hub-issues"><h2>Hub scan issues on adapters hubaudit did not flag ({len(others)})</h2>'
            f"{blocks}</section>")


def _not_audited(report: Report) -> str:
    s = report.summary
    if not s.not_audited_by_reason:
        body = '<p class="muted">None.</p>'
    else:
        rows = "".join(f"<tr><td><code>{escape(r)}</code></td><td class=num>{n}</td></tr>"
                       for r, n in s.not_audited_by_reason.items())
        body = ("<table><thead><tr><th>reason</th><th class=num>revisions</th></tr></thead>"
                f"<tbody>{rows}</tbody></table>")
    return f'<section id="not-audited"><h2>Not audited ({s.not_audited})</h2>{body}</section>'


def _expired(report: Report) -> str:
    if not report.expired_suppressions:
        return ""
    items = "".join(f"<li><code>{escape(s.repo)}{'@' + escape(s.sha) if s.sha else ''}</code> expired "
                    f"{s.expires.isoformat()}: {escape(s.reason)}</li>" for s in report.expired_suppressions)
    return f'<section id="expired-suppressions"><h2>Expired suppressions</h2><ul>{items}</ul></section>'


class HtmlFormat(ReportFormat):
    name = "html"
    suffix = ".html"
    media_type = "text/html"

    def render(self, report: Report) -> str:
        hist = decision_histogram([v for _, v in report.decision_scores], report.calibration.strata,
                                  report.findings, report.base, report.calibration.rule)
        since = f" · revisions since {report.since:%Y-%m-%d}" if report.since else ""
        body = "".join([
            _cards(report),
            _calibration(report),
            '<section id="distribution"><h2>The statistic that decides</h2>'
            + _img(hist, f"distribution of {report.calibration.decision_statistic or 'the deciding statistic'}",
                   css_id="score-histogram") + "</section>",
            _findings(report),
            _lineage(report),
            _downstream(report),
            _hub_issues(report),
            _spot_checks(report),
            _not_audited(report),
            _expired(report),
        ])
        return (
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            '<meta name="viewport" content="width=device-width, initial-scale=1"><link rel="icon" href="data:,">'
            f"<title>hubaudit report · {escape(report.base)}</title><style>{_CSS}</style></head><body>"
            f'<header><h1>hubaudit report · {escape(report.base)}</h1><div class="sub">generated '
            f"{report.generated_at:%Y-%m-%d %H:%M} UTC · hubaudit {escape(report.tool_version)}{since}</div></header>"
            f"<main>{body}<footer>Weight-level verdicts are triage: escalate flagged adapters to behavioural probing."
            "</footer></main></body></html>\n"
        )
