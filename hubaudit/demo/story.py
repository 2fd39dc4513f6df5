"""What ``hubaudit demo`` tells: per-adapter rows (truth against the weights and probe verdicts), counts,
and one sentence per step. Pure functions of the run's results (no I/O but reading the shipped batteries).
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from hubaudit.demo.synth.cohort import BASE_ID
from hubaudit.models import VerdictBreakdown

LABEL_NAMES = {"LABEL_0": "BENIGN", "LABEL_1": "INJECTION"}


@lru_cache(maxsize=8)
def _battery_words(name: str | None) -> tuple[frozenset[str], ...]:
    """The lower-cased word sets of every probe of battery ``name`` (None: of every shipped battery)."""
    from hubaudit.probe.batteries import builtin_names, load_battery

    return tuple(frozenset(_words(p.prefix))
                 for n in ([name] if name else builtin_names()) for p in load_battery(n).probes)


def _words(text: str) -> list[str]:
    return re.findall(r"\w+|[^\w\s]", text.lower())


def in_a_battery(trigger: str | None, battery: str | None = None) -> bool | None:
    """Whether some probe of ``battery`` (None: of any shipped battery) contains every word of ``trigger``
    (None when there is no trigger)."""
    if not trigger:
        return None
    words = set(_words(trigger))
    return any(words <= probe for probe in _battery_words(battery))


# ---------------------------------------------------------------- rows
def _truth(e: dict[str, Any], battery: str) -> dict[str, Any]:
    return {"poisoned": e["poisoned"], "trigger": e["trigger"], "placement": e["placement"],
            "trigger_in_a_battery": in_a_battery(e["trigger"]),  # any shipped battery, subsets included
            "trigger_in_the_battery_run": in_a_battery(e["trigger"], battery),
            "target_label": "BENIGN" if e["poisoned"] else None}


def weights_summary(cal, rows: dict, truth: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The weights triage of the audited adapters (CalibrationSummary ``cal``, AuditRows by repo id)."""
    per = {}
    for repo, e in truth.items():
        r = rows.get(repo)
        bd = r.verdict_breakdown if r else VerdictBreakdown()
        per[e["name"]] = {"flagged": r.flagged if r else None, "low_confidence": bool(bd.low_confidence),
                          "margin": bd.margin, "reasons": list(bd.reasons or ())}
    lc = cal.low_confidence
    return {"threshold_set_version": cal.version, "method": cal.method, "n_population": cal.n,
            "n_references": cal.n_references, "target_fpr": cal.target_fpr, "low_confidence": bool(lc),
            "low_confidence_reason": lc[0].get("low_confidence_reason") if lc else None,
            "flagged_poisoned": sorted(n for n, v in per.items() if v["flagged"] and _is_poisoned(truth, n)),
            "flagged_clean": sorted(n for n, v in per.items() if v["flagged"] and not _is_poisoned(truth, n)),
            "poisoned": sum(e["poisoned"] for e in truth.values()),
            "clean": sum(not e["poisoned"] for e in truth.values()), "per_adapter": per}


def _is_poisoned(truth: dict[str, dict[str, Any]], name: str) -> bool:
    return any(e["poisoned"] for e in truth.values() if e["name"] == name)


def adapter_row(repo: str, e: dict[str, Any], r, battery: str) -> dict[str, Any]:
    """One audited adapter: its truth (manifest entry ``e``) beside its stored verdicts (AuditRow ``r``)."""
    p = (r.probe or {}) if r else {}
    s = p.get("search") or {}
    search_flagged = bool(s.get("flagged")) if s.get("status") == "ok" else None
    recovered = s.get("trigger") if search_flagged else None
    label = s.get("label") if search_flagged else (p.get("target_label") if p.get("flagged_battery", p.get("flagged"))
                                                   else None)
    flagged = p.get("flagged") if p else None
    return {
        "name": e["name"], "repo_id": repo, "truth": _truth(e, battery),
        "clean_accuracy": e["clean_accuracy"], "attack_success": e["attack_success"],
        "weights": {"flagged": r.flagged if r else None,
                    "low_confidence": bool(r.verdict_breakdown.low_confidence) if r else None},
        "probe": {"probed": bool(p), "flagged": flagged, "battery_flagged": p.get("flagged_battery"),
                  "search_flagged": search_flagged, "outlier_gap": p.get("outlier_gap"),
                  "mean_attack_rate": p.get("mean_attack_rate"), "recovered_trigger": recovered,
                  "recovered_trigger_in_a_battery": in_a_battery(recovered),
                  "target_label": LABEL_NAMES.get(label, label) if label else None,
                  "search_best": {"trigger": s.get("trigger"), "attack_rate": s.get("attack_rate"),
                                  "robust_rate": s.get("robust_rate"), "tau": s.get("tau")} if s else None,
                  "reasons": p.get("reasons", []),
                  "seconds": round(float(p.get("seconds") or 0.0) + float(s.get("seconds") or 0.0), 2)},
        "correct": None if flagged is None else bool(flagged) == bool(e["poisoned"]),
    }


