"""Malformed and hostile adapters: each is a value (error/unsupported, one line), never a crash.

Every case is generated here. Each names the status it must get and a phrase its reason must
contain, so a case that is rejected for the wrong reason fails.
"""

from __future__ import annotations

import json
import os
import pickle
import time
from pathlib import Path

import numpy as np
import pytest

from hubaudit.constants import MAX_CONFIG_BYTES, MAX_HEADER_BYTES
from hubaudit.stats import scan_path
from tests._cli import run_cli
from tests.stats._st import write_arrays, write_config, write_header_bytes, write_raw

A = "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"
B = "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight"
F32 = np.float32


def _ok_tensors(r: int = 4) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {A: rng.normal(size=(r, 16)).astype(F32), B: rng.normal(size=(8, r)).astype(F32)}


def _adapter(d: Path, tensors=None, **cfg) -> Path:
    write_arrays(d / "adapter_model.safetensors", tensors if tensors is not None else _ok_tensors())
    write_config(d, **cfg)
    return d


def _st(d: Path, entries) -> Path:
    write_config(d)
    write_raw(d / "adapter_model.safetensors", entries)
    return d


def _hdr(d: Path, header: bytes, data: bytes = b"", length: int | None = None) -> Path:
    write_config(d)
    write_header_bytes(d / "adapter_model.safetensors", header, data, length)
    return d


def _entry(shape, dtype="F32", nbytes=None):
    n = int(np.prod(shape)) * 4 if nbytes is None else nbytes
    return {"dtype": dtype, "shape": list(shape)}, b"\x00" * n


class Evil:
    """Unpickling this creates MARKER: proof that the file was (wrongly) unpickled."""

    marker = ""

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _pickle_payload(d: Path) -> Path:
    write_config(d)
    Evil.marker = str(d / "PWNED")
    (d / "adapter_model.bin").write_bytes(pickle.dumps({"x": Evil()}))
    return d


def _symlink_weights(d: Path) -> Path:
    write_config(d)
    os.symlink("/etc/passwd", d / "adapter_model.safetensors")
    return d


def _symlink_config(d: Path) -> Path:
    write_arrays(d / "adapter_model.safetensors", _ok_tensors())
    os.symlink("/etc/passwd", d / "adapter_config.json")
    return d


def _symlink_loop(d: Path) -> Path:
    write_config(d)
    os.symlink("adapter_model.safetensors", d / "adapter_model.safetensors")
    return d


def _weights_is_directory(d: Path) -> Path:
    write_config(d)
    (d / "adapter_model.safetensors").mkdir()
    return d


def _fifo(d: Path) -> Path:
    write_config(d)
    os.mkfifo(d / "adapter_model.safetensors")
    return d


def _config_text(d: Path, text: str | bytes) -> Path:
    write_arrays(d / "adapter_model.safetensors", _ok_tensors())
    p = d / "adapter_config.json"
    p.write_bytes(text if isinstance(text, bytes) else text.encode())
    return d


def _file_only(d: Path, tensors) -> Path:
    return write_arrays(d / "weights.safetensors", tensors) and d / "weights.safetensors"


def _h(obj) -> bytes:
    return json.dumps(obj).encode()


