"""MAP search: L-BFGS-B restarted from where it stops."""

import numpy as np
from scipy import optimize

from bayescale.optim import _restarted_lbfgs

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
