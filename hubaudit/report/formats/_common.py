"""Helpers shared by the formats: the report as a JSON-ready dict, and short human renderings."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from hubaudit.report.model import (
    AdapterEntry,
    Calibration,
    DerivedFrom,
    DownstreamRepo,
    HubSecurity,
    Report,
    SimilarityThresholds,
    Summary,
)
from hubaudit.vocab import ProbeStatus


def iso(ts: datetime | None) -> str | None:
    """ISO-8601 in UTC with a ``Z`` (naive datetimes are taken as UTC, as the store writes them)."""
    if ts is None:
        return None
    if ts.tzinfo is not None:
        ts = ts.astimezone(timezone.utc).replace(tzinfo=None)
    return ts.isoformat(timespec="seconds") + "Z"


def calibration_dict(cal: Calibration) -> dict[str, Any]:
    return {
        "calibrated": cal.calibrated,
        "threshold_set_id": cal.threshold_set_id,
        "version": cal.version,
        "method": cal.method,
        "featureset_version": cal.featureset_version,
        "n": cal.n,
        "created_at": iso(cal.created_at),
        "strata": [
            {"stratum": s.stratum, "status": s.status, "n": s.n, "score_threshold": s.score_threshold,
             "low_confidence": s.low_confidence, "low_confidence_reason": s.low_confidence_reason,
             "thresholds": s.thresholds,
             # appended: what the verdict rule compares with in this stratum (score_threshold is the paper's)
             "decision_statistic": s.decision_statistic, "decision_threshold": s.decision_threshold}
            for s in cal.strata
        ],
        "rule": cal.rule, "decision_statistic": cal.decision_statistic, "margin_unit": cal.margin_unit,
    }


def adapter_dict(e: AdapterEntry) -> dict[str, Any]:
    """One adapter in the JSON/JSONL report (docs/reports.md "JSON report schema")."""
    return {
        "repo_id": e.repo_id,
        "sha": e.sha,
        "url": e.url,
        "status": e.status,
        "status_reason": e.reason,
        "error": e.error,
        "score": e.score,
        "flagged": e.flagged,
        "reasons": list(e.reasons),
        "features_fired": list(e.fired),
        "margin": e.margin,
        "threshold": e.threshold,
        "stratum": e.stratum,
        "threshold_set_version": e.threshold_set_version,
        "probe": e.probe,
        "probe_flagged": e.probe_flagged,
        "probe_search": search_info(e.probe),  # the recovered trigger
        "first_seen": iso(e.first_seen),
        "last_seen": iso(e.last_seen),
        "downloads": e.downloads,
        "likes": e.likes,
        "declared_base": e.declared_base,
        "provenance_mismatch": e.provenance_mismatch,
        "removed": e.removed,
        "suppressed": None if e.suppressed is None else e.suppressed.to_dict(),
        "low_confidence": e.low_confidence,
        "low_confidence_reason": e.low_confidence_reason,
        # lineage and the Hub's own scan (appended: additions keep schema_version "1")
        "derived_from": None if e.derived_from is None else e.derived_from.to_dict(),
        "hub_security": None if e.hub_security is None else e.hub_security.to_dict(),
        "downstream": [downstream_dict(d) for d in e.downstream],
        # why it is a finding, structured (appended): the deciding statistic, each fired feature, sentences
        "margin_unit": e.margin_unit,
        "decision": None if e.decision is None else e.decision.to_dict(),
        "fired_features": [f.to_dict() for f in e.fired_features],
        "evidence": list(e.evidence),
        "probe_summary": e.probe_summary,
        "source": e.source,
        "probe_calibration": e.probe_calibration,  # the calibration its probe verdict used (appended)
    }


def downstream_dict(d: DownstreamRepo) -> dict[str, Any]:
    return {"repo_id": d.repo_id, "relation": d.relation, "url": d.url}


def summary_dict(s: Summary) -> dict[str, Any]:
    return s.to_dict()


def header_dict(report: Report) -> dict[str, Any]:
    """Everything but the adapter list."""
    return {
        "schema_version": report.schema_version,
        "tool": {"name": "hubaudit", "version": report.tool_version},
        "generated_at": iso(report.generated_at),
        "base": report.base,
        "since": iso(report.since),
        "flagged_only": report.flagged_only,
        "calibration": calibration_dict(report.calibration),
        "summary": summary_dict(report.summary),
        "suppressions": {
            "active": report.suppressions_active,
            "expired": [s.to_dict() for s in report.expired_suppressions],
        },
        "similarity_thresholds": (None if report.similarity_thresholds is None
                                  else report.similarity_thresholds.to_dict()),
        # the base's stored probe calibrations in force, by kind (appended: additions keep schema_version "1")
        "probe_calibration": {k: None if ref is None else ref.to_dict() for k, ref in report.probe_calibration},
    }


def fmt_num(x: float | None, digits: int = 4) -> str:
    """Compact number: 4 significant digits, '-' for missing."""
    if x is None:
        return "-"
    return f"{x:.{digits}g}"


def fmt_margin(x: float | None) -> str:
    """Signed: + above the threshold by that much, - below it ('-' alone when not judged)."""
    return "-" if x is None else f"{x:+.3g}"


def margin_unit(report: Report) -> str:
    """The unit of the margin column ("ln(S/T)" or "σ"; "" when the base is not calibrated)."""
    return report.calibration.margin_unit or ""


def margin_help(report: Report) -> str:
    """What the margin column means, sign included."""
    stat = report.calibration.decision_statistic or "the deciding statistic"
    unit = margin_unit(report)
    how = " as ln(statistic/threshold)" if unit == "ln(S/T)" else " in robust σ" if unit == "σ" else ""
    return (f"{stat} against its threshold{how}; + = above the threshold by that much (flagged by the weights), "
            "- = below it (probe and lineage findings may be below)")


def fmt_decision(e: AdapterEntry) -> str:
    """The deciding statistic's value ('-' when not judged)."""
    return fmt_num(e.decision.value) if e.decision is not None else "-"


