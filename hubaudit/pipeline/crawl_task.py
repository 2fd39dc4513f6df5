"""Fetch-and-score one pinned adapter revision: the unit of work the crawl runs on an executor.

Wires hub (pinned metadata), fetch (header pre-check, verified download, cleanup) and stats
(the streaming scanner). Runs in a thread or a Ray worker, touches no database, never raises:
everything comes back as a :class:`TaskOutcome` value; run-level conditions (Hub unreachable,
token rejected, rate limit beyond the budget) come back in ``fatal`` for the driver to act on.

Each adapter has a time budget (``repo_budget_factor`` x the timeout, plus its promised bytes at
the minimum download rate) that bounds its requests, retries and backoff together: spent, the
revision is recorded as ``retry``. What the endpoint sends that we refuse (a forged sha or repo
id, metadata that cannot be verified, a body beyond its cap) is a final ``error`` with reason
``hostile_metadata``, never fetched again.
"""

from __future__ import annotations

import os
import re
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from hubaudit import safejson
from hubaudit.constants import ADAPTER_CONFIG, ADAPTER_PICKLE, ADAPTER_SAFETENSORS, MAX_CONFIG_BYTES
from hubaudit.fetch import Wanted, check_remote_header, download_verified, remove_tree, task_cache_dir
from hubaudit.httpclient import Failure, HubConfig, classify, ensure_hub_client
from hubaudit.hub import HubSource, RepoInfo
from hubaudit.hub.source import is_repo_id, is_sha
from hubaudit.models import ScanResult
from hubaudit.safehttp import budget, shown
from hubaudit.vocab import RevisionStatus, ScanStatus

# Failure kinds that stop the whole run (hubaudit.errors maps them to exit code 4).
FATAL_KINDS = {"unreachable": "unavailable", "auth": "auth", "rate_limited": "rate_limited"}
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


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
    out = TaskOutcome(job.repo_id, job.sha, RevisionStatus.RETRY, f.reason, f.message)
    if f.kind in FATAL_KINDS:
        out.fatal = FATAL_KINDS[f.kind]
    elif f.kind in ("not_found", "gated", "disabled"):
        out.status = RevisionStatus.SKIPPED
    elif f.kind == "transient":
        out.transient = True
        if until is not None and time.monotonic() >= until:
            out.error = f"the adapter's time budget is spent; last: {f.message}"
    elif f.kind == "hostile" or f.reason.startswith("http_4"):
        out.status = RevisionStatus.ERROR
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
    decided = _decide(job, info)
    if decided is not None:
        decided.provenance = _security(info)
        return decided
    # The downloads' allowance joins the budget once their sizes are known (_decide checked them).
    until = start + s.budget_seconds(sum(f.size for f in (info.file(ADAPTER_SAFETENSORS), info.file(ADAPTER_CONFIG))))
    try:
        return _fetch_scan(job, info, source, until)
    except Exception as exc:  # noqa: BLE001 - network errors beyond the retry budget, and any surprise
        failed = _from_failure(job, classify(exc), until)
        failed.provenance = _security(info)
        return failed


def _decide(job: FetchJob, info: RepoInfo) -> TaskOutcome | None:
    """Decisions from pinned metadata alone (no download). None: go ahead."""
    s = job.settings

    def out(status: RevisionStatus, reason: str, msg: str) -> TaskOutcome:
        return TaskOutcome(job.repo_id, job.sha, status, reason, msg)

    if info.disabled:
        return out(RevisionStatus.SKIPPED, "disabled", "the repository is disabled on the Hub")
    if info.gated and not s.hub.token:
        return out(RevisionStatus.SKIPPED, "gated", f"gated repository ({info.gated}); downloads need an approved token")
    weights, config = info.file(ADAPTER_SAFETENSORS), info.file(ADAPTER_CONFIG)
    if weights is None:
        if info.file(ADAPTER_PICKLE) is not None:
            return out(RevisionStatus.UNSUPPORTED, "pickle_format", "only adapter_model.bin (pickle); never unpickled by the crawler")
        return out(RevisionStatus.SKIPPED, "no_adapter_files", "no adapter_model.safetensors in the repository")
    if config is None:
        return out(RevisionStatus.SKIPPED, "no_adapter_files", "adapter_config.json is missing")
    problem = weights.problem() or config.problem()  # sizes bound the downloads, hashes verify them
    if problem is not None:
        return out(RevisionStatus.ERROR, "hostile_metadata", f"model_info: {problem}")
    if weights.size is not None and weights.size > s.max_file_bytes:
        return out(RevisionStatus.SKIPPED, "oversize", f"{ADAPTER_SAFETENSORS} is {weights.size} bytes (cap {s.max_file_bytes})")
    if config.size is not None and config.size > MAX_CONFIG_BYTES:
        return out(RevisionStatus.SKIPPED, "oversize", f"{ADAPTER_CONFIG} is {config.size} bytes (cap {MAX_CONFIG_BYTES})")
    return None


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
                status = RevisionStatus.SKIPPED if head.reason == "oversize" else RevisionStatus.ERROR
                return TaskOutcome(job.repo_id, job.sha, status, head.reason, head.message, provenance=_security(info))
            fetched = download_verified(s.hub, job.repo_id, job.sha, [
                Wanted(ADAPTER_CONFIG, config.size, config.lfs_sha256, config.blob_id),
                Wanted(ADAPTER_SAFETENSORS, weights.size, weights.lfs_sha256, weights.blob_id),
            ], cache, preloaded={ADAPTER_SAFETENSORS: head.data} if head.data is not None else None)
        if not fetched.ok:
            return TaskOutcome(job.repo_id, job.sha, RevisionStatus.ERROR, fetched.reason, fetched.message, provenance=_security(info))
        # download_verified hashed every byte while fetching (and checked it against the Hub's
        # LFS sha256): hashing the weights again in the scan would double the crawl's CPU per adapter.
        scan = scan_path(fetched.folder, symlink_roots=[cache], hash_content=False)
        scan.content_sha256 = next((f["sha256"] for f in fetched.files if f["name"] == ADAPTER_SAFETENSORS), None)
        config_base = scan.base_model or _config_base(fetched.folder / ADAPTER_CONFIG)
    finally:
        if not s.keep:
            remove_tree(cache)
    status, reason = {ScanStatus.OK: (RevisionStatus.SCORED, None),
                      ScanStatus.UNSUPPORTED: (RevisionStatus.UNSUPPORTED, "unsupported_adapter")}.get(
        scan.status, (RevisionStatus.ERROR, "malformed"))
    card = info.card_base_model or job.card_base_model
    with budget(time.monotonic() + s.budget_seconds()):  # advisory lookups: a budget of their own
        prov = provenance(job, card, config_base, source) | _security(info)
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


