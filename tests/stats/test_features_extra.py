"""hubaudit.stats.features_extra: scale-free profile features over real per-module statistics."""

from __future__ import annotations

import numpy as np
import pytest

from hubaudit.stats import scored_modules, stats_from_arrays
from hubaudit.stats.features_extra import EXTRA_FEATURES, compute_extra, describe_extra


def _pairs(scale: float = 1.0, seed: int = 0, boost: str | None = None):
    rng = np.random.default_rng(seed)
    out = {}
    for layer in range(3):
        for path in ("attention.self.query", "attention.output.dense", "output.dense"):
            name = f"bert.encoder.layer.{layer}.{path}"
            a, b = rng.normal(size=(4, 16)), rng.normal(size=(16, 4)) * 0.01
            if name == boost:
                b = b * 5.0
            out[name] = (a, b, scale)
    return out


def _extra(**kw):
    modules, _ = stats_from_arrays(_pairs(**kw))
    return compute_extra(scored_modules(modules))


def test_profile_features_are_invariant_to_a_common_scale():
    base, scaled = _extra(scale=1.0), _extra(scale=4.0)  # alpha/r = 4 on every module
    free = [k for k in base if k.endswith("_rel") or k.endswith("_cv") or "share" in k]
    assert free and base.keys() == scaled.keys()
    for k in free:
        assert scaled[k] == pytest.approx(base[k], rel=1e-9), k


def test_module_names_are_unique_per_layer_path_and_one_module_standing_out_moves_them():
    plain = _extra()
    assert "module_1.attention.output.dense_frobN_rel" in plain and "module_1.output.dense_frobN_rel" in plain
    assert len([k for k in plain if k.startswith("module_")]) == 9
    hot = _extra(boost="bert.encoder.layer.1.output.dense")
    assert hot["module_1.output.dense_frobN_rel"] > 2 * plain["module_1.output.dense_frobN_rel"]
    assert hot["global_frobN_max_rel"] > plain["global_frobN_max_rel"]


def test_every_computed_name_resolves_to_its_registry_entry():
    for name in _extra():
        feat = describe_extra(name)
        assert feat is not None and feat in EXTRA_FEATURES, name
