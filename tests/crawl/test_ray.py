"""The Ray executor path: a crawl subprocess drives fetch-and-score tasks on a Ray instance this test starts."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.crawl.conftest import BASE, rows_by_repo
from tests.fakehub import populate

ray = pytest.importorskip("ray")
pytestmark = [pytest.mark.ray, pytest.mark.slow]


@pytest.fixture(scope="module")
def ray_address():
    ctx = ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1")
    try:
        yield ctx.address_info["address"]
    finally:
        ray.shutdown()


def test_crawl_runs_fetch_and_score_as_ray_tasks(hub, store, ray_address):
    ids = populate(hub, BASE, 4)
    hub.add_adapter("p/pickle-only", BASE, seed=80, fmt="pickle")
    cmd = [sys.executable, "-m", "hubaudit", "crawl", "--base", BASE, "--format", "json", "--executor", "ray",
           "--ray-address", ray_address, "--workers", "2"]
    proc = subprocess.run(cmd, env=dict(os.environ), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["scored"] == 4 and summary["skipped_by_reason"] == {"pickle_format": 1}
    rows = rows_by_repo(store)
    assert {rows[i].status for i in ids} == {"scored"} and rows["p/pickle-only"].reason == "pickle_format"
    # the work ran in Ray worker processes, not in the driver: its requests came from other client ports
    assert hub.count("info") == 5


def test_unreachable_ray_cluster_is_an_executor_error(hub):
    populate(hub, BASE, 1)
    cmd = [sys.executable, "-m", "hubaudit", "crawl", "--base", BASE, "--executor", "ray", "--ray-address", "127.0.0.1:1"]
    proc = subprocess.run(cmd, env=dict(os.environ), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 6 and proc.stderr.startswith("Error: cannot connect to Ray"), proc.stderr
