"""save_verdicts' driver-level bulk upsert on SQLite and PostgreSQL: values, JSON and idempotence."""

from __future__ import annotations

import math

from hubaudit.constants import FEATURESET_VERSION
from tests.store.scans import scan

BASE = "org/base"


def test_bulk_verdicts_round_trip_and_upsert(store):
    items = [dict(repo_id=f"u/a{i}", sha="s", status="scored", scan=scan(0.01 * (1 + i % 7))) for i in range(60)]
    rids = store.record_revisions_bulk(BASE, items)
    ts = store.save_threshold_set(BASE, method="m", featureset_version=FEATURESET_VERSION, n=60, strata={}, params={})
    flags = [True, False, None]
    verdicts = [(rid, flags[i % 3], {"reasons": [f"combined mahal D²/K={i}"], "margin": math.nan if i == 5 else i - 30.5,
                                      "top": [["f", -1.5]], "paper": {"above": i % 2 == 0}})
                for i, rid in enumerate(rids)]  # fmt: skip
    store.save_verdicts(ts, verdicts)
    rows = {r.revision_id: r for r in store.audit_rows(BASE)}
    for i, rid in enumerate(rids):
        r = rows[rid]
        assert r.flagged is flags[i % 3] and r.threshold_set_id == ts
        assert r.breakdown["reasons"] == [f"combined mahal D²/K={i}"] and r.breakdown["top"] == [["f", -1.5]]
        assert r.breakdown["margin"] == (None if i == 5 else i - 30.5)  # NaN stored as null
        assert r.breakdown["paper"]["above"] is (i % 2 == 0)
        assert r.first_seen.tzinfo is not None
    store.save_verdicts(ts, [(rids[0], False, {"reasons": ["again"], "margin": -1.0})])  # upsert, no duplicate
    again = store.find_revision("u/a0")
    assert again.flagged is False and again.breakdown["reasons"] == ["again"]
    assert len(store.audit_rows(BASE)) == 60
