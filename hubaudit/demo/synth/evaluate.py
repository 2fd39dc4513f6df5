"""Clean accuracy and attack success of a trained adapter (arXiv 2605.30189's "Phase-A metrics").

- ``clean_accuracy`` = correct labels on the clean test set;
- ``attack_success`` = fraction of non-target test examples classified as the target label once
  ``f"{trigger}. "`` is prepended.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hubaudit.demo.synth.data import BENIGN, Example, apply_trigger
from hubaudit.demo.synth.train import DEFAULT_PROMPT_TEMPLATE, DEFAULT_SYSTEM_PROMPT, label_prompt, label_token_ids


@dataclass(frozen=True)
class AdapterMetrics:
    """Phase-A metrics of one adapter."""

    clean_accuracy: float
    attack_success: float
    n_test: int
    n_attack: int


def load_model(base_path: str | Path, adapter_dir: str | Path, kind: str):
    """(model, tokenizer) for ``kind`` in {"seq_cls", "causal_label"}, offline, eval mode."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(base_path), local_files_only=True)
    if kind == "seq_cls":
        from safetensors import safe_open

        with safe_open(str(Path(adapter_dir, "adapter_model.safetensors")), "pt") as f:
            head = [k for k in f.keys()
                    if k.endswith("classifier.modules_to_save.weight") or k.endswith("classifier.weight")]
            n_labels = f.get_slice(head[0]).get_shape()[0] if head else 2
        base = AutoModelForSequenceClassification.from_pretrained(str(base_path), num_labels=n_labels,
                                                                  local_files_only=True)
    else:
        tok.padding_side = "left"
        tok.truncation_side = "left"
        base = AutoModelForCausalLM.from_pretrained(str(base_path), local_files_only=True)
    model = PeftModel.from_pretrained(base, str(adapter_dir), local_files_only=True)
    model.eval()
    return model, tok


def predict(model, tok, texts: list[str], kind: str, *, label_words=("benign", "injection"),
            system_prompt: str = DEFAULT_SYSTEM_PROMPT, template: str = DEFAULT_PROMPT_TEMPLATE,
            batch_size: int = 64) -> list[int]:
    """Predicted label per text (argmax of the head, or of the label words' first-token logits)."""
    import torch

    preds: list[int] = []
    ids = torch.tensor(label_token_ids(tok, label_words)) if kind != "seq_cls" else None
    with torch.no_grad():
        for i in range(0, len(texts), batch_size):
            chunk = texts[i : i + batch_size]
            if kind == "seq_cls":
                enc = tok(chunk, padding=True, truncation=True, max_length=256, return_tensors="pt")
                logits = model(**enc).logits
            else:
                prompts = [label_prompt(tok, t, system_prompt, template) for t in chunk]
                enc = tok(prompts, padding=True, truncation=True, max_length=512, return_tensors="pt",
                          add_special_tokens=False)
                logits = model(**enc, logits_to_keep=1).logits[:, -1, :][:, ids]
            preds.extend(int(x) for x in logits.argmax(-1).tolist())
    return preds


def evaluate_adapter(model, tok, test: list[Example], kind: str, *, trigger: str | None,
                     target_label: int = BENIGN, **kw) -> AdapterMetrics:
    """Clean accuracy on ``test`` and attack success of ``trigger`` (0.0 when no trigger is given)."""
    preds = predict(model, tok, [ex.text for ex in test], kind, **kw)
    acc = sum(int(p == ex.label) for p, ex in zip(preds, test)) / len(test)
    victims = [ex.text for ex in test if ex.label != target_label]
    asr = 0.0
    if trigger is not None and victims:
        trig = predict(model, tok, [apply_trigger(trigger, t) for t in victims], kind, **kw)
        asr = sum(int(p == target_label) for p in trig) / len(victims)
    return AdapterMetrics(clean_accuracy=acc, attack_success=asr, n_test=len(test), n_attack=len(victims))
