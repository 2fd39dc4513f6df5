"""``hubaudit crawl --base BASE``: enumerate, fetch and score every Hub adapter of a base model."""

from __future__ import annotations

import json
import os
import sys
from enum import Enum
from typing import Annotated

import typer

from hubaudit.cli._options import ConfigOpt, DbOpt, err_console
from hubaudit.cli.app import app
from hubaudit.constants import MAX_ADAPTER_BYTES, MAX_HEADER_BYTES
from hubaudit.errors import HubUnavailableError
from hubaudit.executors import ExecutorName
from hubaudit.httpclient import RetryPolicy, hub_config_from_env, retry_observer
from hubaudit.pipeline.crawl import CrawlOptions, CrawlSummary, crawl
from hubaudit.pipeline.similar import warm_cache
from hubaudit.settings import Settings
from hubaudit.store import Store
from hubaudit.textsafe import terminal


class CrawlFormat(str, Enum):
    text = "text"
    json = "json"


class _Bar:
    """A rich progress line on stderr (TTY only): what the crawl is doing (listing, fetching, retrying,
    backing off) and listed / judged counts."""

    def __init__(self, bases: tuple[str, ...], endpoint: str) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        # markup=False: the description is plain text (escaped with terminal() where it quotes an outcome).
        self._p = Progress(SpinnerColumn(), TextColumn("{task.description}", markup=False), BarColumn(),
                           MofNCompleteColumn(), TimeElapsedColumn(), console=err_console, transient=True)
        where = terminal(f"{', '.join(bases)} at {endpoint}")
        self._task = self._p.add_task(f"listing adapters of {where}", total=None)
        self._listed = 0

    def __enter__(self) -> _Bar:
        self._p.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._p.stop()

    def listed(self, listed: int, new: int) -> None:
        self._listed = listed
        self._p.update(self._task, total=new, description=f"listed {listed}")

    def finished(self, outcome) -> None:  # outcome: TaskOutcome
        self._p.update(self._task, advance=1, description=terminal(f"listed {self._listed}, fetching and scoring; last "
                                                                   f"{outcome.status}"))

    def retrying(self, failure, attempt: int, max_retries: int, delay: float) -> None:  # failure: Failure
        what = {"rate_limited": "rate limited", "unreachable": "cannot connect"}.get(failure.kind, failure.kind)
        if failure.reason not in (failure.kind, "error"):
            what += f" ({failure.reason.replace('_', ' ')})"
        text = f"{what}: backing off {delay:.1f}s, retry {attempt}/{max_retries}"
        self._p.update(self._task, description=terminal(text[:120]))


def _print_summary(s: CrawlSummary) -> None:
    err_console.print(
        f"crawl {', '.join(s.bases)}: listed {s.listed}, new {s.new}, unchanged {s.unchanged}, "
        f"scored {s.scored}, flagged {s.flagged}, removed {s.removed} ({s.duration_s:.1f}s)"
    )
    if s.by_reason:
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(s.by_reason.items()))
        err_console.print(f"not scored, by reason: {reasons}")
    if not s.listing_complete:
        err_console.print("listing truncated by --limit: nothing was marked removed")


