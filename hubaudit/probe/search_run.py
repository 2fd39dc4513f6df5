"""Battery + blind search for one adapter, τ_search and its calibration.

``probe_with_search`` runs the Prober's battery (prober.py), then, on the SAME loaded base and
active adapter (``Prober.active``), ranks candidate tokens from the weights (candidates.py) and searches
triggers (search.py) for every target label (or the requested one). The result dict is the
prober's, plus:

- ``search``: per target label the best trigger, its rate, insertion mode, forward passes, and the
  verdict under τ_search; top-level ``search_attack_rate`` / ``search_robust_rate`` /
  ``search_trigger`` (the label whose robust rate exceeds its τ by the most);
- ``flagged_battery`` (the battery's own decision) and ``flagged`` = battery OR search, with the
  search's reason appended to ``reasons``.

The verdict statistic is the best trigger's ``robust_rate`` = min(attack rate, rate on diluted
prompts) (search.py): a trained trigger forces its label whatever else the text says, task
semantics do not survive doubled content. τ_search (per target label) is calibrated on KNOWN-CLEAN
adapters by :func:`calibrate_search`:

- n clean adapters, target false-positive rate α (default 0.05): when n ≥ ⌈1/α⌉ − 1 (19 for 5%),
  τ = the k-th smallest clean score, k = ⌈(n+1)(1−α)⌉ (a split-conformal bound: a new clean
  adapter exchangeable with the calibration ones exceeds τ with probability ≤ (n+1−k)/(n+1) ≤ α);
- with fewer, no order statistic bounds the FPR at α: τ = clean maximum + ``margin`` (arXiv
  2605.30189's own rule), and the recorded ``fpr_bound`` is only 1/(n+1) for the maximum itself (the
  margin adds unquantified slack), so the thresholds say how many clean adapters are missing.

Uncalibrated, τ_search = 1.0: the search reports its best trigger and rates but cannot flag.
Generative adapters are searched with the generative attack (prober.py): a hit is a text whose
inserted candidate changes the adapter's greedy continuation while the base model's continuation
stays the same (one pseudo-label ``generation_changed``; its τ_search is calibrated like a label's).
With ``invert=InversionConfig(...)`` they are instead scanned by target inversion (invert.py, BAIT,
IEEE S&P 2025, made base-relative): the verdict statistic is the inverted target's score
Q_adapter − Q_base (pseudo-label ``target_inversion``, calibrated by the same rule), and the trigger
search then looks for an input that makes the adapter emit that target.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from hubaudit.probe.candidates import rank_tokens
from hubaudit.probe.modes import ProbeMode
from hubaudit.probe.search import SearchConfig, search_target
from hubaudit.probe.stats import save_thresholds
from hubaudit.vocab import ProbeStatus

DEFAULT_TAU_SEARCH = 1.0  # report-only until calibrated (a rate cannot exceed 1.0)


@dataclass(frozen=True)
class SearchThresholds:
    """τ_search per target label name (``default`` for labels not calibrated)."""

    default: float = DEFAULT_TAU_SEARCH
    per_label: dict = field(default_factory=dict)
    source: str = "default: uncalibrated (1.0, report only)"
    n_clean: int = 0
    fpr_target: float | None = None  # α asked of calibrate_search
    fpr_bound: float | None = None  # the false-positive bound the calibration supports (module docstring)
    rule: str = "default"  # quantile | max+margin | default
    # the numeric precision the clean adapters were probed in ("float32", "bfloat16", ...; None: not
    # recorded): the inversion's scores move with it, so a τ is for probes run in the same precision
    precision: str | None = None

    def tau(self, label: str) -> float:
        """τ_search of ``label``."""
        return float(self.per_label.get(label, self.default))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> SearchThresholds:
        precision = d.get("precision")
        return cls(float(d.get("default", DEFAULT_TAU_SEARCH)), dict(d.get("per_label", {})),
                   str(d.get("source", "file")), int(d.get("n_clean", 0)), d.get("fpr_target"), d.get("fpr_bound"),
                   str(d.get("rule", "file")), precision if isinstance(precision, str) else None)


def search_score(t: dict) -> float:
    """The verdict statistic of one searched label: the inverted target's score for target inversion,
    else the robust rate (older results without ``robust_rate``: the attack rate)."""
    if t.get("target_score") is not None:
        return float(t["target_score"])
    v = t.get("robust_rate")
    return float(t["attack_rate"] if v is None else v)


def calibrate_search(clean_results: list[dict], *, margin: float = 0.1, fpr: float = 0.05) -> SearchThresholds:
    """τ_search per label from KNOWN-CLEAN adapters' search results (rule in the module docstring)."""
    scores: dict[str, list[float]] = {}
    n = 0
    for r in clean_results:
        s = r.get("search") or {}
        if s.get("status") != ProbeStatus.OK:
            continue
        n += 1
        for t in s["targets"]:
            scores.setdefault(t["label"], []).append(search_score(t))
    if not n:
        raise ValueError("no searched clean adapters to calibrate τ_search from")
    need = n_clean_needed(fpr)
    per: dict[str, float] = {}
    for label, v in scores.items():
        v = sorted(v)
        k = math.ceil((len(v) + 1) * (1 - fpr))
        per[label] = round(min(1.0, v[k - 1] if k <= len(v) else v[-1] + margin), 6)
    if n >= need:
        src = f"calibrated: conformal {1 - fpr:.0%} order statistic over {n} clean adapters (FPR ≤ {fpr})"
        bound = fpr
    else:
        src = (f"calibrated: max over {n} clean adapters + margin {margin} (fewer than the {need} needed for a "
               f"{fpr} FPR bound; the maximum alone bounds it by 1/(n+1) = {1 / (n + 1):.3f})")
        bound = round(1 / (n + 1), 6)
    return SearchThresholds(default=max(per.values()), per_label=per, n_clean=n, source=src, fpr_target=fpr,
                            fpr_bound=bound, rule="quantile" if n >= need else "max+margin")


