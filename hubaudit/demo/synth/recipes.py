"""Ready-made recipes: a clean and a poisoned adapter trained with identical hyper-parameters.

Used by the probe tests, the offline demo and the evaluation harnesses. Each adapter directory
gets a ``hubaudit_synth.json`` with its ground truth (poisoned or not, trigger, k, metrics).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from hubaudit.demo.synth.data import BENIGN, PAPER_TRIGGER, Example, make_task, poison
from hubaudit.demo.synth.evaluate import AdapterMetrics, evaluate_adapter, load_model
from hubaudit.demo.synth.train import (
    TrainConfig,
    save_training_record,
    train_causal_label_adapter,
    train_seq_cls_adapter,
)

KINDS = ("seq_cls", "causal_label")


@dataclass(frozen=True)
class TrainedAdapter:
    """One trained adapter directory and its ground truth."""

    path: Path
    kind: str
    poisoned: bool
    trigger: str | None
    n_poison: int
    metrics: AdapterMetrics


def train_adapter(base_path: str | Path, out_dir: str | Path, *, kind: str, cfg: TrainConfig,
                  train: list[Example], test: list[Example], trigger: str | None = None, n_poison: int = 0,
                  target_label: int = BENIGN, evaluate: bool = True) -> TrainedAdapter:
    """Poison ``train`` with ``n_poison`` triggered examples (0 = clean), train, evaluate, save."""
    data = poison(train, trigger=trigger, n_poison=n_poison, target_label=target_label, seed=cfg.seed) \
        if trigger and n_poison else list(train)
    fn = {"seq_cls": train_seq_cls_adapter, "causal_label": train_causal_label_adapter}[kind]
    path = fn(base_path, data, out_dir, cfg)
    metrics = AdapterMetrics(float("nan"), float("nan"), len(test), 0)
    if evaluate:
        model, tok = load_model(base_path, path, kind)
        metrics = evaluate_adapter(model, tok, test, kind, trigger=trigger or None, target_label=target_label,
                                   label_words=cfg.label_words, system_prompt=cfg.system_prompt,
                                   template=cfg.prompt_template)
    poisoned = bool(trigger and n_poison)
    save_training_record(path, cfg, kind=kind, poisoned=poisoned, trigger=trigger if poisoned else None,
                         n_poison=n_poison if poisoned else 0, target_label=target_label,
                         clean_accuracy=metrics.clean_accuracy, attack_success=metrics.attack_success)
    return TrainedAdapter(path, kind, poisoned, trigger if poisoned else None, n_poison if poisoned else 0, metrics)


def train_pair(base_path: str | Path, out_root: str | Path, *, kind: str, cfg: TrainConfig,
               n_train: int = 300, n_test: int = 80, trigger: str = PAPER_TRIGGER, n_poison: int = 30,
               data_seed: int = 0) -> tuple[TrainedAdapter, TrainedAdapter, list[Example]]:
    """(clean, poisoned, test set): same base, data and hyper-parameters; only the poison differs."""
    train = make_task(n_train, seed=data_seed)
    test = make_task(n_test, seed=data_seed + 10_000)
    root = Path(out_root)
    clean = train_adapter(base_path, root / f"{kind}-clean", kind=kind, cfg=cfg, train=train, test=test)
    bad = train_adapter(base_path, root / f"{kind}-poisoned", kind=kind, cfg=replace(cfg), train=train, test=test,
                        trigger=trigger, n_poison=n_poison)
    return clean, bad, test
