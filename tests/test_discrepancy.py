"""The size-level discrepancy: its prior, its conditionals, its place in the model."""

import jax
import numpy as np
import pandas as pd
import pytest
from numpyro import handlers

from bayescale.data import ScalingData
from bayescale.discrepancy import (
    budget_families,
    budget_slots,
    conditional,
    group_slots,
    joint_draws,
    query_offsets,
    size_slots,
    slot_values,
)
from bayescale.model import family_law, log_likelihood, scaling_model
from bayescale.simulate import simulate_frame


def _kernel(x, y, sigma, length):
    return sigma**2 * np.exp(-np.abs(np.subtract.outer(x, y)) / length)


def test_slots_group_runs_by_family_and_size_sorted_by_size():
    run_family = np.array([1, 0, 0, 1, 0, 1])
    log_n = np.log([3e9, 1e9, 1e8, 3e9, 1e9 * (1 + 1e-9), 1e8])
    slots = group_slots(run_family, log_n)
    np.testing.assert_array_equal(slots.family, [0, 0, 1, 1])
    np.testing.assert_allclose(np.exp(slots.x), [1e8, 1e9, 1e8, 3e9])
    np.testing.assert_array_equal(slots.first, [True, False, True, False])
    # runs of one size (up to float noise) share a slot
    np.testing.assert_array_equal(slots.run_slot, [3, 1, 0, 3, 1, 2])
    some = group_slots(run_family, log_n, runs=run_family == 1)
    np.testing.assert_array_equal(some.run_slot, [1, -1, -1, 1, -1, 0])


def test_prior_path_has_the_exponential_kernel_exactly():
    log_n = np.log([7e7, 1.6e8, 4.1e8, 1e9, 1.4e9, 6.9e9, 2e8, 3e10])
    run_family = np.array([0, 0, 0, 0, 0, 0, 1, 1])
    slots = group_slots(run_family, log_n)
    sigma, length = 0.03, 1.3
    # the path is linear in z: its columns under z = identity give the covariance
    m = np.asarray(slot_values(slots, np.eye(slots.family.size), sigma, length)).T
    want = np.zeros((8, 8))
    for f in (0, 1):
        sel = slots.family == f
        want[np.ix_(sel, sel)] = _kernel(slots.x[sel], slots.x[sel], sigma, length)
    np.testing.assert_allclose(m @ m.T, want, rtol=1e-5, atol=1e-12)


@pytest.mark.parametrize("x_query", [0.2, 1.0, 2.7, 3.0, 5.5, 9.0, -1.0])
def test_conditional_matches_gaussian_conditioning_on_every_fitted_size(x_query):
    x_fit = np.array([0.0, 1.0, 3.0, 3.5, 6.0])
    sigma, length = np.array([0.02, 0.05]), np.array([1.5, 0.7])
    rng = np.random.default_rng(0)
    v_fit = rng.normal(0, 0.03, size=(2, x_fit.size))
    mean, sd = conditional(x_fit, v_fit, np.array([x_query]), sigma, length)
    for s in range(2):
        k = _kernel(x_fit, x_fit, sigma[s], length[s])
        k_star = _kernel(np.array([x_query]), x_fit, sigma[s], length[s])
        w = np.linalg.solve(k, k_star.T).T
        want_mean = w @ v_fit[s]
        want_var = sigma[s] ** 2 - (w @ k_star.T)[0, 0]
        np.testing.assert_allclose(mean[s, 0], want_mean[0], atol=1e-12)
        np.testing.assert_allclose(sd[s, 0], np.sqrt(max(want_var, 0.0)), atol=1e-9)


