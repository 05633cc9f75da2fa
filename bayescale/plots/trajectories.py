"""Observed loss curves and the fitted law, per family, on log-log axes."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from bayescale.options import Target
from bayescale.plots._style import (
    MAX_DRAWS,
    MAX_LEGEND_RUNS,
    band_alpha,
    check_family,
    check_probs,
    figure_of,
    heldout_frame,
    log_axes,
    new_figure,
    quantiles,
    size_colors,
    size_label,
    thin_draws,
)
from bayescale.queries import loss_draws, run_curve_draws


def plot_trajectories(
    post,
    families=None,
    *,
    data=None,
    heldout=None,
    targets=(),
    ci_prob=(0.5, 0.9),
    ax=None,
    max_draws: int = MAX_DRAWS,
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
    targets : sequence, optional
        Models to mark (:class:`~bayescale.options.Target` or its text form
        ``"FAMILY:N:D"``): the ``new_run`` prediction as a black bar (widest
        interval) with its median, and the measured loss when known.
    ci_prob : float or tuple of float
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
        check_family(post, fam)
    if not families:
        raise ValueError("no families to plot")
    probs = check_probs(ci_prob)
    if ax is not None:
        if len(families) != 1:
            raise ValueError(f"ax= draws one family; got {len(families)}: pass families=[name]")
        axes = [ax]
        fig = figure_of(ax)
    else:
        ncols = min(3, len(families))
        nrows = math.ceil(len(families) / ncols)
        fig, grid = new_figure(nrows, ncols)
        axes = list(grid.ravel())
        for extra in axes[len(families) :]:
            extra.set_visible(False)
    observed = post.data.to_frame() if data is None else _as_frame(data)
    held = heldout_frame(heldout) if heldout is not None else None
    targets = [Target.parse(t) for t in targets]
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
        for t in (t for t in targets if t.family == fam):
            _mark_target(post, panel, t, probs[0], seed)
    return fig


def _mark_target(post, ax, target, ci_prob, seed):
    """The predicted loss of a target run as an interval bar, its measured loss as a cross."""
    draws = loss_draws(post, target.family, target.params, target.tokens, kind="new_run", seed=seed)
    lo, hi = quantiles(draws[:, 0], ci_prob)
    med = float(np.median(draws))
    label = (
        f"target {size_label(target.params)} @ {size_label(target.tokens)}: "
        f"{med:.4g} [{lo:.4g}, {hi:.4g}]"
    )
    new = [
        ax.errorbar(
            [target.tokens],
            [med],
            yerr=[[med - lo], [hi - med]],
            fmt="s",
            color="black",
            ms=6,
            lw=2.2,
            capsize=5,
            zorder=6,
            label=label,
        )
    ]
    if target.observed is not None:
        (cross,) = ax.plot(
            [target.tokens],
            [target.observed],
            "x",
            color="#D55E00",
            ms=10,
            mew=2.5,
            zorder=7,
            label=f"measured {target.observed:.4g}",
        )
        new.append(cross)
    old = ax.get_legend()
    handles = (list(old.legend_handles) if old is not None else []) + new
    title = old.get_title().get_text() if old is not None else None
    ax.legend(
        handles=handles, fontsize="x-small", loc="best", title=title, title_fontsize="x-small"
    )


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
    keep = thin_draws(post.n_draws, max_draws, seed)
    fam_runs = np.flatnonzero(pd_.run_family == f)
    all_params = list(pd_.run_params[fam_runs])
    if held is not None and len(held):
        all_params += list(held["params"])
    if len(obs):
        all_params += list(obs["params"])
    colors = size_colors(all_params)
    handles = {}
    for r in fam_runs[np.argsort(pd_.run_params[fam_runs], kind="stable")]:
        n = float(pd_.run_params[r])
        tok = pd_.tokens[pd_.obs_run == r]
        grid = np.geomspace(tok.min(), tok.max(), 60) if tok.min() < tok.max() else tok[:1]
        draws = run_curve_draws(post, int(r), grid)[keep]
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
            label=f"N={size_label(n)}",
        )
        handles.setdefault(n, line)
    if held is not None and len(held):
        for n, grp in held.groupby("params", sort=True):
            tok = np.sort(grp["tokens"].to_numpy(dtype=float))
            grid = np.geomspace(tok.min(), tok.max(), 60) if tok.min() < tok.max() else tok[:1]
            draws = loss_draws(post, family, float(n), grid, kind="new_run", seed=seed)
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
                label=f"held out N={size_label(float(n))}",
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
    log_axes(ax)
    ax.grid(True, which="major", alpha=0.3)
    band_note = "/".join(f"{round(100 * p)}" for p in sorted(probs))
    line_handles = [handles[k] for k in sorted(k for k in handles if not isinstance(k, tuple))]
    held_handles = [handles[k] for k in sorted(k for k in handles if isinstance(k, tuple))]
    if len(line_handles) <= MAX_LEGEND_RUNS:
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
        lo, hi = quantiles(draws, p)
        ax.fill_between(x, lo, hi, color=color, alpha=band_alpha(i, len(probs)), lw=0)
    med = np.median(draws, axis=0)
    if len(x) > 1:
        ax.plot(x, med, color=color, lw=1.6, ls=ls, alpha=0.95)
    else:
        ax.plot(x, med, color=color, marker="_", ms=12)
