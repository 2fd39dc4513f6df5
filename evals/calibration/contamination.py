"""Does a contaminated calibration population move the thresholds less than
the clean/poisoned margin? On the cached real cohort of evals/detection (no training).

    .venv/bin/python -m evals.calibration.contamination [--draws 5] [--min-n 6]

Per stratum of evals/detection (clean adapters C, working poisoned P):

* clean-only fit: the threshold set ``hubaudit calibrate`` ships (hubaudit.pipeline.calibrate.
  fit_threshold_set, default method "combined"), fitted on C alone;
* mixed fit: the same, fitted on C plus k poisoned adapters, k = round(|C|/9) (≥ 1), so that about
  10 % of the calibration population is poisoned. ``--draws`` seeded draws of which poisoned
  adapters go in; every number below is the worst (largest shift) or the median over draws.

For the combined statistic S (thresholds T): shift = |ln T_mixed − ln T_clean|; margin = median
over P of ln(S_clean(p)/T_clean), i.e. how far beyond the clean-only threshold the median
poisoned adapter lies (negative: the median poisoned adapter is not beyond it). Also the
verdicts that matter in production: TPR on P under the clean-only fit and under the mixed fit
(the poisoned that were in the mixed population are judged in-sample, as a crawled base is).
Per feature (every registered feature with a per-feature threshold, in the fit's units: ln for
log-transformed features): shift = max over its bounds of |bound_mixed − bound_clean|, margin =
the median poisoned value's distance beyond the clean-only bound on its suspicious side.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
CACHE = HERE.parent / "cache" / "detection"
S = "eval|r?|cohort"
BEGIN, END = "<!-- contamination:begin -->", "<!-- contamination:end -->"


def cohort() -> dict[str, dict[str, list[dict]]]:
    """Features of the cached evals/detection cohort by stratum: {"clean": [...], "poisoned": [...]}."""
    from evals.detection.run import ACC_MIN, ASR_MIN, features_of

    out: dict[str, dict[str, list]] = defaultdict(lambda: {"clean": [], "poisoned": []})
    for p in sorted(CACHE.glob("*/*/detection_record.json")):
        rec = json.loads(p.read_text())
        if "error" in rec:
            continue
        if rec["poisoned"] and (rec["attack_success"] < ASR_MIN or rec["clean_accuracy"] < ACC_MIN):
            continue
        feats, err = features_of(rec["path"])
        if not err:
            out[rec["group"]]["poisoned" if rec["poisoned"] else "clean"].append(feats)
    return dict(out)


def _bound_shift_margin(fc: dict, fm: dict, pois_x: np.ndarray) -> tuple[float, float]:
    """(shift, margin) of one feature's per-feature thresholds (module docstring)."""
    shift, margins = 0.0, []
    med = float(np.median(pois_x)) if pois_x.size else math.nan
    if fc["hi"] is not None:
        shift = max(shift, abs(fm["hi"] - fc["hi"]))
        margins.append(med - fc["hi"])
    if fc["lo"] is not None:
        shift = max(shift, abs(fm["lo"] - fc["lo"]))
        margins.append(fc["lo"] - med)
    return shift, max(margins)


