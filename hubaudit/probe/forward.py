"""Batched forward passes of the prober: tokenized once, length-sorted, shared prefixes KV-cached.

Where the time of a probe goes (benchmarks/bench_probe.py prints the split): with a small base on a
CPU it is nearly all forward passes over |battery| x |prompts| texts, so these are what is made
cheap here, without changing what is computed:

- **Tokenize once** (:class:`Plan`): the texts of a battery x prompt set are tokenized, truncated
  and bucketed once per base (the tokenizer is the base's); every adapter reuses the plan.
- **Sort by length**: batches are cut from the length-sorted texts, so a batch pads to its own
  longest text, not to the longest of the set (results are put back in input order).
- **Shared-prefix KV cache** (causal LMs used as label classifiers, arXiv 2605.30189): every text of one
  probe p is ``system prompt + user: p. x + label cue``; its longest common token prefix (the
  system prompt and the probe) is run once per adapter, batch 1, and its keys/values are reused
  by the batches of suffixes (``x`` + cue). Causal attention makes the prefix's keys/values
  independent of what follows, so the decision is the same; only the float summation order of
  the suffix attention changes (tests compare with the uncached path).

Everything here is called with a model (a PeftModel or a plain base) and its tokenizer; torch is
imported lazily by the caller's process (this module is only imported by prober.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

MIN_PREFIX = 4  # shorter shared prefixes are not worth a separate forward pass


@dataclass
class Batch:
    """One padded batch: ``rows`` are indices into the plan's texts."""

    rows: list[int]
    tensors: dict
    prefix: object = None  # causal prefix cache: token ids (1, L) of the shared prefix, or None


@dataclass
class Plan:
    """Tokenized, length-sorted batches of a list of texts (reused by every adapter of a base)."""

    n: int
    batches: list[Batch]
    prefix_tokens: int = 0  # tokens served from a prefix cache instead of recomputed, per adapter
    tokens: int = 0  # tokens in the batches (padding included), per adapter


def _pad_left(seqs: list[list[int]], pad_id: int, device) -> tuple:
    m = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), m), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), m), dtype=torch.long)
    for i, s in enumerate(seqs):
        if s:
            ids[i, m - len(s):] = torch.tensor(s, dtype=torch.long)
            mask[i, m - len(s):] = 1
    return ids.to(device), mask.to(device)


def _pad_right(encs: list[dict], pad_id: int, device) -> dict:
    m = max(len(e["input_ids"]) for e in encs)
    out = {}
    for key in encs[0]:
        fill = pad_id if key == "input_ids" else 0
        t = torch.full((len(encs), m), fill, dtype=torch.long)
        for i, e in enumerate(encs):
            t[i, : len(e[key])] = torch.tensor(e[key], dtype=torch.long)
        out[key] = t.to(device)
    return out


def _lcp(seqs: list[list[int]]) -> int:
    first = seqs[0]
    n = min(len(s) for s in seqs)
    for s in seqs[1:]:
        k = 0
        while k < n and s[k] == first[k]:
            k += 1
        n = k
    return n


def encoder_plan(tok, texts: list[str], *, batch_size: int, max_length: int, device) -> Plan:
    """Plan for an encoder classifier (special tokens added, right padding, each row independent)."""
    enc = tok(texts, truncation=True, max_length=max_length, add_special_tokens=True)
    rows = [{k: enc[k][i] for k in enc.keys()} for i in range(len(texts))]
    order = sorted(range(len(texts)), key=lambda i: len(rows[i]["input_ids"]))
    batches, tokens = [], 0
    for j in range(0, len(order), batch_size):
        idx = order[j : j + batch_size]
        t = _pad_right([rows[i] for i in idx], tok.pad_token_id, device)
        tokens += t["input_ids"].numel()
        batches.append(Batch(idx, t))
    return Plan(len(texts), batches, tokens=tokens)


def causal_plan(tok, prompts: list[str], *, batch_size: int, max_length: int, device,
                groups: list[list[int]] | None = None, prefix_cache: bool = True) -> Plan:
    """Plan for next-token decisions of a causal LM over ``prompts`` (already formatted).

    ``groups``: indices of prompts expected to share a prefix (the texts of one probe); default one
    group of all. Within a group the longest common token prefix (capped so that every prompt keeps
    at least one token of its own) is cached; the rest is left-padded, so every row ends at the
    last column (the next-token position).
    """
    ids = tok(prompts, truncation=True, max_length=max_length, add_special_tokens=False)["input_ids"]
    groups = groups or [list(range(len(prompts)))]
    batches, tokens, saved = [], 0, 0
    for g in groups:
        if not g:
            continue
        seqs = [ids[i] for i in g]
        # a group of one text gains nothing from a cache (its prefix would be one extra forward pass)
        cut = min(_lcp(seqs), min(len(s) for s in seqs) - 1) if prefix_cache and len(g) > 1 else 0
        if cut < MIN_PREFIX:
            cut = 0
        prefix = torch.tensor([seqs[0][:cut]], dtype=torch.long, device=device) if cut else None
        saved += cut * (len(g) - 1)  # the prefix is still computed once per group and adapter
        order = sorted(range(len(g)), key=lambda k: len(seqs[k]))
        for j in range(0, len(order), batch_size):
            part = order[j : j + batch_size]
            sfx, mask = _pad_left([seqs[k][cut:] for k in part], tok.pad_token_id, device)
            tokens += sfx.numel()
            tensors = {"input_ids": sfx, "attention_mask": mask}
            if cut:
                pos = torch.cumsum(mask, dim=1) - 1 + cut  # real suffix tokens at cut, cut+1, ...
                tensors["position_ids"] = pos.clamp(min=cut)
                tensors["attention_mask"] = torch.cat([torch.ones((len(part), cut), dtype=torch.long, device=device),
                                                       mask], dim=1)
            batches.append(Batch([g[k] for k in part], tensors, prefix))
    return Plan(len(prompts), batches, prefix_tokens=saved, tokens=tokens)


