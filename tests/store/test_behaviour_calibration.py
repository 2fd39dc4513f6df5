"""Behavioural calibrations in the store (store.behaviour, migration 7d2f5c8e1a46): versioned probe,
τ_search and PSIM thresholds per base and kind, the newest in force, on a real SQLite file and a real
PostgreSQL server; the migration upgrades a database at the previous head with its data and downgrades
cleanly."""

from __future__ import annotations

from datetime import timezone

import pytest
from sqlalchemy import inspect

from hubaudit.probe.search_run import SearchThresholds
from hubaudit.probe.stats import Thresholds
from hubaudit.store import Store, migrate
from hubaudit.store.behaviour import thresholds_fingerprint
from hubaudit.vocab import CalibrationKind
from tests.store.scans import scan

BASE = "org/base"
PREVIOUS = "9c4e2a7b1f03"  # the head before behaviour calibrations


def test_round_trip_of_both_kinds(store: Store):
    th = Thresholds(gap=0.13, mean=0.07, source="calibrated: max over 4 clean adapters + margin 0.02", battery="b", n_clean=4)
    tau = SearchThresholds(default=0.8, per_label={"target_inversion": 0.42}, source="quantile", n_clean=4, fpr_target=0.05,
                           rule="quantile")
    saved = store.behaviour.save_behaviour_calibration(BASE, CalibrationKind.PROBE, th.to_dict(), source=th.source, n_clean=4)
    store.behaviour.save_behaviour_calibration(BASE, "search", tau.to_dict(), source=tau.source, n_clean=4)
    got = store.behaviour.behaviour_calibration(BASE, "probe")
    assert got == saved
    assert Thresholds.from_dict(got.thresholds) == th
    assert (got.kind, got.version, got.n_clean, got.source) == ("probe", 1, 4, th.source)
    assert got.created_at.tzinfo == timezone.utc
    assert got.fingerprint == thresholds_fingerprint(th.to_dict()) and len(got.fingerprint) == 16
    assert SearchThresholds.from_dict(store.behaviour.behaviour_calibration(BASE, "search").thresholds) == tau
    assert store.behaviour.behaviour_calibration(BASE, "psim") is None
    assert store.behaviour.behaviour_calibration("org/never-calibrated", "probe") is None


def test_the_newest_version_is_in_force_per_base_and_kind(store: Store):
    save = store.behaviour.save_behaviour_calibration
    first = save(BASE, "probe", {"gap": 0.1, "mean": 0.1}, source="one", n_clean=2)
    other = save("org/other", "probe", {"gap": 0.5, "mean": 0.5}, source="other base", n_clean=9)
    tau = save(BASE, "search", {"default": 1.0}, source="tau", n_clean=2)
    second = save(BASE, "probe", {"gap": 0.2, "mean": 0.15}, source="two", n_clean=3)
    assert (first.version, second.version, other.version, tau.version) == (1, 2, 1, 1)
    assert store.behaviour.behaviour_calibration(BASE, "probe") == second
    assert store.behaviour.behaviour_calibration("org/other", "probe") == other
    assert store.behaviour.behaviour_calibration(BASE, "search") == tau
    assert [r.version for r in store.behaviour.behaviour_calibrations(BASE, "probe")] == [1, 2]
    assert {(r.kind, r.version) for r in store.behaviour.behaviour_calibrations(BASE)} == {("probe", 1), ("probe", 2),
                                                                                          ("search", 1)}


def test_fingerprint_names_the_thresholds_and_non_finite_values_are_null(store: Store):
    a = store.behaviour.save_behaviour_calibration(BASE, "psim", {"tau": 0.7, "frr": float("nan")}, source="x", n_clean=1)
    b = store.behaviour.save_behaviour_calibration(BASE, "psim", {"frr": None, "tau": 0.7}, source="y", n_clean=1)
    c = store.behaviour.save_behaviour_calibration(BASE, "psim", {"tau": 0.71, "frr": None}, source="z", n_clean=1)
    assert a.thresholds == {"tau": 0.7, "frr": None}
    assert a.fingerprint == b.fingerprint != c.fingerprint


def test_an_unknown_kind_is_refused_and_nothing_is_written(store: Store):
    with pytest.raises(ValueError, match="unknown calibration kind 'weights'"):
        store.behaviour.save_behaviour_calibration(BASE, "weights", {}, source="x", n_clean=0)
    assert store.behaviour.behaviour_calibrations(BASE) == []
    assert BASE not in store.bases()


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_migration_upgrades_a_database_with_data_and_downgrades(backend, request, tmp_path):
    url = f"sqlite:///{tmp_path / 'a.db'}" if backend == "sqlite" else request.getfixturevalue("pg_url")
    store = Store.open(url, check_schema=False)
    try:
        store.upgrade(PREVIOUS)
        rid = store.record_revision(base=BASE, repo_id="u/a", sha="a" * 40, status="scored", scan=scan(0.02))
        store.upgrade()
        assert store.current() == migrate.head() and migrate.diff(store.engine) == []
        assert [r.revision_id for r in store.audit_rows(BASE)] == [rid]  # the rows written before are kept
        row = store.behaviour.save_behaviour_calibration(BASE, "probe", {"gap": 0.1, "mean": 0.1}, source="s", n_clean=1)
        assert store.behaviour.behaviour_calibration(BASE, "probe") == row
        store.downgrade(PREVIOUS)
        with store.engine.connect() as conn:
            assert "behaviour_calibrations" not in inspect(conn).get_table_names()
        assert [r.revision_id for r in store.audit_rows(BASE)] == [rid]
        store.upgrade()
        assert store.behaviour.behaviour_calibrations(BASE) == []
        store.behaviour.save_behaviour_calibration(BASE, "probe", {"gap": 0.2, "mean": 0.1}, source="s", n_clean=1)
        assert store.behaviour.behaviour_calibration(BASE, "probe").version == 1
    finally:
        store.close()
