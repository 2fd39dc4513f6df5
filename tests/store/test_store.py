"""The Store contract (hubaudit/store/CONTRACT.md) on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import math
import time
from datetime import datetime, timedelta, timezone

import pytest

from hubaudit.constants import FEATURESET_VERSION
from tests.store.scans import scan

BASE = "org/base"


def test_record_revision_is_idempotent_and_stores_the_score(store):
    a = store.record_revision(base=BASE, repo_id="u/a", sha="s1", status="scored", files=[{"name": "f", "size": 1, "sha256": "x"}],
                              scan=scan(0.02))  # fmt: skip
    b = store.record_revision(base=BASE, repo_id="u/a", sha="s1", status="scored", scan=scan(0.03))
    assert a == b
    (row,) = store.audit_rows(BASE)
    assert row.score == pytest.approx(0.03) and row.files == []  # re-recording updates in place
    assert row.author == "u" and row.stratum == "lora|r8|q_proj,v_proj"
    assert store.revision_outcome("u/a", "s1") == "scored"
    assert store.revision_outcome("u/a", "nope") is None
    norms = store.module_norms(a)
    assert len(norms) == 4 and norms[0]["singular_values"] == [0.3, 0.1]


def test_failures_are_rows_with_reasons_and_no_score(store):
    rid = store.record_revision(base=BASE, repo_id="u/p", sha="s", status="unsupported", reason="pickle_format",
                                error="adapter_model.bin only\nsecond line")  # fmt: skip
    row = store.find_revision("u/p", "s")
    assert row.revision_id == rid and row.status == "unsupported" and row.reason == "pickle_format"
    assert row.error == "adapter_model.bin only" and row.score is None
    assert store.population(BASE, FEATURESET_VERSION) == []
    with pytest.raises(ValueError):
        store.record_revision(base=BASE, repo_id="u/p", sha="s", status="bogus")


def test_population_takes_latest_scored_revision_of_present_adapters(store):
    store.record_revision(base=BASE, repo_id="u/a", sha="old", status="scored", scan=scan(0.01))
    new = store.record_revision(base=BASE, repo_id="u/a", sha="new", status="scored", scan=scan(0.05))
    store.record_revision(base=BASE, repo_id="u/gone", sha="s", status="scored", scan=scan(0.02))
    store.record_revision(base="other/base", repo_id="u/x", sha="s", status="scored", scan=scan(0.02))
    store.upsert_adapter(BASE, "u/a", meta={"downloads": 3})
    assert store.mark_removed(BASE, {"u/a"}) == ["u/gone"]
    assert store.mark_removed(BASE, {"u/a"}) == []  # only newly removed ones
    pop = store.population(BASE, FEATURESET_VERSION)
    assert [(p.revision_id, p.repo_id, p.sha) for p in pop] == [(new, "u/a", "new")]
    assert pop[0].features["global_frobN_std"] == pytest.approx(0.05)
    assert store.population(BASE, "fs-other") == []
    assert store.population("never/seen", FEATURESET_VERSION) == []


def test_local_adapters_are_never_marked_removed(store):
    store.record_revision(base=BASE, repo_id="local:/x/a", sha="s", status="scored", scan=scan())
    assert store.mark_removed(BASE, set()) == []
    assert store.audit_rows(BASE)[0].author is None


def test_non_finite_features_are_stored_as_null(store):
    rid = store.record_revision(base=BASE, repo_id="u/a", sha="s", status="scored",
                                scan=scan(features={"a": math.nan, "b": math.inf, "c": 1.0}))  # fmt: skip
    (p,) = store.population(BASE, FEATURESET_VERSION)
    assert p.revision_id == rid and p.features == {"a": None, "b": None, "c": 1.0}


def test_adapter_meta_merges_and_times_are_utc(store):
    store.upsert_adapter(BASE, "u/a", meta={"downloads": 1, "tags": ["lora"], "author": "u"})
    first = store.adapter_meta(BASE, "u/a")
    time.sleep(0.01)
    store.upsert_adapter(BASE, "u/a", meta={"likes": 2})
    meta = store.adapter_meta(BASE, "u/a")
    assert meta["downloads"] == 1 and meta["likes"] == 2 and meta["tags"] == ["lora"] and meta["author"] == "u"
    assert meta["first_seen"] == first["first_seen"] and meta["last_seen"] > first["last_seen"]
    assert meta["first_seen"].tzinfo is not None and meta["first_seen"].utcoffset() == timedelta(0)
    assert store.adapter_meta(BASE, "u/none") is None


def test_threshold_sets_are_versioned_and_verdicts_follow_the_active_one(store):
    rid = store.record_revision(base=BASE, repo_id="u/a", sha="s", status="scored", scan=scan())
    t1 = store.save_threshold_set(BASE, method="m", featureset_version="fs-1", n=10, strata={"k": {"status": "x"}}, params={"p": 1})
    store.save_verdicts(t1, [(rid, True, {"reasons": ["r1"], "margin": 2.0})])
    assert store.audit_rows(BASE)[0].flagged is True
    t2 = store.save_threshold_set(BASE, method="m", featureset_version="fs-1", n=11, strata={}, params={})
    active = store.active_threshold_set(BASE)
    assert active.id == t2 and active.version == 2 and active.n == 11
    assert [(t.version, t.active) for t in store.threshold_sets(BASE)] == [(1, False), (2, True)]
    row = store.audit_rows(BASE)[0]
    assert row.flagged is None and row.threshold_set_id is None  # no verdict under the active set yet
    store.save_verdicts(t2, [(rid, None, {"reasons": ["not calibrated"], "margin": None})])
    store.save_verdicts(t2, [(rid, False, {"reasons": ["ok"], "margin": -1.0})])  # idempotent upsert
    row = store.audit_rows(BASE)[0]
    assert row.flagged is False and row.threshold_set_id == t2 and row.breakdown["margin"] == -1.0
    assert store.active_threshold_set("never/seen") is None


def test_audit_rows_since_and_find_revision(store):
    store.record_revision(base=BASE, repo_id="u/a", sha="s1", status="scored", scan=scan())
    cut = datetime.now(timezone.utc)
    time.sleep(0.01)
    store.record_revision(base=BASE, repo_id="u/b", sha="s2", status="error", reason="malformed", error="bad header")
    assert [r.repo_id for r in store.audit_rows(BASE)] == ["u/a", "u/b"]
    assert [r.repo_id for r in store.audit_rows(BASE, since=cut)] == ["u/b"]
    assert store.find_revision("u/b").reason == "malformed"
    assert store.find_revision("u/zzz") is None


def test_runs_are_recorded(store):
    rid = store.start_run("crawl", {"base": BASE, "limit": 3})
    store.finish_run(rid, counts={"scored": 2}, exit_status=0)
    (run,) = store.runs()
    assert run["command"] == "crawl" and run["counts"] == {"scored": 2} and run["exit_status"] == 0
    assert run["finished_at"] >= run["started_at"]


def test_bulk_record_matches_single_record(store):
    items = [dict(repo_id=f"u/a{i}", sha=f"s{i}", status="scored", scan=scan(0.01 * (i + 1))) for i in range(50)]
    items.append(dict(repo_id="u/bad", sha="x", status="error", reason="malformed", error="e"))
    ids = store.record_revisions_bulk(BASE, items)
    assert len(set(ids)) == 51
    assert ids == store.record_revisions_bulk(BASE, items)  # idempotent, same ids
    assert len(store.population(BASE, FEATURESET_VERSION)) == 50
    assert store.find_revision("u/bad", "x").status == "error"


def test_probe_queue(store):
    r1 = store.record_revision(base=BASE, repo_id="u/a", sha="s", status="scored", scan=scan())
    r2 = store.record_revision(base=BASE, repo_id="u/b", sha="s", status="scored", scan=scan())
    j1 = store.enqueue_probe(r1, priority=1.0)
    j2 = store.enqueue_probe(r2, priority=5.0)
    assert store.enqueue_probe(r1, priority=0.5) is None  # already queued: not again, but it takes the new priority
    assert {j.id: j.priority for j in store.probe_jobs(BASE)} == {j1: 0.5, j2: 5.0}
    a = store.claim_probe_jobs("w1", limit=1, lease_seconds=60)
    b = store.claim_probe_jobs("w2", limit=5, lease_seconds=60)
    assert [j.id for j in a] == [j2] and [j.id for j in b] == [j1]  # priority order, never shared
    assert store.claim_probe_jobs("w3", limit=5, lease_seconds=60) == []
    store.finish_probe_job(j2, {"flagged": True, "mean_attack_rate": 0.9})
    assert store.enqueue_probe(r2, priority=1.0) is None  # done
    assert store.find_revision("u/b").probe["mean_attack_rate"] == 0.9
    for attempt in range(3):  # fail until max_attempts, then failed for good
        store.fail_probe_job(j1, "CUDA out of memory\ntraceback", max_attempts=3)
        status = store.probe_jobs(BASE, "failed" if attempt == 2 else "queued")
        assert [j.id for j in status] == [j1]
        if attempt < 2:
            assert store.claim_probe_jobs("w", limit=1, lease_seconds=60)[0].id == j1
    assert store.probe_jobs(status="failed")[0].last_error == "CUDA out of memory"
    assert store.enqueue_probe(r1, priority=2.0) == j1  # a failed job can be escalated again
    assert store.probe_jobs(BASE, "queued")[0].attempts == 0


def test_claims_of_one_run_move_down_the_queue_past_its_own_requeued_failures(store):
    """``after`` = the last job a run claimed: its next claim starts below it, so a job the run failed
    and requeued waits for the next run instead of being retried at once."""
    rids = [store.record_revision(base=BASE, repo_id=f"u/{i}", sha="s", status="scored", scan=scan()) for i in range(4)]
    jobs = store.enqueue_probes([(rid, p) for rid, p in zip(rids, (3.0, 2.0, 2.0, 1.0))])
    assert store.enqueue_probes([(rids[0], 9.0)]) == {rids[0]: None}  # already queued
    first = store.claim_probe_jobs("w", limit=2, lease_seconds=60, base=BASE)
    assert [j.revision_id for j in first] == rids[:2] and first[0].priority == 9.0
    store.fail_probe_job(first[0].id, "transient", max_attempts=3)  # requeued, highest priority of all
    after = (first[-1].priority, first[-1].id)
    rest = store.claim_probe_jobs("w", limit=5, lease_seconds=60, base=BASE, after=after)
    assert [j.id for j in rest] == [jobs[rids[2]], jobs[rids[3]]]  # the tie at 2.0 is broken by job id
    assert [j.id for j in store.claim_probe_jobs("w", limit=5, lease_seconds=60, base=BASE)] == [first[0].id]


def test_expired_lease_is_claimed_again(store):
    rid = store.record_revision(base=BASE, repo_id="u/a", sha="s", status="scored", scan=scan())
    job = store.enqueue_probe(rid, priority=1.0)
    assert store.claim_probe_jobs("dead", limit=1, lease_seconds=0)[0].id == job
    time.sleep(0.05)
    (again,) = store.claim_probe_jobs("alive", limit=1, lease_seconds=600)
    assert again.id == job and again.worker == "alive" and again.attempts == 2


def test_non_finite_numbers_anywhere_in_json_become_null(store):
    from dataclasses import replace

    s = scan(0.02)
    s.modules[0] = replace(s.modules[0], frob_norm=math.nan, singular_values=(math.inf, 0.1))
    rid = store.record_revision(base=BASE, repo_id="u/a", sha="s", status="scored", scan=s, provenance={"x": math.nan})
    norms = store.module_norms(rid)
    assert norms[0]["frob_norm"] is None and norms[0]["singular_values"] == [None, 0.1]
    assert norms[1]["frob_norm"] == pytest.approx(s.modules[1].frob_norm)
    assert store.find_revision("u/a").provenance == {"x": None}


def test_claim_can_be_limited_to_one_base(store):
    """A prober holds one base in memory: it claims only that base's jobs, leaving the rest queued."""
    ids = {}
    for base in ("org/base-a", "org/base-b"):
        rid = store.record_revision(base=base, repo_id=f"u/{base[-1]}", sha="a" * 40, status="scored")
        ids[base] = store.enqueue_probe(rid, priority=1.0)
    got = store.claim_probe_jobs("w1", limit=10, lease_seconds=60, base="org/base-b")
    assert [j.id for j in got] == [ids["org/base-b"]]
    assert [j.id for j in store.probe_jobs(status="queued")] == [ids["org/base-a"]]


