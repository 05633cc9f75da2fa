"""MCMC diagnostics of a fit, drawn by arviz-plots."""

from __future__ import annotations

DIAGNOSTIC_VARS = (
    "alpha",
    "beta",
    "tau_alpha",
    "tau_beta",
    "sigma_seed",
    "sigma_delta",
    "sigma_delta_d",
    "ell",
    "nu",
)


def diagnostic_vars(post) -> list:
    """The shared exponents and noise scalars present in the fit."""
    present = set(post.tree["posterior"].data_vars)
    names = [v for v in DIAGNOSTIC_VARS if v in present]
    if post.config.law == "overtrain":
        # beta (and its spread) are copies of alpha there
        names = [v for v in names if v not in ("beta", "tau_beta")]
    return names


def plot_diagnostics(post, kind="trace", var_names=None, **kwargs):
    """Trace, rank or forest plots of the main scalars, drawn by arviz-plots.

    Parameters
    ----------
    post : Posterior
        A sampled fit (NUTS).
    kind : {"trace", "rank", "forest"}
        ``"trace"``: :func:`arviz_plots.plot_trace_dist`; ``"rank"``:
        :func:`arviz_plots.plot_rank`; ``"forest"``: :func:`arviz_plots.plot_forest`
        (per chain unless ``combined=True``).
    var_names : list of str, optional
        Default: the shared exponents and noise scalars present in the fit.
    **kwargs
        Passed to the arviz-plots function.

    Returns
    -------
    arviz_plots.PlotCollection
        ``pc.savefig(path)`` writes it; ``pc.get_viz("figure")`` is the figure.
    """
    import arviz_plots

    funcs = {
        "trace": arviz_plots.plot_trace_dist,
        "rank": arviz_plots.plot_rank,
        "forest": arviz_plots.plot_forest,
    }
    if kind not in funcs:
        raise ValueError(f"kind must be one of {tuple(funcs)}, got {kind!r}")
    if post.n_draws < 2 or post.tree["posterior"].sizes["draw"] < 2:
        raise ValueError("diagnostic plots need posterior samples; this fit is a point estimate")
    if var_names is None:
        var_names = diagnostic_vars(post)
    kwargs.setdefault("backend", "matplotlib")
    return funcs[kind](post.tree, var_names=list(var_names), **kwargs)


def plot_sbc_ranks(records, *, bins: int = 10, n_ranks: int = 99, prob: float = 0.99):
    """Rank histograms of simulation-based calibration, one panel per parameter.

    Parameters
    ----------
    records : pandas.DataFrame
        One row per replicate with columns ``rank.<parameter>`` (ranks
        ``0..n_ranks``), as :func:`bayescale.evaluation.sbc.run_sbc` returns.
    bins : int
        Bars per panel.
    n_ranks : int
        Posterior draws each truth was ranked among.
    prob : float
        The grey band holds each bar's count with this probability when the
        ranks are uniform (binomial).

    Returns
    -------
    matplotlib.figure.Figure
    """
    import numpy as np
    from scipy import stats

    from bayescale.evaluation.sbc import rank_counts
    from bayescale.plots._style import PALETTE, new_figure

    names = [c[len("rank.") :] for c in records.columns if c.startswith("rank.")]
    if not names:
        raise ValueError("records have no 'rank.<parameter>' columns (see evaluation.sbc)")
    if not 0 < prob < 1:
        raise ValueError(f"prob must be in (0, 1), got {prob!r}")
    ncols = min(4, len(names))
    nrows = -(-len(names) // ncols)
    fig, axes = new_figure(nrows, ncols, width=3.0 * ncols, height=2.4 * nrows)
    for ax, name in zip(axes.flat, names, strict=False):
        ranks = records[f"rank.{name}"].dropna().to_numpy()
        counts, edges = rank_counts(ranks, n_ranks, bins)
        lo, hi = stats.binom.interval(prob, ranks.size, 1.0 / bins)
        # the band over the bars, so that a bar below its lower edge shows
        ax.axhspan(lo, hi, color="0.3", alpha=0.25, lw=0, zorder=3)
        ax.axhline(ranks.size / bins, color="0.2", lw=0.8, zorder=3)
        ax.bar(edges[:-1], counts, width=np.diff(edges), align="edge", color=PALETTE[0])
        ax.set_title(name, fontsize=9)
        ax.set_xlim(0, n_ranks + 1)
    for ax in list(axes.flat)[len(names) :]:
        ax.set_visible(False)
    fig.supxlabel(f"rank of the truth among {n_ranks} posterior draws")
    fig.suptitle(
        f"{len(records)} simulated data sets; grey: {prob:.0%} band of a uniform rank", fontsize=9
    )
    return fig
