"""Fetch stage: ranged header pre-check, pinned download, hash verification, cache cleanup."""

from hubaudit.fetch.download import (
    Fetched,
    Wanted,
    download_verified,
    file_hashes,
    remove_tree,
    sweep_stale,
    task_cache_dir,
)
from hubaudit.fetch.header import HeaderCheck, check_remote_header, validate_header

__all__ = ["Fetched", "HeaderCheck", "Wanted", "check_remote_header", "download_verified", "file_hashes",
           "remove_tree", "sweep_stale", "task_cache_dir", "validate_header"]
