"""`hubaudit scan --recursive`: adapters found under folders, verdicts from a calibrated store (read only,
never created), SARIF 2.1.0, and a table whose long paths never wrap.

In-process through the real entry point (hubaudit.cli.main.main) with real adapter folders written with
numpy and a real SQLite store filled by `hubaudit ingest` and `hubaudit calibrate`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import jsonschema
import pytest

from hubaudit.cli.scan import middle_ellipsis
from hubaudit.store import Store
from tests.report.conftest import write_lora
from tests.report.hostile import assert_terminal_safe
from tests.report.test_hostile_cli import cli

BASE = "acme/tiny-base"
OTHER = "meta-llama/Llama-3.2-1B"
SARIF_SCHEMA = json.loads((Path(__file__).parents[1] / "report" / "sarif-schema-2.1.0.json").read_text())


def _sources(out: str) -> set[str]:
    return {o["source"] for o in json.loads(out)}


def test_recursive_walk_skips_hidden_and_symlinked_folders_and_creates_no_database(tmp_path):
    root = tmp_path / "tree"
    write_lora(root / "team-a" / "one", seed=1)
    write_lora(root / "team-a" / "run" / "checkpoint-10", seed=2)  # the run folder itself is no adapter
    write_lora(root / "team-a" / "run" / "checkpoint-10" / "nested", seed=3)  # an adapter inside an adapter
    write_lora(root / ".git" / "hidden", seed=4)
    write_lora(tmp_path / "outside" / "x", seed=5)
    (root / "link").symlink_to(tmp_path / "outside")  # out of the tree: never followed
    (root / "README.md").write_text("x")
    (root / "docs").mkdir()
    db = tmp_path / "sub" / "h.db"
    code, out, err = cli("scan", "--recursive", str(root), "--format", "json", "--db", f"sqlite:///{db}")
    assert code == 0, err
    assert _sources(out) == {str(root / "team-a" / "one"), str(root / "team-a" / "run" / "checkpoint-10"),
                             str(root / "team-a" / "run" / "checkpoint-10" / "nested")}  # fmt: skip
    assert all(o["status"] == "ok" for o in json.loads(out))
    judgements = [o["judgement"] for o in json.loads(out)]
    assert {(j["verdict"], j["why"]) for j in judgements} == {("not_judged", "no_database")}
    assert "1 symlinked folder(s) not followed" in err
    assert f"note: no verdicts: no hubaudit database at {db}" in err and len(err.splitlines()) == 3
    assert not (tmp_path / "sub").exists()
    # the default database (HUBAUDIT_HOME) is not created either
    code, _, err = cli("scan", "-r", str(root))
    assert code == 0, err
    home = Path(os.environ["HUBAUDIT_HOME"])
    assert not home.exists() or os.listdir(home) == []


def test_without_recursive_a_folder_of_adapters_is_an_error_with_a_hint(tmp_path):
    write_lora(tmp_path / "tree" / "one", seed=1)
    code, out, err = cli("scan", str(tmp_path / "tree"), "--format", "json")
    assert code == 3
    (o,) = json.loads(out)
    assert o["status"] == "error" and o["judgement"]["why"] == "not_scored"
    assert "is not an adapter folder; --recursive scans the adapters under it" in err


def test_the_walk_is_capped_before_anything_is_scanned(tmp_path):
    for i in range(3):
        write_lora(tmp_path / "tree" / f"a{i}", seed=i)
    code, out, err = cli("scan", "-r", str(tmp_path / "tree"), "--max-adapters", "2")
    assert code == 2 and out == ""
    assert err.startswith("Error: more than 2 adapters under ") and "--max-adapters" in err
    named = [str(tmp_path / "tree" / f"a{i}") for i in range(3)]
    code, out, err = cli("scan", "-r", *named, "--max-adapters", "2")
    assert code == 2 and "3 adapters to scan, more than --max-adapters 2" in err
    (tmp_path / "empty").mkdir()
    code, out, err = cli("scan", "-r", str(tmp_path / "empty"))
    assert code == 2 and "no adapter under" in err and "no adapter found" in err


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory) -> tuple[str, Path]:
    """A store with 12 adapters of BASE calibrated at 10 % FPR (N=12 is enough: not low confidence), and a
    tree to scan: an adapter with one module 8x hotter, a clean one, one of another base, a broken one."""
    top = tmp_path_factory.mktemp("cal")
    url = f"sqlite:///{top / 'h.db'}"
    pop = [str(write_lora(top / "pop" / f"c{i}", seed=i)) for i in range(12)]
    code, _, err = cli("ingest", *pop, "--base", BASE, "--db", url)
    assert code == 0, err
    code, _, err = cli("calibrate", "--base", BASE, "--db", url, "--min-n", "5", "--target-fpr", "0.1")
    assert code == 0, err
    tree = top / "tree"
    write_lora(tree / "team-a" / "suspect", seed=500, hot=8.0)
    write_lora(tree / "team-b" / "fine", seed=501)
    write_lora(tree / "team-b" / "other", seed=502, base=OTHER)
    (tree / "team-c" / "broken").mkdir(parents=True)
    (tree / "team-c" / "broken" / "adapter_config.json").write_text("{}")
    return url, tree


def _by_name(items: list[dict], key: str = "source") -> dict[str, dict]:
    return {Path(o[key]).name: o for o in items}


def test_sarif_validates_and_carries_the_verdicts(calibrated):
    url, tree = calibrated
    with Store.open(url) as store:
        runs_before = len(store.runs())
    code, out, err = cli("scan", "-r", str(tree), "--format", "sarif", "--db", url)
    assert code == 3, err  # the broken adapter could not be scored
    doc = json.loads(out)
    jsonschema.validate(doc, SARIF_SCHEMA)
    run = doc["runs"][0]
    rules = [r["id"] for r in run["tool"]["driver"]["rules"]]
    results: dict[str, list[str]] = {}
    for r in run["results"]:
        assert rules[r["ruleIndex"]] == r["ruleId"]
        assert r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"].startswith("file:///")
        results.setdefault(Path(r["properties"]["path"]).name, []).append(r["ruleId"])
    # a pass is never a result; everything else is, with the report's rule ids
    assert results == {"suspect": ["HA001"], "other": ["HA010"], "broken": ["HA004"]}
    suspect = next(r for r in run["results"] if r["ruleId"] == "HA001")
    assert suspect["properties"]["verdict"] == "flagged" and suspect["properties"]["calibration_version"] == 1
    assert suspect["properties"]["calibration_n"] == 12 and suspect["level"] == "warning"
    other = next(r for r in run["results"] if r["ruleId"] == "HA010")
    assert other["properties"]["why_not_judged"] == "base_unknown" and OTHER in other["message"]["text"]
    with Store.open(url) as store:  # read only: scan records nothing
        assert len(store.runs()) == runs_before and store.bases() == [BASE]


def test_json_and_table_verdicts_and_base_override(calibrated):
    url, tree = calibrated
    code, out, err = cli("scan", "-r", str(tree), "--format", "json", "--db", url)
    assert code == 3
    j = {k: v["judgement"] for k, v in _by_name(json.loads(out)).items()}
    assert j["suspect"]["verdict"] == "flagged" and j["suspect"]["weights_flagged"] is True
    assert j["fine"]["verdict"] == "pass" and j["fine"]["calibration_n"] == 12 and j["fine"]["base"] == BASE
    assert (j["other"]["verdict"], j["other"]["why"], j["other"]["base"]) == ("not_judged", "base_unknown", OTHER)
    assert (j["broken"]["verdict"], j["broken"]["why"]) == ("not_judged", "not_scored")
    assert "1 FLAGGED, 1 pass, 0 pass (low confidence), 2 not judged" in err

    code, out, err = cli("scan", "-r", str(tree), "--db", url)
    assert max(map(len, out.splitlines())) <= 100
    rows = {line.split()[0].rsplit("/", 1)[-1]: line for line in out.splitlines()[2:] if line.startswith("/")}
    assert "FLAGGED" in rows["suspect"] and rows["fine"].rstrip().endswith("pass")
    assert "not judged: base unknown" in rows["other"] and "not judged: no adapter_model" in rows["broken"]

    # --base judges the other base's adapter against this one, and says the bases differ
    code, out, err = cli("scan", str(tree / "team-b" / "other"), "--base", BASE, "--db", url, "--format", "sarif")
    assert code == 0, err
    doc = json.loads(out)
    jsonschema.validate(doc, SARIF_SCHEMA)
    ids = [r["ruleId"] for r in doc["runs"][0]["results"]]
    assert "HA005" in ids and "HA010" not in ids
    (r5,) = [r for r in doc["runs"][0]["results"] if r["ruleId"] == "HA005"]
    assert OTHER in r5["message"]["text"] and BASE in r5["message"]["text"]


def test_long_paths_never_wrap_at_100_columns(tmp_path):
    root = tmp_path / ("d" * 70) / ("e" * 70)
    for i in range(2):
        write_lora(root / f"adapter-\x1b[2J-{i}", seed=i)
    code, out, err = cli("scan", "-r", str(tmp_path))
    assert code == 0, err
    assert_terminal_safe(out)
    lines = out.splitlines()
    assert max(map(len, lines)) <= 100
    assert len(lines) == 2 + 2  # header, rule, one line per adapter
    for i, line in enumerate(lines[2:]):
        assert f"adapter-\\x1b[2J-{i}" in line and "…" in line and line.startswith(str(tmp_path)[:8])


def test_middle_ellipsis():
    assert middle_ellipsis("short", 10) == "short"
    s = middle_ellipsis("/very/long/path/to/the/adapter-folder-name", 20)
    assert len(s) == 20 and s.startswith("/very") and s.endswith("folder-name") and s.count("…") == 1
