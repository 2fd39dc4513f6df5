"""`hubaudit ingest` on a first contact: a shell glob's README.md, an adapter of another base, pickle weights.

In-process through the real entry point (hubaudit.cli.main.main: error table, exit codes) against a real
SQLite file; adapters are real PEFT-layout folders written with numpy (tests/report/conftest.py).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from hubaudit.store import Store
from tests.report.conftest import write_lora
from tests.report.hostile import assert_terminal_safe
from tests.report.test_hostile_cli import cli

BASE = "acme/tiny-base"
OTHER = "meta-llama/Llama-3.2-1B"


def _glob(folder: Path) -> list[str]:
    """What `hubaudit ingest folder/*` receives from the shell."""
    return sorted(str(p) for p in folder.iterdir())


@pytest.fixture()
def glob_folder(tmp_path) -> Path:
    d = tmp_path / "adapters"
    write_lora(d / "a-good", seed=1)
    write_lora(d / "b-other-base", seed=2, base=OTHER)
    (d / "README.md").write_text("# my adapters\n")
    (d / "notes").mkdir()
    (d / "notes" / "todo.txt").write_text("x")
    return d


def test_glob_skips_non_adapters_and_warns_on_another_base(glob_folder, tmp_path):
    url = f"sqlite:///{tmp_path / 'h.db'}"
    code, out, err = cli("ingest", *_glob(glob_folder), "--base", BASE, "--db", url, "--format", "json")
    assert code == 0, err  # the adapters were scored; skipped inputs are not failures
    items = {Path(i["path"]).name: i for i in json.loads(out)}
    assert set(items) == {"a-good", "b-other-base", "README.md", "notes"}
    for name in ("README.md", "notes"):
        i = items[name]
        assert i["status"] == "skipped" and i["stored"] is False and i["reason"] == "not_an_adapter"
        assert i["repo_id"] is None and i["revision_id"] is None and i["error"].startswith("not an adapter")
        assert f"skipped: {glob_folder / name}: not an adapter" in err
    good, other = items["a-good"], items["b-other-base"]
    assert good["status"] == other["status"] == "scored" and good["stored"] and other["stored"]
    assert good["base_mismatch"] is False and good["declared_base"] == BASE
    assert other["base_mismatch"] is True and other["declared_base"] == OTHER
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert warnings == [f"warning: {glob_folder / 'b-other-base'} declares base {OTHER}; ingested under --base {BASE}"]
    assert "2 scored" in err and "2 input(s) skipped" in err
    with Store.open(url) as store:
        stored = {r.repo_id for r in store.audit_rows(BASE)}
        assert stored == {f"local:{glob_folder / 'a-good'}", f"local:{glob_folder / 'b-other-base'}"}
        assert store.bases() == [BASE]
        run = store.runs(limit=1)[0]
        assert run["command"] == "ingest" and run["exit_status"] == 0
        assert run["counts"] == {"inputs": 4, "scored": 2, "unsupported": 0, "error": 0, "skipped": 2}


def test_table_has_a_header_and_lists_only_stored_adapters(glob_folder, tmp_path):
    code, out, err = cli("ingest", *_glob(glob_folder), "--base", BASE, "--db", f"sqlite:///{tmp_path / 'h.db'}")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == "status\tscore\tstratum/reason\tadapter"
    assert len(lines) == 3 and all(len(line.split("\t")) == 4 for line in lines)
    assert [line.split("\t")[3] for line in lines[1:]] == [f"local:{glob_folder / 'a-good'}",
                                                           f"local:{glob_folder / 'b-other-base'}"]  # fmt: skip
    assert "README.md" not in out


def test_a_folder_that_looks_like_an_adapter_but_is_broken_is_recorded(tmp_path):
    config_only = tmp_path / "config-only"
    config_only.mkdir()
    (config_only / "adapter_config.json").write_text("{}")
    garbage = write_lora(tmp_path / "garbage", seed=0)
    (garbage / "adapter_model.safetensors").write_bytes(b"\x00" * 3)
    url = f"sqlite:///{tmp_path / 'h.db'}"
    code, out, err = cli("ingest", str(config_only), str(garbage), "--base", BASE, "--db", url, "--format", "json")
    assert code == 3, err
    items = json.loads(out)
    assert [(i["status"], i["stored"]) for i in items] == [("error", True), ("error", True)]
    assert [i["reason"] for i in items] == ["no_adapter_files", "malformed"]
    with Store.open(url) as store:
        assert len(store.audit_rows(BASE)) == 2


def test_no_adapter_at_all_or_a_missing_path_is_exit_2_and_creates_nothing(glob_folder, tmp_path):
    db = tmp_path / "sub" / "h.db"
    for args in ((str(glob_folder / "README.md"), str(glob_folder / "notes")),
                 (str(glob_folder / "a-good"), str(tmp_path / "typo*"))):  # fmt: skip
        code, out, err = cli("ingest", *args, "--base", BASE, "--db", f"sqlite:///{db}")
        assert code == 2 and out == "", err
        assert err.startswith("Error: ") and "Traceback" not in err
        assert not (tmp_path / "sub").exists()
    assert "no such file or directory" in err and "typo*" in err


def test_warning_escapes_a_hostile_declared_base(tmp_path):
    evil = "evil[/]x\x1b]0;title\x07\u202e"
    d = write_lora(tmp_path / "x\x1b[2J", seed=3, base=evil)
    code, out, err = cli("ingest", str(d), "--base", BASE, "--db", f"sqlite:///{tmp_path / 'h.db'}")
    assert code == 0, err
    assert_terminal_safe(err)
    assert_terminal_safe(out, "\n\t")
    (warning,) = [line for line in err.splitlines() if line.startswith("warning:")]
    assert "x\\x1b[2J declares base evil[/]x\\x1b]0;title\\x07\\u202e; ingested under --base acme/tiny-base" in warning


def _pickle_adapter(directory: Path) -> Path:
    """The same adapter as write_lora's, with its weights saved by torch.save as adapter_model.bin."""
    torch = pytest.importorskip("torch")
    from safetensors.numpy import load_file

    src = write_lora(directory, seed=4)
    tensors = load_file(str(src / "adapter_model.safetensors"))
    torch.save({k: torch.from_numpy(v) for k, v in tensors.items()}, str(directory / "adapter_model.bin"))
    os.remove(directory / "adapter_model.safetensors")
    return directory