def fmt_count(n: int | None) -> str:
    if n is None:
        return "-"
    for unit, div in (("M", 1_000_000), ("k", 1_000)):
        if n >= div:
            return f"{n / div:.1f}{unit}"
    return str(n)


def fmt_date(ts: datetime | None) -> str:
    return "-" if ts is None else ts.strftime("%Y-%m-%d")


def probe_text(e: AdapterEntry) -> str:
    """'backdoor', 'clean' or '-' (never probed)."""
    verdict = e.probe_flagged
    if verdict is None:
        return "-"
    return "backdoor" if verdict else "clean"


def verdict_text(e: AdapterEntry) -> str:
    """One word for the adapter's state, as every human format shows it."""
    if not e.audited:
        return "not audited"
    if e.is_finding:
        return "suppressed" if e.suppressed else ("probe-confirmed" if e.probe_flagged else "flagged")
    if e.flagged is None:
        return "not judged"
    return "pass"


def state_text(e: AdapterEntry) -> str:
    """:func:`verdict_text` with the low-confidence mark: a pass (or flag) judged by a fit with too few
    adapters for its target FPR never reads as a bare one."""
    word = verdict_text(e)
    if e.low_confidence and word in ("pass", "flagged"):
        return f"{word} (low confidence: {e.low_confidence_reason})"
    return word


LOW_CONFIDENCE_HINT = ("store more adapters of the base (hubaudit crawl / hubaudit ingest) and recalibrate, or "
                       "calibrate with --reference CLEAN_ADAPTER; --min-n below what the target FPR needs is what "
                       "produces such fits")  # fmt: skip


def low_confidence_text(report: Report) -> str | None:
    """One warning when some passes were judged by low-confidence fits, naming each such fit; else None."""
    n = report.summary.low_confidence
    if not n:
        return None
    fits = dict.fromkeys(f"{s.stratum}: {s.low_confidence_reason}" for s in report.calibration.strata
                         if s.low_confidence and not s.stratum.startswith("pool:"))  # fmt: skip
    where = "; ".join(fits) if fits else "too few adapters for the target FPR"
    return (f"LOW CONFIDENCE: {n} pass(es) were judged by thresholds fitted on too few adapters ({where}); "
            f"they are not plain passes: {LOW_CONFIDENCE_HINT}")