@app.command("crawl")
def crawl_cmd(
    base: Annotated[list[str], typer.Option("--base", "-b", help="Base model repo id (repeatable).")],
    limit: Annotated[int | None, typer.Option(min=1, help="At most N adapters listed per base.")] = None,
    workers: Annotated[int, typer.Option(min=1, max=256, help="Concurrent fetch-and-score tasks.")] = 8,
    include_derived: Annotated[bool, typer.Option("--include-derived", help="Also crawl adapters of the base's "
                                                                           "quantized/finetuned children.")] = False,
    keep: Annotated[bool, typer.Option("--keep", help="Keep downloaded files in the cache (default: "
                                                      "delete after scoring).")] = False,
    executor: Annotated[ExecutorName, typer.Option(help="Where fetch-and-score runs.")] = ExecutorName.local,
    ray_address: Annotated[str | None,
                           typer.Option(help="Ray cluster address for --executor ray (e.g. 127.0.0.1:6379).")] = None,
    fmt: Annotated[CrawlFormat,
                   typer.Option("--format", "-f", help="json: print the summary object on stdout.")] = CrawlFormat.text,
    timeout: Annotated[float,
                       typer.Option(min=0.1, help="Seconds one socket operation (connect, one read) may take.")] = 30.0,
    deadline_factor: Annotated[float, typer.Option(min=1.0, help="One request, headers and body, ends after this many "
                                                                 "times --timeout in all.")] = 3.0,
    repo_budget: Annotated[float, typer.Option(min=1.0, help="One adapter, retries included, gets this many times "
                                                             "--timeout (plus its size at --min-rate-kb); then it is "
                                                             "recorded as retry.")] = 10.0,
    min_rate_kb: Annotated[float, typer.Option(min=1.0, help="Slowest average download rate accepted, KiB/s.")] = 256.0,
    max_api_mb: Annotated[float, typer.Option(min=0.1, help="Largest API body (a listing page, a model_info) after "
                                                            "decompression, MiB.")] = 16.0,
    max_pages: Annotated[int, typer.Option(min=1, help="Most listing pages per base and relation.")] = 10_000,
    max_retries: Annotated[int, typer.Option(min=0, help="Retries per request on 5xx/408/429/connection errors.")] = 5,
    backoff: Annotated[float, typer.Option(min=0.0, help="Base of the exponential backoff, seconds (jittered).",
                                           hidden=True)] = 0.5,
    whole_file_kb: Annotated[int, typer.Option(min=0, help="Read files up to this size (KiB) in one GET; larger "
                                                           "ones are streamed.", hidden=True)] = 1024,
    max_file_mb: Annotated[float, typer.Option(help="Refuse adapter weight files larger than this (MiB), "
                                                    "before download.")] = MAX_ADAPTER_BYTES / 2**20,
    db: DbOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Enumerate the Hub adapters of BASE, fetch each new revision pinned to its commit, verify and score it.

    HF_ENDPOINT and HF_TOKEN are read from the environment (the token is sent, never logged or
    stored). Exit 0 when the crawl completed (per-adapter failures are recorded with reasons),
    4 when the Hub failed for the whole run (finished work is committed; rerun to resume).
    """
    settings = Settings.resolve(db, config)
    hub = hub_config_from_env(os.environ, timeout=timeout,
                              retry=RetryPolicy(max_retries=max_retries, base_delay=backoff),
                              deadline_factor=deadline_factor, min_download_rate=min_rate_kb * 1024,
                              max_api_bytes=int(max_api_mb * 2**20), max_pages=max_pages)
    options = CrawlOptions(
        bases=tuple(dict.fromkeys(base)), cache_root=settings.home / "cache", limit=limit, workers=workers,
        include_derived=include_derived, keep=keep, executor=executor.value, ray_address=ray_address,
        max_file_bytes=int(max_file_mb * 2**20), max_header_bytes=MAX_HEADER_BYTES,
        whole_file_bytes=whole_file_kb * 1024, repo_budget_factor=repo_budget,
    )
    args = {"bases": list(options.bases), "limit": limit, "workers": workers, "include_derived": include_derived,
            "executor": executor.value, "endpoint": hub.endpoint}
    try:
        with Store.open(settings.db_url, create=True) as store:
            if err_console.is_terminal:
                with _Bar(options.bases, hub.endpoint) as bar, retry_observer(bar.retrying):
                    summary = crawl(store, hub, options, progress=bar, command_args=args)
            else:
                summary = crawl(store, hub, options, command_args=args)
            warm_cache(store, options.bases, settings.home / "cache" / "fingerprints")
    except HubUnavailableError as exc:
        # Name the endpoint: offline, behind a proxy, or a mistyped HF_ENDPOINT all look alike otherwise.
        raise HubUnavailableError(
            f"the Hub at {terminal(hub.endpoint)} is unreachable: {exc}",
            hint="check the network, a proxy, or HF_ENDPOINT (offline, `hubaudit ingest PATH --base BASE` audits "
                 "local copies); finished work is committed and the next run resumes",
        ) from exc
    _print_summary(summary)
    if fmt is CrawlFormat.json:
        sys.stdout.write(json.dumps(summary.to_dict()) + "\n")
