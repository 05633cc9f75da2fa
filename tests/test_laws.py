"""Exact checks of the pure loss laws and their one container, LawParams."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bayescale import laws

RNG = np.random.default_rng(0)
N = 10 ** RNG.uniform(7, 11.5, size=50)
D = 10 ** RNG.uniform(9, 12.5, size=50)
HOFFMANN = dict(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)


def test_chinchilla_matches_hand_computation():
    got = laws.chinchilla(70e9, 1.4e12, **HOFFMANN)
    want = 1.69 + 406.4 / 70e9**0.34 + 410.7 / 1.4e12**0.28
    assert float(got) == pytest.approx(want, rel=1e-6)
    assert float(got) == pytest.approx(1.9367, abs=1e-3)  # Chinchilla-70B, as published


def test_log_loss_of_law_params_equals_the_published_form():
    p = laws.from_published(**HOFFMANN)
    got = jnp.exp(laws.log_loss(p, np.log(N), np.log(D)))
    np.testing.assert_allclose(got, laws.chinchilla(N, D, **HOFFMANN), rtol=1e-5)
    np.testing.assert_allclose(laws.loss(p, N, D), laws.chinchilla(N, D, **HOFFMANN), rtol=1e-5)


def test_coefficients_sit_at_the_reference_model():
    # a is the log of the N term at N_REF: A / N_REF^alpha
    p = laws.from_published(**HOFFMANN)
    assert float(p.a) == pytest.approx(np.log(406.4 / 1e9**0.34), rel=1e-6)
    assert float(p.b) == pytest.approx(np.log(410.7 / 1e11**0.28), rel=1e-6)


def test_log_scale_multiplies_the_law():
    p = laws.from_published(**HOFFMANN)._replace(log_scale=np.log(2.0))
    np.testing.assert_allclose(
        laws.loss(p, N, D), 2 * np.asarray(laws.chinchilla(N, D, **HOFFMANN)), rtol=1e-5
    )
    E, A, B, alpha, beta = laws.to_published(p)
    assert (float(E), float(A), float(B)) == pytest.approx((3.38, 812.8, 821.4), rel=1e-5)


def test_published_round_trip():
    back = laws.to_published(laws.from_published(**HOFFMANN))
    np.testing.assert_allclose([float(v) for v in back], list(HOFFMANN.values()), rtol=1e-5)


def test_law_params_broadcast_over_draws_and_map_keeps_scalars():
    draws = laws.LawParams(*(np.full(5, v) for v in (0.5, -1.0, -1.5, 0.3, 0.3)))
    assert draws.log_scale == 0.0
    one = draws.map(lambda v: v[2])
    assert float(one.a) == -1.0 and one.log_scale == 0.0
    grid = laws.log_loss(draws.map(lambda v: v[:, None]), np.log(N[None, :3]), np.log(D[None, :3]))
    assert grid.shape == (5, 3)


def test_compute_optimal_is_the_minimum_on_the_budget():
    flops = 5.76e23  # Chinchilla's budget
    n_opt, d_opt = laws.compute_optimal(flops, laws.from_published(**HOFFMANN))
    assert float(6 * n_opt * d_opt) == pytest.approx(flops, rel=1e-5)
    n_grid = np.geomspace(float(n_opt) / 3, float(n_opt) * 3, 2001)
    loss = laws.chinchilla(n_grid, flops / (6 * n_grid), **HOFFMANN)
    assert n_grid[np.argmin(loss)] == pytest.approx(float(n_opt), rel=2e-3)


def test_laws_are_jittable_and_differentiable():
    def f(alpha):
        return laws.log_loss(laws.LawParams(0.3, -1.0, -1.5, alpha, 0.3), 0.5 + laws.LOG_N_REF,
                             0.2 + laws.LOG_D_REF)  # fmt: skip

    g = float(jax.jit(jax.grad(f))(0.3))
    # d/dalpha of log(E + e^(a - alpha x) + ...) = -x * e^(a - alpha x) / L
    x, a = 0.5, -1.0
    terms = np.exp(0.3) + np.exp(a - 0.3 * x) + np.exp(-1.5 - 0.3 * 0.2)
    assert g == pytest.approx(-x * np.exp(a - 0.3 * x) / terms, rel=1e-5)


def test_downstream_law_limits():
    assert float(laws.downstream_error(1e6, 0.75, 0.5, 1.0)) == pytest.approx(0.75)
    assert float(laws.downstream_error(0.0, 0.75, 0.5, 1.0)) == pytest.approx(0.25)
