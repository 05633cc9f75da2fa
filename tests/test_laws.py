"""Exact checks of the pure loss laws."""

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


def test_centered_form_equals_published_form():
    log_e, a, b = laws.published_to_centered(**HOFFMANN)
    got = laws.chinchilla_centered(
        laws.center_log_params(N), laws.center_log_tokens(D), log_e, a, b, 0.34, 0.28
    )
    np.testing.assert_allclose(got, laws.chinchilla(N, D, **HOFFMANN), rtol=1e-5)


def test_log_form_is_log_of_law():
    log_e, a, b = laws.published_to_centered(**HOFFMANN)
    args = (laws.center_log_params(N), laws.center_log_tokens(D), log_e, a, b, 0.34, 0.28)
    np.testing.assert_allclose(
        laws.log_chinchilla_centered(*args), jnp.log(laws.chinchilla_centered(*args)), rtol=1e-6
    )


def test_centered_round_trip():
    back = laws.centered_to_published(*laws.published_to_centered(**HOFFMANN), 0.34, 0.28)
    np.testing.assert_allclose(back, [1.69, 406.4, 410.7], rtol=1e-5)


def test_compute_optimal_is_the_minimum_on_the_budget():
    flops = 5.76e23  # Chinchilla's budget
    n_opt, d_opt = laws.compute_optimal(flops, 406.4, 410.7, 0.34, 0.28)
    assert float(6 * n_opt * d_opt) == pytest.approx(flops, rel=1e-5)
    n_grid = np.geomspace(float(n_opt) / 3, float(n_opt) * 3, 2001)
    loss = laws.chinchilla(n_grid, flops / (6 * n_grid), **HOFFMANN)
    assert n_grid[np.argmin(loss)] == pytest.approx(float(n_opt), rel=2e-3)


def test_laws_are_jittable_and_differentiable():
    f = jax.jit(
        jax.grad(lambda al: laws.log_chinchilla_centered(0.5, 0.2, 0.3, -1.0, -1.5, al, 0.3))
    )
    g = float(f(0.3))
    # d/dalpha of log(E + e^(a - alpha x) + ...) = -x * e^(a - alpha x) / L
    x, a = 0.5, -1.0
    terms = np.exp(0.3) + np.exp(a - 0.3 * x) + np.exp(-1.5 - 0.3 * 0.2)
    assert g == pytest.approx(-x * np.exp(a - 0.3 * x) / terms, rel=1e-5)


def test_downstream_law_limits():
    assert float(laws.downstream_error(1e6, 0.75, 0.5, 1.0)) == pytest.approx(0.75)
    assert float(laws.downstream_error(0.0, 0.75, 0.5, 1.0)) == pytest.approx(0.25)
