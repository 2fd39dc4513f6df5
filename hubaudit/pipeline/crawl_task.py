"""Fetch-and-score one pinned adapter revision: the unit of work the crawl runs on an executor.

Wires hub (pinned metadata; base provenance, hub/provenance.py), fetch (the skip rules of
fetch/policy.py, header pre-check, verified download, cleanup) and stats (the streaming scanner).
Runs in a thread or a Ray worker, touches no database, never raises: everything comes back as a
:class:`TaskOutcome` value; run-level conditions (Hub unreachable, token rejected, rate limit beyond
the budget) come back in ``fatal`` for the driver to act on.

Each adapter has a time budget (``repo_budget_factor`` x the timeout, plus its promised bytes at
the minimum download rate) that bounds its requests, retries and backoff together: spent, the
revision is recorded as ``retry``. What the endpoint sends that we refuse (a forged sha or repo
id, metadata that cannot be verified, a body beyond its cap) is a final ``error`` with reason
``hostile_metadata``, never fetched again.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

from hubaudit import safejson
from hubaudit.constants import ADAPTER_CONFIG, ADAPTER_SAFETENSORS, MAX_CONFIG_BYTES
from hubaudit.fetch import Wanted, check_remote_header, download_verified, remove_tree, task_cache_dir
from hubaudit.fetch.policy import failure_outcome, fetched_scan_outcome, header_status, skip_before_download
from hubaudit.httpclient import Failure, HubConfig, classify, ensure_hub_client
from hubaudit.hub import HubSource, RepoInfo
from hubaudit.hub.provenance import BaseWeights, declared_base_provenance, hub_security_provenance
from hubaudit.hub.source import is_repo_id, is_sha
from hubaudit.models import ScanResult
from hubaudit.safehttp import budget, shown
from hubaudit.vocab import RevisionStatus


@dataclass(frozen=True)
class TaskSettings:
    """Per-crawl settings shared by every task (picklable; the token inside is never logged)."""

    hub: HubConfig
    cache_root: str  # "" = a temp folder local to the worker (Ray workers on other machines)
    keep: bool = False
    max_file_bytes: int = 8 * 1024**3
    max_header_bytes: int = 16 * 1024 * 1024
    compare_base_weights: bool = True
    whole_file_bytes: int = 1024 * 1024  # read files up to this size in one GET (fetch.WHOLE_FILE_BYTES)
    repo_budget_factor: float = 10.0  # seconds per adapter: this x hub.timeout (+ bytes / min_download_rate)
    # Base weight hashes looked up so far: one cache per crawl (the tasks of a local executor share it).
    base_weights: BaseWeights = field(default_factory=BaseWeights, compare=False, repr=False)

    def budget_seconds(self, promised_bytes: int = 0) -> float:
        """Seconds one adapter's requests, retries and waits may take in all."""
        return self.repo_budget_factor * self.hub.timeout + promised_bytes / self.hub.min_download_rate


@dataclass(frozen=True)
class FetchJob:
    """One (repo, sha) to fetch and score. ``expected_base`` is the base it was listed under
    (the audited base, or a quantized/finetuned child of it with ``--include-derived``)."""

    settings: TaskSettings
    base: str
    repo_id: str
    sha: str
    expected_base: str
    card_base_model: str | None = None
    refused: str | None = None  # the listing entry was refused (forged sha or id): recorded, never fetched


@dataclass
class TaskOutcome:
    """What happened; maps 1:1 onto ``Store.record_revision`` arguments (+ ``fatal``)."""

    repo_id: str
    sha: str
    status: RevisionStatus
    reason: str | None = None
    error: str | None = None
    files: list[dict] = field(default_factory=list)
    declared_base: str | None = None
    provenance: dict[str, Any] = field(default_factory=dict)
    scan: ScanResult | None = None
    fatal: str | None = None  # "unavailable" | "auth" | "rate_limited"
    transient: bool = False

    @property
    def flagged(self) -> bool:
        """Provenance flags only: the Hub's own scan status (``hub_security``) is shown, never counted."""
        return bool(self.provenance.get("flags"))


def _from_failure(job: FetchJob, f: Failure, until: float | None = None) -> TaskOutcome:
    decided = failure_outcome(f.kind, f.reason)
    out = TaskOutcome(job.repo_id, job.sha, decided.status, f.reason, f.message, fatal=decided.fatal,
                      transient=decided.transient)
    if decided.transient and until is not None and time.monotonic() >= until:
        out.error = f"the adapter's time budget is spent; last: {f.message}"
    return out


def _hostile(job: FetchJob, message: str) -> TaskOutcome:
    return TaskOutcome(job.repo_id, job.sha, RevisionStatus.ERROR, "hostile_metadata", message)