def short_sha(sha: str | None) -> str:
    return (sha or "?")[:10]


def clip(text: str, width: int) -> str:
    """Cut to ``width`` characters, marking the cut with an ellipsis."""
    return text if len(text) <= width else text[: max(width - 1, 0)] + "…"


# ---------------------------------------------------------------- blind trigger search
_POSITIONS = ("prefix", "middle", "suffix")


def search_info(probe: dict[str, Any] | None) -> dict[str, Any] | None:
    """The blind search's outcome from a probe result: None when no search ran.

    ``status`` ok: the recovered ``trigger``, its ``attack_rate`` (mean over insertion positions),
    ``robust_rate`` (the verdict statistic), ``rates_by_mode`` per position, ``positions`` = the
    positions where it flips at least half the prompts, ``label``, ``tau``, ``flagged``; otherwise
    ``status`` and ``reason`` (e.g. skipped), so a report never shows a missing search as clean."""
    s = (probe or {}).get("search")
    if not isinstance(s, dict):
        return None
    if s.get("status") != ProbeStatus.OK:
        return {"status": s.get("status") or "unknown", "reason": s.get("reason")}
    by_mode = s.get("rates_by_mode")
    if by_mode is None:  # results stored before rates were copied to the top level
        t = next((t for t in s.get("targets", []) if t.get("label") == s.get("label")), {})
        by_mode = t.get("rates_by_mode") or {}
    return {
        "status": ProbeStatus.OK, "trigger": s.get("trigger"), "attack_rate": s.get("attack_rate"),
        "robust_rate": s.get("robust_rate", s.get("attack_rate")), "diluted_rate": s.get("diluted_rate"),
        "rates_by_mode": {m: by_mode[m] for m in _POSITIONS if m in by_mode},
        "positions": [m for m in _POSITIONS if (by_mode.get(m) or 0) >= 0.5],
        "label": s.get("label"), "tau": s.get("tau"), "flagged": s.get("flagged"),
        "forward_passes": s.get("forward_passes"),
    }


def trigger_text(probe: dict[str, Any] | None) -> str:
    """One line: ``'cf' → LABEL_0, attack rate 1.00 (prefix 1.00 / middle 1.00 / suffix 1.00)``; '-' when no search."""
    info = search_info(probe)
    if info is None:
        return "-"
    if info["status"] != ProbeStatus.OK:
        return f"search {info['status']}" + (f": {info['reason']}" if info.get("reason") else "")
    if info["trigger"] is None:
        return "no trigger found"
    rates = " / ".join(f"{m} {info['rates_by_mode'][m]:.2f}" for m in _POSITIONS if m in info["rates_by_mode"])
    robust = info.get("robust_rate")
    extra = f", robust {robust:.2f}" if robust is not None and robust != info["attack_rate"] else ""
    verdict = " [flagged]" if info.get("flagged") else ""
    return (f"{info['trigger']!r} → {info['label']}, attack rate {info['attack_rate']:.2f}{extra}"
            f"{' (' + rates + ')' if rates else ''}{verdict}")


# ---------------------------------------------------------------- lineage and the Hub's own scan
# Every helper below returns plain text holding Hub data (repo ids, shas, file paths, levels): the
# caller escapes it for its sink (hubaudit/textsafe.py), as it does every other value.

# How many downstream repos / Hub-flagged files a human format lists per adapter (json has them all).
MAX_LISTED = 25

def source_text(d: DerivedFrom) -> str:
    return f"{d.source_repo_id}@{d.source_sha}" if d.source_sha else d.source_repo_id


def why_text(e: AdapterEntry) -> str:
    """A finding's headline "why": its first evidence sentence (report/evidence.py); '-' when none."""
    return e.evidence[0] if e.evidence else "-"


def spot_checks(report: Report) -> list[AdapterEntry]:
    """Probed adapters that are not findings (the probe found nothing): one line each in human formats."""
    return [e for e in report.adapters if e.probe and not e.is_finding]


def spot_check_text(e: AdapterEntry) -> str:
    return e.probe_summary or "probed"


