"""First contact: read-only commands on a missing database or an unknown base say what to run, exit 3
("could not be audited") and create nothing; ``hubaudit --version``; low confidence in every report format.
Real subprocesses of the installed entry point against real SQLite files."""

from __future__ import annotations

import csv
import io
import json
import os

import pytest

from hubaudit import __version__
from hubaudit.report import FORMATS
from tests.calibrate.test_low_confidence import REASON, small_store  # noqa: F401 - a fixture
from tests.report.conftest import BASE
from tests.report.test_cli import run

OTHER = "Qwen/Qwen2.5-1.5B"


def test_version():
    p = run("--version")
    assert p.returncode == 0 and p.stdout.strip() == f"hubaudit {__version__}"


@pytest.mark.parametrize("args", [("report", "--base", OTHER), ("export", "--base", OTHER), ("check", "org/name", "--offline")])
def test_missing_database_is_not_created(tmp_path, args):
    db_dir = tmp_path / "nested" / "dir"
    url = f"sqlite:///{db_dir / 'hubaudit.db'}"
    home = tmp_path / "home"
    home.mkdir()
    p = run(*args, "--db", url, env={"HUBAUDIT_HOME": str(home)})
    assert p.returncode == 3, p.stdout + p.stderr
    assert p.stdout == ""
    first = p.stderr.splitlines()[0]
    assert first.startswith("Error: no hubaudit database at ") and "hubaudit crawl --base" in first
    assert "hubaudit ingest PATH --base" in first
    assert not (tmp_path / "nested").exists()  # neither the file nor its directory
    assert os.listdir(home) == []


def test_default_database_is_not_created(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    p = run("report", "--base", OTHER, env={"HUBAUDIT_HOME": str(home)})
    assert p.returncode == 3, p.stderr
    assert f"hubaudit crawl --base {OTHER}" in p.stderr
    assert sorted(os.listdir(home)) == []


def test_unknown_base_lists_known_bases_and_exits_3(small_store):  # noqa: F811
    url, _ = small_store
    db = url.removeprefix("sqlite:///")
    before = sorted(os.listdir(os.path.dirname(db)))
    for cmd in ("report", "export"):
        p = run(cmd, "--base", OTHER, "--db", url)
        assert p.returncode == 3, p.stderr
        assert p.stdout == ""
        assert p.stderr.startswith(f"Error: base {OTHER} is unknown to the store")
        assert f"hubaudit crawl --base {OTHER}" in p.stderr and f"hubaudit ingest PATH --base {OTHER}" in p.stderr
        assert f"the store knows: {BASE}" in p.stderr
    p = run("check", "few/a0", "--base", OTHER, "--db", url, "--offline", "--format", "json")
    doc = json.loads(p.stdout)
    assert p.returncode == 3 and doc["verdict"] == "not_calibrated"
    assert doc["reasons"] == [f"base {OTHER} is unknown to the store (it knows: {BASE})"]
    assert f"hubaudit ingest PATH --base {OTHER}" in doc["hint"]
    after = sorted(f for f in os.listdir(os.path.dirname(db)) if not f.endswith(("-wal", "-shm")))
    assert after == [f for f in before if not f.endswith(("-wal", "-shm"))]


def test_every_report_format_shows_low_confidence(small_store, tmp_path):  # noqa: F811
    url, _ = small_store
    assert set(FORMATS) == {"table", "json", "jsonl", "csv", "markdown", "html", "sarif", "cyclonedx"}
    out = {}
    for fmt in FORMATS:
        target = tmp_path / f"r.{fmt}"
        p = run("report", "--base", BASE, "--db", url, "--format", fmt, "-o", str(target))
        assert p.returncode == 0, p.stderr
        out[fmt] = target.read_text()
    assert "passed 3 (3 low confidence)" in out["table"] and "LOW CONFIDENCE: 3 pass(es)" in out["table"]
    assert f"low confidence: {REASON}" in out["table"]
    doc = json.loads(out["json"])
    assert doc["summary"]["low_confidence"] == 3
    assert all(a["low_confidence"] is True and a["low_confidence_reason"] == REASON and a["flagged"] is False
               for a in doc["adapters"])  # fmt: skip
    assert any(s["low_confidence"] for s in doc["calibration"]["strata"])
    lines = [json.loads(line) for line in out["jsonl"].splitlines()]
    assert [x["low_confidence"] for x in lines if x["entry_type"] == "adapter"] == [True] * 3
    rows = list(csv.DictReader(io.StringIO(out["csv"])))
    assert [r["low_confidence"] for r in rows] == ["true"] * 3 and rows[0]["low_confidence_reason"] == REASON
    assert "3 low confidence" in out["markdown"] and "LOW CONFIDENCE" in out["markdown"]
    assert "passed, low confidence" in out["html"] and 'id="low-confidence"' in out["html"]
    results = json.loads(out["sarif"])["runs"][0]["results"]
    assert [r["ruleId"] for r in results] == ["HA011"] * 3 and REASON in results[0]["message"]["text"]
    cdx = [{p["name"]: p["value"] for p in c["properties"]} for c in json.loads(out["cyclonedx"])["components"]]
    assert [(c["hubaudit:verdict"], c["hubaudit:low_confidence_reason"]) for c in cdx] == [("pass_low_confidence", REASON)] * 3


def test_export_all_marks_low_confidence(small_store):  # noqa: F811
    url, _ = small_store
    p = run("export", "--base", BASE, "--db", url, "--all", "--format", "json")
    assert p.returncode == 0, p.stderr
    rows = json.loads(p.stdout)["rows"]
    assert len(rows) == 3 and all(r["flagged"] is False and r["low_confidence"] is True for r in rows)


def test_report_fail_on_flagged_exits_3_on_low_confidence_passes(small_store):  # noqa: F811
    url, _ = small_store
    assert run("report", "--base", BASE, "--db", url, "--fail-on", "flagged").returncode == 3
    p = run("report", "--base", BASE, "--db", url, "--fail-on", "flagged", "--accept-low-confidence")
    assert p.returncode == 0, p.stderr