def fetch_and_score(job: FetchJob) -> TaskOutcome:
    """Fetch ``job.repo_id`` at ``job.sha``, verify, score; never raises."""
    s = job.settings
    ensure_hub_client(s.hub.timeout, s.hub.deadline_factor)
    if job.refused:
        return _hostile(job, job.refused)
    if not is_repo_id(job.repo_id):
        return _hostile(job, f"repo id {shown(job.repo_id)} is not a Hub repo id")
    if not is_sha(job.sha):
        return _hostile(job, f"revision sha {shown(job.sha)} is not 40 lowercase hex digits")
    source = HubSource(s.hub)
    start = time.monotonic()
    until = start + s.budget_seconds()
    try:
        with budget(until):
            info = source.repo_info(job.repo_id, job.sha)
    except Exception as exc:  # noqa: BLE001 - classified into a value
        return _from_failure(job, classify(exc), until)
    skip = skip_before_download(info, has_token=bool(s.hub.token), max_file_bytes=s.max_file_bytes)
    if skip is not None:
        return TaskOutcome(job.repo_id, job.sha, skip.status, skip.reason, skip.message,
                           provenance=hub_security_provenance(info))
    # The downloads' allowance joins the budget once their sizes are known (the skip rules checked them).
    until = start + s.budget_seconds(sum(f.size for f in (info.file(ADAPTER_SAFETENSORS), info.file(ADAPTER_CONFIG))))
    try:
        return _fetch_scan(job, info, source, until)
    except Exception as exc:  # noqa: BLE001 - network errors beyond the retry budget, and any surprise
        failed = _from_failure(job, classify(exc), until)
        failed.provenance = hub_security_provenance(info)
        return failed


def _fetch_scan(job: FetchJob, info: RepoInfo, source: HubSource, until: float) -> TaskOutcome:
    from hubaudit.stats import scan_path

    s = job.settings
    weights, config = info.file(ADAPTER_SAFETENSORS), info.file(ADAPTER_CONFIG)
    cache = task_cache_dir(s.cache_root or os.path.join(tempfile.gettempdir(), "hubaudit-fetch"), s.keep)
    try:
        with budget(until):
            head = check_remote_header(s.hub, job.repo_id, ADAPTER_SAFETENSORS, job.sha, weights.size,
                                       max_header=s.max_header_bytes, whole_below=s.whole_file_bytes)
            if not head.ok:
                return TaskOutcome(job.repo_id, job.sha, header_status(head.reason), head.reason, head.message,
                                   provenance=hub_security_provenance(info))
            fetched = download_verified(s.hub, job.repo_id, job.sha, [
                Wanted(ADAPTER_CONFIG, config.size, config.lfs_sha256, config.blob_id),
                Wanted(ADAPTER_SAFETENSORS, weights.size, weights.lfs_sha256, weights.blob_id),
            ], cache, preloaded={ADAPTER_SAFETENSORS: head.data} if head.data is not None else None)
        if not fetched.ok:
            return TaskOutcome(job.repo_id, job.sha, RevisionStatus.ERROR, fetched.reason, fetched.message,
                               provenance=hub_security_provenance(info))
        # download_verified hashed every byte while fetching (and checked it against the Hub's
        # LFS sha256): hashing the weights again in the scan would double the crawl's CPU per adapter.
        scan = scan_path(fetched.folder, symlink_roots=[cache], hash_content=False)
        scan.content_sha256 = next((f["sha256"] for f in fetched.files if f["name"] == ADAPTER_SAFETENSORS), None)
        config_base = scan.base_model or _config_base(fetched.folder / ADAPTER_CONFIG)
    finally:
        if not s.keep:
            remove_tree(cache)
    status, reason = fetched_scan_outcome(scan.status)
    card = info.card_base_model or job.card_base_model
    with budget(time.monotonic() + s.budget_seconds()):  # advisory lookups: a budget of their own
        prov = provenance(job, card, config_base, source) | hub_security_provenance(info)
    return TaskOutcome(job.repo_id, job.sha, status, reason, scan.error, files=fetched.files,
                       declared_base=config_base or card, provenance=prov, scan=scan)


def _config_base(path) -> str | None:
    try:
        if path.stat().st_size > MAX_CONFIG_BYTES:
            return None
        value = safejson.loads(path.read_text(encoding="utf-8")).get("base_model_name_or_path")
        return str(value) if value else None
    except (OSError, ValueError, AttributeError):
        return None


def provenance(job: FetchJob, card_base: str | None, config_base: str | None, source: HubSource) -> dict[str, Any]:
    """The declared bases of ``job``'s adapter against the base it was listed under
    (hub.provenance.declared_base_provenance), base weights compared through the crawl's cache."""
    s = job.settings
    return declared_base_provenance(
        canonical_base=job.base, expected_base=job.expected_base, card_base=card_base, config_base=config_base,
        weights=(lambda repo_id: s.base_weights.hashes(source, repo_id)) if s.compare_base_weights else None)
