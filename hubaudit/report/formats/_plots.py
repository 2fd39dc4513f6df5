"""Matplotlib figures for the HTML report, returned as PNG bytes (Agg canvas; no pyplot global state).

Labels quote data (the base, strata, projection names from tensor names): matplotlib would parse a
``$...$`` in them as mathtext (a ``$\\foo$`` tensor name raised and killed the report) and, with
``usetex``, hand them to LaTeX. Every figure is drawn under :func:`_literal_text`, and each label
goes through :func:`_label` (control characters shown as escapes, length capped).
"""

from __future__ import annotations

import functools
import io
import math
import warnings
from collections.abc import Callable, Sequence
from typing import TypeVar

from hubaudit.report.formats._common import clip
from hubaudit.report.model import AdapterEntry, NormMap, StratumCalibration
from hubaudit.textsafe import terminal

_F = TypeVar("_F", bound=Callable)

_INK = "#1f2937"
_MUTED = "#6b7280"
_FLAG = "#dc2626"
_SUPPRESSED = "#d97706"
_BAR = "#93b4d6"
_THRESHOLD_COLORS = ("#111827", "#7c3aed", "#0d9488", "#be185d", "#4b5563", "#2563eb")


def _literal_text(fn: _F) -> _F:
    """Draw ``fn``'s figure with text taken literally: no mathtext, no LaTeX. Text objects read these
    settings when created and tick labels are created while saving, so the whole function runs inside."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        import matplotlib

        with matplotlib.rc_context({"text.parse_math": False, "text.usetex": False}), warnings.catch_warnings():
            # A label in a script the font lacks is drawn as boxes; the warning would be stderr noise per glyph.
            warnings.filterwarnings("ignore", message=r"Glyph \d+ .*missing from", category=UserWarning)
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def _label(text: object, width: int = 60) -> str:
    """A label from data: escaped (no control characters for the font lookup to warn about on stderr),
    at most ``width`` characters."""
    return clip(terminal(text), width)


def _figure(width_in: float, height_in: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_in, height_in), dpi=110)
    FigureCanvasAgg(fig)
    return fig


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight", facecolor="white")
    return buf.getvalue()


def _plain_log_ticks(axis) -> None:
    """Log-axis tick labels as plain numbers (1, 2, 5, 10, ...): the default ones are mathtext, which
    :func:`_literal_text` turns off, so they would print as ``$\\mathdefault{10^{0}}$``."""
    from matplotlib.ticker import FuncFormatter

    def minor(v: float, _pos: int) -> str:
        lead = round(v / 10 ** math.floor(math.log10(v))) if v > 0 else 0
        return f"{v:g}" if lead in (2, 5) else ""

    axis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
    axis.set_minor_formatter(FuncFormatter(minor))


# What the x axis of the decision histogram is, per verdict rule (Calibration.rule).
_AXIS = {
    "combined": "combined D²/K: squared Mahalanobis distance of the robust z of every calibrated feature ÷ K",
    "per-feature": "largest feature exceedance in robust σ (> 0: some feature is past its threshold)",
}


def decision_lines(strata: Sequence[StratumCalibration]) -> list[tuple[str, float]]:
    """(stratum, threshold) of each threshold line of the decision histogram: the threshold the verdict
    rule compares with (``decision_threshold``), never the paper's statistic's; a pooled stratum repeats
    its pool's threshold, so each value is drawn once."""
    lines: list[tuple[str, float]] = []
    for s in strata:
        t = s.decision_threshold
        if t is not None and all(abs(t - u) > 1e-12 * max(abs(u), 1e-300) for _, u in lines):
            lines.append((s.stratum, t))
    return lines


