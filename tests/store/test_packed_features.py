"""The packed feature columns (weight_scores.feature_digest/feature_vec, migration 5b1c0e9d7a21):
population() hands out the same features whether a row was packed at write time, packed by the
migration from its JSON, or left unpacked; and calibration judges the same either way."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sqlalchemy import text, update

from hubaudit.calibrate._robust import feature_matrix
from hubaudit.models import FeatureRow
from hubaudit.store import Store, migrate
from hubaudit.store.schema import WeightScore
from tests.store.scans import scan

BASE = "org/base"
FIRST = "003887e4782a"  # the revision before the packed columns


def _features(i: int) -> dict[str, float | None]:
    f = {"global_frobN_std": 0.01 * (1 + i % 7), "global_frobN_mean": 0.02 + i * 1e-3, "layer_profile_slope": (-1) ** i * 0.1}
    if i % 3 == 0:
        f["module_0.self_attn.q_proj_frobN_rel"] = 1.0 + i / 100  # another name list (digest) for a third of the rows
    if i == 4:
        f["global_frobN_mean"] = math.nan  # stored as None / NaN
    return f


def _fill(store: Store, n: int = 12) -> None:
    store.record_revisions_bulk(BASE, [dict(repo_id=f"u/a{i}", sha=f"{i:040x}", status="scored",
                                            scan=scan(0.01, features=_features(i), sha=f"{i:064x}")) for i in range(n)])  # fmt: skip


def _as_dicts(pop) -> dict[str, dict]:  # type: ignore[no-untyped-def]
    return {r.repo_id: dict(r.features) for r in pop}


def _expected(n: int = 12) -> dict[str, dict]:
    return {f"u/a{i}": {k: (None if v != v else v) for k, v in _features(i).items()} for i in range(n)}


def test_population_rows_are_views_of_packed_blocks(tmp_path, migrated_sqlite):
    with Store.open(migrated_sqlite(tmp_path / "hubaudit.db"), create=True) as store:
        _fill(store)
        pop = store.population(BASE)
        assert all(type(r.features) is FeatureRow for r in pop)
        assert len({id(r.features.block) for r in pop}) == 2  # one block per name list
        assert _as_dicts(pop) == _expected()
        names = ["global_frobN_mean", "module_0.self_attn.q_proj_frobN_rel", "absent"]
        fast = feature_matrix([r.features for r in pop], names)
        slow = feature_matrix([dict(r.features) for r in pop], names)
        assert np.array_equal(fast, slow, equal_nan=True) and np.isnan(fast[:, 2]).all()


def test_unpacked_and_hand_edited_rows_load_from_their_json(tmp_path, migrated_sqlite):
    with Store.open(migrated_sqlite(tmp_path / "hubaudit.db"), create=True) as store:
        _fill(store)
        with store.engine.begin() as conn:
            conn.execute(update(WeightScore).where(WeightScore.id <= 3).values(feature_vec=None, feature_digest=None))
            conn.execute(update(WeightScore).where(WeightScore.id == 5).values(feature_vec=b"\0" * 7))  # truncated blob
        pop = store.population(BASE)
        assert sum(type(r.features) is not FeatureRow for r in pop) == 4
        assert _as_dicts(pop) == _expected()
        # a mixed stratum (views and dicts) gives the matrix the dicts give
        names = sorted({k for r in pop for k in r.features})
        assert np.array_equal(feature_matrix([r.features for r in pop], names),
                              feature_matrix([dict(r.features) for r in pop], names), equal_nan=True)  # fmt: skip


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_upgrade_packs_rows_written_before_the_columns(backend, request, tmp_path):
    url = f"sqlite:///{tmp_path / 'a.db'}" if backend == "sqlite" else request.getfixturevalue("pg_url")
    store = Store.open(url, create=True)
    _fill(store)
    store.downgrade(FIRST)  # the columns are dropped, the rows (and their JSON) stay
    with store.engine.connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM weight_scores")) == 12
    store.upgrade()
    assert store.current() == migrate.head() and migrate.diff(store.engine) == []
    with store.engine.connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM weight_scores WHERE feature_vec IS NULL")) == 0
    pop = store.population(BASE)
    assert all(type(r.features) is FeatureRow for r in pop)
    assert _as_dicts(pop) == _expected()
    store.close()
