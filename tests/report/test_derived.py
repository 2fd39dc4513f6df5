"""Copies and derivatives of known-bad adapters in ``report`` and ``check`` (real SQLite store, the CLI
as a user runs it). Fingerprints are constructed with controlled cosines (tests/lineage/_store.py)."""

from __future__ import annotations

import json
from datetime import date, datetime, timezone

import pytest

from tests.lineage import _store as L
from tests.report.test_cli import run

SAFE = {"hub_security": {"scans_done": True, "files_with_issues": [{"path": "adapter_model.safetensors", "level": "safe"}]}}


@pytest.fixture(scope="module")
def url(tmp_path_factory) -> str:
    from hubaudit.store import Store

    url = f"sqlite:///{tmp_path_factory.mktemp('derived') / 'hubaudit.db'}"
    with Store.open(url, create=True) as store:
        L.build(store, provenance={L.COPY: SAFE})
        store.record_downstream(L.BASE, L.COPY, [("someone/merged-copy", "merge")])
        store.record_downstream(L.BASE, "org1/clean-1", [("someone/fine", "finetune")])
    return url


def _report(url: str, suppressions=()):
    from hubaudit.pipeline.report import load_report
    from hubaudit.store import Store

    with Store.open(url) as store:
        return load_report(store, L.BASE, suppressions=suppressions, now=datetime(2026, 12, 1, tzinfo=timezone.utc))


def test_report_json_flags_the_copy_and_the_derivatives_of_a_probe_confirmed_adapter(url):
    p = run("report", "--base", L.BASE, "--format", "json", "--db", url)
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    by_repo = {a["repo_id"]: a for a in doc["adapters"]}
    src = f"{L.BAD}@{L.sha(1)}"
    copy = by_repo[L.COPY]["derived_from"]
    assert (copy["kind"], copy["source_kind"], copy["source_repo_id"], copy["source_sha"]) == (
        "copy", "probe_confirmed", L.BAD, L.sha(1))
    assert copy["similarity"] == pytest.approx(0.998, abs=2e-3)
    assert copy["reason"].startswith(f"derived_from {src} (similarity 0.99")
    assert by_repo[L.TUNED]["derived_from"]["kind"] == "derivative"
    # the repo's newer revision, trained further from the confirmed one, is a finding too
    assert by_repo[L.BAD]["sha"] == L.sha(2) and by_repo[L.BAD]["derived_from"]["source_sha"] == L.sha(1)
    # independent adapters and a 0.6 overlap are not
    assert by_repo[L.NEAR]["derived_from"] is None
    assert all(by_repo[f"org{i % 4}/clean-{i}"]["derived_from"] is None for i in range(L.N_CLEAN))
    assert doc["summary"]["derived"] == 3
    thr = doc["similarity_thresholds"]
    assert thr["source"] == "calibrated" and thr["null_pairs"] == 44 * 43 // 2
    assert thr["derivative"] == pytest.approx(0.8) and thr["copy"] == pytest.approx(0.99)  # floors: null q99 is low


def test_report_entries_carry_hub_security_and_downstream_of_findings(url):
    r = _report(url)
    e = {a.repo_id: a for a in r.adapters}
    copy = e[L.COPY]
    assert copy.is_active_finding and copy.hub_security.status == "scanned"  # Hub "safe" never clears it
    assert [(d.repo_id, d.relation) for d in copy.downstream] == [("someone/merged-copy", "merge")]
    assert e["org1/clean-1"].downstream == ()  # shown for findings only
    assert e[L.TUNED].hub_security is None  # the Hub said nothing
    # weight reasons and fired features stay the weight verdict's (derived_from is no feature)
    assert copy.flagged is False and copy.fired == ()
    assert copy.reasons and not any("derived_from" in r for r in copy.reasons)
    # findings first: the derived ones before every weight pass
    assert {a.repo_id for a in r.adapters[:3]} == {L.COPY, L.TUNED, L.BAD}


def test_a_copy_of_a_suppressed_adapter_is_still_a_finding(url):
    from hubaudit.report.model import Suppression

    source_sup = Suppression(repo=L.BAD, reason="reviewed", expires=date(2999, 1, 1))
    r = _report(url, [source_sup])
    e = {a.repo_id: a for a in r.adapters}
    assert e[L.BAD].suppressed is not None  # the suppression names this repo (both revisions)
    assert e[L.COPY].is_active_finding and e[L.TUNED].is_active_finding  # ... not its copies
    assert r.summary.flagged_unsuppressed == 2 and r.summary.suppressed == 1 and r.summary.derived == 3
    copy_sup = Suppression(repo=L.COPY, sha=L.sha(143)[:12], reason="accepted: ticket 7", expires=date(2999, 1, 1))
    wrong_sha = Suppression(repo=L.TUNED, sha="f" * 12, reason="another revision", expires=date(2999, 1, 1))
    e = {a.repo_id: a for a in _report(url, [source_sup, copy_sup, wrong_sha]).adapters}
    assert e[L.COPY].suppressed is not None and not e[L.COPY].is_active_finding  # names the copy itself
    assert e[L.TUNED].is_active_finding