def test_allow_pickle_scores_a_bin_adapter_in_the_sandbox(tmp_path):
    d = _pickle_adapter(tmp_path / "pickled")
    url = f"sqlite:///{tmp_path / 'h.db'}"
    code, out, err = cli("ingest", str(d), "--base", BASE, "--db", url, "--format", "json")
    assert code == 3, err
    (refused,) = json.loads(out)
    assert refused["status"] == "unsupported" and refused["reason"] == "pickle_format"
    assert "--allow-pickle" in refused["error"] and "rerun with --allow-pickle" in err

    code, out, err = cli("ingest", str(d), "--base", BASE, "--db", url, "--format", "json", "--allow-pickle")
    assert code == 0, err
    (scored,) = json.loads(out)
    assert scored["status"] == "scored" and scored["score"] > 0 and scored["stratum"] == "lora|r4|k_proj,q_proj,v_proj"
    # the same content: the stored revision is updated in place, now scored
    assert (scored["repo_id"], scored["sha"], scored["revision_id"]) == (refused["repo_id"], refused["sha"],
                                                                          refused["revision_id"])  # fmt: skip
    with Store.open(url) as store:
        (row,) = store.audit_rows(BASE)
        assert row.status == "scored" and row.score == pytest.approx(scored["score"])
        assert store.runs(limit=1)[0]["args"]["allow_pickle"] is True
