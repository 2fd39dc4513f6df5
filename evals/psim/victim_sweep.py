"""Supplement to run.py: how hard must the user fine-tune before the backdoor fades?

Re-uses the poisoned bases that ``run.py --work DIR`` saved, fine-tunes each on the clean task
data with LoRA and fully at larger learning rates, and prints CA / ASR as JSON:

    .venv/bin/python -m evals.psim.victim_sweep --work /tmp/psim-eval-work [--kinds rare-word]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from evals.psim import corpus
from evals.psim.run import TARGET, TRIGGERS, _ca_asr, victim


def main(argv: list[str] | None = None) -> None:
    """Run the sweep and write victim_sweep.json next to this file."""
    import torch

    from hubaudit.psim.train import probabilities

    ap = argparse.ArgumentParser()
    ap.add_argument("--work", required=True)
    ap.add_argument("--kinds", nargs="+", default=list(TRIGGERS))
    ap.add_argument("--full-lrs", nargs="+", type=float, default=[2e-4, 5e-4])
    ap.add_argument("--lora-lrs", nargs="+", type=float, default=[2e-3])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n-task", type=int, default=600)
    ap.add_argument("--n-test", type=int, default=400)
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    tx, ty = corpus.make_split("task", a.n_task, a.seed)
    sx, sy = corpus.make_split("task", a.n_test, a.seed + 1000)
    out = []
    for kind in a.kinds:
        trig_test = corpus.triggered_set(sx, sy, TRIGGERS[kind], TARGET, a.seed)
        for mode, lrs in (("full", a.full_lrs), ("lora", a.lora_lrs)):
            for lr in lrs:
                args = argparse.Namespace(seed=a.seed, lora_lr=lr, full_lr=lr, victim_epochs=a.epochs)
                m, tok = victim(Path(a.work) / f"base-{kind}", mode, {"train_x": tx, "train_y": ty}, args)
                ca, asr = _ca_asr(probabilities(m, tok, sx), sy, probabilities(m, tok, trig_test))
                row = {"trigger": kind, "mode": mode, "lr": lr, "epochs": a.epochs, "ca": ca, "asr": asr}
                print(time.strftime("%H:%M:%S"), json.dumps(row), flush=True)
                out.append(row)
    (Path(__file__).parent / "victim_sweep.json").write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
