"""`hubaudit scan` end to end through the console script's entry point (in-process, tests/_cli.py):
formats, exit codes, streams; undecodable paths through a real process's stdout."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests._cli import CliResult, run_cli
from tests.stats._st import write_arrays, write_config


def _run(*args: str) -> CliResult:
    return run_cli(*args)


@pytest.fixture(scope="module")
def adapter(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("adapter")
    rng = np.random.default_rng(0)
    tensors = {}
    for layer in range(3):
        for proj, (din, dout) in {"q_proj": (16, 16), "v_proj": (16, 8), "down_proj": (40, 16)}.items():
            part = "mlp" if proj == "down_proj" else "self_attn"
            base = f"base_model.model.model.layers.{layer}.{part}.{proj}"
            tensors[f"{base}.lora_A.weight"] = rng.normal(size=(4, din))
            tensors[f"{base}.lora_B.weight"] = rng.normal(size=(dout, 4)) * 0.01
    write_arrays(d / "adapter_model.safetensors", tensors, "BF16")
    write_config(d, r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"])
    return d


def test_json_all_ok_exit_0(adapter):
    p = _run("scan", "--format", "json", str(adapter), str(adapter / "adapter_model.safetensors"))
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert len(out) == 2 and all(o["status"] == "ok" for o in out)
    o = out[0]
    for key in ("source", "status", "error", "score", "n_modules", "rank", "features", "modules"):
        assert key in o
    assert o["n_modules"] == 9 and o["rank"] == 4 and o["score"] == o["features"]["global_frobN_std"]
    m = o["modules"][0]
    for key in ("name", "layer", "projection", "d_in", "d_out", "rank", "scaling", "frob_norm"):
        assert key in m
    # a bare weights file picks up the adapter_config.json beside it: scaling α/r = 8/4
    assert out[1]["modules"][0]["scaling"] == pytest.approx(2.0)


def test_jsonl_and_mixed_exit_3(adapter, tmp_path):
    p = _run("scan", "--format", "jsonl", str(adapter), str(tmp_path / "missing"))
    assert p.returncode == 3 and "Traceback" not in p.stderr
    rows = [json.loads(line) for line in p.stdout.splitlines()]
    assert [r["status"] for r in rows] == ["ok", "error"]
    assert "could not be scored" in p.stderr and "could not be scored" not in p.stdout


def test_table_fits_100_columns(adapter, tmp_path):
    p = _run("scan", str(adapter), str(tmp_path / "missing" / ("x" * 150)))
    assert p.returncode == 3
    lines = p.stdout.splitlines()
    assert lines and max(len(line) for line in lines) <= 100
    assert "ok" in p.stdout and "error" in p.stdout and "no such file" in p.stdout.replace("\n", " ").replace("│", "")


def test_usage_error_exit_2():
    p = _run("scan")
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert _run("scan", "--format", "xml", "x").returncode == 2


def test_allow_pickle_loads_the_real_bin_adapter():
    pytest.importorskip("torch")
    real = (Path(__file__).parents[2] / "../shared/real-adapters").resolve()
    bins = sorted(real.glob("*/adapter_model.bin")) if real.is_dir() else []
    if not bins:
        pytest.skip(f"no pickle adapter under {real}")
    d = str(bins[0].parent)
    refused = _run("scan", "--format", "json", d)
    assert refused.returncode == 3 and json.loads(refused.stdout)[0]["status"] == "unsupported"
    p = _run("scan", "--format", "json", "--allow-pickle", d)
    assert p.returncode == 0, p.stderr
    (o,) = json.loads(p.stdout)
    assert o["status"] == "ok" and o["n_modules"] > 0 and any("pickle" in w for w in o["warnings"])


def test_undecodable_and_markup_paths_never_crash(tmp_path):
    import os

    bad = os.path.join(os.fsencode(tmp_path), b"bad\xffname")
    os.mkdir(bad)
    markup = tmp_path / "[bold red]x"
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    for fmt in ("json", "table"):
        p = subprocess.run(
            [sys.executable, "-m", "hubaudit", "scan", "--format", fmt, os.fsdecode(bad), str(markup)],
            capture_output=True, text=True, timeout=120, env=env,
        )  # fmt: skip
        assert p.returncode == 3, p.stderr
        assert "internal error" not in p.stderr and "Traceback" not in p.stderr
        if fmt == "json":
            assert [o["status"] for o in json.loads(p.stdout)] == ["error", "error"]
        else:
            assert "[bold red]x" in p.stdout and "\\udcff" in p.stdout
