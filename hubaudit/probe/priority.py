"""The order in which the probe queue spends its budget: one number per revision.

Weights only rank; they never excuse a revision from probing. The order is lexicographic:

1. the weight verdict's ``margin`` (calibrate.judge: the largest exceedance over the threshold;
   > 0 when flagged, < 0 below the threshold, so flagged revisions come first and then the
   unflagged ones closest to their threshold); a revision without a margin (not judged) comes last;
2. downloads, more first, among equal margins.

The queue stores one number per job, so the order is encoded in it as

    priority = round(clip(margin, ±MARGIN_CAP) · 10^MARGIN_DIGITS) + log10(1 + downloads) / DOWNLOADS_SCALE

(the downloads term lies in [0, 1), below one margin step; a missing margin takes the step below the
lowest clipped one).
"""

from __future__ import annotations

import math

#: Margins are compared to this many decimals (in their unit: ln(S/T) or σ); closer ones tie.
MARGIN_DIGITS = 4
#: Margins beyond ±MARGIN_CAP compare as ±MARGIN_CAP (keeps the encoding exact in a float64).
MARGIN_CAP = 1e4
#: log10(1 + downloads) / DOWNLOADS_SCALE < 1 for up to 10^15 downloads.
DOWNLOADS_SCALE = 16.0

_STEPS = round(MARGIN_CAP * 10**MARGIN_DIGITS)


def priority(margin: float | None, downloads: int | None) -> float:
    """The queue priority of a revision: margin first, then downloads (see the module docstring)."""
    m = None if margin is None else float(margin)
    if m is None or math.isnan(m):
        steps = -_STEPS - 1
    else:
        steps = round(max(-MARGIN_CAP, min(MARGIN_CAP, m)) * 10**MARGIN_DIGITS)
    tie = min(math.log10(1 + max(int(downloads or 0), 0)) / DOWNLOADS_SCALE, 1 - 1e-9)
    return steps + tie