def stratum_result(clean: list[dict], poisoned: list[dict], draws: int, min_n: int) -> dict:
    from hubaudit.calibrate import judge_many
    from hubaudit.pipeline.calibrate import fit_threshold_set

    k = max(1, round(len(clean) / 9))
    pure = fit_threshold_set([(S, r) for r in clean], min_n=min_n)
    e_pure = pure["strata"][S]
    if e_pure.get("status") != "calibrated":
        return {"skipped": f"clean-only fit not calibrated: {e_pure.get('reason')}"}
    judged = judge_many([(S, r) for r in poisoned], pure)
    t_pure = e_pure["combined"]["threshold"]
    margins_c = np.array([math.log(bd["combined"]["statistic"] / t_pure) for _, bd in judged])
    tpr_pure = float(np.mean([f is True for f, _ in judged]))
    caught = margins_c[margins_c > 0]  # the poisoned the clean-only fit flags: the margin a shift can erase
    out = {"n_clean": len(clean), "n_poisoned": len(poisoned), "k_in_mix": k, "threshold_clean": t_pure,
           "margin": float(np.median(margins_c)), "tpr_clean_fit": tpr_pure, "draws": [],
           "caught": int(caught.size), "margin_caught": float(np.median(caught)) if caught.size else math.nan}  # fmt: skip
    feat_shift: dict[str, list[float]] = defaultdict(list)
    feat_margin: dict[str, float] = {}
    for d in range(draws):
        pick = np.random.default_rng(d).choice(len(poisoned), size=min(k, len(poisoned)), replace=False)
        mixed = fit_threshold_set([(S, r) for r in clean] + [(S, poisoned[i]) for i in pick], min_n=min_n)
        e_mix = mixed["strata"][S]
        t_mix = e_mix["combined"]["threshold"]
        jm = judge_many([(S, r) for r in poisoned], mixed)
        out["draws"].append({
            "in_mix": sorted(int(i) for i in pick),
            "threshold_mixed": t_mix,
            "shift": abs(math.log(t_mix / t_pure)),
            "tpr_mixed_fit": float(np.mean([f is True for f, _ in jm])),
            "caught_still_flagged": int(sum(f is True for (f, _), m in zip(jm, margins_c) if m > 0)),
            "margin_mixed_fit": float(np.median([bd["margin"] for _, bd in jm])),
            "clean_flagged_mixed_fit": int(sum(f is True for f, _ in judge_many([(S, r) for r in clean], mixed))),
        })  # fmt: skip
        # sampling-noise control: the same fit with k clean adapters left out instead of k poisoned added
        drop = set(np.random.default_rng(100 + d).choice(len(clean), size=k, replace=False).tolist())
        fewer = fit_threshold_set([(S, r) for i, r in enumerate(clean) if i not in drop], min_n=min_n)
        out["draws"][-1]["noise_shift"] = abs(math.log(fewer["strata"][S]["combined"]["threshold"] / t_pure))
        for name, fc in e_pure["features"].items():
            fm = e_mix["features"].get(name)
            if fm is None:
                continue
            vals = np.array([r.get(name, np.nan) for r in poisoned], dtype=float)
            vals = vals[np.isfinite(vals)]
            if fc["transform"] == "log":
                vals = np.log(vals[vals > 0])
            shift, margin = _bound_shift_margin(fc, fm, vals)
            feat_shift[name].append(shift)
            feat_margin[name] = margin
    out["shift_max"] = max(d["shift"] for d in out["draws"])
    out["shift_median"] = float(np.median([d["shift"] for d in out["draws"]]))
    out["noise_shift_max"] = max(d["noise_shift"] for d in out["draws"])
    out["features"] = {n: {"shift_max": max(v), "margin": feat_margin[n],
                           "scale": e_pure["features"][n]["scale"]} for n, v in feat_shift.items()}  # fmt: skip
    return out


def _f(x: float, nd: int = 3) -> str:
    return "–" if x is None or not math.isfinite(x) else f"{x:+.{nd}f}"


