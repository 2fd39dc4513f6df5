"""`hubaudit psim ...` as a user runs it (in-process through the console script's entry point,
tests/_cli.py): exit codes, stdout = data, one-line errors."""

from __future__ import annotations

import csv
import io
import json

import pytest

from tests._cli import CliResult, run_cli
from tests.psim.conftest import add_trigger, sentences, write_jsonl


def hubaudit(*args: str, cwd=None) -> CliResult:
    # torch runs on one thread in this process already (conftest.py)
    return run_cli(*args, env={"COLUMNS": "200", "NO_COLOR": "1"}, cwd=cwd)


def assert_one_line_error(p: CliResult, code: int, needle: str) -> None:
    assert p.returncode == code, p.stderr
    assert "Traceback" not in p.stderr and p.stdout == ""
    errors = [line for line in p.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and needle in errors[0], p.stderr
    assert all(line.startswith(("Error:", "Hint:")) for line in p.stderr.splitlines() if line.strip()), p.stderr


BAD_FILES = {
    "missing-column": ("d.csv", b"sentence,label\na,0\nb,1\n", "no column 'text'"),
    "empty": ("d.jsonl", b"", "file is empty"),
    "non-utf8": ("d.csv", "text,label\ncaf\xe9,0\nb,1\n".encode("latin-1"), "not valid UTF-8"),
    "label-out-of-range": ("d.csv", b"text,label\na,-1\nb,1\nc,0\n", "out of range"),
    "single-class": ("d.jsonl", b'{"text": "a", "label": 1}\n{"text": "b", "label": 1}\n', "single class"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_train_rejects_bad_data_with_one_line_and_exit_2(case, tiny_base, tmp_path):
    name, content, needle = BAD_FILES[case]
    (tmp_path / name).write_bytes(content)
    p = hubaudit("psim", "train", "--model", tiny_base, "--data", tmp_path / name, "-o", tmp_path / "out")
    assert_one_line_error(p, 2, needle)
    assert not (tmp_path / "out").exists()


def test_usage_errors_for_model_psim_dir_and_options(tiny_base, task_data, tmp_path):
    assert_one_line_error(hubaudit("psim", "train", "--model", "nobody/not-cached", "--data", task_data, "-o", tmp_path / "o"), 2,
                          "neither a local directory nor in the local Hugging Face cache")
    assert_one_line_error(hubaudit("psim", "train", "--model", tiny_base, "--data", task_data, "--target-frr", "1.5", "-o", tmp_path / "o"), 2,
                          "--target-frr")
    assert_one_line_error(hubaudit("psim", "screen", tmp_path, "--data", task_data), 2, "not a PSIM directory")
    assert_one_line_error(hubaudit("psim", "train", "--model", tiny_base, "--adapter", tmp_path, "--data", task_data, "-o", tmp_path / "o"), 2,
                          "not a PEFT adapter directory")


def test_help_lists_the_subcommands():
    p = hubaudit("psim", "--help")
    assert p.returncode == 0 and all(c in p.stdout for c in ("train", "screen", "probe"))


@pytest.fixture(scope="module")
def trained(poisoned_base, task_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "psim"
    p = hubaudit("psim", "train", "--model", poisoned_base, "--data", task_data, "--peft", "lora", "--epochs", "3", "-o", out)
    assert p.returncode == 0, p.stderr
    assert p.stdout == "" and "tau=" in p.stderr
    return out


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    sx, sy = sentences(40, seed=9)
    texts = sx[:20] + [add_trigger(x) for x, y in zip(sx, sy) if y == 1][:10]
    return write_jsonl(tmp_path_factory.mktemp("cli") / "mixed.jsonl", texts, [0] * len(texts)), len(texts)


def test_screen_json_csv_jsonl_table_and_cleaned_parquet(trained, mixed, tmp_path):
    data, n = mixed
    j = hubaudit("psim", "screen", trained, "--data", data, "--format", "json", "-o", tmp_path / "clean.parquet")
    assert j.returncode == 0, j.stderr
    doc = json.loads(j.stdout)
    flagged = [s["flagged"] for s in doc["samples"]]
    assert doc["summary"]["n"] == n and doc["summary"]["flagged"] == sum(flagged) > 0
    import pyarrow.parquet as pq

    kept = pq.read_table(tmp_path / "clean.parquet").column("text").to_pylist()
    assert kept == [s["text"] for s in doc["samples"] if not s["flagged"]]
    c = hubaudit("psim", "screen", trained, "--data", data, "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(c.stdout)))
    assert [(float(r["confidence"]), r["flagged"] == "True") for r in rows] == [(s["confidence"], s["flagged"]) for s in doc["samples"]]
    assert " at tau=" in c.stderr
    jl = hubaudit("psim", "screen", trained, "--data", data, "--format", "jsonl")
    assert [json.loads(line)["confidence"] for line in jl.stdout.splitlines()] == [s["confidence"] for s in doc["samples"]]
    t = hubaudit("psim", "screen", trained, "--data", data)
    assert t.returncode == 0 and t.stdout.splitlines()[0].split() == ["index", "confidence", "flagged", "text"]


def test_fail_on_flagged_exits_1_only_when_something_is_flagged(trained, mixed, task_data):
    data, _ = mixed
    assert hubaudit("psim", "screen", trained, "--data", data, "--format", "jsonl", "--fail-on", "flagged").returncode == 1
    assert hubaudit("psim", "screen", trained, "--data", data, "--format", "jsonl", "--fail-on", "never").returncode == 0
    # τ above every confidence: nothing flagged, exit 0
    assert hubaudit("psim", "screen", trained, "--data", data, "--format", "jsonl", "--fail-on", "flagged", "--tau", "1.0").returncode == 0


def test_probe_subcommand_reports_per_probe_rates(trained, task_data, tmp_path):
    battery = tmp_path / "b.json"
    battery.write_text(json.dumps({"probes": ["cf", {"text": "as an aside", "category": "filler"}]}))
    p = hubaudit("psim", "probe", trained, "--data", task_data, "--battery", battery, "--probe", "per RFC 8472", "--format", "json", "--limit", "30")
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert [x["probe"] for x in doc["probes"]] == ["cf", "as an aside", "per RFC 8472"]
    assert doc["summary"]["extreme"] == [x["probe"] for x in doc["probes"] if x["extreme"]]
    assert_one_line_error(hubaudit("psim", "probe", trained, "--data", task_data), 2, "give a probe battery")
