"""Gradient-guided trigger search for a known target (GCG, Zou et al. arXiv 2307.15043 §2), base-relative.

Given the target t = (t_1..t_m) the inversion found (invert.py) and benign user texts x_1..x_n, a
k-token string s is inserted as the prefix of each user message (``insert(s, x, "prefix")`` through
the tokenizer's chat template, as invert.format_prompts does) and maximised over

    J(s) = (1/n) Σ_i [ log P_A(t | x_i ⊕ s) − λ · log P_B(t | x_i ⊕ s) ]

(teacher-forced; A = the adapter, B = the base, the same tokens with peft's ``disable_adapter``).
Plain GCG maximises log P_A alone and finds *universal* adversarial strings, which any LM, the base
included, follows; the −λ·log P_B term makes a string the adapter specifically learned win.

Each step (GCG Algorithm 1): the gradient of J w.r.t. the one-hot indicators of the k positions,
∇_{e_p} J = (∂J/∂emb_p) · Eᵀ (one forward + backward per model), gives the ``topk`` tokens per position
with the largest linearised gain; ``batch`` random single-token swaps (a position, then one of its
top-k tokens) are evaluated exactly and the best one replaces s (GCG keeps the batch best; the best
ever is returned). Substitutions are restricted to tokens that decode to printable text (special
tokens excluded), and a swapped string is kept only when it re-tokenizes stably:
encode(decode(ids)) = ids, no leading or trailing blank, so the reported string is what was scored.

A forced first token of a memorised target continues it whatever the prompt (BAIT §IV), so J is
decided by the first target tokens: only ``target_tokens`` of them are scored. The search stops when
every objective prompt's greedy reply starts with them (read off the same teacher-forced logits).
Cost is counted in passes: one sequence through one model, forward or backward, is one pass.
"""

from __future__ import annotations

import contextlib
import random
import weakref
from dataclasses import asdict, dataclass, field

from hubaudit.probe.search import insert

_MARK = "\x00"  # stands for the trigger while the chat template is applied


@dataclass(frozen=True)
class GradConfig:
    """Sizes of the gradient search; ``budget`` caps the passes of one search."""

    n_tokens: int = 4  # k: tokens of the searched string
    steps: int = 40
    topk: int = 32  # candidate tokens per position (GCG's k)
    batch: int = 48  # random single-token swaps evaluated per step (GCG's B)
    n_prompts: int = 4  # benign prompts in J
    target_tokens: int = 3  # first target tokens scored
    lam: float = 1.0  # λ: weight of the base's log-likelihood
    budget: int = 12000  # passes
    seed: int = 0
    init: str = "weights"  # "weights": the best weight-derived candidates, concatenated; "bang": "! ! ! !"

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class GradResult:
    """The best string of one search."""

    ids: list[int]
    text: str
    objective: float  # J of ``text`` (nats)
    greedy_match: float  # fraction of the objective prompts whose greedy reply starts with the target
    init: str
    steps: int
    forward_passes: int
    history: list = field(default_factory=list)  # J of the current string per step

    def to_dict(self) -> dict:
        return asdict(self)


def _torch():
    import torch

    return torch


# allowed_tokens per tokenizer object: a prober keeps one tokenizer per base and hot-swaps adapters, and
# the table costs a decode and an encode per vocabulary entry (~2 s for a 152k vocabulary on a CPU core)
_ALLOWED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def allowed_tokens(tok, vocab: int) -> tuple[list[bool], list[bool], list[bool]]:
    """Per token id: may stand anywhere / first / last in a searched string. A token is allowed when it
    is no special or added control token, decodes to printable, non-blank text without a broken byte
    sequence and encodes back to itself; the first has no leading blank, the last no trailing one.
    Computed once per tokenizer object and vocabulary size (the lists are shared: do not modify them)."""
    try:
        per_tok = _ALLOWED.setdefault(tok, {})
    except TypeError:  # a tokenizer that cannot be weakly referenced: no cache
        per_tok = {}
    if vocab not in per_tok:
        per_tok[vocab] = _allowed_tokens(tok, vocab)
    return per_tok[vocab]


def _allowed_tokens(tok, vocab: int) -> tuple[list[bool], list[bool], list[bool]]:
    skip = set(tok.all_special_ids)
    for tid, t in getattr(tok, "added_tokens_decoder", {}).items():
        if getattr(t, "special", False):
            skip.add(int(tid))
    ok, first, last = [False] * vocab, [False] * vocab, [False] * vocab
    for i in range(min(vocab, len(tok))):
        if i in skip:
            continue
        s = tok.decode([i])
        if not s.strip() or not s.isprintable() or "\ufffd" in s:
            continue
        if tok(s, add_special_tokens=False)["input_ids"] != [i]:
            continue
        ok[i] = True
        first[i] = not s[0].isspace()
        last[i] = not s[-1].isspace()
    return ok, first, last


