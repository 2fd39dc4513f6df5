"""One registry per seam, and the CLI choices are exactly its keys: every choice has an
implementation and every implementation can be chosen.

Seams: executors (``--executor``), probe modes (``--mode``), shipped probe batteries
(``--battery``), row output formats (``--format`` of the commands that write rows), report and
export formats.
"""

from __future__ import annotations

import io
import json
from enum import Enum

import pytest
import typer

from hubaudit.executors import EXECUTORS, Executor, ExecutorName, make_executor
from hubaudit.executors.probe_exec import PROBE_EXECUTORS


def _commands() -> dict[str, object]:
    """Every registered command (``psim probe`` for sub-commands), as Click sees it."""
    from hubaudit.cli.app import app
    from hubaudit.cli.main import _register

    _register()
    out: dict[str, object] = {}

    def walk(cmd, prefix: str) -> None:
        for name, sub in getattr(cmd, "commands", {}).items():
            path = f"{prefix} {name}".strip()
            out[path] = sub
            walk(sub, path)

    walk(typer.main.get_command(app), "")
    return out


def _choices(command: str, option: str) -> list[str]:
    """The values ``command OPTION`` accepts: those of the enum Typer validates it with."""
    params = [p for p in _commands()[command].params if option in p.opts]  # type: ignore[attr-defined]
    assert len(params) == 1, f"{command} has no {option}"
    enum = params[0].type_descriptor.annotation
    assert isinstance(enum, type) and issubclass(enum, Enum), f"{command} {option} is not a choice"
    return [e.value for e in enum]


# ---------------------------------------------------------------- executors
def test_every_executor_name_loads_an_executor_of_that_name():
    assert [e.value for e in ExecutorName] == list(EXECUTORS)
    for name, load in EXECUTORS.items():
        if name == "ray":
            pytest.importorskip("ray")
        cls = load()
        assert issubclass(cls, Executor) and cls.name == name


def test_every_executor_can_be_chosen_and_probed_with():
    assert _choices("crawl", "--executor") == list(EXECUTORS)
    assert _choices("probe", "--executor") == list(EXECUTORS)
    assert list(PROBE_EXECUTORS) == list(EXECUTORS)
    from hubaudit.config import EXECUTORS as CONFIG_EXECUTORS

    assert ("none", *EXECUTORS) == CONFIG_EXECUTORS


def test_executors_are_built_from_the_common_options():
    with make_executor("local", workers=2, address="127.0.0.1:1", num_gpus=1) as ex:
        assert [r.value for r in ex.map_unordered(abs, [-3])] == [3]
    with pytest.raises(ValueError, match="unknown executor"):
        make_executor("nope", workers=1)


# ---------------------------------------------------------------- probe modes
def test_every_probe_mode_can_be_chosen_and_is_resolved():
    from hubaudit.probe.modes import MODES, ProbeMode, resolve_mode

    assert _choices("probe", "--mode") == _choices("probe-adapter", "--mode") == [m.value for m in MODES]
    assert list(MODES) == list(ProbeMode)
    for mode in MODES:
        if mode is not ProbeMode.AUTO:
            assert resolve_mode(mode, "SEQ_CLS", True) is mode
    chosen = {resolve_mode("auto", task, words) for task in ("SEQ_CLS", "CAUSAL_LM", None) for words in (True, False)}
    assert chosen == set(ProbeMode) - {ProbeMode.AUTO}


def test_the_prober_accepts_exactly_the_registered_modes(tmp_path):
    pytest.importorskip("torch")
    import numpy as np
    from safetensors.numpy import save_file

    from hubaudit.probe.batteries import load_battery
    from hubaudit.probe.modes import MODES
    from hubaudit.probe.prober import ProbeOptions, Prober

    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "task_type": "CAUSAL_LM"}))
    save_file({"x": np.zeros((2, 2), dtype=np.float32)}, str(adapter / "adapter_model.safetensors"))
    battery = load_battery("disjoint-10")
    for mode in [*MODES, "no-such-mode"]:
        r = Prober(ProbeOptions(mode=mode, device="cpu")).probe(adapter, tmp_path / "no-base", battery, ["x"])
        # a registered mode gets as far as loading the base (which is missing); any other is refused
        assert r["status"] == "error" and r["reason"] == ("usage" if mode not in MODES else "base_unavailable"), r


