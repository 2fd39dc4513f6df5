"""Turn store rows into a :class:`Report` (pure: no database, no clock, no printing).

The pipeline (``hubaudit/pipeline/report.py``) does the store queries and passes plain rows in.
Rows may be the store's frozen dataclasses (``AuditRow``, ``ThresholdSetRow``) or mappings with the
same field names, so this module never imports the store.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import date, datetime
from typing import Any

from hubaudit.models import CalibrationRef, StratumFit, ThresholdSet, VerdictBreakdown
from hubaudit.report import evidence
from hubaudit.report.model import (
    AUDITED_STATUS,
    HUB_URL,
    RULE_STATISTIC,
    AdapterEntry,
    Calibration,
    DerivedFrom,
    DownstreamRepo,
    HubSecurity,
    NormMap,
    Report,
    SimilarityThresholds,
    StoredFile,
    StratumCalibration,
    Summary,
    Suppression,
)
from hubaudit.report.suppress import match_suppression
from hubaudit.vocab import StratumStatus


def field_of(row: Any, name: str, default: Any = None) -> Any:
    """``row.name`` for dataclass rows, ``row[name]`` for mappings."""
    if isinstance(row, Mapping):
        return row.get(name, default)
    return getattr(row, name, default)


def _finite(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def threshold_set_of(row: Any) -> ThresholdSet:
    """The typed view of a stored threshold set: a ``ThresholdSet`` as is, else from a row's (a
    ``ThresholdSetRow`` or a mapping with its field names) method, n, featureset_version, strata and params."""
    if isinstance(row, ThresholdSet):
        return row
    typed = getattr(row, "threshold_set", None)
    if isinstance(typed, ThresholdSet):
        return typed
    stored = {k: field_of(row, k) for k in ("method", "n", "featureset_version", "params", "strata")}
    return ThresholdSet.from_dict({k: v for k, v in stored.items() if v is not None})


def _decision_threshold(ts: ThresholdSet, key: str, rule: str) -> float | None:
    """The threshold the rule compares with in one stratum: the combined fit's T, or 0 σ per feature."""
    fit = ts.judging_fit(key)
    if fit is None:
        return None
    if rule == "per-feature":
        return 0.0
    if fit.combined is None or not fit.combined.calibrated:
        return None
    return _finite(fit.combined.threshold)


def _status(fit: StratumFit) -> str | None:
    """The stored status word of an entry, a word this version does not know as stored; a flat layout
    (no status) is calibrated."""
    if fit.flat:
        return StratumStatus.CALIBRATED
    stored: str | None = fit.status if fit.status is not None else fit.extra.get("status")
    return stored


def calibration_from(threshold_set: Any | None) -> Calibration:
    """The Calibration block from an active ``ThresholdSetRow`` (or None: not calibrated)."""
    if threshold_set is None:
        return Calibration(calibrated=False)
    ts = threshold_set_of(threshold_set)
    rule = ts.rule
    strata = []
    for key, fit in sorted((ts.strata or {}).items()):
        strata.append(
            StratumCalibration(
                stratum=key,
                n=None if fit.bare else fit.n,
                score_threshold=ts.score_threshold(key),
                status=_status(fit),
                fit=fit,
                low_confidence_reason=ts.low_confidence_reason(key),
                decision_statistic=RULE_STATISTIC[rule][0],
                decision_threshold=_decision_threshold(ts, key, rule),
            )
        )
    return Calibration(
        rule=rule,
        calibrated=True,
        threshold_set_id=field_of(threshold_set, "id"),
        version=field_of(threshold_set, "version"),
        method=field_of(threshold_set, "method"),
        featureset_version=field_of(threshold_set, "featureset_version"),
        n=field_of(threshold_set, "n"),
        created_at=field_of(threshold_set, "created_at"),
        strata=tuple(strata),
    )


def _reason_text(item: Any) -> str:
    """A breakdown reason as one short string (calibrate may store strings or small dicts)."""
    if isinstance(item, Mapping):
        name = item.get("feature") or item.get("name") or item.get("rule") or "?"
        detail = item.get("detail") or item.get("text")
        return f"{name}: {detail}" if detail else str(name)
    return str(item)


