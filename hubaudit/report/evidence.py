"""Why an adapter is a finding, in words, from structured data only (pure; stdlib only).

Inputs are the verdict breakdown (calibrate/judge.py: ``combined``, ``fired``, ``features``, ``top``,
``margin``/``margin_unit``) and the probe result (probe/prober.py battery fields,
probe/search_run.py ``search``, probe/invert.py target inversion); a copy/derivative's evidence is
its ``DerivedFrom.reason`` (model.py). No prose is parsed: a verdict stored before a structured key
existed gets what the remaining keys (and the fit in force) give, or says that the details were not
recorded.

Both are read through their typed views (hubaudit.models.VerdictBreakdown, StratumFit, ProbeResult),
never as nested dicts. Every sentence quotes data (feature names, probe prefixes, triggers, targets,
labels): it is plain text that each format escapes for its sink (hubaudit/textsafe.py). Stored results
are untrusted in shape too: a field of the wrong type is left out, never trusted.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from hubaudit.models import (
    SIDES,
    CombinedScore,
    FeatureFit,
    InvertedTarget,
    ProbeResult,
    SearchResult,
    StratumFit,
    VerdictBreakdown,
)
from hubaudit.report.model import RULE_STATISTIC, FiredFeature, WeightDecision
from hubaudit.vocab import ProbeStatus

NOT_RECORDED = "details not recorded by this version"
LISTED_FEATURES = 3  # fired features named in the one-line sentence (JSON has them all)
QUOTE_WIDTH = 80  # characters of a quoted prefix, trigger or target

_SOURCE_KIND = {
    "probe_confirmed": "a probe confirmed its backdoor",
    "blocklist": "on an imported blocklist",
    "weights_flagged": "flagged by its weights",
}


def source_kind_text(kind: str) -> str:
    """Why the source of a copy/derivative is known-bad, in words (an unknown kind is shown as is)."""
    return _SOURCE_KIND.get(kind, kind)


def _num(x: Any) -> float | None:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    v = float(x)
    return v if math.isfinite(v) else None


def _int(x: Any) -> int | None:
    return x if isinstance(x, int) and not isinstance(x, bool) else None


def _text(x: Any) -> str | None:
    return x if isinstance(x, str) else None


def _map(x: Any) -> Mapping[str, Any]:
    return x if isinstance(x, Mapping) else {}


def quote(text: str, width: int = QUOTE_WIDTH) -> str:
    """``text`` as a Python literal (quotes, control characters escaped), cut to ``width`` characters."""
    return repr(text) if len(text) <= width else repr(text[: width - 1]) + "…"


def _g(x: float | None, digits: int = 3) -> str:
    return "?" if x is None else f"{x:.{digits}g}"


def _rate(x: float | None) -> str:
    return "?" if x is None else f"{x:.2f}"


def _cmp(value: float | None, tau: float | None) -> str:
    if value is None or tau is None:
        return "vs"
    return ">" if value > tau else "≤"


# ---------------------------------------------------------------- weights
def fit_feature_margin(value: float | None, direction: str, spec: FeatureFit | Mapping[str, Any]) -> float | None:
    """How far ``value`` lies past the fit's bound on its side, in robust σ (fit.py: x = ln v when the
    feature's transform is "log"; (x − hi)/σ above, (lo − x)/σ below); None when the fit cannot say.
    ``spec`` is the feature's fit (:class:`~hubaudit.models.FeatureFit`, or its stored form)."""
    fit = spec if isinstance(spec, FeatureFit) else FeatureFit.from_dict(_map(spec))
    return fit.margin(_num(value), direction)


def fired_features(breakdown: VerdictBreakdown, fit: StratumFit | None) -> tuple[FiredFeature, ...]:
    """The features past their own thresholds: the breakdown's ``fired`` records; for breakdowns stored
    before them, its ``features`` entries with the margin recomputed from ``fit`` (the stratum's entry of
    the threshold set that judged it) where that fit has the feature."""
    if breakdown.fired is not None:
        return tuple(FiredFeature(str(r.feature), _num(r.value), _num(r.threshold), str(r.direction), _num(r.margin),
                                  _num(r.z)) for r in breakdown.fired)  # fmt: skip
    specs = (fit.features if fit is not None else None) or {}
    out: list[FiredFeature] = []
    for name, d in (breakdown.features or {}).items():
        side = d.side
        if d.fired is not True or side not in SIDES or not isinstance(name, str):
            continue
        spec = specs.get(name)
        margin = spec.margin(_num(d.value), side) if spec is not None else None
        out.append(FiredFeature(name, _num(d.value), _num(d.threshold), side, margin, _num(d.z)))
    out.sort(key=lambda f: -(f.margin if f.margin is not None else -math.inf))
    return tuple(out)


