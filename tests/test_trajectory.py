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


def test_density_at_large_df_is_the_dense_gaussian():
    log_d, first = _runs()
    n = log_d.size
    ell, sigma = 0.7, np.full(n, 0.02)
    loc = np.linspace(-0.1, 0.1, n)
    y = loc + 0.03 * np.random.default_rng(1).standard_normal(n)
    # float64: the Student-t normaliser at df = 1e8 differences huge log-gamma values
    with jax.enable_x64(True):
        rho = ou_rho(jnp.asarray(log_d), jnp.asarray(first), ell)
        got = float(OUTrajectory(loc, sigma, rho, 1e8).log_prob(y))
    want = stats.multivariate_normal(loc, _dense_cov(log_d, first, sigma, ell)).logpdf(y)
    assert got == pytest.approx(want, rel=1e-6)


@pytest.mark.parametrize("x64", [False, True])
def test_gradient_in_the_length_is_finite_where_a_short_run_follows_a_long_one(x64):
    # a run's first checkpoint sits far below the previous run's last: its gap is
    # large and negative, and with a short length exp(-gap / length) overflows. The
    # correlation there is 0, and so must be its gradient (a nan in it made NUTS
    # diverge on data whose runs have one checkpoint each, where the length is free)
    log_d = jnp.array([20.0, 23.0, 20.5, 21.0, 20.2])
    first = jnp.array([True, False, True, False, True])
    with jax.enable_x64(x64):
        for ell in (0.003, 0.3):
            grad = jax.grad(lambda e: ou_rho(log_d, first, e).sum())(jnp.asarray(ell))
            assert np.isfinite(float(grad))
        rho = np.asarray(ou_rho(log_d, first, 0.003))
    assert rho[[0, 2, 4]].tolist() == [0.0, 0.0, 0.0]


def test_pointwise_density_sums_to_the_joint_one():
    log_d, first = _runs(2)
    rho = np.asarray(ou_rho(jnp.asarray(log_d), jnp.asarray(first), 0.4))
    d = OUTrajectory(np.zeros(log_d.size), np.full(log_d.size, 0.05), rho, 3.0)
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
    d = OUTrajectory(np.zeros(n), sigma, rho, 1e6)
    draws = np.asarray(d.sample(jax.random.PRNGKey(0), (40_000,)))
    assert draws.shape == (40_000, n)
    cov = np.cov(draws, rowvar=False)
    want = _dense_cov(log_d, first, sigma, ell)
    np.testing.assert_allclose(cov, want, atol=4e-5)


def test_student_t_innovations_have_heavy_tails():
    d = OUTrajectory(np.zeros(1), np.ones(1), np.zeros(1), 2.0)
    x = np.asarray(d.sample(jax.random.PRNGKey(1), (20_000,)))[:, 0]
    # P(|t_2| > 4) = 0.057; a normal would give 6e-5
    assert 0.045 < np.mean(np.abs(x) > 4) < 0.07


def test_log_prob_batches_over_draws():
    log_d, first = _runs()
    n = log_d.size
    rho = jnp.stack([ou_rho(jnp.asarray(log_d), jnp.asarray(first), ell) for ell in (0.3, 0.9)])
    d = OUTrajectory(jnp.zeros((2, n)), jnp.full((2, n), 0.02), rho, jnp.array([3.0, 8.0]))
    y = jnp.full(n, 0.01)
    lp = d.log_prob(y)
    assert lp.shape == (2,)
    one = OUTrajectory(jnp.zeros(n), jnp.full(n, 0.02), rho[1], 8.0).log_prob(y)
    assert float(lp[1]) == pytest.approx(float(one), rel=1e-6)