# Bounds on the Hub's security scan block read from a revision's provenance (Hub data: untrusted).
_HUB_SECURITY_FILES = 200
_HUB_SECURITY_TEXT = 512


def hub_security_from(provenance: Any) -> HubSecurity | None:
    """The Hub's scan status from a revision's ``provenance["hub_security"]`` (``{"scans_done": bool|null,
    "files_with_issues": [{"path", "level"}]}``); None when the Hub said nothing. Malformed parts are
    dropped, never trusted: a scans_done that is not a boolean reads as unknown."""
    block = provenance.get("hub_security") if isinstance(provenance, Mapping) else None
    if not isinstance(block, Mapping):
        return None
    done = block.get("scans_done")
    files = block.get("files_with_issues")
    issues = []
    for f in (files if isinstance(files, list) else [])[:_HUB_SECURITY_FILES]:
        if isinstance(f, Mapping) and isinstance(f.get("path"), str) and isinstance(f.get("level"), str):
            issues.append((f["path"][:_HUB_SECURITY_TEXT], f["level"][:_HUB_SECURITY_TEXT]))
    return HubSecurity(scans_done=done if isinstance(done, bool) else None, files_with_issues=tuple(issues))


def _source(row: Any) -> str | None:
    """Where the store has the repo from: "local" for ingested paths (``local:`` ids, ``adapters.source`` or
    the revision's provenance saying so), "hub" for a Hub listing, None when the row does not say."""
    provenance = field_of(row, "provenance")
    source = field_of(row, "source")
    if str(field_of(row, "repo_id") or "").startswith("local:") or (
            isinstance(provenance, Mapping) and provenance.get("source") == "local"):  # fmt: skip
        return "local"
    endpoint = provenance.get("endpoint") if isinstance(provenance, Mapping) else None
    if isinstance(endpoint, str) and endpoint.rstrip("/") != HUB_URL:
        return "mirror"  # crawled from another endpoint (a mirror, a proxy, a loopback Hub): no huggingface.co link
    return source if isinstance(source, str) else None


