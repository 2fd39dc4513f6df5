"""Reports and ``hubaudit status`` count the scored revisions probed and not yet probed.

"Probed": a probe verdict is recorded (flagged or clean). "Not yet probed": scored, still listed, no
probe verdict, whether queued or not. Removed adapters and revisions that were never scored count in
neither. A real SQLite store built through the Store API; the commands run in-process.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from hubaudit.settings import sqlite_url
from hubaudit.store import Store
from tests._cli import run_cli
from tests.lineage._store import scan

BASE = "acme/coverage-base"
TEXT = "probed 2 of 4 scored revisions (2 not yet probed)"


@pytest.fixture(scope="module")
def url(tmp_path_factory) -> str:
    url = sqlite_url(tmp_path_factory.mktemp("coverage") / "hubaudit.db")
    rng = np.random.default_rng(3)
    with Store.open(url, create=True) as store:
        ids = {}
        for i, repo in enumerate(("u/confirmed", "u/clean", "u/queued", "u/waiting", "u/removed-probed")):
            store.upsert_adapter(BASE, repo, meta={"downloads": i})
            ids[repo] = store.record_revision(base=BASE, repo_id=repo, sha=f"{i:040x}", status="scored", scan=scan(None, rng))
        store.upsert_adapter(BASE, "u/pickle", meta={})
        store.record_revision(base=BASE, repo_id="u/pickle", sha="f" * 40, status="unsupported", reason="pickle_format")
        for repo, flagged in (("u/confirmed", True), ("u/clean", False), ("u/removed-probed", False)):
            store.enqueue_probe(ids[repo], priority=1.0)
            (job,) = store.claim_probe_jobs("t", limit=1, lease_seconds=60, base=BASE)
            store.finish_probe_job(job.id, {"status": "ok", "flagged": flagged, "mean_attack_rate": 0.5,
                                            "outlier_gap": 0.2})
        store.enqueue_probe(ids["u/queued"], priority=0.5)
        store.mark_removed(BASE, {"u/confirmed", "u/clean", "u/queued", "u/waiting", "u/pickle"})
    return url


def _report(url: str, fmt: str) -> str:
    r = run_cli("report", "--base", BASE, "--db", url, "--format", fmt, env={"COLUMNS": "100", "NO_COLOR": "1"})
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_table_report_counts_probed_and_not_yet_probed(url):
    assert TEXT in _report(url, "table")


def test_markdown_report_counts_probed_and_not_yet_probed(url):
    assert "Probed 2 of 4 scored revisions (2 not yet probed)." in _report(url, "markdown")


def test_html_report_counts_probed_and_not_yet_probed(url):
    out = _report(url, "html")
    assert '<p id="probe-coverage">Probed 2 of 4 scored revisions (2 not yet probed).</p>' in out
    assert '<div class="n">2</div><div class="l">not yet probed</div>' in out


@pytest.mark.parametrize("fmt", ["json", "jsonl"])
def test_machine_readable_reports_carry_the_counts(url, fmt):
    out = _report(url, fmt)
    doc = json.loads(out) if fmt == "json" else json.loads(out.splitlines()[-1])
    assert (doc["summary"]["probed"], doc["summary"]["not_probed"]) == (2, 2)
    assert doc["summary"]["audited"] == 5  # the removed adapter is still reported, but not counted for probing


def test_status_counts_probed_and_not_yet_probed(url):
    r = run_cli("status", "--db", url, "--format", "json")
    assert r.returncode == 0, r.stderr
    (b,) = json.loads(r.stdout)["bases"]
    assert (b["probed"], b["not_probed"], b["probe_queue"]["queued"]) == (2, 2, 1)
    r = run_cli("status", "--db", url)
    assert f"probing      {TEXT}" in r.stdout
