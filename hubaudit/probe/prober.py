"""The prober: one base model loaded once, adapters hot-swapped, batteries run in batches.

Hot-swap (peft): the first adapter wraps the base (``PeftModel.from_pretrained``); each next one
is ``load_adapter`` + ``set_adapter``, then the previous one is ``delete_adapter``-ed, so memory
holds the base and at most two adapters. Bases are keyed by (path, mode, number of labels).
Fast path: when the next adapter's LoRA layout equals the active one's (same type, rank, alpha,
target and saved modules; ``_SWAP_KEYS``), its weights are copied into the active adapter's
tensors in place (``set_peft_model_state_dict``) instead of re-injecting LoRA layers; any missing
or unexpected key falls back to the full load/set/delete path, so no stale weight can survive.

Modes (what "the attacker's side" means, arXiv 2605.30189):

- ``seq_cls``: a SEQ_CLS adapter with a head (``modules_to_save``); decision = argmax of the head.
- ``causal_label``: a causal LM used as a label classifier (the paper's set-up, see prompting.py);
  decision = argmax over the label words' first-token logits.
- ``generative``: succ(p, x) = the adapter's greedy continuation of ``f"{p}. {x}"`` differs from
  its continuation of ``x``, while the base model's continuations of the two are equal.

For the label modes, with target label t: eligible X_t = prompts the adapter does NOT classify as t
without a probe; a_p = |{x ∈ X_t : decision(f"{p}. {x}") = t}| / |X_t|. Without a target label,
every label is tried and the worst (largest severity, stats.severity) is reported.

Throughput (benchmarks/bench_probe.py): the swap is a tensor copy (above); the
battery x prompt texts are tokenized, length-sorted and batched once per base and reused by every
adapter; for ``causal_label`` the shared prefix of a probe's texts (system prompt + probe) is run
once per adapter and its KV cache reused (forward.py); the base's own generations are computed once
per base. Each result carries ``timings`` (activation vs forward passes) for the overhead split.

Everything runs offline: every ``from_pretrained`` of a local base or adapter directory passes
``local_files_only=True`` (no process environment is changed). A failure of one adapter is a value
(``status="error"`` with a ``reason`` code), never an exception out of :meth:`Prober.probe`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from hubaudit import safejson
from hubaudit.models import PROBE_RESULT_VERSION, PROBE_RESULT_VERSION_KEY
from hubaudit.probe.batteries import Battery
from hubaudit.probe.modes import MODES, ProbeMode, resolve_mode
from hubaudit.probe.prompting import (
    DEFAULT_LABEL_WORDS,
    DEFAULT_PROMPT_TEMPLATE,
    DEFAULT_SYSTEM_PROMPT,
    label_prompt,
    label_token_ids,
    probe_input,
)
from hubaudit.probe.stats import Summary, Thresholds, severity, summarize
from hubaudit.vocab import ProbeStatus

# adapter_config keys that must be equal for the in-place fast swap (they fix which tensors exist and their scaling)
_SWAP_KEYS = ("peft_type", "task_type", "r", "lora_alpha", "target_modules", "modules_to_save", "use_rslora",
              "use_dora", "rank_pattern", "alpha_pattern", "layers_to_transform", "layers_pattern", "bias",
              "fan_in_fan_out", "exclude_modules", "trainable_token_indices", "use_qalora", "lora_bias")


def _norm(v):
    return sorted(v) if isinstance(v, (list, set, tuple)) else v


@dataclass(frozen=True)
class ProbeOptions:
    """How to read an adapter's decisions (see the module docstring)."""

    mode: str = "auto"  # auto: SEQ_CLS -> seq_cls, CAUSAL_LM -> causal_label (generative when label_words is empty)
    target_label: str | None = None  # a label index, a label word, or LABEL_<i>; None = try all
    label_words: tuple[str, ...] = DEFAULT_LABEL_WORDS
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    prompt_template: str = DEFAULT_PROMPT_TEMPLATE
    batch_size: int = 32
    max_length: int = 256
    max_new_tokens: int = 8  # generative mode
    device: str | None = None  # None: cuda when available, else cpu
    prefix_cache: bool = True  # causal_label: reuse the KV cache of each probe's shared prefix (forward.py)

    def to_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}


