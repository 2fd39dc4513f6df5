"""Candidate triggers read from the weights, no generation (BAIT / Neural Cleanse §4).

A backdoor trigger is a token the adapter learned to *respond to*: LoRA's first-layer projections
see the trigger's own (normalised) input embedding, so ΔW = s·B·A amplifies that direction much more
than the base weight W does. For every token t of the base vocabulary, with x_t the base input
embedding e_t normalised as the first layer sees it (zero mean, unit RMS: LayerNorm / RMSNorm
without their affine part), and every LoRA module m whose input is the hidden state:

    r_m(t) = ‖s_m·B_m·A_m·x_t‖ / (‖W_m·x_t‖ + ε)          (relative response, s_m = α/r or α/√r)
    z_m(t) = (r_m(t) − median_t r_m) / (1.4826·MAD_t r_m)    (robust z over the vocabulary)
    score(t) = mean over the modules of the first ``n_layers`` layers of z_m(t)

plus, when the adapter saves its own input embedding (``modules_to_save``) or has an embedding
LoRA (``lora_embedding_A/B``), z of ‖E'_t − E_t‖/‖E_t‖ for the tokens it rewrote, and, for a saved LM
head, z of ‖U'_t − U_t‖ (the tokens the head favours). Cheap: numpy on the embedding matrix
(V × d) and rank-r factors; a MiniLM adapter takes well under a second.

Special tokens other than the unknown token and BERT's untrained ``[unusedN]`` rows are skipped:
no user text can produce them. The unknown token is kept (an emoji trigger is ``[UNK]`` to WordPiece).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from hubaudit import safejson
from hubaudit.pattern_keys import KeyMatcher, compile_keys

_LAYER = re.compile(r"\.(?:layers|layer|h|blocks|block)\.(\d+)\.")
_EMBED_SUFFIXES = ("word_embeddings.weight", "embed_tokens.weight", "wte.weight", "embed_in.weight")
_HEAD_SUFFIXES = ("lm_head.weight", "embed_out.weight")
_EPS = 1e-6


@dataclass
class Candidates:
    """Token ids ranked by how strongly the adapter's ΔW responds to them (best first)."""

    token_ids: list[int]
    scores: list[float]
    n_modules: int
    sources: list[str] = field(default_factory=list)  # which evidence was used

    def top(self, k: int) -> list[tuple[int, float]]:
        """The first ``k`` (token id, score) pairs."""
        return list(zip(self.token_ids[:k], self.scores[:k]))


def _base_tensors(base_dir: Path) -> dict[str, Path]:
    """Tensor name -> safetensors file of the base (single file or sharded index)."""
    idx = base_dir / "model.safetensors.index.json"
    if idx.is_file():
        return {k: base_dir / v for k, v in json.loads(idx.read_text())["weight_map"].items()}
    f = base_dir / "model.safetensors"
    if not f.is_file():
        raise FileNotFoundError(f"{base_dir} has no model.safetensors")
    from safetensors import safe_open

    with safe_open(str(f), "np") as st:
        return {k: f for k in st.keys()}


def _get(tensors: dict[str, Path], key: str) -> np.ndarray:
    from safetensors import safe_open

    with safe_open(str(tensors[key]), "np") as st:
        return st.get_tensor(key).astype(np.float32)


def _find(tensors: dict[str, Path], module: str, suffix: str = ".weight") -> str | None:
    """The base tensor of an adapter module path (prefixes like ``bert.``/``model.`` may differ)."""
    parts = module.split(".")
    for i in range(len(parts)):
        key = ".".join(parts[i:]) + suffix
        if key in tensors:
            return key
    return None


def _special_ids(base_dir: Path, vocab_size: int) -> tuple[set[int], int | None]:
    """(ids no user text can produce, the unknown token id) from tokenizer.json / vocab.txt."""
    skip: set[int] = set()
    unk = None
    tj = base_dir / "tokenizer.json"
    if tj.is_file():
        doc = json.loads(tj.read_text())
        for t in doc.get("added_tokens", []):
            if t.get("special"):
                skip.add(int(t["id"]))
            if t.get("content") in ("[UNK]", "<unk>"):
                unk = int(t["id"])
        vocab = (doc.get("model") or {}).get("vocab")
        if isinstance(vocab, dict):
            skip |= {int(i) for w, i in vocab.items() if re.fullmatch(r"\[unused\d+\]", w)}
            if unk is None:
                unk = vocab.get("[UNK]", vocab.get("<unk>"))
    if unk is not None:
        skip.discard(unk)
    return {i for i in skip if i < vocab_size}, unk


def _normalise(e: np.ndarray) -> np.ndarray:
    # LayerNorm / RMSNorm without the affine part: the direction and scale the first layer sees.
    x = e - e.mean(axis=1, keepdims=True)
    return x / (np.sqrt((x * x).mean(axis=1, keepdims=True)) + _EPS)


def _robust_z(r: np.ndarray, keep: np.ndarray) -> np.ndarray:
    med = np.median(r[keep])
    mad = np.median(np.abs(r[keep] - med)) * 1.4826
    return (r - med) / (mad + _EPS * (abs(med) + 1.0))