T = {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}
CASES = {
    # --- header framing ---
    "empty_file": ("error", "too small", lambda d: (write_config(d), (d / "adapter_model.safetensors").write_bytes(b""), d)[-1]),
    "seven_bytes": ("error", "too small", lambda d: (write_config(d), (d / "adapter_model.safetensors").write_bytes(b"\x07" * 7), d)[-1]),
    "header_length_bomb": ("error", "exceeds", lambda d: _hdr(d, b"{}", length=2**63)),
    "header_over_cap": ("error", "exceeds", lambda d: _hdr(d, b"{}", length=MAX_HEADER_BYTES + 1)),
    "header_past_eof": ("error", "past the end", lambda d: _hdr(d, b"{}", length=4096)),
    "header_broken_json": ("error", "not valid JSON", lambda d: _hdr(d, b'{"a": {"dtype": ')),
    "header_not_object": ("error", "does not start with", lambda d: _hdr(d, b"[1, 2, 3]")),
    "header_leading_space": ("error", "does not start with", lambda d: _hdr(d, b" " + _h({A: T}), b"\0" * 16)),
    "header_non_utf8": ("error", "not UTF-8", lambda d: _hdr(d, b'{"\xff\xfe": 1}')),
    "header_nan_literal": ("error", "NaN", lambda d: _hdr(d, b'{"__metadata__": {"x": NaN}}')),
    "header_deep_nesting": ("error", "nested deeper than 64 levels", lambda d: _hdr(d, b'{"a": ' + b"[" * 200_000 + b"]" * 200_000 + b"}")),
    "header_nesting_over_cap": ("error", "nested deeper than 64 levels", lambda d: _hdr(d, b'{"a": {"b": ' + b"[" * 100 + b"]" * 100 + b"}}")),
    "duplicate_keys": ("error", "duplicate key", lambda d: _hdr(d, b'{"%s": %s, "%s": %s}' % (A.encode(), _h(T), A.encode(), _h(T)), b"\0" * 16)),
    "metadata_not_strings": ("error", "__metadata__", lambda d: _hdr(d, _h({"__metadata__": {"a": 1}}))),
    # --- entries and offsets ---
    "entry_missing_offsets": ("error", "lacks data_offsets", lambda d: _hdr(d, _h({A: {"dtype": "F32", "shape": [2, 2]}}))),
    "unknown_dtype": ("error", "unknown dtype", lambda d: _hdr(d, _h({A: {**T, "dtype": "F128"}}), b"\0" * 16)),
    "negative_dim": ("error", "non-negative integers", lambda d: _hdr(d, _h({A: {**T, "shape": [-2, -2]}}), b"\0" * 16)),
    "float_dim": ("error", "non-negative integers", lambda d: _hdr(d, _h({A: {**T, "shape": [2.0, 2]}}), b"\0" * 16)),
    "shape_byte_mismatch": ("error", "needs 64 bytes", lambda d: _hdr(d, _h({A: {**T, "shape": [4, 4]}}), b"\0" * 16)),
    "shape_dim_over_u64": ("error", "below 2^64", lambda d: _hdr(d, _h({A: {**T, "shape": [2**64, 2**64]}}), b"\0" * 16)),
    "int_literal_5000_digits": ("error", "not valid JSON", lambda d: _hdr(d, b'{"a": {"dtype": "F32", "shape": [' + b"9" * 5000 + b'], "data_offsets": [0, 4]}}', b"\0" * 4)),
    "shape_product_overflow": ("error", "needs", lambda d: _hdr(d, _h({A: {**T, "shape": [2**40, 2**40, 2**40]}}), b"\0" * 16)),
    "overlapping_offsets": ("error", "overlaps", lambda d: _hdr(d, _h({A: T, B: {**T, "data_offsets": [8, 24]}}), b"\0" * 24)),
    "gap_in_offsets": ("error", "gap", lambda d: _hdr(d, _h({A: T, B: {**T, "data_offsets": [20, 36]}}), b"\0" * 36)),
    "offsets_out_of_range": ("error", "past the end", lambda d: _hdr(d, _h({A: {**T, "data_offsets": [0, 16]}}), b"\0" * 8)),
    "trailing_bytes": ("error", "trailing bytes", lambda d: _hdr(d, _h({A: T}), b"\0" * 16 + b"POLYGLOT")),
    # --- LoRA structure and values ---
    "rank_mismatch": ("error", "rank", lambda d: _adapter(d, {A: np.ones((4, 16), F32), B: np.ones((8, 3), F32)})),
    "rank_zero": ("error", "r >= 1", lambda d: _adapter(d, {A: np.ones((0, 16), F32), B: np.ones((8, 0), F32)})),
    "one_dim_lora": ("error", "LoRA A must be", lambda d: _adapter(d, {A: np.ones(16, F32), B: np.ones((8, 1), F32)})),
    "two_lora_A_for_one_module": ("error", "two lora_A", lambda d: _adapter(d, {**_ok_tensors(), A.replace(".weight", ".default.weight"): np.ones((4, 16), F32)})),
    "missing_B": ("error", "no lora_B", lambda d: _adapter(d, {A: np.ones((4, 16), F32)})),
    "missing_A": ("error", "no lora_A", lambda d: _adapter(d, {B: np.ones((8, 4), F32)})),
    "nan_value": ("error", "NaN or Inf", lambda d: _adapter(d, {**_ok_tensors(), A: np.full((4, 16), np.nan, F32)})),
    "inf_value": ("error", "NaN or Inf", lambda d: _adapter(d, {**_ok_tensors(), B: np.full((8, 4), np.inf, F32)})),
    "int_lora_dtype": ("error", "must be floats", lambda d: _st(d, [(A, {"dtype": "I32", "shape": [4, 4]}, b"\0" * 64), (B, *_entry((4, 4)))])),
    "no_lora_tensors": ("error", "no LoRA tensors", lambda d: _adapter(d, {"base_model.model.lm_head.weight": np.ones((4, 4), F32)})),
    "ia3_tensors_no_config": ("unsupported", "IA3", lambda d: _file_only(d, {"base_model.model.k_proj.ia3_l": np.ones((4, 1), F32)})),
    # --- files and configs ---
    "missing_config": ("error", "adapter_config.json is missing", lambda d: (write_arrays(d / "adapter_model.safetensors", _ok_tensors()), d)[-1]),
    "invalid_config_json": ("error", "not valid JSON", lambda d: _config_text(d, '{"peft_type": "LORA",')),
    "config_not_object": ("error", "not a JSON object", lambda d: _config_text(d, '["LORA"]')),
    "config_huge": ("error", "cap", lambda d: _config_text(d, '{"x": "' + "a" * (MAX_CONFIG_BYTES + 10) + '"}')),
    "config_non_utf8": ("error", "not UTF-8", lambda d: _config_text(d, b'{"peft_type": "\xff"}')),
    "config_deep_nesting": ("error", "nested deeper than 64 levels", lambda d: _config_text(d, '{"peft_type": "LORA", "x": ' + "[" * 100_000 + "]" * 100_000 + "}")),
    "config_pattern_key_cap": ("error", "keys (cap", lambda d: _adapter(d, rank_pattern={f"k{i}": 2 for i in range(5000)})),
    "config_pattern_backreference": ("error", "backreference", lambda d: _adapter(d, alpha_pattern={r"(q)\1_proj": 2.0})),
    "config_duplicate_key": ("error", "duplicate key", lambda d: _config_text(d, '{"r": 8, "r": 64, "peft_type": "LORA"}')),
    "config_bad_rank": ("error", "positive integer", lambda d: _adapter(d, r="eight")),
    "config_alpha_overflow": ("error", "overflows", lambda d: _adapter(d, lora_alpha=1e300)),
    "config_nan_alpha": ("error", "NaN", lambda d: _config_text(d, '{"peft_type": "LORA", "r": 8, "lora_alpha": NaN}')),
    "peft_type_ia3": ("unsupported", "IA3", lambda d: _adapter(d, peft_type="IA3")),
    "peft_type_prompt_tuning": ("unsupported", "PROMPT_TUNING", lambda d: _adapter(d, peft_type="PROMPT_TUNING")),
    "peft_type_loha": ("unsupported", "LOHA", lambda d: _adapter(d, peft_type="LOHA")),
    "pickle_payload": ("unsupported", "pickle format", _pickle_payload),
    "symlink_weights_to_passwd": ("error", "symlink", _symlink_weights),
    "symlink_config_to_passwd": ("error", "symlink", _symlink_config),
    "weights_is_fifo": ("error", "not a regular file", _fifo),
    "weights_is_directory": ("error", "not a regular file", _weights_is_directory),
    "symlink_loop": ("error", "symlink", _symlink_loop),
    "empty_directory": ("error", "no adapter_model.safetensors", lambda d: d),
    "nonexistent_path": ("error", "no such file", lambda d: d / "does-not-exist"),
}  # fmt: skip


