"""Domain types shared by all stages (the contract between stats, store, calibrate, probe, report).

Plain frozen dataclasses; every stage imports these and nothing of another stage. Import them from here
(``from hubaudit.models import ScanResult``); the modules are how the vocabulary is laid out:

- ``scan``: one adapter's weight scan (``ScanResult``, ``ModuleStat``, ``Fingerprint``) and the packed
  feature values (``FeatureBlock``);
- ``thresholds``: the weight calibration's fitted threshold sets (``ThresholdSet``, ``StratumFit``);
- ``verdict``: why an adapter got its weight verdict (``VerdictBreakdown``);
- ``probe``: behavioural probe results (``ProbeResult``, ``SearchResult``) and the calibration they were
  judged under (``CalibrationRef``);
- ``_parse`` and ``_record``: the tolerant parsing of stored JSON behind every typed view.
"""

from hubaudit.models.probe import (
    PROBE_RESULT_VERSION,
    PROBE_RESULT_VERSION_KEY,
    CalibrationRef,
    InvertedTarget,
    ProbeResult,
    SearchResult,
)
from hubaudit.models.scan import (
    FeatureBlock,
    FeatureRow,
    Fingerprint,
    ModuleStat,
    SavedTensor,
    ScanResult,
    stratum_key,
)
from hubaudit.models.thresholds import (
    PAPER_FEATURE,
    THRESHOLD_SET_VERSION,
    THRESHOLD_SET_VERSION_KEY,
    VERDICT_RULES,
    CombinedFit,
    FeatureFit,
    StratumFit,
    ThresholdParams,
    ThresholdSet,
)
from hubaudit.models.verdict import (
    SIDES,
    VERDICT_BREAKDOWN_VERSION,
    VERDICT_BREAKDOWN_VERSION_KEY,
    CombinedScore,
    Exceedance,
    FeatureScore,
    PaperScore,
    PerFeatureScore,
    VerdictBreakdown,
)

__all__ = [
    # the weight scan
    "ModuleStat", "SavedTensor", "Fingerprint", "ScanResult", "stratum_key", "FeatureBlock", "FeatureRow",
    # behavioural probe results
    "CalibrationRef", "InvertedTarget", "SearchResult", "ProbeResult",
    "PROBE_RESULT_VERSION_KEY", "PROBE_RESULT_VERSION",
    # threshold sets of the weight calibration
    "FeatureFit", "CombinedFit", "StratumFit", "ThresholdParams", "ThresholdSet",
    "THRESHOLD_SET_VERSION_KEY", "THRESHOLD_SET_VERSION", "VERDICT_RULES", "PAPER_FEATURE",
    # weight verdicts
    "CombinedScore", "PaperScore", "PerFeatureScore", "FeatureScore", "Exceedance", "VerdictBreakdown",
    "VERDICT_BREAKDOWN_VERSION_KEY", "VERDICT_BREAKDOWN_VERSION", "SIDES",
]  # fmt: skip
