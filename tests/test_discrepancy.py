"""The size-level discrepancy process against brute-force Gaussian-process algebra."""

import jax.numpy as jnp
import numpy as np
import pytest

from bayescale import discrepancy as gp


def _brute_kernel(a, b, scale, length):
    d = (a[:, None, :] - b[None, :, :]) / length
    return scale**2 * np.exp(-0.5 * np.sum(d**2, axis=-1))


def test_kernel_matches_the_formula():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(4, 2)), rng.normal(size=(3, 2))
    length = np.array([1.3, 0.7])
    got = np.asarray(gp.kernel(jnp.asarray(a), jnp.asarray(b), 0.05, jnp.asarray(length)))
    np.testing.assert_allclose(got, _brute_kernel(a, b, 0.05, length), rtol=1e-5)


def test_projection_is_exact_at_inducing_points_and_padding_is_inert():
    u = np.array([[[18.0, 0.0], [19.5, 0.0], [21.0, 0.0], [0.0, 0.0]]])
    mask = np.array([[True, True, True, False]])
    scale, length = 0.04, jnp.array([1.2, 1.0])
    chol = gp.inducing_cholesky(jnp.asarray(u), jnp.asarray(mask), scale, length)
    w = np.array([[0.3, -1.1, 0.7, 5.0]])
    x = u[0, :3]
    phi, resid = gp.projections(jnp.asarray(x), jnp.zeros(3, int), jnp.asarray(u),
                                jnp.asarray(mask), chol, scale, length)  # fmt: skip
    delta = np.asarray(jnp.sum(phi * w[0], axis=-1))
    # exact: delta at the inducing points is L w (padding's w does not enter)
    k = _brute_kernel(x, x, scale, np.asarray(length)) + 1e-4 * scale**2 * np.eye(3)
    np.testing.assert_allclose(delta, np.linalg.cholesky(k) @ w[0, :3], rtol=1e-3, atol=1e-6)
    assert np.all(np.asarray(resid) < 1e-3 * scale**2)


def test_conditional_is_the_gaussian_process_posterior():
    """Given values at the inducing points, the query mean and covariance are exact."""
    u = np.array([[18.0, 0.0], [19.5, 0.0], [21.0, 0.0]])
    mask = np.ones(3, bool)
    scale, length = 0.04, np.array([1.2, 1.0])
    w = np.array([0.3, -1.1, 0.7])
    xq = np.array([[20.0, 0.0], [23.0, 0.0], [40.0, 0.0]])
    mean, cov = (np.asarray(v) for v in gp.conditional(jnp.asarray(xq), jnp.asarray(u),
                                                       jnp.asarray(mask), jnp.asarray(w), scale,
                                                       jnp.asarray(length)))  # fmt: skip
    kuu = _brute_kernel(u, u, scale, length) + 1e-4 * scale**2 * np.eye(3)
    kqu = _brute_kernel(xq, u, scale, length)
    values = np.linalg.cholesky(kuu) @ w
    np.testing.assert_allclose(mean, kqu @ np.linalg.solve(kuu, values), rtol=1e-4, atol=1e-7)
    want = _brute_kernel(xq, xq, scale, length) - kqu @ np.linalg.solve(kuu, kqu.T)
    np.testing.assert_allclose(cov, want, atol=1e-7)
    # near the data the process is pinned; far from it it is back to its prior
    sd = np.sqrt(np.diag(cov))
    assert sd[0] < sd[1] < sd[2] and sd[2] == pytest.approx(scale, rel=1e-3)


def test_inducing_points_are_the_sizes_when_few_and_a_grid_when_many():
    x = np.column_stack([np.log([1e8, 3e8, 1e9]), np.zeros(3)])
    np.testing.assert_allclose(gp.inducing_points(x, False), x)
    many = np.column_stack([np.log(np.geomspace(1e7, 1e11, 20)), np.zeros(20)])
    grid = gp.inducing_points(many, False)
    assert len(grid) == gp.MAX_EXACT
    assert grid[0, 0] == pytest.approx(many[0, 0]) and grid[-1, 0] == pytest.approx(many[-1, 0])
    two_d = np.column_stack([np.repeat(np.log([1e8, 1e9, 1e10]), 12),
                             np.tile(np.log(np.geomspace(1e9, 1e12, 12)), 3)])  # fmt: skip
    assert len(gp.inducing_points(two_d, True)) == 3 * gp.GRID_2D[1]
    assert gp.varies_tokens(two_d[:, 0], two_d[:, 1])
    assert not gp.varies_tokens(np.log([1e8, 1e9]), np.log([2e9, 2e10]))
