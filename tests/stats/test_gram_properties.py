"""Property tests: the Gram route equals materializing ΔW, and the statistic respects PEFT's rules."""

from __future__ import annotations

import math
import random
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from peft.utils.other import get_pattern_key

from hubaudit.stats import module_spectrum, scan_path, stats_from_arrays
from tests.stats._st import write_arrays, write_config

PROPS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
PROJ = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def _materialized(a: np.ndarray, b: np.ndarray, s: float) -> tuple[float, np.ndarray]:
    dw = s * (b @ a)  # float64, the route production never takes (it works from r×r Grams)
    return float(np.linalg.norm(dw) / math.sqrt(dw.size)), np.linalg.svd(dw, compute_uv=False)


@st.composite
def adapters(draw):
    """A random small adapter: module → (A, B) with per-module shapes and a shared-or-varying rank."""
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    n_layers = draw(st.integers(1, 3))
    projs = draw(st.lists(st.sampled_from(PROJ), min_size=1, max_size=4, unique=True))
    ranks = draw(st.lists(st.integers(1, 12), min_size=1, max_size=3))
    out = {}
    for layer in range(n_layers):
        for i, proj in enumerate(projs):
            r = ranks[(layer + i) % len(ranks)]
            d_in, d_out = int(rng.integers(1, 70)), int(rng.integers(1, 70))
            scale = 10.0 ** rng.uniform(-4, 1)
            name = f"model.layers.{layer}.self_attn.{proj}"
            out[name] = (rng.normal(0, scale, (r, d_in)), rng.normal(0, 1, (d_out, r)))
    return out


@PROPS
@given(adapters(), st.sampled_from(["F32", "F16", "BF16", "F64"]), st.sampled_from(["plain", "rslora", "pattern"]))
def test_file_scan_equals_materialized_delta(mods, dtype, rule):
    """scan_path's per-module f_m and σ(ΔW) equal float64 B@A of the values stored in the file."""
    tensors = {}
    for name, (a, b) in mods.items():
        tensors[f"base_model.model.{name}.lora_A.weight"] = a
        tensors[f"base_model.model.{name}.lora_B.weight"] = b
    alpha, alpha_pattern = 16.0, ({"k_proj": 3.0, "layers.0.self_attn.q_proj": 32.0} if rule == "pattern" else {})
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        stored = write_arrays(d / "adapter_model.safetensors", tensors, dtype)
        write_config(d, r=4, lora_alpha=alpha, use_rslora=rule == "rslora", alpha_pattern=alpha_pattern)
        res = scan_path(d)
    assert res.status == "ok", res.error
    by_name = {m.name: m for m in res.modules}
    assert set(by_name) == set(mods)
    f_ref = []
    for name in mods:
        a = stored[f"base_model.model.{name}.lora_A.weight"]
        b = stored[f"base_model.model.{name}.lora_B.weight"]
        r = a.shape[0]
        key = get_pattern_key(list(alpha_pattern), name)  # peft's own matcher as the reference
        al = alpha_pattern.get(key, alpha)
        s = al / math.sqrt(r) if rule == "rslora" else al / r
        f, sv = _materialized(a, b, s)
        m = by_name[name]
        assert m.scaling == pytest.approx(s, rel=1e-15)
        assert (m.d_in, m.d_out, m.rank) == (a.shape[1], b.shape[0], r)
        assert m.frob_norm == pytest.approx(f, rel=1e-9, abs=1e-300)
        got = np.array(m.singular_values)
        ref = np.zeros(r)
        ref[: min(len(sv), r)] = sv[:r]
        assert np.all(np.abs(got**2 - ref**2) <= 1e-9 * max(ref[0] ** 2, 1e-300))
        f_ref.append(f)
    assert res.score == pytest.approx(float(np.std(f_ref, ddof=0)), rel=1e-9, abs=1e-300)


@PROPS
@given(adapters(), st.floats(1e-3, 1e3))
def test_rescaling_b_and_a_leaves_every_feature_unchanged(mods, c):
    """ΔW = (cB)(A/c): every feature is a function of ΔW only."""
    base = {n: (a, b, 0.5) for n, (a, b) in mods.items()}
    scaled = {n: (a / c, b * c, 0.5) for n, (a, b) in mods.items()}
    _, f1 = stats_from_arrays(base)
    _, f2 = stats_from_arrays(scaled)
    assert f1.keys() == f2.keys() and "global_frobN_std" in f1
    for k in f1:
        assert f2[k] == pytest.approx(f1[k], rel=1e-9, abs=1e-12), k


@PROPS
@given(adapters(), st.integers(0, 2**31 - 1))
def test_tensor_order_in_file_does_not_matter(mods, seed):
    tensors = {}
    for name, (a, b) in mods.items():
        tensors[f"base_model.model.{name}.lora_A.weight"] = a
        tensors[f"base_model.model.{name}.lora_B.weight"] = b
    order = list(tensors)
    shuffled = order[:]
    random.Random(seed).shuffle(shuffled)
    with tempfile.TemporaryDirectory() as tmp:
        p1, p2 = Path(tmp) / "one.safetensors", Path(tmp) / "two.safetensors"
        write_arrays(p1, tensors, "F32", order)
        write_arrays(p2, tensors, "F32", shuffled[::-1])
        r1, r2 = scan_path(p1), scan_path(p2)
    assert r1.status == r2.status == "ok"
    assert r1.features == pytest.approx(r2.features, rel=1e-12)
    assert [m.to_dict() for m in r1.modules] == [m.to_dict() for m in r2.modules]


@PROPS
@given(st.integers(1, 16), st.integers(1, 300), st.integers(1, 300), st.integers(0, 2**31 - 1))
def test_module_spectrum_matches_svd(r, d_in, d_out, seed):
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=(r, d_in)), rng.normal(size=(d_out, r)) * 1e-3
    spec = module_spectrum(a, b, 2.0)
    dw = 2.0 * b @ a
    assert math.sqrt(spec.frob_sq) == pytest.approx(np.linalg.norm(dw), rel=1e-9)
    sv = np.linalg.svd(dw, compute_uv=False)
    k = min(r, d_in, d_out)
    assert np.allclose(spec.sigma_sq[:k], sv[:k] ** 2, rtol=0, atol=1e-9 * sv[0] ** 2)
    assert np.all(spec.sigma_sq[k:] <= 1e-9 * sv[0] ** 2)


def test_rank_deficient_and_zero_delta():
    """B = 0 (peft's init) gives f_m = 0 and no spectral features, not NaN."""
    rng = np.random.default_rng(0)
    mods = {f"model.layers.{i}.mlp.up_proj": (rng.normal(size=(4, 8)), np.zeros((6, 4)), 1.0) for i in range(3)}
    ms, feats = stats_from_arrays(mods)
    assert all(m.frob_norm == 0.0 for m in ms)
    assert feats["global_frobN_std"] == 0.0
    assert "spectral_entropy_mean" not in feats and all(math.isfinite(v) for v in feats.values())
