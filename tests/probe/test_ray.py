"""The Ray path: probe tasks run in a Ray worker of an instance this test starts on 127.0.0.1 (CPU)."""

from __future__ import annotations

import os

import pytest

from hubaudit.pipeline.escalate import escalate
from hubaudit.pipeline.ingest import ingest
from hubaudit.pipeline.probe import ProbeRunOptions, probe_queue
from hubaudit.probe.prober import ProbeOptions
from hubaudit.settings import sqlite_url
from hubaudit.store import Store
from tests.probe.test_queue import BASE, _flag

ray = pytest.importorskip("ray")
pytestmark = [pytest.mark.ray, pytest.mark.slow]


@pytest.fixture(scope="module")
def ray_address():
    ctx = ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1",
                   runtime_env={"env_vars": {"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}})
    try:
        yield ctx.address_info["address"]
    finally:
        ray.shutdown()


def test_probe_queue_on_ray_writes_results_back_through_the_driver(tmp_path, minilm, ray_address):
    with Store.open(sqlite_url(tmp_path / "hubaudit.db"), create=True) as store:
        items = ingest(store, [str(minilm.poisoned.path), str(minilm.clean.path)], BASE).items
        _flag(store, BASE, [(i.revision_id, 1.0) for i in items])
        escalate(store, BASE)
        opts = ProbeRunOptions(base=BASE, base_model_path=minilm.base, executor="ray", address=ray_address,
                               prompts_file=minilm.prompts_file, adapters_per_task=2, worker="driver",
                               probe_options=ProbeOptions(target_label="0", batch_size=64))
        s = probe_queue(store, opts)
        assert (s["probed"], s["flagged"], s["failed"]) == (2, 1, 0)
        rows = {r.repo_id: r for r in store.audit_rows(BASE)}
        bad, good = rows[f"local:{minilm.poisoned.path}"].probe, rows[f"local:{minilm.clean.path}"].probe
        assert bad["flagged"] is True and good["flagged"] is False
        # one task for (base, both adapters): a Ray worker process loaded the base once and hot-swapped
        assert bad["worker_pid"] == good["worker_pid"] != os.getpid()
        assert max(bad["base_loads"], good["base_loads"]) == 1
    assert ray.is_initialized()  # the executor did not shut down a Ray instance it did not start
