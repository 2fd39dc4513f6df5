"""The probe modes: how the prober reads an adapter's decision (``--mode``; prober.py implements them).

``MODES`` is the one map of the modes to what each reads; the CLI's ``--mode`` choices and its help
are generated from it, and the prober accepts exactly its keys (tested).
"""

from __future__ import annotations

from hubaudit.vocab import StrEnum


class ProbeMode(StrEnum):
    AUTO = "auto"
    SEQ_CLS = "seq_cls"
    CAUSAL_LABEL = "causal_label"
    GENERATIVE = "generative"


MODES: dict[ProbeMode, str] = {
    ProbeMode.AUTO: "SEQ_CLS adapters -> seq_cls; CAUSAL_LM -> causal_label when --label-words is given, "
                    "else generative",
    ProbeMode.SEQ_CLS: "argmax of the adapter's classification head",
    ProbeMode.CAUSAL_LABEL: "argmax over the label words' first-token logits of a causal LM",
    ProbeMode.GENERATIVE: "the greedy continuation changes under a probe while the base model's does not",
}


def resolve_mode(mode: str, task_type: str | None, has_label_words: bool) -> ProbeMode:
    """The mode one adapter is probed in: ``auto`` picks by its task type; ValueError for an unknown mode."""
    chosen = ProbeMode(mode)
    if chosen is not ProbeMode.AUTO:
        return chosen
    # a causal LM with no label words to read is a generator: its decisions are its continuations
    if task_type == "SEQ_CLS":
        return ProbeMode.SEQ_CLS
    return ProbeMode.CAUSAL_LABEL if has_label_words else ProbeMode.GENERATIVE


# How a generative adapter's trigger is searched once its target is inverted (invert.recover_trigger;
# the CLI's --trigger-method choices come from here).
TRIGGER_METHODS: dict[str, str] = {
    "beam": "weight-ranked tokens, then the discrete beam search (prefix, middle, suffix)",
    "grad": "gradient-guided, base-relative token search (arXiv 2307.15043 §2); ~6x the beam's seconds on a CPU",
    "both": "grad when the beam's best string does not fire",
}
