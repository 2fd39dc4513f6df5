"""Which probe thresholds are in force, and every probe result naming them.

Thresholds come from a file named on the command line, else the base's newest calibration in the
store, else the legacy per-base file under the data directory (read, with a notice to re-save it),
else the defaults. A real SQLite store; the probe queue runs with a fake device (no model is loaded)
and the thresholds objects are built directly, so nothing is trained.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hubaudit.models import CalibrationRef
from hubaudit.pipeline.behaviour import (
    calibration_record,
    in_force,
    resolve_calibration,
    save_probe_calibration,
    search_thresholds_path,
    thresholds_path,
)
from hubaudit.pipeline.escalate import escalate
from hubaudit.pipeline.probe import ProbeRunOptions, probe_queue, resolve_search_thresholds, resolve_thresholds
from hubaudit.probe.search_run import SearchThresholds, save_search_thresholds
from hubaudit.probe.stats import Thresholds, save_thresholds
from hubaudit.probe.task import AdapterRef, ProbeTask
from hubaudit.settings import sqlite_url
from hubaudit.store import Store
from hubaudit.vocab import CalibrationKind, CalibrationOrigin, ProbeStatus
from tests.lineage._store import scan

BASE = "acme/behaviour-base"
STORED = Thresholds(gap=0.2, mean=0.15, source="calibrated: max over 5 clean adapters + margin 0.02", battery="b", n_clean=5)
LEGACY = Thresholds(gap=0.3, mean=0.25, source="calibrated: max over 2 clean adapters + margin 0.02", n_clean=2)
FILE = Thresholds(gap=0.4, mean=0.35, source="calibrated: max over 3 clean adapters + margin 0.02", n_clean=3)
TAU = SearchThresholds(default=0.9, per_label={"target_inversion": 0.5}, source="quantile of 20 clean", n_clean=20,
                       rule="quantile")


@pytest.fixture()
def store(tmp_path):
    with Store.open(sqlite_url(tmp_path / "hubaudit.db"), create=True) as s:
        yield s


@pytest.fixture()
def home(tmp_path) -> Path:
    return tmp_path / "home"


def _legacy(home: Path) -> Path:
    save_search_thresholds(SearchThresholds(default=0.7, source="legacy tau"), search_thresholds_path(home, BASE))
    return save_thresholds(LEGACY, thresholds_path(home, BASE))


def test_defaults_when_nothing_is_calibrated(store, home):
    got = resolve_calibration(CalibrationKind.PROBE, home, BASE, store=store)
    assert got.value == Thresholds() and got.notice is None
    assert got.ref.origin == CalibrationOrigin.DEFAULTS and got.ref.describe() == "defaults (uncalibrated)"
    tau = resolve_calibration(CalibrationKind.SEARCH, home, BASE, store=store)
    assert tau.value == SearchThresholds() and tau.ref.origin == CalibrationOrigin.DEFAULTS


def test_the_store_round_trips_and_its_newest_wins(store, home):
    old = save_probe_calibration(store, BASE, Thresholds(gap=0.11, mean=0.11, source="older", n_clean=1))
    new = save_probe_calibration(store, BASE, STORED, TAU)
    assert (old["probe"].version, new["probe"].version, new["search"].version) == (1, 2, 1)
    got = resolve_calibration(CalibrationKind.PROBE, home, BASE, store=store)
    assert got.value == STORED and got.ref == new["probe"] and got.notice is None
    assert got.ref.origin == CalibrationOrigin.STORE and got.ref.source == STORED.source
    assert got.ref.describe().startswith(f"store #{new['probe'].id} v2 of ")
    assert resolve_thresholds(home, BASE, store=store) == STORED
    assert resolve_search_thresholds(home, BASE, store=store) == TAU
    assert in_force(store, BASE) == {"probe": new["probe"], "search": new["search"]}
    assert in_force(store, "acme/other") == {"probe": None, "search": None}


def test_an_explicit_file_beats_the_store(store, home, tmp_path):
    save_probe_calibration(store, BASE, STORED, TAU)
    path = save_thresholds(FILE, tmp_path / "th.json")
    got = resolve_calibration(CalibrationKind.PROBE, home, BASE, str(path), store)
    assert got.value == FILE and got.ref == CalibrationRef("probe", "file", path=str(path), source=FILE.source)
    assert got.ref.describe() == f"file {path}"
    tau_path = save_search_thresholds(SearchThresholds(default=0.6, source="file tau"), tmp_path / "th.search.json")
    assert resolve_search_thresholds(home, BASE, str(tau_path), store).default == 0.6


def test_the_store_beats_a_legacy_file(store, home):
    _legacy(home)
    save_probe_calibration(store, BASE, STORED)
    got = resolve_calibration(CalibrationKind.PROBE, home, BASE, store=store)
    assert got.value == STORED and got.notice is None
    # τ_search was not stored: that kind alone still falls back to its legacy file
    assert resolve_calibration(CalibrationKind.SEARCH, home, BASE, store=store).ref.origin == CalibrationOrigin.LEGACY_FILE


def test_a_legacy_file_is_read_with_a_notice_and_not_imported(store, home):
    path = _legacy(home)
    got = resolve_calibration(CalibrationKind.PROBE, home, BASE, store=store)
    assert got.value == LEGACY and got.ref.origin == CalibrationOrigin.LEGACY_FILE and got.ref.path == str(path)
    assert got.notice is not None and "\n" not in got.notice
    assert str(path) in got.notice and f"hubaudit probe-calibrate --base {BASE}" in got.notice
    assert "re-run probe-calibrate --base" in got.ref.describe()
    assert store.behaviour.behaviour_calibrations(BASE) == []  # a read stays a read
    assert resolve_calibration(CalibrationKind.PROBE, home, BASE).value == LEGACY  # no store: the same file


class FakeDevice:
    """A probe worker that loads no model: an adapter whose folder ends in "bad" is flagged, the rest are not."""

    def run(self, task: ProbeTask) -> list[tuple[AdapterRef, dict]]:
        return [(ref, {"status": ProbeStatus.OK, "flagged": ref.label.endswith("bad"), "outlier_gap": 0.01,
                       "mean_attack_rate": 0.02, "thresholds": task.thresholds.to_dict()}) for ref in task.adapters]


def _queue(store: Store, root: Path, names: tuple[str, ...]) -> dict[str, int]:
    ids = {}
    for i, name in enumerate(names):
        (root / name).mkdir(parents=True)
        repo = f"local:{root / name}"
        store.upsert_adapter(BASE, repo, source="local")
        ids[name] = store.record_revision(base=BASE, repo_id=repo, sha=f"{i:040x}", status="scored", scan=scan(None, np.random.default_rng(i)))
    escalate(store, BASE)
    return ids


def _opts(tmp_path: Path, **kw) -> ProbeRunOptions:
    (tmp_path / "base-weights").mkdir(exist_ok=True)
    return ProbeRunOptions(base=BASE, base_model_path=str(tmp_path / "base-weights"), worker="w", run_task=FakeDevice().run,
                           **kw)


def test_each_probe_result_records_the_calibration_it_was_judged_under(store, home, tmp_path):
    ids = _queue(store, tmp_path / "adapters", ("a-bad", "b-clean"))
    new = save_probe_calibration(store, BASE, STORED)
    th = resolve_calibration(CalibrationKind.PROBE, home, BASE, store=store)
    record = calibration_record(th.ref)
    summary = probe_queue(store, _opts(tmp_path, thresholds=th.value, calibration=record))
    assert summary["probed"] == 2 and summary["calibration"] == record
    probes = {r.revision_id: r.probe for r in store.audit_rows(BASE)}
    for name in ("a-bad", "b-clean"):
        cal = probes[ids[name]]["calibration"]
        assert CalibrationRef.from_dict(cal["probe"]) == new["probe"] and cal["search"] is None
    # a later calibration does not rewrite what earlier verdicts were judged under
    save_probe_calibration(store, BASE, FILE)
    assert CalibrationRef.from_dict(store.audit_rows(BASE)[0].probe["calibration"]["probe"]) == new["probe"]


def test_thresholds_handed_in_without_an_origin_are_recorded_as_given(store, tmp_path):
    _queue(store, tmp_path / "adapters", ("c",))
    probe_queue(store, _opts(tmp_path, thresholds=FILE))
    cal = store.audit_rows(BASE)[0].probe["calibration"]
    assert cal["probe"]["origin"] == CalibrationOrigin.GIVEN and cal["probe"]["source"] == FILE.source
