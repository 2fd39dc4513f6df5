"""Judge one adapter's features against a fitted threshold set (hubaudit.calibrate.fit).

Per feature: x = transform(value); z = (x − loc)/scale; fired when x > hi (up/both) or
x < lo (down/both). flagged = any feature fired (the Bonferroni split in fit.py makes this
combined rule hit the target FPR). ``margin`` is the largest signed exceedance in units of σ:
(x − hi)/σ or (lo − x)/σ, so margin > 0 exactly when flagged and its size says by how much;
a negative margin says how close the nearest threshold was. A stratum without a calibrated fit
(or pool) gives flagged=None ("not calibrated", never clean) and margin None.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from hubaudit.calibrate.fit import pool_key

Breakdown = dict[str, Any]


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


def judge(features: Mapping[str, float | None], stratum: str, threshold_set: Mapping[str, Any]) -> tuple[bool | None, Breakdown]:
    """(flagged, breakdown) for one adapter; flagged None = not calibrated (never "clean").

    ``threshold_set`` is the dict :func:`hubaudit.calibrate.fit` returns (or a stored one with
    the same ``strata`` and ``params``). breakdown: ``{"reasons": [...], "margin": float|None,
    "stratum", "fit" (the key used), "source" (stratum/pool/reference), "n", "features":
    {name: {"value", "z", "lo", "hi" (feature units), "fired"}}}``.
    """
    key, fit, why = resolve(stratum, threshold_set)
    if fit is None:
        return None, {"reasons": [f"not calibrated: {why}"], "margin": None, "stratum": stratum, "fit": None,
                      "source": None, "n": None, "features": {}}  # fmt: skip
    out: dict[str, dict[str, Any]] = {}
    fired_reasons: list[tuple[float, str]] = []
    margin = -math.inf
    for name, f in fit["features"].items():
        v = features.get(name)
        if v is None or not math.isfinite(v) or (f["transform"] == "log" and v <= 0):
            out[name] = {"value": v if v is None or math.isfinite(v) else None, "z": None,
                         "lo": f["threshold_low"], "hi": f["threshold_high"], "fired": False, "missing": True}  # fmt: skip
            continue
        x = math.log(v) if f["transform"] == "log" else v
        scale = f["scale"]
        z = (x - f["loc"]) / scale
        ex = -math.inf
        if f["hi"] is not None:
            ex = (x - f["hi"]) / scale
        if f["lo"] is not None:
            ex = max(ex, (f["lo"] - x) / scale)
        fired = ex > 0
        margin = max(margin, ex)
        out[name] = {"value": v, "z": z, "lo": f["threshold_low"], "hi": f["threshold_high"], "fired": fired}
        if fired:
            side = "above" if f["hi"] is not None and x > f["hi"] else "below"
            bound = f["threshold_high"] if side == "above" else f["threshold_low"]
            fired_reasons.append((ex, f"{name}={v:.4g} {side} {bound:.4g} (robust z={z:+.1f}, {key}, n={fit['n']})"))
    if margin == -math.inf:
        return None, {"reasons": ["not calibrated: no calibrated feature has a value"], "margin": None,
                      "stratum": stratum, "fit": key, "source": fit["source"], "n": fit["n"], "features": out}  # fmt: skip
    flagged = margin > 0
    reasons = [r for _, r in sorted(fired_reasons, key=lambda t: -t[0])]  # largest exceedance first
    if not flagged:
        reasons.append(f"within thresholds ({key}, n={fit['n']}); closest at {margin:+.2f} σ")
    return flagged, {"reasons": reasons, "margin": margin, "stratum": stratum, "fit": key, "source": fit["source"],
                     "n": fit["n"], "features": out}  # fmt: skip
