"""A file the user names (prompts, battery, thresholds) that is missing or malformed is a usage error:
one line on stderr, exit 2, no traceback, before any model is loaded; and the run record says so."""

from __future__ import annotations

import json

import pytest

from tests._cli import CliResult, run_cli


def _hubaudit(*args: str) -> CliResult:
    return run_cli(*args)


def _one_line_usage_error(p: CliResult, needle: str) -> None:
    assert p.returncode == 2, p.stderr
    assert p.stdout == "" and "Traceback" not in p.stderr and "internal error" not in p.stderr
    assert p.stderr.startswith("Error: ") and needle in p.stderr.splitlines()[0], p.stderr
    assert len(p.stderr.splitlines()) <= 2  # the message, and at most a hint


@pytest.fixture()
def dirs(tmp_path):
    (tmp_path / "adapter").mkdir()
    (tmp_path / "base").mkdir()
    (tmp_path / "bad-battery.json").write_text(json.dumps({"probes": [{"weight": 1}]}))
    (tmp_path / "not-json.json").write_text("{\"probes\": [")
    (tmp_path / "bad-thresholds.json").write_text("{\"gap\": ")
    (tmp_path / "bad-prompts.jsonl").write_text("not json\n")
    return tmp_path


def test_missing_prompts_file_is_exit_2_for_every_probing_command(dirs):
    missing = str(dirs / "missing.jsonl")
    a, b = str(dirs / "adapter"), str(dirs / "base")
    _one_line_usage_error(_hubaudit("probe-adapter", a, "--base-model", b, "--prompts", missing), "prompts file")
    _one_line_usage_error(_hubaudit("probe-calibrate", a, "--base-model", b, "--out", str(dirs / "th.json"),
                                    "--prompts", missing), "prompts file")
    _one_line_usage_error(_hubaudit("probe", "--base", "org/base", "--db", f"sqlite:///{dirs / 'h.db'}",
                                    "--base-model-path", b, "--prompts", missing), "prompts file")
    _one_line_usage_error(_hubaudit("probe-adapter", a, "--base-model", b, "--prompts", str(dirs / "bad-prompts.jsonl")),
                          "bad-prompts.jsonl:1")
    # psim reads its evaluation texts from --data
    _one_line_usage_error(_hubaudit("psim", "screen", str(dirs), "--data", str(dirs / "missing.csv")), "")


def test_malformed_battery_and_thresholds_files_are_exit_2(dirs):
    a, b = str(dirs / "adapter"), str(dirs / "base")
    for bad in ("bad-battery.json", "not-json.json"):
        _one_line_usage_error(_hubaudit("probe-adapter", a, "--base-model", b, "--battery", str(dirs / bad)), "battery")
        _one_line_usage_error(_hubaudit("psim", "probe", str(dirs / "no-psim"), "--data", str(dirs / "x.csv"),
                                        "--battery", str(dirs / bad)), "battery")
    _one_line_usage_error(_hubaudit("probe-adapter", a, "--base-model", b, "--thresholds", str(dirs / "bad-thresholds.json")),
                          "thresholds file")
    _one_line_usage_error(_hubaudit("probe-adapter", a, "--base-model", b, "--thresholds", str(dirs / "none.json")),
                          "thresholds file")


def test_a_failing_probe_run_is_recorded_finished_with_its_exit_code(dirs):
    from hubaudit.store import Store

    url = f"sqlite:///{dirs / 'h.db'}"
    p = _hubaudit("probe", "--base", "org/base", "--db", url, "--base-model-path", str(dirs / "base"),
                  "--prompts", str(dirs / "missing.jsonl"))
    assert p.returncode == 2, p.stderr
    with Store.open(url) as store:
        (run,) = [r for r in store.runs() if r["command"] == "probe"]
    assert run["finished_at"] is not None and run["exit_status"] == 2


def test_a_probe_run_with_nothing_queued_is_recorded_as_a_success(dirs):
    from hubaudit.store import Store

    url = f"sqlite:///{dirs / 'h.db'}"
    p = _hubaudit("probe", "--base", "org/base", "--db", url, "--base-model-path", str(dirs / "base"), "--format", "json")
    assert p.returncode == 0, p.stderr
    with Store.open(url) as store:
        (run,) = [r for r in store.runs() if r["command"] == "probe"]
    assert run["finished_at"] is not None and run["exit_status"] == 0 and run["counts"]["claimed"] == 0


def test_recorded_run_records_the_exit_code_the_cli_maps_an_error_to(tmp_path):
    import typer

    from hubaudit.errors import ExecutorError
    from hubaudit.pipeline.runs import recorded_run
    from hubaudit.store import Store

    with Store.open(f"sqlite:///{tmp_path / 'r.db'}", create=True) as store:
        for exc, code in ((ExecutorError("ray is gone"), 6), (typer.Exit(1), 1), (RuntimeError("bug"), 70),
                          (KeyboardInterrupt(), 130)):
            with pytest.raises(type(exc)), recorded_run(store, "probe", {}) as run:
                run.counts = {"probed": 1}
                raise exc
            last = store.runs(limit=1)[0]
            assert (last["exit_status"], last["counts"]) == (code, {"probed": 1}) and last["finished_at"] is not None


def test_psim_probe_accepts_every_battery_probe_accepts():
    """One loader: `psim probe --battery paper-21-B` gets the same 20 probes as `probe --battery paper-21-B`."""
    from hubaudit.pipeline.psim import battery_items
    from hubaudit.probe.batteries import builtin_names, load_battery

    for name in builtin_names():
        assert [i["probe"] for i in battery_items(name)] == [p.prefix for p in load_battery(name).probes]
    assert len(battery_items("paper-21-B")) == 20


def test_psim_probe_cli_takes_a_battery_subset_name(tmp_path):
    # the battery is accepted: what stops this run is the missing PSIM directory, not the battery name
    p = _hubaudit("psim", "probe", str(tmp_path / "no-psim"), "--data", str(tmp_path / "x.csv"), "--battery", "paper-21-B")
    assert p.returncode == 2 and "not a PSIM directory" in p.stderr and "battery" not in p.stderr, p.stderr