# ---------------------------------------------------------------- batteries
def test_every_shipped_battery_loads_under_its_name():
    from hubaudit.probe.batteries import builtin_batteries, builtin_names, load_battery

    names = builtin_names()
    assert names == list(builtin_batteries()) and {"paper-21-B", "disjoint-10"} <= set(names)
    for name in names:
        assert load_battery(name).name == name
    shipped_files = {stem for stem, _ in builtin_batteries().values()}
    assert all(load_battery(stem).name == stem for stem in shipped_files)


def test_the_battery_help_lists_every_shipped_battery():
    from hubaudit.probe.batteries import builtin_names

    for command in ("probe", "probe-adapter", "probe-calibrate"):
        [param] = [p for p in _commands()[command].params if "--battery" in p.opts]  # type: ignore[attr-defined]
        assert all(name in param.help for name in builtin_names())


# ---------------------------------------------------------------- row formats
def test_every_row_format_has_a_writer():
    from hubaudit.cli._output import ROW_FORMATS, RowFormat, choices

    assert set(ROW_FORMATS) == set(RowFormat)
    assert [f.value for f in choices("F", RowFormat.json, RowFormat.table)] == ["json", "table"]


def test_commands_on_the_row_writers_offer_registry_formats():
    from hubaudit.cli._output import RowFormat
    from hubaudit.cli.similar import SimilarFormat

    assert _choices("similar", "--format") == [f.value for f in SimilarFormat]
    assert set(_choices("similar", "--format")) <= {f.value for f in RowFormat}


@pytest.mark.parametrize("fmt", ["table", "csv", "jsonl", "json"])
def test_emit_rows_escapes_untrusted_text_for_each_sink(fmt):
    from hubaudit.cli._output import Column, emit_rows

    hostile = "=cmd|'/c calc'!A1\x1b[31m\u202e[/]"
    rows = [{"repo": hostile, "score": -0.5, "nan": None}]
    out = io.StringIO()
    emit_rows(rows, [Column("repo"), Column("score", justify="right")], fmt, out=out, width=80)
    text = out.getvalue()
    assert "\x1b" not in text and "\u202e" not in text
    if fmt == "csv":
        assert text.splitlines()[1] == '"\'=cmd|\'/c calc\'!A1\\x1b[31m\\u202e[/]","-0.5"'
    elif fmt == "json":
        assert json.loads(text) == rows
    elif fmt == "jsonl":
        assert [json.loads(line) for line in text.splitlines()] == rows
    else:
        assert "\\x1b[31m\\u202e[/]" in text


def test_emit_rows_refuses_nan_in_json():
    from hubaudit.cli._output import emit_rows

    with pytest.raises(ValueError):
        emit_rows([{"x": float("nan")}], [], "json", out=io.StringIO())


def test_plain_table_keeps_one_row_per_line():
    from hubaudit.cli._output import Column, TableLook, emit_rows

    out = io.StringIO()
    emit_rows([{"a": "x\ty\nz", "b": 1}], [Column("a"), Column("b")], "table", out=out, look=TableLook(plain=True))
    assert out.getvalue() == "a\tb\nx\\x09y\\x0az\t1\n"


# ---------------------------------------------------------------- report and export formats
def test_report_and_export_choices_are_their_registries():
    from hubaudit.report.export import EXPORT_FORMATS
    from hubaudit.report.formats import FORMATS, OutputFormat

    assert _choices("report", "--format") == [f.value for f in OutputFormat] and set(FORMATS) == set(OutputFormat)
    assert _choices("export", "--format") == list(EXPORT_FORMATS)
