"""Tests for bayescale.design: experiment planning by preposterior analysis.

The posteriors here are built by hand (no sampling) so that the right answer
is known: an exact posterior by quadrature on a grid, or the conjugate
variance of a family's average seed effect.
"""

from __future__ import annotations

import json
import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
import xarray as xr

from bayescale import design, laws
from bayescale.cli import main
from bayescale.data import ScalingData
from bayescale.design import runs
from bayescale.fitting import FitConfig
from bayescale.model import family_law, log_likelihood
from bayescale.posterior import Posterior
from bayescale.reporting.figures import plan_figure

SIZES = (1e8, 2e8)
TOKENS = np.geomspace(1e10, 1e11, 8)
LAW = {"log_E": math.log(0.7), "a": math.log(0.12), "b": math.log(0.12)}
ALPHA, BETA = 0.34, 0.28
TARGET = {"family": "fam", "params": 2e9, "tokens": 4e10}
# one candidate menu and one simulation size for the plan() tests: same shapes,
# one compilation
MENU = [{"params": 2e8, "tokens": 1e11, "n_runs": k} for k in (1, 4, 8)] + [
    {"params": 1e9, "tokens": 2e10, "n_runs": 1, "label": "big"}
]
PLAN_KW = {"n_outcomes": 32, "max_draws": 1000}


def _frame(seeds: int = 2) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for n in SIZES:
        for s in range(seeds):
            for t in TOKENS:
                law = laws.LawParams(LAW["log_E"], LAW["a"], LAW["b"], ALPHA, BETA)
                mu = float(laws.loss(law, n, t))
                loss = 2.5 * mu * math.exp(0.01 * rng.standard_normal())
                rows.append(("fam", f"r{n:.0e}-{s}", n, t, loss, str(s)))
    return pd.DataFrame(rows, columns=["family", "run", "params", "tokens", "loss", "seed"])


def _posterior(
    n_draws: int,
    *,
    a_sd: float = 0.0,
    sigma_seed: float = 0.03,
    sigma_obs: float = 0.002,
    nu: float = 30.0,
    seeds: int = 2,
    seed: int = 0,
    min_tokens: float | None = None,
    warmup_fraction: float | None = 0.1,
    discrepancy: tuple | None = None,
) -> Posterior:
    """One family, ``len(SIZES) * seeds`` runs; draws vary only where asked.

    ``a_sd`` spreads the family's reducible term ``a`` across draws. Run
    effects sum to zero within the family, so the target carries the offset of
    the family's average run. ``discrepancy=(sigma, length)`` adds the
    size-level discrepancy, drawn from its prior at the fitted sizes.
    """
    cut = {"min_tokens": min_tokens, "warmup_fraction": warmup_fraction}
    data = ScalingData.from_frame(_frame(seeds), max_points_per_run=None, **cut)
    rng = np.random.default_rng(seed)
    s, r = n_draws, data.n_runs
    u = 0.02 * rng.standard_normal((s, r))
    u -= u.mean(axis=1, keepdims=True)
    rel = math.log(data.family_scale[0])
    samples = {
        "log_E": np.full((s, 1), LAW["log_E"] + math.log(2.5) - rel),
        "a": LAW["a"] + math.log(2.5) - rel + a_sd * rng.standard_normal((s, 1)),
        "b": np.full((s, 1), LAW["b"] + math.log(2.5) - rel),
        "alpha_f": np.full((s, 1), ALPHA),
        "beta_f": np.full((s, 1), BETA),
        "sigma_obs": np.full((s, 1), sigma_obs),
        "u": u,
        "sigma_seed": np.full(s, sigma_seed),
        "ell": np.full(s, 0.5),
        "nu": np.full(s, nu),
        "alpha": np.full(s, ALPHA),
        "beta": np.full(s, BETA),
    }
    if discrepancy is not None:
        samples["z_delta"] = rng.standard_normal((s, len(SIZES)))
        samples["sigma_delta"] = np.full(s, discrepancy[0])
        samples["ell_delta"] = np.full(s, discrepancy[1])
    samples = {k: v[None] for k, v in samples.items()}  # one chain
    config = FitConfig(
        exponents="shared",
        max_points_per_run=None,
        discrepancy=discrepancy is not None,
        **cut,
    )
    post = Posterior.from_draws(samples, data, config)
    post.tree["sample_stats"] = xr.DataTree(
        xr.Dataset({"diverging": (("chain", "draw"), np.zeros((1, s), dtype=bool))})
    )
    return post


