"""Predictions: the predictive density of one model, the compute-optimal frontier."""

from __future__ import annotations

import numpy as np

from bayescale.plots._style import (
    PALETTE,
    band_alpha,
    check_probs,
    figure_of,
    log_axes,
    new_figure,
    prob_note,
    quantiles,
    size_label,
)
from bayescale.queries import loss_draws


def plot_predictive(
    post,
    family,
    params,
    tokens,
    *,
    observed=None,
    kind="new_run",
    ci_prob=0.9,
    ax=None,
    seed=0,
):
    """Predictive density of the loss of one model, interval shaded.

    Parameters
    ----------
    post : Posterior
    family : str
        Fitted family, or a new one (predicted from the population).
    params, tokens : float
        Raw parameter and token counts of the target.
    observed : float, optional
        The actual loss, when known: drawn as a black vertical line.
    kind : {"new_run", "mean"} or sequence of them
        Several kinds overlay their densities.
    ci_prob : float
        Interval probability shaded under each density.
    ax : matplotlib.axes.Axes, optional
    seed : int

    Returns
    -------
    matplotlib.figure.Figure
    """
    kinds = (kind,) if isinstance(kind, str) else tuple(kind)
    (prob,) = check_probs(ci_prob)
    if ax is None:
        fig, grid = new_figure(1, 1, width=6, height=3.8)
        ax = grid[0, 0]
    else:
        fig = figure_of(ax)
    all_draws = {
        k: loss_draws(post, family, params, tokens, kind=k, seed=seed)[:, 0] for k in kinds
    }
    pooled = np.concatenate(list(all_draws.values()))
    # over a wide range (e.g. an unseen family) a log axis shows the shape
    wide = np.ptp(pooled) > 0 and np.divide(*np.quantile(pooled, [0.998, 0.002])) > 3
    for i, k in enumerate(kinds):
        draws = all_draws[k]
        color = PALETTE[i]
        if draws.size < 2 or np.ptp(draws) == 0:
            ax.axvline(draws[0], color=color, lw=2, label=f"{k}: {draws[0]:.4g} (point)")
            continue
        from scipy.stats import gaussian_kde

        lo, hi = quantiles(draws, prob)
        # the density of a positive, often skewed quantity: smooth in log space
        logd = np.log(draws)
        q = np.quantile(logd, [0.002, 0.998])
        pad = 0.1 * (q[1] - q[0])
        x = np.exp(np.linspace(q[0] - pad, q[1] + pad, 300))
        y = gaussian_kde(logd)(np.log(x)) / (1.0 if wide else x)
        med = np.median(draws)
        ax.plot(x, y, color=color, lw=1.8, label=f"{k}: {med:.4g} [{lo:.4g}, {hi:.4g}]")
        inside = (x >= lo) & (x <= hi)
        ax.fill_between(x[inside], 0, y[inside], color=color, alpha=0.25, lw=0)
        ax.axvline(med, color=color, lw=1, ls="--")
    if observed is not None:
        ax.axvline(float(observed), color="black", lw=2, label=f"observed {float(observed):.4g}")
    ax.set_ylim(bottom=0)
    ax.set_xlabel("loss (nats)")
    ax.set_ylabel("predictive density")
    if wide:
        ax.set_xscale("log")
        ax.set_ylabel("predictive density of log loss")
    ax.set_title(
        f"{family}: N={size_label(float(params))}, D={size_label(float(tokens))} "
        f"(median, {round(100 * prob)}% interval)",
        fontsize="medium",
    )
    ax.legend(fontsize="small", loc="best")
    ax.grid(True, alpha=0.3)
    return fig


def plot_frontier(post, family, flops_range, ax=None, *, ci_prob=(0.5, 0.9), n=40, seed=0):
    """Compute-optimal model size N*(C) and tokens D*(C), with intervals.

    Parameters
    ----------
    post : Posterior
    family : str
    flops_range : (float, float)
        Smallest and largest training budget ``C = 6 N D`` in FLOPs.
    ax : matplotlib.axes.Axes, optional
    ci_prob : float or tuple of float
    n : int
        Number of budgets on the log grid.
    seed : int

    Returns
    -------
    matplotlib.figure.Figure
    """
    lo_c, hi_c = (float(v) for v in flops_range)
    if not (0 < lo_c < hi_c and np.isfinite(hi_c)):
        raise ValueError(f"flops_range must be (low, high) with 0 < low < high, got {flops_range}")
    probs = check_probs(ci_prob)
    if ax is None:
        fig, grid = new_figure(1, 1, width=6, height=4)
        ax = grid[0, 0]
    else:
        fig = figure_of(ax)
    flops = np.geomspace(lo_c, hi_c, int(n))
    tables = {p: post.compute_optimal(flops, family=family, ci_prob=p, seed=seed) for p in probs}
    for j, (col, label) in enumerate(
        (("params_opt", "parameters N*"), ("tokens_opt", "tokens D*"))
    ):
        color = PALETTE[j]
        for i, p in enumerate(probs):
            t = tables[p]
            ax.fill_between(
                flops,
                t[f"{col}_lower"],
                t[f"{col}_upper"],
                color=color,
                alpha=band_alpha(i, len(probs)),
                lw=0,
            )
        ax.plot(flops, tables[probs[0]][col], color=color, lw=1.8, label=label)
    mid = tables[probs[0]].iloc[len(flops) // 2]
    ax.plot(
        [],
        [],
        " ",
        label=f"at C={mid['flops']:.2g}: {mid['tokens_per_param']:.3g} tokens/param",
    )
    ax.set_xlabel("training compute C = 6ND (FLOPs)")
    ax.set_ylabel("compute-optimal N* (parameters) and D* (tokens)")
    ax.set_title(f"{family}: compute-optimal frontier ({prob_note(probs)})", fontsize="medium")
    ax.set_xscale("log")
    log_axes(ax, x=False, y_counts=True)
    ax.legend(fontsize="small", loc="upper left")
    ax.grid(True, which="major", alpha=0.3)
    return fig
