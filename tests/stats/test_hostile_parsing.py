"""Untrusted adapter metadata is parsed with bounded work: regex pattern keys, deep JSON, caps.

rank_pattern/alpha_pattern keys are regexes under peft's ``get_pattern_key``; a backtracking
engine hangs on crafted keys, so they are matched without backtracking and within caps, with
the same answers as Python's ``re`` (property tests below). Deeply nested JSON in a config or
a safetensors header is a final error, never a RecursionError.
"""

from __future__ import annotations

import json
import re
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from hubaudit.fetch.header import validate_header
from hubaudit.pattern_keys import (
    MAX_MATCH_WORK,
    MAX_PATTERN_KEY_CHARS,
    MAX_PATTERN_KEYS,
    PatternError,
    compile_keys,
)
from hubaudit.stats import scan_path
from tests._cli import run_cli
from tests.stats._st import write_arrays, write_config, write_header_bytes

F32 = np.float32
REDOS_KEY = ".{0,99}" * 10 + "Z"  # seconds per module name in Python's re, exponential in its length


def _modules(n: int) -> list[str]:
    projections = ("q_proj", "k_proj", "v_proj", "o_proj")
    return [f"model.layers.{i // 4}.self_attn.{projections[i % 4]}" for i in range(n)]


def _adapter(d: Path, n_modules: int = 4, names: list[str] | None = None, **cfg) -> Path:
    d.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    tensors = {}
    for m in names or _modules(n_modules):
        tensors[f"base_model.model.{m}.lora_A.weight"] = rng.normal(size=(4, 16)).astype(F32)
        tensors[f"base_model.model.{m}.lora_B.weight"] = rng.normal(size=(8, 4)).astype(F32)
    write_arrays(d / "adapter_model.safetensors", tensors)
    write_config(d, r=4, lora_alpha=8, **cfg)
    return d


def _cli(*paths: Path) -> tuple[int, list[dict], str]:
    """``hubaudit scan --format json PATHS`` in-process (tests/_cli.py), within the 20 s a scan
    subprocess was given (start-up included) when these cases were found."""
    t0 = time.monotonic()
    proc = run_cli("scan", "--format", "json", *paths)
    assert time.monotonic() - t0 < 20
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.returncode, json.loads(proc.stdout), proc.stderr


def _one_line(reason: str | None) -> str:
    assert reason and "\n" not in reason and "\r" not in reason
    return reason


# --- the reported cases, end to end through the CLI ------------------------------------


def test_redos_key_scans_quickly_and_matches_like_peft(tmp_path):
    """The key that took 3-14 s per module name in Python's re: 200 modules scan within _cli's bound."""
    d = _adapter(tmp_path / "redos", 200, rank_pattern={REDOS_KEY: 2, "q_proj": 4},
                 alpha_pattern={REDOS_KEY: 99.0})  # fmt: skip
    rc, [out], _ = _cli(d)
    assert rc == 0 and out["status"] == "ok", out["error"]
    assert out["n_modules"] == 200
    # no module name ends in "Z": the bomb matches nothing, so every scaling is lora_alpha / r
    assert {m["scaling"] for m in out["modules"]} == {2.0}
    assert not any("differs from the config" in w for w in out["warnings"])


def test_redos_key_that_matches_applies(tmp_path):
    d = _adapter(tmp_path / "redos-hit", 8, alpha_pattern={".{0,99}" * 10 + "j": 32.0})
    rc, [out], _ = _cli(d)
    assert rc == 0 and out["status"] == "ok", out["error"]
    assert {m["scaling"] for m in out["modules"]} == {32.0 / 4}  # every *_proj ends in "j"


def test_hundred_thousand_keys_are_refused_by_the_cap(tmp_path):
    d = _adapter(tmp_path / "many", 200)
    keys = {f"{i:05x}": 2 for i in range(100_000)}  # keys that match nothing
    config = {"peft_type": "LORA", "r": 4, "lora_alpha": 8, "rank_pattern": keys}
    (d / "adapter_config.json").write_text(json.dumps(config, separators=(",", ":")))
    assert (d / "adapter_config.json").stat().st_size < 1 << 20  # under the config cap
    rc, [out], _ = _cli(d)
    assert rc == 3 and out["status"] == "error"
    assert _one_line(out["error"]) == (
        f"adapter_config.json: rank_pattern has 100000 keys (cap {MAX_PATTERN_KEYS})"
    )


