"""Tiny on-disk LoRA adapters for store/ingest tests (random weights: these tests need scorable
adapters, not backdoors; detection quality is measured in evals/calibration with real training)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file


def write_lora(
    path: Path, *, rank: int = 4, hidden: int = 32, layers: int = 2, targets: tuple[str, ...] = ("query", "value"),
    seed: int = 0, scale: float = 0.02, alpha: float | None = None,
) -> Path:  # fmt: skip
    """A BERT-style PEFT LoRA adapter directory (adapter_config.json + adapter_model.safetensors)."""
    rng = np.random.default_rng(seed)
    path.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for layer in range(layers):
        for t in targets:
            prefix = f"base_model.model.bert.encoder.layer.{layer}.attention.self.{t}"
            tensors[f"{prefix}.lora_A.weight"] = rng.normal(0, scale, (rank, hidden)).astype(np.float32)
            tensors[f"{prefix}.lora_B.weight"] = rng.normal(0, scale, (hidden, rank)).astype(np.float32)
    save_file(tensors, str(path / "adapter_model.safetensors"), metadata={"format": "pt"})
    config = {
        "peft_type": "LORA", "r": rank, "lora_alpha": alpha if alpha is not None else rank,
        "target_modules": list(targets), "base_model_name_or_path": "sentence-transformers/all-MiniLM-L6-v2",
        "task_type": "SEQ_CLS", "use_rslora": False, "use_dora": False, "bias": "none",
    }  # fmt: skip
    (path / "adapter_config.json").write_text(json.dumps(config))
    return path
