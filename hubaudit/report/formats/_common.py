"""Helpers shared by the formats: the report as a JSON-ready dict, and short human renderings."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from hubaudit.report.model import AdapterEntry, Calibration, Report, Summary


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
             "thresholds": s.thresholds}
            for s in cal.strata
        ],
    }


def adapter_dict(e: AdapterEntry) -> dict[str, Any]:
    """One adapter in the JSON/JSONL report (README "JSON report schema")."""
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
    }


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
    }


def fmt_num(x: float | None, digits: int = 4) -> str:
    """Compact number: 4 significant digits, '-' for missing."""
    if x is None:
        return "-"
    return f"{x:.{digits}g}"


def fmt_margin(x: float | None) -> str:
    return "-" if x is None else f"{x:+.3g}"


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


def fired_names(reasons: tuple[str, ...] | list[str]) -> str:
    """Short "features fired" text: the feature names of judge.py's reasons (``name=value above ...``)."""
    names = [r.split("=", 1)[0].strip() if "=" in r else r for r in reasons]
    return ", ".join(dict.fromkeys(names))


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
    if s.get("status") != "ok":
        return {"status": s.get("status") or "unknown", "reason": s.get("reason")}
    by_mode = s.get("rates_by_mode")
    if by_mode is None:  # results stored before rates were copied to the top level
        t = next((t for t in s.get("targets", []) if t.get("label") == s.get("label")), {})
        by_mode = t.get("rates_by_mode") or {}
    return {
        "status": "ok", "trigger": s.get("trigger"), "attack_rate": s.get("attack_rate"),
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
    if info["status"] != "ok":
        return f"search {info['status']}" + (f": {info['reason']}" if info.get("reason") else "")
    if info["trigger"] is None:
        return "no trigger found"
    rates = " / ".join(f"{m} {info['rates_by_mode'][m]:.2f}" for m in _POSITIONS if m in info["rates_by_mode"])
    robust = info.get("robust_rate")
    extra = f", robust {robust:.2f}" if robust is not None and robust != info["attack_rate"] else ""
    verdict = " [flagged]" if info.get("flagged") else ""
    return (f"{info['trigger']!r} → {info['label']}, attack rate {info['attack_rate']:.2f}{extra}"
            f"{' (' + rates + ')' if rates else ''}{verdict}")
