"""PSIM: screen inputs and datasets for weight-poisoning backdoors (arXiv 2402.12168).

A small PEFT module is trained on the suspect model with the task's labels reset uniformly at
random; clean inputs then get near-uniform confidence while triggered inputs keep extreme
confidence, and samples with max-softmax confidence above a calibrated τ are flagged.

Python API::

    from hubaudit.psim import Guard
    guard = Guard.load("psim_dir")
    guard.is_poisoned(["some text", "another"])   # -> array([False, True])
    guard.confidence(["some text"])

torch/peft/transformers are imported lazily (the ``probe`` extra).
"""

from __future__ import annotations

from typing import Any

__all__ = ["Guard", "TrainOptions", "train_psim", "screen_texts", "screen_battery"]


def __getattr__(name: str) -> Any:
    # Lazy: importing hubaudit.psim must not import torch (the CLI registers every module at start).
    if name == "Guard":
        from hubaudit.psim.guard import Guard

        return Guard
    if name in ("TrainOptions", "train_psim"):
        from hubaudit.psim import train

        return getattr(train, name)
    if name in ("screen_texts", "screen_battery"):
        from hubaudit.psim import screen

        return getattr(screen, name)
    raise AttributeError(name)