def render(res: dict, args: argparse.Namespace) -> str:
    from evals.detection.run import PAPER

    lines = [
        BEGIN,
        "# Contamination vs margin on the real evals/detection cohort",
        "",
        f"Command: `.venv/bin/python -m evals.calibration.contamination --draws {args.draws} --min-n {args.min_n}` "
        "(cached adapters of evals/detection, nothing trained; see the module docstring for every definition).",
        "",
        "Both fits are the threshold set `hubaudit calibrate` ships (default combined verdict, "
        "hubaudit.pipeline.calibrate.fit_threshold_set), min N lowered to "
        f"{args.min_n} because a stratum has 12-24 clean adapters. Mixed = all clean + k poisoned (≈10 %), "
        f"{args.draws} seeded draws; shift = worst draw. Units: ln of the combined statistic (its verdict margin is "
        "ln(S/T)); per-feature thresholds in their fit units (ln for log-transformed features).",
        "",
        "## Default (combined) statistic",
        "",
        "| stratum | clean | poisoned (k in mix) | threshold shift, worst draw (ln) | median shift | control: shift from "
        "leaving k clean out instead (worst draw) | clean/poisoned "
        "margin: median poisoned ln(S/T_clean) | shift < margin? | poisoned flagged by the clean-only fit: n, median "
        "margin | shift < that margin? | of those, still flagged by the mixed fit (worst draw) | TPR clean-only fit | "
        "TPR mixed fit (median draw) | clean flagged by mixed fit (max) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    verdicts, verdicts_c = [], []
    for g, r in sorted(res.items()):
        if "skipped" in r:
            lines.append(f"| {g} | {r['skipped']} |||||||||||||")
            continue
        m, sh = r["margin"], r["shift_max"]
        ok = "yes" if m > 0 and sh < m else ("no" if m > 0 else "no positive margin")
        verdicts.append((g, ok))
        tpr_m = float(np.median([d["tpr_mixed_fit"] for d in r["draws"]]))
        cf = max(d["clean_flagged_mixed_fit"] for d in r["draws"])
        mc = r["margin_caught"]
        ok_c = "–" if not r["caught"] else ("yes" if sh < mc else "no")
        verdicts_c.append((g, ok_c))
        still = min(d["caught_still_flagged"] for d in r["draws"])
        lines.append(f"| {g} | {r['n_clean']} | {r['n_poisoned']} ({r['k_in_mix']}) | {sh:.3f} | {r['shift_median']:.3f} | "
                     f"{r['noise_shift_max']:.3f} | {_f(m)} | {ok} | {r['caught']}, {_f(mc)} | {ok_c} | {still} of {r['caught']} | "
                     f"{r['tpr_clean_fit']:.2f} | {tpr_m:.2f} | {cf} |")  # fmt: skip
    lines += ["", "## Per feature", "",
              "Per stratum, over every feature with a per-feature threshold: how many have a positive margin (the "
              "median poisoned value beyond the clean-only bound), and for how many of those the worst contamination "
              f"shift is smaller than the margin; the paper's statistic ({PAPER}) in full; and the largest shift of any "
              "feature in units of that feature's clean robust σ.", "",
              "| stratum | features | with positive margin | of those, shift < margin | paper stat shift | paper stat margin "
              "| largest shift / σ (feature) | median shift / σ |", "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for g, r in sorted(res.items()):
        if "skipped" in r:
            continue
        fs = r["features"]
        pos = [n for n, v in fs.items() if v["margin"] > 0]
        ok = [n for n in pos if fs[n]["shift_max"] < fs[n]["margin"]]
        rel = {n: v["shift_max"] / v["scale"] for n, v in fs.items()}
        worst = max(rel, key=rel.get)
        p = fs.get(PAPER, {})
        lines.append(f"| {g} | {len(fs)} | {len(pos)} | {len(ok)} | {p.get('shift_max', math.nan):.3f} | "
                     f"{_f(p.get('margin', math.nan))} | {rel[worst]:.2f} ({worst}) | {np.median(list(rel.values())):.2f} |")  # fmt: skip
    good = [g for g, v in verdicts if v == "yes"]
    bad = [g for g, v in verdicts if v == "no"]
    nom = [g for g, v in verdicts if v == "no positive margin"]
    lines += ["", "## Reading", "",
              f"* Default combined statistic: the contamination shift is smaller than the clean/poisoned margin in "
              f"{len(good)} of {len(verdicts)} strata ({', '.join(good) or 'none'}); larger in {len(bad)} "
              f"({', '.join(bad) or 'none'}); in {len(nom)} ({', '.join(nom) or 'none'}) the median poisoned adapter is "
              "not beyond the clean-only threshold, so there is no positive margin to protect (the statistic does not "
              "separate that stratum; see evals/detection/RESULTS.md).",
              "* Restricted to the poisoned adapters the clean-only fit does flag (a selection made with the labels, "
              "for diagnosis): the worst-draw shift is smaller than their median margin in "
              f"{sum(v == 'yes' for _, v in verdicts_c)} of {sum(v != '–' for _, v in verdicts_c)} strata that have any "
              f"({', '.join(g for g, v in verdicts_c if v == 'yes') or 'none'}); not in "
              f"{', '.join(g for g, v in verdicts_c if v == 'no') or 'none'}.",
              "* Control column: at 12-24 clean adapters the threshold moves about as much when k clean adapters are "
              "left out as when k poisoned ones are added, i.e. these shifts are mostly sampling noise of a small "
              "stratum, not drag by the poisoned (compare the two columns row by row).",
              "* The threshold is not the whole story: the mixed fit also re-estimates location, scale and "
              "correlation, so a poisoned adapter's statistic changes too (the 'still flagged' column).",
              "* TPR columns: what the contamination costs in production terms (poisoned adapters flagged when the "
              "threshold is fitted with some of them in the population vs without).",
              "* The synthetic contamination test (tests/calibrate/test_default_combined.py: 270 clean + 30 poisoned "
              "adapters whose backdoor moves two correlated features apart) is where a positive margin exists: there "
              "the threshold shift is asserted smaller than it and every poisoned adapter stays flagged.",
              "* The sections below this one come from evals/calibration/run.py (its own trained MiniLM population, "
              "feature set fs-1, per-feature verdict) and predate the combined default.", END, ""]  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--draws", type=int, default=5)
    p.add_argument("--min-n", type=int, default=6)
    p.add_argument("--results", type=Path, default=HERE / "RESULTS.md")
    args = p.parse_args(argv)
    res = {g: stratum_result(c["clean"], c["poisoned"], args.draws, args.min_n) for g, c in cohort().items()}
    text = render(res, args)
    old = args.results.read_text() if args.results.exists() else ""
    if BEGIN in old and END in old:
        new = old[: old.index(BEGIN)] + text.rstrip("\n") + old[old.index(END) + len(END) :]
    else:
        new = text + "\n---\n\n" + old
    args.results.write_text(new)
    print(text)
    print(f"wrote {args.results}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
