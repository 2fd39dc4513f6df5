"""Small random LoRA adapters (numpy + safetensors) to populate a fake Hub quickly.

These are *structurally* real PEFT LoRA adapters (tensor names, shapes, config) with random
weights: right for exercising the crawler, the store and the scanner's plumbing. They are not
backdoored and must never be used as backdoor evidence (backdoors are trained with peft).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from hubaudit.constants import ADAPTER_CONFIG, ADAPTER_PICKLE, ADAPTER_SAFETENSORS


def random_adapter_files(
    base: str,
    *,
    seed: int,
    rank: int = 4,
    hidden: int = 32,
    layers: int = 2,
    targets: tuple[str, ...] = ("q_proj", "v_proj"),
    alpha: float | None = None,
    config_base: str | None = None,
    fmt: str = "safetensors",
) -> dict[str, bytes]:
    """{filename: bytes} of a LoRA adapter: adapter_config.json + weights (+ README.md).

    ``fmt``: "safetensors", "pickle" (an opaque ``adapter_model.bin``; never unpickled by the
    crawler, so its bytes need not be a real pickle) or "none" (config only).
    """
    from safetensors.numpy import save

    rng = np.random.default_rng(seed)
    tensors: dict[str, np.ndarray] = {}
    for layer in range(layers):
        for proj in targets:
            prefix = f"base_model.model.model.layers.{layer}.self_attn.{proj}"
            tensors[f"{prefix}.lora_A.weight"] = rng.normal(0, 0.02, (rank, hidden)).astype(np.float32)
            tensors[f"{prefix}.lora_B.weight"] = rng.normal(0, 0.02, (hidden, rank)).astype(np.float32)
    cfg = {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": config_base if config_base is not None else base,
        "r": rank,
        "lora_alpha": alpha if alpha is not None else 2 * rank,
        "target_modules": list(targets),
        "use_rslora": False,
        "use_dora": False,
        "fan_in_fan_out": False,
        "bias": "none",
    }
    files = {ADAPTER_CONFIG: json.dumps(cfg, indent=2).encode(),
             "README.md": f"---\nbase_model: {base}\n---\n".encode()}
    if fmt == "safetensors":
        files[ADAPTER_SAFETENSORS] = save(tensors, metadata={"format": "pt"})
    elif fmt == "pickle":
        files[ADAPTER_PICKLE] = b"\x80\x04opaque-pickle-bytes-never-loaded" + rng.bytes(64)
    elif fmt != "none":
        raise ValueError(f"unknown adapter format {fmt!r}")
    return files


def write_random_adapter(folder: str | Path, base: str, *, seed: int, **kwargs) -> Path:
    """Write :func:`random_adapter_files` into ``folder`` (created) and return it."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    for name, data in random_adapter_files(base, seed=seed, **kwargs).items():
        (out / name).write_bytes(data)
    return out