def test_deep_json_config_and_header_are_errors_not_tracebacks(tmp_path):
    deep_config = _adapter(tmp_path / "deep-config")
    (deep_config / "adapter_config.json").write_text('{"peft_type": "LORA", "x": ' + "[" * 100_000 + "]" * 100_000 + "}")
    deep_header = _adapter(tmp_path / "deep-header")
    header = b'{"__metadata__": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    write_header_bytes(deep_header / "adapter_model.safetensors", header)
    shallow_but_deep = _adapter(tmp_path / "deep-below-recursion-limit")  # parses, but past the cap
    (shallow_but_deep / "adapter_config.json").write_text('{"peft_type": "LORA", "x": ' + "[" * 200 + "]" * 200 + "}")
    rc, outs, _ = _cli(deep_config, deep_header, shallow_but_deep)
    assert rc == 3
    assert [o["status"] for o in outs] == ["error"] * 3
    assert [_one_line(o["error"]) for o in outs] == [
        "adapter_config.json: JSON nested deeper than 64 levels",
        "safetensors header: JSON nested deeper than 64 levels",
        "adapter_config.json: JSON nested deeper than 64 levels",
    ]


# --- pattern-key outcomes ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "phrase"),
    [
        ({r"(q)_proj\1": 2}, "uses a backreference"),
        ({r"(?=q)q_proj": 2}, "uses a lookaround"),
        ({r"(?<!x)q_proj": 2}, "uses a lookaround"),
        ({r"(?(1)a|b)": 2}, "uses a conditional group"),
        ({r"(?(3)a|b)": 2}, None),  # Python rejects it (the wrapped key has no group 3): ignored
        ({"a{2000}": 2}, "repeat count over 1000"),
        ({"k" * (MAX_PATTERN_KEY_CHARS + 1): 2}, f"(cap {MAX_PATTERN_KEY_CHARS})"),
        ({f"(x{i}|.{{0,99}}){{9}}": 2 for i in range(400)}, "regex instructions (cap)"),
        ({f"k{i}[a-z]*": 2 for i in range(MAX_PATTERN_KEYS + 1)}, f"(cap {MAX_PATTERN_KEYS})"),
    ],
)
def test_pattern_keys_beyond_a_linear_matcher_are_final_errors(tmp_path, pattern, phrase):
    res = scan_path(_adapter(tmp_path, rank_pattern=pattern))
    if phrase is None:
        assert res.status == "ok" and any("ignored 1 key(s)" in w for w in res.warnings), res.error
        return
    assert res.status == "error", res.error
    assert phrase in _one_line(res.error) and res.error.startswith("adapter_config.json: rank_pattern")


def test_keys_python_rejects_are_ignored_with_a_warning(tmp_path):
    res = scan_path(_adapter(tmp_path, alpha_pattern={"q_proj(": 99.0, "(?i)q_proj": 99.0, "q_proj": 16.0}))
    assert res.status == "ok", res.error
    assert {m.name.rsplit(".", 1)[-1]: m.scaling for m in res.modules}["q_proj"] == 16.0 / 4
    assert any("alpha_pattern: ignored 2 key(s)" in w for w in res.warnings)


def test_matching_work_is_capped_before_tensors_are_read(tmp_path):
    """Hostile keys with hostile (long) module names: refused from the header, no tensor read."""
    keys = {f".*a.{{20}}Q{i}": 2 for i in range(1000)}
    names = [f"m{i}." + "ab." * 300 for i in range(12)]  # ~900 characters each
    size = compile_keys(list(keys), "rank_pattern").regex_size
    assert size * sum(map(len, names)) > MAX_MATCH_WORK
    res = scan_path(_adapter(tmp_path, names=names, rank_pattern=keys))
    assert res.status == "error"
    assert "steps (cap)" in _one_line(res.error)
    assert res.content_sha256 is None  # rejected before the file was read through


def test_surrogates_in_module_names_do_not_break_matching():
    m = compile_keys([r"q_pr.j", r"x\d"], "rank_pattern")
    assert m.first("layer.q_pr\ud800j") == r"q_pr.j"  # "." matches the lone surrogate, as in re
    assert m.first("x\udfff") is None


# --- the matching semantics are peft's (Python's re) ----------------------------------------


def peft_first(keys: list[str], name: str) -> str | None:
    """peft's get_pattern_key with Python's re, skipping keys re cannot compile (as we do)."""
    for key in keys:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "possible nested set"
                if re.match(rf"(.*\.)?({key})$", name):
                    return key
        except re.error:
            continue
    return None


# ASCII only (module names of real models); incl. controls that Python's \s covers and RE2's does not
NAME_CHARS = "abqAB_.01 -\t\x0b\x1cKksSiI"
ATOMS = [
    "a", "b", "q", "A", "_", "0", "k", r"\.", ".", "-", " ",
    "\u017f", "\u212a", "\u0131", "\u0130", "[\u017f-\u212a]",  # non-ASCII letters that (?i) folds onto ASCII ones
    "[ab]", "[^a]", "[a-q]", r"[\d_]", r"[^\w.]", r"\d", r"\w", r"\s", r"\S", r"\W", r"\D",
    r"\b", r"\B", "^", "$", r"\A", r"\Z",
]  # fmt: skip
QUANTIFIERS = ["", "", "*", "+", "?", "*?", "{2}", "{1,3}", "{,2}", "{2,}", "{0,1}?"]