@pytest.fixture(scope="module")
def seeds_post():
    return _posterior(2000, seeds=2)


# -- the likelihood the weights use ------------------------------------------------------
def test_run_marginal_matches_brute_force_integral():
    post = _posterior(4, sigma_seed=0.02, sigma_obs=0.01, nu=4.0)
    draw = runs.one_draw(runs.draw_params(post, np.arange(4)), 0)
    grid = np.linspace(-0.16, 0.16, 6401)
    for tokens in (TOKENS, TOKENS[-1:]):
        inputs, mask = runs.run_inputs(0, 1, 4e8, tokens, n_pad=16)
        y = jax.jit(runs.simulate_run)(jax.random.PRNGKey(3), inputs, draw, 0.0, 0.7)
        ours = float(jax.jit(runs.run_log_marginal)(inputs, draw, 0.0, y, mask))
        # brute force over the seed effect with the model's own log-likelihood
        plain = runs.run_inputs(0, 1, 4e8, tokens)[0]._replace(y=y[: tokens.size])

        @jax.jit
        def ll(v, plain=plain):
            return log_likelihood(plain, dict(draw, u=jnp.reshape(v, (1,)))).sum()

        lp = np.asarray(jax.vmap(ll)(grid), dtype=np.float64) - 0.5 * (grid / 0.02) ** 2
        lp -= math.log(0.02 * math.sqrt(2 * math.pi))
        top = lp.max()
        brute = top + math.log(np.trapezoid(np.exp(lp - top), grid))
        assert ours == pytest.approx(brute, abs=2e-3)


# -- importance weights against an exact refit -----------------------------------------
def test_importance_update_matches_exact_posterior():
    """One uncertain coefficient and the family offset: reweighting matches a grid posterior.

    The new run's offset is ``delta + v`` (family offset, its own seed); the
    target carries ``delta``. Given ``u = delta + v`` the offset is Gaussian,
    ``delta | u ~ N(u / (K + 1), sigma^2 / (K + 1))``, so a 2-D grid over
    ``(a, u)`` gives the exact posterior moments of the target.
    """
    a_sd, sigma = 0.15, 0.02
    post = _posterior(4000, a_sd=a_sd, sigma_seed=sigma, sigma_obs=0.01, nu=5.0)
    k_fit = post.data.n_runs
    cand = design.Candidate(8e8, 1e11, 1)
    ckpt = design.family_design(post, "fam").checkpoints(cand.tokens)
    a0 = float(np.median(post.draws("a")))
    truth = {k: jnp.asarray(v) for k, v in runs.one_draw(runs.draw_params(post, [0]), 0).items()}
    truth["a"] = jnp.asarray([a0 + 0.2])
    inputs, _ = runs.run_inputs(0, 1, cand.params, ckpt)
    y = runs.simulate_run(jax.random.PRNGKey(1), inputs, truth, 0.0, 0.5)
    loss = np.exp(np.asarray(y)) * post.data.family_scale[0]
    upd = design.importance_update(post, TARGET, cand, loss[None], max_draws=4000)

    sd_u = sigma * math.sqrt(1 + 1 / k_fit)
    a_grid = np.linspace(a0 - 6 * a_sd, a0 + 6 * a_sd, 241)
    u_grid = np.linspace(-6 * sd_u, 6 * sd_u, 241)
    obs = inputs._replace(y=y)

    def ll(a, u):
        draw = dict(truth, a=jnp.reshape(a, (1,)), u=jnp.reshape(u, (1,)))
        return log_likelihood(obs, draw).sum()

    grid = np.asarray(jax.vmap(lambda a: jax.vmap(lambda u: ll(a, u))(u_grid))(a_grid), np.float64)
    log_post = (
        grid - 0.5 * (u_grid[None, :] / sd_u) ** 2 - 0.5 * ((a_grid[:, None] - a0) / a_sd) ** 2
    )
    w = np.exp(log_post - log_post.max())
    w /= w.sum()
    law = family_law(truth).map(lambda v: v[0])._replace(a=a_grid)
    log_law = np.asarray(laws.log_loss(law, math.log(TARGET["params"]), math.log(TARGET["tokens"])))
    t_law = post.data.family_scale[0] * np.exp(log_law)[:, None]
    m, v = u_grid[None, :] / (k_fit + 1), sigma**2 / (k_fit + 1)
    mean = np.sum(w * t_law * np.exp(m + v / 2))
    second = np.sum(w * t_law**2 * np.exp(2 * m + 2 * v))
    sd = math.sqrt(second - mean**2)
    assert upd["sd"] < 0.9 * upd["current_sd"]  # the experiment is informative
    assert upd["ess"] > 200
    assert upd["sd"] == pytest.approx(sd, rel=0.05)
    assert upd["mean"] == pytest.approx(mean, abs=0.1 * sd)