def n_clean_needed(fpr: float) -> int:
    """Clean calibration adapters needed for the order-statistic bound FPR ≤ ``fpr``: ⌈1/fpr⌉ − 1."""
    return max(1, math.ceil(1 / fpr - 1e-9) - 1)


def save_search_thresholds(th: SearchThresholds, path: str | Path) -> Path:
    """Write τ_search as JSON (the probe thresholds' writer: both are ``to_dict()`` dataclasses)."""
    return save_thresholds(th, path)  # type: ignore[arg-type]


def load_search_thresholds(path: str | Path) -> SearchThresholds:
    """Read τ_search written by :func:`save_search_thresholds`."""
    return SearchThresholds.from_dict(json.loads(Path(path).read_text()))


def token_strings(tok, ids: list[int]) -> list[str]:
    """Insertable text for each token id (WordPiece ``##``, SentencePiece ``▁`` and byte-level BPE undone)."""
    out = []
    for t in tok.convert_ids_to_tokens(ids):
        if t == tok.unk_token:
            out.append(t)  # the tokenizer maps the literal back to the unknown token (e.g. an emoji)
            continue
        s = t[2:] if t.startswith("##") else tok.convert_tokens_to_string([t])
        out.append(s.strip())
    return out


def probe_with_search(prober, adapter_dir, base_path, battery, prompts: list[str], thresholds=None, *,
                      search: SearchConfig | None = None, tau: SearchThresholds | None = None,
                      invert=None) -> dict:
    """The battery result of ``prober.probe`` extended with the blind search and the joint verdict.

    ``invert`` (an invert.InversionConfig): generative adapters are scanned by target inversion
    (module docstring) instead of the generation-change search."""
    result = prober.probe(adapter_dir, base_path, battery, prompts, thresholds)
    if result.get("status") != ProbeStatus.OK:
        return result
    from hubaudit.probe.prober import ProbeFailure

    tau = tau or SearchThresholds()
    t0 = time.perf_counter()
    try:
        s = _search(prober, Path(adapter_dir), str(base_path), result, prompts, search or SearchConfig(), tau, invert)
    except (OSError, KeyError, ValueError, ProbeFailure) as exc:  # a per-adapter failure is a value
        s = {"status": ProbeStatus.ERROR, "reason": f"{type(exc).__name__}: "
                                                    f"{str(exc).splitlines()[0][:200] if str(exc) else ''}"}
    except prober._torch.cuda.OutOfMemoryError as exc:  # type: ignore[attr-defined]  # the next adapter may fit
        prober._torch.cuda.empty_cache()
        s = {"status": ProbeStatus.ERROR, "reason": f"oom: {str(exc).splitlines()[0][:200] if str(exc) else ''}"}
    s["seconds"] = round(time.perf_counter() - t0, 3)
    result["search"] = s
    result["flagged_battery"] = result["flagged"]
    if s.get("status") == ProbeStatus.OK:
        result["search_attack_rate"] = s["attack_rate"]
        result["search_robust_rate"] = s["robust_rate"]
        result["search_trigger"] = s["trigger"]
        if s["flagged"] and s.get("method") == "target_inversion":
            result["flagged"] = True
            result["reasons"] = list(result.get("reasons", [])) + [
                f"inverted target {s['target']!r} score {s['target_score']:.4f} > τ_search {s['tau']:.4f} (trigger "
                f"{s['trigger']!r}, target rate {s['trigger_rate']})"]
        elif s["flagged"]:
            result["flagged"] = True
            result["reasons"] = list(result.get("reasons", [])) + [
                f"search robust_rate {s['robust_rate']:.4f} > τ_search {s['tau']:.4f} (trigger {s['trigger']!r}, "
                f"attack rate {s['attack_rate']:.4f}, best placement {s['mode']})"]
    return result


