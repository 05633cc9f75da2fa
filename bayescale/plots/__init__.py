"""Matplotlib figures of a fitted scaling law.

Every function returns a :class:`matplotlib.figure.Figure` (the diagnostics,
an arviz-plots ``PlotCollection``); those that draw one panel take ``ax=`` to
draw into an existing axes instead. matplotlib is imported only when a figure
is drawn, so that ``import bayescale`` stays light.
"""

from bayescale.plots._style import PALETTE
from bayescale.plots.diagnostics import (
    DIAGNOSTIC_VARS,
    diagnostic_vars,
    plot_diagnostics,
    plot_sbc_ranks,
)
from bayescale.plots.plan import plot_plan
from bayescale.plots.posterior import plot_exponents, plot_offsets, plot_seed_effects
from bayescale.plots.predictive import plot_frontier, plot_predictive
from bayescale.plots.trajectories import plot_trajectories

__all__ = [
    "DIAGNOSTIC_VARS",
    "PALETTE",
    "diagnostic_vars",
    "plot_diagnostics",
    "plot_exponents",
    "plot_frontier",
    "plot_offsets",
    "plot_plan",
    "plot_predictive",
    "plot_sbc_ranks",
    "plot_seed_effects",
    "plot_trajectories",
]
