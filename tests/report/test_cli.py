"""``hubaudit report|export|check`` as a user runs them (in-process through the console script's
entry point, tests/_cli.py) against a real SQLite store (conftest.py), checking streams, exit codes,
files and suppressions."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from tests._cli import CliResult, run_cli
from tests.report.conftest import BASE, OUTLIERS, hexsha, write_lora

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str, env: dict | None = None) -> CliResult:
    return run_cli(*args, env={"COLUMNS": "100", "NO_COLOR": "1", **(env or {})}, cwd=ROOT)


def test_report_table_fits_100_columns_and_lists_findings(store_url):
    p = run("report", "--base", BASE, "--db", store_url)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert max(map(len, lines)) <= 100
    assert "population 43" in p.stdout and "Flagged adapter revisions (2)" in p.stdout
    assert f"https://huggingface.co/{OUTLIERS[0]}/tree/{hexsha(100)}" in p.stdout
    assert "gated 2" in p.stdout and "pickle_format 1" in p.stdout
    assert "backdoor" in p.stdout  # the probe verdict


def test_report_json_stdout_is_only_data(store_url, suppress_file):
    p = run("report", "--base", BASE, "--format", "json", "--suppress", str(suppress_file), "--db", store_url)
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)  # nothing else on stdout
    assert doc["summary"]["population"] == 43 and doc["calibration"]["calibrated"] is True
    by = {a["repo_id"]: a for a in doc["adapters"]}
    assert by[OUTLIERS[0]]["flagged"] is True and by[OUTLIERS[0]]["probe"]["flagged"] is True
    assert by[OUTLIERS[0]]["suppressed"] is None  # its entry expired in 2020
    assert by[OUTLIERS[1]]["suppressed"]["reason"].startswith("reviewed")
    assert by["mixed/provenance"]["provenance_mismatch"] is True
    assert [x["repo"] for x in doc["suppressions"]["expired"]] == [OUTLIERS[0]]
    assert "expired 2020-01-01" in p.stderr  # the warning goes to stderr


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "markdown", "sarif", "html"])
def test_every_format_through_the_cli(store_url, fmt):
    p = run("report", "--base", BASE, "--format", fmt, "--db", store_url)
    assert p.returncode == 0, p.stderr
    if fmt == "jsonl":
        assert json.loads(p.stdout.splitlines()[-1])["entry_type"] == "summary"
    elif fmt == "csv":
        assert len(list(csv.DictReader(io.StringIO(p.stdout)))) == 43
    elif fmt == "sarif":
        assert json.loads(p.stdout)["version"] == "2.1.0"
    elif fmt == "html":
        assert p.stdout.startswith("<!DOCTYPE html>") and p.stdout.count('class="plot heatmap"') == 2
    else:
        assert p.stdout.startswith("# hubaudit report")


def test_fail_on_flagged_exit_codes(store_url, tmp_path):
    assert run("report", "--base", BASE, "--fail-on", "flagged", "--db", store_url).returncode == 1
    assert run("report", "--base", BASE, "--fail-on", "never", "--db", store_url).returncode == 0
    # Suppress both findings: the gate passes, and the findings are still shown as suppressed.
    sup = tmp_path / "all.toml"
    sup.write_text("".join(f'[[suppress]]\nrepo = "{r}"\nreason = "accepted"\nexpires = 2999-01-01\n' for r in OUTLIERS))
    p = run("report", "--base", BASE, "--fail-on", "flagged", "--suppress", str(sup), "--db", store_url)
    assert p.returncode == 0, p.stdout
    assert p.stdout.count("suppressed until 2999-01-01") == 2
    # An unknown (hence uncalibrated) base never passes the gate: no report, what to run, exit 3.
    p = run("report", "--base", "nobody/unknown", "--fail-on", "flagged", "--format", "json", "--db", store_url)
    assert p.returncode == 3
    assert p.stdout == "" and "unknown to the store" in p.stderr and "hubaudit crawl --base nobody/unknown" in p.stderr


def test_output_file_is_written_and_stdout_stays_empty(store_url, tmp_path):
    out = tmp_path / "r.sarif"
    out.write_text("previous")
    p = run("report", "--base", BASE, "--format", "sarif", "-o", str(out), "--db", store_url)
    assert p.returncode == 0 and p.stdout == ""
    assert json.loads(out.read_text())["runs"][0]["automationDetails"]["id"] == f"hubaudit/{BASE}/"
    assert [x.name for x in tmp_path.iterdir()] == ["r.sarif"]  # no temp file left behind
    assert "wrote sarif report" in p.stderr


def test_bad_usage_leaves_no_output_file(store_url, tmp_path):
    out = tmp_path / "r.json"
    p = run("report", "--base", BASE, "--since", "yesterday-ish", "-o", str(out), "--db", store_url)
    assert p.returncode == 2 and not out.exists() and "--since" in p.stderr
    bad = tmp_path / "bad.toml"
    bad.write_text('[[suppress]]\nrepo = "a/b"\nexpires = 2030-01-01\n')
    p = run("report", "--base", BASE, "--suppress", str(bad), "-o", str(out), "--db", store_url)
    assert p.returncode == 3 and not out.exists() and "'reason' is required" in p.stderr


def test_since_filters_revisions(store_url):
    p = run("report", "--base", BASE, "--since", "2999-01-01", "--format", "json", "--db", store_url)
    assert json.loads(p.stdout)["summary"]["population"] == 0
    p = run("report", "--base", BASE, "--since", "7d", "--format", "json", "--db", store_url)
    assert json.loads(p.stdout)["summary"]["population"] == 43


def test_export_blocklist(store_url, tmp_path, suppress_file):
    out = tmp_path / "block.csv"
    p = run("export", "--base", BASE, "--flagged", "--format", "csv", "-o", str(out), "--suppress",
            str(suppress_file), "--db", store_url)
    assert p.returncode == 0 and p.stdout == ""
    rows = list(csv.DictReader(out.open()))
    assert [r["repo_id"] for r in rows] == [OUTLIERS[0]]  # the other one is suppressed
    assert rows[0]["sha"] == hexsha(100) and rows[0]["base"] == BASE and rows[0]["probe_flagged"] == "true"
    assert "global_frobN_std" in rows[0]["reasons"].split(";") and float(rows[0]["threshold"]) > 0
    p = run("export", "--base", BASE, "--format", "jsonl", "--db", store_url)
    assert {json.loads(x)["repo_id"] for x in p.stdout.splitlines()} == set(OUTLIERS)


def test_check_repo_exit_codes(store_url, suppress_file):
    p = run("check", OUTLIERS[0], "--db", store_url)
    assert p.returncode == 1 and p.stdout.startswith("FLAGGED")
    # Its suppression expired: still flagged, and the lapsed entry is reported.
    p = run("check", OUTLIERS[0], "--format", "json", "--suppress", str(suppress_file), "--db", store_url)
    doc = json.loads(p.stdout)
    assert p.returncode == 1 and doc["verdict"] == "flagged" and doc["suppressed"] is None
    assert doc["expired_suppressions"][0]["expires"] == "2020-01-01" and "expired 2020-01-01" in p.stderr
    p = run("check", f"{OUTLIERS[1]}@{hexsha(101)}", "--format", "json", "--suppress", str(suppress_file),
            "--db", store_url)
    doc = json.loads(p.stdout)
    assert p.returncode == 0 and doc["verdict"] == "suppressed" and doc["flagged"] is True
    p = run("check", "org0/clean-0", "--format", "json", "--db", store_url)
    doc = json.loads(p.stdout)
    assert p.returncode == 0 and doc["verdict"] == "pass" and doc["calibration_version"] == 1
    assert 0 < doc["score"] < doc["threshold"] and doc["margin"] < 0
    p = run("check", "old/pickle-adapter", "--db", store_url)
    assert p.returncode == 3 and p.stdout.startswith("NOT AUDITED") and "pickle_format" in p.stdout
    p = run("check", "never/seen", "--offline", "--db", store_url)
    assert p.returncode == 3 and "crawl it first" in p.stderr
    p = run("check", "not a repo", "--db", store_url)
    assert p.returncode == 2


def test_check_local_path_is_scored_now(store_url, tmp_path):
    clean = write_lora(tmp_path / "mine", seed=77)
    p = run("check", str(clean), "--format", "json", "--db", store_url)
    doc = json.loads(p.stdout)
    assert p.returncode == 0 and doc["verdict"] == "pass" and doc["source"] == "scanned", doc
    assert doc["base"] == BASE  # from the adapter's config
    odd = write_lora(tmp_path / "odd", seed=78, hot=8.0)
    p = run("check", str(odd), "--db", store_url)
    assert p.returncode == 1 and "global_frobN_std" in p.stdout
    # Declared base without a calibration: not calibrated, exit 3 (never a pass).
    other = write_lora(tmp_path / "other", seed=79, base="nobody/uncalibrated")
    p = run("check", str(other), "--format", "json", "--db", store_url)
    assert p.returncode == 3 and json.loads(p.stdout)["verdict"] == "not_calibrated"
    # --base overrides the declared base.
    assert run("check", str(other), "--base", BASE, "--db", store_url).returncode == 0


def test_check_unreadable_local_path_is_not_audited(store_url, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "adapter_config.json").write_text('{"peft_type": "LORA", "r": 4}')
    (broken / "adapter_model.safetensors").write_bytes(b"\x00" * 7)
    p = run("check", str(broken), "--base", BASE, "--format", "json", "--db", store_url)
    assert p.returncode == 3 and json.loads(p.stdout)["verdict"] == "not_audited"


def test_check_on_an_empty_database_is_not_calibrated(tmp_path):
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    p = run("check", "org/x", "--offline", "--db", url)
    assert p.returncode == 3


def test_check_fetches_a_hub_repo_the_store_lacks(store_url, tmp_path, adapters_dir):
    from tests.fakehub import FakeHub

    with FakeHub() as hub:
        hub.add_repo("new/clean-lora", write_lora(tmp_path / "c", seed=500))
        hub.add_repo("new/odd-lora", write_lora(tmp_path / "o", seed=501, hot=8.0))
        hub.add_repo("new/pickle-lora", {"adapter_config.json": b'{"peft_type": "LORA"}',
                                         "adapter_model.bin": b"not unpickled"})
        env = {"HF_ENDPOINT": hub.url}
        p = run("check", "new/clean-lora", "--format", "json", "--db", store_url, "--timeout", "120", env=env)
        doc = json.loads(p.stdout)
        assert p.returncode == 0 and doc["source"] == "hub" and doc["verdict"] == "pass", (doc, p.stderr)
        assert doc["base"] == BASE and len(doc["sha"]) == 40
        assert doc["probed"] is False and doc["note"].startswith("weights only")  # fetched, never probed
        p = run("check", "new/odd-lora", "--db", store_url, env=env)
        assert p.returncode == 1 and p.stdout.startswith("FLAGGED")
        p = run("check", "new/pickle-lora", "--format", "json", "--base", BASE, "--db", store_url, env=env)
        assert p.returncode == 3 and json.loads(p.stdout)["status_reason"] == "pickle_format"
        p = run("check", "new/missing", "--format", "json", "--db", store_url, env=env)
        assert p.returncode == 3 and json.loads(p.stdout)["verdict"] == "not_audited"
        # The gate is read-only: nothing fetched was recorded.
        from hubaudit.store import Store

        with Store.open(store_url) as store:
            assert store.find_revision("new/clean-lora") is None