def _law_at_target(post) -> float:
    law = family_law({k: post.draws(k)[0] for k in ("log_E", "a", "b", "alpha_f", "beta_f")})
    log_mu = laws.log_loss(law.map(lambda v: v[0]), math.log(2e9), math.log(4e10))
    return float(post.data.family_scale[0] * np.exp(log_mu))


# -- the preposterior expectation ----------------------------------------------------------
def test_more_seeds_shrink_the_family_offset_as_conjugate_theory_says(seeds_post):
    """Only the family's average seed effect is uncertain: sd ∝ 1 / sqrt(K + k)."""
    post = seeds_post
    k_fit = post.data.n_runs
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        table = design.plan(post, TARGET, 1e22, candidates=MENU, seed=1, **PLAN_KW).table
    t_law = _law_at_target(post)
    assert table["current_sd"].iloc[0] == pytest.approx(t_law * 0.03 / math.sqrt(k_fit), rel=0.06)
    assert set(table["method"]) == {"importance"}
    for _, row in table[table["params"] == 2e8].iterrows():
        expected = math.sqrt(k_fit / (k_fit + row["n_runs"]))
        assert row["expected_sd"] / row["current_sd"] == pytest.approx(expected, rel=0.07)
        assert row["expected_sd_mcse"] < 0.05 * row["expected_sd"]
    # one new run at the target adds its own seed effect and one evaluation's noise
    new_run = design.plan(post, TARGET, 1e22, candidates=MENU, kind="new_run", seed=1, **PLAN_KW)
    new_run = new_run.table
    var_fixed = 0.03**2 + 0.002**2 * 30 / 28  # Student-t(30) evaluation noise
    assert new_run["current_sd"].iloc[0] == pytest.approx(
        t_law * math.sqrt(0.03**2 / k_fit + var_fixed), rel=0.06
    )
    row = new_run[(new_run["params"] == 2e8) & (new_run["n_runs"] == 8)].iloc[0]
    expected = math.sqrt(0.03**2 / (k_fit + 8) + var_fixed)
    assert row["expected_sd"] == pytest.approx(t_law * expected, rel=0.06)


