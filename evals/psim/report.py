"""Render the replication's results dict as evals/psim/RESULTS.md (numbers only; the prose
interpretation lives in the NOTES section that is kept between runs)."""

from __future__ import annotations

from pathlib import Path

NOTES_MARK = "<!-- notes: kept between runs -->"


def _f(x) -> str:
    return "–" if x is None else f"{x:.3f}"


def render(res: dict) -> str:
    """Markdown tables for the attack, the victims, PSIM, the controls and STRIP."""
    c = res["config"]
    lines = [
        "# PSIM replication (small scale, CPU)",
        "",
        "Command: `.venv/bin/python -m evals.psim.run` "
        f"(seed {c['seed']}; wall time {res['seconds']:.0f} s on this machine).",
        "",
        f"Model: all-MiniLM-L6-v2 (real weights, 6 layers, 384 hidden). Data: templated sentiment sentences "
        f"(evals/psim/corpus.py): proxy (attacker) corpus n={c['n_proxy']}, task (user) train n={c['n_task']}, "
        f"test n={c['n_test']}, STRIP dev n={c['n_dev']}. Attack: full fine-tune, {c['attack_epochs']} epochs, lr {c['attack_lr']}, "
        f"{c['poison_rate']:.0%} of the proxy corpus = non-target samples with the trigger relabelled to target {c['target']}. "
        f"Victims: LoRA r=8 α=16 lr {c['lora_lr']} / full fine-tune lr {c['full_lr']}, {c['victim_epochs']} epochs on clean task data. "
        f"PSIM: {c['psim_peft']}, {c['psim_epochs']} epoch(s), τ calibrated to FRR {c['frr']:.0%} on a 20 % held-out split of the task train data.",
        "",
        "ASR = fraction of triggered non-target test inputs predicted as the target label. "
        "AUROC/TPR/FPR: triggered test inputs (positives) vs clean test inputs (negatives).",
        "",
        "## 1. Attack and the paper's claim (backdoor survives PEFT better than full fine-tuning)",
        "",
        "| trigger | poisoned base: proxy CA / ASR | base on task: CA / ASR | LoRA victim CA / ASR | full-FT victim CA / ASR | clean base + LoRA: CA / ASR |",
        "|---|---|---|---|---|---|",
    ]
    for kind, r in res["attacks"].items():
        b = r["base_poisoned"]
        lines.append(
            f"| {kind} `{r['trigger']}` | {_f(b['proxy_ca'])} / {_f(b['proxy_asr'])} | {_f(b['task_ca'])} / {_f(b['task_asr'])} | "
            f"{_f(r['victim_lora']['ca'])} / {_f(r['victim_lora']['asr'])} | {_f(r['victim_full']['ca'])} / {_f(r['victim_full']['asr'])} | "
            f"{_f(r['victim_clean_lora']['ca'])} / {_f(r['victim_clean_lora']['asr'])} |"
        )
    lines += [
        "",
        "## 2. Detection: PSIM vs controls vs STRIP (same test inputs)",
        "",
        "| trigger | detector | AUROC | τ | TPR @τ | FPR @τ | TPR / FPR @ τ=0.7 | mean conf clean / triggered | held-out acc vs true labels |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    names = [("control_raw_confidence", "control: suspect base's own max-softmax (no PSIM)"),
             ("control_victim_confidence", "control: LoRA victim's own max-softmax (no PSIM)"), ("psim", "PSIM on poisoned base"), ("psim_lora", "PSIM (LoRA) on poisoned base"),
             ("control_clean_base", "control: PSIM on clean base"), ("control_no_reset", "control: PSIM without label reset")]
    for kind, r in res["attacks"].items():
        for key, label in names:
            if key not in r:
                continue
            p = r[key]
            lines.append(
                f"| {kind} | {label}" + (f" ({p['peft']}, lr {p['lr']:g})" if p["epochs"] else "") + f" | {_f(p['auroc'])} | {_f(p['tau'])} | {_f(p['tpr'])} | {_f(p['fpr'])} | "
                f"{_f(p['tpr_at_0.7'])} / {_f(p['fpr_at_0.7'])} | {_f(p['mean_conf_clean'])} / {_f(p['mean_conf_trig'])} | {_f(p['holdout_acc_vs_true'])} |"
            )
        s = r["strip"]
        lines.append(f"| {kind} | baseline: STRIP on LoRA victim (5 copies, swap 0.5) | {_f(s['auroc'])} | {_f(s['threshold'])} (entropy) | "
                     f"{_f(s['tpr'])} | {_f(s['fpr'])} | – | – | – |")
    lines += [
        "",
        "## 3. End to end: LoRA victim with PSIM in front (authors' conventions, arXiv 2402.12168's code)",
        "",
        "| trigger | CA without / with PSIM | ASR without / with PSIM |",
        "|---|---|---|",
    ]
    for kind, r in res["attacks"].items():
        e = r["psim_end_to_end"]
        lines.append(f"| {kind} | {_f(e['ca_no_def'])} / {_f(e['ca_def'])} | {_f(e['asr_no_def'])} / {_f(e['asr_def'])} |")
    lines += ["", "## 4. PSIM as a probe: prefixes applied as `f\"{p}. {x}\"` to non-target test texts", "",
              "| trigger | probe | PSIM flag rate | mean confidence | extreme (≥ 0.5) |", "|---|---|---|---|---|"]
    for kind, r in res["attacks"].items():
        if "probe" not in r:
            continue
        lines.append(f"| {kind} | (no probe) | {_f(r['probe']['summary']['baseline_flag_rate'])} | {_f(r['probe']['summary']['baseline_mean_confidence'])} | |")
        for p in r["probe"]["probes"]:
            lines.append(f"| {kind} | `{p['probe']}` | {_f(p['flag_rate'])} | {_f(p['mean_confidence'])} | {'**yes**' if p['extreme'] else 'no'} |")
    return "\n".join(lines) + "\n"


def write_results(res: dict, path: Path) -> None:
    """Write RESULTS.md, keeping any hand-written notes below :data:`NOTES_MARK`."""
    notes = ""
    if path.exists():
        old = path.read_text(encoding="utf-8")
        if NOTES_MARK in old:
            notes = old[old.index(NOTES_MARK):]
    path.write_text(render(res) + "\n" + (notes or NOTES_MARK + "\n"), encoding="utf-8")
