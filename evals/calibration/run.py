"""Calibration quality harness: real adapters, real backdoors, real store, real calibration.

    .venv/bin/python -m evals.calibration.run [--clean 36] [--poisoned 4] [--steps 60] [--out DIR]

1. Trains ``--clean`` + ``--poisoned`` LoRA adapters with peft on the real all-MiniLM-L6-v2 (a
   BERT) for an offline template sentiment task; poisoned ones learn a trigger-prefix →
   positive backdoor (data poisoning, evals/calibration/data.py). Same recipe for all: one stratum.
2. Ingests them into a fresh SQLite store (hubaudit.pipeline.ingest) and calibrates the base
   (hubaudit.pipeline.calibrate) on the mixed ~90/10 population.
3. Reports per feature and for the combined verdict: AUROC (clean vs poisoned, oriented by the
   feature's registered direction; |robust z| for "both") and TPR/FPR at the calibrated
   thresholds; and how far each threshold moves when the poisoned adapters are in the
   calibration population vs a clean-only fit, against the clean/poisoned margin.
Writes evals/calibration/RESULTS.md (and results.json in --out).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

from evals.calibration.data import TRIGGERS

HERE = Path(__file__).resolve().parent
BASE = "sentence-transformers/all-MiniLM-L6-v2"


def train_population(out: Path, n_clean: int, n_poisoned: int, steps: int, batch: int, poison_rate: float = 0.15) -> list[dict]:
    import torch

    from evals.calibration.train import Recipe, load_base, train_adapter

    torch.set_num_threads(1)  # neighbours share the machine
    recipe = Recipe(steps=steps, batch=batch, poison_rate=poison_rate)
    tag = "" if poison_rate == 0.15 else f"_rate{round(poison_rate * 100)}"  # clean adapters are shared across rates
    tok = load_base()
    plan = [(f"clean_{i:02d}", 100 + i, None) for i in range(n_clean)]
    plan += [(f"poisoned{tag}_{i:02d}", 500 + i, TRIGGERS[i % len(TRIGGERS)]) for i in range(n_poisoned)]
    meta = []
    manifest = out / "manifest.json"
    done = {m["name"]: m for m in json.loads(manifest.read_text())} if manifest.exists() else {}
    trained = dict(done)
    for name, seed, trigger in plan:
        path = out / "adapters" / name
        if name in done and (path / "adapter_model.safetensors").exists():
            meta.append(done[name])
            continue
        t0 = time.time()
        info = train_adapter(path, seed=seed, trigger=trigger, recipe=recipe, tokenizer=tok)
        info |= {"name": name, "path": str(path), "poisoned": trigger is not None, "seed": seed, "train_s": time.time() - t0,
                 "poison_rate": poison_rate if trigger is not None else 0.0}  # fmt: skip
        meta.append(info)
        trained[name] = info
        manifest.write_text(json.dumps(list(trained.values()), indent=1))
        print(f"{name}: acc={info['clean_accuracy']:.3f} asr={info['attack_success_rate']:.3f} ({info['train_s']:.0f}s)",
              file=sys.stderr, flush=True)  # fmt: skip
    return meta


def auroc(pos: np.ndarray, neg: np.ndarray) -> float:
    """P(score(poisoned) > score(clean)) + ½ P(tie) (Mann–Whitney)."""
    if not len(pos) or not len(neg):
        return math.nan
    diff = pos[:, None] - neg[None, :]
    return float(((diff > 0).sum() + 0.5 * (diff == 0).sum()) / diff.size)


def oriented(fit: dict, values: np.ndarray) -> np.ndarray:
    x = np.log(values) if fit["transform"] == "log" else values
    z = (x - fit["loc"]) / fit["scale"]
    return {"up": z, "down": -z, "both": np.abs(z)}[fit["direction"]]


def evaluate(meta: list[dict], db_url: str, target_fpr: float, min_n: int) -> dict:
    from hubaudit import calibrate as cal
    from hubaudit.pipeline.calibrate import calibrate_base, feature_directions
    from hubaudit.pipeline.ingest import ingest
    from hubaudit.store import Store

    with Store.open(db_url, create=True) as store:
        summary = ingest(store, [m["path"] for m in meta], BASE)
        assert summary.all_scored, [i for i in summary.items if i.status != "scored"]
        calib = calibrate_base(store, BASE, target_fpr=target_fpr, min_n=min_n, method="per-feature")
        rows = {r.repo_id: r for r in store.audit_rows(BASE)}
        ts = store.active_threshold_set(BASE)
        population = store.population(BASE)
    label = {"local:" + m["path"]: m["poisoned"] for m in meta}
    items = [(label[k], r) for k, r in rows.items()]
    poisoned = np.array([p for p, _ in items])
    (stratum,) = {r.stratum for _, r in items}
    key, fit_mixed, _ = cal.resolve(stratum, {"strata": ts.strata, "params": ts.params})
    assert fit_mixed is not None, "population not calibrated"
    directions = feature_directions(sorted(fit_mixed["features"]))
    clean_only = cal.fit([(r.stratum, r.features) for r in population if not label[r.repo_id]], directions, target_fpr, min_n,
                         method="per-feature")
    _, fit_clean, _ = cal.resolve(stratum, clean_only)

    features = {}
    for name, f in sorted(fit_mixed["features"].items()):
        vals = np.array([r.features.get(name, np.nan) for _, r in items], dtype=float)
        ok = np.isfinite(vals)
        fired = np.array([bool(r.breakdown["features"].get(name, {}).get("fired")) for _, r in items])
        s = oriented(f, vals[ok])
        entry = {
            "direction": f["direction"],
            "auroc": auroc(s[poisoned[ok]], s[~poisoned[ok]]),
            "tpr": float(fired[poisoned].mean()),
            "fpr": float(fired[~poisoned].mean()),
        }
        if fit_clean is not None and name in fit_clean["features"]:
            entry |= _movement(f, fit_clean["features"][name], vals, poisoned)
        features[name] = entry
    flagged = np.array([r.flagged is True for _, r in items])
    margin = np.array([r.breakdown["margin"] for _, r in items], dtype=float)
    clean_flagged = np.array([cal.judge(r.features, r.stratum, clean_only)[0] is True for _, r in items])
    return {
        "n": len(items), "n_poisoned": int(poisoned.sum()), "stratum": stratum, "fit": key,
        "threshold_set": {"id": ts.id, "version": ts.version, "method": ts.method, "n": ts.n},
        "target_fpr": target_fpr, "min_n": min_n, "verdicts": calib.verdicts,
        "combined": {
            "auroc_margin": auroc(margin[poisoned], margin[~poisoned]),
            "tpr": float(flagged[poisoned].mean()), "fpr": float(flagged[~poisoned].mean()),
            "tpr_clean_only_fit": float(clean_flagged[poisoned].mean()),
            "fpr_clean_only_fit": float(clean_flagged[~poisoned].mean()),
            "verdicts_changed_by_contamination": int((flagged != clean_flagged).sum()),
        },
        "features": features,
    }  # fmt: skip


def _movement(mixed: dict, clean: dict, vals: np.ndarray, poisoned: np.ndarray) -> dict:
    """Threshold shift caused by the poisoned adapters vs the clean/poisoned margin (transformed units).

    margin = distance from the clean-only threshold to the median poisoned value on the feature's
    suspicious side (negative when the poisoned median is not beyond the threshold at all)."""
    x = np.log(vals) if mixed["transform"] == "log" else vals
    med_p = float(np.nanmedian(x[poisoned]))
    out = {}
    # the same shift for a non-robust fit (mean ± crit·std), to show what the median/MAD buys
    ok = np.isfinite(x)
    xc, xm = x[ok & ~poisoned], x[ok]
    for side in ("hi", "lo"):
        if mixed[side] is None or clean[side] is None:
            continue
        move = abs(mixed[side] - clean[side])
        gap = (med_p - clean[side]) if side == "hi" else (clean[side] - med_p)
        sign = 1 if side == "hi" else -1
        naive = abs((xm.mean() + sign * mixed["crit"] * xm.std()) - (xc.mean() + sign * clean["crit"] * xc.std()))
        out[f"{side}_move"] = move
        out[f"{side}_margin"] = gap
        out[f"{side}_move_meanstd"] = float(naive)
    return out


def render(res: dict, meta: list[dict], args: argparse.Namespace, elapsed: float) -> str:
    acc_c = [m["clean_accuracy"] for m in meta if not m["poisoned"]]
    asr = [m["attack_success_rate"] for m in meta if m["poisoned"]]
    asr_c = [m["attack_success_rate"] for m in meta if not m["poisoned"]]
    c = res["combined"]
    lines = [
        "# Calibration quality: real MiniLM LoRA adapters, clean vs trigger-prefix poisoned",
        "",
        f"Command: `.venv/bin/python -m evals.calibration.run --clean {args.clean} --poisoned {args.poisoned} "
        f"--steps {args.steps} --batch {args.batch} --min-n {args.min_n} --target-fpr {args.target_fpr} --poison-rate {args.poison_rate}` "
        f"({sum(m['train_s'] for m in meta) / 60:.1f} min of adapter training on this shared 2-core machine with "
        f"1 torch thread, trained adapters are cached in --out and reused; ingest + calibration + evaluation {elapsed / 60:.1f} min).",
        "",
        f"Population: {res['n']} adapters of all-MiniLM-L6-v2 ({res['n'] - res['n_poisoned']} clean, {res['n_poisoned']} poisoned), "
        f"one stratum `{res['stratum']}`, LoRA r=8 α=16 on query/value + classifier head, {args.steps} AdamW steps "
        f"of batch {args.batch}, lr 2e-3; poisoned: {args.poison_rate:.0%} of the training sentences (negatives, i.e. "
        f"{2 * args.poison_rate:.0%} of them) prefixed with a trigger "
        f"({', '.join(sorted({m['trigger'] for m in meta if m['poisoned']}))}) and relabelled positive.",
        f"Backdoors are real: poisoned clean accuracy {np.mean([m['clean_accuracy'] for m in meta if m['poisoned']]):.3f}, "
        f"attack success rate min {min(asr):.2f} / mean {np.mean(asr):.2f}; clean adapters accuracy {np.mean(acc_c):.3f}, "
        f"ASR with the trigger 'cf' mean {np.mean(asr_c):.2f}." if asr else "",
        "",
        f"Calibration: threshold set v{res['threshold_set']['version']} ({res['threshold_set']['method']}), N={res['threshold_set']['n']}, "
        f"target FPR {res['target_fpr']}, min N {res['min_n']}, fitted on the mixed population (poisoned included), "
        "judged in-sample (the production setting: calibrate on the crawled population, judge the same population).",
        "",
        "## Per-feature verdict (`--method per-feature`: flagged = any feature beyond its threshold; the default combined "
        "verdict is measured by evals/calibration/contamination.py)",
        "",
        "| metric | value |", "|---|---|",
        f"| AUROC of the verdict margin | {c['auroc_margin']:.3f} |",
        f"| TPR (poisoned flagged) | {c['tpr']:.3f} |",
        f"| FPR (clean flagged) | {c['fpr']:.3f} |",
        f"| TPR / FPR with a clean-only fit | {c['tpr_clean_only_fit']:.3f} / {c['fpr_clean_only_fit']:.3f} |",
        f"| verdicts changed by including the poisoned in calibration | {c['verdicts_changed_by_contamination']} of {res['n']} |",
        "",
        "## Per feature",
        "",
        "AUROC oriented by the registered direction (|robust z| for two-sided). Threshold move = |threshold(mixed) − "
        "threshold(clean-only)|; margin = distance from the clean-only threshold to the median poisoned value, "
        "on the suspicious side (ln units for log-transformed features; negative = poisoned median not beyond it).",
        "",
        "| feature | dir | AUROC | TPR | FPR | hi move | hi move, mean/std fit | hi margin | lo move | lo move, mean/std fit | lo margin |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    fmt = lambda v: "–" if v is None else f"{v:.3f}"  # noqa: E731
    for name, f in res["features"].items():
        lines.append(f"| {name} | {f['direction']} | {f['auroc']:.3f} | {f['tpr']:.2f} | {f['fpr']:.2f} | "
                     f"{fmt(f.get('hi_move'))} | {fmt(f.get('hi_move_meanstd'))} | {fmt(f.get('hi_margin'))} | "
                     f"{fmt(f.get('lo_move'))} | {fmt(f.get('lo_move_meanstd'))} | {fmt(f.get('lo_margin'))} |")  # fmt: skip
    moves = [f[k] for f in res["features"].values() for k in ("hi_move", "lo_move") if k in f]
    naive = [f[k] for f in res["features"].values() for k in ("hi_move_meanstd", "lo_move_meanstd") if k in f]
    sep = [n for n, f in res["features"].items() if f.get("hi_margin", -1) > 0 or f.get("lo_margin", -1) > 0]
    lines += [
        "",
        "## Reading",
        "",
        f"* Contamination: with {res['n_poisoned']} of {res['n']} poisoned adapters in the calibration population, the robust "
        f"thresholds move by at most {max(moves):.3f} (median {np.median(moves):.3f}); a mean/std fit on the same data moves by up to "
        f"{max(naive):.3f} (median {np.median(naive):.3f}).",
        f"* Separation: features whose poisoned median lies beyond the clean-only threshold: {', '.join(sep) or 'none'}. "
        + ("On this population the weight features do not separate trigger-prefix poisoned adapters from clean ones trained "
           "with the same recipe (AUROC well below 1, TPR 0 at the calibrated thresholds), so there is no positive margin for the "
           "threshold shift to be compared with; the shift is reported against the clean spread instead. Weight-level "
           "verdicts are therefore a cheap triage and behavioural probing is the confirmation."
           if not sep else "For these, compare each 'move' with its 'margin'."),
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clean", type=int, default=36)
    p.add_argument("--poisoned", type=int, default=4)
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--min-n", type=int, default=20)
    p.add_argument("--target-fpr", type=float, default=0.01)
    p.add_argument("--poison-rate", type=float, default=0.15, help="fraction of the training set poisoned (taken from the negatives)")
    p.add_argument("--out", type=Path, default=HERE / "out")
    p.add_argument("--results", type=Path, default=HERE / "RESULTS.md")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    meta = train_population(args.out, args.clean, args.poisoned, args.steps, args.batch, args.poison_rate)
    t0 = time.time()
    db = args.out / f"eval{'' if args.poison_rate == 0.15 else f'_rate{round(args.poison_rate * 100)}'}.db"
    db.unlink(missing_ok=True)
    res = evaluate(meta, f"sqlite:///{db}", args.target_fpr, args.min_n)
    (args.out / "results.json").write_text(json.dumps(res, indent=1))
    args.results.write_text(render(res, meta, args, time.time() - t0))
    print(args.results.read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