def test_a_run_near_the_target_measures_its_discrepancy_as_gaussian_theory_says():
    """Family offset and discrepancy uncertain, the law fixed: a conjugate Gaussian problem.

    In logs the target is ``T = d0 + delta(x_t) - mean(delta_fit)`` and k new
    runs at ``x_c`` average ``d0 + delta(x_c) - mean(delta_fit) + seeds / sqrt(k)``,
    with ``d0 ~ N(0, sigma_seed^2 / K)`` and ``delta`` the exponential-kernel
    process; the sd after observing them is
    ``sqrt(Var T - Cov(T, y)^2 / Var y)``. A run at the target's size
    measures its discrepancy; one at a fitted size cannot.
    """
    sigma_seed, sigma_d, ell = 0.03, 0.03, 1.5
    post = _posterior(3000, sigma_seed=sigma_seed, discrepancy=(sigma_d, ell))
    k_fit = post.data.n_runs
    sizes = (2e8, 1e9, 2e9)
    menu = [{"params": n, "tokens": 1e11, "n_runs": 4} for n in sizes]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        table = design.plan(post, TARGET, 1e23, candidates=menu, seed=1, **PLAN_KW).table

    x = np.log([*SIZES, TARGET["params"]])
    k = sigma_d**2 * np.exp(-np.abs(np.subtract.outer(x, x)) / ell)

    def cov(c1, c2):
        return sigma_seed**2 / k_fit + c1 @ k @ c2

    a_t = np.array([-0.5, -0.5, 1.0])
    var_t = cov(a_t, a_t)
    t_law = _law_at_target(post)
    assert table["current_sd"].iloc[0] == pytest.approx(t_law * math.sqrt(var_t), rel=0.06)
    expected = {}
    for n in sizes:
        x_c = np.log(n)
        # covariance over (fitted sizes, target, candidate)
        xs = np.append(x, x_c)
        k = sigma_d**2 * np.exp(-np.abs(np.subtract.outer(xs, xs)) / ell)
        a_t4, a_c4 = np.append(a_t, 0.0), np.array([-0.5, -0.5, 0.0, 1.0])
        c_ty = sigma_seed**2 / k_fit + a_t4 @ k @ a_c4
        var_y = sigma_seed**2 / k_fit + a_c4 @ k @ a_c4 + sigma_seed**2 / 4
        expected[n] = math.sqrt((var_t - c_ty**2 / var_y) / var_t)
    for _, row in table.iterrows():
        assert row["expected_sd"] / row["current_sd"] == pytest.approx(
            expected[row["params"]], rel=0.08
        ), row["experiment"]
    by_size = table.set_index("params")["expected_sd"]
    assert by_size[2e9] < by_size[1e9] < by_size[2e8]


# -- costs, budget, errors ----------------------------------------------------------------
def test_costs_add_up_and_over_budget_candidates_are_dropped(seeds_post):
    budget = 1e21  # the whole menu fits; a 1e10 model on 2e11 tokens does not
    cands = MENU + [design.Candidate(1e10, 2e11, 1)]
    with pytest.warns(design.OverBudgetWarning, match="1 candidate"):
        result = design.plan(seeds_post, TARGET, budget, candidates=cands, **PLAN_KW)
    table = result.table
    assert sorted(table["n_runs"]) == [1, 1, 4, 8]
    np.testing.assert_array_equal(table["new_size"], ~table["params"].isin(SIZES))
    assert result.dropped == ("1 run x 10B params on 200B tokens",)
    np.testing.assert_allclose(
        table["flops"], 6 * table["params"] * table["tokens"] * table["n_runs"]
    )
    np.testing.assert_allclose(table["budget_fraction"], table["flops"] / budget)
    assert (table["flops"] <= budget).all()
    np.testing.assert_allclose(
        table["reduction_per_1e18_flops"], table["reduction"] / (table["flops"] / 1e18)
    )
    np.testing.assert_allclose(table["reduction"], table["current_sd"] - table["expected_sd"])


def test_default_candidates_cover_seeds_and_larger_sizes(seeds_post):
    budget = 1e21
    cands = design.default_candidates(seeds_post, "fam", budget)
    seeds = [c for c in cands if c.params in SIZES]
    larger = [c for c in cands if c.params > max(SIZES)]
    assert {c.n_runs for c in seeds} >= {1, 2, 4, 8}
    assert {c.tokens / c.params for c in seeds if c.tokens != 1e11} == {20.0}
    assert larger and all(c.n_runs == 1 for c in larger)
    assert max(c.flops for c in larger) <= budget
    # the usual tokens per parameter of this family is 1e11 / 1.5e8 (median), and 20
    tpp = {round(c.tokens / c.params) for c in larger}
    assert 20 in tpp and len(tpp) == 2