def test_joint_draws_have_the_exact_joint_conditional_of_all_queries():
    """Draws are linear in the normals: unit normals give the conditional covariance's factor."""
    x_fit = np.array([0.0, 1.0, 3.0])
    x_q = np.array([2.0, 5.0, 0.5, 2.2, -1.0])  # unsorted, on both sides and between
    p = x_q.size
    sigma, length = 0.04, 1.3
    v = np.random.default_rng(4).normal(0, sigma, 3)
    normals = np.zeros((p, p + 1))
    normals[:, 1:] = np.eye(p)
    out = joint_draws(
        x_fit, np.tile(v, (p + 1, 1)), x_q, np.full(p + 1, sigma), np.full(p + 1, length), normals
    )
    mean, factor = out[0], (out[1:] - out[0]).T
    k_ff = _kernel(x_fit, x_fit, sigma, length)
    k_qf = _kernel(x_q, x_fit, sigma, length)
    w = np.linalg.solve(k_ff, k_qf.T).T
    np.testing.assert_allclose(mean, w @ v, atol=1e-12)
    want = _kernel(x_q, x_q, sigma, length) - w @ k_qf.T
    np.testing.assert_allclose(factor @ factor.T, want, atol=1e-12)
    # the first query's draw depends on its own normal only
    np.testing.assert_allclose(factor[0, 1:], 0.0, atol=1e-15)


def test_a_query_draws_the_same_whatever_queries_follow_it():
    slots = group_slots(np.zeros(3, int), np.log([1e8, 1e9, 1e10]))
    # one fitted path in every draw: what varies across draws is the queries' own draw
    z = np.tile(np.random.default_rng(2).standard_normal(3), (2000, 1))
    sigma, length = np.full(2000, 0.03), np.full(2000, 1.5)
    alone = query_offsets(slots, 0, z, sigma, length, np.log([3e10]), np.random.default_rng(5))
    more = query_offsets(
        slots, 0, z, sigma, length, np.log([3e10, 5e10, 3e10, 2e8]), np.random.default_rng(5)
    )
    np.testing.assert_array_equal(alone[:, 0], more[:, 0])
    np.testing.assert_array_equal(more[:, 0], more[:, 2])
    # a query next to another moves with it: their conditional correlation is 0.66
    assert np.corrcoef(more[:, 0], more[:, 1])[0, 1] == pytest.approx(0.66, abs=0.06)


def test_an_unseen_family_draws_one_prior_path_across_its_queries():
    slots = group_slots(np.zeros(3, int), np.log([1e8, 1e9, 1e10]))
    s = 20000
    sigma, length = np.full(s, 0.03), np.full(s, 1.5)
    x = np.log([1e9, 3e9, 1e9, 1e12])
    out = query_offsets(slots, None, None, sigma, length, x, np.random.default_rng(3))
    np.testing.assert_array_equal(out[:, 0], out[:, 2])
    np.testing.assert_allclose(out.std(axis=0), 0.03, rtol=0.03)
    want = _kernel(x[[0, 1, 3]], x[[0, 1, 3]], 0.03, 1.5) / 0.03**2
    np.testing.assert_allclose(np.corrcoef(out[:, [0, 1, 3]].T), want, atol=0.03)
    alone = query_offsets(slots, None, None, sigma, length, x[:1], np.random.default_rng(3))
    np.testing.assert_array_equal(alone[:, 0], out[:, 0])


