"""The calibrate stage: per-base, per-stratum thresholds (DESIGN §3). Pure numpy/scipy.

``fit(population, directions, target_fpr, min_n, references) -> threshold set dict`` and
``judge(features, stratum, threshold_set) -> (flagged | None, breakdown)``; the method, the
pooling rule for small strata and the reference anchoring are documented in fit.py.
"""

from __future__ import annotations

from hubaudit.calibrate.fit import METHOD, fit, parse_stratum, pool_key
from hubaudit.calibrate.judge import judge, judge_many, resolve

__all__ = ["METHOD", "fit", "judge", "judge_many", "resolve", "parse_stratum", "pool_key"]