@pytest.mark.parametrize(
    ("budget", "target", "match"),
    [
        (0.0, TARGET, "positive"),
        (-1e20, TARGET, "positive"),
        (1e21, dict(TARGET, family="other"), "not in the fit"),
        (1e21, dict(TARGET, params=7.0), "looks like billions"),
        (1e21, {"family": "fam", "params": 1e9}, "needs family, params, tokens"),
        (1e10, TARGET, "no candidate experiment fits the budget"),
    ],
)
def test_bad_budget_or_target_gives_clear_error(seeds_post, budget, target, match):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", design.OverBudgetWarning)
        with pytest.raises(ValueError, match=match):
            design.plan(seeds_post, target, budget, n_outcomes=8)


def test_runs_that_end_before_the_warmup_cut_are_not_offered():
    """The fit would discard every checkpoint of such a run, so it can teach nothing."""
    post = _posterior(500, seeds=2, min_tokens=2e10, warmup_fraction=None)
    fd = design.family_design(post, "fam")
    assert fd.min_tokens == 2e10 and fd.usable(2e10) and not fd.usable(1.9e10)
    assert np.isnan(design.family_design(_posterior(10), "fam").min_tokens)
    cands = design.default_candidates(post, "fam", 1e21)
    assert min(c.tokens for c in cands) >= 2e10
    # 20 tokens per parameter is offered where it clears the cut
    assert any(c.n_runs == 1 and c.tokens == 20 * c.params for c in cands)
    short = {"params": 1e8, "tokens": 1e10, "n_runs": 4}
    with pytest.warns(design.WarmupCutWarning, match=r"min_tokens = 2e\+10"):
        result = design.plan(post, TARGET, 1e21, candidates=MENU + [short], n_outcomes=8)
    table = result.table
    assert len(table) == len(MENU) and (table["tokens"] >= 2e10).all()
    assert any("warm-up cut" in n for n in result.notes)
    with pytest.raises(ValueError, match="no candidate is left"):
        design.plan(post, TARGET, 1e21, candidates=[short], n_outcomes=8)


def test_a_relative_warmup_cut_keeps_short_candidates_and_their_curves():
    post = _posterior(50, seeds=2, min_tokens=2e10, warmup_fraction=0.1)
    fd = design.family_design(post, "fam")
    assert fd.usable(1e9)
    # a run to 1e10 tokens keeps checkpoints from 1e9 (10%), a long one from 2e10
    assert fd.checkpoints(1e10)[0] == pytest.approx(1e9, rel=1e-6)
    assert fd.checkpoints(1e12)[0] >= 2e10 * (1 - 1e-6)


def test_plan_is_deterministic_and_recommends_one_of_its_rows(seeds_post):
    kw = {"candidates": MENU, **PLAN_KW}
    a = design.plan(seeds_post, TARGET, 1e21, seed=3, **kw)
    b = design.plan(seeds_post, TARGET, 1e21, seed=3, **kw)
    c = design.plan(seeds_post, TARGET, 1e21, seed=4, **kw)
    pd.testing.assert_frame_equal(a.table, b.table)
    assert not np.allclose(a.table["expected_sd"], c.table["expected_sd"])
    t = a.table
    assert t["recommended"].sum() == 1
    rec = a.recommended
    assert rec["experiment"] in set(t["experiment"])
    assert rec["experiment"] in a.recommendation()
    assert (np.diff(t["reduction"]) <= 0).all()
    # the recommendation is the cheapest row tied with the largest reduction
    top = t.iloc[0]
    tie = 2 * np.hypot(top["expected_sd_mcse"], t["expected_sd_mcse"])
    clear = t["reduction"] > 2 * t["expected_sd_mcse"]
    tied = t[(top["reduction"] - t["reduction"] <= tie) & clear]
    assert rec["flops"] == tied["flops"].min()
    assert t["tied_with_best"].sum() == len(tied)
    if len(tied) > 1:
        assert "within Monte-Carlo error" in a.recommendation()
        assert any("within Monte-Carlo error of the largest" in n for n in a.notes)
    per = design.plan(seeds_post, TARGET, 1e21, seed=3, rank_by="per_flop", **kw)
    assert (np.diff(per.table["reduction_per_1e18_flops"]) <= 0).all()
    assert per.recommended["experiment"] == per.table.iloc[0]["experiment"]
    assert "sd reduction per FLOP" in per.format()
    _check_plan_figure(a)