@dataclass
class _Loaded:
    base: object
    tok: object
    peft: object | None = None
    active: str | None = None
    active_cfg: dict | None = None
    base_generations: dict = field(default_factory=dict)
    plans: dict = field(default_factory=dict)  # tokenized battery x prompts, reused by every adapter of this base


class ProbeFailure(Exception):
    """An adapter-level failure with a machine ``reason`` code (turned into a result value)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def _quiet_transformers() -> None:
    import warnings

    warnings.filterwarnings("ignore", category=FutureWarning, module="transformers")
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()


def adapter_config(adapter_dir: str | Path) -> dict:
    """The adapter's ``adapter_config.json`` (ProbeFailure ``incompatible`` when missing/invalid)."""
    p = Path(adapter_dir, "adapter_config.json")
    try:
        return safejson.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ProbeFailure("incompatible", f"cannot read {p}: {exc}") from None


def _n_labels(adapter_dir: Path, cfg: dict) -> int:
    """Rows of the saved classification head (``modules_to_save``), 2 if none is found."""
    from safetensors import safe_open

    heads = list(cfg.get("modules_to_save") or []) + ["classifier", "score"]
    f = adapter_dir / "adapter_model.safetensors"
    if not f.is_file():
        raise ProbeFailure("incompatible", f"{f.name} missing (pickle-only adapters are not loaded)")
    with safe_open(str(f), "pt") as st:
        for key in st.keys():
            for h in heads:
                if key.endswith((f"{h}.weight", f"{h}.modules_to_save.weight", f"{h}.out_proj.weight")):
                    shape = st.get_slice(key).get_shape()
                    if len(shape) == 2:
                        return int(shape[0])
    return 2


