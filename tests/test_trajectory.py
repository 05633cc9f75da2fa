"""The OU trajectory distribution against brute-force references."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from bayescale.trajectory import OUTrajectory, ou_paths, ou_rho


def _runs(seed=0):
    """Three runs laid end to end, irregular log-token spacing."""
    rng = np.random.default_rng(seed)
    log_d, first = [], []
    for n in (5, 1, 7):
        log_d += list(np.cumsum(rng.uniform(0.05, 0.8, n)) + 20)
        first += [True] + [False] * (n - 1)
    return np.array(log_d), np.array(first)


def _dense_cov(log_d, first, sigma, ell):
    """OU covariance sigma_i sigma_j exp(-|log D_i - log D_j| / ell) within each run."""
    run = np.cumsum(first)
    same = run[:, None] == run[None, :]
    corr = np.exp(-np.abs(log_d[:, None] - log_d[None, :]) / ell) * same
    return np.outer(sigma, sigma) * corr


def test_density_is_the_dense_gaussian():
    log_d, first = _runs()
    n = log_d.size
    ell, sigma = 0.7, np.full(n, 0.02)
    loc = np.linspace(-0.1, 0.1, n)
    y = loc + 0.03 * np.random.default_rng(1).standard_normal(n)
    with jax.enable_x64(True):
        rho = ou_rho(jnp.asarray(log_d), jnp.asarray(first), ell)
        got = float(OUTrajectory(loc, sigma, rho).log_prob(y))
    want = stats.multivariate_normal(loc, _dense_cov(log_d, first, sigma, ell)).logpdf(y)
    assert got == pytest.approx(want, rel=1e-6)


def test_masked_checkpoints_do_not_count():
    log_d, first = _runs()
    n = log_d.size
    rho = ou_rho(jnp.asarray(log_d), jnp.asarray(first), 0.5)
    mask = np.ones(n, bool)
    mask[-1] = False
    y = 0.02 * np.random.default_rng(2).standard_normal(n)
    full = OUTrajectory(np.zeros(n), np.full(n, 0.02), rho)
    cut = OUTrajectory(np.zeros(n), np.full(n, 0.02), rho, mask)
    # the last checkpoint is the end of the last run: dropping it leaves the rest
    want = float(full.pointwise_log_prob(y)[:-1].sum())
    assert float(cut.log_prob(y)) == pytest.approx(want, rel=1e-6)


def test_pointwise_density_sums_to_the_joint_one():
    log_d, first = _runs(2)
    rho = np.asarray(ou_rho(jnp.asarray(log_d), jnp.asarray(first), 0.4))
    d = OUTrajectory(np.zeros(log_d.size), np.full(log_d.size, 0.05), rho)
    y = 0.05 * np.random.default_rng(3).standard_normal(log_d.size)
    assert float(d.pointwise_log_prob(y).sum()) == pytest.approx(float(d.log_prob(y)), rel=1e-6)
    assert d.event_shape == (log_d.size,) and d.batch_shape == ()


def test_scan_equals_a_plain_loop():
    rng = np.random.default_rng(4)
    log_d, first = _runs(4)
    rho = np.asarray(ou_rho(jnp.asarray(log_d), jnp.asarray(first), 0.9))
    w = rng.standard_normal(log_d.size)
    want, prev = [], 0.0
    for r, wi in zip(rho, w, strict=True):
        prev = r * prev + wi
        want.append(prev)
    np.testing.assert_allclose(
        np.asarray(ou_paths(jnp.asarray(rho), jnp.asarray(w))), want, rtol=1e-5
    )
    # a new run starts afresh
    assert np.all(rho[first] == 0)


def test_samples_have_the_ou_covariance():
    log_d, first = _runs(5)
    n, ell = log_d.size, 0.6
    sigma = np.linspace(0.01, 0.03, n)
    rho = np.asarray(ou_rho(jnp.asarray(log_d), jnp.asarray(first), ell))
    d = OUTrajectory(np.zeros(n), sigma, rho)
    draws = np.asarray(d.sample(jax.random.PRNGKey(0), (40_000,)))
    assert draws.shape == (40_000, n)
    cov = np.cov(draws, rowvar=False)
    want = _dense_cov(log_d, first, sigma, ell)
    np.testing.assert_allclose(cov, want, atol=4e-5)


def test_log_prob_batches_over_draws():
    log_d, first = _runs()
    n = log_d.size
    rho = jnp.stack([ou_rho(jnp.asarray(log_d), jnp.asarray(first), ell) for ell in (0.3, 0.9)])
    d = OUTrajectory(jnp.zeros((2, n)), jnp.full((2, n), 0.02), rho)
    y = jnp.full(n, 0.01)
    lp = d.log_prob(y)
    assert lp.shape == (2,)
    one = OUTrajectory(jnp.zeros(n), jnp.full(n, 0.02), rho[1]).log_prob(y)
    assert float(lp[1]) == pytest.approx(float(one), rel=1e-6)
