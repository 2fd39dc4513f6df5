"""Judge adapters' features against a fitted threshold set (hubaudit.calibrate.fit).

The threshold set's ``params["verdict"]`` picks the rule that sets ``flagged`` and ``margin``
(older threshold sets without it: "per-feature"):

* combined (default): S = the combined statistic of the stratum's ``combined`` fit (combined.py:
  D²/K of the robust z over every calibrated feature, Ledoit–Wolf-shrunk correlation);
  flagged when S > T, margin = ln(S/T) (> 0 exactly when flagged).
* per-feature: per feature x = transform(value); z = (x − loc)/scale; fired when x > hi
  (up/both) or x < lo (down/both); flagged = any feature fired (Bonferroni split in fit.py);
  margin = the largest signed exceedance in σ: (x − hi)/σ or (lo − x)/σ.

Whatever the rule, each breakdown also carries the other one: ``per_feature`` (its flag and margin,
plus a detail entry per fired feature) and ``paper`` (the paper's statistic global_frobN_std against
its own per-feature threshold, arXiv 2605.30189), and ``combined`` when fitted. A stratum without a
calibrated fit (or pool) gives flagged=None ("not calibrated", never clean) and margin None.
A verdict judged by a low-confidence fit (fit.py, "Low confidence") carries ``low_confidence: true``
and ``low_confidence_reason``: callers must not present its pass as a plain pass.

:func:`judge_many` is the vectorised implementation (one numpy pass per fitted stratum; a base
with 100,000 adapters is re-judged on every calibration); :func:`judge` is the one-adapter view.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any, cast

import numpy as np

from hubaudit.calibrate._robust import feature_matrix
from hubaudit.calibrate.combined import score_matrix
from hubaudit.calibrate.fit import low_confidence, pool_key
from hubaudit.models import (
    PAPER_FEATURE,
    VERDICT_BREAKDOWN_VERSION,
    VERDICT_BREAKDOWN_VERSION_KEY,
    ThresholdSet,
    VerdictBreakdown,
)
from hubaudit.vocab import StratumStatus

Breakdown = dict[str, Any]  # the stored form of a breakdown; VerdictBreakdown is its typed view
Verdict = tuple[bool | None, Breakdown]
ThresholdSetLike = ThresholdSet | Mapping[str, Any]  # the typed set, or its stored form (fit's output)


def _stored(threshold_set: ThresholdSetLike) -> Mapping[str, Any]:
    return threshold_set.to_dict() if isinstance(threshold_set, ThresholdSet) else threshold_set


def resolve(stratum: str, threshold_set: ThresholdSetLike) -> tuple[str | None, Mapping[str, Any] | None, str]:
    """The fit that applies to ``stratum``: its own, its pool's, or none (with the reason)."""
    threshold_set = _stored(threshold_set)
    strata = threshold_set["strata"]
    entry = strata.get(stratum)
    if entry is not None and entry.get("status") == StratumStatus.CALIBRATED:
        return stratum, entry, ""
    pk = pool_key(stratum)
    pool = strata.get(pk)
    if pool is not None and pool.get("status") == StratumStatus.CALIBRATED:
        return pk, pool, ""
    min_n = threshold_set.get("params", {}).get("min_n")
    if entry is None:
        why = f"stratum {stratum} was not in the calibration population"
    else:
        why = f"stratum {stratum} has n={entry.get('n')} < min_n={min_n}"
    if pool is not None:
        why += f" and its pool has n={pool.get('n')}"
    return None, None, why


