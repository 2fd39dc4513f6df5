"""Provenance of an adapter revision: the base it declares vs the base it was listed under, and the
Hub's own scan status of the revision.

Poisoned base weights survive PEFT fine-tuning (arXiv 2402.12168), so an adapter that declares another
base than the one it is listed under is flagged, and the two bases' weight files are compared by
their LFS sha256 (metadata only, no download). The weight hashes of a base are looked up once per
:class:`BaseWeights` cache: one per crawl, so a new crawl sees the Hub afresh.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from typing import Any

from hubaudit.httpclient import classify
from hubaudit.hub.source import HubSource, RepoInfo

_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")

#: {weight file name: sha256} of a repo, or the reason code of why it could not be read.
WeightHashes = dict[str, str] | str


class BaseWeights:
    """Weight-file sha256s of base repos, looked up once per (endpoint, repo) for the cache's lifetime.

    Thread-safe (a crawl's local executor shares one). Pickled (a Ray worker's copy of the task
    settings), it travels empty: a worker on another machine asks the Hub itself.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._hashes: dict[tuple[str, str], WeightHashes] = {}

    def __getstate__(self) -> dict[str, Any]:
        return {}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._lock = threading.Lock()
        self._hashes = {}

    def __len__(self) -> int:
        with self._lock:
            return len(self._hashes)

    def hashes(self, source: HubSource, repo_id: str) -> WeightHashes:
        """``repo_id``'s weight hashes from LFS metadata, or the reason code of the failure (provenance
        is advisory: a failure never fails the adapter)."""
        key = (source.config.endpoint, repo_id)
        with self._lock:
            if key in self._hashes:
                return self._hashes[key]
        try:
            value: WeightHashes = source.weight_hashes(repo_id)
        except Exception as exc:  # noqa: BLE001 - provenance is advisory, never fails the adapter
            value = classify(exc).reason
        with self._lock:
            self._hashes[key] = value
        return value


def is_hub_id(name: str) -> bool:
    """Whether a declared base names a Hub repo (``org/name`` or ``name``), not a local path."""
    return bool(_REPO_ID.match(name)) and not name.startswith((".", "~")) and ".." not in name


def declared_base_provenance(
    *,
    canonical_base: str,
    expected_base: str,
    card_base: str | None,
    config_base: str | None,
    weights: Callable[[str], WeightHashes] | None,
) -> dict[str, Any]:
    """Declared base(s) vs the base the adapter was listed under (``expected_base``: the audited
    ``canonical_base`` or, with ``--include-derived``, a child of it), with flags.

    Flags: ``card_base_mismatch`` / ``config_base_mismatch`` (declared ≠ expected),
    ``card_config_disagree``, ``local_path_base`` (config names a local path),
    ``non_canonical_base`` (declared is another Hub repo), and, comparing weight sha256s
    (``weights``: repo id → hashes; None compares nothing), ``base_weights_differ`` or
    ``base_weights_identical`` (a re-upload) or ``declared_base_unavailable``.
    """
    expected = expected_base
    flags: list[str] = []
    prov: dict[str, Any] = {
        "canonical_base": canonical_base,
        "expected_base": expected,
        "card_base_model": card_base,
        "config_base_model": config_base,
    }
    if expected != canonical_base:
        prov["derived_via"] = expected
    if card_base and card_base != expected:
        flags.append("card_base_mismatch")
    if config_base and config_base != expected:
        flags.append("config_base_mismatch")
    if card_base and config_base and card_base != config_base:
        flags.append("card_config_disagree")
    if config_base and not is_hub_id(config_base):
        flags.append("local_path_base")
    others = sorted({b for b in (card_base, config_base) if b and b != expected and is_hub_id(b) and "," not in b})
    if others:
        flags.append("non_canonical_base")
        if weights is not None:
            canon = weights(expected)
            comparisons = {}
            for other in others:
                got = weights(other)
                if isinstance(got, str) or isinstance(canon, str):
                    comparisons[other] = "unavailable"
                    flags.append("declared_base_unavailable")
                elif set(got.values()) == set(canon.values()) and got:
                    comparisons[other] = "identical"
                    flags.append("base_weights_identical")
                else:
                    comparisons[other] = "differ"
                    flags.append("base_weights_differ")
            prov["base_weights"] = comparisons
    prov["flags"] = sorted(set(flags))
    return prov


def hub_security_provenance(info: RepoInfo) -> dict[str, Any]:
    """The Hub's scan status of the revision for its provenance: ``hub_security`` (absent when the
    Hub said nothing usable) and ``hub_security_warning`` (what of a malformed status was ignored)."""
    out: dict[str, Any] = {}
    if info.hub_security is not None:
        out["hub_security"] = info.hub_security
    if info.hub_security_warning:
        out["hub_security_warning"] = info.hub_security_warning
    return out