@pytest.fixture(scope="module")
def hostile(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hostile")
    paths = {}
    for name, (_, _, build) in CASES.items():
        d = root / name
        d.mkdir()
        paths[name] = Path(build(d))
    return paths


def test_enough_distinct_cases():
    assert len(CASES) >= 25


@pytest.mark.parametrize("case", sorted(CASES))
def test_hostile_input_is_a_value(case, hostile):
    status, phrase, _ = CASES[case]
    t0 = time.perf_counter()
    res = scan_path(hostile[case])
    hostile_timings[case] = time.perf_counter() - t0  # reported by the benchmark notes, never asserted
    assert res.status == status, (res.status, res.error)
    assert res.error and "\n" not in res.error and "\r" not in res.error
    assert phrase.lower() in res.error.lower(), res.error
    assert res.score is None and res.modules == []


hostile_timings: dict[str, float] = {}


def test_pickle_is_never_unpickled_even_when_allowed(hostile):
    d = hostile["pickle_payload"]
    assert scan_path(d).status == "unsupported"
    assert not (d / "PWNED").exists()
    pytest.importorskip("torch")
    res = scan_path(d, allow_pickle=True)  # torch.load(weights_only=True) in a child must refuse it
    assert res.status == "error" and "weights_only" in res.error, res.error
    assert not (d / "PWNED").exists()
    # The payload is live: plain unpickling (here, deliberately) would have created the marker.
    pickle.loads((d / "adapter_model.bin").read_bytes())
    assert (d / "PWNED").exists()
    (d / "PWNED").unlink()


def test_cli_reports_every_hostile_input_as_json(hostile):
    names = sorted(CASES)
    proc = run_cli("scan", "--format", "json", *[str(hostile[n]) for n in names])
    assert proc.returncode == 3, proc.stderr
    assert "Traceback" not in proc.stderr
    out = json.loads(proc.stdout)
    assert [o["source"] for o in out] == [str(hostile[n]) for n in names]
    for n, o in zip(names, out):
        assert o["status"] == CASES[n][0] and o["score"] is None and "\n" not in o["error"], n


def test_catastrophic_pattern_keys_are_matched_without_backtracking(tmp_path):
    """Config regexes are untrusted: backtracking bombs are matched in linear time, as peft would."""
    write_arrays(tmp_path / "adapter_model.safetensors", _ok_tensors())
    bomb = {"(a+)+$": 2.0, ".*" * 8 + "x": 3.0, ".{0,99}" * 10 + "Z": 5.0, "q_proj": 16.0}
    write_config(tmp_path, r=4, lora_alpha=4, alpha_pattern=bomb)
    res = scan_path(tmp_path)
    assert res.status == "ok", res.error
    assert res.modules[0].scaling == 16.0 / 4  # the bombs match nothing here; the next key applies
    assert not any("ignored" in w for w in res.warnings)
    write_config(tmp_path, r=4, lora_alpha=4, alpha_pattern={"(\\w+)+_proj": 12.0, "q_proj": 16.0})
    assert scan_path(tmp_path).modules[0].scaling == 12.0 / 4  # first key in dict order, as peft
