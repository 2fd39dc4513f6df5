"""PSIM training (arXiv 2402.12168).

    D_r = {(x_i, u_i) : u_i ~ Uniform{0..K-1} i.i.d.}     (the "randomly reset" labels)
    G   = PEFT(M_p)   trained on D_r; classifier head trainable (peft SEQ_CLS)
    τ   = (1 − FRR)-quantile of max-softmax G(x) over held-out clean x   (our calibration)

Defaults follow the authors' code where it is explicit (AdamW, linear schedule with 6 % warm-up,
batch 32, 1 epoch, P-tuning with 5 virtual tokens); the learning rate default is per PEFT method
(see :data:`DEFAULT_LR`) because the authors' 2e-5 moves a prompt encoder very little on the few
hundred steps a small dataset gives.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hubaudit.errors import UsageError
from hubaudit.psim import threshold
from hubaudit.psim.model import (
    PEFT_METHODS,
    adapter_fingerprint,
    check_adapter_dir,
    file_sha256,
    load_suspect,
    load_tokenizer,
    peft_config,
    pick_device,
    require_torch,
    resolve_model,
)

FORMAT_VERSION = 1
CONFIG_FILE = "psim.json"
CALIBRATION_FILE = "calibration.jsonl"
ADAPTER_SUBDIR = "psim_adapter"

#: The PSIM module's weights file, in the order peft writes them (safetensors by default).
WEIGHT_FILES = ("adapter_model.safetensors", "adapter_model.bin")

# Per-method learning-rate defaults: measured on the evals/psim replication (see RESULTS.md).
DEFAULT_LR = {"p-tuning": 2e-3, "prompt-tuning": 2e-3, "lora": 5e-4}


@dataclass
class TrainOptions:
    """Hyper-parameters of one PSIM training run."""

    peft: str = "p-tuning"
    epochs: int = 1
    lr: float | None = None  # None: DEFAULT_LR[peft]
    batch_size: int = 32
    max_length: int = 128
    seed: int = 0
    target_frr: float = 0.05
    holdout: float = 0.2
    warmup: float = 0.06
    reset_labels: bool = True  # False only for the ablation "PSIM without the label reset"
    # Train the classification head too (peft SEQ_CLS puts it in modules_to_save). Off by default:
    # a trainable head flattens *every* output by shrinking its weights, triggered inputs included,
    # so the reset must be absorbed by the PEFT module in the body, where a trigger dominates.
    train_head: bool = False
    peft_params: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        """Raise :class:`UsageError` for values no run can use."""
        if self.peft not in PEFT_METHODS:
            raise UsageError(f"unknown PEFT method '{self.peft}' (choose from {', '.join(PEFT_METHODS)})")
        if self.epochs < 1:
            raise UsageError("--epochs must be at least 1")
        if self.lr is not None and not self.lr > 0:
            raise UsageError("--lr must be positive")
        if not 0.0 < self.target_frr < 1.0:
            raise UsageError("--target-frr must be between 0 and 1 (e.g. 0.05)")
        if not 0.0 < self.holdout < 1.0:
            raise UsageError("--holdout must be between 0 and 1 (e.g. 0.2)")
        if self.batch_size < 1 or self.max_length < 8:
            raise UsageError("--batch-size must be ≥ 1 and --max-length ≥ 8")


def psim_fingerprint(psim_dir: str | Path) -> str:
    """The sha256 of the PSIM module's weights file under ``psim_dir``: the identity a stored τ is checked against."""
    d = Path(psim_dir) / ADAPTER_SUBDIR
    for name in WEIGHT_FILES:
        if (d / name).is_file():
            return file_sha256(d / name)
    raise UsageError(f"{psim_dir}: no PSIM module weights ({ADAPTER_SUBDIR}/{WEIGHT_FILES[0]})")


