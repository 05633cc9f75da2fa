"""Matplotlib figures of a fitted scaling law.

Every function returns a :class:`matplotlib.figure.Figure`; those that draw
one panel take ``ax=`` to draw into an existing axes instead. Figures are
built with the object API (no pyplot state), so they work under any backend,
including "Agg" in scripts and the inline backend in notebooks. matplotlib is
imported inside the functions so that ``import bayescale`` stays light.

Colours follow the Okabe-Ito palette (families, quantities) and a truncated
viridis ramp (model sizes within a family); both stay distinct under the
common forms of colour blindness.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from bayescale.model import COEFS
from bayescale.predict import loss_draws as _loss_draws
from bayescale.predict import run_draws

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
_MAX_LEGEND_RUNS = 10
_MAX_DRAWS = 1000


# -- helpers ------------------------------------------------------------------------


def _new_figure(nrows=1, ncols=1, *, width=None, height=None, **kwargs):
    from matplotlib.figure import Figure

    width = width if width is not None else 5.0 * ncols
    height = height if height is not None else 3.8 * nrows
    fig = Figure(figsize=(width, height), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, **kwargs)
    return fig, axes


def _figure_of(ax):
    return ax.get_figure(root=True) if hasattr(ax, "get_figure") else ax.figure


def _probs(prob) -> tuple:
    probs = (prob,) if np.isscalar(prob) else tuple(prob)
    for p in probs:
        if not 0 < float(p) < 1:
            raise ValueError(f"interval probabilities must be in (0, 1), got {p}")
    return tuple(sorted((float(p) for p in probs), reverse=True))


def _quantiles(draws, prob, axis=0):
    lo, hi = np.quantile(draws, [(1 - prob) / 2, (1 + prob) / 2], axis=axis)
    return lo, hi


def _band_alpha(i: int, n: int) -> float:
    """Wider intervals lighter, narrower darker."""
    return 0.12 + 0.16 * i / max(n - 1, 1) if n > 1 else 0.2


def _size_label(n: float) -> str:
    for div, unit in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if n >= div:
            v = n / div
            return f"{v:.3g}{unit}"
    return f"{n:.3g}"


def _size_colors(params) -> dict:
    """Map each distinct model size to a colour on a truncated viridis ramp."""
    from matplotlib import colormaps

    sizes = np.unique(np.asarray(params, dtype=float))
    cmap = colormaps["viridis"]
    if len(sizes) == 1:
        return {float(sizes[0]): cmap(0.15)}
    pos = (np.log(sizes) - np.log(sizes[0])) / (np.log(sizes[-1]) - np.log(sizes[0]))
    return {float(s): cmap(0.05 + 0.8 * p) for s, p in zip(sizes, pos, strict=True)}


def _thin_draws(n: int, max_draws: int, seed: int) -> np.ndarray:
    if n <= max_draws:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=max_draws, replace=False))


def _log_ticks(axis, counts: bool):
    """Labelled ticks inside a log axis that spans less than a decade or two."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    lo, hi = axis.get_view_interval()
    lo, hi = min(lo, hi), max(lo, hi)
    if lo <= 0:
        return
    if hi / lo < 3:
        subs = (1.0, 1.2, 1.4, 1.6, 1.8, 2.0, 2.5, 3.0, 3.5, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0)
    elif hi / lo < 30:
        subs = (1.0, 1.5, 2.0, 3.0, 5.0, 7.0)
    else:
        subs = (1.0,)
    axis.set_major_locator(LogLocator(base=10, subs=subs))
    axis.set_major_formatter(FuncFormatter(lambda v, _: _size_label(v) if counts else f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def _log_axes(ax, *, x=True, y=True, x_counts=True, y_counts=False):
    """Log scales with readable labels: counts as 10B/1T, losses as plain numbers."""
    if x:
        ax.set_xscale("log")
        _log_ticks(ax.xaxis, x_counts)
    if y:
        ax.set_yscale("log")
        lo, hi = ax.get_ylim()
        if y_counts or hi / lo < 30:
            _log_ticks(ax.yaxis, y_counts)


def _check_family(post, family):
    if family not in post.families:
        raise KeyError(f"family {family!r} is not in the fit (fitted: {list(post.families)})")
    return post.families.index(family)


def _heldout_frame(heldout) -> pd.DataFrame:
    need = ("family", "params", "tokens", "loss")
    missing = [c for c in need if c not in heldout.columns]
    if missing:
        raise ValueError(f"heldout frame lacks column(s) {missing}; it needs {list(need)}")
    out = heldout.copy()
    out["family"] = out["family"].astype(str)
    if "run" not in out.columns:
        out["run"] = [_size_label(p) for p in out["params"]]
    return out


# -- trajectories --------------------------------------------------------------------


def plot_trajectories(
    post,
    families=None,
    *,
    data=None,
    heldout=None,
    prob=(0.5, 0.9),
    ax=None,
    max_draws: int = _MAX_DRAWS,
    seed: int = 0,
):
    """Observed loss curves and the fitted law, per family, on log-log axes.

    Each run (model size) gets one colour: its observed checkpoints as a line
    with markers, and its fitted curve (law plus the run's own offset
    ``u_r``) as a median line with shaded intervals. Held-out checkpoints are
    drawn as black-edged diamonds, with the ``new_run`` predictive band of
    their model size (law plus a fresh run offset).

    Parameters
    ----------
    post : Posterior
    families : str or list of str, optional
        Families to draw (default: all fitted). One panel per family.
    data : pandas.DataFrame, optional
        A raw tidy table to draw instead of the kept checkpoints
        (``post.data``); shows what the warm-up cut and thinning removed.
    heldout : pandas.DataFrame, optional
        Tidy table (``family``, ``params``, ``tokens``, ``loss``; ``run``
        optional) of checkpoints not used in the fit.
    prob : float or tuple of float
        Interval probabilities of the shaded bands (default 50% and 90%).
    ax : matplotlib.axes.Axes, optional
        Draw into this axes (one family only).
    max_draws : int
        Posterior draws used for the bands (a random subset when more).
    seed : int

    Returns
    -------
    matplotlib.figure.Figure
    """
    if families is None:
        families = list(post.families)
    elif isinstance(families, str):
        families = [families]
    for fam in families:
        _check_family(post, fam)
    if not families:
        raise ValueError("no families to plot")
    probs = _probs(prob)
    if ax is not None:
        if len(families) != 1:
            raise ValueError(f"ax= draws one family; got {len(families)}: pass families=[name]")
        axes = [ax]
        fig = _figure_of(ax)
    else:
        ncols = min(3, len(families))
        nrows = math.ceil(len(families) / ncols)
        fig, grid = _new_figure(nrows, ncols)
        axes = list(grid.ravel())
        for extra in axes[len(families) :]:
            extra.set_visible(False)
    observed = post.data.to_frame() if data is None else _as_frame(data)
    held = _heldout_frame(heldout) if heldout is not None else None
    for fam, panel in zip(families, axes, strict=False):
        _trajectory_panel(
            post,
            fam,
            panel,
            observed[observed["family"] == fam],
            None if held is None else held[held["family"] == fam],
            probs,
            max_draws,
            seed,
        )
    return fig


def _as_frame(data) -> pd.DataFrame:
    if hasattr(data, "to_frame") and not isinstance(data, pd.DataFrame):
        return data.to_frame()
    need = ("family", "run", "params", "tokens", "loss")
    missing = [c for c in need if c not in data.columns]
    if missing:
        raise ValueError(f"data lacks column(s) {missing}; it needs {list(need)}")
    out = data.copy()
    out["family"] = out["family"].astype(str)
    out["run"] = out["run"].astype(str)
    return out


def _trajectory_panel(post, family, ax, obs, held, probs, max_draws, seed):
    f = post.families.index(family)
    pd_ = post.data
    keep = _thin_draws(post.n_draws, max_draws, seed)
    fam_runs = np.flatnonzero(pd_.run_family == f)
    all_params = list(pd_.run_params[fam_runs])
    if held is not None and len(held):
        all_params += list(held["params"])
    if len(obs):
        all_params += list(obs["params"])
    colors = _size_colors(all_params)
    handles = {}
    for r in fam_runs[np.argsort(pd_.run_params[fam_runs], kind="stable")]:
        n = float(pd_.run_params[r])
        tok = pd_.tokens[pd_.obs_run == r]
        grid = np.geomspace(tok.min(), tok.max(), 60) if tok.min() < tok.max() else tok[:1]
        draws = run_draws(post, int(r), grid)[keep]
        _band(ax, grid, draws, probs, colors[n])
    runs_obs = obs.groupby("run", sort=False) if len(obs) else []
    for _, grp in runs_obs:
        grp = grp.sort_values("tokens")
        n = float(grp["params"].iloc[0])
        (line,) = ax.plot(
            grp["tokens"],
            grp["loss"],
            color=colors.get(n, "0.3"),
            lw=1.0,
            marker="o",
            ms=2.5,
            alpha=0.9,
            label=f"N={_size_label(n)}",
        )
        handles.setdefault(n, line)
    if held is not None and len(held):
        for n, grp in held.groupby("params", sort=True):
            tok = np.sort(grp["tokens"].to_numpy(dtype=float))
            grid = np.geomspace(tok.min(), tok.max(), 60) if tok.min() < tok.max() else tok[:1]
            draws = _loss_draws(post, family, float(n), grid, kind="new_run", seed=seed)
            _band(ax, grid, draws[keep], probs, colors[float(n)], ls="--")
            dense = len(grp) > 40
            pts = ax.scatter(
                grp["tokens"],
                grp["loss"],
                marker="D",
                s=9 if dense else 22,
                facecolor=colors[float(n)],
                edgecolor="black",
                linewidth=0.4 if dense else 0.8,
                zorder=5,
                label=f"held out N={_size_label(float(n))}",
            )
            handles[("held", float(n))] = pts
    if not len(obs) and not (held is not None and len(held)):
        ax.text(0.5, 0.5, "no checkpoints", transform=ax.transAxes, ha="center")
    ax.set_xlabel("tokens seen D")
    ax.set_ylabel("loss (nats)")
    title = f"{family}: {len(fam_runs)} run{'s' if len(fam_runs) != 1 else ''} fitted"
    if held is not None and len(held):
        nh = held["params"].nunique()
        title += f", {nh} size{'s' if nh != 1 else ''} held out"
    ax.set_title(title, fontsize="medium")
    _log_axes(ax)
    ax.grid(True, which="major", alpha=0.3)
    band_note = "/".join(f"{round(100 * p)}" for p in sorted(probs))
    line_handles = [handles[k] for k in sorted(k for k in handles if not isinstance(k, tuple))]
    held_handles = [handles[k] for k in sorted(k for k in handles if isinstance(k, tuple))]
    if len(line_handles) <= _MAX_LEGEND_RUNS:
        shown = line_handles + held_handles
    else:
        shown = [line_handles[0], line_handles[-1]] + held_handles
    if shown:
        ax.legend(
            handles=shown,
            fontsize="x-small",
            title=f"fit: median, {band_note}% bands",
            title_fontsize="x-small",
            loc="best",
        )


def _band(ax, x, draws, probs, color, ls="-"):
    for i, p in enumerate(probs):
        lo, hi = _quantiles(draws, p)
        ax.fill_between(x, lo, hi, color=color, alpha=_band_alpha(i, len(probs)), lw=0)
    med = np.median(draws, axis=0)
    if len(x) > 1:
        ax.plot(x, med, color=color, lw=1.6, ls=ls, alpha=0.95)
    else:
        ax.plot(x, med, color=color, marker="_", ms=12)


# -- exponents ------------------------------------------------------------------------


def plot_exponents(post, ax=None, *, prob=(0.5, 0.9)):
    """Posterior of the shared exponents α, β and, when pooled, the family ones.

    Left panel: densities of the shared α and β. Right panel (pooled fits):
    each family's α_f and β_f as median with intervals, the shared medians as
    vertical lines.

    Parameters
    ----------
    post : Posterior
    ax : Axes or sequence of two Axes, optional
        One axes draws the shared densities only.
    prob : float or tuple of float
        Interval probabilities of the family intervals.

    Returns
    -------
    matplotlib.figure.Figure
    """
    probs = _probs(prob)
    pooled = post.config.exponents == "pooled"
    if ax is None:
        fig, grid = _new_figure(1, 2 if pooled else 1, width=10 if pooled else 5.5)
        axes = list(grid.ravel())
    else:
        axes = list(ax) if np.iterable(ax) else [ax]
        fig = _figure_of(axes[0])
    names = ("alpha", "beta") if post.config.law != "overtrain" else ("alpha",)
    labels = {"alpha": "α (params)", "beta": "β (tokens)"}
    dens = axes[0]
    for i, name in enumerate(names):
        _density(dens, post.draws(name), PALETTE[i], f"shared {labels[name]}")
    if post.config.law == "overtrain":
        dens.plot([], [], " ", label="β = α (over-training law)")
    dens.set_xlabel("exponent")
    dens.set_ylabel("posterior density")
    dens.set_title("Shared exponents")
    dens.legend(fontsize="small")
    dens.grid(True, alpha=0.3)
    if pooled and len(axes) > 1:
        fam_ax = axes[1]
        nf = len(post.families)
        ypos = np.arange(nf)[::-1]
        shift = {"alpha": 0.15, "beta": -0.15} if len(names) == 2 else {"alpha": 0.0}
        for i, name in enumerate(names):
            draws = post.draws(f"{name}_f")
            _forest_rows(fam_ax, draws, ypos + shift[name], probs, PALETTE[i], f"{labels[name]}")
            fam_ax.axvline(np.median(post.draws(name)), color=PALETTE[i], ls=":", lw=1)
        fam_ax.set_yticks(ypos, list(post.families))
        fam_ax.set_xlabel("exponent")
        fam_ax.set_title(f"Family exponents (pooled; {_prob_note(probs)})")
        fam_ax.legend(fontsize="small", loc="best")
        fam_ax.grid(True, axis="x", alpha=0.3)
    return fig


def _prob_note(probs):
    return " & ".join(f"{round(100 * p)}%" for p in sorted(probs)) + " intervals"


def _density(ax, draws, color, label):
    draws = np.asarray(draws, dtype=float).ravel()
    draws = draws[np.isfinite(draws)]
    if draws.size < 2 or np.ptp(draws) == 0:
        ax.axvline(draws[0], color=color, lw=2, label=f"{label} (point estimate {draws[0]:.3f})")
        return
    from scipy.stats import gaussian_kde

    lo, hi = np.quantile(draws, [0.001, 0.999])
    pad = 0.1 * (hi - lo)
    x = np.linspace(lo - pad, hi + pad, 256)
    y = gaussian_kde(draws)(x)
    med = np.median(draws)
    q5, q95 = np.quantile(draws, [0.05, 0.95])
    ax.plot(x, y, color=color, lw=1.8, label=f"{label}: {med:.3f} [{q5:.3f}, {q95:.3f}]")
    inside = (x >= q5) & (x <= q95)
    ax.fill_between(x[inside], 0, y[inside], color=color, alpha=0.25, lw=0)
    ax.set_ylim(bottom=0)


def _forest_rows(ax, draws, ypos, probs, color, label):
    """Median dot plus one interval line per probability, thicker for narrower."""
    med = np.median(draws, axis=0)
    for i, p in enumerate(probs):
        lo, hi = _quantiles(draws, p)
        ax.hlines(ypos, lo, hi, color=color, lw=1.2 + 2.0 * i, alpha=0.9)
    ax.plot(med, ypos, "o", color=color, ms=5, mec="white", mew=0.6, label=label)


# -- offsets -------------------------------------------------------------------------

_OFFSET_LABELS = {
    "log_E": "log E_f  (irreducible loss,\nlog of fraction of family scale)",
    "a": "a_f  (log params term\nat N = 1e9, relative)",
    "b": "b_f  (log tokens term\nat D = 1e11, relative)",
}


def plot_offsets(post, ax=None, *, prob=(0.5, 0.9)):
    """Family offsets ``log_E``, ``a``, ``b`` as a forest plot.

    One panel per coefficient, families as rows (median, 50% and 90%
    intervals); for ``a`` and ``b`` the population mean ``mu_theta`` is a
    dotted line with its 90% interval shaded. Offsets are on the relative scale (loss divided by
    each family's loss constant).

    Parameters
    ----------
    post : Posterior
    ax : sequence of three Axes, optional
    prob : float or tuple of float

    Returns
    -------
    matplotlib.figure.Figure
    """
    probs = _probs(prob)
    coefs = ("log_E", "a", "b")
    if ax is None:
        nf = len(post.families)
        fig, grid = _new_figure(1, 3, width=11, height=1.6 + 0.35 * nf, sharey=True)
        axes = list(grid.ravel())
    else:
        axes = list(ax) if np.iterable(ax) else [ax]
        if len(axes) != 3:
            raise ValueError("plot_offsets draws three panels: pass ax=[ax_logE, ax_a, ax_b]")
        fig = _figure_of(axes[0])
    ypos = np.arange(len(post.families))[::-1]
    mu = post.draws("mu_theta")
    for coef, panel in zip(coefs, axes, strict=True):
        draws = post.draws(coef)
        _forest_rows(panel, draws, ypos, probs, PALETTE[0], "family (median)")
        if coef in COEFS:
            # log E is pooled through its fraction of the smallest loss, not mu_theta
            m = mu[:, COEFS.index(coef)]
            m_lo, m_hi = _quantiles(m, 0.9)
            panel.axvspan(m_lo, m_hi, color=PALETTE[1], alpha=0.12, lw=0, label="population 90%")
            panel.axvline(np.median(m), color=PALETTE[1], ls=":", lw=1.2)
        panel.set_xlabel(_OFFSET_LABELS[coef])
        panel.set_title(coef)
        panel.grid(True, axis="x", alpha=0.3)
    axes[0].set_yticks(ypos, list(post.families))
    axes[0].set_ylim(-0.7, len(post.families) - 0.3)
    if ax is None:
        handles, labels = axes[-1].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside lower center", ncols=2, fontsize="small")
    else:
        axes[-1].legend(fontsize="x-small", loc="best")
    fig.suptitle(f"Family offsets ({_prob_note(probs)})")
    return fig


# -- predictive ----------------------------------------------------------------------


def plot_predictive(
    post,
    family,
    params,
    tokens,
    *,
    observed=None,
    kind="new_run",
    prob=0.9,
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
    prob : float
        Interval probability shaded under each density.
    ax : matplotlib.axes.Axes, optional
    seed : int

    Returns
    -------
    matplotlib.figure.Figure
    """
    kinds = (kind,) if isinstance(kind, str) else tuple(kind)
    (prob,) = _probs(prob)
    if ax is None:
        fig, grid = _new_figure(1, 1, width=6, height=3.8)
        ax = grid[0, 0]
    else:
        fig = _figure_of(ax)
    all_draws = {
        k: _loss_draws(post, family, params, tokens, kind=k, seed=seed)[:, 0] for k in kinds
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

        lo, hi = _quantiles(draws, prob)
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
        f"{family}: N={_size_label(float(params))}, D={_size_label(float(tokens))} "
        f"(median, {round(100 * prob)}% interval)",
        fontsize="medium",
    )
    ax.legend(fontsize="small", loc="best")
    ax.grid(True, alpha=0.3)
    return fig


# -- compute-optimal frontier -------------------------------------------------------------


def plot_frontier(post, family, flops_range, ax=None, *, prob=(0.5, 0.9), n=40, seed=0):
    """Compute-optimal model size N*(C) and tokens D*(C), with intervals.

    Parameters
    ----------
    post : Posterior
    family : str
    flops_range : (float, float)
        Smallest and largest training budget ``C = 6 N D`` in FLOPs.
    ax : matplotlib.axes.Axes, optional
    prob : float or tuple of float
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
    probs = _probs(prob)
    if ax is None:
        fig, grid = _new_figure(1, 1, width=6, height=4)
        ax = grid[0, 0]
    else:
        fig = _figure_of(ax)
    flops = np.geomspace(lo_c, hi_c, int(n))
    tables = {p: post.compute_optimal(flops, family=family, prob=p, seed=seed) for p in probs}
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
                alpha=_band_alpha(i, len(probs)),
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
    ax.set_title(f"{family}: compute-optimal frontier ({_prob_note(probs)})", fontsize="medium")
    ax.set_xscale("log")
    _log_axes(ax, x=False, y_counts=True)
    ax.legend(fontsize="small", loc="upper left")
    ax.grid(True, which="major", alpha=0.3)
    return fig


# -- experiment planning --------------------------------------------------------------

_PLAN_COLUMNS = ("params", "tokens", "n_runs", "flops", "current_sd", "expected_sd")
_PLAN_MARKERS = ("o", "s", "D")


def plot_plan(table, ax=None):
    """Expected posterior sd of the target after each candidate, against its cost.

    One point per candidate of a :func:`bayescale.design.plan` table, coloured
    by model size (marker: token count; triangles: sizes the family has not
    trained yet); new seeds of one size and token count are joined in order of
    their number of runs (labelled), so diminishing returns show as a
    flattening line. The dashed line is the current sd, the dotted one the
    budget; error bars are ±2 Monte-Carlo standard errors; the recommended
    experiment is circled.

    Parameters
    ----------
    table : pandas.DataFrame
        The output of ``design.plan``.
    ax : matplotlib.axes.Axes, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    if not isinstance(table, pd.DataFrame):
        raise TypeError(f"plot_plan takes the DataFrame returned by plan(), got {type(table)}")
    missing = [c for c in _PLAN_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"not a plan table: missing columns {missing}")
    if table.empty:
        raise ValueError("the plan table has no candidates to plot")
    if ax is None:
        fig, grid = _new_figure(1, 1, width=8.0, height=4.2)
        ax = grid[0, 0]
    else:
        fig = _figure_of(ax)
    colors = _size_colors(table["params"])
    mcse = table["expected_sd_mcse"] if "expected_sd_mcse" in table else 0.0 * table["flops"]
    for (n, d), g in table.groupby(["params", "tokens"], sort=True):
        g = g.sort_values("n_runs")
        color = colors[float(n)]
        # one size trained on different token counts: told apart by the marker
        token_rank = sorted(table.loc[table["params"] == n, "tokens"].unique()).index(d)
        if "new_size" in g:
            seeds = not bool(g["new_size"].iloc[0])
        else:  # a table built without the column: guess from the run counts
            seeds = len(g) > 1 or g["n_runs"].iloc[0] > 1
        marker = _PLAN_MARKERS[token_rank % len(_PLAN_MARKERS)] if seeds else "^"
        ax.errorbar(
            g["flops"],
            g["expected_sd"],
            yerr=2.0 * mcse.loc[g.index],
            color=color,
            marker=marker,
            ms=5,
            lw=1.2,
            capsize=2,
            label=f"{_size_label(n)} on {_size_label(d)} tokens",
        )
        if len(g) > 1:
            for _, r in g.iterrows():
                ax.annotate(
                    f"×{int(r['n_runs'])}",
                    (r["flops"], r["expected_sd"]),
                    textcoords="offset points",
                    xytext=(3, 3),
                    fontsize="x-small",
                    color=color,
                )
    ax.axhline(float(table["current_sd"].iloc[0]), color="0.3", ls="--", lw=1, label="sd now")
    budget = table.attrs.get("budget_flops")
    if budget:
        ax.axvline(float(budget), color="0.5", ls=":", lw=1, label="budget")
    if "recommended" in table and table["recommended"].any():
        rec = table[table["recommended"]].iloc[0]
        ax.plot(
            [rec["flops"]],
            [rec["expected_sd"]],
            "o",
            ms=14,
            mfc="none",
            mec="black",
            mew=1.5,
            label=f"recommended: {int(rec['n_runs'])} × {_size_label(rec['params'])} "
            f"on {_size_label(rec['tokens'])}",
        )
    ax.set_xscale("log")
    ax.set_xlabel("cost of the experiment (FLOPs, 6ND per run)")
    ax.set_ylabel("posterior sd of the target after it (nats)")
    tgt = table.attrs.get("target")
    if tgt:
        ax.set_title(
            f"What to train next: {tgt['family']} at {_size_label(tgt['params'])} params, "
            f"{_size_label(tgt['tokens'])} tokens ({tgt.get('kind', 'mean')})",
            fontsize="medium",
        )
    ax.legend(fontsize="x-small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(True, which="major", alpha=0.3)
    return fig


# -- seed / run effects ---------------------------------------------------------------


def plot_seed_effects(post, ax=None, *, prob=0.9):
    """Run effects ``u_r`` against model size, coloured by family.

    The grey band is ±1 posterior-median ``sigma_seed``, the scatter one new
    run would add.

    Parameters
    ----------
    post : Posterior
    ax : matplotlib.axes.Axes, optional
    prob : float
        Interval probability of each run's error bar.

    Returns
    -------
    matplotlib.figure.Figure
    """
    (prob,) = _probs(prob)
    if ax is None:
        fig, grid = _new_figure(1, 1, width=6.5, height=4)
        ax = grid[0, 0]
    else:
        fig = _figure_of(ax)
    u = post.draws("u")
    med = np.median(u, axis=0)
    lo, hi = _quantiles(u, prob)
    n = post.data.run_params
    sd = float(np.median(post.draws("sigma_seed")))
    ax.axhspan(-sd, sd, color="0.5", alpha=0.15, lw=0, label=f"±σ_seed ({sd:.3g})")
    ax.axhline(0, color="0.3", lw=0.8)
    nf = len(post.families)
    # log-spaced jitter separates runs of equal size in different families
    jitter = np.exp(0.04 * (post.data.run_family - (nf - 1) / 2)) if nf > 1 else 1.0
    for f, fam in enumerate(post.families):
        sel = post.data.run_family == f
        color = PALETTE[f % len(PALETTE)]
        marker = "osD^v<>p"[(f // len(PALETTE)) % 8]
        x = (n * jitter)[sel]
        ax.errorbar(
            x,
            med[sel],
            yerr=np.vstack([med[sel] - lo[sel], hi[sel] - med[sel]]),
            fmt=marker,
            color=color,
            ms=4,
            lw=1,
            capsize=0,
            label=fam,
        )
    _log_axes(ax, y=False)
    ax.set_xlabel("model size N (parameters)")
    ax.set_ylabel("run effect u_r (log loss; 0.01 ≈ 1%)")
    ax.set_title(f"Run (seed) effects: median and {round(100 * prob)}% interval", fontsize="medium")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="x-small", ncols=1 + nf // 12, loc="upper left", bbox_to_anchor=(1.01, 1))
    return fig


# -- MCMC diagnostics (arviz-plots) --------------------------------------------------------

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
