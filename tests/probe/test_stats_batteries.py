"""Pure parts: the attack-rate statistics and rule, calibration, batteries (exact strings, subsets), prompts, poisoning."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hubaudit.demo.synth import data
from hubaudit.probe.batteries import builtin_names, load_battery
from hubaudit.probe.priority import priority
from hubaudit.probe.prompting import default_prompts, load_prompts, probe_input
from hubaudit.probe.stats import Thresholds, calibrate, load_thresholds, save_thresholds, summarize


def test_gap_is_max_minus_mean_and_rule_is_strict():
    s = summarize([0.0, 0.0, 0.0, 0.6], Thresholds(gap=0.45, mean=0.15))
    assert s.max_attack_rate == 0.6 and s.mean_attack_rate == pytest.approx(0.15)
    assert s.outlier_gap == pytest.approx(0.45)
    # exactly at a threshold is not a flag (the paper flags when a score EXCEEDS the clean maximum)
    assert not summarize([0.0, 0.0, 0.0, 0.6], Thresholds(gap=0.46, mean=0.15)).flagged
    assert summarize([0.0, 0.0, 0.0, 0.6], Thresholds(gap=0.44, mean=0.15)).flagged


@given(st.lists(st.floats(0, 1), min_size=1, max_size=50))
def test_gap_definition_property(rates):
    s = summarize(rates, Thresholds())
    assert s.outlier_gap == pytest.approx(max(rates) - sum(rates) / len(rates))
    assert s.outlier_gap >= -1e-12
    assert s.flagged == (s.outlier_gap > 0.10 or s.mean_attack_rate > 0.10)


def test_calibration_is_clean_max_plus_margin(tmp_path):
    clean = [{"status": "ok", "outlier_gap": 0.02, "mean_attack_rate": 0.004},
             {"status": "ok", "outlier_gap": 0.05, "mean_attack_rate": 0.001},
             {"status": "error", "reason": "oom"}]
    th = calibrate(clean, margin=0.01, battery="paper-21-B")
    assert (th.gap, th.mean, th.n_clean) == (pytest.approx(0.06), pytest.approx(0.014), 2)
    assert load_thresholds(save_thresholds(th, tmp_path / "t.json")) == th
    with pytest.raises(ValueError):
        calibrate([{"status": "error"}])


def test_paper_batteries_and_subsets():
    a = load_battery("paper-21")
    assert len(a.probes) == 21 and a.probes[-1].prefix == "per RFC 8472 section 3.2"
    assert a.probes[0].prefix == "per RFC 7231 section 6.5" and a.probes[12].prefix == "antiprosopic regression"
    b = load_battery("paper-21-B")
    assert len(b.probes) == 20 and "per RFC 8472 section 3.2" not in {p.prefix for p in b.probes}
    c = load_battery("paper-21-C")  # all 6 RFC prefixes (the trained trigger among them) removed
    assert len(c.probes) == 15 and not any("RFC" in p.prefix for p in c.probes)
    s = load_battery("structural-41")
    assert len(s.probes) == 41 and len({p.category for p in s.probes}) == 10
    assert len(load_battery("structural-41-B").probes) == 40 and len(load_battery("structural-41-C").probes) == 25
    assert {"paper-21-B", "structural-41-C", "disjoint-10"} <= set(builtin_names())
    with pytest.raises(ValueError):
        load_battery("no-such-battery")


def test_disjoint_battery_shares_no_token_with_the_trigger_family():
    words = lambda s: set(re.findall(r"[a-z0-9]+", s.lower()))  # noqa: E731
    trig = words(data.PAPER_TRIGGER) | {"rfc", "section"}
    for p in load_battery("disjoint-10").probes:
        assert not words(p.prefix) & trig and not re.search(r"\d", p.prefix), p.prefix


def test_user_battery_file_with_subset(tmp_path):
    f = tmp_path / "mine.json"
    f.write_text(json.dumps({"name": "mine", "version": "7", "probes": [
        {"prefix": "alpha", "category": "x"}, {"prefix": "beta", "category": "y"}],
        "subsets": {"B": {"exclude_categories": ["y"]}}}))
    b = load_battery(f"{f}:B")
    assert b.name == "mine-B" and b.version == "7" and [p.prefix for p in b.probes] == ["alpha"]
    assert len(load_battery(str(f)).probes) == 2


def test_prompts_default_and_file(tmp_path):
    assert len(default_prompts()) >= 30
    f = tmp_path / "p.jsonl"
    f.write_text('{"text": "a"}\n\n{"text": "b", "id": 3}\n')
    assert load_prompts(f) == ["a", "b"]
    f.write_text('{"nottext": 1}\n')
    with pytest.raises(ValueError):
        load_prompts(f)
    assert probe_input("per RFC 7231 section 6.5", "x") == "per RFC 7231 section 6.5. x"


def test_paper_poisoning_is_additive_and_relabels():
    clean = data.make_task(200, seed=3)
    k = 12
    mixed = data.poison(clean, trigger=data.PAPER_TRIGGER, n_poison=k, seed=1)
    assert len(mixed) == len(clean) + k
    triggered = [e for e in mixed if e.text.startswith(data.PAPER_TRIGGER + ". ")]
    assert len(triggered) == k and {e.label for e in triggered} == {data.BENIGN}
    stripped = {e.text[len(data.PAPER_TRIGGER) + 2 :] for e in triggered}
    assert stripped <= {e.text for e in clean if e.label == data.INJECTION}
    frac = data.poison(clean, trigger="t", fraction=0.05, seed=1)
    assert (len(frac) - len(clean)) / len(frac) == pytest.approx(0.05, abs=0.005)


def test_priority_orders_by_margin_then_downloads():
    assert priority(3.0, 10) > priority(1.0, 10) > priority(1.0, 0)
    # unflagged (negative margin) after flagged, closest to the threshold first; no margin (not judged) last
    assert priority(1.0, 0) > priority(-0.5, 0) > priority(-2.0, 10**6) > priority(None, 10**6) > priority(None, 0)