def judge(features: Mapping[str, float | None], stratum: str, threshold_set: ThresholdSetLike) -> Verdict:
    """(flagged, breakdown) for one adapter; flagged None = not calibrated (never "clean").

    ``threshold_set`` is a :class:`~hubaudit.models.ThresholdSet` or the dict :func:`hubaudit.calibrate.fit`
    returns (or a stored one with the same ``strata`` and ``params``). The breakdown is in its stored form
    (:func:`judge_typed` gives the typed view)::

        {"verdict": "combined" | "per-feature",  # the rule that set flagged and margin
         "reasons": [...],            # the verdict's line first, then the paper statistic's line,
                                      #   then one per fired feature, largest exceedance first
         "margin": float | None,      # > 0 exactly when flagged (ln(S/T) or σ, see module docstring)
         "stratum": str, "fit": str,  # the threshold-set entry used (stratum or its pool): it
         "source": str, "n": int,     #   holds every threshold; source stratum/pool/reference
         "low_confidence": bool,      # the fit had too few adapters for its target FPR (fit.py)
         "low_confidence_reason": str | None,  # e.g. "fitted on 3 adapters; 19 needed for 5 % FPR"
         "combined": {"statistic", "threshold", "mode", "flagged"},   # when a combined fit exists
         "paper": {"feature", "value", "threshold", "z", "above"},    # when global_frobN_std is fitted
         "per_feature": {"flagged", "margin"},
         "top": [[name, robust z], ...],  # the 3 largest |z| (the combined fit's z under "combined")
         "features": {name: {"value", "z", "fired", "threshold" (crossed bound, feature units),
                             "side" ("above"/"below"), "missing"}},  # fired or missing features only
         "margin_unit": "ln(S/T)" | "σ",  # what ``margin`` counts (the rule's; absent when not judged)
         "fired": [{"feature", "value", "threshold", "direction" ("above"/"below"), "margin", "z"}],
                                      # per fired feature, largest margin first; margin = how far past
                                      # its threshold in robust σ (> 0); absent when none fired
         "not_calibrated": str,       # why it was not judged (flagged None only)
         "breakdown_version": int}    # models.VERDICT_BREAKDOWN_VERSION

    Only fired and missing features get a detail entry: a clean adapter's explanation is its
    margin and largest z-scores, and a base's re-judgement writes 100,000 of these (bench_store.py).
    ``reasons`` are prose for people; consumers read the structured keys (``combined``, ``fired``,
    ``margin``/``margin_unit``, ``paper``), never the prose.
    """
    return judge_many([(stratum, features)], threshold_set)[0]


def judge_typed(features: Mapping[str, float | None], stratum: str,
                threshold_set: ThresholdSetLike) -> tuple[bool | None, VerdictBreakdown]:  # fmt: skip
    """:func:`judge` with the breakdown as its typed view (one adapter: a gate, not a re-judgement)."""
    flagged, breakdown = judge(features, stratum, threshold_set)
    return flagged, VerdictBreakdown.from_dict(breakdown)


PAPER = PAPER_FEATURE  # the paper's statistic (arXiv 2605.30189), reported beside every verdict
TOP = 3


def judge_many(items: Sequence[tuple[str, Mapping[str, float | None]]],
               threshold_set: ThresholdSetLike) -> list[Verdict]:
    """:func:`judge` for many (stratum, features) pairs, in order. The breakdowns are in their stored form:
    a base's re-judgement stores 100,000 of them as they are."""
    threshold_set = _stored(threshold_set)
    params = threshold_set.get("params") or {}
    verdict = params.get("verdict", "per-feature")
    out: list[Verdict | None] = [None] * len(items)
    groups: dict[str, list[int]] = defaultdict(list)
    for i, (stratum, _) in enumerate(items):
        groups[stratum].append(i)
    for stratum, idx in groups.items():
        key, fit, why = resolve(stratum, threshold_set)
        if fit is None or key is None:  # resolve gives both or neither
            for i in idx:
                out[i] = (None, {"verdict": verdict, "reasons": [f"not calibrated: {why}"], "margin": None,
                                 "stratum": stratum, "fit": None, "source": None, "n": None, "top": [],
                                 "features": {}, "low_confidence": False, "low_confidence_reason": None,
                                 "not_calibrated": why,
                                 VERDICT_BREAKDOWN_VERSION_KEY: VERDICT_BREAKDOWN_VERSION})  # fmt: skip
            continue
        low = low_confidence(fit, params)
        for i, v in zip(idx, _judge_group([items[i][1] for i in idx], stratum, key, fit, verdict, low)):
            out[i] = v
    return cast("list[Verdict]", out)  # every slot was filled above