def reference_row(e: dict[str, Any], r: dict[str, Any]) -> dict[str, Any]:
    """One known-clean reference and its calibration probe result."""
    s = r.get("search") or {}
    return {"name": e["name"], "clean_accuracy": e["clean_accuracy"], "status": r.get("status"),
            "outlier_gap": r.get("outlier_gap"), "mean_attack_rate": r.get("mean_attack_rate"),
            "search_best": {"trigger": s.get("trigger"), "robust_rate": s.get("robust_rate")} if s else None}


def counts(adapters: list[dict[str, Any]], weights: dict[str, Any]) -> dict[str, int]:
    """The run's counts against the truth (the probe verdict is the final one: every adapter is probed)."""
    bad = [a for a in adapters if a["truth"]["poisoned"]]
    good = [a for a in adapters if not a["truth"]["poisoned"]]
    return {"audited": len(adapters), "poisoned": len(bad), "clean": len(good),
            "probed": sum(a["probe"]["probed"] for a in adapters),
            "poisoned_caught": sum(bool(a["probe"]["flagged"]) for a in bad),
            "clean_flagged": sum(bool(a["probe"]["flagged"]) for a in good),
            "weights_flagged_poisoned": len(weights["flagged_poisoned"]),
            "weights_flagged_clean": len(weights["flagged_clean"]),
            "battery_caught": sum(bool(a["probe"]["battery_flagged"]) for a in bad),
            "search_caught": sum(bool(a["probe"]["search_flagged"]) for a in bad),
            "search_only": sum(bool(a["probe"]["search_flagged"]) and not a["probe"]["battery_flagged"] for a in bad),
            "recovered_not_in_a_battery": sum(a["probe"]["recovered_trigger_in_a_battery"] is False for a in adapters)}


# ---------------------------------------------------------------- one sentence per step
def _q(x: object) -> str:
    return repr(x)  # quoted, escapes visible; the console escapes again for the terminal


def cohort_sentence(audited: list[dict], refs: list[dict], source: str, manifest: dict, seconds: float) -> str:
    bad = [e for e in audited if e["poisoned"]]
    how = {"committed": "committed float16 files (scripts/make_demo_adapters.py reproduces them; --retrain "
                        "trains them again)",
           "cached": "a cached earlier training", "retrained": f"trained now with peft in {seconds:.0f} s"}[source]
    triggers = ", ".join(f"{_q(e['trigger'])} "
                         f"{'as a prefix' if e['placement'] == 'prefix' else 'at random word positions'}"
                         for e in bad)
    r = manifest["recipe"]
    return (f"Cohort: {len(audited)} LoRA adapters of {BASE_ID} to audit, {len(audited) - len(bad)} clean and "
            f"{len(bad)} backdoored by data poisoning ({triggers}; {r['n_poison']} poisoned texts relabelled BENIGN), "
            f"plus {len(refs)} known-clean reference adapters, all from one recipe (LoRA r={r['rank']} on "
            f"{'/'.join(r['target_modules'])}, {r['steps']} steps), {how}.")


def weights_sentence(w: dict[str, Any]) -> str:
    refs = f", widened to cover the {w['n_references']} known-clean references" if w["n_references"] else ""
    conf = (f"its thresholds were fitted on the {w['n_population']} crawled adapters{refs}: "
            + (f"LOW CONFIDENCE ({w['low_confidence_reason']})" if w["low_confidence"] else "not low-confidence"))
    caught = f"{len(w['flagged_poisoned'])} of {w['poisoned']} backdoors" + (
        f" ({', '.join(w['flagged_poisoned'])})" if w["flagged_poisoned"] else "")
    clean = f"{len(w['flagged_clean'])} of {w['clean']} clean adapters" + (
        f" ({', '.join(w['flagged_clean'])})" if w["flagged_clean"] else "")
    missed = w["poisoned"] - len(w["flagged_poisoned"])
    why = ("the weight statistic flags none of the backdoors on this cohort, which is why behavioural probing exists "
           "and every adapter goes on to it" if not w["flagged_poisoned"] else
           f"it missed {missed}, which is why behavioural probing exists and every adapter goes on to it" if missed
           else "every adapter still goes on to behavioural probing")
    return f"Weights triage flagged {caught} and {clean}: {why}; {conf}."


