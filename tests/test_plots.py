"""Structure of the figures in bayescale.plots (not pixels), on hand-made posteriors."""

from __future__ import annotations

import matplotlib
import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PathCollection, PolyCollection
from matplotlib.figure import Figure

from bayescale import laws, plots, testing
from bayescale.queries import loss_draws
from bayescale.testing import point_estimate as map_like
from bayescale.testing import synthetic_frame

matplotlib.use("Agg")


@pytest.fixture(scope="module")
def post():
    return testing.posterior(draws=200)


@pytest.fixture(scope="module")
def shared_post():
    return testing.posterior(synthetic_frame(families=("fam-a",)), exponents="shared", draws=50)


def _bands(ax):
    return [c for c in ax.collections if isinstance(c, PolyCollection)]


def _legend_texts(ax):
    leg = ax.get_legend()
    return [t.get_text() for t in leg.get_texts()] if leg else []


def test_trajectories_one_family_on_ax(post):
    fig = Figure()
    ax = fig.subplots()
    out = plots.plot_trajectories(post, "fam-a", ax=ax)
    assert out is fig
    n_runs = int(np.sum(post.data.run_family == 0))
    # one observed line + one fitted median per run; 50% and 90% band per run
    assert len(ax.lines) == 2 * n_runs
    assert len(_bands(ax)) == 2 * n_runs
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    assert ax.get_xlabel() == "tokens seen D"
    assert ax.get_ylabel() == "loss (nats)"
    assert "fam-a" in ax.get_title()
    assert _legend_texts(ax) == ["N=100M", "N=300M", "N=1B"]


def test_trajectory_band_is_the_run_posterior(post):
    """The 90% band at the first checkpoint equals the quantiles of law × exp(u_r)."""
    fig = plots.plot_trajectories(post, "fam-a", ci_prob=0.9, max_draws=10_000)
    ax = fig.axes[0]
    r = int(np.argmin(np.where(post.data.run_family == 0, post.data.run_params, np.inf)))
    tok = post.data.tokens[post.data.obs_run == r]
    # by hand, in float64, from the draws of the model's sites
    f = 0
    e, a, b = (post.draws(k)[:, f].astype(float) for k in ("log_E", "a", "b"))
    al, be = post.draws("alpha_f")[:, f], post.draws("beta_f")[:, f]
    x_n = np.log(post.data.run_params[r]) - laws.LOG_N_REF
    x_d = np.log(tok.min()) - laws.LOG_D_REF
    law = post.data.family_scale[f] * np.exp(
        np.logaddexp(np.logaddexp(e, a - al * x_n), b - be * x_d)
    )
    draws = law * np.exp(post.draws("u")[:, r])
    lo, hi = np.quantile(draws, [0.05, 0.95])
    verts = _bands(ax)[0].get_paths()[0].vertices
    at_first = verts[np.isclose(verts[:, 0], tok.min())]
    # the package evaluates the law in JAX's float32
    assert at_first[:, 1].min() == pytest.approx(lo, rel=1e-5)
    assert at_first[:, 1].max() == pytest.approx(hi, rel=1e-5)


def test_trajectories_grid_and_heldout(post):
    held = synthetic_frame(families=("fam-b",), sizes=(3e9,), n_ckpt=5, seed=3)
    fig = plots.plot_trajectories(post, heldout=held)
    visible = [a for a in fig.axes if a.get_visible()]
    assert [a.get_title().split(":")[0] for a in visible] == ["fam-a", "fam-b"]
    ax_b = visible[1]
    points = [c for c in ax_b.collections if isinstance(c, PathCollection)]
    assert len(points) == 1 and len(points[0].get_offsets()) == 5
    assert "held out N=3B" in _legend_texts(ax_b)
    assert "1 size held out" in ax_b.get_title()
    # fitted runs and the held-out size each get two bands
    assert len(_bands(ax_b)) == 2 * (3 + 1)
    assert not [c for c in visible[0].collections if isinstance(c, PathCollection)]


