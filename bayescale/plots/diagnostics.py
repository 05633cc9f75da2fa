"""MCMC diagnostics of a fit, drawn by arviz-plots."""

from __future__ import annotations

DIAGNOSTIC_VARS = ("alpha", "beta", "tau_alpha", "tau_beta", "sigma_seed", "ell", "nu")


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
