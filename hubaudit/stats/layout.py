"""Tensor names of a PEFT adapter file → roles.

``base_model.model.<module path>.lora_A.weight`` etc. The adapter name is normally stripped on
save; an un-stripped ``.lora_A.<adapter>.weight`` is accepted too. Anything that is not a LoRA
part is a full tensor (modules_to_save, bias="all", resized embeddings) and is only listed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

Role = Literal["A", "B", "emb_A", "emb_B", "magnitude", "lora_bias", "saved"]

PREFIX = "base_model.model."

_LORA = re.compile(
    r"^(?P<module>.+?)\.(?:"
    r"lora_(?P<ab>[AB])(?:\.[^.]+)?\.weight"
    r"|lora_embedding_(?P<eab>[AB])(?:\.[^.]+)?"
    r"|lora_magnitude_vector(?:\.[^.]+)?(?:\.weight)?"
    r"|lora_B(?:\.[^.]+)?\.(?P<bias>bias)"
    r")$"
)

# Tensor-name markers of the other PEFT methods, to name the method when a
# config is missing or lies.
OTHER_METHODS: tuple[tuple[str, str], ...] = (
    (".ia3_l", "IA3"), (".hada_w1", "LOHA"), (".lokr_w1", "LOKR"), (".vera_lambda", "VERA"),
    (".oft_R", "OFT"), (".boft_R", "BOFT"), (".fourierft_spectrum", "FOURIERFT"),
    (".vblora_", "VBLORA"), (".hra_u", "HRA"), ("prompt_embeddings", "PROMPT_LEARNING"),
    (".lora_E", "ADALORA"),
)  # fmt: skip
_MLX = re.compile(r"\.lora_[ab]$")


@dataclass(frozen=True)
class TensorRole:
    """What one tensor is: its role and, for LoRA parts, the module path (no base_model.model.)."""

    role: Role
    module: str


def strip_prefix(name: str) -> str:
    """Module path as peft's pattern keys see it."""
    return name[len(PREFIX) :] if name.startswith(PREFIX) else name


def classify(name: str) -> TensorRole:
    """Role of one tensor by name."""
    m = _LORA.match(name)
    if m is None:
        return TensorRole("saved", strip_prefix(name))
    module = strip_prefix(m.group("module"))
    if m.group("ab"):
        return TensorRole("A" if m.group("ab") == "A" else "B", module)
    if m.group("eab"):
        return TensorRole("emb_A" if m.group("eab") == "A" else "emb_B", module)
    if m.group("bias"):
        return TensorRole("lora_bias", module)
    return TensorRole("magnitude", module)


def other_method(names: list[str]) -> str | None:
    """Name of a non-LoRA PEFT method whose tensors are present, or None."""
    for marker, method in OTHER_METHODS:
        if any(marker in n for n in names):
            return method
    if any(_MLX.search(n) for n in names):
        return "MLX-LM LoRA (lora_a/lora_b, not PEFT)"
    return None


_LAYER = re.compile(r"\.(?:layers?|h|blocks?|block|encoder\.layer|decoder\.layer)\.(\d+)\.")


def layer_index(module: str) -> int | None:
    """Transformer block index from a module path (``model.layers.3.…``, ``transformer.h.3.…``)."""
    m = _LAYER.search("." + module + ".")
    if m:
        return int(m.group(1))
    nums = re.findall(r"\.(\d+)\.", "." + module + ".")
    return int(nums[0]) if len(nums) == 1 else None


def projection(module: str) -> str:
    """Last path component: ``q_proj``, ``c_attn``, ``embed_tokens``."""
    return module.rsplit(".", 1)[-1]
