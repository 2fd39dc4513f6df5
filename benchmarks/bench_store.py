"""Store and calibration at crawl scale (targets: calibrate 100,000 stored adapters < 5 s;
upsert 100,000 scores < 30 s on SQLite). Baselines are measured in the same run:

* upsert: ``record_revision`` one commit per row (what a naive crawl loop does) over a subset,
  extrapolated linearly to N; ratio = naive / bulk.
* calibrate: the floor is a pure-numpy median/MAD fit on the same feature arrays already in
  memory (no database, no verdicts); ratio = full calibration / floor. The calibration is
  calibrate_base with its defaults (combined verdict: per-feature fits + the combined detector per
  stratum). The workload has the 14 features below per adapter (a real fs-2 scan of a 12-module
  adapter has about 40: the fit and judge costs grow with them); ``--module-features K`` adds K
  synthetic per-module features; ``--qwen-features --modules 196`` stores what a scan of a
  Qwen2.5-1.5B-shaped all-linear r=16 adapter gives: its 268 real fs-2 features (196 per-module:
  calibration fits the 72 others, hubaudit/calibrate/fit.py MAX_MODULE_FEATURES) and 196 modules.

    .venv/bin/python benchmarks/bench_store.py [--n 100000] [--naive 2000] [--modules 12] [--db URL]
        [--module-features K | --qwen-features]
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hubaudit.constants import FEATURESET_VERSION
from hubaudit.models import ModuleStat, ScanResult

BASE = "bench/base"
FEATURES = ["global_frobN_std", "global_frobN_mean", "global_frobN_max", "global_frobN_cv", "global_log_frobN_std",
            "attn_frobN_mean", "layer_profile_slope", "layer_profile_cv", "layer_max_share", "spectral_top1_share_mean",
            "spectral_entropy_mean", "effective_rank_mean", "proj_q_proj_frobN_mean", "proj_v_proj_frobN_mean"]  # fmt: skip
STRATA = [(r, t) for r in (8, 16, 32) for t in (("q_proj", "v_proj"), ("k_proj", "o_proj", "q_proj", "v_proj"))]


def add_module_features(k: int) -> None:
    """Append k per-module share features (fs-2's ``module_{layer}.{path}_frobN_rel``, two-sided) to
    FEATURES: a real fs-2 scan has one per LoRA module besides the profile features."""
    FEATURES.extend(f"module_{i // 2}.self_attn.{('q_proj', 'v_proj')[i % 2]}_frobN_rel" for i in range(k))


QWEN = {"q_proj": (1536, 1536), "k_proj": (1536, 256), "v_proj": (1536, 256), "o_proj": (1536, 1536),
        "gate_proj": (1536, 8960), "up_proj": (1536, 8960), "down_proj": (8960, 1536)}  # (d_in, d_out)


def qwen_feature_rows(n_distinct: int = 200, seed: int = 1) -> np.ndarray:
    """The real fs-2 features (stats.compute_features) of ``n_distinct`` Qwen2.5-1.5B-shaped all-linear
    r=16 adapters (28 layers x 7 projections = 196 modules) with random per-module norms and spectra;
    sets FEATURES to their names (268 of them, 196 per-module) and returns an n_distinct x K array."""
    from hubaudit.stats import compute_features, scored_modules

    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n_distinct):
        level = np.exp(rng.normal(-5, 0.3))
        mods = []
        for layer in range(28):
            for proj, (d_in, d_out) in QWEN.items():
                sv = tuple(sorted(np.exp(rng.normal(0, 0.5, 16)), reverse=True))
                path = f"model.layers.{layer}.{'mlp' if proj in ('gate_proj', 'up_proj', 'down_proj') else 'self_attn'}.{proj}"
                mods.append(ModuleStat(path, layer, proj, "linear", d_in, d_out, 16, 2.0,
                                       float(level * np.exp(rng.normal(0, 0.2))), sv))  # fmt: skip
        rows.append(compute_features(scored_modules(mods)))
    FEATURES[:] = sorted(rows[0])
    return np.array([[r.get(f, np.nan) for f in FEATURES] for r in rows])


def make_scans(n: int, n_modules: int, seed: int = 0, qwen: np.ndarray | None = None) -> list[ScanResult]:
    rng = np.random.default_rng(seed)
    if qwen is not None:  # real feature rows, each reused with a common multiplicative jitter
        vals = qwen[np.arange(n) % len(qwen)] * np.exp(rng.normal(0, 0.02, (n, 1)))
    else:
        vals = np.exp(rng.normal(-5, 0.3, (n, len(FEATURES))))
        vals[:, FEATURES.index("layer_profile_slope")] = rng.normal(0, 0.1, n)  # a signed, two-sided feature
    js = FEATURES.index("global_frobN_std")
    out = []
    for i in range(n):
        rank, targets = STRATA[i % len(STRATA)]
        mods = [ModuleStat(f"model.layers.{k // 2}.self_attn.{targets[k % len(targets)]}", k // 2, targets[k % len(targets)],
                           "linear", 1536, 1536, rank, 2.0, float(vals[i, js]) * (1 + k / 50), (0.1, 0.05))
                for k in range(n_modules)]  # fmt: skip
        out.append(ScanResult(
            source=f"bench/a{i}", status="ok", score=float(vals[i, js]), peft_type="LORA", variant="lora", rank=rank,
            alpha=2.0 * rank, target_modules=targets, n_modules=n_modules, modules=mods,
            features=dict(zip(FEATURES, vals[i].tolist())), content_sha256=f"{i:064x}", featureset_version=FEATURESET_VERSION,
        ))  # fmt: skip
    return out


def numpy_floor(population) -> float:
    """Median/MAD per stratum and feature on arrays already in memory: the fit alone (CPU s; the
    arrays are built before the clock starts)."""
    from hubaudit.calibrate import feature_matrix

    by: dict[str, list] = {}
    for r in population:
        by.setdefault(r.stratum, []).append(r.features)
    arrays = [feature_matrix(rows, FEATURES) for rows in by.values()]
    t = time.process_time()
    for x in arrays:
        x = np.where(x > 0, np.log(np.abs(x) + 1e-300), x)
        m = np.median(x, axis=0)
        np.median(np.abs(x - m), axis=0)
    return time.process_time() - t


def stages(store) -> dict[str, tuple[float, float]]:  # type: ignore[no-untyped-def]
    """(wall s, CPU s) of each stage of a calibration, the same calls calibrate_base makes (default
    combined verdict): stale-score check, load, fit, judge, store verdicts."""
    from hubaudit import calibrate as cal
    from hubaudit.pipeline.calibrate import fit_threshold_set, no_cyclic_gc, rescore_stale

    out = {}

    def timed(name, fn):  # type: ignore[no-untyped-def]
        t, c = time.perf_counter(), time.process_time()
        value = fn()
        out[name] = (time.perf_counter() - t, time.process_time() - c)
        return value

    timed("stale check", lambda: rescore_stale(store, BASE, FEATURESET_VERSION))
    pop = timed("load", lambda: store.population(BASE, FEATURESET_VERSION))
    with no_cyclic_gc():
        ts = timed("fit", lambda: fit_threshold_set([(r.stratum, r.features) for r in pop], min_n=30))
        judged = timed("judge", lambda: cal.judge_many([(r.stratum, r.features) for r in pop], ts))
        tid = store.save_threshold_set(BASE, method=ts["method"], featureset_version=FEATURESET_VERSION, n=ts["n"],
                                       strata=ts["strata"], params=ts["params"])  # fmt: skip
        timed("save verdicts", lambda: store.save_verdicts(tid, [(r.revision_id, f, b) for r, (f, b) in zip(pop, judged)]))
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--naive", type=int, default=2_000, help="rows for the one-commit-per-row baseline")
    p.add_argument("--modules", type=int, default=12, help="LoRA modules per adapter (per-module norms stored)")
    p.add_argument("--db", default=None, help="database URL (default: a temporary SQLite file)")
    p.add_argument("--module-features", type=int, default=0,
                   help="add this many per-module share features per adapter (fs-2 has one per module)")
    p.add_argument("--qwen-features", action="store_true",
                   help="the real fs-2 features of Qwen2.5-1.5B-shaped all-linear adapters (268, 196 per-module)")
    args = p.parse_args()
    add_module_features(args.module_features)
    qwen = qwen_feature_rows() if args.qwen_features else None

    from hubaudit.pipeline.calibrate import calibrate_base
    from hubaudit.store import Store

    tmp = tempfile.mkdtemp(prefix="bench-store-")
    url = args.db or f"sqlite:///{tmp}/bench.db"
    scans = make_scans(args.n, args.modules, qwen=qwen)
    items = [dict(repo_id=f"org{i % 997}/adapter-{i}", sha=f"{i:040x}", status="scored", scan=s) for i, s in enumerate(scans)]

    with Store.open(f"sqlite:///{tmp}/naive.db", create=True) as naive:
        t, c = time.perf_counter(), time.process_time()
        for it in items[: args.naive]:
            naive.record_revision(base=BASE, **it)
        naive_s = (time.perf_counter() - t) * args.n / args.naive
        naive_cpu = (time.process_time() - c) * args.n / args.naive

    with Store.open(url, create=True) as store:
        t, c = time.perf_counter(), time.process_time()
        store.record_revisions_bulk(BASE, items)
        bulk_s, bulk_cpu = time.perf_counter() - t, time.process_time() - c
        t = time.perf_counter()
        store.record_revisions_bulk(BASE, items)  # re-upsert: every row conflicts and is updated
        reupsert_s = time.perf_counter() - t

        floor_s = numpy_floor(store.population(BASE, FEATURESET_VERSION))
        load_before = os.getloadavg()[0]
        t, c = time.perf_counter(), time.process_time()
        summary = calibrate_base(store, BASE, min_n=30)
        cal_s, cal_cpu = time.perf_counter() - t, time.process_time() - c
        load_after = os.getloadavg()[0]
        parts = stages(store)

    print(f"store: {url.split(':', 1)[0]}  N={args.n:,}  modules/adapter={args.modules}  features={len(FEATURES)}  "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"upsert {args.n:,} scores (bulk, new rows)      {bulk_s:7.2f} s wall, {bulk_cpu:.2f} s CPU   target < 30 s")
    print(f"upsert {args.n:,} scores (bulk, all conflict)  {reupsert_s:7.2f} s")
    print(f"baseline: one commit per row ({args.naive:,} rows, extrapolated) {naive_s:7.2f} s   ratio naive/bulk = {naive_s / bulk_s:.1f}x wall, {naive_cpu / bulk_cpu:.1f}x CPU")
    print(f"calibrate {args.n:,} adapters ({summary.verdict} verdict; load + fit + judge + store verdicts) {cal_s:7.2f} s wall, "
          f"{cal_cpu:.2f} s CPU   target < 5 s   (1-min load average {load_before:.1f} before, {load_after:.1f} after)")
    print("  stages, s wall/CPU (a second run): " + ", ".join(f"{k} {w:.2f}/{c:.2f}" for k, (w, c) in parts.items())
          + f"; total {sum(w for w, _ in parts.values()):.2f}/{sum(c for _, c in parts.values()):.2f}; verdicts: {summary.verdicts}")
    print(f"baseline: numpy median/MAD on in-memory arrays {floor_s:7.3f} s CPU   ratio calibrate/floor = {cal_cpu / floor_s:.1f}x (CPU)")
    return 0 if math.isfinite(cal_s) else 1


if __name__ == "__main__":
    raise SystemExit(main())
