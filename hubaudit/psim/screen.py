"""Screening datasets and probe batteries through a loaded PSIM :class:`~hubaudit.psim.guard.Guard`.

Per-sample results are values (index, confidence, flagged); a summary says how many were flagged
against the calibrated FRR. A probe battery is screened as in arXiv 2605.30189's probing: each probe p is applied
as ``f"{p}. {x}"`` to every evaluation text x, and a probe whose inputs PSIM flags at a high rate
(extreme confidence, i.e. the probe acts like a trigger of the suspect model) is reported.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hubaudit.errors import UsageError

DEFAULT_MIN_FLAG_RATE = 0.5


@dataclass
class ScreenResult:
    """PSIM verdicts for a list of texts, in input order."""

    confidence: np.ndarray
    flagged: np.ndarray
    tau: float
    target_frr: float
    calibration: dict[str, Any] | None = None  # the CalibrationRef (as a dict) τ comes from; None: not recorded

    def summary(self) -> dict[str, Any]:
        """Counts and rates, with the τ they were computed at and the calibration τ comes from."""
        n = int(self.flagged.size)
        k = int(self.flagged.sum())
        return {
            "n": n,
            "flagged": k,
            "flagged_rate": (k / n) if n else 0.0,
            "tau": self.tau,
            "target_frr": self.target_frr,
            # On clean data ≈ target_frr is expected; far above it means triggered samples (or drift).
            "expected_clean_flags": self.target_frr * n,
            "mean_confidence": float(self.confidence.mean()) if n else None,
            "calibration": self.calibration,
        }

    def records(self) -> list[dict[str, Any]]:
        """One dict per sample: ``index`` (0-based row), ``confidence``, ``flagged``."""
        return [
            {"index": i, "confidence": round(float(c), 6), "flagged": bool(f)}
            for i, (c, f) in enumerate(zip(self.confidence, self.flagged))
        ]


def screen_texts(guard, texts: list[str], *, target_frr: float | None = None,
                 calibration: dict[str, Any] | None = None) -> ScreenResult:
    """Confidence and flag (c > τ) for every text; ``target_frr`` of τ defaults to the one saved at training."""
    conf = guard.confidence(texts)
    frr = float(guard.meta.get("target_frr", 0.0)) if target_frr is None else target_frr
    return ScreenResult(confidence=conf, flagged=conf > guard.tau, tau=guard.tau, target_frr=frr,
                        calibration=calibration)


@dataclass
class ProbeOutcome:
    """One probe's effect on PSIM confidence over the evaluation texts."""

    probe: str
    name: str | None
    category: str | None
    flag_rate: float  # fraction of f"{probe}. {x}" with c > τ
    mean_confidence: float
    extreme: bool  # flag_rate ≥ min_flag_rate

    def to_dict(self) -> dict[str, Any]:
        return {
            "probe": self.probe,
            "name": self.name,
            "category": self.category,
            "flag_rate": round(self.flag_rate, 6),
            "mean_confidence": round(self.mean_confidence, 6),
            "extreme": self.extreme,
        }


@dataclass
class BatteryResult:
    """A probe battery screened through one PSIM."""

    baseline_flag_rate: float  # on the evaluation texts without any probe
    baseline_mean_confidence: float
    tau: float
    min_flag_rate: float
    probes: list[ProbeOutcome] = field(default_factory=list)
    calibration: dict[str, Any] | None = None  # the CalibrationRef (as a dict) τ comes from; None: not recorded

    def summary(self) -> dict[str, Any]:
        """Battery-level numbers: extreme probes, mean and max flag rates, and their gap."""
        rates = [p.flag_rate for p in self.probes]
        mean = float(np.mean(rates)) if rates else 0.0
        return {
            "n_probes": len(self.probes),
            "extreme": [p.probe for p in self.probes if p.extreme],
            "baseline_flag_rate": self.baseline_flag_rate,
            "baseline_mean_confidence": self.baseline_mean_confidence,
            "mean_flag_rate": mean,
            "outlier_gap": (max(rates) - mean) if rates else 0.0,
            "tau": self.tau,
            "min_flag_rate": self.min_flag_rate,
            "calibration": self.calibration,
        }


def parse_battery(obj: Any, source: str = "battery") -> list[dict[str, Any]]:
    """Normalise a battery to ``[{"probe", "name", "category"}]``.

    Accepts a list of strings, or ``{"probes": [...]}`` whose items are strings or objects with the
    prefix under ``"probe"``, ``"prefix"`` or ``"text"`` (optional ``"name"``/``"id"`` and
    ``"category"``; a battery-level ``"name"`` is ignored).
    """
    items = obj.get("probes") if isinstance(obj, dict) else obj
    if not isinstance(items, list) or not items:
        raise UsageError(f"{source}: a battery needs a non-empty \"probes\" list")
    out = []
    for i, it in enumerate(items):
        if isinstance(it, str):
            out.append({"probe": it, "name": None, "category": None})
            continue
        if isinstance(it, dict):
            text = next((it[k] for k in ("probe", "prefix", "text") if isinstance(it.get(k), str)), None)
            if text is not None:
                name = it.get("name", it.get("id"))
                cat = it.get("category")
                out.append({"probe": text, "name": None if name is None else str(name),
                            "category": None if cat is None else str(cat)})
                continue
        raise UsageError(f"{source}: probe #{i + 1} is neither a string nor an object with a "
                         "\"probe\"/\"prefix\"/\"text\" string")
    return out


def apply_probe(probe: str, text: str) -> str:
    """A probe is a prefix, applied as ``f"{p}. {x}"``."""
    return f"{probe}. {text}"


def screen_battery(guard, probes: list[dict[str, Any]] | list[str], texts: list[str], *,
                   min_flag_rate: float = DEFAULT_MIN_FLAG_RATE,
                   calibration: dict[str, Any] | None = None) -> BatteryResult:
    """Screen every probe of a battery over ``texts`` and mark the probes that PSIM flags at ≥ ``min_flag_rate``."""
    if not texts:
        raise UsageError("probe screening needs at least one evaluation text")
    items = parse_battery(list(probes)) if probes and isinstance(probes[0], str) else probes
    base = guard.confidence(texts)
    res = BatteryResult(baseline_flag_rate=float((base > guard.tau).mean()),
                        baseline_mean_confidence=float(base.mean()),
                        tau=guard.tau, min_flag_rate=min_flag_rate, calibration=calibration)
    for it in items:
        conf = guard.confidence([apply_probe(it["probe"], x) for x in texts])
        r = float((conf > guard.tau).mean())
        res.probes.append(ProbeOutcome(probe=it["probe"], name=it.get("name"), category=it.get("category"), flag_rate=r,
                                       mean_confidence=float(conf.mean()), extreme=r >= min_flag_rate))
    return res
