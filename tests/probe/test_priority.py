"""The probe queue's priority: one float that orders by weight margin, then downloads (pure math)."""

from __future__ import annotations

import math

from hubaudit.probe.priority import DOWNLOADS_SCALE, MARGIN_CAP, MARGIN_DIGITS, priority


def test_the_encoding_is_margin_steps_plus_a_downloads_fraction():
    assert priority(1.23456, 0) == 12346
    assert priority(-0.5, 999) == -5000 + math.log10(1000) / DOWNLOADS_SCALE
    assert priority(None, 0) == -round(MARGIN_CAP * 10**MARGIN_DIGITS) - 1


def test_downloads_never_outweigh_one_margin_step():
    step = 10.0**-MARGIN_DIGITS
    assert priority(step, 0) > priority(0.0, 10**18)
    assert priority(0.0, -5) == priority(0.0, None) == priority(0.0, 0) == 0


def test_margins_beyond_the_cap_and_nan_compare_as_documented():
    assert priority(2 * MARGIN_CAP, 0) == priority(MARGIN_CAP, 0)
    assert priority(-math.inf, 0) > priority(math.nan, 0) == priority(None, 0)
