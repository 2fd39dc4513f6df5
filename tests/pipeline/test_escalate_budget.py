"""Escalation queues every new revision of a base (weight margin first, then downloads), and the probe
stage spends a budget of device-seconds on the queue, leaving the rest queued for the next run.

A real SQLite store through the Store API. Probing is the queue flow of ``hubaudit probe`` with the
local executor; what runs per task is a fake device whose clock advances by a set number of seconds
per adapter (no model is loaded), so the budget is exercised without training or timing anything.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hubaudit.constants import FEATURESET_VERSION
from hubaudit.pipeline.escalate import escalate
from hubaudit.pipeline.probe import ProbeRunOptions, probe_queue
from hubaudit.probe.priority import priority
from hubaudit.probe.task import AdapterRef, ProbeTask
from hubaudit.settings import sqlite_url
from hubaudit.store import Store
from hubaudit.vocab import ProbeStatus
from tests.lineage._store import scan

BASE = "acme/budget-base"


class FakeDevice:
    """A probe worker whose clock advances ``seconds_per_adapter`` per adapter it probes; adapters whose
    repo id is in ``failing`` fail (a transient error, retried on a later run)."""

    def __init__(self, seconds_per_adapter: float, failing: frozenset[str] = frozenset()) -> None:
        self.now = 1000.0
        self.seconds_per_adapter = seconds_per_adapter
        self.failing = failing
        self.probed: list[str] = []

    def clock(self) -> float:
        return self.now

    def run(self, task: ProbeTask) -> list[tuple[AdapterRef, dict]]:
        out = []
        for ref in task.adapters:
            self.now += self.seconds_per_adapter
            self.probed.append(ref.label)
            if ref.label in self.failing:
                out.append((ref, {"status": ProbeStatus.ERROR, "reason": "oom", "error": "CUDA out of memory"}))
            else:
                out.append((ref, {"status": ProbeStatus.OK, "flagged": False, "outlier_gap": 0.01, "mean_attack_rate": 0.02}))
        return out


@pytest.fixture()
def store(tmp_path):
    with Store.open(sqlite_url(tmp_path / "hubaudit.db"), create=True) as s:
        yield s


def _populate(store: Store, adapters: dict[str, tuple[bool | None, float | None, int]], root: Path | None = None) -> dict[str, int]:
    """Scored revisions of BASE with the given (flagged, margin, downloads), and their weight verdicts as
    the calibrate stage stores them. With ``root`` the repos are local adapter folders (probe-able here)."""
    rng = np.random.default_rng(0)
    ids = {}
    for name, (_, _, downloads) in adapters.items():
        repo = name
        if root is not None:
            (root / name).mkdir(parents=True)
            repo = f"local:{root / name}"
        store.upsert_adapter(BASE, repo, meta={"downloads": downloads}, source="local" if root else "hub")
        ids[name] = store.record_revision(base=BASE, repo_id=repo, sha=f"{len(ids):040x}", status="scored",
                                          scan=scan(None, rng))
    ts = store.save_threshold_set(BASE, method="test", featureset_version=FEATURESET_VERSION, n=len(adapters),
                                  strata={}, params={})
    store.save_verdicts(ts, [(ids[n], flagged, {"reasons": ["test verdict"], "margin": margin})
                             for n, (flagged, margin, _) in adapters.items()])
    return ids


POPULATION = {  # name: (weight verdict, margin, downloads)
    "flag-small": (True, 0.4, 10),
    "flag-big": (True, 2.5, 1),
    "near-popular": (False, -0.2, 5000),
    "near-obscure": (False, -0.2, 3),
    "far": (False, -4.0, 10**6),
    "not-judged": (None, None, 50),
    "not-judged-popular": (None, None, 900),
}
ORDER = ["flag-big", "flag-small", "near-popular", "near-obscure", "far", "not-judged-popular", "not-judged"]


def test_every_scored_revision_is_queued_flagged_first_then_by_margin_then_downloads(store):
    ids = _populate(store, POPULATION)
    s = escalate(store, BASE)
    assert (s.flagged, s.unflagged, s.queued, s.queued_flagged, s.queued_unflagged, s.already) == (2, 5, 7, 2, 5, 0)
    by_rev = {rid: name for name, rid in ids.items()}
    queued = store.probe_jobs(BASE, status="queued")
    assert [by_rev[j.revision_id] for j in queued] == ORDER
    assert [by_rev[j.revision_id] for j in store.claim_probe_jobs("w", limit=3, lease_seconds=60, base=BASE)] == ORDER[:3]
    again = escalate(store, BASE)  # idempotent: queued and running jobs are not queued twice
    assert (again.queued, again.already) == (0, 7)
    assert len(store.probe_jobs(BASE)) == 7


def test_removed_unscored_and_already_probed_revisions_are_not_queued(store):
    ids = _populate(store, {"kept": (False, -1.0, 1), "gone": (True, 3.0, 1), "probed": (True, 1.0, 1)})
    store.record_revision(base=BASE, repo_id="bad/pickle", sha="f" * 40, status="unsupported", reason="pickle_format")
    store.mark_removed(BASE, {"kept", "probed"})
    store.enqueue_probe(ids["probed"], priority=1.0)
    (job,) = store.claim_probe_jobs("w", limit=1, lease_seconds=60, base=BASE)
    store.finish_probe_job(job.id, {"status": "ok", "flagged": False})
    s = escalate(store, BASE)
    assert (s.queued, s.probed) == (1, 1)
    assert [j.revision_id for j in store.probe_jobs(BASE, status="queued")] == [ids["kept"]]


def test_flagged_only_leaves_the_unflagged_out_and_a_later_full_pass_adds_them_behind(store):
    ids = _populate(store, POPULATION)
    s = escalate(store, BASE, flagged_only=True)
    assert (s.queued, s.queued_flagged, s.unflagged) == (2, 2, 5)
    assert {j.revision_id for j in store.probe_jobs(BASE)} == {ids["flag-big"], ids["flag-small"]}
    s = escalate(store, BASE, limit=3)
    assert (s.queued, s.already) == (3, 2)
    by_rev = {rid: name for name, rid in ids.items()}
    assert [by_rev[j.revision_id] for j in store.probe_jobs(BASE)] == ORDER[:5]


def test_a_recalibration_reorders_what_is_still_queued(store):
    ids = _populate(store, {"a": (False, -0.5, 1), "b": (False, -1.5, 1)})
    escalate(store, BASE)
    ts = store.save_threshold_set(BASE, method="test", featureset_version=FEATURESET_VERSION, n=2, strata={}, params={})
    store.save_verdicts(ts, [(ids["a"], False, {"margin": -2.0}), (ids["b"], True, {"margin": 0.3})])
    assert escalate(store, BASE).queued == 0
    assert [j.revision_id for j in store.probe_jobs(BASE, status="queued")] == [ids["b"], ids["a"]]


MARGINS = st.one_of(st.none(), st.integers(-500_000, 500_000).map(lambda k: k / 10**4))
DOWNLOADS = st.sampled_from([None, 0, 1, 2, 9, 10, 999, 1000, 123_456, 10**6, 10**9])


@given(MARGINS, DOWNLOADS, MARGINS, DOWNLOADS)
def test_priority_orders_by_margin_then_downloads(m1, d1, m2, d2):
    def key(m, d):
        return (-math.inf if m is None else m, d or 0)

    k1, k2 = key(m1, d1), key(m2, d2)
    p1, p2 = priority(m1, d1), priority(m2, d2)
    assert (p1 > p2) == (k1 > k2) and (p1 == p2) == (k1 == k2)


def test_priority_of_extreme_margins_keeps_the_order():
    assert priority(math.inf, 0) == priority(1e9, 0) > priority(5.0, 10**12) > priority(5.0, 0) > priority(-math.inf, 10)
    assert priority(-math.inf, 10) > priority(-math.inf, 0) > priority(None, 10**15) > priority(math.nan, 0) == priority(None, 0)


def _opts(tmp_path: Path, device: FakeDevice, **kw) -> ProbeRunOptions:
    base_dir = tmp_path / "base-weights"
    base_dir.mkdir(exist_ok=True)
    return ProbeRunOptions(base=BASE, base_model_path=str(base_dir), worker="w", run_task=device.run, clock=device.clock,
                           **kw)


def test_a_budget_of_seconds_stops_claiming_once_spent_and_the_rest_is_probed_on_later_runs(store, tmp_path):
    ids = _populate(store, POPULATION, root=tmp_path / "adapters")
    escalate(store, BASE)
    device = FakeDevice(seconds_per_adapter=10.0)
    opts = _opts(tmp_path, device, budget_seconds=25.0, adapters_per_task=1)

    first = probe_queue(store, opts)
    # 0 s, 10 s and 20 s spent when the three tasks were claimed: the third started inside the budget and finished
    assert [Path(p).name for p in device.probed] == ORDER[:3]
    assert (first["claimed"], first["probed"], first["seconds_used"], first["budget_seconds"]) == (3, 3, 30.0, 25.0)
    assert (first["remaining_queued"], first["stopped"]) == (4, "budget_seconds")
    by_rev = {rid: name for name, rid in ids.items()}
    assert [by_rev[j.revision_id] for j in store.probe_jobs(BASE, status="queued")] == ORDER[3:]

    second = probe_queue(store, opts)
    assert [Path(p).name for p in device.probed] == ORDER[:6]
    assert (second["probed"], second["remaining_queued"]) == (3, 1)
    third = probe_queue(store, opts)
    assert (third["probed"], third["seconds_used"], third["remaining_queued"], third["stopped"]) == (1, 10.0, 0, "queue_empty")
    assert all(r.probe is not None and r.probe["flagged"] is False for r in store.audit_rows(BASE))
    assert escalate(store, BASE).probed == 7


def test_the_budget_counts_whole_tasks_and_a_job_cap_still_applies(store, tmp_path):
    _populate(store, POPULATION, root=tmp_path / "adapters")
    escalate(store, BASE)
    device = FakeDevice(seconds_per_adapter=10.0)
    s = probe_queue(store, _opts(tmp_path, device, budget_seconds=25.0, adapters_per_task=2))
    assert (s["probed"], s["seconds_used"], s["remaining_queued"]) == (4, 40.0, 3)  # tasks at 0 s and 20 s
    s = probe_queue(store, _opts(tmp_path, device, budget_seconds=1000.0, budget=1))
    assert (s["claimed"], s["probed"], s["remaining_queued"], s["stopped"]) == (1, 1, 2, "max_jobs")


def test_a_job_that_fails_in_a_run_waits_for_the_next_run(store, tmp_path):
    _populate(store, POPULATION, root=tmp_path / "adapters")
    escalate(store, BASE)
    device = FakeDevice(seconds_per_adapter=1.0, failing=frozenset({f"local:{tmp_path / 'adapters' / 'flag-big'}"}))
    s = probe_queue(store, _opts(tmp_path, device, budget_seconds=3600.0, adapters_per_task=1))
    assert (s["claimed"], s["probed"], s["failed"], s["remaining_queued"]) == (7, 6, 1, 1)
    assert [Path(p).name for p in device.probed].count("flag-big") == 1  # not retried within the run
    (job,) = store.probe_jobs(BASE, status="queued")
    assert job.attempts == 1 and job.last_error.startswith("oom")
    device.failing = frozenset()
    s = probe_queue(store, _opts(tmp_path, device, budget_seconds=3600.0))
    assert (s["claimed"], s["probed"], s["remaining_queued"]) == (1, 1, 0)


def test_an_empty_queue_costs_nothing(store, tmp_path):
    device = FakeDevice(seconds_per_adapter=10.0)
    s = probe_queue(store, _opts(tmp_path, device, budget_seconds=5.0))
    assert (s["claimed"], s["seconds_used"], s["remaining_queued"], s["stopped"]) == (0, 0.0, 0, "queue_empty")
    assert device.probed == []


def test_the_nightly_budget_is_device_seconds_and_an_old_job_count_still_caps():
    from hubaudit.config import parse_config
    from hubaudit.errors import ConfigError

    (b,) = parse_config('[[base]]\nid = "a/b"\n').bases
    assert (b.probe_budget_seconds, b.probe_budget) == (3600.0, 0)
    (b,) = parse_config('[defaults]\nprobe_budget = 20\n[[base]]\nid = "a/b"\nprobe_budget_seconds = 900\n').bases
    assert (b.probe_budget_seconds, b.probe_budget) == (900, 20)
    for bad in ("probe_budget_seconds = 0", "probe_budget_seconds = -5.0", "probe_budget = -1"):
        with pytest.raises(ConfigError, match="probe_budget"):
            parse_config(f'[[base]]\nid = "a/b"\n{bad}\n')


def test_escalate_and_probe_commands_say_what_was_queued_and_what_the_budget_left(tmp_path):
    import json

    from tests._cli import run_cli

    url = sqlite_url(tmp_path / "h.db")
    with Store.open(url, create=True) as store:
        _populate(store, POPULATION)
    r = run_cli("escalate", "--base", BASE, "--db", url, "--flagged-only")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["queued"] == 2
    assert "queued 2 (2 flagged, 0 unflagged)" in r.stderr and "5 unflagged left out (--flagged-only)" in r.stderr
    r = run_cli("escalate", "--base", BASE, "--db", url)
    assert (json.loads(r.stdout)["queued_unflagged"], json.loads(r.stdout)["already"]) == (5, 2)
    assert "queued 5 (0 flagged, 5 unflagged), 2 already queued or probed" in r.stderr
    with Store.open(url) as store:  # another worker holds every job: this run claims none and spends nothing
        assert len(store.claim_probe_jobs("elsewhere", limit=10, lease_seconds=3600, base=BASE)) == 7
    r = run_cli("probe", "--base", BASE, "--db", url, "--budget-seconds", "120", "--format", "json")
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert (s["claimed"], s["budget_seconds"], s["seconds_used"], s["stopped"]) == (0, 120.0, 0.0, "queue_empty")
    assert "0 of 120 device-seconds used, 0 still queued" in r.stderr


def test_a_job_that_failed_for_good_is_not_queued_again_unless_asked(store):
    ids = _populate(store, {"breaks": (True, 2.0, 5), "fine": (False, -1.0, 1)})
    escalate(store, BASE)
    for _ in range(3):  # three failed attempts: failed for good
        (job,) = store.claim_probe_jobs("w", limit=1, lease_seconds=60, base=BASE)
        assert job.revision_id == ids["breaks"]
        store.fail_probe_job(job.id, "boom", max_attempts=3)
    assert [j.status for j in store.probe_jobs(BASE) if j.revision_id == ids["breaks"]] == ["failed"]
    s = escalate(store, BASE)  # the nightly pass: it stays failed and costs no budget
    assert (s.queued, s.failed, s.already) == (0, 1, 1)
    assert [j.revision_id for j in store.probe_jobs(BASE, status="queued")] == [ids["fine"]]
    s = escalate(store, BASE, retry_failed=True)
    assert (s.queued, s.failed) == (1, 0)
    assert {j.revision_id for j in store.probe_jobs(BASE, status="queued")} == {ids["breaks"], ids["fine"]}
