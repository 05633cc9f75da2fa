"""How a family's sizes depart from its power law: a Gaussian process over runs.

The law of a family is smooth in ``log N`` and ``log D``; real families
depart from it, by a few percent, in ways that are shared by neighbouring
sizes (an architecture change at some size, a tokenizer effect, a misfit of
the functional form). bayescale gives each family a discrepancy ``delta_f(x)``
at ``x = (log N, log D_final)`` of a run (``D_final`` only where the family
trains one size on several token budgets; otherwise the process is in
``log N`` alone): a squared-exponential Gaussian process with a scale and
length scales pooled across families.

It is represented through inducing points ``U_f`` (a family's distinct sizes
when there are few, else a grid over its range) with whitened values
``w ~ Normal(0, I)``: ``delta(x) = phi(x) . w``, ``phi(x) = L^-1 k(U, x)``,
exact at the inducing points. Between them the small remaining variance
``k(x, x) - |phi(x)|^2`` is treated as independent per run (FITC). The model
integrates ``w`` out (:mod:`bayescale.offsets`); fits keep one draw of it per
posterior draw. At a query ``x*`` the process given ``w`` is Gaussian with
mean ``phi(x*) . w`` and covariance ``K** - Phi* Phi*^T`` (:func:`conditional`):
near the fitted sizes it is pinned, far from them it returns to the prior
``scale^2`` -- this is how intervals widen with extrapolation distance.

Cost: one ``M x M`` Cholesky per family (``M <= 24``) and one triangular solve
per run.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jax.scipy.linalg import solve_triangular

#: At most this many distinct sizes are inducing points themselves (exact process).
MAX_EXACT = 8
#: Grid of a family whose sizes and token budgets both vary: sizes x token budgets.
GRID_2D = (6, 4)
#: A family "varies tokens" when one size has final token counts this far apart.
TOKEN_SPREAD = np.log(1.5)
_JITTER = 1e-4  # relative to scale^2


# -- design (NumPy, once per data set) ----------------------------------------------------
def varies_tokens(log_n: np.ndarray, log_d_final: np.ndarray) -> bool:
    """Whether some size of a family is trained on clearly different token budgets."""
    for n in np.unique(np.round(log_n, 6)):
        d = log_d_final[np.isclose(log_n, n)]
        if d.size > 1 and np.ptp(d) > TOKEN_SPREAD:
            return True
    return False


def inducing_points(x: np.ndarray, uses_d: bool) -> np.ndarray:
    """Inducing points of one family from its runs' coordinates ``x`` (R_f, 2).

    The distinct points themselves when there are at most :data:`MAX_EXACT`
    of them (the process is then exact at every run), else an even grid over
    the family's range: ``MAX_EXACT`` sizes, or ``GRID_2D`` when tokens vary.
    """
    pts = np.unique(np.round(x, 6), axis=0)
    if len(pts) <= (MAX_EXACT if not uses_d else GRID_2D[0] * GRID_2D[1]):
        return pts
    if not uses_d:
        return np.column_stack(
            [np.linspace(pts[:, 0].min(), pts[:, 0].max(), MAX_EXACT), np.zeros(MAX_EXACT)]
        )
    gn = np.linspace(pts[:, 0].min(), pts[:, 0].max(), min(GRID_2D[0], len(np.unique(pts[:, 0]))))
    gd = np.linspace(pts[:, 1].min(), pts[:, 1].max(), min(GRID_2D[1], len(np.unique(pts[:, 1]))))
    return np.array([(a, b) for a in gn for b in gd])


def padded(points: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Stack per-family inducing points into (F, M, 2) with a validity mask (F, M)."""
    m = max(len(p) for p in points)
    u = np.zeros((len(points), m, 2))
    mask = np.zeros((len(points), m), dtype=bool)
    for f, p in enumerate(points):
        u[f, : len(p)] = p
        mask[f, : len(p)] = True
        if len(p) < m:
            # padding sits far away; it is masked out of every kernel anyway
            u[f, len(p) :] = p[-1] + 1e3 * (1 + np.arange(m - len(p)))[:, None]
    return u, mask


# -- the process (jnp, inside the model) ----------------------------------------------------
def kernel(x1, x2, scale, length):
    """Squared-exponential covariance ``scale^2 exp(-|(x1 - x2) / length|^2 / 2)``."""
    d = (x1[..., :, None, :] - x2[..., None, :, :]) / length
    return scale**2 * jnp.exp(-0.5 * jnp.sum(d**2, axis=-1))


def inducing_cholesky(u, mask, scale, length):
    """Cholesky factors (F, M, M) of the inducing covariances; padding is the identity."""
    k = kernel(u, u, scale, length)
    both = mask[..., :, None] & mask[..., None, :]
    eye = jnp.eye(u.shape[-2])
    k = jnp.where(both, k, eye) + _JITTER * scale**2 * eye
    return jnp.linalg.cholesky(k)


def projections(x, family, u, mask, chol, scale, length):
    """``phi`` (R, M) of each run at ``x`` (R, 2) and its leftover variance (R,)."""
    k = kernel(x[:, None, :], u[family], scale, length)[:, 0, :] * mask[family]
    phi = solve_triangular(chol[family], k[..., None], lower=True)[..., 0]
    resid = jnp.maximum(scale**2 - jnp.sum(phi**2, axis=-1), 0.0)
    return phi, resid


def conditional(xq, u_f, mask_f, w_f, scale, length):
    """The process of one family at query points ``xq`` (Q, 2) given its whitened ``w_f``.

    Returns the mean (Q,) and covariance (Q, Q).
    """
    chol = inducing_cholesky(u_f[None], mask_f[None], scale, length)[0]
    k = kernel(xq, u_f, scale, length) * mask_f[None, :]
    phi = solve_triangular(chol, k.T, lower=True).T  # (Q, M)
    cov = kernel(xq, xq, scale, length) - phi @ phi.T
    return phi @ w_f, cov
