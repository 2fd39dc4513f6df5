"""Flow ``crawl``: enumerate every adapter of a base on the Hub, fetch and score what is new.

1. List ``base_model:adapter:<base>`` (and with ``include_derived`` the base's quantized and
   finetuned children and *their* adapters) and store each repo's metadata.
2. Incremental: a (repo, sha) whose stored outcome is final is not fetched again, so a crawl where
   nothing changed costs only the listing pages. A new sha is a new revision.
3. Fetch-and-score the rest on an executor (local threads or Ray); the driver records each
   outcome as it arrives (every write commits: a killed crawl loses at most the items in flight).
4. Repos absent from a *complete* listing (no ``limit``) are marked removed.

Run-level failures (Hub unreachable, token rejected, rate limit beyond the retry budget, a listing
the endpoint makes unusable: a next page on another origin, a page loop) stop the run with a typed
error after the finished work is recorded.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hubaudit.errors import HubauditError, HubAuthError, HubError, HubUnavailableError, RateLimitedError
from hubaudit.executors import make_executor
from hubaudit.fetch import sweep_stale
from hubaudit.fetch.policy import needs_fetch
from hubaudit.httpclient import HubConfig, classify, hub_client
from hubaudit.hub import HubSource, ListedRepo
from hubaudit.pipeline.crawl_task import FetchJob, TaskOutcome, TaskSettings, fetch_and_score
from hubaudit.store import Store
from hubaudit.vocab import RevisionStatus

DERIVED_RELATIONS = ("quantized", "finetune")
_FATAL_ERRORS: dict[str, type[HubError]] = {"unavailable": HubUnavailableError, "auth": HubAuthError,
                                            "rate_limited": RateLimitedError}


@dataclass(frozen=True)
class CrawlOptions:
    """What to crawl and how. ``limit``: at most N adapters listed per base (then nothing is
    marked removed, since the listing is truncated)."""

    bases: tuple[str, ...]
    cache_root: Path
    limit: int | None = None
    workers: int = 8
    include_derived: bool = False
    keep: bool = False
    executor: str = "local"
    ray_address: str | None = None
    max_file_bytes: int = 8 * 1024**3
    max_header_bytes: int = 16 * 1024 * 1024
    compare_base_weights: bool = True
    whole_file_bytes: int = 1024 * 1024
    # Consecutive transient per-adapter failures after which the Hub counts as down for the run.
    breaker: int = 25
    # One adapter gets repo_budget_factor x --timeout seconds (plus its promised bytes at the
    # HubConfig's min_download_rate), retries included; then it is recorded as "retry".
    repo_budget_factor: float = 10.0


@dataclass
class CrawlSummary:
    """Counts of one crawl (printed on stderr; ``--format json`` prints :meth:`to_dict`)."""

    bases: list[str]
    listed: int = 0
    new: int = 0
    unchanged: int = 0
    fetched: int = 0
    scored: int = 0
    flagged: int = 0
    removed: int = 0
    by_status: Counter = field(default_factory=Counter)
    by_reason: Counter = field(default_factory=Counter)
    removed_repos: list[str] = field(default_factory=list)
    listing_complete: bool = True
    duration_s: float = 0.0
    run_id: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "bases": self.bases, "listed": self.listed, "new": self.new, "unchanged": self.unchanged,
            "fetched": self.fetched, "scored": self.scored, "flagged": self.flagged, "removed": self.removed,
            "by_status": dict(sorted(self.by_status.items())),
            "skipped_by_reason": dict(sorted(self.by_reason.items())),
            "removed_repos": self.removed_repos, "listing_complete": self.listing_complete,
            "duration_s": round(self.duration_s, 3), "run_id": self.run_id,
        }

    def counts(self) -> dict[str, int]:
        return {"listed": self.listed, "new": self.new, "unchanged": self.unchanged, "fetched": self.fetched,
                "scored": self.scored, "flagged": self.flagged, "removed": self.removed,
                **{f"status_{k}": v for k, v in self.by_status.items()}}


class _Progress:
    """Callbacks the CLI may pass: ``listed(n_listed, n_new)`` and ``finished(outcome)``."""

    def listed(self, listed: int, new: int) -> None: ...

    def finished(self, outcome: TaskOutcome) -> None: ...


def _fatal_for(exc: BaseException) -> HubError:
    """A listing failure (already retried) as a run-level error."""
    if isinstance(exc, HubError):  # the listing refused the endpoint's answer: already worded
        return exc
    f = classify(exc)
    if f.kind == "auth":
        return HubAuthError(f"the Hub rejected the token: {f.message}")
    if f.kind == "rate_limited":
        return RateLimitedError(f"rate limited while listing, beyond the retry budget: {f.message}")
    if f.kind == "hostile":
        return HubError(f"listing refused: {f.message}",
                        hint="HF_ENDPOINT sent a listing hubaudit refuses; check the mirror or proxy it names")
    return HubUnavailableError(f"listing failed: {f.message}")


# Listed repos stored per transaction. The Hub's listing pages hold up to 1,000 repos, so batching
# delays the first fetch by at most one page of listing.
LISTING_BATCH = 500


def _batched(items: Iterator[ListedRepo], n: int) -> Iterator[list[ListedRepo]]:
    batch: list[ListedRepo] = []
    for item in items:
        batch.append(item)
        if len(batch) >= n:
            yield batch
            batch = []
    if batch:
        yield batch


class _Lister:
    """Lazily lists every base, stores metadata, and yields the jobs that need fetching."""

    def __init__(self, store: Store, source: HubSource, options: CrawlOptions, settings: TaskSettings,
                 summary: CrawlSummary, progress: _Progress) -> None:
        self.store, self.source, self.options, self.settings = store, source, options, settings
        self.summary, self.progress = summary, progress
        self.present: dict[str, set[str]] = {}
        self.complete: dict[str, bool] = {}
        self.error: HubError | None = None
        self.stop = False

    def _listings(self, base: str) -> Iterator[ListedRepo]:
        limit = self.options.limit
        yield from self.source.list_related(base, "adapter", limit=limit)
        if self.options.include_derived:
            for relation in DERIVED_RELATIONS:
                for child in self.source.list_related(base, relation):
                    yield from self.source.list_related(child.repo_id, "adapter", limit=limit)

    def _guarded(self, base: str) -> Iterator[ListedRepo]:
        """The listing, with a failure beyond the client's retries stashed as a run-level error."""
        it = self._listings(base)
        while True:
            try:
                repo = next(it)
            except StopIteration:
                return
            except Exception as exc:  # noqa: BLE001 - classified; only Hub errors reach here
                self.error = _fatal_for(exc)
                return
            yield repo

    def jobs(self) -> Iterator[FetchJob]:
        for base in self.options.bases:
            present = self.present.setdefault(base, set())
            self.complete[base] = False
            for chunk in _batched(self._guarded(base), LISTING_BATCH):
                fresh = []
                for repo in chunk:
                    if repo.repo_id not in present:  # listed under the base and under a derived child: crawl once
                        present.add(repo.repo_id)
                        fresh.append(repo)
                # One transaction per batch of listed repos: a re-crawl of an unchanged base is
                # nothing but these upserts and lookups.
                self.store.upsert_adapters(base, [(r.repo_id, r.meta()) for r in fresh])
                outcomes = self.store.revision_outcomes([(r.repo_id, r.sha) for r in fresh if r.sha])
                for repo in fresh:
                    if self.stop:
                        return
                    self.summary.listed += 1
                    if not repo.sha:
                        continue  # cannot pin a revision; the next listing will carry one
                    if not needs_fetch(outcomes.get((repo.repo_id, repo.sha))):
                        self.summary.unchanged += 1
                        self.progress.listed(self.summary.listed, self.summary.new)
                        continue
                    self.summary.new += 1
                    self.progress.listed(self.summary.listed, self.summary.new)
                    yield FetchJob(self.settings, base, repo.repo_id, repo.sha, repo.via or base, repo.card_base_model,
                                   refused=repo.refused)
                if self.stop:
                    return
            if self.error is not None or self.stop:
                return
            self.complete[base] = self.options.limit is None


