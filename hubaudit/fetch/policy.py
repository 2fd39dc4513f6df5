"""What the crawler fetches, and what it records instead: the skip rules, as pure functions.

Every rule is a per-item outcome (a status and a reason code of the store contract), never an
exception: a gated repo, a pickle-only adapter or an oversize file is recorded with its reason and
the crawl goes on. The rules read only what they are given (pinned metadata, a stored status, a
failure's kind), so the crawl, ``check`` and the tests apply the same ones.

The Hub's metadata types are the hub stage's; the rules take anything shaped like them
(:class:`RemoteRevision`, :class:`RemoteFile`), so this stage does not import that one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from hubaudit.constants import ADAPTER_CONFIG, ADAPTER_PICKLE, ADAPTER_SAFETENSORS, MAX_CONFIG_BYTES
from hubaudit.vocab import FINAL_REVISION_STATUSES, RevisionStatus, ScanStatus

#: Failure kinds (httpclient.Failure.kind) that stop the whole run, and the run-level error each
#: becomes (hubaudit.errors maps them to exit code 4).
FATAL_KINDS = {"unreachable": "unavailable", "auth": "auth", "rate_limited": "rate_limited"}
#: Failure kinds that say the revision cannot be fetched by anyone without a change on the Hub.
UNFETCHABLE_KINDS = ("not_found", "gated", "disabled")


class RemoteFile(Protocol):
    """A file of a pinned revision as the Hub describes it (hub.RepoFile)."""

    @property
    def size(self) -> int | None: ...

    def problem(self) -> str | None: ...


class RemoteRevision(Protocol):
    """A pinned revision's metadata (hub.RepoInfo)."""

    @property
    def gated(self) -> bool | str | None: ...

    @property
    def disabled(self) -> bool | None: ...

    def file(self, name: str) -> RemoteFile | None: ...


@dataclass(frozen=True)
class Skip:
    """A revision not fetched (or not scored), as recorded: ``status``, ``reason`` code, one-line ``message``."""

    status: RevisionStatus
    reason: str
    message: str


def needs_fetch(stored_status: str | None) -> bool:
    """Incremental crawling: a listed (repo, sha) whose stored outcome is final (anything but ``retry``)
    is not fetched again; one never seen (``None``) or to be retried is. A new sha is a new revision."""
    return stored_status not in FINAL_REVISION_STATUSES


def skip_before_download(info: RemoteRevision, *, has_token: bool, max_file_bytes: int) -> Skip | None:
    """The decision from pinned metadata alone (no download); None: go ahead.

    In order: a disabled repo, a gated one without a token, no safetensors weights (pickle-only
    adapters are never unpickled by the crawler), no config, metadata that cannot bound and verify the
    downloads (sizes bound them, hashes verify them), then files over their caps.
    """
    if info.disabled:
        return Skip(RevisionStatus.SKIPPED, "disabled", "the repository is disabled on the Hub")
    if info.gated and not has_token:
        return Skip(
            RevisionStatus.SKIPPED, "gated", f"gated repository ({info.gated}); downloads need an approved token"
        )
    weights, config = info.file(ADAPTER_SAFETENSORS), info.file(ADAPTER_CONFIG)
    if weights is None:
        if info.file(ADAPTER_PICKLE) is not None:
            return Skip(
                RevisionStatus.UNSUPPORTED,
                "pickle_format",
                "only adapter_model.bin (pickle); never unpickled by the crawler",
            )
        return Skip(RevisionStatus.SKIPPED, "no_adapter_files", "no adapter_model.safetensors in the repository")
    if config is None:
        return Skip(RevisionStatus.SKIPPED, "no_adapter_files", "adapter_config.json is missing")
    problem = weights.problem() or config.problem()
    if problem is not None:
        return Skip(RevisionStatus.ERROR, "hostile_metadata", f"model_info: {problem}")
    if weights.size is not None and weights.size > max_file_bytes:
        return Skip(
            RevisionStatus.SKIPPED, "oversize", f"{ADAPTER_SAFETENSORS} is {weights.size} bytes (cap {max_file_bytes})"
        )
    if config.size is not None and config.size > MAX_CONFIG_BYTES:
        return Skip(
            RevisionStatus.SKIPPED, "oversize", f"{ADAPTER_CONFIG} is {config.size} bytes (cap {MAX_CONFIG_BYTES})"
        )
    return None


def header_status(reason: str | None) -> RevisionStatus:
    """The status of a revision whose remote header check failed with ``reason``: a header over its
    cap is skipped like any oversize file; anything else the header says is an error."""
    return RevisionStatus.SKIPPED if reason == "oversize" else RevisionStatus.ERROR


def fetched_scan_outcome(scan_status: ScanStatus) -> tuple[RevisionStatus, str | None]:
    """The recorded (status, reason) of a fetched revision the scanner read: scored, an adapter format
    the scanner does not support (``unsupported_adapter``), or anything else it could not read
    (``malformed``)."""
    if scan_status == ScanStatus.OK:
        return RevisionStatus.SCORED, None
    if scan_status == ScanStatus.UNSUPPORTED:
        return RevisionStatus.UNSUPPORTED, "unsupported_adapter"
    return RevisionStatus.ERROR, "malformed"


@dataclass(frozen=True)
class FailureOutcome:
    """How a network failure (already retried) is recorded: ``fatal`` names the run-level error
    (a key of FATAL_KINDS' values) when the whole run stops; ``transient`` counts towards the
    crawl's breaker."""

    status: RevisionStatus
    fatal: str | None = None
    transient: bool = False


def failure_outcome(kind: str, reason: str) -> FailureOutcome:
    """The outcome of a failure of ``kind`` (httpclient.Failure) with stored ``reason`` code: fatal
    kinds stop the run, a repo nobody can fetch is skipped, a transient failure is retried next run,
    a refused answer or another 4xx is a final error, anything else is retried."""
    if kind in FATAL_KINDS:
        return FailureOutcome(RevisionStatus.RETRY, fatal=FATAL_KINDS[kind])
    if kind in UNFETCHABLE_KINDS:
        return FailureOutcome(RevisionStatus.SKIPPED)
    if kind == "transient":
        return FailureOutcome(RevisionStatus.RETRY, transient=True)
    if kind == "hostile" or reason.startswith("http_4"):
        return FailureOutcome(RevisionStatus.ERROR)
    return FailureOutcome(RevisionStatus.RETRY)
