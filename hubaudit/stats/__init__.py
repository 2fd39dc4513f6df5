"""Weight statistics (pipeline stage ③): safe streaming reads of LoRA adapters and Gram-based features.

Pure numpy; no network, database or printing. Entry points: ``scan_path``/``scan_many`` (files
on disk → ``ScanResult``) and ``stats_from_arrays`` (in-memory A/B arrays → the same statistics).
"""

from hubaudit.stats.features import FEATURES, Feature, compute_features, describe, module_group, scored_modules
from hubaudit.stats.gram import module_spectrum, spectra_from_grams, spectrum_from_grams
from hubaudit.stats.pickle_sandbox import require_torch
from hubaudit.stats.scan import scan_many, scan_path, stats_from_arrays

__all__ = [
    "FEATURES",
    "Feature",
    "compute_features",
    "describe",
    "module_group",
    "module_spectrum",
    "require_torch",
    "scan_many",
    "scan_path",
    "scored_modules",
    "spectra_from_grams",
    "spectrum_from_grams",
    "stats_from_arrays",
]
