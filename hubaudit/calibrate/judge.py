"""Judge adapters' features against a fitted threshold set (hubaudit.calibrate.fit).

Per feature: x = transform(value); z = (x − loc)/scale; fired when x > hi (up/both) or
x < lo (down/both). flagged = any feature fired (the Bonferroni split in fit.py makes this
combined rule hit the target FPR). ``margin`` is the largest signed exceedance in units of σ:
(x − hi)/σ or (lo − x)/σ, so margin > 0 exactly when flagged and its size says by how much;
a negative margin says how close the nearest threshold was. A stratum without a calibrated fit
(or pool) gives flagged=None ("not calibrated", never clean) and margin None.

:func:`judge_many` is the vectorised implementation (one numpy pass per fitted stratum; a base
with 100,000 adapters is re-judged on every calibration); :func:`judge` is the one-adapter view.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from hubaudit.calibrate.fit import pool_key

Breakdown = dict[str, Any]
Verdict = tuple[bool | None, Breakdown]


def resolve(stratum: str, threshold_set: Mapping[str, Any]) -> tuple[str | None, Mapping[str, Any] | None, str]:
    """The fit that applies to ``stratum``: its own, its pool's, or none (with the reason)."""
    strata = threshold_set["strata"]
    entry = strata.get(stratum)
    if entry is not None and entry.get("status") == "calibrated":
        return stratum, entry, ""
    pk = pool_key(stratum)
    pool = strata.get(pk)
    if pool is not None and pool.get("status") == "calibrated":
        return pk, pool, ""
    min_n = threshold_set.get("params", {}).get("min_n")
    if entry is None:
        why = f"stratum {stratum} was not in the calibration population"
    else:
        why = f"stratum {stratum} has n={entry.get('n')} < min_n={min_n}"
    if pool is not None:
        why += f" and its pool has n={pool.get('n')}"
    return None, None, why


def judge(features: Mapping[str, float | None], stratum: str, threshold_set: Mapping[str, Any]) -> Verdict:
    """(flagged, breakdown) for one adapter; flagged None = not calibrated (never "clean").

    ``threshold_set`` is the dict :func:`hubaudit.calibrate.fit` returns (or a stored one with the
    same ``strata`` and ``params``). breakdown::

        {"reasons": [...],            # one line per fired feature, largest exceedance first
         "margin": float | None,      # largest signed exceedance in σ (> 0 exactly when flagged)
         "stratum": str, "fit": str,  # the threshold-set entry used (stratum or its pool): it
         "source": str, "n": int,     #   holds every threshold; source stratum/pool/reference
         "z": {name: float | None},   # robust z of every calibrated feature (None: no value)
         "features": {name: {"value", "z", "fired", "threshold" (crossed bound, feature units),
                             "side" ("above"/"below"), "missing"}}}  # fired or missing features only

    Only fired and missing features get a detail entry: a clean adapter's explanation is its
    margin and z-scores, and a base's re-judgement writes 100,000 of these (bench_store.py).
    """
    return judge_many([(stratum, features)], threshold_set)[0]


def judge_many(items: Sequence[tuple[str, Mapping[str, float | None]]], threshold_set: Mapping[str, Any]) -> list[Verdict]:
    """:func:`judge` for many (stratum, features) pairs, in order."""
    out: list[Verdict | None] = [None] * len(items)
    groups: dict[str, list[int]] = defaultdict(list)
    for i, (stratum, _) in enumerate(items):
        groups[stratum].append(i)
    for stratum, idx in groups.items():
        key, fit, why = resolve(stratum, threshold_set)
        if fit is None:
            for i in idx:
                out[i] = (None, {"reasons": [f"not calibrated: {why}"], "margin": None, "stratum": stratum, "fit": None,
                                 "source": None, "n": None, "z": {}, "features": {}})  # fmt: skip
            continue
        for i, verdict in zip(idx, _judge_group([items[i][1] for i in idx], stratum, key, fit)):
            out[i] = verdict
    return out  # type: ignore[return-value]


def _judge_group(rows: Sequence[Mapping[str, float | None]], stratum: str, key: str, fit: Mapping[str, Any]) -> list[Verdict]:
    names = list(fit["features"])
    feats = [fit["features"][n] for n in names]
    raw = np.array([[r.get(n) for n in names] for r in rows], dtype=np.float64).reshape(len(rows), len(names))  # None -> NaN
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
    margin = np.where(any_value, np.nanmax(np.where(missing, -np.inf, ex), axis=1), np.nan)
    above = x > hi
    n_fit = fit["n"]
    common = {"stratum": stratum, "fit": key, "source": fit["source"], "n": n_fit}
    verdicts: list[Verdict] = []
    raw_l, z_l, fired_l, missing_l = raw.tolist(), z.tolist(), fired.tolist(), missing.tolist()
    margin_l, any_l = margin.tolist(), any_value.tolist()
    for i in range(len(rows)):
        vals, zs = raw_l[i], z_l[i]
        zmap = dict(zip(names, zs))
        if not (any(fired_l[i]) or any(missing_l[i])):  # the common case: every value present, nothing fired
            m = margin_l[i]
            text = [f"within thresholds ({key}, n={n_fit}); closest at {m:+.2f} σ"]
            verdicts.append((False, {"reasons": text, "margin": m, **common, "z": zmap, "features": {}}))
            continue
        per = {}
        reasons: list[tuple[float, str]] = []
        for j, name in enumerate(names):
            v = vals[j]
            if missing_l[i][j]:
                zmap[name] = None
                per[name] = {"value": v if v == v else None, "z": None, "fired": False, "missing": True}
            elif fired_l[i][j]:
                side = "above" if above[i, j] else "below"
                bound = feats[j]["threshold_high"] if side == "above" else feats[j]["threshold_low"]
                per[name] = {"value": v, "z": zs[j], "fired": True, "threshold": bound, "side": side}
                reasons.append((float(ex[i, j]), f"{name}={v:.4g} {side} {bound:.4g} (robust z={zs[j]:+.1f}, {key}, n={n_fit})"))
        if not any_l[i]:
            verdicts.append((None, {"reasons": ["not calibrated: no calibrated feature has a value"], "margin": None,
                                    **common, "z": zmap, "features": per}))  # fmt: skip
            continue
        m = margin_l[i]
        flagged = m > 0
        text = [r for _, r in sorted(reasons, key=lambda t: -t[0])]  # largest exceedance first
        if not flagged:
            text = [f"within thresholds ({key}, n={n_fit}); closest at {m:+.2f} σ"]
        verdicts.append((flagged, {"reasons": text, "margin": m, **common, "z": zmap, "features": per}))
    return verdicts