def test_a_revision_that_keeps_failing_transiently_is_given_up_after_the_limit(store):
    from hubaudit.store.store import FINAL_STATUSES, RETRY_LIMIT

    for run in range(1, RETRY_LIMIT):
        store.record_revision(base=BASE, repo_id="u/slow", sha="s", status="retry", reason="timeout", error="read timed out")
        assert store.revision_outcome("u/slow", "s") == "retry", run  # still fetched again next run
    store.record_revision(base=BASE, repo_id="u/slow", sha="s", status="retry", reason="timeout", error="read timed out")
    row = store.find_revision("u/slow", "s")
    assert (row.status, row.reason) == ("error", "gave_up") and row.status in FINAL_STATUSES
    assert f"gave up after {RETRY_LIMIT} runs" in row.error and "read timed out" in row.error
    assert row.score is None  # never clean
    # a success in between resets the count; a new commit starts afresh
    store.record_revision(base=BASE, repo_id="u/flaky", sha="s", status="retry", reason="timeout")
    store.record_revision(base=BASE, repo_id="u/flaky", sha="s", status="scored", scan=scan(0.02))
    store.record_revision(base=BASE, repo_id="u/flaky", sha="s", status="retry", reason="timeout")
    store.record_revision(base=BASE, repo_id="u/slow", sha="new", status="retry", reason="timeout")
    assert store.revision_outcome("u/flaky", "s") == "retry" and store.revision_outcome("u/slow", "new") == "retry"
    # the bulk path counts the same way
    for _ in range(RETRY_LIMIT - 1):
        store.record_revisions_bulk(BASE, [dict(repo_id="u/flaky", sha="s", status="retry", reason="timeout")])
    assert store.find_revision("u/flaky", "s").reason == "gave_up"


