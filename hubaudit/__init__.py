"""hubaudit: audit the LoRA adapters of a base model on the Hugging Face Hub for backdoors."""

__version__ = "0.1.0"

# Python API, mirroring the CLI; loaded lazily so `import hubaudit` stays cheap (no SQLAlchemy,
# no numpy until used):
#   hubaudit.scan(path) -> ScanResult               (hubaudit scan PATH)
#   hubaudit.Store.open(url=None, create=True)      (the database behind every other command)
#   hubaudit.ingest(store, paths, base)             (hubaudit ingest PATH... --base BASE)
#   hubaudit.calibrate_base(store, base, ...)       (hubaudit calibrate --base BASE)
_LAZY = {
    "scan": ("hubaudit.stats", "scan_path"),
    "Store": ("hubaudit.store", "Store"),
    "ingest": ("hubaudit.pipeline.ingest", "ingest"),
    "calibrate_base": ("hubaudit.pipeline.calibrate", "calibrate_base"),
    "Settings": ("hubaudit.settings", "Settings"),
}


def __getattr__(name: str):  # PEP 562
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'hubaudit' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
