"""Reports name the probe calibration in force for the base and, per probed adapter, the calibration
its probe verdict was judged under (table, markdown, html, json).

A real SQLite store; probe results are written through the queue as `hubaudit probe` writes them, by a
fake device that loads no model (nothing is trained)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from hubaudit.models import CalibrationRef
from hubaudit.pipeline.behaviour import calibration_record, resolve_calibration, save_probe_calibration
from hubaudit.pipeline.escalate import escalate
from hubaudit.pipeline.probe import ProbeRunOptions, probe_queue
from hubaudit.pipeline.report import run_report
from hubaudit.probe.search_run import SearchThresholds
from hubaudit.probe.stats import Thresholds
from hubaudit.probe.task import AdapterRef, ProbeTask
from hubaudit.report.evidence import calibration_text
from hubaudit.settings import sqlite_url
from hubaudit.store import Store
from hubaudit.vocab import CalibrationKind, ProbeStatus
from tests.lineage._store import scan

BASE = "acme/report-base"
TH = Thresholds(gap=0.2, mean=0.15, source="calibrated: max over 5 clean adapters + margin 0.02", n_clean=5)


@pytest.fixture()
def store(tmp_path):
    with Store.open(sqlite_url(tmp_path / "hubaudit.db"), create=True) as s:
        yield s


def _device(task: ProbeTask) -> list[tuple[AdapterRef, dict]]:
    return [(ref, {"status": ProbeStatus.OK, "flagged": ref.label.endswith("bad"), "outlier_gap": 0.01,
                   "mean_attack_rate": 0.02, "thresholds": task.thresholds.to_dict()}) for ref in task.adapters]


def _probed(store: Store, tmp_path: Path, calibration: dict | None) -> None:
    for i, name in enumerate(("x-bad", "y-clean")):
        (tmp_path / "adapters" / name).mkdir(parents=True)
        repo = f"local:{tmp_path / 'adapters' / name}"
        store.upsert_adapter(BASE, repo, source="local")
        store.record_revision(base=BASE, repo_id=repo, sha=f"{i:040x}", status="scored", scan=scan(None, np.random.default_rng(i)))
    escalate(store, BASE)
    (tmp_path / "base").mkdir()
    probe_queue(store, ProbeRunOptions(base=BASE, base_model_path=str(tmp_path / "base"), worker="w", run_task=_device,
                                       thresholds=TH, calibration=calibration))


def test_every_format_names_the_calibration_in_force_and_the_one_each_verdict_used(store, tmp_path):
    stored = save_probe_calibration(store, BASE, TH)["probe"]
    th = resolve_calibration(CalibrationKind.PROBE, tmp_path / "home", BASE, store=store)
    _probed(store, tmp_path, calibration_record(th.ref))
    fp = stored.fingerprint
    assert fp
    for fmt in ("table", "markdown", "html"):
        _, text = run_report(store, BASE, fmt, width=400)
        text = text.replace("\\", "")  # Markdown escapes '#' and ':'
        assert f"store #{stored.id} v1" in text and fp in text, fmt
        assert "none in the store" in text, fmt  # no τ_search was stored
        assert "probe verdict judged under probe thresholds" in text, fmt  # the flagged adapter's evidence
    _, text = run_report(store, BASE, "json")
    doc = json.loads(text)
    assert CalibrationRef.from_dict(doc["probe_calibration"]["probe"]) == stored
    assert doc["probe_calibration"]["search"] is None
    entries = {Path(e["repo_id"]).name: e for e in doc["adapters"]}
    for name in ("x-bad", "y-clean"):
        assert entries[name]["probe_calibration"] == f"judged under probe thresholds {stored.describe()}"
        assert CalibrationRef.from_dict(entries[name]["probe"]["calibration"]["probe"]) == stored
    assert any("judged under" in x for x in entries["x-bad"]["evidence"])
    assert entries["y-clean"]["probe_summary"].endswith(f"judged under probe thresholds {stored.describe()}")


def test_a_later_calibration_is_in_force_while_old_verdicts_name_theirs(store, tmp_path):
    first = save_probe_calibration(store, BASE, TH)["probe"]
    _probed(store, tmp_path, calibration_record(first))
    second = save_probe_calibration(store, BASE, Thresholds(gap=0.3, mean=0.3, source="recalibrated", n_clean=9),
                                    SearchThresholds(default=0.8, source="tau", n_clean=9))
    doc = json.loads(run_report(store, BASE, "json")[1])
    assert doc["probe_calibration"]["probe"]["id"] == second["probe"].id
    assert doc["probe_calibration"]["search"]["id"] == second["search"].id
    assert all(e["probe"]["calibration"]["probe"]["id"] == first.id for e in doc["adapters"])


def test_without_a_stored_calibration_the_report_says_so_and_names_the_defaults(store, tmp_path):
    th = resolve_calibration(CalibrationKind.PROBE, tmp_path / "home", BASE, store=store)
    _probed(store, tmp_path, calibration_record(th.ref))
    _, text = run_report(store, BASE, "markdown", width=400)
    assert "battery thresholds none in the store" in text
    assert "judged under probe thresholds defaults (uncalibrated)" in text


def test_calibration_text_of_a_result_with_and_without_a_record():
    assert calibration_text({"status": "ok", "flagged": False}) is None
    ref = CalibrationRef("probe", "file", path="/tmp/th.json")
    tau = CalibrationRef("search", "defaults")
    text = calibration_text({"calibration": calibration_record(ref, tau)})
    assert text == "judged under probe thresholds file /tmp/th.json; τ_search defaults (uncalibrated)"
