"""Family offsets with their population mean integrated out: the same joint law."""

import jax
import numpy as np
import pytest

from bayescale.pooling import PooledOffsets, mean_given_offsets


def _joint(n, m0, s0, sigma, shift):
    """Brute force: mean and covariance of (mu, theta_1..theta_n) in the centred order."""
    k = m0.size
    # (mu, theta) = T @ (mu, eps) + c, mu ~ N(m0, s0^2 I), eps_f ~ N(0, sigma)
    t = np.zeros(((n + 1) * k, (n + 1) * k))
    t[:k, :k] = np.eye(k)
    for f in range(n):
        t[k * (f + 1) : k * (f + 2), :k] = np.eye(k)
        t[k * (f + 1) : k * (f + 2), k * (f + 1) : k * (f + 2)] = np.eye(k)
    base = np.zeros(((n + 1) * k, (n + 1) * k))
    base[:k, :k] = s0**2 * np.eye(k)
    for f in range(n):
        base[k * (f + 1) : k * (f + 2), k * (f + 1) : k * (f + 2)] = sigma
    mean = np.concatenate([m0] + [m0 + shift[f] for f in range(n)])
    return mean, t @ base @ t.T


@pytest.mark.parametrize("n", [1, 3])
def test_offsets_have_the_marginal_and_the_mean_its_conditional(n):
    rng = np.random.default_rng(n)
    k, s0 = 2, 1.5
    m0 = np.array([-1.6, -1.2])
    tril = np.array([[0.4, 0.0], [-0.15, 0.05]])  # a nearly singular spread
    shift = rng.normal(0, 0.3, (n, k))
    mean, cov = _joint(n, m0, s0, tril @ tril.T, shift)
    theta = rng.normal(-1.0, 0.5, (n, k))

    # the offsets' density is the marginal of the joint Gaussian
    d = PooledOffsets(m0, shift, s0, tril)
    x = theta.reshape(-1) - mean[k:]
    c = cov[k:, k:]
    want = -0.5 * (x @ np.linalg.solve(c, x) + np.linalg.slogdet(2 * np.pi * c)[1])
    np.testing.assert_allclose(float(d.log_prob(theta)), want, rtol=1e-5)

    # the mean, linear in z: z = 0 gives the conditional mean, unit z its covariance's factor
    draws = np.stack(
        [
            np.asarray(mean_given_offsets(theta, shift, m0, s0, tril, z))
            for z in np.eye(k + 1, k, -1)
        ]
    )
    w = np.linalg.solve(c, cov[k:, :k]).T
    np.testing.assert_allclose(draws[0], m0 + w @ x, rtol=1e-5, atol=1e-6)
    factor = (draws[1:] - draws[0]).T
    np.testing.assert_allclose(factor @ factor.T, cov[:k, :k] - w @ cov[k:, :k], atol=1e-6)


def test_offsets_sample_with_their_event_shape():
    d = PooledOffsets(np.zeros(2), np.zeros((4, 2)), 1.0, np.eye(2) * 0.3)
    draws = d.sample(jax.random.PRNGKey(0), (5000,))
    assert draws.shape == (5000, 4, 2) and d.event_shape == (4, 2)
    flat = np.asarray(draws).reshape(5000, -1)
    # two families share the mean's variance, 1; within one, 1 + 0.09
    np.testing.assert_allclose(np.cov(flat.T)[0, 2], 1.0, atol=0.06)
    np.testing.assert_allclose(np.cov(flat.T)[0, 0], 1.09, atol=0.06)