def test_bulk_adapter_upsert_and_outcome_lookup_match_the_single_calls(store):
    store.upsert_adapter(BASE, "u/old", meta={"downloads": 1, "tags": ["lora"]})
    store.record_revision(base=BASE, repo_id="u/old", sha="s1", status="scored", scan=scan(0.02))
    store.record_revision(base=BASE, repo_id="u/old", sha="s2", status="retry", reason="timeout")
    store.upsert_adapters(BASE, [("u/old", {"likes": 4}), ("u/new", {"downloads": 7, "author": "someone"}),
                                 ("u/new", {"likes": 1})])  # fmt: skip
    old, new = store.adapter_meta(BASE, "u/old"), store.adapter_meta(BASE, "u/new")
    assert (old["downloads"], old["tags"], old["likes"], old["author"], old["removed"]) == (1, ["lora"], 4, "u", False)
    assert (new["downloads"], new["likes"], new["author"], new["source"]) == (7, 1, "someone", "hub")
    assert new["first_seen"] == new["last_seen"] and old["last_seen"] > old["first_seen"]
    keys = [("u/old", "s1"), ("u/old", "s2"), ("u/old", "s3"), ("u/new", "x")]
    assert store.revision_outcomes(keys) == {k: store.revision_outcome(*k) for k in keys if store.revision_outcome(*k)}
    assert store.revision_outcomes(keys) == {("u/old", "s1"): "scored", ("u/old", "s2"): "retry"}