def _security(info: RepoInfo) -> dict[str, Any]:
    """The Hub's scan status of the revision for its provenance: ``hub_security`` (absent when the
    Hub said nothing usable) and ``hub_security_warning`` (what of a malformed status was ignored)."""
    out: dict[str, Any] = {}
    if info.hub_security is not None:
        out["hub_security"] = info.hub_security
    if info.hub_security_warning:
        out["hub_security_warning"] = info.hub_security_warning
    return out


# -- base provenance (arXiv 2402.12168: poisoned base weights survive PEFT fine-tuning) ---------------

_weights_memo: dict[tuple[str, str], dict[str, str] | str] = {}
_memo_lock = threading.Lock()


def clear_provenance_cache() -> None:
    """Forget memoized base weight hashes (a new crawl sees the Hub afresh)."""
    with _memo_lock:
        _weights_memo.clear()


def _weights(source: HubSource, repo_id: str) -> dict[str, str] | str:
    """Weight-file sha256s of a repo from LFS metadata (memoized per process), or an error code."""
    key = (source.config.endpoint, repo_id)
    with _memo_lock:
        if key in _weights_memo:
            return _weights_memo[key]
    try:
        value: dict[str, str] | str = source.weight_hashes(repo_id)
    except Exception as exc:  # noqa: BLE001 - provenance is advisory, never fails the adapter
        value = classify(exc).reason
    with _memo_lock:
        _weights_memo[key] = value
    return value


def _is_hub_id(name: str) -> bool:
    return bool(_REPO_ID.match(name)) and not name.startswith((".", "~")) and ".." not in name


def provenance(job: FetchJob, card_base: str | None, config_base: str | None, source: HubSource) -> dict[str, Any]:
    """Declared base(s) vs the base the adapter was listed under, with flags.

    Flags: ``card_base_mismatch`` / ``config_base_mismatch`` (declared ≠ expected),
    ``card_config_disagree``, ``local_path_base`` (config names a local path),
    ``non_canonical_base`` (declared is another Hub repo), and, comparing weight sha256s from
    LFS metadata (no download), ``base_weights_differ`` or ``base_weights_identical`` (a
    re-upload) or ``declared_base_unavailable``.
    """
    expected = job.expected_base
    flags: list[str] = []
    prov: dict[str, Any] = {"canonical_base": job.base, "expected_base": expected, "card_base_model": card_base,
                            "config_base_model": config_base}
    if expected != job.base:
        prov["derived_via"] = expected
    if card_base and card_base != expected:
        flags.append("card_base_mismatch")
    if config_base and config_base != expected:
        flags.append("config_base_mismatch")
    if card_base and config_base and card_base != config_base:
        flags.append("card_config_disagree")
    if config_base and not _is_hub_id(config_base):
        flags.append("local_path_base")
    others = sorted({b for b in (card_base, config_base) if b and b != expected and _is_hub_id(b) and "," not in b})
    if others:
        flags.append("non_canonical_base")
        if job.settings.compare_base_weights:
            canon = _weights(source, expected)
            comparisons = {}
            for other in others:
                got = _weights(source, other)
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