@st.composite
def regex(draw, depth: int = 0) -> str:
    parts = []
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["atom"] * 5 + (["group", "alt", "flags"] if depth < 2 else [])))
        if kind == "atom":
            piece = draw(st.sampled_from(ATOMS))
        elif kind == "group":
            piece = "(" + draw(regex(depth + 1)) + ")"
        elif kind == "alt":
            piece = "(?:" + draw(regex(depth + 1)) + "|" + draw(regex(depth + 1)) + ")"
        else:
            piece = "(?" + draw(st.sampled_from(["i", "a", "s", "m", "-i", "ia", "x"])) + ":" + draw(regex(depth + 1)) + ")"
        parts.append(piece + (draw(st.sampled_from(QUANTIFIERS)) if piece not in ("^", "$", r"\b", r"\B", r"\A", r"\Z") else ""))
    return "".join(parts)


names = st.text(alphabet=NAME_CHARS, min_size=1, max_size=10)  # module names are never empty
keys = st.lists(regex() | st.text(alphabet="abq_.\\()|[]*+?{},^$0", max_size=8), min_size=1, max_size=5)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(keys, st.lists(names, min_size=1, max_size=6))
def test_first_key_is_pythons_re_answer(keys, module_names):
    try:
        matcher = compile_keys(keys, "rank_pattern")
    except PatternError:
        assume(False)  # constructs RE2 cannot run (backreferences, ...) are refused, tested above
    for name in module_names:
        assert matcher.first(name) == peft_first(keys, name), (keys, name)


plain_keys = st.lists(st.text(alphabet="ab_.0", min_size=1, max_size=6).map(lambda k: k.replace("_", r"\.")), min_size=1, max_size=8)


@settings(max_examples=300, deadline=None)
@given(plain_keys, st.lists(st.text(alphabet="ab.0_", max_size=12), min_size=1, max_size=8))
def test_plain_keys_match_like_pythons_re(keys, module_names):
    matcher = compile_keys(keys, "rank_pattern")
    for name in module_names:
        assert matcher.first(name) == peft_first(keys, name), (keys, name)


@settings(max_examples=100, deadline=None)
@given(st.lists(regex() | st.text(alphabet="ab_.0", min_size=1, max_size=6), min_size=1, max_size=6), names)
def test_plain_and_regex_keys_together_keep_dict_order(keys, name):
    try:
        matcher = compile_keys(keys, "alpha_pattern")
    except PatternError:
        assume(False)
    assert matcher.first(name) == peft_first(keys, name), (keys, name)


def test_peft_examples_match_peft():
    peft_other = pytest.importorskip("peft.utils.other")
    keys = ["q_proj", r"layers\.1\.mlp\.down_proj", r"layers\.0\..*up_proj", "model.layers.2.self_attn.v_proj", "(v|k)_proj"]
    for name in [
        "model.layers.0.self_attn.q_proj", "model.layers.1.mlp.down_proj", "model.layers.0.mlp.up_proj",
        "model.layers.2.self_attn.v_proj", "model.layers.3.self_attn.k_proj", "model.layers.3.mlp.gate_proj",
    ]:  # fmt: skip
        expected = peft_other.get_pattern_key(keys, name)
        assert compile_keys(keys, "rank_pattern").first(name) == (expected if expected in keys else None)


# --- the crawl's header pre-check -------------------------------------------------------------


@pytest.mark.parametrize("depth", [65, 900, 100_000])
def test_remote_header_check_refuses_deep_json_as_malformed(depth):
    raw = b'{"a": ' + b"[" * depth + b"]" * depth + b"}"
    check = validate_header(raw, len(raw), None)
    assert not check.ok and check.reason == "malformed"
    assert check.message == "invalid header JSON: JSON nested deeper than 64 levels"


@pytest.mark.timeout(60)
def test_remote_header_check_finds_a_late_duplicate_in_a_large_header():
    """A duplicate key after 200,000 tensors: found in one pass (the old check was quadratic)."""
    n = 200_000
    body = ",".join(f'"t{i}":{{"dtype":"F32","shape":[1],"data_offsets":[{4 * i},{4 * i + 4}]}}' for i in range(n))
    raw = ("{" + body + f',"t{n - 1}":{{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}' + "}").encode()
    check = validate_header(raw, len(raw), None)
    assert not check.ok and check.message == f"invalid header JSON: duplicate key 't{n - 1}'"
