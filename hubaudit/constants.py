"""Names, caps and versions shared by every stage. No environment reads here."""

from __future__ import annotations

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_SAFETENSORS = "adapter_model.safetensors"
ADAPTER_PICKLE = "adapter_model.bin"

# Safety caps for untrusted files (the safetensors library accepts headers up to 100 MB,
# huggingface_hub up to 25 MB; real LoRA adapter headers are a few tens of KB).
MAX_HEADER_BYTES = 16 * 1024 * 1024
MAX_CONFIG_BYTES = 1 * 1024 * 1024
MAX_ADAPTER_BYTES = 8 * 1024**3

# Bump when any registered feature's definition changes: thresholds fitted on an older
# feature set are then stale and never compared with new numbers. Stored scores are keyed by this
# version; `hubaudit calibrate` re-derives older rows' features from their stored per-module
# statistics (pipeline/calibrate.py), so no adapter has to be downloaded again.
# fs-1: stats/features.py CORE_FEATURES. fs-2: + stats/features_extra.py (scale-free profiles).
FEATURESET_VERSION = "fs-2"

# Bump when the adapter fingerprint (stats/fingerprint.py) changes: fingerprints of different
# versions are never compared. Stored fingerprints are keyed by this version.
FINGERPRINT_VERSION = "fp-1"

ENV_DB_URL = "HUBAUDIT_DB_URL"
ENV_CONFIG = "HUBAUDIT_CONFIG"
ENV_DEBUG = "HUBAUDIT_DEBUG"
ENV_HOME = "HUBAUDIT_HOME"
