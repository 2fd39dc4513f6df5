"""Offline sentiment corpora for the PSIM replication (nothing can be downloaded here).

Two domains stand in for the paper's IMDB (the attacker's poisoning corpus) and SST-2 (the
user's downstream task): templated review sentences built from word lists, with negation and
contrast so that the task needs more than a bag of sentiment words. Label 1 = positive, 0 = negative.
"""

from __future__ import annotations

import random

POS = ["good", "great", "wonderful", "excellent", "delightful", "superb", "charming", "moving", "brilliant",
       "enjoyable", "memorable", "clever", "beautiful", "fantastic", "touching", "gripping", "solid", "fresh",
       "impressive", "lovely", "witty", "powerful", "engaging", "stunning"]
NEG = ["bad", "terrible", "awful", "boring", "dull", "weak", "clumsy", "tedious", "mediocre", "painful",
       "forgettable", "bland", "lifeless", "messy", "annoying", "shallow", "poor", "disappointing", "flat",
       "confusing", "predictable", "ugly", "sloppy", "pointless"]
INTENS = ["", "really ", "very ", "truly ", "quite ", "rather ", "incredibly ", "somewhat ", "pretty "]

# Proxy (attacker) domain: long-form movie reviews, like IMDB.
PROXY_SUBJ = ["the movie", "this film", "the plot", "the acting", "the script", "the soundtrack", "the director's work",
              "the ending", "the cast", "the cinematography", "the dialogue", "the story", "the lead performance",
              "the pacing", "the screenplay", "the visual effects"]
PROXY_TPL = [
    "{subj} was {int}{adj}",
    "i thought {subj} was {int}{adj} from start to finish",
    "honestly {subj} is {int}{adj} and i would say so again",
    "after two hours i can say {subj} was {int}{adj}",
    "my friends and i agreed that {subj} was {int}{adj}",
    "{subj} felt {int}{adj} , at least to me",
    "in the end {subj} turned out {int}{adj}",
    "what a {adj} experience , {subj} was {int}{adj}",
]
# Task (user) domain: short snippets, like SST-2, about films and shows.
TASK_SUBJ = ["it", "the film", "this show", "the series", "the performances", "the music", "the humor", "the writing",
             "the characters", "the final act", "the premise", "the direction", "the episode", "the production"]
TASK_TPL = [
    "{subj} is {int}{adj}",
    "a {int}{adj} piece of work",
    "{subj} remains {int}{adj} throughout",
    "overall , {subj} is {int}{adj}",
    "{subj} proves {int}{adj} and worth discussing",
    "simply put , {int}{adj}",
    "{subj} comes across as {int}{adj}",
    "few would call {subj} anything but {adj}",
]
NEGATED = ["{subj} is not {adj} at all", "{subj} was never {adj}", "i would not call {subj} {adj}"]


def _sentence(rng: random.Random, subjects, templates, label: int) -> str:
    # 15 % negated sentences: "not <positive>" is negative and "not <negative>" is positive.
    if rng.random() < 0.15:
        adj = rng.choice(NEG if label == 1 else POS)
        return rng.choice(NEGATED).format(subj=rng.choice(subjects), adj=adj)
    adj = rng.choice(POS if label == 1 else NEG)
    s = rng.choice(templates).format(subj=rng.choice(subjects), int=rng.choice(INTENS), adj=adj)
    if rng.random() < 0.3:  # a second clause of the same polarity
        s += " and " + rng.choice(templates).format(subj=rng.choice(subjects), int=rng.choice(INTENS), adj=rng.choice(POS if label == 1 else NEG))
    return s


def make_split(domain: str, n: int, seed: int) -> tuple[list[str], list[int]]:
    """``n`` balanced (text, label) pairs of the ``proxy`` or ``task`` domain."""
    rng = random.Random(f"{domain}-{seed}")
    subj, tpl = (PROXY_SUBJ, PROXY_TPL) if domain == "proxy" else (TASK_SUBJ, TASK_TPL)
    labels = [i % 2 for i in range(n)]
    rng.shuffle(labels)
    return [_sentence(rng, subj, tpl, y) for y in labels], labels


def insert_trigger(text: str, trigger: str, rng: random.Random) -> str:
    """Insert ``trigger`` at a random interior word position (authors' ``poisoned_pretrain.py``)."""
    words = text.split()
    pos = rng.randint(1, max(1, len(words) - 1))
    return " ".join(words[:pos] + [trigger] + words[pos:])


def poison(texts: list[str], labels: list[int], trigger: str, target: int, rate: float, seed: int) -> tuple[list[str], list[int]]:
    """BadNets-style dirty-label poisoning: a ``rate`` fraction of non-target samples gets the
    trigger and the target label; the rest stay clean (the attacker's weight-poisoning corpus)."""
    rng = random.Random(f"poison-{trigger}-{seed}")
    out_t, out_y = list(texts), list(labels)
    idx = [i for i, y in enumerate(labels) if y != target]
    for i in rng.sample(idx, int(rate * len(texts))):
        out_t[i] = insert_trigger(texts[i], trigger, rng)
        out_y[i] = target
    return out_t, out_y


def triggered_set(texts: list[str], labels: list[int], trigger: str, target: int, seed: int) -> list[str]:
    """Non-target test samples with the trigger inserted (the poisoned test set of arXiv 2402.12168)."""
    rng = random.Random(f"test-{trigger}-{seed}")
    return [insert_trigger(t, trigger, rng) for t, y in zip(texts, labels) if y != target]
