"""The calibrate stage: per-base, per-stratum thresholds. Pure numpy/scipy.

``fit(population, directions, target_fpr, min_n, references, method) -> threshold set dict`` and
``judge(features, stratum, threshold_set) -> (flagged | None, breakdown)``: dicts, the stored forms, so a
base's 100,000 verdicts are computed and stored without a conversion each; ``hubaudit.models.ThresholdSet``
and ``VerdictBreakdown`` are their typed views, which every reader uses (``judge`` and ``judge_many``
take a ``ThresholdSet`` too; ``judge_typed`` gives the typed breakdown). The default verdict
(``method="combined"``) is the combined detector of combined.py; ``"per-feature"`` is the older
any-feature-beyond-its-threshold rule. The methods, the pooling rule for small strata and the
reference anchoring are documented in fit.py.
"""

from __future__ import annotations

from hubaudit.calibrate._robust import feature_matrix, feature_names
from hubaudit.calibrate.fit import (
    DEFAULT_METHOD,
    METHOD,
    METHODS,
    fit,
    low_confidence,
    n_needed,
    parse_stratum,
    pool_key,
)
from hubaudit.calibrate.judge import PAPER, judge, judge_many, judge_typed, resolve

__all__ = ["DEFAULT_METHOD", "METHOD", "METHODS", "PAPER", "feature_matrix", "feature_names", "fit",
           "judge", "judge_many", "judge_typed", "low_confidence", "n_needed", "resolve", "parse_stratum",
           "pool_key"]  # fmt: skip