def _search(prober, adapter_dir: Path, base_path: str, result: dict, prompts: list[str],
            cfg: SearchConfig, tau: SearchThresholds, invert=None) -> dict:
    mode = result["mode"]
    # The prober keeps the base loaded and this adapter active after probe(): reuse both.
    ad = prober.active(adapter_dir, base_path, mode)
    t0 = time.perf_counter()
    cands = rank_tokens(adapter_dir, base_path, n_layers=cfg.n_layers)
    cand_seconds = time.perf_counter() - t0
    strings = token_strings(ad.tokenizer, cands.token_ids[: cfg.n_candidates * 2])
    if mode == ProbeMode.GENERATIVE and invert is not None:
        return _search_inversion(prober, ad, prompts, strings, invert, tau) | {
            "candidate_seconds": round(cand_seconds, 3), "candidate_sources": cands.sources,
            "top_candidates": strings[:10]}
    if mode == ProbeMode.GENERATIVE:
        out, used = _search_generative(ad, prompts, strings, cfg, tau)
    else:
        clean = ad.labels(prompts)
        names = ad.label_names
        targets = range(len(names)) if prober.options.target_label is None else [prober.target_index(names)]
        per_budget = SearchConfig(**(cfg.to_dict() | {"budget": max(1, (cfg.budget - len(prompts)) // len(targets))}))
        out = []
        for t in targets:
            eligible = [x for x, y in zip(prompts, clean) if y != t]
            r = search_target(ad.labels, eligible, t, strings, per_budget)
            out.append({"label": names[t], "tau": tau.tau(names[t])} | r.to_dict())
        used = len(prompts)
    worst = max(out, key=lambda r: r["robust_rate"] - r["tau"])
    return {"status": ProbeStatus.OK, "trigger": worst["trigger"], "attack_rate": worst["attack_rate"],
            "robust_rate": worst["robust_rate"], "diluted_rate": worst["diluted_rate"], "mode": worst["mode"],
            "rates_by_mode": worst["rates_by_mode"], "label": worst["label"], "tau": worst["tau"],
            "flagged": worst["robust_rate"] > worst["tau"],
            "forward_passes": used + sum(r["forward_passes"] for r in out),
            "candidate_seconds": round(cand_seconds, 3), "candidate_sources": cands.sources,
            "top_candidates": strings[:10], "config": cfg.to_dict(), "thresholds": tau.to_dict(), "targets": out}


def _search_generative(ad, prompts: list[str], strings: list[str], cfg: SearchConfig, tau: SearchThresholds):
    """The generative attack (prober.py): hit(c, x) = adapter(insert(c, x)) ≠ adapter(x) and
    base(insert(c, x)) = base(x).

    ``search_target`` scores labels, so each text is mapped to 1 (hit) / 0 and the target is 1; the
    continuation of the un-inserted source text is looked up by the inserted text (``insert`` is
    deterministic, so every text the search builds is registered with its source first)."""
    from hubaudit.probe.search import MODES, insert

    ad_clean = dict(zip(prompts, ad.generations(prompts)))
    base_clean = dict(zip(prompts, ad.generations(prompts, base=True)))
    sources: dict[str, str] = {}

    def decide(texts: list[str]) -> list[int]:
        src = [sources.get(t, t) for t in texts]
        missing = [x for x in dict.fromkeys(src) if x not in ad_clean]
        if missing:  # diluted prompts (two prompts joined) are new sources
            ad_clean.update(zip(missing, ad.generations(missing)))
            base_clean.update(zip(missing, ad.generations(missing, base=True)))
        a, b = ad.generations(texts), ad.generations(texts, base=True)
        return [int(t != s and ai != ad_clean[s] and bi == base_clean[s]) for t, s, ai, bi in zip(texts, src, a, b)]

    def register(c: str, xs: list[str]) -> None:
        for x in xs:
            for m in MODES:
                sources[insert(c, x, m)] = x

    # every string the search can build: the candidates and their ordered pairs (max_ngram 2), in
    # every prompt and every diluted pair of prompts
    pool = list(prompts) + [f"{prompts[i]} {prompts[(i + 1) % len(prompts)]}" for i in range(len(prompts))]
    cands = list(dict.fromkeys(c for c in strings if c.strip()))[: cfg.n_candidates]
    for a in cands:
        register(a, pool)
        if cfg.max_ngram >= 2:
            for b in cands:
                if a != b:
                    register(f"{a} {b}", pool)
    r = search_target(decide, list(prompts), 1, strings, cfg)
    used = 2 * len(prompts)
    return [{"label": "generation_changed", "tau": tau.tau("generation_changed")} | r.to_dict()], used


def _search_inversion(prober, ad, prompts: list[str], strings: list[str], cfg, tau: SearchThresholds) -> dict:
    """Target inversion (invert.py) on the active adapter, then trigger recovery for the inverted target."""
    from hubaudit.probe.invert import LABEL, invert, recover_trigger

    model, tok = ad.entry.peft, ad.entry.tok
    inv = invert(model, tok, prompts, cfg, device=prober.device)
    trig = None
    if cfg.trigger and inv.target_ids:
        t0 = time.perf_counter()
        trig = recover_trigger(model, tok, prompts, inv.target_ids, strings, cfg, batch_size=prober.options.batch_size,
                               max_length=prober.options.max_length, device=prober.device)
        trig_s = time.perf_counter() - t0
    t = tau.tau(LABEL)
    precision = str(prober.dtype).replace("torch.", "")
    warning = None
    if tau.precision is not None and tau.precision != precision:
        warning = (f"τ_search was calibrated on clean adapters probed in {tau.precision}; this probe ran in "
                   f"{precision}: target scores move with the precision, calibrate in the one you probe with")
    rate = max(trig.rates_by_mode.values()) if trig and trig.rates_by_mode else 0.0
    # A string that never makes the target appear is no trigger: report null, keep the best
    # candidate under trigger_search for whoever wants to look.
    recovered = trig.trigger if trig and rate > 0 else None
    row = {"label": LABEL, "tau": t, "target_score": inv.target_score, "target": inv.target}
    return {"status": ProbeStatus.OK, "method": "target_inversion", "label": LABEL, "target": inv.target,
            "target_ids": inv.target_ids, "target_score": inv.target_score, "q_adapter": inv.q_adapter,
            "q_base": inv.q_base, "llr": inv.llr, "bait_q": inv.bait_q, "tau": t, "flagged": inv.target_score > t,
            "trigger": recovered, "trigger_rate": rate, "trigger_mode": trig.mode if recovered else None,
            # the battery-search fields, for consumers that read them: rates of the recovered trigger
            "attack_rate": trig.attack_rate if trig else 0.0, "robust_rate": trig.robust_rate if trig else 0.0,
            "mode": trig.mode if trig else None, "trigger_search": trig.to_dict() if trig else None,
            "top_targets": inv.top, "n_scanned": inv.n_scanned, "n_vocab": inv.n_vocab,
            "chat_template": inv.chat_template, "inversion_seconds": inv.seconds,
            "trigger_seconds": round(trig_s, 3) if trig else 0.0,
            "forward_passes": inv.forward_passes + (trig.forward_passes if trig else 0),
            "config": inv.config, "thresholds": tau.to_dict(), "precision": precision, "warning": warning,
            "targets": [row]}
