"""Posterior of the law: exponents, family offsets, run (seed) effects."""

from __future__ import annotations

import numpy as np

from bayescale.model import COEFS
from bayescale.plots._style import (
    PALETTE,
    check_probs,
    figure_of,
    log_axes,
    new_figure,
    prob_note,
    quantiles,
)


def plot_exponents(post, ax=None, *, ci_prob=(0.5, 0.9)):
    """Posterior of the shared exponents α, β and, when pooled, the family ones.

    Left panel: densities of the shared α and β. Right panel (pooled fits):
    each family's α_f and β_f as median with intervals, the shared medians as
    vertical lines.

    Parameters
    ----------
    post : Posterior
    ax : Axes or sequence of two Axes, optional
        One axes draws the shared densities only.
    ci_prob : float or tuple of float
        Interval probabilities of the family intervals.

    Returns
    -------
    matplotlib.figure.Figure
    """
    probs = check_probs(ci_prob)
    pooled = post.config.exponents == "pooled"
    if ax is None:
        fig, grid = new_figure(1, 2 if pooled else 1, width=10 if pooled else 5.5)
        axes = list(grid.ravel())
    else:
        axes = list(ax) if np.iterable(ax) else [ax]
        fig = figure_of(axes[0])
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
        fam_ax.set_title(f"Family exponents (pooled; {prob_note(probs)})")
        fam_ax.legend(fontsize="small", loc="best")
        fam_ax.grid(True, axis="x", alpha=0.3)
    return fig


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
        lo, hi = quantiles(draws, p)
        ax.hlines(ypos, lo, hi, color=color, lw=1.2 + 2.0 * i, alpha=0.9)
    ax.plot(med, ypos, "o", color=color, ms=5, mec="white", mew=0.6, label=label)


_OFFSET_LABELS = {
    "log_E": "log E_f  (irreducible loss,\nlog of fraction of family scale)",
    "a": "a_f  (log params term\nat N = 1e9, relative)",
    "b": "b_f  (log tokens term\nat D = 1e11, relative)",
}


def plot_offsets(post, ax=None, *, ci_prob=(0.5, 0.9)):
    """Family offsets ``log_E``, ``a``, ``b`` as a forest plot.

    One panel per coefficient, families as rows (median, 50% and 90%
    intervals); for ``a`` and ``b`` the population mean ``mu_theta`` is a
    dotted line with its 90% interval shaded. Offsets are on the relative scale (loss divided by
    each family's loss constant).

    Parameters
    ----------
    post : Posterior
    ax : sequence of three Axes, optional
    ci_prob : float or tuple of float

    Returns
    -------
    matplotlib.figure.Figure
    """
    probs = check_probs(ci_prob)
    coefs = ("log_E", "a", "b")
    if ax is None:
        nf = len(post.families)
        fig, grid = new_figure(1, 3, width=11, height=1.6 + 0.35 * nf, sharey=True)
        axes = list(grid.ravel())
    else:
        axes = list(ax) if np.iterable(ax) else [ax]
        if len(axes) != 3:
            raise ValueError("plot_offsets draws three panels: pass ax=[ax_logE, ax_a, ax_b]")
        fig = figure_of(axes[0])
    ypos = np.arange(len(post.families))[::-1]
    mu = post.draws("mu_theta")
    for coef, panel in zip(coefs, axes, strict=True):
        draws = post.draws(coef)
        _forest_rows(panel, draws, ypos, probs, PALETTE[0], "family (median)")
        if coef in COEFS:
            # log E is pooled through its fraction of the smallest loss, not mu_theta
            m = mu[:, COEFS.index(coef)]
            m_lo, m_hi = quantiles(m, 0.9)
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
    fig.suptitle(f"Family offsets ({prob_note(probs)})")
    return fig


def plot_seed_effects(post, ax=None, *, ci_prob=0.9):
    """Run effects ``u_r`` against model size, coloured by family.

    The grey band is ±1 posterior-median ``sigma_seed``, the scatter one new
    run would add.

    Parameters
    ----------
    post : Posterior
    ax : matplotlib.axes.Axes, optional
    ci_prob : float
        Interval probability of each run's error bar.

    Returns
    -------
    matplotlib.figure.Figure
    """
    (prob,) = check_probs(ci_prob)
    if ax is None:
        fig, grid = new_figure(1, 1, width=6.5, height=4)
        ax = grid[0, 0]
    else:
        fig = figure_of(ax)
    u = post.draws("u")
    med = np.median(u, axis=0)
    lo, hi = quantiles(u, prob)
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
    log_axes(ax, y=False)
    ax.set_xlabel("model size N (parameters)")
    ax.set_ylabel("run effect u_r (log loss; 0.01 ≈ 1%)")
    ax.set_title(f"Run (seed) effects: median and {round(100 * prob)}% interval", fontsize="medium")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="x-small", ncols=1 + nf // 12, loc="upper left", bbox_to_anchor=(1.01, 1))
    return fig
