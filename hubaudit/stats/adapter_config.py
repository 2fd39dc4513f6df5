"""adapter_config.json → the few settings the weight statistic needs.

Scaling per module, as peft's ``LoraLayer.update_layer``: s = α/r, or α/√r with rsLoRA, with
r and α overridden per module by ``rank_pattern``/``alpha_pattern`` under peft's
``get_pattern_key`` semantics (first key in dict order for which
``re.match(rf"(.*\\.)?({key})$", module_name)`` matches; module names without the
``base_model.model.`` prefix), evaluated in linear time by :mod:`hubaudit.pattern_keys`.
The rank is always taken from the tensor shape.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from hubaudit.pattern_keys import EMPTY, KeyMatcher, PatternError, compile_keys
from hubaudit.stats._reject import Rejected, show_name
from hubaudit.vocab import ScanStatus


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

    # compiled rank_pattern/alpha_pattern keys (built from the dicts when not given)
    rank_keys: KeyMatcher | None = field(default=None, compare=False, repr=False)
    alpha_keys: KeyMatcher | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.rank_keys is None:
            object.__setattr__(self, "rank_keys", compile_keys(tuple(self.rank_pattern), "rank_pattern"))
        if self.alpha_keys is None:
            object.__setattr__(self, "alpha_keys", compile_keys(tuple(self.alpha_pattern), "alpha_pattern"))

    def scaling(self, module_name: str, tensor_rank: int) -> float:
        """PEFT scaling s for one module, with the rank read from the tensor shape."""
        if not self.has_config:
            return 1.0  # no config: the paper's convention α = r (arXiv 2605.30189); warned once
        alpha = self.lora_alpha if self.lora_alpha is not None else 8.0
        key = _first(self.alpha_keys, module_name, "alpha_pattern")
        if key is not None:
            alpha = self.alpha_pattern[key]
        return alpha / math.sqrt(tensor_rank) if self.use_rslora else alpha / tensor_rank

    def config_rank(self, module_name: str) -> int | None:
        """The rank the config promises for ``module_name`` (rank_pattern, else r)."""
        key = _first(self.rank_keys, module_name, "rank_pattern")
        return self.rank_pattern[key] if key is not None else self.r

    @property
    def has_patterns(self) -> bool:
        return bool(self.rank_pattern or self.alpha_pattern)

    def check_match_work(self, module_names: list[str]) -> None:
        """Refuse, before any tensor is read, pattern matching over ``module_names`` beyond the work cap."""
        for keys, what in ((self.rank_keys, "rank_pattern"), (self.alpha_keys, "alpha_pattern")):
            try:
                (keys or EMPTY).check_work(module_names, what)
            except PatternError as exc:
                raise Rejected(f"adapter_config.json: {exc}") from None


def _first(keys: KeyMatcher | None, module_name: str, what: str) -> str | None:
    try:
        return (keys or EMPTY).first(module_name, what)
    except PatternError as exc:
        raise Rejected(f"adapter_config.json: {exc}") from None


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


def _pattern(cfg: dict[str, Any], key: str, conv: Any, warnings: list[str]) -> tuple[dict[str, Any], KeyMatcher]:
    value = cfg.get(key) or {}
    if not isinstance(value, dict):
        raise Rejected(f"adapter_config.json: {key} must be an object")
    try:
        keys = compile_keys(tuple(value), key)  # caps first: nothing below runs on a refused dict
    except PatternError as exc:
        raise Rejected(f"adapter_config.json: {exc}") from None
    out = {str(k): conv(v, f"{key}[{show_name(str(k), 40)}]") for k, v in value.items()}
    if keys.ignored:
        warnings.append(f"{key}: ignored {len(keys.ignored)} key(s) Python's re cannot compile "
                        "(peft raises re.error on them)")  # fmt: skip
    return out, keys


def _targets(value: Any) -> tuple[str, ...]:
    # Bounded by the config's size cap (1 MiB: at most ~200,000 entries, sorted in ~0.1 s).
    if isinstance(value, str):
        return (value,)
    return tuple(sorted(str(t) for t in value)) if isinstance(value, list) else ()


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
        raise Rejected(f"peft_type {show_name(peft_type, 40)} is not scored (only LORA is)", ScanStatus.UNSUPPORTED)
    rank_pattern, rank_keys = _pattern(cfg, "rank_pattern", _rank, warnings)
    alpha_pattern, alpha_keys = _pattern(cfg, "alpha_pattern", _number, warnings)
    return LoraSettings(
        peft_type="LORA",
        r=_rank(cfg["r"], "r") if cfg.get("r") is not None else None,
        lora_alpha=_number(cfg["lora_alpha"], "lora_alpha") if cfg.get("lora_alpha") is not None else None,
        use_rslora=_flag(cfg, "use_rslora"),
        use_dora=_flag(cfg, "use_dora"),
        fan_in_fan_out=_flag(cfg, "fan_in_fan_out"),
        rank_pattern=rank_pattern,
        alpha_pattern=alpha_pattern,
        target_modules=_targets(cfg.get("target_modules")),
        base_model=_optional_str(cfg, "base_model_name_or_path"),
        task_type=_optional_str(cfg, "task_type"),
        warnings=tuple(warnings),
        rank_keys=rank_keys,
        alpha_keys=alpha_keys,
    )


NO_CONFIG = LoraSettings(
    has_config=False,
    warnings=("no adapter_config.json beside the weights: scaling assumed 1 (alpha = r, the paper's convention)",),
)
