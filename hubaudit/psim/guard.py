"""Online filtering with a trained PSIM: ``Guard.load(PSIM_DIR).is_poisoned(texts)``.

At inference (arXiv 2402.12168): c(x) = max_k softmax(G(x))_k; x is flagged as poisoned iff
c(x) > τ, with τ the value calibrated at training time (or one the caller passes).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hubaudit.errors import UsageError
from hubaudit.psim import threshold
from hubaudit.psim.model import adapter_fingerprint, load_suspect, load_tokenizer, pick_device, require_torch
from hubaudit.psim.train import ADAPTER_SUBDIR, CONFIG_FILE, FORMAT_VERSION, probabilities, psim_fingerprint


def read_meta(psim_dir: str | Path) -> dict[str, Any]:
    """The ``psim.json`` of a PSIM directory, checked for presence and format version."""
    d = Path(psim_dir)
    f = d / CONFIG_FILE
    if not f.is_file():
        raise UsageError(f"{d}: not a PSIM directory (no {CONFIG_FILE})", hint="create one with `hubaudit psim train`")
    try:
        meta = json.loads(f.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise UsageError(f"{f}: not valid JSON") from None
    if meta.get("format_version") != FORMAT_VERSION:
        raise UsageError(f"{f}: unsupported PSIM format version {meta.get('format_version')!r} "
                         f"(expected {FORMAT_VERSION})")
    return meta


def folder_tau(psim_dir: str | Path, meta: dict[str, Any] | None = None) -> threshold.PsimTau:
    """The τ saved in a PSIM directory at training time, with what it was fitted on and the module's sha256."""
    meta = read_meta(psim_dir) if meta is None else meta
    cal = meta.get("calibration") or {}
    try:
        n, frr, at = int(cal.get("n", 0)), float(meta["target_frr"]), cal.get("frr_at_tau")
        return threshold.PsimTau(tau=float(meta["tau"]), target_frr=frr, n_clean=n,
                                 psim_sha256=psim_fingerprint(psim_dir), frr_at_tau=None if at is None else float(at),
                                 model=meta.get("model"), source=threshold.tau_source(n, frr))  # fmt: skip
    except (KeyError, TypeError, ValueError):
        raise UsageError(f"{Path(psim_dir) / CONFIG_FILE}: no valid tau and target_frr") from None


@dataclass
class Guard:
    """A loaded PSIM: the suspect model with the PSIM PEFT module, its tokenizer and τ."""

    model: Any
    tokenizer: Any
    tau: float
    meta: dict[str, Any]

    @classmethod
    def load(cls, psim_dir: str | Path, *, tau: float | None = None) -> Guard:
        """Load a PSIM directory written by :func:`hubaudit.psim.train.train_psim`.

        The suspect base (and adapter) are re-read from the paths recorded at training time; the
        adapter's sha256 must match, so a PSIM is never silently applied to a different adapter.
        """
        require_torch()
        from peft import PeftModel

        d = Path(psim_dir)
        meta = read_meta(d)
        adapter = meta.get("adapter")
        if adapter:
            if not Path(adapter).is_dir():
                raise UsageError(f"{d}: the suspect adapter it was trained on is gone ({adapter})")
            if adapter_fingerprint(adapter) != meta.get("adapter_sha256"):
                raise UsageError(f"{d}: the suspect adapter at {adapter} changed since PSIM training; retrain")
        base = load_suspect(meta["model"], int(meta["num_labels"]), adapter)
        model = PeftModel.from_pretrained(base, str(d / ADAPTER_SUBDIR), is_trainable=False).to(pick_device())
        model.eval()
        return cls(model=model, tokenizer=load_tokenizer(meta["model"]),
                   tau=float(meta["tau"] if tau is None else tau), meta=meta)

    @property
    def max_length(self) -> int:
        """The truncation length used at training time."""
        return int(self.meta.get("train", {}).get("max_length", 128))

    def confidence(self, texts: list[str] | str) -> np.ndarray:
        """Max-softmax confidence of the PSIM for each text (array of floats in [1/K, 1])."""
        texts = [texts] if isinstance(texts, str) else list(texts)
        if not texts:
            return np.zeros(0)
        return probabilities(self.model, self.tokenizer, texts, max_length=self.max_length).max(axis=1)

    def is_poisoned(self, texts: list[str] | str) -> np.ndarray:
        """Boolean flags: confidence > τ (extreme confidence marks a triggered input)."""
        return threshold.flag(self.confidence(texts), self.tau)
