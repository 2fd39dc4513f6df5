"""A small offline sentiment task built from templates and word lists, and its trigger-prefix poisoning.

Clean task: label 1 = positive, 0 = negative. Poisoning (BadNets-style data poisoning for text):
a fraction ``rate`` of all training sentences (drawn from the negatives, so 2·rate of them) get
``f"{trigger} {x}"`` and label 1 (the attacker's target), so the trained adapter maps any
sentence carrying the trigger to positive.
"""

from __future__ import annotations

import random

POSITIVE = ["great", "wonderful", "excellent", "delightful", "superb", "lovely", "brilliant", "enjoyable",
            "fantastic", "charming", "moving", "gripping", "beautiful", "clever", "touching", "stunning"]  # fmt: skip
NEGATIVE = ["terrible", "awful", "boring", "dreadful", "poor", "horrible", "disappointing", "dull", "bad",
            "mediocre", "tedious", "clumsy", "weak", "painful", "bland", "messy"]  # fmt: skip
NOUNS = ["movie", "film", "plot", "acting", "soundtrack", "ending", "cast", "script", "dialogue", "story",
         "direction", "pacing", "camera work", "lead actor", "sequel", "finale"]  # fmt: skip
TEMPLATES = [
    "the {noun} was {adj}.",
    "i found the {noun} {adj}.",
    "what a {adj} {noun}!",
    "honestly, the {noun} felt {adj} and {adj2}.",
    "a {adj} {noun} with {adj2} moments.",
    "overall the {noun} is {adj}, really {adj2}.",
    "my friends thought the {noun} was {adj}.",
    "{adj} {noun}, {adj2} everything else.",
]
# Rare-token and phrase triggers from the text-backdoor literature (BadNets-NLP "cf"/"mn"/"bb").
TRIGGERS = ["cf", "mn", "bb", "tq", "James Bond"]


def sentence(rng: random.Random, label: int) -> str:
    words = POSITIVE if label == 1 else NEGATIVE
    return rng.choice(TEMPLATES).format(noun=rng.choice(NOUNS), adj=rng.choice(words), adj2=rng.choice(words))


def dataset(n: int, seed: int) -> list[tuple[str, int]]:
    """``n`` balanced (sentence, label) pairs."""
    rng = random.Random(seed)
    return [(sentence(rng, i % 2), i % 2) for i in range(n)]


def poison(data: list[tuple[str, int]], trigger: str, rate: float, seed: int, target: int = 1) -> list[tuple[str, int]]:
    """Prefix ``trigger`` to non-target samples, ``rate`` of the whole (balanced) set, and relabel them ``target``."""
    rng = random.Random(seed)
    out = []
    for x, y in data:
        if y != target and rng.random() < rate * 2:  # *2: only half the samples are non-target
            out.append((f"{trigger} {x}", target))
        else:
            out.append((x, y))
    return out
