"""Multi-start MAP search on a NumPyro potential (unconstrained space).

SciPy's L-BFGS drives one jitted value-and-gradient function: that compiles
once per fit in a few seconds, where a vmapped ``jax.scipy`` BFGS needed about
20 s of compilation and runs every start as long as the slowest one.
"""

from __future__ import annotations

import warnings

import jax
import numpy as np
from jax.flatten_util import ravel_pytree
from scipy import optimize

from bayescale import progress

#: L-BFGS-B iterations per run, at most. A cap of 400 stopped the search on a
#: 26-family fit (3119 checkpoints) far from the mode, and all four chains
#: started there froze (R-hat 20); at 2000 the same fit mixed (R-hat 1.008).
MAXITER = 2000


class MapCapWarning(UserWarning):
    """The MAP search stopped at its iteration cap, not at a mode."""


def map_search(
    model,
    model_kwargs: dict,
    *,
    n_starts: int,
    key,
    maxiter: int = MAXITER,
    show=False,
    what="fit",
):
    """MAP of a NumPyro model: :func:`multistart_minimize` from the prior medians.

    Returns
    -------
    best : dict
        Unconstrained values at the lowest potential found.
    potentials : numpy.ndarray
        Final potential of each start.
    info : numpyro.infer.util.ModelInfo
        The model's set-up: ``potential_fn``, ``postprocess_fn`` (unconstrained
        values -> the model's sites), ...
    """
    from numpyro.infer import init_to_median
    from numpyro.infer.util import initialize_model

    k_init, k_starts = jax.random.split(key)
    with progress.stage(f"{what}: setting up the model", show):
        info = initialize_model(
            k_init, model, model_kwargs=model_kwargs, init_strategy=init_to_median(num_samples=15)
        )
    best, fs = multistart_minimize(
        info.potential_fn,
        info.param_info.z,
        n_starts=n_starts,
        key=k_starts,
        maxiter=maxiter,
        show=show,
        desc=f"{what}: MAP start",
    )
    return best, fs, info


#: fresh L-BFGS-B runs after the first, at most, while each still gains
RESTARTS = 3


def multistart_minimize(
    potential_fn, z0: dict, *, n_starts: int, key, maxiter: int = MAXITER, show=False, desc="MAP"
):
    """Minimise ``potential_fn`` from ``z0`` and from jittered copies of it.

    Parameters
    ----------
    potential_fn : callable
        Dict of unconstrained values -> scalar potential (negative log density).
    z0 : dict
        First start (e.g. prior medians); the others add U(-1, 1) jitter to it.
    n_starts : int
    key : jax.random.PRNGKey
        Draws the jitter.
    maxiter : int
        Iterations per L-BFGS-B run; a :class:`MapCapWarning` says when the
        best start's last run stopped there.
    show : bool
        Show a progress bar over the starts.
    desc : str
        Its label.

    Returns
    -------
    best : dict
        Unconstrained values at the lowest potential found (``z0`` if every
        start failed).
    potentials : numpy.ndarray
        Final potential of each start (``inf`` where it failed).
    """
    flat0, unravel = ravel_pytree(z0)
    n = max(int(n_starts), 1)
    jitter = np.array(jax.random.uniform(key, (n, flat0.shape[0]), minval=-1.0, maxval=1.0))
    jitter[0] = 0.0
    value_and_grad = jax.jit(jax.value_and_grad(lambda x: potential_fn(unravel(x))))
    dtype = flat0.dtype

    def fun(x):
        v, g = value_and_grad(np.asarray(x, dtype=dtype))
        v, g = float(v), np.asarray(g, dtype=np.float64)
        if not (np.isfinite(v) and np.all(np.isfinite(g))):
            # a huge flat value sends the line search back towards finite ground
            return 1e30, np.zeros_like(g)
        return v, g

    xs, fs, capped = [], [], []
    starts = np.asarray(flat0, dtype=np.float64)[None, :] + jitter
    for x0 in progress.bar(starts, desc=desc, show=show, unit="start"):
        res = _restarted_lbfgs(fun, x0, maxiter)
        xs.append(res.x)
        capped.append(res.nit >= maxiter)
        fs.append(res.fun if np.isfinite(res.fun) and res.fun < 1e30 else np.inf)
    fs = np.asarray(fs)
    best = int(np.argmin(fs))
    x_best = xs[best] if np.isfinite(fs[best]) else np.asarray(flat0)
    if np.isfinite(fs[best]) and capped[best]:
        warnings.warn(
            f"{desc}: the search stopped at its cap of {maxiter} iterations, not at a mode; "
            "chains start from there, so check R-hat and the step sizes",
            MapCapWarning,
            stacklevel=3,
        )
    return unravel(jax.numpy.asarray(x_best, dtype=dtype)), fs


def _restarted_lbfgs(fun, x0, maxiter: int, restarts: int = RESTARTS):
    """L-BFGS-B from ``x0``, restarted from where it stops while a restart still gains.

    A first step far out of range (a non-finite potential, which ``fun``
    reports as a flat 1e30) spoils the curvature memory, and L-BFGS-B then
    stops as converged within a few iterations, far from the mode: a test
    posterior's MAP stopped at potential -12 where the mode is at -209. A fresh
    start from that point, with an empty memory, goes on.
    """
    res = optimize.minimize(fun, x0, jac=True, method="L-BFGS-B", options={"maxiter": maxiter})
    for _ in range(restarts):
        again = optimize.minimize(
            fun, res.x, jac=True, method="L-BFGS-B", options={"maxiter": maxiter}
        )
        gain = res.fun - again.fun
        res = again if gain > 0 else res
        if gain < 1e-4 * (1.0 + abs(res.fun)):
            break
    return res