def test_trajectories_raw_data_and_errors(post):
    raw = synthetic_frame(seed=5)
    fig = plots.plot_trajectories(post, ["fam-b"], data=raw)
    assert len(fig.axes[0].lines) == 6
    with pytest.raises(KeyError, match="not in the data"):
        plots.plot_trajectories(post, "nope")
    ax = Figure().subplots()
    with pytest.raises(ValueError, match="one family"):
        plots.plot_trajectories(post, ax=ax)
    with pytest.raises(ValueError, match="lacks column"):
        plots.plot_trajectories(post, heldout=pd.DataFrame({"family": ["fam-a"]}))
    with pytest.raises(ValueError, match="probabilities"):
        plots.plot_trajectories(post, ci_prob=(0.5, 1.5))


def test_exponents_pooled_and_shared(post, shared_post):
    fig = plots.plot_exponents(post)
    dens, fam = fig.axes
    assert len(dens.lines) == 2  # α and β densities
    assert len(_bands(dens)) == 2
    texts = _legend_texts(dens)
    assert texts[0].startswith("shared α") and texts[1].startswith("shared β")
    assert dens.get_xlabel() == "exponent" and dens.get_ylabel() == "posterior density"
    assert [t.get_text() for t in fam.get_yticklabels()] == ["fam-a", "fam-b"]
    assert _legend_texts(fam) == ["α (params)", "β (tokens)"]
    fig = plots.plot_exponents(shared_post)
    assert len(fig.axes) == 1


def test_exponents_point_estimate(post):
    fig = plots.plot_exponents(map_like(post))
    assert "point estimate" in _legend_texts(fig.axes[0])[0]


def test_offsets_forest(post):
    fig = plots.plot_offsets(post)
    assert [a.get_title() for a in fig.axes] == ["log_E", "a", "b"]
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels == ["fam-a", "fam-b"]
    # median dots sit at the posterior medians of the family offsets
    for ax, name in zip(fig.axes, ("log_E", "a", "b"), strict=True):
        dots = [ln for ln in ax.lines if ln.get_marker() == "o"]
        np.testing.assert_allclose(dots[0].get_xdata(), np.median(post.draws(name), axis=0))
    with pytest.raises(ValueError, match="three panels"):
        plots.plot_offsets(post, ax=Figure().subplots())


def test_predictive_density_and_interval(post):
    fig = plots.plot_predictive(post, "fam-a", 3e9, 6e10, observed=2.4, kind="new_run")
    ax = fig.axes[0]
    draws = loss_draws(post, "fam-a", 3e9, 6e10, kind="new_run")[:, 0]
    lo, hi = np.quantile(draws, [0.05, 0.95])
    (band,) = _bands(ax)
    x = band.get_paths()[0].vertices[:, 0]
    grid_step = np.ptp(draws) * 1.3 / 299
    assert x.min() == pytest.approx(lo, abs=grid_step)
    assert x.max() == pytest.approx(hi, abs=grid_step)
    texts = _legend_texts(ax)
    assert texts[0].startswith("new_run") and texts[-1] == "observed 2.4"
    assert ax.get_xlabel() == "loss (nats)" and "fam-a" in ax.get_title()
    fig = plots.plot_predictive(post, "fam-a", 3e9, 6e10, kind=("mean", "new_run"))
    assert len(_bands(fig.axes[0])) == 2


def test_frontier(post):
    fig = plots.plot_frontier(post, "fam-b", (1e19, 1e23), n=12)
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    assert len(_bands(ax)) == 4
    n_line = ax.lines[0]
    expected = post.compute_optimal(np.geomspace(1e19, 1e23, 12), family="fam-b", ci_prob=0.9)
    np.testing.assert_allclose(n_line.get_ydata(), expected["params_opt"])
    assert "FLOPs" in ax.get_xlabel()
    assert _legend_texts(ax)[:2] == ["parameters N*", "tokens D*"]
    with pytest.raises(ValueError, match="flops_range"):
        plots.plot_frontier(post, "fam-b", (1e23, 1e19))