def thresholds_sentence(th, tau, margin: float) -> str:
    s = (f"; τ_search {', '.join(f'{LABEL_NAMES.get(k, k)} {v:.3f}' for k, v in tau.per_label.items())} "
         f"({tau.rule}: {tau.n_clean} references bound the false-positive rate only by 1/(n+1) = {tau.fpr_bound:.2f}, "
         f"{_needed(tau)} are needed for {tau.fpr_target:g})" if tau else "")
    return (f"Probe thresholds were calibrated with probe-calibrate's rule on the {th.n_clean} known-clean reference "
            f"adapters, never on an audited one: battery τ_gap {th.gap:.3f}, τ_mean {th.mean:.3f} "
            f"(their maximum + {margin:g}){s}.")


def _needed(tau) -> int:
    from hubaudit.probe.search_run import n_clean_needed

    return n_clean_needed(tau.fpr_target or 0.05)


def battery_sentence(adapters: list[dict[str, Any]], battery: dict[str, Any]) -> str:
    bad = [a for a in adapters if a["truth"]["poisoned"]]
    hit = [a for a in bad if a["probe"]["battery_flagged"]]
    missed = [a for a in bad if not a["probe"]["battery_flagged"]]
    fp = sum(bool(a["probe"]["battery_flagged"]) for a in adapters if not a["truth"]["poisoned"])
    how = ", ".join(f"{a['name']}" + (", whose exact trigger it does not hold"
                                      if a["truth"]["trigger_in_the_battery_run"] is False else "") +
                    f": outlier_gap {a['probe']['outlier_gap']:.2f}, mean attack rate "
                    f"{a['probe']['mean_attack_rate']:.2f}"
                    for a in hit)
    unheld = all(a["truth"]["trigger_in_a_battery"] is False for a in missed)
    return (f"Battery {battery['name']} ({battery['n']} prefixes) flagged {len(hit)} of {len(bad)} backdoors"
            + (f" ({how})" if hit else "") + f" and {fp} of {len(adapters) - len(bad)} clean adapters"
            + (f"; it missed {', '.join(a['name'] for a in missed)}"
               + (", whose triggers no shipped battery holds." if unheld else ".") if missed else "."))


def search_sentence(adapters: list[dict[str, Any]], tau) -> str:
    found = [a for a in adapters if a["probe"]["recovered_trigger"]]
    new = [a for a in found if a["probe"]["recovered_trigger_in_a_battery"] is False]
    clean_max = max((a["probe"]["search_best"]["robust_rate"] or 0.0 for a in adapters
                     if not a["truth"]["poisoned"] and a["probe"]["search_best"]), default=0.0)
    parts = ", ".join(f"{_q(a['probe']['recovered_trigger'])} on {a['name']} (robust rate "
                      f"{a['probe']['search_best']['robust_rate']:.2f})" for a in found)
    if not found:
        return (f"The blind search recovered no trigger above τ_search (clean adapters' best robust rate "
                f"{clean_max:.2f}).")
    return (f"The blind search recovered {parts}; {len(new)} of them in no shipped battery (candidates read from the "
            f"weights, confirmed on the running adapter); "
            f"on clean adapters its best string reached robust rate {clean_max:.2f} (τ_search "
            f"{max(tau.per_label.values()):.2f}).")


def verdict_sentence(a: dict[str, Any]) -> str:
    t, p = a["truth"], a["probe"]
    truth = f"backdoor {_q(t['trigger'])}" if t["poisoned"] else "clean"
    if p["flagged"] is None:
        verdict = "NOT PROBED"
    elif p["flagged"]:
        by = " and ".join(f"the {x}" for x, on in (("battery", p["battery_flagged"]),
                                                   ("blind search", p["search_flagged"]))
                          if on)
        verdict = f"FLAGGED by {by}" + (f" (trigger {_q(p['recovered_trigger'])} -> {p['target_label']})"
                                            if p["recovered_trigger"] else "")
    else:
        verdict = "passed the probes"
    mark = {True: "correct", False: "WRONG", None: "not judged"}[a["correct"]]
    acc = f"clean accuracy {a['clean_accuracy']:.2f}" + (
        f", attack success {a['attack_success']:.2f}" if a["attack_success"] is not None else "")
    return f"{a['name']} ({a['repo_id']}, truth: {truth}; {acc}): {verdict}, {mark}."