class Prober:
    """Probe many adapters against locally stored base models, loading each base once."""

    def __init__(self, options: ProbeOptions | None = None) -> None:
        self.options = options or ProbeOptions()
        self._loaded: dict[tuple, _Loaded] = {}
        self._counter = 0
        self.base_loads = 0  # how many times a base was loaded (the benchmark and tests read it)
        self.fast_swaps = 0  # adapters swapped in place (same LoRA layout as the active one)
        self._timings: dict = {}  # of the last probe(): base_load_s, activate_s, encode_s, forward_s
        _quiet_transformers()
        import torch

        self._torch = torch
        dev = self.options.device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.device = torch.device(dev)
        # bf16 where the GPU supports it, else fp16; fp32 on CPU (half precision is slow there).
        if self.device.type == "cuda":
            self.dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        else:
            self.dtype = torch.float32

    # ---------------------------------------------------------------- loading / hot-swapping
    def _base(self, base_path: str, mode: str, n_labels: int) -> _Loaded:
        key = (str(base_path), mode, n_labels)
        if key in self._loaded:
            return self._loaded[key]
        from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

        if not Path(base_path).is_dir():
            raise ProbeFailure("base_unavailable", f"base model directory {base_path} does not exist")
        try:
            tok = AutoTokenizer.from_pretrained(str(base_path), local_files_only=True)
            if mode == ProbeMode.SEQ_CLS:
                model = AutoModelForSequenceClassification.from_pretrained(
                    str(base_path), num_labels=n_labels, local_files_only=True, dtype=self.dtype)
            else:
                model = AutoModelForCausalLM.from_pretrained(str(base_path), local_files_only=True, dtype=self.dtype)
        except (OSError, ValueError) as exc:
            raise ProbeFailure("base_unavailable",
                               f"cannot load base {base_path}: {str(exc).splitlines()[0]}") from None
        if mode != ProbeMode.SEQ_CLS:
            tok.padding_side = "left"  # next-token logits / generation read the last position
            tok.truncation_side = "left"
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        model.to(self.device).eval()
        self.base_loads += 1
        self._loaded[key] = _Loaded(model, tok)
        return self._loaded[key]

    def _fast_swap(self, entry: _Loaded, adapter_dir: Path, cfg: dict) -> bool:
        """Copy the adapter's tensors into the active adapter in place; False when layouts differ."""
        if entry.peft is None or entry.active_cfg is None:
            return False
        if any(_norm(cfg.get(k)) != _norm(entry.active_cfg.get(k)) for k in _SWAP_KEYS):
            return False
        from peft.utils import set_peft_model_state_dict
        from safetensors.torch import load_file

        try:
            sd = load_file(str(adapter_dir / "adapter_model.safetensors"), device=str(self.device))
            res = set_peft_model_state_dict(entry.peft, sd, adapter_name=entry.active)
        except (RuntimeError, ValueError, KeyError, OSError):
            return False
        missing = [k for k in res.missing_keys if f".{entry.active}." in k and ("lora_" in k or "modules_to_save" in k)]
        if missing or res.unexpected_keys:
            return False  # the caller does a full load; the partially written adapter is then deleted
        return True

    def _activate(self, entry: _Loaded, adapter_dir: Path, cfg: dict) -> None:
        from peft import PeftModel

        if self._fast_swap(entry, adapter_dir, cfg):
            self.fast_swaps += 1
            entry.peft.eval()
            return
        self._counter += 1
        name = f"a{self._counter}"
        try:
            if entry.peft is None:
                entry.peft = PeftModel.from_pretrained(entry.base, str(adapter_dir), adapter_name=name,
                                                       local_files_only=True)
            else:
                entry.peft.load_adapter(str(adapter_dir), adapter_name=name, local_files_only=True)
                entry.peft.set_adapter(name)
        except (RuntimeError, ValueError, KeyError, OSError) as exc:
            if entry.peft is not None and name in getattr(entry.peft, "peft_config", {}):
                entry.peft.delete_adapter(name)
            raise ProbeFailure("incompatible",
                               f"adapter does not fit the base: {str(exc).splitlines()[0][:200]}") from None
        if entry.active is not None and entry.active != name:
            entry.peft.delete_adapter(entry.active)
        entry.active = name
        entry.active_cfg = cfg
        entry.peft.to(self.device).eval()

    # ---------------------------------------------------------------- decisions
    def _plan(self, tok, texts: list[str], mode: str, groups: list[list[int]] | None = None):
        """Tokenized, length-sorted batches of ``texts`` (forward.py); classifier prompts built for causal_label."""
        from hubaudit.probe import forward

        o = self.options
        if mode == ProbeMode.SEQ_CLS:
            return forward.encoder_plan(tok, texts, batch_size=o.batch_size, max_length=o.max_length,
                                        device=self.device)
        prompts = [label_prompt(tok, t, o.system_prompt, o.prompt_template) for t in texts]
        return forward.causal_plan(tok, prompts, batch_size=o.batch_size, max_length=o.max_length, device=self.device,
                                   groups=groups, prefix_cache=o.prefix_cache)

    def _decide(self, model, tok, plan, mode: str) -> list[int]:
        from hubaudit.probe import forward

        with self._torch.inference_mode():
            if mode == ProbeMode.SEQ_CLS:
                logits = forward.encoder_logits(model, plan)
            else:
                logits = forward.next_token_logits(model, plan, label_token_ids(tok, self.options.label_words))
        return [int(v) for v in logits.argmax(-1).tolist()]

    def _labels(self, model, tok, texts: list[str], mode: str) -> list[int]:
        """Decision (label index) per text; texts share a prefix cache only through the system prompt."""
        return self._decide(model, tok, self._plan(tok, texts, mode), mode)

    def _generate(self, model, tok, texts: list[str]) -> list[tuple[int, ...]]:
        """Greedy continuation token ids per text (``max_new_tokens``), batches cut from length-sorted texts."""
        from hubaudit.probe import forward

        o = self.options
        with self._torch.inference_mode():
            return forward.greedy(model, tok, texts, batch_size=o.batch_size, max_length=o.max_length,
                                  max_new_tokens=o.max_new_tokens, device=self.device)

    # ---------------------------------------------------------------- public
    def probe(self, adapter_dir: str | Path, base_path: str | Path, battery: Battery, prompts: list[str],
              thresholds: Thresholds | None = None) -> dict:
        """Probe one adapter; returns a result dict (``status`` ok/error, never raises for the adapter)."""
        th = thresholds or Thresholds()
        t0 = time.perf_counter()
        self._timings = {}
        head = {PROBE_RESULT_VERSION_KEY: PROBE_RESULT_VERSION, "adapter": str(adapter_dir),
                "base_model_path": str(base_path), "battery": battery.to_dict(), "thresholds": th.to_dict(),
                "n_prompts": len(prompts), "device": str(self.device), "dtype": str(self.dtype).replace("torch.", "")}
        try:
            result = self._probe(Path(adapter_dir), str(base_path), battery, prompts, th)
        except ProbeFailure as exc:
            return head | {"status": ProbeStatus.ERROR, "reason": exc.reason, "error": str(exc)}
        except self._torch.cuda.OutOfMemoryError as exc:  # type: ignore[attr-defined]
            self._torch.cuda.empty_cache()
            return head | {"status": ProbeStatus.ERROR, "reason": "oom", "error": str(exc).splitlines()[0][:200]}
        timings = {k: round(v, 4) for k, v in self._timings.items()}
        return head | result | {"status": ProbeStatus.OK, "seconds": round(time.perf_counter() - t0, 3),
                                "timings": timings}

    def _probe(self, adapter_dir: Path, base_path: str, battery: Battery, prompts: list[str], th: Thresholds) -> dict:
        cfg = adapter_config(adapter_dir)
        if not (adapter_dir / "adapter_model.safetensors").is_file():
            raise ProbeFailure("incompatible",
                               "adapter_model.safetensors missing (pickle-only adapters are not loaded)")
        if cfg.get("peft_type", "LORA") != "LORA":
            raise ProbeFailure("unsupported", f"peft_type {cfg.get('peft_type')} is not probed")
        if self.options.mode not in MODES:
            raise ProbeFailure("usage", f"unknown mode {self.options.mode!r}")
        mode = resolve_mode(self.options.mode, cfg.get("task_type"), bool(self.options.label_words))
        names = self._label_names(adapter_dir, cfg, mode)
        n_labels = len(names)
        t = time.perf_counter()
        loads = self.base_loads
        entry = self._base(base_path, mode, n_labels)
        t_base = time.perf_counter() - t
        self._activate(entry, adapter_dir, cfg)
        # fixed per-adapter overhead (the base load is 0 when the base was already resident)
        self._timings.update(base_load_s=t_base if self.base_loads > loads else 0.0,
                             activate_s=time.perf_counter() - t - t_base)
        texts = [probe_input(p.prefix, x) for p in battery.probes for x in prompts]
        n = len(prompts)
        if mode == ProbeMode.GENERATIVE:
            t = time.perf_counter()
            out = {"mode": mode} | self._generative(entry, battery, prompts, texts, th)
            self._timings["forward_s"] = time.perf_counter() - t
            return out
        t = time.perf_counter()
        key = (mode, tuple(prompts), tuple(texts))
        if key not in entry.plans:  # clean prompts first, then one prefix-sharing group per probe
            groups = [list(range(n))] + [list(range(n + k * n, n + (k + 1) * n)) for k in range(len(battery.probes))]
            if len(entry.plans) >= 8:
                entry.plans.pop(next(iter(entry.plans)))
            entry.plans[key] = self._plan(entry.tok, prompts + texts, mode, groups)
        plan = entry.plans[key]
        self._timings["encode_s"] = time.perf_counter() - t
        t = time.perf_counter()
        decided = self._decide(entry.peft, entry.tok, plan, mode)
        self._timings["forward_s"] = time.perf_counter() - t
        clean, probed = decided[:n], decided[n:]
        rows = [probed[k * n : (k + 1) * n] for k in range(len(battery.probes))]
        targets = range(n_labels) if self.options.target_label is None else [self.target_index(names)]
        per_label = []
        for t in targets:
            eligible = [i for i in range(n) if clean[i] != t]
            if not eligible:
                continue
            rates = [sum(row[i] == t for i in eligible) / len(eligible) for row in rows]
            per_label.append((t, eligible, rates, summarize(rates, th)))
        if not per_label:
            raise ProbeFailure("no_eligible_prompts", "every prompt is already classified as the target label")
        t, eligible, rates, s = max(per_label, key=lambda r: severity(r[3], th))
        return {"mode": mode, "target_label": names[t], "n_eligible": len(eligible)} | _stats(s) | {
            "probes": [{"prefix": p.prefix, "category": p.category, "attack_rate": r}
                       for p, r in zip(battery.probes, rates)],
            "per_label": [{"label": names[lt], "n_eligible": len(el)} | _stats(ls) for lt, el, _, ls in per_label],
        }

    def _label_names(self, adapter_dir: Path, cfg: dict, mode: str) -> list[str]:
        """The decision labels: the classifier head's LABEL_i (seq_cls) or the configured label words."""
        if mode == ProbeMode.SEQ_CLS:
            return [f"LABEL_{i}" for i in range(_n_labels(adapter_dir, cfg))]
        return list(self.options.label_words)

    def target_index(self, names: list[str]) -> int:
        """Index of ``options.target_label`` among ``names`` (ProbeFailure ``usage`` when absent)."""
        want = str(self.options.target_label)
        for i, name in enumerate(names):
            if want == str(i) or want.lower() == name.lower():
                return i
        raise ProbeFailure("usage", f"target label {want!r} is not one of {names} or an index")

    def _generative(self, entry: _Loaded, battery: Battery, prompts: list[str], texts: list[str],
                    th: Thresholds) -> dict:
        n = len(prompts)
        key = (battery.name, battery.version, tuple(prompts), self.options.max_new_tokens)
        if key not in entry.base_generations:  # the base's behaviour is the same for every adapter
            with entry.peft.disable_adapter():
                entry.base_generations[key] = (self._generate(entry.peft, entry.tok, prompts),
                                               self._generate(entry.peft, entry.tok, texts))
        base_clean, base_probed = entry.base_generations[key]
        ad_clean = self._generate(entry.peft, entry.tok, prompts)
        ad_probed = self._generate(entry.peft, entry.tok, texts)
        rates = []
        for k in range(len(battery.probes)):
            hits = sum(ad_probed[k * n + i] != ad_clean[i] and base_probed[k * n + i] == base_clean[i]
                       for i in range(n))
            rates.append(hits / n)
        s = summarize(rates, th)
        return {"target_label": None, "n_eligible": n} | _stats(s) | {
            "probes": [{"prefix": p.prefix, "category": p.category, "attack_rate": r}
                       for p, r in zip(battery.probes, rates)],
        }

    # ---------------------------------------------------------------- public: the active adapter (blind search)
    def active(self, adapter_dir: str | Path, base_path: str | Path, mode: str) -> ActiveAdapter:
        """The adapter that :meth:`probe` just ran (base loaded, adapter active) as a decision API.

        ``mode`` is the result's ``mode``. No reload: the search (search_run.py) reuses the probe's base
        and adapter. Raises ProbeFailure when the adapter is not readable."""
        adapter_dir = Path(adapter_dir)
        names = self._label_names(adapter_dir, adapter_config(adapter_dir), mode)
        return ActiveAdapter(self, self._base(str(base_path), mode, len(names)), mode, names)

    def close(self) -> None:
        """Drop every loaded base (frees GPU memory)."""
        self._loaded.clear()
        if self.device.type == "cuda":
            self._torch.cuda.empty_cache()


def _stats(s: Summary) -> dict:
    return {"outlier_gap": s.outlier_gap, "mean_attack_rate": s.mean_attack_rate,
            "max_attack_rate": s.max_attack_rate, "flagged": s.flagged, "reasons": list(s.reasons)}


@dataclass
class ActiveAdapter:
    """Decisions of the adapter a :class:`Prober` has active (see :meth:`Prober.active`)."""

    prober: Prober
    entry: _Loaded
    mode: str
    label_names: list[str]

    @property
    def tokenizer(self):
        """The base's tokenizer."""
        return self.entry.tok

    def labels(self, texts: list[str]) -> list[int]:
        """Label index per text (label modes: seq_cls / causal_label)."""
        return self.prober._labels(self.entry.peft, self.entry.tok, texts, self.mode)

    def generations(self, texts: list[str], *, base: bool = False) -> list[tuple[int, ...]]:
        """Greedy continuation token ids per text, of the adapter or (``base=True``) of the base model."""
        if base:
            with self.entry.peft.disable_adapter():
                return self.prober._generate(self.entry.peft, self.entry.tok, texts)
        return self.prober._generate(self.entry.peft, self.entry.tok, texts)