@_literal_text
def decision_histogram(
    values: Sequence[float], strata: Sequence[StratumCalibration], findings: Sequence[AdapterEntry], base: str,
    rule: str | None,
) -> bytes | None:
    """Histogram of the statistic that decides the weight verdict (every judged adapter), its threshold per
    stratum (each fit's value drawn once), findings marked at their own value."""
    vals = [s for s in values if s is not None and math.isfinite(s)]
    if not vals:
        return None
    import numpy as np

    positive = all(v > 0 for v in vals)
    lo, hi = min(vals), max(vals)
    thresholds = decision_lines(strata)
    for _, t in thresholds:
        lo, hi = min(lo, t), max(hi, t)
    # The combined statistic spans orders of magnitude: log-spaced bins when everything is positive.
    log = positive and all(t > 0 for _, t in thresholds) and hi / lo > 20
    if log:
        bins = np.logspace(math.log10(lo) - 0.02, math.log10(hi) + 0.02, 40)
    else:
        pad = (hi - lo) * 0.02 or abs(hi) * 0.05 or 1.0
        bins = np.linspace(lo - pad, hi + pad, 40)
    fig = _figure(8.6, 3.4)
    ax = fig.add_subplot(1, 1, 1)
    ax.hist(vals, bins=bins, color=_BAR, edgecolor="white", linewidth=0.6, label=f"judged adapters (n={len(vals)})")
    if log:
        ax.set_xscale("log")
        _plain_log_ticks(ax.xaxis)
    for i, (stratum, t) in enumerate(thresholds[: len(_THRESHOLD_COLORS)]):
        label = f"threshold {_label(stratum)}" if len(thresholds) > 1 else "threshold"
        ax.axvline(t, color=_THRESHOLD_COLORS[i], linestyle="--", linewidth=1.3, label=label)
    if len(thresholds) > len(_THRESHOLD_COLORS):
        ax.text(0.99, 0.97, f"+{len(thresholds) - len(_THRESHOLD_COLORS)} more strata", transform=ax.transAxes,
                ha="right", va="top", fontsize=8, color=_MUTED)
    marked = [(e.decision.value, e.suppressed is not None) for e in findings
              if e.decision is not None and e.decision.value is not None and math.isfinite(e.decision.value)]
    flagged = [v for v, sup in marked if not sup]
    suppressed = [v for v, sup in marked if sup]
    ymax = ax.get_ylim()[1]
    if flagged:
        ax.scatter(flagged, [ymax * 0.04] * len(flagged), marker="v", s=70, color=_FLAG, zorder=5,
                   label=f"findings ({len(flagged)})", clip_on=False)
    if suppressed:
        ax.scatter(suppressed, [ymax * 0.04] * len(suppressed), marker="v", s=70, color=_SUPPRESSED, zorder=5,
                   label=f"suppressed ({len(suppressed)})", clip_on=False)
    ax.set_xlabel(_AXIS.get(rule or "", "deciding statistic"), color=_INK, fontsize=9)
    ax.set_ylabel("adapters", color=_INK, fontsize=9)
    ax.set_title(f"The statistic that decides · {_label(base, 80)}", loc="left", fontsize=11, color=_INK)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.tick_params(labelsize=8, colors=_MUTED)
    ax.legend(fontsize=8, frameon=False, loc="upper right")
    return _png(fig)


@_literal_text
def norm_heatmaps(nm: NormMap) -> bytes:
    """Adapter vs population-median heat maps of per-layer × per-projection ‖ΔW‖ RMS, one colour scale."""
    import numpy as np
    from matplotlib.colors import LogNorm, Normalize

    def arr(rows):
        return np.array([[np.nan if v is None else v for v in row] for row in rows], dtype=float)

    a, m = arr(nm.adapter), arr(nm.median)
    both = np.concatenate([a[np.isfinite(a)], m[np.isfinite(m)]])
    positive = both[both > 0]
    if positive.size and positive.min() > 0 and positive.max() / positive.min() > 1.5:
        norm = LogNorm(vmin=positive.min(), vmax=positive.max())
    else:
        norm = Normalize(vmin=float(both.min()) if both.size else 0.0, vmax=float(both.max()) if both.size else 1.0)
    n_layers, n_proj = len(nm.layers), len(nm.projections)
    height = min(max(2.2, 0.22 * n_layers + 1.3), 9.0)
    width = min(max(6.4, 1.1 * n_proj * 2 + 2.2), 12.0)
    fig = _figure(width, height)
    axes = fig.subplots(1, 2, sharey=True)
    titles = ("this adapter", f"population median (n={nm.population_n})")
    image = None
    for ax, data, title in zip(axes, (a, m), titles):
        image = ax.imshow(np.ma.masked_invalid(data), aspect="auto", cmap="viridis", norm=norm,
                          interpolation="nearest")
        ax.set_title(title, fontsize=9, color=_INK, loc="left")
        ax.set_xticks(range(n_proj))
        ax.set_xticklabels([_label(p, 24) for p in nm.projections], rotation=45, ha="right", fontsize=7)
        step = max(1, n_layers // 16)
        ax.set_yticks(range(0, n_layers, step))
        ax.set_yticklabels([("emb" if nm.layers[i] < 0 else str(nm.layers[i])) for i in range(0, n_layers, step)],
                           fontsize=7)
        ax.tick_params(colors=_MUTED, length=2)
    axes[0].set_ylabel("layer", fontsize=8, color=_INK)
    cbar = fig.colorbar(image, ax=list(axes), fraction=0.04, pad=0.02)
    cbar.set_label("‖ΔW‖_F / √(d_out·d_in)", fontsize=8, color=_INK)
    from matplotlib.ticker import FixedLocator, FormatStrFormatter, NullLocator

    lo, hi = norm.vmin, norm.vmax
    ticks = np.geomspace(lo, hi, 5) if isinstance(norm, LogNorm) else np.linspace(lo, hi, 5)
    cbar.ax.yaxis.set_major_locator(FixedLocator(ticks))
    cbar.ax.yaxis.set_minor_locator(NullLocator())
    cbar.ax.yaxis.set_major_formatter(FormatStrFormatter("%.2g"))
    cbar.ax.tick_params(labelsize=7, colors=_MUTED)
    return _png(fig)
