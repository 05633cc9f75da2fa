"""The least-squares recipes: Choshen et al. (2025) and Gadre et al. (2024).

* :func:`fit_hitchhiker` -- least squares on the raw loss of
  ``E + A/N**alpha + B/D**beta`` from one fixed start, trust-region reflective.
* :func:`fit_gadre` / :func:`fit_gadre_downstream` -- nonlinear least squares of
  ``L(C, M) = E + (a M**eta + b M**-eta) C**-eta`` and of
  ``Err(L) = eps - k exp(-gamma L)`` on raw values, multi-start.
"""

from __future__ import annotations

import itertools

import numpy as np
from scipy import optimize

from bayescale import laws
from bayescale.baselines.common import (
    ChinchillaFit,
    DownstreamFit,
    OvertrainFit,
    check_points,
    check_sizes,
    downstream_np,
    grid_array,
    multistart_lsq,
    same_length,
    vector,
)

# Hitchhiker's guide single start, in the order (E, A, B, alpha, beta).
HITCHHIKER_INIT = (1.87, 521.0, 1488.0, 0.353, 0.353)


def fit_hitchhiker(params, tokens, loss, *, init=None) -> ChinchillaFit:
    """Least squares on the raw loss from one fixed start (Choshen et al., 2025).

    Parameters
    ----------
    params, tokens, loss : array_like
        Raw parameter counts, raw tokens seen, loss (any positive scale; the
        paper fits the number its data provides, nats or perplexity).
    init : sequence of 5 floats, optional
        Start ``(E, A, B, alpha, beta)``; default the paper's
        ``(1.87, 521, 1488, 0.353, 0.353)``.

    Returns
    -------
    ChinchillaFit
        ``loss`` is half the sum of squared residuals (SciPy's ``cost``).
    """
    n, d, y = check_sizes(params, tokens, loss, n_min=5, what="the Chinchilla law (5 params)")
    x0 = np.asarray(HITCHHIKER_INIT if init is None else init, dtype=float)
    if x0.shape != (5,) or not np.all(np.isfinite(x0)):
        raise ValueError("init must be 5 finite numbers (E, A, B, alpha, beta)")
    x0 = x0.copy()
    x0[3:] = np.maximum(x0[3:], 0.0)

    def residuals(theta):
        return laws.chinchilla(n, d, *theta) - y

    def jacobian(theta):
        _, A, B, alpha, beta = theta
        tn = n ** (-alpha)
        td = d ** (-beta)
        return np.column_stack([np.ones_like(n), tn, td, -A * tn * np.log(n), -B * td * np.log(d)])

    lower = np.array([-np.inf, -np.inf, -np.inf, 0.0, 0.0])
    with np.errstate(over="ignore", invalid="ignore"):
        res = optimize.least_squares(
            residuals, x0, jac=jacobian, bounds=(lower, np.inf), method="trf"
        )
    E, A, B, alpha, beta = (float(v) for v in res.x)
    return ChinchillaFit(E, A, B, alpha, beta, float(res.cost), bool(res.success), "hitchhiker")


def _gadre_default_grid() -> np.ndarray:
    return np.array(
        list(
            itertools.product(
                (0.5, 1.5, 2.5),  # E
                (1.0, 30.0, 1e3, 3e4),  # a
                (1.0, 30.0, 1e3, 3e4),  # b
                (0.05, 0.1, 0.2, 0.3, 0.5),  # eta
            )
        )
    )


