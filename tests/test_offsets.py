"""The integrated-out run offsets against dense Gaussian algebra (brute force)."""

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from scipy.stats import multivariate_normal

from bayescale import offsets
from bayescale.data import ScalingData
from bayescale.model import discrepancy_given_data, family_law, law_mean, run_offsets
from bayescale.simulate import simulate_frame

SCALE, LENGTH, SEED_SD, ELL = 0.03, np.array([1.2, 1.0]), 0.02, 0.7


@pytest.fixture(scope="module")
def setting():
    # fam0: curves with replicates; fam1: 10 sizes (more than the exact inducing
    # points, so the FITC leftover is exercised); fam2: final losses only
    frame, _ = simulate_frame(n_families=2, sizes=(1e8, 1e9, 3e9), n_checkpoints=5, seed=2)
    many, _ = simulate_frame(
        n_families=1, sizes=np.geomspace(1e8, 1e10, 10), seeds_per_size=1, n_checkpoints=3, seed=3
    )
    finals = frame[frame["family"] == "fam1"].groupby("run").tail(1).assign(family="fam2")
    frame = pd.concat([frame[frame["family"] == "fam0"], many.assign(family="fam1"), finals])
    data = ScalingData.from_frame(frame, min_tokens=None, families=["fam0", "fam1", "fam2"])
    inputs = data.inputs()
    rng = np.random.default_rng(0)
    loc = inputs.y + 0.02 * rng.standard_normal(inputs.y.size)
    sigma = np.array([0.01, 0.02, 0.015])
    return inputs, loc, sigma


def _dense(inputs, sigma):
    """Covariance of y: OU blocks plus Z (Phi Phi^T + diag(leftover + seed)) Z^T."""
    n, r = inputs.y.size, inputs.log_n.size
    s = sigma[inputs.run_family[inputs.obs_run]]
    cov_b = np.zeros((n, n))
    for run in range(r):
        i = np.flatnonzero(inputs.obs_run == run)
        ld = inputs.log_d[i]
        cov_b[np.ix_(i, i)] = np.outer(s[i], s[i]) * np.exp(-np.abs(ld[:, None] - ld[None]) / ELL)

    def k(a, b):
        d = (a[:, None, :] - b[None, :, :]) / LENGTH
        return SCALE**2 * np.exp(-0.5 * np.sum(d**2, axis=-1))

    c = np.zeros((r, r))
    for f in range(inputs.n_families):
        runs = np.flatnonzero(inputs.run_family == f)
        u = inputs.inducing[f][inputs.inducing_mask[f]]
        kuu = k(u, u) + 1e-4 * SCALE**2 * np.eye(len(u))
        kru = k(inputs.run_x[runs], u)
        low = kru @ np.linalg.solve(kuu, kru.T)
        leftover = np.maximum(SCALE**2 - np.diag(low), 0.0)
        seed = np.where(inputs.seeded[runs], SEED_SD**2, 0.0)
        c[np.ix_(runs, runs)] = low + np.diag(leftover + seed)
    z = np.zeros((n, r))
    z[np.arange(n), inputs.obs_run] = 1
    return cov_b + z @ c @ z.T, c, z


def _args(inputs, loc, sigma):
    return inputs, jnp.asarray(loc), jnp.asarray(sigma), ELL, SEED_SD, SCALE, jnp.asarray(LENGTH)


def test_marginal_likelihood_is_the_dense_gaussian_density(setting):
    inputs, loc, sigma = setting
    assert not inputs.inducing_mask[1].all() or inputs.inducing_mask.shape[1] < 10
    with jax.enable_x64(True):
        got = float(offsets.marginal_log_likelihood(*_args(inputs, loc, sigma)))
    cov, _, _ = _dense(inputs, sigma)
    assert got == pytest.approx(multivariate_normal(loc, cov).logpdf(inputs.y), abs=1e-6)


def test_offset_draws_follow_their_gaussian_conditional(setting):
    inputs, loc, sigma = setting
    cov, c, z = _dense(inputs, sigma)
    gain = c @ z.T @ np.linalg.inv(cov)
    mean = gain @ (inputs.y - loc)
    post_cov = c - gain @ z @ c
    with jax.enable_x64(True):
        _, u_mean = offsets.draw_offsets(*_args(inputs, loc, sigma))
        keys = jax.random.split(jax.random.PRNGKey(0), 4000)
        draws = jax.vmap(lambda k: offsets.draw_offsets(*_args(inputs, loc, sigma), k)[1])(keys)
    np.testing.assert_allclose(np.asarray(u_mean), mean, atol=1e-7)
    draws = np.asarray(draws)
    sd = np.sqrt(np.diag(post_cov))
    # 4000 draws: means within 5 standard errors, sds within 10%
    assert np.all(np.abs(draws.mean(0) - mean) < 5 * sd / np.sqrt(4000))
    np.testing.assert_allclose(draws.std(0), sd, rtol=0.1)


def test_discrepancy_given_data_integrates_the_inducing_values(setting):
    """At a query size the discrepancy given the law and the data, against dense algebra."""
    inputs, loc, sigma = setting
    f = 0
    xq = np.array([[np.log(2e9), 0.0], [np.log(1e11), 0.0]])
    u = inputs.inducing[f][inputs.inducing_mask[f]]

    def k(a, b):
        d = (a[:, None, :] - b[None, :, :]) / LENGTH
        return SCALE**2 * np.exp(-0.5 * np.sum(d**2, axis=-1))

    cov, _, z = _dense(inputs, sigma)
    runs = inputs.run_family == f
    kuu = k(u, u) + 1e-4 * SCALE**2 * np.eye(len(u))
    # cov(delta_q, u_runs) through the inducing points, zero for other families' runs
    cross_runs = np.zeros((len(xq), inputs.log_n.size))
    cross_runs[:, runs] = k(xq, u) @ np.linalg.solve(kuu, k(u, inputs.run_x[runs]))
    cross = cross_runs @ z.T
    want_mean = cross @ np.linalg.solve(cov, inputs.y - loc)
    want_cov = k(xq, xq) - cross @ np.linalg.solve(cov, cross.T)
    law = {"log_E": np.zeros(3), "a": np.zeros(3), "b": np.zeros(3), "alpha_f": np.ones(3),
           "beta_f": np.ones(3)}  # fmt: skip
    with jax.enable_x64(True):
        # a law whose value is ``loc``: shift y instead of choosing law parameters
        base = np.asarray(law_mean(inputs, family_law(law)))
        shifted = inputs._replace(y=inputs.y - loc + base)
        sites = {**law, "sigma_obs": sigma, "ell": ELL, "sigma_seed": SEED_SD,
                 "gp_scale": SCALE, "gp_length": jnp.asarray(LENGTH)}  # fmt: skip
        mean, got_cov = discrepancy_given_data(shifted, f, sites, jnp.asarray(xq))
        w, _ = run_offsets(shifted, sites)
    np.testing.assert_allclose(np.asarray(mean), want_mean, atol=1e-8)
    np.testing.assert_allclose(np.asarray(got_cov), want_cov, atol=1e-9)
    assert np.asarray(w).shape == inputs.inducing.shape[:2]
