"""Loading the suspect model (a base, optionally with a suspect LoRA adapter merged) and PEFT configs.

torch/peft/transformers are imported inside functions only (they are an optional extra).
Nothing here touches the network: a local directory is loaded with ``local_files_only``; a repo id
is accepted only if it resolves in the local Hugging Face cache.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from hubaudit.errors import MissingExtraError, UsageError

PEFT_METHODS = ("lora", "p-tuning", "prompt-tuning")

# The authors' code (arXiv 2402.12168): P-tuning v1 with 5 virtual tokens and a 128-wide prompt
# encoder; LoRA r=8, alpha=16, dropout 0.1 as in their victim script; prompt tuning 5 tokens.
PEFT_DEFAULTS: dict[str, dict[str, Any]] = {
    "p-tuning": {"num_virtual_tokens": 5, "encoder_hidden_size": 128},
    "prompt-tuning": {"num_virtual_tokens": 5},
    "lora": {"r": 8, "lora_alpha": 16, "lora_dropout": 0.1},
}


def require_torch() -> None:
    """Raise :class:`MissingExtraError` (exit 3, with the pip hint) if the probe extra is absent."""
    try:
        import peft  # noqa: F401
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError:
        raise MissingExtraError("probe", "PSIM") from None


def peft_config(method: str, **overrides: Any):
    """The peft config for ``method`` (one of :data:`PEFT_METHODS`) for sequence classification.

    With ``task_type=SEQ_CLS`` peft also trains the classification head (``modules_to_save``),
    as in the authors' code.
    """
    from peft import LoraConfig, PromptEncoderConfig, PromptTuningConfig, TaskType

    params = {**PEFT_DEFAULTS[method], **overrides}
    builders = {
        "lora": lambda: LoraConfig(task_type=TaskType.SEQ_CLS, **params),
        "p-tuning": lambda: PromptEncoderConfig(task_type=TaskType.SEQ_CLS, **params),
        "prompt-tuning": lambda: PromptTuningConfig(task_type=TaskType.SEQ_CLS, **params),
    }
    if method not in builders:
        raise UsageError(f"unknown PEFT method '{method}' (choose from {', '.join(PEFT_METHODS)})")
    return builders[method]()


def resolve_model(model: str) -> str:
    """A local directory as an absolute path, or a repo id that is present in the local HF cache."""
    p = Path(model).expanduser()
    if p.exists():
        if not (p / "config.json").is_file():
            raise UsageError(f"{p}: not a model directory (no config.json)")
        return str(p.resolve())
    try:
        from huggingface_hub import try_to_load_from_cache

        hit = try_to_load_from_cache(model, "config.json")
    except Exception:  # noqa: BLE001 - an invalid repo id is the same user error as a missing one
        hit = None
    if not isinstance(hit, str):
        raise UsageError(
            f"model '{model}' is neither a local directory nor in the local Hugging Face cache",
            hint="pass a local model directory (this tool never downloads models)",
        )
    return model


def file_sha256(path: Path) -> str:
    """sha256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def adapter_fingerprint(adapter: str | Path) -> dict[str, str]:
    """sha256 of the adapter's config and weights, so a PSIM is never reused on a changed adapter."""
    d = Path(adapter)
    out = {}
    for name in ("adapter_config.json", "adapter_model.safetensors", "adapter_model.bin"):
        if (d / name).is_file():
            out[name] = file_sha256(d / name)
    return out


def check_adapter_dir(adapter: str | Path) -> Path:
    """The suspect adapter directory, checked to hold a LoRA adapter in safetensors form."""
    d = Path(adapter).expanduser()
    if not (d / "adapter_config.json").is_file():
        raise UsageError(f"{d}: not a PEFT adapter directory (no adapter_config.json)")
    if not (d / "adapter_model.safetensors").is_file():
        raise UsageError(f"{d}: no adapter_model.safetensors (pickle adapters are never loaded)")
    try:
        cfg = json.loads((d / "adapter_config.json").read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise UsageError(f"{d}/adapter_config.json: not valid JSON") from None
    if str(cfg.get("peft_type", "")).upper() != "LORA":
        raise UsageError(f"{d}: --adapter must be a LoRA adapter (found peft_type {cfg.get('peft_type')!r})")
    return d.resolve()


def quiet_transformers() -> None:
    """Silence transformers' notices and progress bars: stderr is for hubaudit's own summary."""
    import warnings

    import transformers

    transformers.logging.set_verbosity_error()  # "newly initialised head" notices are expected
    transformers.utils.logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"(transformers|peft)\b.*")
    warnings.filterwarnings("ignore", category=UserWarning, module=r"peft\b.*")


def load_tokenizer(model: str):
    """The model's tokenizer from local files only."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(model, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot load a tokenizer for '{model}': {str(exc).splitlines()[0]}") from None


def load_suspect(model: str, num_labels: int, adapter: str | Path | None = None):
    """The model PSIM is trained on: ``model`` as a K-class classifier, with ``adapter`` merged.

    A checkpoint whose classification head already has K outputs keeps its (possibly poisoned)
    head, as in the authors' setting; otherwise a fresh head is initialised.
    """
    from transformers import AutoModelForSequenceClassification

    quiet_transformers()
    try:
        m = AutoModelForSequenceClassification.from_pretrained(
            model, num_labels=num_labels, local_files_only=True, ignore_mismatched_sizes=True
        )
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot load model '{model}': {str(exc).splitlines()[0]}") from None
    if m.config.pad_token_id is None:
        m.config.pad_token_id = m.config.eos_token_id if m.config.eos_token_id is not None else 0
    if adapter is not None:
        from peft import PeftModel

        try:
            m = PeftModel.from_pretrained(m, str(adapter), is_trainable=False).merge_and_unload()
        except (OSError, ValueError, RuntimeError, KeyError) as exc:
            raise UsageError(f"cannot apply adapter '{adapter}' to '{model}': {str(exc).splitlines()[0]}") from None
    return m


def pick_device():
    """CUDA if present, else CPU."""
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