def fit_gadre(params, tokens, loss, *, grid=None) -> OvertrainFit:
    """Gadre et al.'s over-training law by multi-start nonlinear least squares.

    Fits ``L = E + (a M**eta + b M**-eta) C**-eta`` (``C = 6 N D``,
    ``M = D / N``) to the raw loss. ``a`` and ``b`` are optimised on the log
    scale (they span orders of magnitude and must stay positive), ``eta >= 0``.

    Parameters
    ----------
    params, tokens, loss : array_like
        Raw parameter counts, raw tokens, loss in nats (at least 4 points).
    grid : array of shape (n_starts, 4), optional
        Starts ``(E, a, b, eta)`` with ``a, b > 0``; default a 240-point grid.

    Returns
    -------
    OvertrainFit
        ``loss`` is half the sum of squared residuals.
    """
    n, d, y = check_sizes(params, tokens, loss, n_min=4, what="the over-training law (4 params)")
    g = grid_array(grid, _gadre_default_grid(), 4, "(E, a, b, eta)")
    if np.any(g[:, 1:3] <= 0):
        raise ValueError("grid values of a and b must be > 0")
    starts = np.column_stack([g[:, 0], np.log(g[:, 1]), np.log(g[:, 2]), np.maximum(g[:, 3], 0)])
    log_c = np.log(6.0 * n * d)
    log_m = np.log(d / n)

    def terms(theta):
        _, la, lb, eta = theta
        ta = np.exp(la + eta * (log_m - log_c))
        tb = np.exp(lb - eta * (log_m + log_c))
        return ta, tb

    def residuals(theta):
        ta, tb = terms(theta)
        return theta[0] + ta + tb - y

    def jacobian(theta):
        ta, tb = terms(theta)
        return np.column_stack(
            [np.ones_like(y), ta, tb, ta * (log_m - log_c) - tb * (log_m + log_c)]
        )

    res = multistart_lsq(residuals, jacobian, starts, np.array([-np.inf, -np.inf, -np.inf, 0.0]))
    E, la, lb, eta = res.x
    return OvertrainFit(
        float(E),
        float(np.exp(la)),
        float(np.exp(lb)),
        float(eta),
        float(res.cost),
        bool(res.success),
        "gadre",
    )


def _downstream_default_grid() -> np.ndarray:
    return np.array(
        list(
            itertools.product(
                (0.5, 0.75, 1.0),  # eps
                (0.1, 1.0, 10.0, 100.0, 1e3),  # k
                (0.1, 0.5, 1.0, 2.0, 4.0),  # gamma
            )
        )
    )


def fit_gadre_downstream(loss, err, *, grid=None) -> DownstreamFit:
    """Gadre et al.'s loss-to-error law ``Err = eps - k exp(-gamma L)``, multi-start.

    Parameters
    ----------
    loss : array_like
        Validation loss in nats (> 0).
    err : array_like
        Average top-1 error, same length (>= 0; at least 3 points).
    grid : array of shape (n_starts, 3), optional
        Starts ``(eps, k, gamma)`` with ``k > 0``; default a 75-point grid.

    Returns
    -------
    DownstreamFit
        ``loss`` is half the sum of squared residuals; ``k`` is optimised on
        the log scale, ``gamma >= 0``.
    """
    x = vector("loss", loss)
    e = vector("err", err, positive=False)
    if np.any(e < 0):
        raise ValueError(f"err must be >= 0 (an error rate), got min {e.min():g}")
    check_points(same_length({"loss": x, "err": e}), 3, "the downstream law (3 params)")
    g = grid_array(grid, _downstream_default_grid(), 3, "(eps, k, gamma)")
    if np.any(g[:, 1] <= 0):
        raise ValueError("grid values of k must be > 0")
    starts = np.column_stack([g[:, 0], np.log(g[:, 1]), np.maximum(g[:, 2], 0)])

    def residuals(theta):
        return downstream_np(x, theta[0], np.exp(theta[1]), theta[2]) - e

    def jacobian(theta):
        t = np.exp(theta[1] - theta[2] * x)
        return np.column_stack([np.ones_like(x), -t, x * t])

    res = multistart_lsq(residuals, jacobian, starts, np.array([-np.inf, -np.inf, 0.0]))
    eps, lk, gamma = res.x
    return DownstreamFit(
        float(eps),
        float(np.exp(lk)),
        float(gamma),
        float(res.cost),
        bool(res.success),
        "gadre-downstream",
    )