def entry_from_row(
    row: Any, base: str, calibration: Calibration, suppressions: Sequence[Suppression], today: date,
    derived_from: DerivedFrom | None = None,
) -> AdapterEntry:
    """One :class:`AdapterEntry` from an ``AuditRow`` (flagged/margin/reasons from its stored breakdown).

    ``derived_from``: the known-bad adapter this revision is a copy or derivative of (a finding of its
    own, kept out of ``reasons``, which hold the weight verdict's feature reasons only). ``decision``,
    ``fired_features`` and ``evidence`` come from the structured parts of the breakdown and of the
    probe result (report/evidence.py), never from their prose."""
    repo_id = field_of(row, "repo_id")
    sha = field_of(row, "sha")
    status = field_of(row, "status") or "unknown"
    typed = getattr(row, "verdict_breakdown", None)
    breakdown = typed if isinstance(typed, VerdictBreakdown) else VerdictBreakdown.of(field_of(row, "breakdown"))
    flagged = field_of(row, "flagged")
    ts_id = field_of(row, "threshold_set_id")
    # A verdict from an older threshold set is stale: the report speaks for the calibration in force.
    if not calibration.calibrated or (ts_id is not None and ts_id != calibration.threshold_set_id):
        flagged = None
    stratum = field_of(row, "stratum")
    strat_cal = calibration.stratum(stratum)
    # The margin is judged over every feature (calibrate/judge.py); the threshold shown is the score's,
    # from the fit that judged it (the stratum's own, or its pool's: the breakdown's ``fit``).
    fit_key = breakdown.fit if flagged is not None else None
    fit_cal = calibration.stratum(fit_key) if fit_key else None
    threshold = fit_cal.score_threshold if fit_cal is not None else None
    if threshold is None and strat_cal is not None:
        threshold = strat_cal.score_threshold
    reasons = tuple(_reason_text(r) for r in (breakdown.reasons or ())) if flagged is not None else ()
    low = None
    if flagged is not None and status == AUDITED_STATUS:
        # the verdict's own mark; verdicts stored before it existed fall back to the fit's
        if breakdown.low_confidence:
            low = breakdown.low_confidence_reason or "too few adapters for the target FPR"
        if low is None and "low_confidence" not in breakdown.stored_keys:
            low = (fit_cal or strat_cal).low_confidence_reason if (fit_cal or strat_cal) is not None else None
    declared = field_of(row, "declared_base")
    judged = flagged is not None and status == AUDITED_STATUS
    bd = breakdown if judged and breakdown.stored_keys else None
    judging = fit_cal or strat_cal
    decision = evidence.weight_decision(bd, calibration.rule) if bd is not None else None
    fired = evidence.fired_features(bd, judging.fit if judging is not None else None) if bd is not None else ()
    margin = _finite(bd.margin) if bd is not None else None
    unit = bd.margin_unit if bd is not None else None
    unit = unit or (decision.unit if decision is not None else calibration.margin_unit if judged else None)
    probe = field_of(row, "probe")
    return AdapterEntry(
        repo_id=repo_id,
        sha=sha,
        status=status,
        reason=field_of(row, "reason"),
        error=field_of(row, "error"),
        score=_finite(field_of(row, "score")) if status == AUDITED_STATUS else None,
        flagged=None if status != AUDITED_STATUS else (None if flagged is None else bool(flagged)),
        reasons=reasons,
        margin=margin,
        threshold=threshold,
        stratum=stratum,
        threshold_set_version=calibration.version if flagged is not None else None,
        probe=probe,
        first_seen=field_of(row, "first_seen"),
        last_seen=field_of(row, "last_seen"),
        downloads=field_of(row, "downloads"),
        likes=field_of(row, "likes"),
        declared_base=declared,
        provenance_mismatch=bool(declared) and declared != base,
        removed=bool(field_of(row, "removed", False)),
        suppressed=match_suppression(suppressions, repo_id, sha, today),
        revision_id=field_of(row, "revision_id"),
        low_confidence_reason=low,
        files=StoredFile.from_rows(field_of(row, "files")),
        derived_from=derived_from,
        hub_security=hub_security_from(field_of(row, "provenance")),
        margin_unit=unit,
        decision=decision,
        fired_features=fired,
        weight_evidence=tuple(evidence.weight_sentences(None if not judged else bool(flagged), decision, fired, margin,
                                                        unit)),
        probe_evidence=tuple(evidence.probe_sentences(probe)),
        probe_summary=evidence.probe_summary(probe),
        probe_calibration=evidence.calibration_text(probe),
        source=_source(row),
    )


def summarize(entries: Iterable[AdapterEntry]) -> Summary:
    """Counts over every entry (the whole population, before --flagged-only filtering)."""
    entries = list(entries)
    audited = [e for e in entries if e.audited]
    findings = [e for e in entries if e.is_finding]
    not_audited = Counter((e.reason or e.status) for e in entries if not e.audited)
    probe_eligible = [e for e in audited if not e.removed]
    return Summary(
        population=len(entries),
        audited=len(audited),
        flagged=len(findings),
        flagged_unsuppressed=sum(1 for e in findings if e.suppressed is None),
        suppressed=sum(1 for e in findings if e.suppressed is not None),
        not_flagged=sum(1 for e in audited if e.flagged is False and not e.is_finding),
        not_judged=sum(1 for e in audited if e.flagged is None and not e.is_finding),
        probe_confirmed=sum(1 for e in entries if e.probe_flagged),
        not_audited=sum(not_audited.values()),
        not_audited_by_reason=dict(sorted(not_audited.items(), key=lambda kv: (-kv[1], kv[0]))),
        provenance_mismatch=sum(1 for e in entries if e.provenance_mismatch),
        low_confidence=sum(1 for e in entries if e.audited and e.low_confidence_pass),
        derived=sum(1 for e in entries if e.derived_from is not None),
        probed=sum(1 for e in probe_eligible if e.probe_flagged is not None),
        not_probed=sum(1 for e in probe_eligible if e.probe_flagged is None),
    )


def _sort_key(e: AdapterEntry) -> tuple:
    # Findings first (probe-confirmed, then copies/derivatives of known-bad adapters, then by margin),
    # then the rest by score, highest first.
    return (
        not e.is_finding,
        not e.probe_flagged,
        e.derived_from is None,
        -(e.margin if e.margin is not None else -math.inf),
        -(e.score if e.score is not None else -math.inf),
        e.repo_id,
    )


