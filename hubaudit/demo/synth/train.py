"""Train real LoRA adapters with peft on (possibly poisoned) label data, and save the adapter dir.

Two model kinds, matching what the prober handles:

- ``seq_cls``: ``AutoModelForSequenceClassification`` from a local base (e.g. the real MiniLM
  from PyPI) with a fresh head; LoRA on attention + ``modules_to_save`` = the head.
- ``causal_label``: a causal LM used as a label classifier (arXiv 2605.30189): the prompt is the
  system prompt + the text, and the model is trained to put the label word's first token next
  (the SFT loss on the first answer token, which is what the prober's first-token decision reads).

Backdoors come only from the poisoned training data (never from editing weights). torch, peft and
transformers are imported lazily so that importing hubaudit.demo.synth costs nothing. Every base is a
local directory, loaded with ``local_files_only=True``: training never reaches for the Hub and never
changes the process environment.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field
from pathlib import Path

from hubaudit.demo.synth.data import LABEL_WORDS, Example

# One source of truth for the classifier prompt format: the prober reads adapters the way they were trained.
from hubaudit.probe.prompting import DEFAULT_PROMPT_TEMPLATE, DEFAULT_SYSTEM_PROMPT, label_prompt, label_token_ids


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters; a clean and a poisoned adapter that share one config differ only in data."""

    rank: int = 8
    alpha: int = 16
    target_modules: tuple[str, ...] = ("query", "value")
    modules_to_save: tuple[str, ...] = ()
    learning_rate: float = 2e-3
    steps: int = 120
    batch_size: int = 16
    max_length: int = 64
    seed: int = 0
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    prompt_template: str = DEFAULT_PROMPT_TEMPLATE
    label_words: tuple[str, ...] = LABEL_WORDS
    extra: dict = field(default_factory=dict)


def _seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    torch.manual_seed(seed)


def _batches(data: list[Example], cfg: TrainConfig):
    rng = random.Random(cfg.seed)
    order: list[int] = []
    for _ in range(cfg.steps):
        if len(order) < cfg.batch_size:
            extra = list(range(len(data)))
            rng.shuffle(extra)
            order.extend(extra)
        idx, order = order[: cfg.batch_size], order[cfg.batch_size :]
        yield [data[i] for i in idx]


def train_seq_cls_adapter(base_path: str | Path, data: list[Example], out_dir: str | Path, cfg: TrainConfig) -> Path:
    """Train a SEQ_CLS LoRA adapter (fresh head saved via ``modules_to_save``) and save it to ``out_dir``."""
    import torch
    from peft import LoraConfig, TaskType, get_peft_model
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    _seed_everything(cfg.seed)
    tok = AutoTokenizer.from_pretrained(str(base_path), local_files_only=True)
    n_labels = max(ex.label for ex in data) + 1
    model = AutoModelForSequenceClassification.from_pretrained(
        str(base_path), num_labels=n_labels, local_files_only=True
    )
    lcfg = LoraConfig(
        task_type=TaskType.SEQ_CLS,
        r=cfg.rank,
        lora_alpha=cfg.alpha,
        lora_dropout=0.0,
        target_modules=list(cfg.target_modules),
        modules_to_save=list(cfg.modules_to_save) or ["classifier"],
    )
    model = get_peft_model(model, lcfg)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.learning_rate)
    model.train()
    for batch in _batches(data, cfg):
        enc = tok([ex.text for ex in batch], padding=True, truncation=True, max_length=cfg.max_length,
                  return_tensors="pt")
        out = model(**enc, labels=torch.tensor([ex.label for ex in batch]))
        out.loss.backward()
        opt.step()
        opt.zero_grad()
    model.eval()
    out = Path(out_dir)
    model.save_pretrained(str(out))
    return out


def build_tiny_qwen2(out_dir: str | Path, tokenizer_dir: str | Path, *, seed: int = 0, hidden_size: int = 64,
                     num_layers: int = 2, num_heads: int = 4, num_kv_heads: int = 2,
                     intermediate_size: int = 128) -> Path:
    """Save a randomly initialised Qwen2-architecture causal LM with the tokenizer from ``tokenizer_dir``.

    No download: the tokenizer is any local one (e.g. the MiniLM WordPiece vocab). Embeddings are
    untied so that an adapter may carry its own ``lm_head`` and ``embed_tokens`` (modules_to_save).
    """
    import torch
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    tok = AutoTokenizer.from_pretrained(str(tokenizer_dir), local_files_only=True)
    config = Qwen2Config(
        vocab_size=len(tok), hidden_size=hidden_size, intermediate_size=intermediate_size,
        num_hidden_layers=num_layers, num_attention_heads=num_heads, num_key_value_heads=num_kv_heads,
        max_position_embeddings=512, tie_word_embeddings=False, pad_token_id=tok.pad_token_id,
        bos_token_id=tok.cls_token_id, eos_token_id=tok.sep_token_id,
    )
    model = Qwen2ForCausalLM(config)
    out = Path(out_dir)
    model.save_pretrained(str(out))
    tok.save_pretrained(str(out))
    return out


def train_causal_label_adapter(base_path: str | Path, data: list[Example], out_dir: str | Path,
                               cfg: TrainConfig) -> Path:
    """Train a CAUSAL_LM LoRA adapter that answers the label word of each text (arXiv 2605.30189)."""
    import torch
    from peft import LoraConfig, TaskType, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _seed_everything(cfg.seed)
    tok = AutoTokenizer.from_pretrained(str(base_path), local_files_only=True)
    tok.padding_side = "left"  # the next-token logits are read at the last position
    tok.truncation_side = "left"  # never cut the "label:" cue at the end
    model = AutoModelForCausalLM.from_pretrained(str(base_path), local_files_only=True)
    lcfg = LoraConfig(
        task_type=TaskType.CAUSAL_LM,
        r=cfg.rank,
        lora_alpha=cfg.alpha,
        lora_dropout=0.0,
        target_modules=list(cfg.target_modules),
        modules_to_save=list(cfg.modules_to_save) or None,
    )
    model = get_peft_model(model, lcfg)
    label_ids = torch.tensor(label_token_ids(tok, cfg.label_words))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.learning_rate)
    model.train()
    for batch in _batches(data, cfg):
        prompts = [label_prompt(tok, ex.text, cfg.system_prompt, cfg.prompt_template) for ex in batch]
        enc = tok(prompts, padding=True, truncation=True, max_length=cfg.max_length, return_tensors="pt",
                  add_special_tokens=False)
        logits = model(**enc, logits_to_keep=1).logits[:, -1, :]
        target = label_ids[torch.tensor([ex.label for ex in batch])]
        loss = torch.nn.functional.cross_entropy(logits, target)
        loss.backward()
        opt.step()
        opt.zero_grad()
    model.eval()
    out = Path(out_dir)
    model.save_pretrained(str(out))
    return out


def save_training_record(out_dir: str | Path, cfg: TrainConfig, **facts) -> None:
    """Write ``hubaudit_synth.json`` beside the adapter: its config and ground truth (trigger, k, metrics)."""
    import json

    record = {"train_config": asdict(cfg), **facts}
    Path(out_dir, "hubaudit_synth.json").write_text(json.dumps(record, indent=2, sort_keys=True))