def _cache_kwarg(model) -> str:
    """The forward argument that takes a KV cache: ``cache`` (transformers >= 5.2x) or ``past_key_values``."""
    import inspect

    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "cache" if "cache" in inspect.signature(type(inner).forward).parameters else "past_key_values"


def _prefix_kv(model, prefix, cache: dict):
    """Keys/values of the shared prefix under the active adapter (one batch-1 forward, memoised per call)."""
    key = id(prefix)
    if key not in cache:
        from transformers.cache_utils import DynamicCache, DynamicLayer

        out = model(input_ids=prefix, attention_mask=torch.ones_like(prefix), use_cache=True, logits_to_keep=1)
        pkv = getattr(out, "cache", None) or getattr(out, "past_key_values", None)
        layers = getattr(pkv, "layers", None)
        if not isinstance(pkv, DynamicCache) or not layers or any(type(la) is not DynamicLayer for la in layers):
            cache[key] = None  # sliding-window / hybrid caches: no reuse, recompute the whole text
        else:
            cache[key] = [(la.keys, la.values) for la in layers]
    return cache[key]


def next_token_logits(model, plan: Plan, columns) -> torch.Tensor:
    """Logits of the next token restricted to ``columns``, one row per planned prompt (input order)."""
    from transformers.cache_utils import DynamicCache

    out = torch.empty((plan.n, len(columns)), dtype=torch.float32)
    kv: dict = {}
    arg = _cache_kwarg(model) if any(b.prefix is not None for b in plan.batches) else ""
    for b in plan.batches:
        t = b.tensors
        kvs = _prefix_kv(model, b.prefix, kv) if b.prefix is not None else None
        if b.prefix is not None and kvs is None:
            t = _uncached(b)  # the model's cache cannot be reused: full texts
        if kvs is not None:
            n = t["input_ids"].shape[0]
            past = DynamicCache([(k.expand(n, -1, -1, -1), v.expand(n, -1, -1, -1)) for k, v in kvs])
            logits = model(**t, **{arg: past}, use_cache=True, logits_to_keep=1).logits
        else:
            logits = model(**t, logits_to_keep=1).logits
        out[b.rows] = logits[:, -1, columns].float().cpu()
    return out


def _uncached(b: Batch) -> dict:
    n = b.tensors["input_ids"].shape[0]
    ids = torch.cat([b.prefix.expand(n, -1), b.tensors["input_ids"]], dim=1)
    mask = b.tensors["attention_mask"]  # already [ones(cut), suffix mask]
    # move the suffix padding in front of the prefix: left padding as the plain path has it
    order = torch.argsort(mask, dim=1, stable=True)
    return {"input_ids": torch.gather(ids, 1, order), "attention_mask": torch.gather(mask, 1, order)}


def encoder_logits(model, plan: Plan) -> torch.Tensor:
    """Classifier logits, one row per planned text (input order)."""
    rows = None
    for b in plan.batches:
        logits = model(**b.tensors).logits.float().cpu()
        if rows is None:
            rows = torch.empty((plan.n, logits.shape[1]), dtype=torch.float32)
        rows[b.rows] = logits
    return rows if rows is not None else torch.empty((0, 0))


def greedy(model, tok, texts: list[str], *, batch_size: int, max_length: int, max_new_tokens: int,
           device) -> list[tuple[int, ...]]:
    """Greedy continuation token ids per text (left padding; batches cut from the length-sorted texts)."""
    ids = tok(texts, truncation=True, max_length=max_length, add_special_tokens=False)["input_ids"]
    order = sorted(range(len(texts)), key=lambda i: len(ids[i]))
    out: list[tuple[int, ...]] = [()] * len(texts)
    for j in range(0, len(order), batch_size):
        part = order[j : j + batch_size]
        x, mask = _pad_left([ids[i] for i in part], tok.pad_token_id, device)
        gen = model.generate(input_ids=x, attention_mask=mask, max_new_tokens=max_new_tokens, do_sample=False,
                             pad_token_id=tok.pad_token_id)
        for i, row in zip(part, gen[:, x.shape[1]:].tolist()):
            out[i] = tuple(row)
    return out
