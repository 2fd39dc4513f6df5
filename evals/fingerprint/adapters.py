"""Real adapters for the fingerprint tests and error evaluation: derivatives trained further with
peft, and re-parametrised copies (the same ΔW = s·B·A written with other B, A, alpha and dtype).

Copies are what a re-uploader can do without changing the model's behaviour: B·R with R⁻¹·A for an
invertible R, B·c with A/c, another lora_alpha (or rsLoRA) with B rescaled to compensate, and a
bf16/fp16 re-save. Derivatives continue training from the saved weights on other data.
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np

from hubaudit.demo.synth.data import Example
from hubaudit.demo.synth.train import TrainConfig, _batches, _seed_everything


def continue_training(
    base_path: str | Path, adapter_dir: str | Path, data: list[Example], out_dir: str | Path, cfg: TrainConfig
) -> Path:
    """Load a SEQ_CLS LoRA adapter (``PeftModel.from_pretrained(is_trainable=True)``), train ``cfg.steps``
    more steps on ``data`` (LoRA and the saved head), and save the result to ``out_dir``."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    _seed_everything(cfg.seed)
    tok = AutoTokenizer.from_pretrained(str(base_path), local_files_only=True)
    n_labels = max(ex.label for ex in data) + 1
    model = AutoModelForSequenceClassification.from_pretrained(str(base_path), num_labels=n_labels, local_files_only=True)
    model = PeftModel.from_pretrained(model, str(adapter_dir), is_trainable=True, local_files_only=True)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.learning_rate)
    model.train()
    for batch in _batches(data, cfg):
        enc = tok([ex.text for ex in batch], padding=True, truncation=True, max_length=cfg.max_length, return_tensors="pt")
        out = model(**enc, labels=torch.tensor([ex.label for ex in batch]))
        out.loss.backward()
        opt.step()
        opt.zero_grad()
    model.eval()
    out_path = Path(out_dir)
    model.save_pretrained(str(out_path))
    return out_path


def _invertible(rng: np.random.Generator, r: int) -> np.ndarray:
    """A random invertible r×r matrix Q₁·diag(e^u)·Q₂ (u uniform in [-1, 1]; condition number ≤ e²)."""
    q1, _ = np.linalg.qr(rng.normal(size=(r, r)))
    q2, _ = np.linalg.qr(rng.normal(size=(r, r)))
    return q1 @ np.diag(np.exp(rng.uniform(-1, 1, r))) @ q2


def reparametrised_copy(
    src: str | Path,
    dst: str | Path,
    *,
    seed: int,
    dtype: str = "float32",
    c: float = 1.0,
    alpha_factor: float = 1.0,
    rslora: bool = False,
) -> Path:
    """Write a copy of the LoRA adapter in ``src`` with the same ΔW = s·B·A but other tensors.

    Per module: B·R·c and R⁻¹·A/c with a random invertible R; ``lora_alpha`` multiplied by
    ``alpha_factor`` and, with ``rslora``, ``use_rslora`` set (s = α/√r instead of α/r); B is
    divided by the change of s so the product is unchanged; tensors saved as ``dtype`` (float32,
    bfloat16, float16). Full tensors (the saved head) are copied as they are.
    """
    import torch
    from safetensors.torch import load_file, save_file

    src, dst = Path(src), Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    cfg = json.loads((src / "adapter_config.json").read_text())
    r, alpha = int(cfg["r"]), float(cfg["lora_alpha"])
    s_old = alpha / (math.sqrt(r) if cfg.get("use_rslora") else r)
    cfg["lora_alpha"] = alpha * alpha_factor
    cfg["use_rslora"] = bool(rslora or cfg.get("use_rslora"))
    s_new = cfg["lora_alpha"] / (math.sqrt(r) if cfg["use_rslora"] else r)
    rng = np.random.default_rng(seed)
    tensors = load_file(str(src / "adapter_model.safetensors"))
    out: dict[str, torch.Tensor] = {}
    to = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]
    for name, t in tensors.items():
        if ".lora_A." in name:
            b_name = name.replace(".lora_A.", ".lora_B.")
            a = t.double().numpy()
            b = tensors[b_name].double().numpy()
            rot = _invertible(rng, a.shape[0])
            out[name] = torch.from_numpy(np.linalg.solve(rot, a) / c).to(to)
            out[b_name] = torch.from_numpy(b @ rot * c * (s_old / s_new)).to(to)
        elif ".lora_B." not in name:
            out[name] = t.clone()
    save_file(out, str(dst / "adapter_model.safetensors"), metadata={"format": "pt"})
    (dst / "adapter_config.json").write_text(json.dumps(cfg, indent=2))
    return dst


def copy_adapter(src: str | Path, dst: str | Path) -> Path:
    """A byte-identical copy (a plain re-upload under another name)."""
    shutil.copytree(src, dst)
    return Path(dst)


def config_for(steps: int, seed: int, **kw) -> TrainConfig:
    """The tests' and the evaluation's small training setup (MiniLM, LoRA on the given targets)."""
    return replace(TrainConfig(), steps=steps, seed=seed, **kw)
