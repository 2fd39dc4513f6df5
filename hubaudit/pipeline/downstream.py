"""Flow ``downstream``: the Hub repos built on a base's findings (the exposure of a backdoor).

For every finding of the base's report (weight-flagged, probe-confirmed, or a copy/derivative of a
known-bad adapter), list the Hub repos that declare it as their base: adapters, merges, finetunes
and quantized copies of it (:meth:`hubaudit.hub.source.HubSource.list_children`, one listing per
finding), and record them (``Store.record_downstream``). Clean adapters are never queried.

Per-finding failures are values (the finding's ``error``; the others go on). The run fails with a
:class:`~hubaudit.errors.HubError` (exit 4; recorded in ``fatal``, what finished is kept) when the
Hub is unreachable, rejects the token or rate-limits beyond the retry budget, or when no finding's
listing could be read at all.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

from hubaudit.errors import HubAuthError, HubError, HubUnavailableError, RateLimitedError
from hubaudit.httpclient import HubConfig, classify, hub_client
from hubaudit.hub.source import HubSource, is_repo_id
from hubaudit.pipeline.runs import recorded_run
from hubaudit.safehttp import budget
from hubaudit.store import Store

# Children recorded per finding: a LoRA adapter with more is itself a base model in all but name,
# and the listing stops there (``truncated``).
MAX_CHILDREN = 10_000
# One finding's listing (all its pages, retries and waits) gets this many times the request timeout.
LISTING_BUDGET_FACTOR = 20.0
_RUN_LEVEL: dict[str, type[HubError]] = {"unreachable": HubUnavailableError, "auth": HubAuthError,
                                         "rate_limited": RateLimitedError}


@dataclass
class FindingDownstream:
    """The repos built on one finding (``children``: (repo id, relation), sorted)."""

    repo_id: str
    children: list[tuple[str, str]] = field(default_factory=list)
    refused: int = 0  # listing entries refused (not a Hub id, no relation to the finding)
    truncated: bool = False  # more than max_children: the rest were not read
    error: str | None = None  # the listing failed (one line; nothing recorded for this finding)
    skipped: str | None = None  # not queried (a finding that is not a Hub repo)


@dataclass
class DownstreamSummary:
    """What one ``downstream`` run did (printed on stderr; ``--format json`` prints :meth:`to_dict`).

    ``fatal``: the run-level Hub failure, if any (the caller raises it after showing the rest)."""

    base: str
    findings: list[FindingDownstream] = field(default_factory=list)
    queried: int = 0
    children: int = 0
    duration_s: float = 0.0
    run_id: int | None = None
    fatal: HubError | None = None

    @property
    def hub_error(self) -> str | None:
        return (str(self.fatal).splitlines() or [type(self.fatal).__name__])[0] if self.fatal is not None else None

    def to_dict(self) -> dict[str, Any]:
        return {"base": self.base, "findings": [asdict(f) for f in self.findings], "queried": self.queried,
                "children": self.children, "duration_s": self.duration_s, "run_id": self.run_id,
                "hub_error": self.hub_error}


def finding_repos(store: Store, base: str) -> list[str]:
    """Repo ids of the base's findings, in report order, each once (a repo with several flagged
    revisions is one listing)."""
    from hubaudit.pipeline.report import load_report

    return list(dict.fromkeys(e.repo_id for e in load_report(store, base).findings))


def _run_level(kind: str, message: str) -> HubError | None:
    cls = _RUN_LEVEL.get(kind)
    return cls(f"downstream listing: {message}") if cls is not None else None


def _list_one(source: HubSource, repo_id: str, max_children: int, seconds: float) -> FindingDownstream:
    out = FindingDownstream(repo_id)
    found: set[tuple[str, str]] = set()
    listed = 0
    with budget(time.monotonic() + seconds):
        for child in source.list_children(repo_id, limit=max_children + 1):
            listed += 1
            if listed > max_children:
                out.truncated = True
                break
            if child.refused:
                out.refused += 1
                continue
            found.update((child.repo_id, rel) for rel in child.relations)
    out.children = sorted(found)
    return out


def downstream(store: Store, hub: HubConfig, base: str, *, repos: list[str] | None = None,
               max_children: int = MAX_CHILDREN, command_args: dict[str, Any] | None = None) -> DownstreamSummary:
    """List and record the downstream repos of every finding of ``base`` (or of ``repos``, which
    must be adapters of ``base`` in the store). A Hub failure for the whole run (module docstring)
    ends the run early and comes back in ``fatal``, not raised: what finished is recorded."""
    started = time.monotonic()
    summary = DownstreamSummary(base)
    targets = finding_repos(store, base) if repos is None else list(dict.fromkeys(repos))
    with recorded_run(store, "downstream", command_args or {"base": base}) as run:
        summary.run_id = run.id
        with hub_client(hub.timeout, hub.deadline_factor):
            source = HubSource(hub)
            for repo_id in targets:
                if summary.fatal is not None:
                    break
                if not is_repo_id(repo_id):
                    summary.findings.append(FindingDownstream(repo_id, skipped="not a Hub repo: not queried"))
                    continue
                summary.queried += 1
                try:
                    item = _list_one(source, repo_id, max_children, LISTING_BUDGET_FACTOR * hub.timeout)
                except Exception as exc:  # noqa: BLE001 - classified: per finding, or the whole run
                    f = classify(exc)
                    message = (str(exc).splitlines() or [f.message])[0] if isinstance(exc, HubError) else f.message
                    summary.findings.append(FindingDownstream(repo_id, error=message))
                    summary.fatal = _run_level(f.kind, f"{repo_id}: {message}")
                    continue
                store.record_downstream(base, repo_id, item.children)
                summary.findings.append(item)
                summary.children += len(item.children)
        failed = [f.error for f in summary.findings if f.error]
        if summary.fatal is None and summary.queried and len(failed) == summary.queried:
            summary.fatal = HubUnavailableError(f"downstream listing: no finding's listing could be read "
                                                f"(last: {failed[-1]})")
        summary.duration_s = round(time.monotonic() - started, 3)
        run.counts = {"findings": len(targets), "queried": summary.queried, "children": summary.children,
                      "failed": len(failed)}
        run.exit_status = summary.fatal.exit_code if summary.fatal is not None else 0
    return summary


def describe(item: FindingDownstream) -> str:
    """One line about a finding that listed no children (may quote server text: escape it for the sink)."""
    if item.skipped:
        return item.skipped
    if item.error:
        error = item.error if len(item.error) <= 200 else item.error[:199] + "…"
        return f"listing failed: {error}"
    return "no downstream repos"
