"""Shared pieces of the figures: palette, figure creation, log axes, intervals.

Colours follow the Okabe-Ito palette (families, quantities) and a truncated
viridis ramp (model sizes within a family); both stay distinct under the
common forms of colour blindness. Figures are built with the object API (no
pyplot state), so they work under any backend.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bayescale.options import format_count

#: Okabe-Ito colours, yellow last (it is faint on white).
PALETTE = (
    "#0072B2",
    "#D55E00",
    "#009E73",
    "#CC79A7",
    "#E69F00",
    "#56B4E9",
    "#000000",
    "#F0E442",
)
MAX_LEGEND_RUNS = 10
MAX_DRAWS = 1000


def new_figure(nrows=1, ncols=1, *, width=None, height=None, **kwargs):
    from matplotlib.figure import Figure

    width = width if width is not None else 5.0 * ncols
    height = height if height is not None else 3.8 * nrows
    fig = Figure(figsize=(width, height), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, **kwargs)
    return fig, axes


def figure_of(ax):
    return ax.get_figure(root=True) if hasattr(ax, "get_figure") else ax.figure


def check_probs(ci_prob) -> tuple:
    probs = (ci_prob,) if np.isscalar(ci_prob) else tuple(ci_prob)
    for p in probs:
        if not 0 < float(p) < 1:
            raise ValueError(f"interval probabilities must be in (0, 1), got {p}")
    return tuple(sorted((float(p) for p in probs), reverse=True))


def quantiles(draws, prob, axis=0):
    lo, hi = np.quantile(draws, [(1 - prob) / 2, (1 + prob) / 2], axis=axis)
    return lo, hi


def band_alpha(i: int, n: int) -> float:
    """Wider intervals lighter, narrower darker."""
    return 0.12 + 0.16 * i / max(n - 1, 1) if n > 1 else 0.2


def size_label(n: float) -> str:
    return format_count(n)


def size_colors(params) -> dict:
    """Map each distinct model size to a colour on a truncated viridis ramp."""
    from matplotlib import colormaps

    sizes = np.unique(np.asarray(params, dtype=float))
    cmap = colormaps["viridis"]
    if len(sizes) == 1:
        return {float(sizes[0]): cmap(0.15)}
    pos = (np.log(sizes) - np.log(sizes[0])) / (np.log(sizes[-1]) - np.log(sizes[0]))
    return {float(s): cmap(0.05 + 0.8 * p) for s, p in zip(sizes, pos, strict=True)}


def thin_draws(n: int, max_draws: int, seed: int) -> np.ndarray:
    if n <= max_draws:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=max_draws, replace=False))


def log_ticks(axis, counts: bool):
    """Labelled ticks inside a log axis that spans less than a decade or two."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    lo, hi = axis.get_view_interval()
    lo, hi = min(lo, hi), max(lo, hi)
    if lo <= 0:
        return
    if hi / lo < 3:
        subs = (1.0, 1.2, 1.4, 1.6, 1.8, 2.0, 2.5, 3.0, 3.5, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0)
    elif hi / lo < 30:
        subs = (1.0, 2.0, 5.0)
    else:
        subs = (1.0,)
    axis.set_major_locator(LogLocator(base=10, subs=subs))
    axis.set_major_formatter(FuncFormatter(lambda v, _: size_label(v) if counts else f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def log_axes(ax, *, x=True, y=True, x_counts=True, y_counts=False):
    """Log scales with readable labels: counts as 10B/1T, losses as plain numbers."""
    if x:
        ax.set_xscale("log")
        log_ticks(ax.xaxis, x_counts)
    if y:
        ax.set_yscale("log")
        lo, hi = ax.get_ylim()
        if y_counts or hi / lo < 30:
            log_ticks(ax.yaxis, y_counts)


def check_family(post, family):
    return post.data.family_index(family)


def heldout_frame(heldout) -> pd.DataFrame:
    need = ("family", "params", "tokens", "loss")
    missing = [c for c in need if c not in heldout.columns]
    if missing:
        raise ValueError(f"heldout frame lacks column(s) {missing}; it needs {list(need)}")
    out = heldout.copy()
    out["family"] = out["family"].astype(str)
    if "run" not in out.columns:
        out["run"] = [size_label(p) for p in out["params"]]
    return out


def prob_note(probs):
    return " & ".join(f"{round(100 * p)}%" for p in sorted(probs)) + " intervals"