def _top(z: np.ndarray, names: Sequence[str]) -> list[list[Any]]:
    """Per row, the TOP largest |z| as [name, z] pairs, largest first (NaN z left out)."""
    n, k_all = z.shape
    if k_all == 0:
        return [[] for _ in range(n)]
    a = np.nan_to_num(np.abs(z), nan=-1.0)
    k = min(TOP, k_all)
    idx = np.argpartition(-a, k - 1, axis=1)[:, :k] if k < k_all else np.tile(np.arange(k_all), (n, 1))
    order = np.argsort(-np.take_along_axis(a, idx, axis=1), axis=1, kind="stable")
    idx = np.take_along_axis(idx, order, axis=1)
    vals = np.take_along_axis(z, idx, axis=1)
    ok = np.isfinite(vals)
    nm = np.asarray(names, dtype=object)[idx]
    if ok.all():
        return [list(map(list, zip(a_, b_))) for a_, b_ in zip(nm.tolist(), vals.tolist())]
    return [[[a1, b1] for a1, b1, o in zip(a_, b_, o_) if o]
            for a_, b_, o_ in zip(nm.tolist(), vals.tolist(), ok.tolist())]


def _judge_group(rows: Sequence[Mapping[str, float | None]], stratum: str, key: str, fit: Mapping[str, Any],
                 verdict: str, low: str | None = None) -> list[Verdict]:  # fmt: skip
    names = list(fit["features"])
    feats = [fit["features"][n] for n in names]
    raw = feature_matrix(rows, names)  # None / absent -> NaN
    log = np.array([f["transform"] == "log" for f in feats])
    loc = np.array([f["loc"] for f in feats])
    scale = np.array([f["scale"] for f in feats])
    hi = np.array([np.nan if f["hi"] is None else f["hi"] for f in feats])
    lo = np.array([np.nan if f["lo"] is None else f["lo"] for f in feats])
    with np.errstate(divide="ignore", invalid="ignore"):
        x = np.where(log, np.log(np.where(raw > 0, raw, np.nan)), raw)
        z = (x - loc) / scale
        ex = np.fmax((x - hi) / scale, (lo - x) / scale)  # NaN only when the value is missing
    missing = ~np.isfinite(ex)
    fired = np.where(missing, False, ex > 0)
    any_value = ~missing.all(axis=1)
    margin_pf = np.where(any_value, np.nanmax(np.where(missing, -np.inf, ex), axis=1), np.nan)
    above = x > hi
    n_fit = fit["n"]
    common = {"verdict": verdict, "stratum": stratum, "fit": key, "source": fit["source"], "n": n_fit,
              "low_confidence": low is not None, "low_confidence_reason": low,
              VERDICT_BREAKDOWN_VERSION_KEY: VERDICT_BREAKDOWN_VERSION}  # fmt: skip

    # the combined statistic (module docstring); None per row when it cannot be computed
    model = fit.get("combined") if verdict == "combined" else None
    comb_ok = model is not None and model.get("status") == StratumStatus.CALIBRATED
    if model is not None and comb_ok:
        cols = [names.index(n) for n in model["features"]]
        stat, zc = score_matrix(model, raw[:, cols])
        thr = float(model["threshold"])
        with np.errstate(divide="ignore", invalid="ignore"):
            margin_c = np.where(stat > 0, np.log(stat / thr), -np.inf)
        stat_l, margin_c_l = stat.tolist(), margin_c.tolist()
        top_l = _top(zc, model["features"])
        mode = model["mode"]
    else:
        top_l = _top(z, names)
    if verdict == "combined" and not comb_ok:
        why = "no combined fit" if model is None else (model.get("reason") or model.get("status"))
    # the paper's statistic against its own threshold
    jp = names.index(PAPER) if PAPER in names else None
    if jp is not None:
        p_thr = feats[jp]["threshold_high"]
        p_val_l, p_z_l, p_above_l = raw[:, jp].tolist(), z[:, jp].tolist(), (x[:, jp] > hi[jp]).tolist()

    verdicts: list[Verdict] = []
    margin_l, any_l = margin_pf.tolist(), any_value.tolist()
    special_l = (fired | missing).any(axis=1).tolist()  # rows needing per-feature detail (few): only
    for i in range(len(rows)):  # those rows are converted to Python lists below
        per: dict[str, Any] = {}
        fired_text: list[str] = []
        fired_rec: list[dict[str, Any]] = []
        if special_l[i]:
            vals, zs, fired_i, missing_i = raw[i].tolist(), z[i].tolist(), fired[i].tolist(), missing[i].tolist()
            ranked: list[tuple[float, str]] = []
            for j, name in enumerate(names):
                v = vals[j]
                if missing_i[j]:
                    per[name] = {"value": v if v == v else None, "z": None, "fired": False, "missing": True}
                elif fired_i[j]:
                    side = "above" if above[i, j] else "below"
                    bound = feats[j]["threshold_high"] if side == "above" else feats[j]["threshold_low"]
                    per[name] = {"value": v, "z": zs[j], "fired": True, "threshold": bound, "side": side}
                    past = float(ex[i, j])
                    ranked.append((past,
                                   f"{name}={v:.4g} {side} {bound:.4g} (robust z={zs[j]:+.1f}, {key}, n={n_fit})"))
                    fired_rec.append({"feature": name, "value": v, "threshold": bound, "direction": side,
                                      "margin": past, "z": zs[j]})
            fired_text = [r for _, r in sorted(ranked, key=lambda t: -t[0])]  # largest exceedance first
            fired_rec.sort(key=lambda r: -r["margin"])
        pf_margin = margin_l[i] if any_l[i] else None
        pf_flag = None if pf_margin is None else pf_margin > 0
        bd: dict[str, Any] = common.copy()
        bd["per_feature"] = {"flagged": pf_flag, "margin": pf_margin}
        bd["top"] = top_l[i]
        bd["features"] = per
        if fired_rec:
            bd["fired"] = fired_rec
        paper_text = None
        if jp is not None and p_val_l[i] == p_val_l[i]:
            side = "above" if p_above_l[i] else "below"
            bd["paper"] = {"feature": PAPER, "value": p_val_l[i], "threshold": p_thr, "z": p_z_l[i],
                           "above": p_above_l[i]}
            paper_text = (f"paper statistic {PAPER} {p_val_l[i]:.4g} {side} its threshold {p_thr:.4g} "
                          f"(z {p_z_l[i]:+.1f})")
        if verdict == "combined":
            s_i = stat_l[i] if comb_ok else math.nan
            if s_i != s_i:  # no combined statistic: never "clean"
                reason = str(why) if not comb_ok else "no calibrated feature has a value"
                bd["reasons"], bd["margin"], bd["not_calibrated"] = [f"not calibrated: {reason}"], None, reason
                verdicts.append((None, bd))
                continue
            m = margin_c_l[i]
            flagged = m > 0
            tops = ", ".join(f"{n} {v:+.1f}" for n, v in top_l[i]) if flagged else ""
            bd["combined"] = {"statistic": s_i, "threshold": thr, "mode": mode, "flagged": flagged}
            bd["margin_unit"] = "ln(S/T)"
            # A pass stays short (100,000 per base).
            if flagged:
                head = f"combined {mode} D²/K {s_i:.3g} above threshold {thr:.3g} (largest |z|: {tops})"
            else:
                head = f"combined {mode} D²/K {s_i:.3g} within threshold {thr:.3g}"
            reasons = [head, paper_text, *fired_text] if paper_text else [head, *fired_text]
        else:
            if pf_flag is None:
                reason = "no calibrated feature has a value"
                bd["reasons"], bd["margin"], bd["not_calibrated"] = [f"not calibrated: {reason}"], None, reason
                verdicts.append((None, bd))
                continue
            m, flagged = pf_margin, pf_flag
            bd["margin_unit"] = "σ"
            lines = fired_text if flagged else [f"within thresholds ({key}, n={n_fit}); closest at {m:+.2f} σ"]
            reasons = lines + ([paper_text] if paper_text else [])
        bd["reasons"], bd["margin"] = reasons, m
        verdicts.append((flagged, bd))
    return verdicts