def test_query_offsets_are_exact_at_fitted_sizes_and_widen_away_from_them():
    log_n = np.log([1e8, 1e9, 1e10])
    slots = group_slots(np.zeros(3, int), log_n)
    s = 4000
    rng = np.random.default_rng(1)
    z = rng.standard_normal((s, 3))
    sigma, length = np.full(s, 0.03), np.full(s, 1.5)
    values = np.asarray(slot_values(slots, z, sigma, length))
    at_fit = query_offsets(slots, 0, z, sigma, length, log_n[1:2], rng)
    np.testing.assert_allclose(at_fit[:, 0], values[:, 1] - values.mean(axis=1), atol=1e-12)
    near = query_offsets(slots, 0, z, sigma, length, np.log([1.2e10]), rng)
    far = query_offsets(slots, 0, z, sigma, length, np.log([1e12]), rng)
    spread = [np.std(x[:, 0] - (values[:, 2] - values.mean(axis=1))) for x in (near, far)]
    assert spread[0] < 0.4 * spread[1]
    # a hundred times past the largest size: delta* - delta_3 = (rho - 1) delta_3 + a new
    # innovation, variance sigma^2 (1 - rho)^2 + sigma^2 (1 - rho^2) = 2 sigma^2 (1 - rho)
    rho = np.exp(-np.log(100.0) / 1.5)
    np.testing.assert_allclose(spread[1], 0.03 * np.sqrt(2 * (1 - rho)), rtol=0.05)
    # points of one size share their draw
    two = query_offsets(slots, 0, z, sigma, length, np.log([3e10, 3e10]), rng)
    np.testing.assert_array_equal(two[:, 0], two[:, 1])


@pytest.fixture(scope="module")
def inputs():
    frame, _ = simulate_frame(n_families=2, sizes=(1e8, 4e8, 1e9), n_checkpoints=5, seed=2)
    return ScalingData.from_frame(frame, min_tokens=None).inputs()


def _trace(inputs, discrepancy):
    model = handlers.seed(scaling_model, jax.random.PRNGKey(0))
    return handlers.trace(model).get_trace(inputs, discrepancy=discrepancy)


def test_discrepancy_sites_exist_only_when_asked(inputs):
    assert "z_delta" not in _trace(inputs, False)
    tr = _trace(inputs, True)
    slots = size_slots(inputs)
    assert tr["size"]["type"] == "plate" and tr["size"]["args"][0] == slots.family.size
    delta = np.asarray(tr["delta"]["value"])
    assert delta.shape == inputs.run_family.shape
    # centred within each family over its sizes; runs of one size share it
    per_slot = np.zeros(slots.family.size)
    per_slot[slots.run_slot] = delta
    np.testing.assert_allclose(np.bincount(slots.family, per_slot), 0.0, atol=1e-7)
    np.testing.assert_allclose(delta, per_slot[slots.run_slot])


def test_likelihood_centres_runs_on_the_law_plus_seed_and_discrepancy(inputs):
    tr = _trace(inputs, True)
    sites = {k: v["value"] for k, v in tr.items() if v["type"] in ("sample", "deterministic")}
    want = float(tr["y"]["fn"].log_prob(tr["y"]["value"]))
    assert float(np.sum(log_likelihood(inputs, sites))) == pytest.approx(want, rel=1e-6)
    without = dict(sites, delta=np.zeros_like(sites["delta"]))
    assert float(np.sum(log_likelihood(inputs, without))) != pytest.approx(want, rel=1e-6)
    assert family_law(sites).alpha.shape == (inputs.n_families,)


@pytest.fixture(scope="module")
def map_post():
    from bayescale import fit

    frame, _ = simulate_frame(n_families=2, sizes=(1e8, 4e8, 1e9), n_checkpoints=5, seed=3)
    return fit(frame, method="map", discrepancy=True, min_tokens=None, progress_bar=False)


@pytest.mark.heavy
def test_fit_and_predict_carry_the_discrepancy(map_post):
    post = map_post
    assert "z_delta" in post.tree["posterior"] and "delta" in post.tree["posterior"]
    assert list(post.tree["posterior"]["z_delta"].dims)[-1] == "size"
    pred = post.predict("fam0", [1e9, 1e11], 2e10, kind="mean")
    assert pred.shape[0] == 2 and np.all(pred["lower"] < pred["upper"])