def weight_decision(breakdown: VerdictBreakdown, rule: str | None) -> WeightDecision | None:
    """The deciding statistic of a verdict: the combined statistic S against T (margin ln(S/T)) under the
    combined rule, the largest per-feature exceedance against 0 σ under the per-feature rule; None when
    the breakdown does not hold it."""
    rule = breakdown.rule or rule
    margin = _num(breakdown.margin)
    top = tuple((name, float(z)) for name, z in breakdown.top or ())
    fit, n = breakdown.fit, breakdown.n
    if rule == "combined":
        comb = breakdown.combined or CombinedScore()
        s, t = _num(comb.statistic), _num(comb.threshold)
        if s is None or t is None:
            return None
        if margin is None and s > 0 and t > 0:
            margin = math.log(s / t)
        label = RULE_STATISTIC["combined"][0] + (f" ({comb.mode})" if comb.mode else "")
        return WeightDecision("combined", label, s, t, margin, "ln(S/T)", fit, n, top)
    if rule == "per-feature" and margin is not None:
        return WeightDecision("per-feature", RULE_STATISTIC["per-feature"][0], margin, 0.0, margin, "σ", fit, n, top)
    return None


def _feature_text(f: FiredFeature) -> str:
    past = f" ({f.margin:+.3g} σ)" if f.margin is not None else ""
    if f.value is None or f.threshold is None:
        return f"{f.feature} ({f.direction} its threshold{past.replace(' (', ', ').rstrip(')')})"
    return f"{f.feature} {_g(f.value, 4)} {f.direction} {_g(f.threshold, 4)}{past}"


def _fired_text(fired: tuple[FiredFeature, ...]) -> str:
    listed = ", ".join(_feature_text(f) for f in fired[:LISTED_FEATURES])
    more = f", +{len(fired) - LISTED_FEATURES} more" if len(fired) > LISTED_FEATURES else ""
    return listed + more


def _fit_text(d: WeightDecision) -> str:
    parts = [f"fit {d.fit}" if d.fit else "", f"n={d.n}" if d.n is not None else ""]
    return "; ".join(p for p in parts if p)


def weight_sentences(flagged: bool | None, decision: WeightDecision | None, fired: tuple[FiredFeature, ...],
                     margin: float | None, unit: str | None) -> list[str]:  # fmt: skip
    """Why the weights flagged it (``flagged``), or that they did not and by how much (a finding on other
    grounds shows it beside its evidence)."""
    if flagged is None:
        return []
    if decision is None:
        if not flagged:
            return []
        m = f" (margin {margin:+.3g}{' ' + unit if unit else ''})" if margin is not None else ""
        out = [f"weights: flagged{m}; {NOT_RECORDED}"]
        if fired:
            out.append(f"features past their own thresholds ({len(fired)}): {_fired_text(fired)}")
        return out
    where = _fit_text(decision)
    where = f"; {where}" if where else ""
    margin_text = "?" if decision.margin is None else f"{decision.margin:+.3g}"
    if not flagged:
        if decision.rule == "per-feature":
            return [f"weights did not flag it: no feature past its threshold (closest at {margin_text} σ{where})"]
        line = (f"weights did not flag it: {decision.statistic} {_g(decision.value)} below its threshold "
                f"{_g(decision.threshold)} (margin {margin_text} {decision.unit}{where})")
        return [line]
    if decision.rule == "per-feature":
        count = ("1 feature past its threshold" if len(fired) == 1
                 else f"{len(fired) or 'some'} features past their thresholds")
        head = f"weights: {count} (largest {margin_text} σ{where})"
        return [head + (f": {_fired_text(fired)}" if fired else f"; {NOT_RECORDED}")]
    tops = ", ".join(f"{name} {z:+.1f}" for name, z in decision.top)
    head = (f"weights: {decision.statistic} {_g(decision.value)} above its threshold {_g(decision.threshold)} "
            f"(margin {margin_text} {decision.unit}{where})")
    out = [head + (f"; largest robust z: {tops}" if tops else "")]
    if fired:
        out.append(f"features past their own thresholds ({len(fired)}): {_fired_text(fired)}")
    return out


# ---------------------------------------------------------------- probes
ProbeLike = ProbeResult | Mapping[str, Any] | None


def _result(probe: ProbeLike) -> ProbeResult:
    """The typed view of a probe result (the stored dict or a :class:`ProbeResult`); None is an empty one."""
    if isinstance(probe, ProbeResult):
        return probe
    return ProbeResult.from_dict(probe) if isinstance(probe, Mapping) else ProbeResult()


def _battery_name(p: ProbeResult) -> str:
    if isinstance(p.battery, Mapping):
        name, version = p.battery_name, p.battery_version
        if name is None:
            return "battery"
        return f"battery {name}" + (f" v{version}" if version is not None else "")
    return f"battery {p.battery}" if p.battery is not None else "battery"


