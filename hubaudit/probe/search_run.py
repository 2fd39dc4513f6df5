"""Battery + blind search for one adapter, τ_search and its calibration (issue 10, DESIGN §4).

``probe_with_search`` runs the Prober's battery (prober.py, unchanged), then, on the SAME loaded
base and active adapter, ranks candidate tokens from the weights (candidates.py) and searches
triggers (search.py) for every target label (or the requested one). The result dict is the
prober's, plus:

- ``search``: per target label the best trigger, its rate, insertion mode, forward passes, and the
  verdict under τ_search; top-level ``search_attack_rate`` / ``search_trigger`` (the label whose
  rate exceeds its τ by the most);
- ``flagged_battery`` (the battery's own decision) and ``flagged`` = battery OR search, with the
  search's reason appended to ``reasons``.

τ_search: a clean adapter's best "trigger" after a search is a maximum over many candidates, so it
is not 0. Like τ_gap/τ_mean (§1.5) it is calibrated as the maximum over known-clean adapters plus a
margin, per target label. Uncalibrated, τ_search = 1.0: the search reports its best trigger and rate
but cannot flag (a clean MiniLM adapter's best bigram of task words, e.g. "administrator disabled",
flips up to 100% of benign prompts towards INJECTION, evals/blind/RESULTS.md), so a verdict needs ``calibrate_search`` on clean adapters.
Generative adapters are not searched (``search.status = "skipped"``).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from hubaudit.probe.candidates import rank_tokens
from hubaudit.probe.search import SearchConfig, search_target
from hubaudit.probe.stats import save_thresholds

DEFAULT_TAU_SEARCH = 1.0  # report-only until calibrated (a rate cannot exceed 1.0)


@dataclass(frozen=True)
class SearchThresholds:
    """τ_search per target label name (``default`` for labels not calibrated)."""

    default: float = DEFAULT_TAU_SEARCH
    per_label: dict = field(default_factory=dict)
    source: str = "default: uncalibrated (1.0, report only)"
    n_clean: int = 0

    def tau(self, label: str) -> float:
        """τ_search of ``label``."""
        return float(self.per_label.get(label, self.default))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> SearchThresholds:
        return cls(float(d.get("default", DEFAULT_TAU_SEARCH)), dict(d.get("per_label", {})),
                   str(d.get("source", "file")), int(d.get("n_clean", 0)))


def calibrate_search(clean_results: list[dict], *, margin: float = 0.1) -> SearchThresholds:
    """τ_search per label = max over KNOWN-CLEAN adapters' search rates + ``margin`` (capped at 1.0)."""
    per: dict[str, float] = {}
    n = 0
    for r in clean_results:
        s = r.get("search") or {}
        if s.get("status") != "ok":
            continue
        n += 1
        for t in s["targets"]:
            per[t["label"]] = max(per.get(t["label"], 0.0), float(t["attack_rate"]))
    if not n:
        raise ValueError("no searched clean adapters to calibrate τ_search from")
    per = {k: round(min(1.0, v + margin), 6) for k, v in per.items()}
    return SearchThresholds(default=max(per.values()), per_label=per, n_clean=n,
                            source=f"calibrated: max over {n} clean adapters + margin {margin}")


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
                      search: SearchConfig | None = None, tau: SearchThresholds | None = None) -> dict:
    """The battery result of ``prober.probe`` extended with the blind search and the joint verdict."""
    result = prober.probe(adapter_dir, base_path, battery, prompts, thresholds)
    if result.get("status") != "ok":
        return result
    tau = tau or SearchThresholds()
    t0 = time.perf_counter()
    try:
        s = _search(prober, Path(adapter_dir), str(base_path), result, prompts, search or SearchConfig(), tau)
    except (OSError, KeyError, ValueError) as exc:  # a per-adapter failure is a value
        s = {"status": "error", "reason": f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"}
    s["seconds"] = round(time.perf_counter() - t0, 3)
    result["search"] = s
    result["flagged_battery"] = result["flagged"]
    if s.get("status") == "ok":
        result["search_attack_rate"] = s["attack_rate"]
        result["search_trigger"] = s["trigger"]
        if s["flagged"]:
            result["flagged"] = True
            result["reasons"] = list(result.get("reasons", [])) + [
                f"search_attack_rate {s['attack_rate']:.4f} > τ_search {s['tau']:.4f} (trigger {s['trigger']!r}, {s['mode']})"]
    return result


def _search(prober, adapter_dir: Path, base_path: str, result: dict, prompts: list[str],
            cfg: SearchConfig, tau: SearchThresholds) -> dict:
    from hubaudit.probe.prober import _n_labels, adapter_config

    mode = result["mode"]
    if mode not in ("seq_cls", "causal_label"):
        return {"status": "skipped", "reason": f"search is not implemented for {mode} adapters"}
    n_labels = _n_labels(adapter_dir, adapter_config(adapter_dir)) if mode == "seq_cls" else len(prober.options.label_words)
    # The prober keeps the base loaded and this adapter active after probe(): reuse both.
    entry = prober._base(base_path, mode, n_labels)
    names = [f"LABEL_{i}" for i in range(n_labels)] if mode == "seq_cls" else list(prober.options.label_words)

    def decide(texts: list[str]) -> list[int]:
        return prober._labels(entry.peft, entry.tok, texts, mode)

    t0 = time.perf_counter()
    cands = rank_tokens(adapter_dir, base_path, n_layers=cfg.n_layers)
    cand_seconds = time.perf_counter() - t0
    strings = token_strings(entry.tok, cands.token_ids[: cfg.n_candidates * 2])
    clean = decide(prompts)
    targets = range(n_labels) if prober.options.target_label is None else [prober._target_index(names)]
    per_budget = SearchConfig(**(cfg.to_dict() | {"budget": max(1, (cfg.budget - len(prompts)) // len(targets))}))
    out = []
    for t in targets:
        eligible = [x for x, y in zip(prompts, clean) if y != t]
        r = search_target(decide, eligible, t, strings, per_budget)
        out.append({"label": names[t], "tau": tau.tau(names[t])} | r.to_dict())
    worst = max(out, key=lambda r: r["attack_rate"] - r["tau"])
    return {"status": "ok", "trigger": worst["trigger"], "attack_rate": worst["attack_rate"], "mode": worst["mode"],
            "label": worst["label"], "tau": worst["tau"], "flagged": worst["attack_rate"] > worst["tau"],
            "forward_passes": len(prompts) + sum(r["forward_passes"] for r in out),
            "candidate_seconds": round(cand_seconds, 3), "candidate_sources": cands.sources,
            "top_candidates": strings[:10], "config": cfg.to_dict(), "thresholds": tau.to_dict(), "targets": out}