@pytest.mark.heavy
def test_planning_a_point_fit_values_a_run_at_the_target_size(map_post):
    """The Laplace refits carry the discrepancy: a run at the target's size measures it."""
    from bayescale import plan

    menu = [{"params": n, "tokens": 2e10, "n_runs": 2} for n in (1e8, 1e10)]
    result = plan(map_post, "fam0:1e10:2e10", 1e23, candidates=menu, n_refit_outcomes=4)
    table = result.table.set_index("params")
    assert set(table["method"]) == {"laplace"}
    assert np.isfinite(table["expected_sd"]).all()
    assert table.loc[1e10, "expected_sd"] < 0.6 * table.loc[1e8, "expected_sd"]


def _grid_inputs():
    """Family "grid": final losses at two sizes x three budgets; "curve": loss curves."""
    rows = [
        {"family": "grid", "run": f"g{n:.0e}-{d:.0e}", "params": n, "tokens": d, "loss": 3.0}
        for n in (1e8, 1e9)
        for d in (2e9, 2e10, 2e11)
    ]
    rows += [
        {"family": "curve", "run": f"c{n:.0e}", "params": n, "tokens": d, "loss": 3.0 - 0.1 * i}
        for n in (1e8, 1e9)
        for i, d in enumerate((1e10, 3e10, 1e11))
    ]
    return ScalingData.from_frame(pd.DataFrame(rows), min_tokens=None).inputs()


def test_token_budget_term_only_for_families_with_budget_grids():
    inputs = _grid_inputs()
    np.testing.assert_array_equal(budget_families(inputs), [False, True])  # curve, grid
    slots = budget_slots(inputs)
    assert slots.family.tolist() == [1, 1, 1]
    np.testing.assert_allclose(np.exp(slots.x), [2e9, 2e10, 2e11])
    grid_runs = np.asarray(inputs.run_family) == 1
    assert np.all(slots.run_slot[grid_runs] >= 0) and np.all(slots.run_slot[~grid_runs] == -1)
    tr = _trace(inputs, True)
    assert tr["budget"]["args"][0] == 3 and "sigma_delta_d" in tr
    # the grid family's delta varies with tokens at one size; the curves' does not see tokens
    delta = np.asarray(tr["delta"]["value"])
    n = np.asarray(inputs.log_n)
    at_small = grid_runs & (n == n.min())
    assert np.ptp(delta[at_small]) > 0
    assert "sigma_delta_d" not in _trace(
        ScalingData.from_frame(
            simulate_frame(n_families=1, sizes=(1e8, 1e9), n_checkpoints=4, seed=5)[0],
            min_tokens=None,
        ).inputs(),
        True,
    )


@pytest.mark.heavy
def test_predictions_of_a_grid_family_widen_with_distance_in_tokens():
    from bayescale import fit

    rng = np.random.default_rng(0)
    rows = []
    for n in (1e8, 3e8, 1e9):
        for d in (2e9, 6e9, 2e10, 6e10):
            loss = (1.8 + 400 / n**0.34 + 2000 / d**0.36) * np.exp(rng.normal(0, 0.005))
            rows.append({"family": "grid", "run": f"{n:.0e}-{d:.0e}", "params": n, "tokens": d})
            rows[-1]["loss"] = loss
    post = fit(
        pd.DataFrame(rows),
        discrepancy=True,
        min_tokens=None,
        num_chains=1,
        num_warmup=150,
        num_samples=150,
        progress_bar=False,
        check=False,
    )
    assert "z_delta_d" in post.tree["posterior"]
    assert post.tree["posterior"]["z_delta_d"].sizes["budget"] == 4
    # at a fitted (size, budget) the offset is that fitted point's; a thousand times past
    # the largest budget it carries a fresh draw of the token-budget process as well
    offsets = post.level_offsets("grid", [3e8, 3e8], [6e9, 6e13], np.random.default_rng(0))
    sd_d = float(np.median(post.draws("sigma_delta_d")))
    assert np.std(offsets[:, 1] - offsets[:, 0]) > 0.5 * sd_d
    opt = post.compute_optimal(1e20, family="grid")
    assert np.isfinite(opt["loss_opt"]).all()