def thresholds_text(t: SimilarityThresholds | None) -> str:
    """The copy/derivative thresholds in force and where they come from."""
    if t is None:
        return "similarity thresholds not reported"
    head = f"copy ≥ {t.copy:.3f}, derivative ≥ {t.derivative:.3f}"
    if t.source == "calibrated":
        null = f", null max {t.null_max:.3f}" if t.null_max is not None else ""
        return f"{head} (calibrated on {t.null_pairs} pairs of independently trained adapters{null})"
    if t.source == "default":
        return f"{head} (defaults: no fingerprint calibration for this base)"
    return f"{head} ({t.source})"


def lineage_checked(report: Report) -> bool:
    """True when the report carries lineage results (thresholds in force, or a derived finding)."""
    return report.similarity_thresholds is not None or report.summary.derived > 0 or any(
        e.derived_from is not None for e in report.adapters)


def hub_issue_files(h: HubSecurity) -> list[tuple[str, str]]:
    """The (path, level) pairs the Hub did not call safe."""
    return [(p, lv) for p, lv in h.files_with_issues if lv != "safe"]


def hub_said_something(e: AdapterEntry) -> bool:
    return e.hub_security is not None and e.hub_security.status != "unknown"


def hub_security_text(h: HubSecurity | None, max_files: int = 3) -> str:
    """The Hub's scan status in one line, always marked as the Hub's and never hubaudit's verdict:
    ``Hub scan: no issues (not a hubaudit verdict)``; ``Hub scan: issues: a.bin (unsafe), ...``."""
    if h is None or h.status == "unknown":
        return "Hub scan: unknown"
    if h.status == "scanned":
        return "Hub scan: no issues (not a hubaudit verdict)"
    if h.status == "pending":
        return "Hub scan: pending (not a hubaudit verdict)"
    files = hub_issue_files(h)
    listed = ", ".join(f"{p} ({lv})" for p, lv in files[:max_files])
    more = f", +{len(files) - max_files} more" if len(files) > max_files else ""
    return f"Hub scan: issues in {len(files)} file(s): {listed}{more} (the Hub's scan, not a hubaudit verdict)"


def probe_coverage_text(report: Report) -> str:
    """``probed 12 of 40 scored revisions (28 not yet probed)``: of the scored revisions still listed,
    how many have a probe verdict."""
    s = report.summary
    return f"probed {s.probed} of {s.probed + s.not_probed} scored revisions ({s.not_probed} not yet probed)"


_PROBE_KIND_NAMES = {"probe": "battery thresholds", "search": "τ_search"}


def probe_calibration_text(report: Report) -> str | None:
    """``probe calibration in force: battery thresholds store #3 v2 of ... (calibrated: ...); τ_search none in
    the store ...``; None when the report was built without reading them."""
    if not report.probe_calibration:
        return None
    parts = [f"{_PROBE_KIND_NAMES.get(kind, kind)} "
             + (f"{ref.describe()} ({ref.source})" if ref is not None and ref.source
                else ref.describe() if ref is not None
                else "none in the store (probes use a legacy per-base file or the defaults)")
             for kind, ref in report.probe_calibration]  # fmt: skip
    return "probe calibration in force: " + "; ".join(parts)


def downstream_counts(report: Report) -> tuple[int, int]:
    """(Hub repos built on a finding, findings that have any): the summary line's downstream count."""
    with_any = [e for e in report.findings if e.downstream]
    return len({d.repo_id for e in with_any for d in e.downstream}), len(with_any)


def downstream_summary(report: Report) -> str | None:
    """``downstream of findings: 5 Hub repos built on 2 findings (3 adapter, 1 merge, 1 quantized)``; None
    when no finding has any."""
    repos, findings = downstream_counts(report)
    if not repos:
        return None
    rel: dict[str, int] = {}
    for _, relation in {(d.repo_id, d.relation) for e in report.findings for d in e.downstream}:
        rel[relation] = rel.get(relation, 0) + 1
    by = ", ".join(f"{n} {r}" for r, n in sorted(rel.items(), key=lambda x: (-x[1], x[0])))
    return f"downstream of findings: {repos} Hub repo(s) built on {findings} finding(s) ({by})"