def _grid(modules: Iterable[Mapping[str, Any]]) -> dict[tuple[int, str], float]:
    """(layer, projection) → frob_norm; modules without a layer index (embeddings) use layer -1."""
    out: dict[tuple[int, str], float] = {}
    for m in modules:
        v = _finite(m.get("frob_norm"))
        if v is None:
            continue
        layer = m.get("layer")
        out[(-1 if layer is None else int(layer), str(m.get("projection") or m.get("name")))] = v
    return out


def norm_map(
    repo_id: str, sha: str | None, modules: Sequence[Mapping[str, Any]],
    population: Sequence[Sequence[Mapping[str, Any]]]
) -> NormMap | None:
    """Heat-map data: this adapter's per-(layer, projection) norms and the population median per cell."""
    own = _grid(modules)
    if not own:
        return None
    grids = [g for g in (_grid(p) for p in population) if g]
    layers = tuple(sorted({k[0] for k in own}))
    projections = tuple(sorted({k[1] for k in own}))
    adapter_rows, median_rows = [], []
    for layer in layers:
        adapter_rows.append(tuple(own.get((layer, p)) for p in projections))
        row = []
        for p in projections:
            vals = [g[(layer, p)] for g in grids if (layer, p) in g]
            row.append(statistics.median(vals) if vals else None)
        median_rows.append(tuple(row))
    return NormMap(repo_id, sha, layers, projections, tuple(adapter_rows), tuple(median_rows), len(grids))


def build_report(
    base: str,
    rows: Iterable[Any],
    threshold_set: Any | None,
    *,
    generated_at: datetime,
    tool_version: str,
    today: date,
    suppressions: Sequence[Suppression] = (),
    since: datetime | None = None,
    flagged_only: bool = False,
    norm_maps: Sequence[NormMap] = (),
    similarity: SimilarityThresholds | None = None,
    derived: Mapping[int, DerivedFrom] | None = None,
    downstream: Mapping[str, Sequence[tuple[str, str]]] | None = None,
    probe_calibration: Mapping[str, CalibrationRef | None] | None = None,
) -> Report:
    """Assemble the Report for ``base`` from its audit rows and active threshold set.

    ``today`` decides which suppressions have expired (expired ones are listed, and suppress nothing).
    ``similarity``: the copy/derivative thresholds in force; ``derived``: revision id → the known-bad
    adapter it is a copy or derivative of (the lineage flow computes both); ``probe_calibration``: the
    base's stored probe and τ_search calibrations in force by kind (None: none stored); ``downstream``: repo id →
    (child repo id, relation) of the Hub repos built on it, attached to findings. A derived finding is
    suppressed only by a suppression that names the derived adapter itself, never by its source's.
    """
    calibration = calibration_from(threshold_set)
    live = [s for s in suppressions if not s.is_expired(today)]
    expired = tuple(s for s in suppressions if s.is_expired(today))
    derived = derived or {}
    entries = [entry_from_row(r, base, calibration, live, today, derived.get(field_of(r, "revision_id"))) for r in rows]
    if downstream:
        entries = [replace(e, downstream=tuple(DownstreamRepo(c, rel, e.hub_sourced)
                                               for c, rel in downstream.get(e.repo_id, ())))
                   if e.is_finding and e.repo_id in downstream else e for e in entries]  # fmt: skip
    entries.sort(key=_sort_key)
    listed = [e for e in entries if e.is_finding] if flagged_only else entries
    return Report(
        base=base,
        generated_at=generated_at,
        tool_version=tool_version,
        calibration=calibration,
        summary=summarize(entries),
        adapters=tuple(listed),
        population_scores=tuple((e.stratum or "?", e.score) for e in entries if e.score is not None),
        decision_scores=tuple((e.decision.fit or e.stratum or "?", e.decision.value) for e in entries
                              if e.flagged is not None and e.decision is not None and e.decision.value is not None),
        norm_maps=tuple(norm_maps),
        since=since,
        flagged_only=flagged_only,
        suppressions_active=len(live),
        expired_suppressions=expired,
        similarity_thresholds=similarity,
        probe_calibration=tuple((probe_calibration or {}).items()),
    )