def probabilities(model, tokenizer, texts: list[str], *, batch_size: int = 64, max_length: int = 128) -> np.ndarray:
    """Softmax class probabilities, shape (n, K)."""
    import torch

    model.eval()
    device = next(model.parameters()).device
    out = []
    with torch.no_grad():
        for i in range(0, len(texts), batch_size):
            enc = tokenizer(texts[i : i + batch_size], padding=True, truncation=True, max_length=max_length,
                            return_tensors="pt")
            enc = {k: v.to(device) for k, v in enc.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
            logits = model(**enc).logits.float()
            out.append(torch.softmax(logits, dim=-1).cpu().numpy())
    if not out:
        return np.zeros((0, 0))
    return np.concatenate(out).astype(np.float64)


def fit(model, tokenizer, texts: list[str], labels: list[int], *, epochs: int, lr: float, batch_size: int,
        max_length: int, seed: int, warmup: float = 0.06) -> dict[str, float]:
    """Train the trainable parameters of ``model`` with AdamW and a linear schedule with warm-up.

    The shared loop for PSIM and for the replication's attack/victim fine-tunes. Returns the mean
    training loss of the last epoch and the step count.
    """
    import torch
    from transformers import get_linear_schedule_with_warmup

    device = next(model.parameters()).device
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr)
    steps_per_epoch = math.ceil(len(texts) / batch_size)
    total = steps_per_epoch * epochs
    sched = get_linear_schedule_with_warmup(opt, int(warmup * total), total)
    gen = torch.Generator().manual_seed(seed)
    y_all = torch.tensor(labels, dtype=torch.long)
    last = float("nan")
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(texts), generator=gen)
        losses = []
        for i in range(0, len(texts), batch_size):
            idx = perm[i : i + batch_size].tolist()
            enc = tokenizer([texts[j] for j in idx], padding=True, truncation=True, max_length=max_length,
                            return_tensors="pt")
            enc = {k: v.to(device) for k, v in enc.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
            out = model(**enc, labels=y_all[idx].to(device))
            out.loss.backward()
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            losses.append(float(out.loss.detach()))
        last = float(np.mean(losses))
    model.eval()
    return {"train_loss_last_epoch": last, "steps": float(total)}


def split_holdout(n: int, holdout: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, calibration) of a seeded random split; both sides non-empty."""
    if n < 4:
        raise UsageError(f"PSIM needs at least 4 rows (got {n}): some to train on, some to calibrate τ")
    perm = np.random.default_rng(seed).permutation(n)
    n_cal = min(n - 2, max(2, int(round(holdout * n))))
    return np.sort(perm[n_cal:]), np.sort(perm[:n_cal])


def reset_labels(n: int, num_labels: int, seed: int) -> list[int]:
    """i.i.d. uniform labels over 0..K-1 (the authors' ``random.randint(0,1)``, generalised to K)."""
    return np.random.default_rng(seed + 1).integers(0, num_labels, size=n).tolist()


def train_psim(model: str, texts: list[str], labels: list[int], num_labels: int, out_dir: str | Path, *,
               adapter: str | Path | None = None, options: TrainOptions | None = None) -> dict[str, Any]:
    """Train a PSIM on ``model`` (+ suspect ``adapter``), calibrate τ, and save it under ``out_dir``.

    ``labels`` are the task's labels (only K and the held-out sanity accuracy use them unless
    ``options.reset_labels`` is False). Returns the saved metadata (also ``out_dir/psim.json``).
    """
    opts = options or TrainOptions()
    opts.validate()
    require_torch()
    import torch

    model_ref = resolve_model(model)
    adapter_dir = check_adapter_dir(adapter) if adapter is not None else None
    lr = opts.lr if opts.lr is not None else DEFAULT_LR[opts.peft]
    tr_idx, cal_idx = split_holdout(len(texts), opts.holdout, opts.seed)
    tr_texts = [texts[i] for i in tr_idx]
    tr_labels = reset_labels(len(tr_idx), num_labels, opts.seed) if opts.reset_labels else [labels[i] for i in tr_idx]

    torch.manual_seed(opts.seed)
    tokenizer = load_tokenizer(model_ref)
    base = load_suspect(model_ref, num_labels, adapter_dir).to(pick_device())
    from peft import get_peft_model

    psim = get_peft_model(base, peft_config(opts.peft, **opts.peft_params))
    if not opts.train_head:
        for name, p in psim.named_parameters():
            if "modules_to_save" in name:
                p.requires_grad_(False)
    t0 = time.perf_counter()
    stats = fit(psim, tokenizer, tr_texts, tr_labels, epochs=opts.epochs, lr=lr, batch_size=opts.batch_size,
                max_length=opts.max_length, seed=opts.seed, warmup=opts.warmup)
    train_s = time.perf_counter() - t0

    cal_texts = [texts[i] for i in cal_idx]
    cal_labels = [labels[i] for i in cal_idx]
    probs = probabilities(psim, tokenizer, cal_texts, max_length=opts.max_length)
    conf = probs.max(axis=1)
    tau = threshold.calibrate_tau(conf, opts.target_frr)

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    psim.save_pretrained(str(out / ADAPTER_SUBDIR))
    with open(out / CALIBRATION_FILE, "w", encoding="utf-8") as fh:
        for t, y, c in zip(cal_texts, cal_labels, conf):
            fh.write(json.dumps({"text": t, "label": int(y), "confidence": float(c)}, ensure_ascii=False) + "\n")
    meta: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "method": "PSIM (arXiv 2402.12168): PEFT on uniformly reset labels; flag iff max-softmax > tau",
        "model": model_ref,
        "adapter": str(adapter_dir) if adapter_dir else None,
        "adapter_sha256": adapter_fingerprint(adapter_dir) if adapter_dir else None,
        "num_labels": num_labels,
        "psim_sha256": psim_fingerprint(out),
        "tau": tau,
        "target_frr": opts.target_frr,
        "calibration": {
            "n": len(cal_texts),
            "frr_at_tau": threshold.rate(threshold.flag(conf, tau)),
            "mean_confidence": float(conf.mean()),
            "uniform_confidence": 1.0 / num_labels,
            # ≈ 1/K when the reset worked: G has no task signal left on clean inputs.
            "accuracy_vs_true_labels": float((probs.argmax(axis=1) == np.asarray(cal_labels)).mean()),
        },
        "train": {**asdict(opts), "lr": lr, "n": len(tr_texts), "seconds": round(train_s, 2), **stats},
    }
    (out / CONFIG_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return meta
