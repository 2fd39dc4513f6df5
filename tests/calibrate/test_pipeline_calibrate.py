"""The calibrate flow against a real store: versioned threshold sets and re-derived verdicts."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hubaudit.errors import NotCalibratedError, UsageError
from hubaudit.pipeline.calibrate import calibrate_base, feature_directions, judge_revisions
from hubaudit.store import Store
from tests.store.adapters import write_lora
from tests.store.scans import scan

BASE = "org/base"


@pytest.fixture
def store(tmp_path, migrated_sqlite):
    s = Store.open(migrated_sqlite(tmp_path / "db.sqlite"), create=True)
    yield s
    s.close()


def _add(store, rng, n, start=0, mu=0.0):
    ids = []
    for i in range(start, start + n):
        v = float(math.exp(rng.normal(mu, 0.1)))
        feats = {"global_frobN_std": v, "global_frobN_mean": 2 * v, "not_a_registered_feature": 1.0}
        ids.append(store.record_revision(base=BASE, repo_id=f"u/a{i}", sha="s", status="scored", scan=scan(v, features=feats)))
    return ids


def test_directions_come_from_the_stats_registry():
    d = feature_directions(["global_frobN_std", "attn_mlp_frobN_ratio", "proj_q_proj_frobN_mean", "nope"])
    assert d == {"global_frobN_std": "up", "attn_mlp_frobN_ratio": "down", "proj_q_proj_frobN_mean": "up"}


def test_versions_and_rederived_verdicts(store):
    rng = np.random.default_rng(0)
    ids = _add(store, rng, 40)
    outlier = _add(store, rng, 1, start=100, mu=2.0)[0]
    s1 = calibrate_base(store, BASE, min_n=30)
    assert s1.version == 1 and s1.n == 41 and s1.calibrated
    assert s1.verdicts["flagged"] >= 1 and s1.verdicts["not_calibrated"] == 0
    rows = {r.revision_id: r for r in store.audit_rows(BASE)}
    assert rows[outlier].flagged is True and rows[outlier].threshold_set_id == s1.threshold_set_id
    assert any(r.startswith("global_frobN_std=") for r in rows[outlier].breakdown["reasons"])
    assert {t[0] for t in rows[ids[0]].breakdown["top"]} == {"global_frobN_std", "global_frobN_mean"}  # no direction: not calibrated on
    assert sum(rows[i].flagged for i in ids) <= 2

    new = _add(store, rng, 5, start=200)
    s2 = calibrate_base(store, BASE, min_n=30)
    assert s2.version == 2 and s2.n == 46
    assert [(t.version, t.active) for t in store.threshold_sets(BASE)] == [(1, False), (2, True)]
    rows = {r.revision_id: r for r in store.audit_rows(BASE)}
    assert {r.threshold_set_id for r in rows.values()} == {s2.threshold_set_id}
    assert all(rows[i].flagged is not None for i in new)

    s3 = calibrate_base(store, BASE, min_n=100)  # too few: every verdict becomes "not calibrated"
    assert s3.version == 3 and not s3.calibrated and s3.verdicts["not_calibrated"] == 46
    assert all(r.flagged is None for r in store.audit_rows(BASE))


def test_judge_revisions_uses_the_active_set(store):
    rng = np.random.default_rng(1)
    _add(store, rng, 35)
    assert judge_revisions(store, BASE) == {}  # never calibrated: nothing judged
    calibrate_base(store, BASE, min_n=30)
    (late,) = _add(store, rng, 1, start=500, mu=3.0)
    assert judge_revisions(store, BASE, [late]) == {late: True}
    assert store.find_revision("u/a500").flagged is True


def test_empty_base_and_bad_reference(store, tmp_path):
    with pytest.raises(NotCalibratedError):
        calibrate_base(store, BASE)
    _add(store, np.random.default_rng(2), 3)
    with pytest.raises(UsageError, match="could not be scored"):
        calibrate_base(store, BASE, references=[tmp_path / "missing"])
    ref = write_lora(tmp_path / "ref")
    s = calibrate_base(store, BASE, references=[ref], min_n=2)
    assert s.n_references == 1
    assert store.active_threshold_set(BASE).params["references"] == [str(ref)]
