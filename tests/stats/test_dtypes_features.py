"""Dtype decoding against torch's own casts, and the feature registry's contracts."""

from __future__ import annotations

import numpy as np
import pytest

from hubaudit.models import ModuleStat
from hubaudit.stats import FEATURES, compute_features, describe, module_group, stats_from_arrays
from hubaudit.stats.dtypes import DTYPE_BITS, decode_float


@pytest.mark.parametrize("dtype,torch_name", [("F8_E4M3", "float8_e4m3fn"), ("F8_E5M2", "float8_e5m2"),
                                              ("BF16", "bfloat16"), ("F16", "float16")])  # fmt: skip
def test_decode_matches_torch(dtype, torch_name):
    torch = pytest.importorskip("torch")
    tdt = getattr(torch, torch_name)
    width = DTYPE_BITS[dtype] // 8
    codes = np.arange(256 if width == 1 else 65536, dtype=np.uint8 if width == 1 else np.uint16)
    ref = torch.from_numpy(codes.view(np.int8 if width == 1 else np.int16).copy()).view(tdt).to(torch.float64).numpy()
    got = decode_float(codes.astype("<u1" if width == 1 else "<u2").tobytes(), dtype)
    assert np.array_equal(np.isnan(got), np.isnan(ref))
    assert np.array_equal(got[~np.isnan(ref)], ref[~np.isnan(ref)])


def _m(name, f, layer=0, sv=(1.0,)):
    return ModuleStat(name, layer, name.rsplit(".", 1)[-1], "linear", 4, 4, 1, 1.0, f, sv)


def test_module_groups():
    assert module_group("transformer.h.0.attn.c_proj") == "attn"
    assert module_group("transformer.h.0.mlp.c_proj") == "mlp"
    assert module_group("transformer.h.0.mlp.c_fc") == "mlp"
    assert module_group("encoder.layer.1.attention.self.query") == "attn"
    assert module_group("encoder.layer.1.attention.output.dense") == "attn"
    assert module_group("encoder.layer.1.intermediate.dense") == "mlp"
    assert module_group("encoder.layer.1.output.dense") == "mlp"
    assert module_group("model.layers.0.mlp.gate_proj") == "mlp"
    assert module_group("model.layers.0.self_attn.o_proj") == "attn"
    assert module_group("lm_head") is None


def test_absent_inputs_are_omitted_not_nan():
    feats = compute_features([_m("model.layers.0.self_attn.q_proj", 1.0), _m("model.layers.0.self_attn.v_proj", 3.0)])
    assert feats["global_frobN_std"] == pytest.approx(1.0)  # population std of {1, 3}
    assert "mlp_frobN_mean" not in feats and "attn_mlp_frobN_ratio" not in feats
    assert "layer_profile_slope" not in feats  # one layer
    assert {"proj_q_proj_frobN_mean", "proj_v_proj_frobN_mean"} <= set(feats)
    assert all(np.isfinite(v) for v in feats.values())


def test_registry_describes_every_computed_feature():
    rng = np.random.default_rng(3)
    mods = {
        f"model.layers.{i}.{g}.{p}": (rng.normal(size=(4, 12)), rng.normal(size=(10, 4)), 2.0)
        for i in range(3)
        for g, p in (("self_attn", "q_proj"), ("mlp", "up_proj"))
    }
    _, feats = stats_from_arrays(mods)
    assert len({f.name for f in FEATURES}) == len(FEATURES)
    for name in feats:
        feat = describe(name)
        assert feat is not None and feat.direction in ("up", "down", "both"), name
    expected = {"global_frobN_std", "global_frobN_mean", "global_frobN_max", "attn_mlp_frobN_ratio",
                "layer_profile_slope", "layer_profile_cv", "layer_max_share", "spectral_top1_share_mean",
                "spectral_entropy_mean", "effective_rank_mean", "proj_q_proj_frobN_mean"}  # fmt: skip
    assert expected <= set(feats)
    assert 1.0 <= feats["effective_rank_mean"] <= 4.0
    assert 0.0 < feats["spectral_top1_share_mean"] <= 1.0


def test_spectral_features_match_the_per_module_definitions_with_mixed_ranks_and_a_zero_module():
    from hubaudit.stats.gram import spectral_entropy, spectral_shares

    mods = [_m("model.layers.0.self_attn.q_proj", 1.0, 0, (3.0, 1.0, 0.5, 0.0)),
            _m("model.layers.0.self_attn.v_proj", 2.0, 0, (2.0, 2.0)),  # rank_pattern: a smaller rank
            _m("model.layers.1.self_attn.q_proj", 0.0, 1, (0.0, 0.0)),  # ΔW = 0: no spectrum
            _m("model.layers.1.self_attn.v_proj", 1.5, 1, (5.0,))]  # fmt: skip
    ps = [spectral_shares(np.square(np.asarray(m.singular_values))) for m in mods]
    ps = [p for p in ps if p is not None]
    assert len(ps) == 3
    feats = compute_features(mods)
    assert feats["spectral_top1_share_mean"] == pytest.approx(np.mean([p[0] for p in ps]), rel=1e-12)
    assert feats["spectral_entropy_mean"] == pytest.approx(np.mean([spectral_entropy(p) for p in ps]), rel=1e-12)
    assert feats["effective_rank_mean"] == pytest.approx(np.mean([np.exp(spectral_entropy(p)) for p in ps]), rel=1e-12)
    assert feats["spectral_top1_share_max"] == pytest.approx(1.0)  # the rank-1 module
    assert feats["proj_q_proj_top1_share_mean"] == pytest.approx(ps[0][0])  # the zero module is left out
    assert feats["proj_v_proj_top1_share_mean"] == pytest.approx((0.5 + 1.0) / 2)
    # the same list object again (the one-entry memo) and a fresh copy give the same answer
    assert compute_features(mods) == feats == compute_features(list(mods))