def _check_plan_figure(result):
    """One point per candidate, seed counts joined, current sd, budget and the pick marked."""
    from matplotlib.figure import Figure

    from bayescale import plots

    table = result.table
    ax = Figure().subplots()
    assert plots.plot_plan(result, ax=ax) is ax.figure
    # markers only: error-bar caps are lines too
    lines = [ln for ln in ax.get_lines() if ln.get_marker() in ("o", "s", "D", "^")]
    points = [ln for ln in lines if ln.get_ms() < 10]
    n_points = sum(len(ln.get_xdata()) for ln in points)
    assert n_points == len(table)
    seeds = [ln for ln in points if len(ln.get_xdata()) > 1]
    assert len(seeds) == 1  # the three seed counts at 2e8 on 1e11 tokens
    # triangles: exactly the sizes the family has not trained
    triangles = [ln for ln in points if ln.get_marker() == "^"]
    assert sum(len(ln.get_xdata()) for ln in triangles) == table["new_size"].sum() > 0
    assert list(seeds[0].get_ydata()) == list(
        table[table["params"] == 2e8].sort_values("n_runs")["expected_sd"]
    )
    (now,) = [ln for ln in ax.get_lines() if ln.get_linestyle() == "--"]
    assert now.get_ydata()[0] == pytest.approx(table["current_sd"].iloc[0])
    (budget,) = [ln for ln in ax.get_lines() if ln.get_linestyle() == ":"]
    assert budget.get_xdata()[0] == result.budget_flops
    (ring,) = [ln for ln in lines if ln.get_ms() >= 10]
    rec = result.recommended
    assert (ring.get_xdata()[0], ring.get_ydata()[0]) == (rec["flops"], rec["expected_sd"])
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any(t.startswith("recommended:") for t in texts)
    # the report's "What to train next" section shows the same figure
    (fig,) = plan_figure(result)
    assert fig.name == "plan" and fig.png.startswith(b"\x89PNG")


def test_negative_expected_reductions_are_explained_as_error_not_as_information():
    from bayescale.design.planning import _honesty_notes

    def table(reduction, mcse, method):
        n = len(reduction)
        return pd.DataFrame(
            {
                "reduction": reduction,
                "reduction_pct": 100 * np.asarray(reduction) / 0.1,
                "expected_sd_mcse": mcse,
                "method": method,
                "recommended": [True] + [False] * (n - 1),
                "tied_with_best": [True] + [False] * (n - 1),
                "experiment": [f"e{i}" for i in range(n)],
            }
        )

    (note,) = _honesty_notes(table([0.01, -0.001], [0.001, 0.001], ["importance"] * 2))
    assert "all within Monte-Carlo error" in note
    (note,) = _honesty_notes(table([0.01, -0.003, -0.001], [0.001] * 3, ["laplace"] * 3))
    assert note.startswith("2 candidate(s)") and "1 beyond Monte-Carlo error" in note
    assert "by up to 3.0%" in note and "error of the Laplace refits" in note
    mixed = table([0.01, -0.003, -0.004], [0.001] * 3, ["laplace", "importance", "laplace"])
    assert "approximations (few effective draws" in _honesty_notes(mixed)[0]


# -- command line -------------------------------------------------------------------------
def test_cli_plan_prints_json_and_rejects_unknown_family(seeds_post, tmp_path, capsys):
    path = tmp_path / "fit.nc"
    seeds_post.save(path)
    args = ["plan", str(path), "--target", "fam:2B:40B"]
    args += ["--budget", "5e20", "--outcomes", "8", "--json"]
    assert main(args + ["--plot", str(tmp_path / "plan.png")]) == 0
    assert (tmp_path / "plan.png").read_bytes().startswith(b"\x89PNG")
    out = json.loads(capsys.readouterr().out)
    assert out["recommendation"].startswith("train ")
    assert len(out["recommended"]) == 1
    assert all(c["flops"] <= 5e20 for c in out["candidates"])
    assert out["dropped_over_budget"]  # 8 seeds at 2e8 on 1e11 tokens cost 9.6e20
    assert main(args[:3] + ["other:2B:40B"] + args[4:]) == 2
    assert "not in the fit" in capsys.readouterr().err