def _taus(p: ProbeResult) -> tuple[float | None, float | None, str]:
    th = p.thresholds or {}
    n_clean = _int(th.get("n_clean"))
    where = f"τ from {n_clean} clean adapters" if n_clean else ("paper's fixed τ" if th else "")
    return _num(th.get("gap")), _num(th.get("mean")), where


def _battery_stats(p: ProbeResult) -> str:
    gap, mean = _num(p.outlier_gap), _num(p.mean_attack_rate)
    t_gap, t_mean, where = _taus(p)
    parts = []
    if gap is not None:
        parts.append(f"outlier gap {_rate(gap)}"
                     + (f" {_cmp(gap, t_gap)} τ_gap {_rate(t_gap)}" if t_gap is not None else ""))
    if mean is not None:
        parts.append(f"mean attack rate {_rate(mean)}"
                     + (f" {_cmp(mean, t_mean)} τ_mean {_rate(t_mean)}" if t_mean is not None else ""))
    return ", ".join(parts) + (f" ({where})" if where and parts else "")


def _top_probe(p: ProbeResult) -> tuple[str, float, int] | None:
    """(prefix, attack rate, how many prefixes reach 0.5) of the battery's strongest prefix."""
    rows = [(r["prefix"], _num(r.get("attack_rate"))) for r in p.probes or () if isinstance(r.get("prefix"), str)]
    rows = [(prefix, rate) for prefix, rate in rows if rate is not None]
    if not rows:
        return None
    prefix, rate = max(rows, key=lambda pr: pr[1])
    return prefix, rate, sum(1 for _, r in rows if r >= 0.5)


def _flips(rate: float, n: int | None) -> str:
    return f"{round(rate * n)}/{n} prompts" if n else f"a rate of {_rate(rate)}"


def battery_sentence(probe: ProbeLike) -> str:
    """The battery's strongest prefix and what it flips, with the detector's statistics and thresholds."""
    p = _result(probe)
    name, stats = _battery_name(p), _battery_stats(p)
    top = _top_probe(p)
    if top is None:
        return f"{name}: {stats or 'flagged'}; per-prefix rates not recorded"
    prefix, rate, strong = top
    n, label = p.n_eligible, p.target_label
    if label is not None:
        what = f"prefix {quote(prefix)} flips {_flips(rate, n)} to {label} (attack rate {_rate(rate)})"
    else:  # generative: a flip is a changed greedy continuation where the base's stays the same
        what = (f"prefix {quote(prefix)} changes the adapter's continuation (the base model's unchanged) on "
                f"{_flips(rate, n)} (attack rate {_rate(rate)})")
    n_probes = len(p.probes or ())
    strong_text = f"; {strong} of {n_probes} prefixes ≥ 0.50" if strong > 1 else ""
    return f"{name}: {what}{strong_text}" + (f"; {stats}" if stats else "")


def _search_count(s: SearchResult) -> str:
    """' on k/n prompts at <placement>' for the recovered trigger at its best placement (n = the confirmation
    prompts, search.py); '' when the result does not hold the counts."""
    rate = _num((s.rates_by_mode or {}).get(s.mode or ""))
    eligible, confirm = _int(s.target_record().get("n_eligible")), _int((s.config or {}).get("n_confirm"))
    if rate is None or not eligible:
        return ""
    n = min(eligible, confirm) if confirm is not None else eligible
    return f" on {round(rate * n)}/{n} prompts at {s.mode}"


def _rates_by_mode(s: SearchResult) -> str:
    by = s.rates_by_mode or {}
    return " / ".join(f"{m} {_rate(_num(by.get(m)))}" for m in ("prefix", "middle", "suffix") if m in by)


def search_sentence(search: SearchResult | Mapping[str, Any] | None) -> str | None:
    """The blind search's recovered trigger (or the inverted target) when it flagged; None otherwise."""
    s = search if isinstance(search, SearchResult) else SearchResult.from_dict(_map(search))
    if not s.ok or s.flagged is not True:
        return None
    if s.is_inversion:
        return inversion_sentence(s)
    tau, trigger, label = _num(s.tau), s.trigger, s.label
    robust, attack = _num(s.robust_rate), _num(s.attack_rate)
    verdict = f"robust rate {_rate(robust)} {_cmp(robust, tau)} τ_search {_rate(tau)}"
    if trigger is None:
        return f"blind search flagged it ({verdict}); trigger not recorded"
    if label == "generation_changed":
        what = f"inserting {quote(trigger)} changes the adapter's continuation (the base model's unchanged)"
    else:
        what = f"recovered trigger {quote(trigger)} → {label or 'the target label'}"
    rates = _rates_by_mode(s)
    return (f"blind search {what}{_search_count(s)} (attack rate {_rate(attack)}, {verdict}"
            + (f"; {rates}" if rates else "") + ")")


