"""τ calibration, AUROC and the renderer maps (pure, no torch)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from hubaudit.psim import output, threshold

floats = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)


@settings(max_examples=60, deadline=None)
@given(st.lists(floats, min_size=1, max_size=200), st.sampled_from([0.01, 0.05, 0.1, 0.3]))
def test_calibrated_tau_never_exceeds_the_target_frr_and_is_tight(conf, frr):
    tau = threshold.calibrate_tau(conf, frr)
    c = np.asarray(conf)
    assert threshold.rate(c > tau) <= frr
    # tight: any lower observed value would reject more than the target
    lower = c[c < tau]
    if lower.size:
        assert threshold.rate(c > lower.max()) > frr or (c > lower.max()).sum() == (c > tau).sum()


@settings(max_examples=60, deadline=None)
@given(st.lists(floats, min_size=1, max_size=40), st.lists(floats, min_size=1, max_size=40))
def test_auroc_equals_pairwise_probability(pos, neg):
    p, n = np.asarray(pos)[:, None], np.asarray(neg)[None, :]
    brute = float(((p > n) + 0.5 * (p == n)).mean())
    assert abs(threshold.auroc(pos, neg) - brute) < 1e-9


def test_auroc_extremes():
    assert threshold.auroc([0.9, 0.8], [0.1, 0.2]) == 1.0
    assert threshold.auroc([0.1], [0.9]) == 0.0


def test_every_format_has_a_renderer_and_the_cli_offers_exactly_those():
    from hubaudit.cli.psim import Fmt

    assert set(output._SCREEN) == set(output.SCREEN_FORMATS) == {f.value for f in Fmt}
    assert set(output._PROBE) == set(output.PROBE_FORMATS) == {f.value for f in Fmt}


def test_shipped_probe_batteries_parse_by_name():
    """The batteries the probe stage ships (hubaudit/probe/batteries/*.json) are accepted as they are."""
    import pytest

    from hubaudit.pipeline.psim import BATTERY_DIR, battery_items

    files = sorted(BATTERY_DIR.glob("*.json"))
    if not files:
        pytest.skip("no shipped batteries")
    for f in files:
        items = battery_items(f.stem)
        assert items and all(isinstance(i["probe"], str) and i["probe"] for i in items)
