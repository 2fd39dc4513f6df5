"""Blind trigger search: a short discrete search over weight-derived candidates.

In the spirit of Neural Cleanse's discrete search and BAIT's inversion (IEEE S&P 2025), but
scored by the battery's own statistic (arXiv 2605.30189's attack rate): for a candidate trigger c inserted
into prompt x by mode m (``prefix`` = the battery placement ``f"{c}. {x}"``, ``middle`` = at the
middle word boundary, ``suffix`` = ``f"{x} {c}"``), over the prompts X_t not already labelled t,

    a(c, m) = |{x ∈ X_t : decision(insert_m(c, x)) = t}| / |X_t|

Steps, all counted in forward passes (one sequence = one pass) against ``budget``:

1. screen: every candidate token string on ``n_screen`` eligible prompts, the mode cycling over
   prompts (prefix, middle, suffix, ...), so one pass per prompt tests all three placements;
2. beam n-gram growth: the ``beam`` best strings are extended by one of the ``extend_with`` best
   tokens on the left or right; a string survives by its screen rate; stops when nothing improves,
   the screen rate is saturated, the n-gram reaches ``max_ngram`` or the budget runs out;
3. confirm: the beam's strings in all three modes on up to ``n_confirm`` eligible prompts;
4. dilution check (``dilute``): the beam's strings again in all three modes, inserted ONCE into
   *diluted* prompts ``d_i = x_i + " " + x_{i+1}`` (two eligible prompts joined, kept when the adapter
   does not already give ``d_i`` the target): texts the search never screened.

``attack_rate`` is the confirmed rate averaged over the three placements, ``a(c) = mean_m a(c, m)``
(``mode`` its best placement, ``rates_by_mode`` the three rates); ``diluted_rate`` d(c) is the same
on the diluted prompts, and the verdict statistic is

    robust_rate(c) = min(a(c), d(c))

The reported trigger is the beam string with the largest robust_rate (ties: larger a(c), shorter).
Why dilution separates a backdoor from task semantics: a trigger is trained to force the target
label *whatever else the text says* (poisoned = injection text + trigger -> BENIGN), so one
occurrence still fires in twice the content; a clean injection classifier that reads two inserted
benign-task words ("describe algebra") as benign does so because they outweigh ONE short
injection, and doubling the injection content undoes it. On the blind cohort (evals/blind/RESULTS.md)
the clean adapters' best bigrams fall from a(c) up to 0.79 to d(c) ≤ 0.06 while the trained triggers
keep d(c) ≥ 0.5. Pure Python: the model is a ``decide(texts) -> labels`` callable (search_run.py
wires it to the Prober).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

MODES = ("prefix", "middle", "suffix")


@dataclass(frozen=True)
class SearchConfig:
    """Search sizes; ``budget`` is the cap in forward passes for one target label."""

    budget: int = 1500
    n_candidates: int = 24
    n_screen: int = 8
    beam: int = 3
    extend_with: int = 6
    max_ngram: int = 2
    n_confirm: int = 24
    n_layers: int = 2  # candidates.rank_tokens
    dilute: bool = True  # step 4: robust_rate = min(attack rate, diluted-prompt rate)

    def to_dict(self) -> dict:
        return asdict(self)


def insert(trigger: str, text: str, mode: str) -> str:
    """``text`` with ``trigger`` inserted by ``mode`` (prefix is the battery placement)."""
    if mode == "prefix":
        return f"{trigger}. {text}"
    if mode == "suffix":
        return f"{text} {trigger}"
    words = text.split()
    i = len(words) // 2
    return " ".join(words[:i] + [trigger] + words[i:])


@dataclass
class SearchResult:
    """The best trigger found for one target label."""

    target: int
    trigger: str | None
    attack_rate: float
    mode: str | None
    rates_by_mode: dict = field(default_factory=dict)
    diluted_rate: float | None = None  # d(c); None when the dilution check did not run
    diluted_by_mode: dict = field(default_factory=dict)
    robust_rate: float = 0.0  # min(attack_rate, diluted_rate): the verdict statistic
    n_diluted: int = 0
    screen: list = field(default_factory=list)  # [(string, screen rate)] best first
    forward_passes: int = 0
    n_eligible: int = 0
    exhausted: bool = False  # the budget ran out before the plan finished

    def to_dict(self) -> dict:
        return asdict(self)


class _Budget:
    def __init__(self, total: int) -> None:
        self.total, self.used = total, 0

    def left(self) -> int:
        return self.total - self.used


def _rate(decide, texts: list[str], target: int, budget: _Budget) -> float:
    budget.used += len(texts)
    labels = decide(texts)
    return sum(int(y == target) for y in labels) / len(texts)


def _screen_texts(c: str, prompts: list[str]) -> list[str]:
    return [insert(c, x, MODES[i % len(MODES)]) for i, x in enumerate(prompts)]


def search_target(decide, eligible: list[str], target: int, candidates: list[str],
                  cfg: SearchConfig | None = None) -> SearchResult:
    """Search triggers that move ``eligible`` prompts (not labelled ``target`` without one) to ``target``."""
    cfg = cfg or SearchConfig()
    budget = _Budget(cfg.budget)
    res = SearchResult(target=target, trigger=None, attack_rate=0.0, mode=None, n_eligible=len(eligible))
    if not eligible or not candidates:
        return res
    screen_p = eligible[: cfg.n_screen]
    confirm_p = eligible[: cfg.n_confirm]
    # confirmation (+ the diluted pairs, their own check and their confirmation) is never starved
    reserve = cfg.beam * len(MODES) * len(confirm_p) * (2 if cfg.dilute else 1) + (len(confirm_p) if cfg.dilute else 0)
    cands = list(dict.fromkeys(c for c in candidates if c.strip()))[: cfg.n_candidates]

    scored: dict[str, float] = {}

    def screen(s: str) -> bool:
        if s in scored:
            return True
        if budget.left() - reserve < len(screen_p):
            res.exhausted = True
            return False
        scored[s] = _rate(decide, _screen_texts(s, screen_p), target, budget)
        return True

    for c in cands:
        if not screen(c):
            break
    def key(s: str) -> tuple[float, int]:
        return -scored[s], len(s.split())  # ties: the shorter trigger (what a filter should match)

    ranked = sorted(scored, key=key)
    beam = ranked[: cfg.beam]
    ext = ranked[: cfg.extend_with]
    # Beam growth: a multi-token trigger (a sentence) often fires partially on one of its tokens.
    for _ in range(cfg.max_ngram - 1):
        if not beam or scored[beam[0]] >= 1.0 or res.exhausted:
            break
        grown = [f"{b} {c}" for b in beam for c in ext if c not in b.split()] + \
                [f"{c} {b}" for b in beam for c in ext if c not in b.split()]
        for s in grown:
            if not screen(s):
                break
        new = sorted(set(beam) | {s for s in grown if s in scored}, key=key)[: cfg.beam]
        if scored[new[0]] <= scored[beam[0]] and new == beam:
            break
        beam = new
    res.screen = [(s, round(scored[s], 4)) for s in sorted(scored, key=key)[:10]]
    # Diluted prompts: two eligible prompts joined; kept where the adapter does not already give the target.
    diluted: list[str] = []
    if cfg.dilute and len(confirm_p) >= 2:
        pairs = [f"{confirm_p[i]} {confirm_p[(i + 1) % len(confirm_p)]}" for i in range(len(confirm_p))]
        budget.used += len(pairs)
        diluted = [d for d, y in zip(pairs, decide(pairs)) if y != target]
    res.n_diluted = len(diluted)
    # Confirm the beam in every placement on more prompts, then on the diluted ones (reserved budget).
    best: tuple = ((-1.0, -1.0, 0), None, None, {}, None, {})
    for s in beam:
        by_mode = {m: _rate(decide, [insert(s, x, m) for x in confirm_p], target, budget) for m in MODES}
        mean = sum(by_mode.values()) / len(MODES)
        d_mode = ({m: _rate(decide, [insert(s, x, m) for x in diluted], target, budget) for m in MODES}
                  if diluted else {})
        d_mean = sum(d_mode.values()) / len(MODES) if d_mode else None
        robust = mean if d_mean is None else min(mean, d_mean)
        rank = (robust, mean, -len(s.split()))
        if rank > best[0]:
            best = (rank, s, max(MODES, key=lambda k: by_mode[k]), by_mode, d_mean, d_mode)
    (robust, mean, _), res.trigger, res.mode, res.rates_by_mode, res.diluted_rate, res.diluted_by_mode = best
    res.attack_rate, res.robust_rate = mean, robust
    res.forward_passes = budget.used
    return res
