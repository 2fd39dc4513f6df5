"""adapter_config.json → the few settings the weight statistic needs (hub_api.md §5.1–5.2).

Scaling per module, as peft's ``LoraLayer.update_layer``: s = α/r, or α/√r with rsLoRA, with
r and α overridden per module by ``rank_pattern``/``alpha_pattern`` under peft's
``get_pattern_key`` semantics (first key in dict order for which
``re.match(rf"(.*\\.)?({key})$", module_name)`` matches; module names without the
``base_model.model.`` prefix). The rank is always taken from the tensor shape.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from hubaudit.stats._reject import Rejected, show_name

# A nested quantifier such as "(a+)+" backtracks exponentially in Python's re; config keys are
# untrusted, so such keys are ignored (with a warning) rather than matched.
_NESTED_QUANTIFIER = re.compile(r"[+*}]\)*[+*{]|\)[+*{]")
MAX_PATTERN_KEY = 512


@dataclass(frozen=True)
class LoraSettings:
    """What the scanner reads from a LoRA adapter_config.json (defaults are peft's)."""

    peft_type: str = "LORA"
    r: int | None = None
    lora_alpha: float | None = None
    use_rslora: bool = False
    use_dora: bool = False
    fan_in_fan_out: bool = False
    rank_pattern: dict[str, int] = field(default_factory=dict)
    alpha_pattern: dict[str, float] = field(default_factory=dict)
    target_modules: tuple[str, ...] = ()
    base_model: str | None = None
    task_type: str | None = None
    has_config: bool = True
    warnings: tuple[str, ...] = ()

    def scaling(self, module_name: str, tensor_rank: int) -> float:
        """PEFT scaling s for one module, with the rank read from the tensor shape."""
        if not self.has_config:
            return 1.0  # no config: the paper's convention α = r (DESIGN §2); warned once
        alpha = self.lora_alpha if self.lora_alpha is not None else 8.0
        key = pattern_key(tuple(self.alpha_pattern), module_name)
        if key is not None:
            alpha = self.alpha_pattern[key]
        return alpha / math.sqrt(tensor_rank) if self.use_rslora else alpha / tensor_rank

    def config_rank(self, module_name: str) -> int | None:
        """The rank the config promises for ``module_name`` (rank_pattern, else r)."""
        key = pattern_key(tuple(self.rank_pattern), module_name)
        return self.rank_pattern[key] if key is not None else self.r


MAX_UNBOUNDED_QUANTIFIERS = 4  # ".*" chains backtrack polynomially with a degree of their count


def _safe_keys(keys: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(
        k
        for k in keys
        if len(k) <= MAX_PATTERN_KEY
        and not _NESTED_QUANTIFIER.search(k)
        and k.count("*") + k.count("+") <= MAX_UNBOUNDED_QUANTIFIERS
    )


@lru_cache(maxsize=4096)
def _compiled(key: str) -> re.Pattern[str] | None:
    try:
        return re.compile(rf"(.*\.)?({key})$")
    except re.error:
        return None


def pattern_key(keys: tuple[str, ...], module_name: str) -> str | None:
    """peft's ``get_pattern_key``: the first key (dict order) matching ``module_name``, else None."""
    for key in _safe_keys(keys):
        pat = _compiled(key)
        if pat is not None and pat.match(module_name):
            return key
    return None


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise Rejected(f"adapter_config.json: {what} must be a finite number, got {show_name(str(value), 40)}")
    return float(value)


def _rank(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise Rejected(f"adapter_config.json: {what} must be a positive integer, got {show_name(str(value), 40)}")
    return value


def _flag(cfg: dict[str, Any], key: str) -> bool:
    value = cfg.get(key, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise Rejected(f"adapter_config.json: {key} must be true or false")
    return value


def _pattern(cfg: dict[str, Any], key: str, conv: Any, warnings: list[str]) -> dict[str, Any]:
    value = cfg.get(key) or {}
    if not isinstance(value, dict):
        raise Rejected(f"adapter_config.json: {key} must be an object")
    out = {str(k): conv(v, f"{key}[{show_name(str(k), 40)}]") for k, v in value.items()}
    dropped = set(out) - set(_safe_keys(tuple(out)))
    if dropped:
        warnings.append(f"{key}: ignored {len(dropped)} over-long or catastrophic-backtracking regex key(s)")
    return out


def _optional_str(cfg: dict[str, Any], key: str) -> str | None:
    value = cfg.get(key)
    return value if isinstance(value, str) else None


def parse_settings(cfg: dict[str, Any]) -> LoraSettings:
    """Validate a parsed adapter_config.json object. Non-LoRA peft types are ``unsupported``."""
    warnings: list[str] = []
    peft_type = cfg.get("peft_type")
    if peft_type is None:
        warnings.append("adapter_config.json has no peft_type; assumed LORA")
        peft_type = "LORA"
    if not isinstance(peft_type, str):
        raise Rejected("adapter_config.json: peft_type must be a string")
    if peft_type.upper() != "LORA":
        raise Rejected(f"peft_type {show_name(peft_type, 40)} is not scored (only LORA is)", "unsupported")
    targets = cfg.get("target_modules")
    if isinstance(targets, str):
        target_modules: tuple[str, ...] = (targets,)
    elif isinstance(targets, list):
        target_modules = tuple(sorted(str(t) for t in targets))
    else:
        target_modules = ()
    return LoraSettings(
        peft_type="LORA",
        r=_rank(cfg["r"], "r") if cfg.get("r") is not None else None,
        lora_alpha=_number(cfg["lora_alpha"], "lora_alpha") if cfg.get("lora_alpha") is not None else None,
        use_rslora=_flag(cfg, "use_rslora"),
        use_dora=_flag(cfg, "use_dora"),
        fan_in_fan_out=_flag(cfg, "fan_in_fan_out"),
        rank_pattern=_pattern(cfg, "rank_pattern", _rank, warnings),
        alpha_pattern=_pattern(cfg, "alpha_pattern", _number, warnings),
        target_modules=target_modules,
        base_model=_optional_str(cfg, "base_model_name_or_path"),
        task_type=_optional_str(cfg, "task_type"),
        warnings=tuple(warnings),
    )


NO_CONFIG = LoraSettings(
    has_config=False,
    warnings=("no adapter_config.json beside the weights: scaling assumed 1 (alpha = r, the paper's convention)",),
)
