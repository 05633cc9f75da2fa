"""MAP search: L-BFGS-B restarted from where it stops."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import optimize

from bayescale.optim import MapCapWarning, _restarted_lbfgs, multistart_minimize

SCALES = np.logspace(-2, 2, 8)


def _fun(x):
    return float(np.sum(SCALES * (x - 1.0) ** 2)), 2.0 * SCALES * (x - 1.0)


def test_a_stopped_run_goes_on_from_where_it_stopped():
    once = optimize.minimize(_fun, np.zeros(8), jac=True, method="L-BFGS-B", options={"maxiter": 3})
    again = _restarted_lbfgs(_fun, np.zeros(8), 3)
    assert again.fun < 0.5 * once.fun
    # and on to the minimum with room to converge, where restarts gain nothing
    full = _restarted_lbfgs(_fun, np.zeros(8), 400)
    np.testing.assert_allclose(full.x, 1.0, atol=1e-3)


def _potential(z):
    return jnp.sum(SCALES * (z["x"] - 1.0) ** 2)


def test_a_search_stopped_at_its_cap_says_so():
    z0 = {"x": jnp.zeros(8)}
    with pytest.warns(MapCapWarning, match="cap of 2 iterations"):
        multistart_minimize(_potential, z0, n_starts=1, key=jax.random.PRNGKey(0), maxiter=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error", MapCapWarning)
        best, fs = multistart_minimize(_potential, z0, n_starts=2, key=jax.random.PRNGKey(0))
    np.testing.assert_allclose(best["x"], 1.0, atol=1e-3)
    assert fs.shape == (2,)