def crawl(store: Store, hub: HubConfig, options: CrawlOptions, *, progress: _Progress | None = None,
          command_args: dict[str, Any] | None = None) -> CrawlSummary:
    """Run one crawl; returns its summary or raises a :class:`~hubaudit.errors.HubError` (exit 4)
    after recording everything that finished."""
    started = time.monotonic()
    progress = progress or _Progress()
    summary = CrawlSummary(bases=list(options.bases))
    run_id = store.start_run("crawl", command_args or {"bases": list(options.bases)})
    summary.run_id = run_id
    sweep_stale(options.cache_root)
    # Ray workers may run on other machines: they fetch into their own temp folder. The settings are
    # new per crawl, and with them the cache of base weight hashes: a new crawl sees the Hub afresh.
    cache_root = str(options.cache_root) if options.executor == "local" else ""
    settings = TaskSettings(hub=hub, cache_root=cache_root, keep=options.keep,
                            max_file_bytes=options.max_file_bytes, max_header_bytes=options.max_header_bytes,
                            compare_base_weights=options.compare_base_weights,
                            whole_file_bytes=options.whole_file_bytes, repo_budget_factor=options.repo_budget_factor)
    fatal: HubError | None = None
    exit_status = 70  # a bug unless proven otherwise below
    try:
        with hub_client(hub.timeout, hub.deadline_factor):
            lister = _Lister(store, HubSource(hub), options, settings, summary, progress)
            with make_executor(options.executor, workers=options.workers, address=options.ray_address) as executor:
                fatal = _drain(store, executor.map_unordered(fetch_and_score, lister.jobs()), lister, summary,
                               progress, options.breaker)
            fatal = fatal or lister.error
            summary.listing_complete = all(lister.complete.get(b, False) for b in options.bases)
            if fatal is None:
                for base in options.bases:
                    if lister.complete.get(base):
                        gone = store.mark_removed(base, lister.present.get(base, set()))
                        summary.removed_repos.extend(gone)
                summary.removed = len(summary.removed_repos)
        exit_status = fatal.exit_code if fatal else 0
    except HubauditError as exc:
        exit_status = exc.exit_code
        raise
    except KeyboardInterrupt:
        exit_status = 130
        raise
    finally:
        summary.duration_s = time.monotonic() - started
        store.finish_run(run_id, counts=summary.counts(), exit_status=exit_status)
    if fatal is not None:
        raise fatal
    return summary