def inversion_sentence(search: SearchResult | Mapping[str, Any]) -> str:
    """Target inversion (BAIT, IEEE S&P 2025, base-relative): the forced continuation and the trigger."""
    s = search if isinstance(search, SearchResult) else SearchResult.from_dict(search)
    inv = s.inverted or InvertedTarget()
    target, score, tau = inv.target, _num(inv.target_score), _num(s.tau)
    qa, qb = _num(inv.q_adapter), _num(inv.q_base)
    parts = f" = Q_adapter {_rate(qa)} − Q_base {_rate(qb)}" if qa is not None and qb is not None else ""
    head = (f"target inversion: forced continuation {quote(target) if target is not None else '(not recorded)'} "
            f"(score {_rate(score)}{parts}, {_cmp(score, tau)} τ {_rate(tau)})")
    trigger, rate = s.trigger, _num(s.trigger_rate)
    if trigger is None:
        return head + "; no trigger recovered"
    where = s.trigger_mode
    return head + f"; recovered trigger {quote(trigger)} makes the adapter emit it at rate {_rate(rate)}" + (
        f" ({where})" if where else "")


def calibration_text(probe: ProbeLike) -> str | None:
    """The calibration a probe verdict was judged under, from the result's ``calibration`` record:
    ``judged under probe thresholds store #3 v2 of ... (fingerprint ...); τ_search defaults (uncalibrated)``;
    None when the result records none (results written before probe calibrations were recorded)."""
    refs = _result(probe).calibration_refs()
    parts = [f"{label} {refs[kind].describe()}"
             for kind, label in (("probe", "probe thresholds"), ("search", "τ_search"))
             if kind in refs]  # fmt: skip
    return "judged under " + "; ".join(parts) if parts else None


def probe_sentences(probe: ProbeLike) -> list[str]:
    """Why the probe flagged it: the battery's sentence when the battery flagged, the search's or the
    inversion's when it did; [] when the probe did not flag."""
    p = _result(probe)
    if p.flagged is not True:
        return []
    out = []
    if p.battery_flagged is True:
        out.append(battery_sentence(p))
    s = search_sentence(p.search or SearchResult())
    if s is not None:
        out.append(s)
    out = out or [f"probe flagged it ({_battery_name(p)}); {NOT_RECORDED}"]
    cal = calibration_text(p)
    return out + [f"probe verdict {cal}"] if cal else out


def probe_summary(probe: ProbeLike) -> str | None:
    """One line on a probe that did not flag (a spot check, or a weight finding the probe did not confirm):
    ``probed: no backdoor found (battery B v1: max attack rate 0.00, ...; blind search: ...)``; None
    when never probed or when the probe flagged."""
    if not probe:
        return None
    p = _result(probe)
    if p.flagged is True:
        return None
    # a result stored without a status is an ok one (rows written before it was recorded)
    status = p.status if p.status is not None or "status" in p.stored_keys else ProbeStatus.OK
    if status != ProbeStatus.OK:
        why = p.reason or str(status)
        return f"probe did not complete ({why}): not judged by the probe"
    if p.flagged is not False:
        return "probed: verdict not recorded"
    mx, gap, mean = _num(p.max_attack_rate), _num(p.outlier_gap), _num(p.mean_attack_rate)
    t_gap, t_mean, _ = _taus(p)
    stats = ", ".join(x for x in (
        f"max attack rate {_rate(mx)}" if mx is not None else "",
        f"gap {_rate(gap)}" + (f" {_cmp(gap, t_gap)} τ {_rate(t_gap)}" if t_gap is not None else "")
        if gap is not None else "",
        f"mean {_rate(mean)}" + (f" {_cmp(mean, t_mean)} τ {_rate(t_mean)}" if t_mean is not None else "")
        if mean is not None else "",
    ) if x)  # fmt: skip
    parts = [f"{_battery_name(p)}" + (f": {stats}" if stats else "")]
    s = p.search
    if s is not None and s.ok:
        tau = _num(s.tau)
        if s.is_inversion:
            score = _num((s.inverted or InvertedTarget()).target_score)
            parts.append(f"target inversion: best score {_rate(score)} {_cmp(score, tau)} τ {_rate(tau)}")
        else:
            robust, trig = _num(s.robust_rate), s.trigger
            best = f"{quote(trig, 40)} " if trig is not None else ""
            parts.append(f"blind search: {best}robust rate {_rate(robust)} {_cmp(robust, tau)} τ {_rate(tau)}")
    elif s is not None and s.to_dict():
        why = s.reason
        parts.append(f"blind search {s.status or 'not run'}" + (f": {why}" if why else ""))
    cal = calibration_text(p)
    return f"probed: no backdoor found ({'; '.join(parts)})" + (f"; {cal}" if cal else "")