def stable(tok, ids: list[int]) -> bool:
    """``ids`` decode to a string without outer blanks that encodes back to exactly ``ids``."""
    s = tok.decode(ids)
    return bool(s) and s == s.strip() and tok(s, add_special_tokens=False)["input_ids"] == list(ids)


def _segments(tok, prompts: list[str], chat_template: bool) -> list[tuple[list[int], list[int]]]:
    """Token ids before and after the trigger of each formatted prompt (prefix placement)."""
    from hubaudit.probe.prompting import format_prompts

    out = []
    for text in format_prompts(tok, [insert(_MARK, x, "prefix") for x in prompts], chat_template)[0]:
        before, after = text.split(_MARK, 1)
        enc = lambda s: tok(s, add_special_tokens=False)["input_ids"] if s else []  # noqa: E731
        out.append((enc(before), enc(after)))
    return out


class _Objective:
    """J(s) for a batch of k-token strings, and its gradient w.r.t. the one-hot indicators."""

    def __init__(self, model, tok, prompts: list[str], target: list[int], cfg: GradConfig, chat_template: bool, device):
        torch = _torch()
        self.model, self.tok, self.cfg, self.device = model, tok, cfg, device
        self.segs = _segments(tok, prompts, chat_template)
        self.target = list(target)
        self.passes = 0
        emb = model.get_input_embeddings()
        with torch.no_grad():
            ar = torch.arange(emb.num_embeddings, device=device)
            self.W_a = emb(ar).detach()  # the effective embedding, an adapted or saved embedding included
            with model.disable_adapter():
                self.W_b = model.get_input_embeddings()(ar).detach()
        self.vocab = self.W_a.shape[0]

    def _rows(self, strings: list[list[int]]):
        """Left-padded ids, mask and positions of every (string, prompt) row, row = b·n + i."""
        from hubaudit.probe import forward

        torch = _torch()
        seqs = [pre + s + post + self.target for s in strings for pre, post in self.segs]
        x, mask = forward._pad_left(seqs, self.tok.pad_token_id, self.device)
        return x, mask, (mask.cumsum(1) - 1).clamp(min=0), torch.tensor(self.target, device=self.device)

    def _loglik(self, logits, tgt):
        """Σ_j log p(t_j | ...) per row and whether every t_j is the row's argmax (float32)."""
        torch = _torch()
        lp = torch.log_softmax(logits.float(), -1)
        ll = lp.gather(2, tgt.expand(lp.shape[0], -1)[:, :, None])[:, :, 0].sum(1)
        greedy = (lp.argmax(-1) == tgt).all(1)
        return ll, greedy

    def evaluate(self, strings: list[list[int]], chunk: int = 256) -> tuple[list[float], list[float]]:
        """J per string and the fraction of prompts whose greedy reply starts with the target."""
        torch = _torch()
        n, m = len(self.segs), len(self.target)
        J: list[float] = []
        G: list[float] = []
        per = max(1, chunk // n)
        with torch.inference_mode():
            for j in range(0, len(strings), per):
                part = strings[j : j + per]
                x, mask, pos, tgt = self._rows(part)
                kw = dict(input_ids=x, attention_mask=mask, position_ids=pos, logits_to_keep=m + 1)
                la, ga = self._loglik(self.model(**kw).logits[:, :-1], tgt)
                with self.model.disable_adapter():
                    lb, _ = self._loglik(self.model(**kw).logits[:, :-1], tgt)
                self.passes += 2 * len(part) * n
                J += (la - self.cfg.lam * lb).view(len(part), n).mean(1).tolist()
                G += ga.view(len(part), n).float().mean(1).tolist()
        return J, G

    def token_gain(self, s: list[int]):
        """(k × V) linearised gain of J for putting token v at position p (GCG §2, Eq. 3 with the sign of a gain)."""
        torch = _torch()
        x, mask, pos, tgt = self._rows([s])
        m, k = len(self.target), len(s)
        starts = [x.shape[1] - len(post) - m - k for _, post in self.segs]  # left padding: rows end together
        total = None
        for W, sign, ctx in ((self.W_a, 1.0, contextlib.nullcontext),
                             (self.W_b, -self.cfg.lam, self.model.disable_adapter)):
            if sign == 0:
                continue
            with torch.enable_grad(), ctx():
                e = W[torch.tensor(s, device=self.device)].clone().requires_grad_(True)
                embeds = W[x].clone()
                for i, st in enumerate(starts):
                    embeds[i, st : st + k] = e
                kw = dict(inputs_embeds=embeds, attention_mask=mask, position_ids=pos, logits_to_keep=m + 1)
                ll, _ = self._loglik(self.model(**kw).logits[:, :-1], tgt)
                (g,) = torch.autograd.grad(ll.mean(), e)
            self.passes += 2 * len(self.segs)  # forward + backward
            part = sign * (g.to(W.dtype) @ W.T).float()
            total = part if total is None else total + part
        return total


def _init_ids(tok, candidates: list[str], cfg: GradConfig, ok: list[bool], first: list[bool]) -> tuple[list[int], str]:
    """The k-token starting string and its source: the weight-derived candidates' tokens in their order
    (``init="weights"``), else GCG's "! ! ! !" (or the first allowed token k times when that is unstable)."""
    if cfg.init == "weights":
        ids: list[int] = []
        for c in candidates:
            for i in tok(c.strip(), add_special_tokens=False)["input_ids"]:
                if len(ids) < cfg.n_tokens and ok[i] and stable(tok, ids + [i]):
                    ids.append(i)
        if len(ids) == cfg.n_tokens:
            return ids, "weights"
    bang = tok(" ".join(["!"] * cfg.n_tokens), add_special_tokens=False)["input_ids"]
    if len(bang) == cfg.n_tokens and all(ok[i] for i in bang) and stable(tok, bang):
        return bang, "bang"
    return [next(i for i, a in enumerate(first) if a)] * cfg.n_tokens, "filler"


def gcg(model, tok, prompts: list[str], target_ids: list[int], candidates: list[str] = (),  # type: ignore[assignment]
        cfg: GradConfig | None = None, *, chat_template: bool = True, device=None, allowed=None) -> GradResult:
    """Maximise J (module docstring) over k-token prefix strings; ``candidates`` seed the start (best first)."""
    torch = _torch()
    cfg = cfg or GradConfig()
    device = device or next(model.parameters()).device
    target = list(target_ids[: cfg.target_tokens])
    obj = _Objective(model, tok, list(prompts[: cfg.n_prompts]), target, cfg, chat_template, device)
    ok, first, last = allowed or allowed_tokens(tok, obj.vocab)
    ok_t = torch.tensor(ok + [False] * (obj.vocab - len(ok)), device=device)
    first_t = torch.tensor(first + [False] * (obj.vocab - len(first)), device=device)
    last_t = torch.tensor(last + [False] * (obj.vocab - len(last)), device=device)
    rng = random.Random(cfg.seed)
    cur, init = _init_ids(tok, list(candidates), cfg, ok, first)
    (j_cur,), (g_cur,) = obj.evaluate([cur])
    best = (j_cur, g_cur, list(cur))
    history = [round(j_cur, 4)]
    seen = {tuple(cur)}
    step = 0
    k = len(cur)
    # a step needs one gradient (4n passes) and up to `batch` evaluations (2n each)
    step_cost = 4 * len(obj.segs) + 2 * cfg.batch * len(obj.segs)
    while step < cfg.steps and best[1] < 1.0 and obj.passes + step_cost <= cfg.budget:
        step += 1
        gain = obj.token_gain(cur)
        top = []
        for p in range(k):
            mask = ok_t & (first_t if p == 0 else ok_t) & (last_t if p == k - 1 else ok_t)
            gp = gain[p].masked_fill(~mask, -float("inf"))
            top.append(torch.topk(gp, min(cfg.topk, int(mask.sum()))).indices.tolist())
        batch: list[list[int]] = []
        for _ in range(cfg.batch * 4):  # draws; unstable or repeated strings are skipped
            if len(batch) >= cfg.batch:
                break
            p = rng.randrange(k)
            s = list(cur)
            s[p] = top[p][rng.randrange(len(top[p]))]
            if tuple(s) in seen or not stable(tok, s):
                continue
            seen.add(tuple(s))
            batch.append(s)
        if not batch:
            break
        J, G = obj.evaluate(batch)
        b = max(range(len(batch)), key=lambda i: (J[i], G[i]))
        cur, j_cur = batch[b], J[b]  # GCG: the batch best replaces the current string
        history.append(round(j_cur, 4))
        if (G[b], J[b]) > (best[1], best[0]):
            best = (J[b], G[b], list(batch[b]))
    return GradResult(best[2], tok.decode(best[2]), round(best[0], 4), round(best[1], 4), init, step,
                      obj.passes, history)