def _drain(store: Store, results: Iterator, lister: _Lister, summary: CrawlSummary, progress: _Progress,
           breaker: int) -> HubError | None:
    """Record each outcome as it arrives; stop feeding new work at the first run-level failure."""
    fatal: HubError | None = None
    streak = 0
    for res in results:
        job: FetchJob = res.item
        out: TaskOutcome = res.value if res.error is None else TaskOutcome(
            job.repo_id, job.sha, RevisionStatus.RETRY, "internal", res.error, transient=True)
        summary.fetched += 1
        if out.fatal:
            if fatal is None:
                fatal = _FATAL_ERRORS[out.fatal](f"{out.repo_id}: {out.error}")
            lister.stop = True
            continue  # not recorded: the revision was not judged; the next run retries it
        store.record_revision(base=job.base, repo_id=out.repo_id, sha=out.sha, status=out.status, reason=out.reason,
                              error=out.error, files=out.files, declared_base=out.declared_base,
                              provenance={**out.provenance, "endpoint": lister.source.config.endpoint}, scan=out.scan)
        summary.by_status[out.status] += 1
        if out.status == RevisionStatus.SCORED:
            summary.scored += 1
        else:
            summary.by_reason[out.reason or out.status] += 1
        summary.flagged += int(out.flagged)
        progress.finished(out)
        streak = streak + 1 if out.transient else 0
        if streak >= breaker and fatal is None:
            fatal = HubUnavailableError(f"{streak} adapters in a row failed with transient errors (last: {out.error})")
            lister.stop = True
    return fatal