def test_seed_effects(post):
    fig = plots.plot_seed_effects(post)
    ax = fig.axes[0]
    assert len(ax.containers) == len(post.families)
    assert ax.get_xscale() == "log"
    assert "u_r" in ax.get_ylabel()
    texts = _legend_texts(ax)
    assert texts[0].startswith("±σ_seed") and texts[1:] == ["fam-a", "fam-b"]
    meds = np.concatenate([c.lines[0].get_ydata() for c in ax.containers])
    np.testing.assert_allclose(np.sort(meds), np.sort(np.median(post.draws("u"), axis=0)))


def test_diagnostics_wrap_arviz_plots(post):
    from arviz_plots import PlotCollection

    pc = plots.plot_diagnostics(post, "rank", var_names=["alpha", "beta"])
    assert isinstance(pc, PlotCollection)
    pc = plots.plot_diagnostics(post, "trace")
    assert isinstance(pc, PlotCollection)
    pc = plots.plot_diagnostics(post, "forest", var_names=["log_E"], combined=True)
    assert isinstance(pc, PlotCollection)
    import matplotlib.pyplot as plt

    plt.close("all")
    with pytest.raises(ValueError, match="kind"):
        plots.plot_diagnostics(post, "pair")
    with pytest.raises(ValueError, match="point estimate"):
        plots.plot_diagnostics(map_like(post))


def test_trajectories_mark_a_target_with_its_interval(post):
    fig = plots.plot_trajectories(post, "fam-a", targets=["fam-a:3B:600B:2.2"])
    ax = fig.axes[0]
    texts = _legend_texts(ax)
    target = next(t for t in texts if t.startswith("target 3B @ 600B"))
    draws = loss_draws(post, "fam-a", 3e9, 6e11, kind="new_run")[:, 0]
    assert f"{np.median(draws):.4g}" in target
    assert "measured 2.2" in texts
    bar = next(c for c in ax.containers if hasattr(c, "has_yerr") and c.has_yerr)
    (seg,) = bar.lines[2][0].get_segments()
    # the widest of the figure's intervals (90%)
    lo, hi = np.quantile(draws, [0.05, 0.95])
    assert seg[:, 1] == pytest.approx([lo, hi], rel=1e-6)


def test_plan_plot_rejects_what_is_not_a_plan_table():
    with pytest.raises(TypeError, match="Plan returned by plan"):
        plots.plot_plan([1, 2, 3])
    with pytest.raises(ValueError, match=r"missing columns \['expected_sd'\]"):
        plots.plot_plan(pd.DataFrame(columns=["params", "tokens", "n_runs", "flops", "current_sd"]))
    cols = ["params", "tokens", "n_runs", "flops", "current_sd", "expected_sd"]
    with pytest.raises(ValueError, match="no candidates"):
        plots.plot_plan(pd.DataFrame(columns=cols))


def test_sbc_rank_histograms_one_panel_per_parameter():
    rng = np.random.default_rng(0)
    records = pd.DataFrame(
        {"rank.alpha": rng.integers(0, 100, 60), "rank.beta": rng.integers(0, 100, 60)}
    )
    records["in90.alpha"] = True  # other columns are ignored
    fig = plots.plot_sbc_ranks(records, bins=5)
    assert isinstance(fig, Figure)
    shown = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in shown] == ["alpha", "beta"]
    bars = shown[0].patches[-5:]
    assert sum(b.get_height() for b in bars) == 60
    # the grey band holds the expected count per bar
    band = shown[0].patches[0]
    assert band.get_y() < 60 / 5 < band.get_y() + band.get_height()
    with pytest.raises(ValueError, match="rank"):
        plots.plot_sbc_ranks(pd.DataFrame({"x": [1]}))
