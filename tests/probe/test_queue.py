"""Escalation queue + probe flow against a real SQLite store, with real trained adapters."""

from __future__ import annotations

import pytest

from hubaudit.constants import FEATURESET_VERSION
from hubaudit.pipeline.escalate import escalate
from hubaudit.pipeline.ingest import ingest
from hubaudit.pipeline.probe import ProbeRunOptions, probe_queue
from hubaudit.probe.prober import ProbeOptions
from hubaudit.settings import sqlite_url
from hubaudit.store import Store

pytestmark = pytest.mark.slow

BASE = "sentence-transformers/all-MiniLM-L6-v2"


def _flag(store: Store, base: str, rids_margins: list[tuple[int, float]]) -> None:
    """Weight verdicts as the calibrate stage would store them (the weight stage is not under test here)."""
    ts = store.save_threshold_set(base, method="test", featureset_version=FEATURESET_VERSION, n=len(rids_margins),
                                  strata={}, params={})
    store.save_verdicts(ts, [(rid, True, {"reasons": ["test verdict"], "margin": m}) for rid, m in rids_margins])


@pytest.fixture()
def store(tmp_path):
    with Store.open(sqlite_url(tmp_path / "hubaudit.db"), create=True) as s:
        yield s


def _ingest(store, paths):
    return {item.path: item.revision_id for item in ingest(store, [str(p) for p in paths], BASE).items}


def test_escalate_then_probe_records_results_and_failures(store, minilm, qwen):
    ids = _ingest(store, [minilm.poisoned.path, minilm.clean.path, qwen.poisoned.path])
    pois, clean, alien = (ids[str(p)] for p in (minilm.poisoned.path, minilm.clean.path, qwen.poisoned.path))
    _flag(store, BASE, [(pois, 1.0), (clean, 3.0), (alien, 2.0)])
    s = escalate(store, BASE)
    assert (s.flagged, s.queued, s.already) == (3, 3, 0)
    jobs = store.probe_jobs(BASE, status="queued")
    assert [j.revision_id for j in jobs] == [clean, alien, pois]  # by margin (no downloads for local adapters)
    assert escalate(store, BASE).queued == 0  # idempotent: never queued twice

    opts = ProbeRunOptions(base=BASE, base_model_path=minilm.base, budget=10, prompts_file=minilm.prompts_file,
                           probe_options=ProbeOptions(target_label="0", batch_size=64), worker="w1")
    summary = probe_queue(store, opts)
    assert (summary["claimed"], summary["probed"], summary["flagged"], summary["failed"]) == (3, 2, 1, 1)
    by_rev = {j.revision_id: j for j in store.probe_jobs(BASE)}
    assert by_rev[pois].status == by_rev[clean].status == "done"
    # a Qwen2 adapter does not fit the MiniLM base: a permanent failure, recorded with its reason
    assert by_rev[alien].status == "failed" and by_rev[alien].last_error.startswith("incompatible")
    rows = {r.revision_id: r for r in store.audit_rows(BASE)}
    assert rows[pois].probe["flagged"] is True and rows[clean].probe["flagged"] is False
    assert rows[pois].probe["battery"]["name"] == "paper-21-B" and len(rows[pois].probe["probes"]) == 20
    # one task, in priority order clean -> alien -> pois: the MiniLM SEQ_CLS base was loaded once for clean,
    # the alien (a CAUSAL_LM adapter) made one causal-LM load of the base, pois reused the SEQ_CLS base
    assert (rows[clean].probe["base_loads"], rows[pois].probe["base_loads"]) == (1, 2)
    assert probe_queue(store, opts)["claimed"] == 0  # done jobs are not run again


def test_missing_base_weights_fail_with_reason_and_retry_up_to_the_limit(store, minilm, tmp_path):
    ids = _ingest(store, [minilm.poisoned.path])
    _flag(store, BASE, [(rid, 1.0) for rid in ids.values()])
    escalate(store, BASE)
    opts = ProbeRunOptions(base=BASE, base_model_path=str(tmp_path / "no-weights"), max_attempts=2, worker="w1")
    assert probe_queue(store, opts)["failed"] == 1
    (job,) = store.probe_jobs(BASE)
    assert job.status == "queued" and job.attempts == 1 and job.last_error.startswith("base_unavailable")
    probe_queue(store, opts)
    (job,) = store.probe_jobs(BASE)
    assert job.status == "failed" and job.attempts == 2


def test_a_leased_job_is_not_run_by_a_second_worker(store, minilm):
    ids = _ingest(store, [minilm.clean.path])
    _flag(store, BASE, [(rid, 1.0) for rid in ids.values()])
    escalate(store, BASE)
    (_held,) = store.claim_probe_jobs("other-worker", limit=5, lease_seconds=3600)
    opts = ProbeRunOptions(base=BASE, base_model_path=minilm.base, worker="w2")
    assert probe_queue(store, opts)["claimed"] == 0
    assert store.probe_jobs(BASE)[0].worker == "other-worker"


def test_jobs_of_another_base_are_left_alone(store, minilm):
    other = "Qwen/Qwen2.5-1.5B"
    rid = ingest(store, [str(minilm.clean.path)], other).items[0].revision_id
    _flag(store, other, [(rid, 1.0)])
    escalate(store, other)
    s = probe_queue(store, ProbeRunOptions(base=BASE, base_model_path=minilm.base, worker="w3"))
    assert (s["claimed"], s["released"], s["probed"]) == (0, 0, 0)
    (job,) = store.probe_jobs(other)
    assert job.status == "queued" and job.attempts == 0 and job.worker is None