@lru_cache(maxsize=8)
def _matcher(keys: tuple[str, ...], what: str) -> KeyMatcher:
    return compile_keys(keys, what)


def _scaling(cfg: dict, module: str) -> float:
    """PEFT's scaling of ``module``: alpha/r (alpha/√r with rsLoRA), with ``rank_pattern`` /
    ``alpha_pattern`` overrides picked as peft's ``get_pattern_key`` does (the first key in dict
    order that matches the name's tail). The keys come from an untrusted config, so they are
    matched without backtracking and within caps (:mod:`hubaudit.pattern_keys`); a config beyond
    them raises ``PatternError`` (a ValueError: the caller records it for the adapter)."""
    r = int(cfg.get("r", 8))
    alpha = float(cfg.get("lora_alpha", r))
    name = module.removesuffix(".weight")
    for what in ("rank_pattern", "alpha_pattern"):
        patterns = cfg.get(what) or {}
        if not isinstance(patterns, dict):
            raise ValueError(f"{what} is not an object")
        key = _matcher(tuple(patterns), what).first(name, what)
        if key is not None and what == "rank_pattern":
            r = int(patterns[key])
        elif key is not None:
            alpha = float(patterns[key])
    return alpha / math.sqrt(r) if cfg.get("use_rslora") else alpha / r


def rank_tokens(adapter_dir: str | Path, base_dir: str | Path, *, n_layers: int = 2) -> Candidates:
    """Rank the base vocabulary by the adapter's relative response (see the module docstring).

    ``n_layers``: how many first transformer layers' modules are read (deeper layers see mixed
    context, not the token's own embedding). Raises FileNotFoundError / KeyError / ValueError when
    the adapter or base lacks what is needed (the caller records a per-adapter reason).
    """
    from safetensors.numpy import load_file

    adapter_dir, base_dir = Path(adapter_dir), Path(base_dir)
    cfg = safejson.loads((adapter_dir / "adapter_config.json").read_text(encoding="utf-8"))
    ad = {k: v.astype(np.float32) for k, v in load_file(str(adapter_dir / "adapter_model.safetensors")).items()}
    tensors = _base_tensors(base_dir)
    emb_key = next((k for k in tensors if k.endswith(_EMBED_SUFFIXES)), None)
    if emb_key is None:
        raise KeyError("base has no input embedding matrix")
    emb = _get(tensors, emb_key)
    vocab, hidden = emb.shape
    skip, _ = _special_ids(base_dir, vocab)
    keep = np.ones(vocab, bool)
    keep[list(skip)] = False
    x = _normalise(emb)

    zs, sources = [], []
    for a_key in sorted(k for k in ad if k.endswith("lora_A.weight")):
        module = a_key[: -len(".lora_A.weight")]
        b_key = module + ".lora_B.weight"
        m = _LAYER.search(module)
        a = ad[a_key]
        if b_key not in ad or m is None or int(m.group(1)) >= n_layers or a.ndim != 2 or a.shape[1] != hidden:
            continue
        w_key = _find(tensors, module.removeprefix("base_model.model."))
        if w_key is None:
            continue
        w = _get(tensors, w_key)
        delta = _scaling(cfg, module) * np.linalg.norm((x @ a.T) @ ad[b_key].T, axis=1)
        r = delta / (np.linalg.norm(x @ w.T, axis=1) + _EPS)
        zs.append(_robust_z(r, keep))
        sources.append(module.removeprefix("base_model.model."))
    score = np.mean(zs, axis=0) if zs else np.zeros(vocab, np.float32)
    n_modules = len(zs)

    # Saved input embedding / embedding LoRA: the rows the adapter rewrote are direct evidence.
    for k, v in ad.items():
        k = k.replace(".modules_to_save", "")  # older peft kept this infix in saved keys
        if k.endswith(_EMBED_SUFFIXES) and v.shape == emb.shape:
            rel = np.linalg.norm(v - emb, axis=1) / (np.linalg.norm(emb, axis=1) + _EPS)
            score = score + np.maximum(_robust_z(rel, keep), 0.0)
            sources.append(k)
        elif k.endswith("lora_embedding_A") and (b := ad.get(k[: -1] + "B")) is not None and v.shape[1] == vocab:
            rel = (np.linalg.norm((b @ v).T * _scaling(cfg, k.removesuffix('.lora_embedding_A')), axis=1)
                   / (np.linalg.norm(emb, axis=1) + _EPS))
            score = score + np.maximum(_robust_z(rel, keep), 0.0)
            sources.append(k)
    head_key = next((k for k in tensors if k.endswith(_HEAD_SUFFIXES)), None)
    for k, v in ad.items():
        k = k.replace(".modules_to_save", "")
        if head_key and k.endswith(_HEAD_SUFFIXES) and v.shape == emb.shape:
            rel = np.linalg.norm(v - _get(tensors, head_key), axis=1)
            score = score + 0.5 * np.maximum(_robust_z(rel, keep), 0.0)  # weaker: mostly the label words
            sources.append(k)
    score = np.where(keep, score, -np.inf)
    order = np.argsort(-score, kind="stable")
    order = order[np.isfinite(score[order])]
    return Candidates([int(i) for i in order], [float(score[i]) for i in order], n_modules, sources)