def test_report_fail_on_exits_1_for_a_derived_finding(url, tmp_path):
    p = run("report", "--base", L.BASE, "--fail-on", "flagged", "--db", url)
    assert p.returncode == 1, p.stderr
    sup = tmp_path / "all.toml"  # every finding suppressed by name: the gate passes
    sup.write_text("".join(f'[[suppress]]\nrepo = "{r}"\nreason = "accepted"\nexpires = 2999-01-01\n\n'
                           for r in (L.BAD, L.COPY, L.TUNED)))  # fmt: skip
    p = run("report", "--base", L.BASE, "--fail-on", "flagged", "--suppress", str(sup), "--db", url)
    assert p.returncode == 0, p.stderr


def test_check_flags_a_copy_in_every_format_and_passes_an_independent_adapter(url):
    p = run("check", L.COPY, "--offline", "--format", "json", "--db", url)
    assert p.returncode == 1, p.stderr
    doc = json.loads(p.stdout)
    assert doc["verdict"] == "flagged" and doc["flagged"] is False  # the weights pass; the lineage flags
    assert doc["reasons"][0].startswith(f"derived_from {L.BAD}@{L.sha(1)} (similarity 0.99")
    assert doc["derived_from"]["kind"] == "copy"
    assert doc["hub_security"]["status"] == "scanned"  # shown, and the verdict is still FLAGGED
    assert doc["similarity_thresholds"]["derivative"] == pytest.approx(0.8)
    t = run("check", L.COPY, "--offline", "--db", url)
    assert t.returncode == 1 and t.stdout.startswith("FLAGGED") and f"derived_from {L.BAD}@{L.sha(1)}" in t.stdout
    p = run("check", L.NEAR, "--offline", "--format", "json", "--db", url)  # overlaps the backdoor at 0.6
    doc = json.loads(p.stdout)
    assert (p.returncode, doc["verdict"], doc["derived_from"]) == (0, "pass", None), p.stderr


def test_check_of_the_confirmed_revision_is_never_its_own_copy(url):
    p = run("check", f"{L.BAD}@{L.sha(1)}", "--offline", "--format", "json", "--db", url)
    doc = json.loads(p.stdout)
    assert p.returncode == 1 and doc["derived_from"] is None  # flagged by its probe, not by itself
    assert doc["reasons"][0] == "behavioural probe confirmed a backdoor"
    newer = json.loads(run("check", L.BAD, "--offline", "--format", "json", "--db", url).stdout)
    assert newer["sha"] == L.sha(2) and newer["derived_from"]["kind"] == "derivative"


def test_check_suppression_must_name_the_copy(url, tmp_path):
    source = tmp_path / "source.toml"
    source.write_text(f'[[suppress]]\nrepo = "{L.BAD}"\nreason = "reviewed"\nexpires = 2999-01-01\n')
    p = run("check", L.COPY, "--offline", "--format", "json", "--suppress", str(source), "--db", url)
    assert p.returncode == 1 and json.loads(p.stdout)["verdict"] == "flagged"
    own = tmp_path / "own.toml"
    own.write_text(f'[[suppress]]\nrepo = "{L.COPY}"\nreason = "accepted"\nexpires = 2999-01-01\n')
    p = run("check", L.COPY, "--offline", "--format", "json", "--suppress", str(own), "--db", url)
    assert p.returncode == 0 and json.loads(p.stdout)["verdict"] == "suppressed"


def test_fail_on_exits_1_for_findings_of_a_base_that_is_not_calibrated(tmp_path):
    # A probe-confirmed backdoor and its copies need no weight calibration to count: 1 comes before 3.
    from hubaudit.store import Store

    url = f"sqlite:///{tmp_path / 'uncalibrated.db'}"
    with Store.open(url, create=True) as store:
        L.build(store, calibrate=False)
    p = run("report", "--base", L.BASE, "--fail-on", "flagged", "--format", "json", "--db", url)
    assert p.returncode == 1, p.stderr
    doc = json.loads(p.stdout)
    assert doc["calibration"]["calibrated"] is False and doc["summary"]["derived"] >= 1
    sup = tmp_path / "all.toml"  # every finding accepted: now the missing calibration decides (3)
    sup.write_text("".join(f'[[suppress]]\nrepo = "{r}"\nreason = "accepted"\nexpires = 2999-01-01\n\n'
                           for r in (L.BAD, L.COPY, L.TUNED)))  # fmt: skip
    p = run("report", "--base", L.BASE, "--fail-on", "flagged", "--suppress", str(sup), "--db", url)
    assert p.returncode == 3, p.stderr
