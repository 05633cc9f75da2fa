"""Published point-estimate scaling-law fits, written from the papers' recipes.

These are the estimators bayescale is compared against on the same data and
protocols. None of them reports uncertainty.

* :func:`fit_hitchhiker` -- Choshen, Zhang & Andreas (2025), "A Hitchhiker's
  Guide to Scaling Law Estimation": least squares on the raw loss of
  ``E + A/N**alpha + B/D**beta`` from one fixed start, trust-region reflective.
* :func:`fit_hoffmann` -- Hoffmann et al. (2022), Approach 3, as re-fitted by
  Besiroglu et al. (2024): Huber loss (``delta=1e-3``) of ``log L_hat - log L``
  with ``log L_hat = LSE(a - alpha log N, b - beta log D, e)``, minimised by
  L-BFGS from every point of the published init grid, best kept. All starts run
  through one jitted, vmapped JAX solver in float64, in rounds that drop the
  starts that have stopped; :func:`fit_hoffmann_scipy` is the
  same fit as a Python loop over SciPy's L-BFGS-B, and
  :func:`fit_hoffmann_many` fits many datasets in one call.
* :func:`fit_gadre` / :func:`fit_gadre_downstream` -- Gadre et al. (2024):
  nonlinear least squares of ``L(C, M) = E + (a M**eta + b M**-eta) C**-eta``
  and of ``Err(L) = eps - k exp(-gamma L)`` on raw values, multi-start.

The Huber objective is *summed* over points, as in the Chinchilla paper. With
SciPy's default relative tolerance ``ftol`` (scaled by ``max(|f|, 1)``) a
*mean* objective of order 1e-5 makes the optimiser stop early; Besiroglu et al.
trace Hoffmann et al.'s published coefficients partly to this loss scale.
``reduction="mean"`` is available to reproduce that behaviour. Besiroglu et
al. fit 240 of the 245 digitised points; dropping the five highest losses (the
largest models at the smallest budget) reproduces their coefficients closely.
Numbers on the real data are in ``benchmarks/RESULTS.md``
(``benchmarks/baselines_real.py``).

Why a hand-written L-BFGS: ``jax.scipy.optimize`` offers BFGS and an
experimental L-BFGS that its authors ask not to rely on, and optax is not a
dependency. The problem has five parameters, so the solver below is small: the
two-loop recursion over ten stored pairs and a weak-Wolfe bisection line
search, as a state machine in ``lax.while_loop`` so it vmaps over starts and
datasets and can be stopped and resumed (:func:`_hoffmann_rounds`). Its stopping
rules mirror SciPy's L-BFGS-B (``gtol`` on the gradient's max-norm, ``ftol``
on the relative decrease), so the two implementations are comparable.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from scipy import optimize

from bayescale import laws

__all__ = [
    "BASELINES",
    "ChinchillaFit",
    "DownstreamFit",
    "OvertrainFit",
    "fit_gadre",
    "fit_gadre_downstream",
    "fit_hitchhiker",
    "fit_hoffmann",
    "fit_hoffmann_many",
    "fit_hoffmann_scipy",
    "hoffmann_grid",
]

# Hitchhiker's guide single start, in the order (E, A, B, alpha, beta).
HITCHHIKER_INIT = (1.87, 521.0, 1488.0, 0.353, 0.353)

# L-BFGS(-B) stopping rules, SciPy's defaults.
_FTOL = 2.220446049250313e-09
_GTOL = 1e-5
_HISTORY = 10
_MAX_LINESEARCH = 20  # SciPy's maxls

_MIN_COUNT = 1e4  # raw counts below this are almost surely billions or millions


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class ChinchillaFit:
    """Point estimate of ``L = E + A / N**alpha + B / D**beta``.

    ``loss`` is the fit's objective at the optimum (half the sum of squared
    residuals for the Hitchhiker fit, the Huber sum -- or mean -- for
    Hoffmann's); ``success`` is the optimiser's convergence flag for the kept
    start; ``method`` names the estimator.
    """

    E: float
    A: float
    B: float
    alpha: float
    beta: float
    loss: float
    success: bool
    method: str

    def predict(self, params, tokens) -> np.ndarray:
        """Loss in nats at raw parameter and token counts (broadcasting)."""
        n = np.asarray(params, dtype=float)
        d = np.asarray(tokens, dtype=float)
        return np.asarray(laws.chinchilla(n, d, self.E, self.A, self.B, self.alpha, self.beta))

    def compute_optimal(self, flops) -> tuple[np.ndarray, np.ndarray]:
        """Compute-optimal ``(N*, D*)`` at budget ``C = 6 N D``."""
        c = np.asarray(flops, dtype=float)
        n_opt, d_opt = laws.compute_optimal(c, self.A, self.B, self.alpha, self.beta)
        return np.asarray(n_opt), np.asarray(d_opt)


@dataclass(frozen=True)
class OvertrainFit:
    """Point estimate of Gadre et al.'s ``L(C, M) = E + (a M**eta + b M**-eta) C**-eta``."""

    E: float
    a: float
    b: float
    eta: float
    loss: float = float("nan")
    success: bool = True
    method: str = "gadre"

    def predict(self, params, tokens) -> np.ndarray:
        """Loss at raw counts, with ``C = 6 N D`` and ``M = D / N``."""
        n = np.asarray(params, dtype=float)
        d = np.asarray(tokens, dtype=float)
        return np.asarray(laws.overtrain(6.0 * n * d, d / n, self.E, self.a, self.b, self.eta))

    @property
    def M_star(self) -> float:
        """Loss-optimal token multiplier ``(b / a)**(1 / (2 eta))``."""
        return float(laws.optimal_tok_per_param(self.a, self.b, self.eta))


@dataclass(frozen=True)
class DownstreamFit:
    """Point estimate of Gadre et al.'s ``Err(L) = eps - k exp(-gamma L)``."""

    eps: float
    k: float
    gamma: float
    loss: float = float("nan")
    success: bool = True
    method: str = "gadre-downstream"

    def predict(self, loss) -> np.ndarray:
        """Average top-1 error at validation loss ``loss`` (nats)."""
        return _downstream_np(np.asarray(loss, dtype=float), self.eps, self.k, self.gamma)


# ------------------------------------------------------------------------ validation


def _vector(name: str, x, *, positive: bool = True) -> np.ndarray:
    try:
        arr = np.asarray(x, dtype=float)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be numeric ({exc})") from None
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array, got shape {arr.shape}")
    bad = np.flatnonzero(~np.isfinite(arr))
    if bad.size:
        raise ValueError(
            f"{name} has {bad.size} NaN or infinite value(s) at positions {bad[:8].tolist()}"
        )
    if positive:
        bad = np.flatnonzero(arr <= 0)
        if bad.size:
            raise ValueError(
                f"{name} must be > 0 but has {bad.size} non-positive value(s) at positions "
                f"{bad[:8].tolist()} (e.g. {arr[bad[0]]:g})"
            )
    return arr


def _same_length(arrays: dict) -> int:
    lengths = {k: v.shape[0] for k, v in arrays.items()}
    if len(set(lengths.values())) > 1:
        desc = ", ".join(f"{k}: {n}" for k, n in lengths.items())
        raise ValueError(f"mismatched lengths ({desc}); pass one value per point")
    return next(iter(lengths.values()))


def _check_points(n: int, n_min: int, what: str) -> None:
    if n < n_min:
        raise ValueError(f"too few points: {what} needs at least {n_min}, got {n}")


def _check_sizes(params, tokens, loss, *, n_min: int, what: str):
    n = _vector("params", params)
    d = _vector("tokens", tokens)
    y = _vector("loss", loss)
    _check_points(_same_length({"params": n, "tokens": d, "loss": y}), n_min, what)
    for name, arr in (("params", n), ("tokens", d)):
        small = np.flatnonzero(arr < _MIN_COUNT)
        if small.size:
            raise ValueError(
                f"{name} has values below 1e4 at positions {small[:8].tolist()} "
                f"(e.g. {arr[small[0]]:g}); pass raw counts, not billions or millions"
            )
    return n, d, y


def _grid_array(grid, default: np.ndarray, width: int, names: str) -> np.ndarray:
    g = default if grid is None else np.asarray(grid, dtype=float)
    if g.ndim != 2 or g.shape[1] != width or g.shape[0] == 0:
        raise ValueError(f"grid must have shape (n_starts, {width}) with columns {names}")
    if not np.all(np.isfinite(g)):
        raise ValueError("grid has NaN or infinite starting values")
    return g


# ---------------------------------------------------------------------------- Hitchhiker


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
    n, d, y = _check_sizes(params, tokens, loss, n_min=5, what="the Chinchilla law (5 params)")
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


# ------------------------------------------------------------------------------ Hoffmann


def hoffmann_grid(
    a=(0.0, 5.0, 10.0, 15.0, 20.0, 25.0),
    b=(0.0, 5.0, 10.0, 15.0, 20.0, 25.0),
    e=(-1.0, -0.5, 0.0, 0.5, 1.0),
    alpha=(0.0, 0.5, 1.0, 1.5, 2.0),
    beta=(0.0, 0.5, 1.0, 1.5, 2.0),
) -> np.ndarray:
    """Cartesian grid of starts ``(a, b, e, alpha, beta)``; default the published one.

    ``A = exp(a)``, ``B = exp(b)``, ``E = exp(e)``. The default has
    6 * 6 * 5 * 5 * 5 = 4500 starts.
    """
    return np.array(list(itertools.product(a, b, e, alpha, beta)), dtype=float)


def _huber(r, delta):
    absr = jnp.abs(r)
    return jnp.where(absr <= delta, 0.5 * r**2, delta * (absr - 0.5 * delta))


def _hoffmann_objective(theta, log_n, log_d, log_l, weight, delta, mean):
    a, b, e, alpha, beta = theta[0], theta[1], theta[2], theta[3], theta[4]
    # the centred law with uncentred logs is exactly Hoffmann's LSE form
    pred = laws.log_chinchilla_centered(log_n, log_d, e, a, b, alpha, beta)
    total = jnp.sum(weight * _huber(pred - log_l, delta))
    return jnp.where(mean, total / jnp.sum(weight), total)


def _hoffmann_value_and_grad(theta, log_n, log_d, log_l, weight, delta, mean):
    """Value and analytic gradient of :func:`_hoffmann_objective`.

    Same numbers as ``jax.value_and_grad`` of it (checked in the tests) at about
    half the cost: the softmax weights of the three terms are computed once.
    """
    a, b, e, alpha, beta = theta[0], theta[1], theta[2], theta[3], theta[4]
    t0 = a - alpha * log_n
    t1 = b - beta * log_d
    t2 = jnp.broadcast_to(e, log_n.shape)
    top = jnp.maximum(jnp.maximum(t0, t1), t2)
    e0, e1, e2 = jnp.exp(t0 - top), jnp.exp(t1 - top), jnp.exp(t2 - top)
    tot = e0 + e1 + e2
    r = top + jnp.log(tot) - log_l
    scale = jnp.where(mean, 1.0 / jnp.sum(weight), 1.0)
    psi = (scale * weight / tot) * jnp.clip(r, -delta, delta)
    q0, q1 = psi * e0, psi * e1
    grad = jnp.stack(
        [jnp.sum(q0), jnp.sum(q1), jnp.sum(psi * e2), -jnp.sum(q0 * log_n), -jnp.sum(q1 * log_d)]
    )
    return scale * jnp.sum(weight * _huber(r, delta)), grad


def _two_loop(g, S, Y, rho, npairs):
    """L-BFGS direction ``-H g`` from the stored pairs, newest in row 0.

    Rows at or beyond ``npairs`` are ignored. Static row indices (the memory is
    shifted on insertion rather than used as a ring) keep the traced graph
    free of gathers, which matters for compile time and speed under ``vmap``.
    """
    m = S.shape[0]
    q = g
    alphas = []
    for i in range(m):
        a_i = jnp.where(i < npairs, rho[i] * jnp.dot(S[i], q), 0.0)
        q = q - a_i * Y[i]
        alphas.append(a_i)
    # initial Hessian scale s'y / y'y; before any pair, a unit-length first step
    gamma = jnp.where(
        npairs > 0,
        jnp.dot(S[0], Y[0]) / jnp.dot(Y[0], Y[0]),
        1.0 / jnp.maximum(jnp.linalg.norm(g), 1e-12),
    )
    r = gamma * q
    for i in reversed(range(m)):
        b_i = rho[i] * jnp.dot(Y[i], r)
        r = r + jnp.where(i < npairs, alphas[i] - b_i, 0.0) * S[i]
    return -r


# status codes of the JAX L-BFGS
_RUNNING, _GTOL_OK, _FTOL_OK, _MAXITER, _LS_FAIL, _NONFINITE = 0, 1, 2, 3, 4, 5


class _State(NamedTuple):
    k: jax.Array  # accepted iterations
    x: jax.Array
    f: jax.Array
    g: jax.Array
    d: jax.Array  # search direction
    t: jax.Array  # trial step
    lo: jax.Array  # line-search bracket
    hi: jax.Array
    nls: jax.Array  # trials in the current line search
    xb: jax.Array  # best sufficient-decrease point of the current line search
    fb: jax.Array
    gb: jax.Array
    S: jax.Array  # stored (s, y) pairs, newest in row 0
    Y: jax.Array
    rho: jax.Array
    npairs: jax.Array
    status: jax.Array
    nfev: jax.Array


def _descent(g, S, Y, rho, npairs):
    """L-BFGS direction, or normalised steepest descent if it is not a descent one."""
    d = _two_loop(g, S, Y, rho, npairs)
    bad = ~(jnp.dot(d, g) < 0) | ~jnp.all(jnp.isfinite(d))
    d = jnp.where(bad, -g / jnp.maximum(jnp.linalg.norm(g), 1e-12), d)
    return d, jnp.where(bad, 0, npairs).astype(jnp.int32)


def _lbfgs(fg, x0, maxiter, gtol, ftol, history=_HISTORY, c1=1e-4, c2=0.9):
    """Minimise ``fg``'s value from ``x0``; returns ``(x, f, status, iterations, nfev)``.

    :func:`_lbfgs_start`, then :func:`_lbfgs_step` until the status leaves
    ``_RUNNING``. The loop may be stopped and resumed from its state
    (:func:`_hoffmann_rounds`).
    """
    state = _lbfgs_start(fg, x0, gtol, history)
    body = _lbfgs_step(fg, maxiter, gtol, ftol, history, c1, c2)
    out = jax.lax.while_loop(lambda s: s.status == _RUNNING, body, state)
    return out.x, out.f, out.status, out.k, out.nfev


def _lbfgs_start(fg, x0, gtol, history=_HISTORY) -> _State:
    """The L-BFGS state at ``x0``: one evaluation, steepest-descent direction."""
    n = x0.shape[0]
    dt = x0.dtype
    f0, g0 = fg(x0)
    S = jnp.zeros((history, n), dt)
    rho = jnp.zeros(history, dt)
    d0, npairs = _descent(g0, S, S, rho, jnp.int32(0))
    status0 = jnp.where(
        ~jnp.isfinite(f0) | ~jnp.all(jnp.isfinite(g0)),
        _NONFINITE,
        jnp.where(jnp.max(jnp.abs(g0)) <= gtol, _GTOL_OK, _RUNNING),
    ).astype(jnp.int32)
    one = jnp.ones((), dt)
    return _State(
        jnp.int32(0), x0, f0, g0, d0, one, 0 * one, jnp.inf * one, jnp.int32(0),
        x0, jnp.inf * one, g0, S, S, rho, npairs, status0, jnp.int32(1),
    )  # fmt: skip


def _lbfgs_step(fg, maxiter, gtol, ftol, history=_HISTORY, c1=1e-4, c2=0.9):
    """One step of the L-BFGS state machine, as a ``_State -> _State`` function.

    Written as a flat state machine, one function evaluation per loop step
    (a line-search trial or the first trial of the next iteration), so that under
    ``vmap`` a start in a long line search does not stall the others: the loop
    costs the largest number of evaluations of any start, not the sum over
    iterations of the longest line search. The line search is weak-Wolfe by
    bisection/doubling (Lewis & Overton), robust on the piecewise-smooth Huber
    loss; if it ends without a Wolfe point the best sufficient-decrease point is
    taken.
    """

    def body(s: _State) -> _State:
        x_t = s.x + s.t * s.d
        f_t, g_t = fg(x_t)
        gd = jnp.dot(s.g, s.d)
        finite = jnp.isfinite(f_t) & jnp.all(jnp.isfinite(g_t))
        armijo = finite & (f_t <= s.f + c1 * s.t * gd)
        wolfe = armijo & (jnp.dot(g_t, s.d) >= c2 * gd)
        take = wolfe | (armijo & (f_t <= s.fb))
        xb = jnp.where(take, x_t, s.xb)
        fb = jnp.where(take, f_t, s.fb)
        gb = jnp.where(take, g_t, s.gb)
        hi = jnp.where(armijo, s.hi, s.t)
        lo = jnp.where(armijo & ~wolfe, s.t, s.lo)
        nls = s.nls + 1
        end = wolfe | (nls >= _MAX_LINESEARCH)
        ok = end & jnp.isfinite(fb)

        # accept the step: update the memory (positive curvature only) and direction
        s_k = xb - s.x
        y_k = gb - s.g
        sy = jnp.dot(s_k, y_k)
        store = ok & (sy > 1e-10 * jnp.dot(y_k, y_k))
        S = jnp.where(store, jnp.concatenate([s_k[None], s.S[:-1]]), s.S)
        Y = jnp.where(store, jnp.concatenate([y_k[None], s.Y[:-1]]), s.Y)
        inv_sy = 1.0 / jnp.where(store, sy, 1.0)
        rho = jnp.where(store, jnp.concatenate([inv_sy[None], s.rho[:-1]]), s.rho)
        npairs = jnp.where(store, jnp.minimum(s.npairs + 1, history), s.npairs).astype(jnp.int32)
        x = jnp.where(ok, xb, s.x)
        f = jnp.where(ok, fb, s.f)
        g = jnp.where(ok, gb, s.g)
        d_new, npairs_new = _descent(g, S, Y, rho, npairs)
        npairs = jnp.where(ok, npairs_new, npairs)
        k = s.k + ok.astype(jnp.int32)

        # SciPy's tests: projected-gradient max-norm, and relative decrease
        scale = jnp.maximum(jnp.maximum(jnp.abs(s.f), jnp.abs(f)), 1.0)
        status = jnp.select(
            [end & ~ok, ok & (jnp.max(jnp.abs(g)) <= gtol), ok & (s.f - f <= ftol * scale),
             ok & (k >= maxiter)],
            [_LS_FAIL, _GTOL_OK, _FTOL_OK, _MAXITER],
            _RUNNING,
        ).astype(jnp.int32)  # fmt: skip
        t_next = jnp.where(jnp.isinf(hi), 2.0 * lo, 0.5 * (lo + hi))
        return _State(
            k, x, f, g,
            jnp.where(ok, d_new, s.d),
            jnp.where(ok, 1.0, t_next),
            jnp.where(ok, 0.0, lo),
            jnp.where(ok, jnp.inf, hi),
            jnp.where(ok, 0, nls).astype(jnp.int32),
            xb,
            jnp.where(ok, jnp.inf, fb),
            gb, S, Y, rho, npairs, status, s.nfev + 1,
        )  # fmt: skip

    return body


def _hoffmann_fg(data, i, delta, mean):
    ln, ld, ll, w = (v[i] for v in data)
    return partial(
        _hoffmann_value_and_grad, log_n=ln, log_d=ld, log_l=ll, weight=w, delta=delta, mean=mean
    )


@jax.jit
def _hoffmann_start(x0, idx, data, delta, mean, gtol):
    """Start states for starts ``x0`` ``(B, 5)`` on datasets ``idx`` ``(B,)`` of ``data``."""

    def one(x, i):
        return _lbfgs_start(_hoffmann_fg(data, i, delta, mean), x, gtol)

    return jax.vmap(one)(x0, idx)


@jax.jit
def _hoffmann_advance(state, idx, data, delta, mean, maxiter, gtol, ftol, steps):
    """Run each start of ``state`` for at most ``steps`` more evaluations."""

    def one(s, i):
        body = _lbfgs_step(_hoffmann_fg(data, i, delta, mean), maxiter, gtol, ftol)
        cap = s.nfev + steps
        return jax.lax.while_loop(lambda t: (t.status == _RUNNING) & (t.nfev < cap), body, s)

    return jax.vmap(one)(state, idx)


def _lane_widths(n: int, lanes: int) -> tuple:
    """Batch widths of the rounds: the widest, and a narrower one for the stragglers.

    Each width is one more compilation (seconds), so there are only two.
    """
    widest = min(lanes, 1 << max(n - 1, 0).bit_length())
    return tuple(sorted({widest, max(1, widest // 16)}))


def _hoffmann_rounds(starts, data, delta, mean, maxiter, gtol, ftol, lanes):
    """Every start on every dataset, in rounds that drop the starts that have stopped.

    Under ``vmap`` a ``while_loop`` runs until its slowest lane stops, and on
    the Hitchhiker grid the slowest of a cell's 243 starts needs 5-15 times
    the evaluations of the average one. Here the (dataset, start) pairs still
    running are advanced ``lanes`` at a time for 32, 64, 128, ... more
    evaluations per round. Each start takes the steps an uninterrupted loop
    would; only the last digits differ, because other batch widths vectorise
    the sums differently (a flat valley can turn that into ~1e-7 relative in
    the parameters).

    Returns ``x`` ``(K, S, 5)``, ``f`` and ``status`` ``(K, S)`` as NumPy arrays.
    """
    k, s = data[0].shape[0], starts.shape[0]
    ds = np.repeat(np.arange(k, dtype=np.int32), s)
    x0 = np.tile(np.asarray(starts, dtype=float), (k, 1))
    n = ds.size
    widths = _lane_widths(n, lanes)
    held = None

    def batches(ids):
        # the narrowest compiled width that takes them all in one call, else the widest
        width = next((w for w in widths if w >= ids.size), widths[-1])
        for c in range(0, ids.size, width):
            part = ids[c : c + width]
            yield part, np.concatenate([part, np.full(width - part.size, part[0])])

    def store(part, new):
        nonlocal held
        new = jax.tree.map(np.asarray, new)
        if held is None:
            held = jax.tree.map(lambda v: np.empty((n,) + v.shape[1:], v.dtype), new)
        for mine, got in zip(held, new, strict=True):
            mine[part] = got[: part.size]

    for part, pad in batches(np.arange(n)):
        store(part, _hoffmann_start(x0[pad], ds[pad], data, delta, mean, gtol))
    steps = 32
    pending = np.flatnonzero(held.status == _RUNNING)
    while pending.size:
        for part, pad in batches(pending):
            sub = jax.tree.map(lambda v, pad=pad: v[pad], held)
            args = (data, delta, mean, maxiter, gtol, ftol, steps)
            store(part, _hoffmann_advance(sub, ds[pad], *args))
        pending = pending[held.status[pending] == _RUNNING]
        steps *= 2
    return held.x.reshape(k, s, -1), held.f.reshape(k, s), held.status.reshape(k, s)


def _best_start(x, f, status, method) -> ChinchillaFit:
    f = np.where(np.isfinite(f), f, np.inf)
    i = int(np.argmin(f))
    a, b, e, alpha, beta = (float(v) for v in x[i])
    success = bool(np.isfinite(f[i]) and status[i] in (_GTOL_OK, _FTOL_OK))
    return ChinchillaFit(
        float(np.exp(e)),
        float(np.exp(a)),
        float(np.exp(b)),
        alpha,
        beta,
        float(f[i]),
        success,
        method,
    )


def _check_options(delta, reduction, maxiter, gtol, ftol) -> bool:
    if reduction not in ("sum", "mean"):
        raise ValueError(f"reduction must be 'sum' or 'mean', got {reduction!r}")
    for name, v in (("delta", delta), ("gtol", gtol), ("ftol", ftol)):
        if not float(v) > 0:
            raise ValueError(f"{name} must be > 0, got {v}")
    if int(maxiter) < 1:
        raise ValueError(f"maxiter must be >= 1, got {maxiter}")
    return reduction == "mean"


def fit_hoffmann_many(
    datasets: Sequence,
    *,
    delta: float = 1e-3,
    grid=None,
    reduction: str = "sum",
    maxiter: int = 1000,
    gtol: float = _GTOL,
    ftol: float = _FTOL,
    batch_size: int | None = None,
    max_elements: float = 2**21,
) -> list[ChinchillaFit]:
    """Hoffmann et al.'s Approach 3 on several datasets in one jitted call.

    The datasets (e.g. a grid of training subsets) may differ in length; they
    are padded to the longest with zero-weight points. The (dataset, start)
    pairs run through one jitted, vmapped L-BFGS in float64, in rounds that
    drop the starts that have stopped (:func:`_hoffmann_rounds`).

    Parameters
    ----------
    datasets : sequence of (params, tokens, loss)
        One triple of equal-length arrays per dataset (raw counts, nats).
    delta : float
        Huber threshold on the log-loss residual.
    grid : array of shape (n_starts, 5), optional
        Starts ``(a, b, e, alpha, beta)``; default :func:`hoffmann_grid`.
    reduction : {"sum", "mean"}
        Sum the Huber loss over points (Chinchilla) or average it.
    maxiter : int
        L-BFGS iteration cap per start.
    gtol, ftol : float
        Stop when the gradient's max-norm is below ``gtol`` or the decrease
        ``(f_k - f_k+1) / max(|f_k|, |f_k+1|, 1)`` is below ``ftol`` (SciPy
        L-BFGS-B's tests and defaults; both are absolute for objectives below 1).
    batch_size : int, optional
        (dataset, start) pairs advanced per compiled call; default the power
        of two that keeps ``batch_size x longest dataset`` near
        ``max_elements`` (at most 4096).
    max_elements : float
        Memory bound for the default ``batch_size``.

    Returns
    -------
    list of ChinchillaFit
        One per dataset, the best of all starts; ``loss`` is the Huber objective.
    """
    mean = _check_options(delta, reduction, maxiter, gtol, ftol)
    datasets = list(datasets)
    if not datasets:
        raise ValueError("datasets is empty")
    checked = []
    for i, ds in enumerate(datasets):
        try:
            params, tokens, loss = ds
            checked.append(
                _check_sizes(params, tokens, loss, n_min=5, what="the Chinchilla law (5 params)")
            )
        except ValueError as exc:
            raise ValueError(f"dataset {i}: {exc}") from None
    starts = _grid_array(grid, hoffmann_grid(), 5, "(a, b, e, alpha, beta)")
    size = max(c[0].shape[0] for c in checked)
    k = len(checked)
    # pad with copies of each dataset's first point at zero weight (finite, no effect)
    log_n, log_d, log_l, weight = (np.zeros((k, size)) for _ in range(4))
    for i, (n, d, y) in enumerate(checked):
        m = n.shape[0]
        for out, v in ((log_n, np.log(n)), (log_d, np.log(d)), (log_l, np.log(y))):
            out[i, :m], out[i, m:] = v, v[0]
        weight[i, :m] = 1.0
    if batch_size is None:
        batch_size = min(1 << int(math.log2(max(float(max_elements) / size, 1.0))), 4096)
    elif int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    with jax.enable_x64(True):
        x, f, status = _hoffmann_rounds(
            starts,
            tuple(jnp.asarray(v) for v in (log_n, log_d, log_l, weight)),
            jnp.asarray(float(delta)),
            jnp.asarray(mean),
            jnp.asarray(int(maxiter)),
            jnp.asarray(float(gtol)),
            jnp.asarray(float(ftol)),
            lanes=int(batch_size),
        )
    return [_best_start(x[i], f[i], status[i], "hoffmann") for i in range(k)]


def fit_hoffmann(
    params,
    tokens,
    loss,
    *,
    delta=1e-3,
    grid=None,
    reduction="sum",
    maxiter=1000,
    gtol=_GTOL,
    ftol=_FTOL,
) -> ChinchillaFit:
    """Hoffmann et al.'s Approach 3: Huber on log loss, L-BFGS from a start grid (JAX).

    Parameters
    ----------
    params, tokens, loss : array_like
        Raw parameter counts, raw tokens, loss in nats.
    delta : float
        Huber threshold (the paper's 1e-3).
    grid : array of shape (n_starts, 5), optional
        Starts ``(a, b, e, alpha, beta)``; default the published 4500-point
        grid (:func:`hoffmann_grid`).
    reduction : {"sum", "mean"}
        Sum (Chinchilla paper, default) or mean of the Huber terms.
    maxiter, gtol, ftol
        L-BFGS iteration cap per start and stopping tolerances (see
        :func:`fit_hoffmann_many`).

    Returns
    -------
    ChinchillaFit
        Best start; ``loss`` is its Huber objective and ``success`` says whether
        it met a convergence test rather than the iteration cap or a failed
        line search.
    """
    return fit_hoffmann_many(
        [(params, tokens, loss)],
        delta=delta,
        grid=grid,
        reduction=reduction,
        maxiter=maxiter,
        gtol=gtol,
        ftol=ftol,
    )[0]


def _hoffmann_np(theta, log_n, log_d, log_l, delta, mean):
    """NumPy Huber objective and its gradient (for SciPy; a JAX call per step is slow)."""
    a, b, e, alpha, beta = theta
    t = np.stack([a - alpha * log_n, b - beta * log_d, np.full_like(log_n, e)])
    top = t.max(axis=0)
    ex = np.exp(t - top)
    tot = ex.sum(axis=0)
    p = ex / tot
    r = top + np.log(tot) - log_l
    absr = np.abs(r)
    h = np.where(absr <= delta, 0.5 * r**2, delta * (absr - 0.5 * delta))
    psi = np.clip(r, -delta, delta)
    grad = np.array(
        [
            np.sum(psi * p[0]),
            np.sum(psi * p[1]),
            np.sum(psi * p[2]),
            -np.sum(psi * p[0] * log_n),
            -np.sum(psi * p[1] * log_d),
        ]
    )
    scale = 1.0 / log_n.shape[0] if mean else 1.0
    return float(h.sum() * scale), grad * scale


def fit_hoffmann_scipy(
    params,
    tokens,
    loss,
    *,
    delta=1e-3,
    grid=None,
    reduction="sum",
    maxiter=15000,
    gtol=_GTOL,
    ftol=_FTOL,
) -> ChinchillaFit:
    """:func:`fit_hoffmann` as a Python loop of SciPy L-BFGS-B runs, one per start.

    Same objective and options (analytic gradient; SciPy's default tolerances
    and iteration cap). The reference for correctness and speed of the
    vmapped JAX fit.
    """
    mean = _check_options(delta, reduction, maxiter, gtol, ftol)
    n, d, y = _check_sizes(params, tokens, loss, n_min=5, what="the Chinchilla law (5 params)")
    starts = _grid_array(grid, hoffmann_grid(), 5, "(a, b, e, alpha, beta)")
    args = (np.log(n), np.log(d), np.log(y), float(delta), mean)
    xs, fs, ok = [], [], []
    with np.errstate(over="ignore", invalid="ignore"):
        for x0 in starts:
            res = optimize.minimize(
                _hoffmann_np,
                x0,
                args=args,
                jac=True,
                method="L-BFGS-B",
                options={"maxiter": int(maxiter), "gtol": float(gtol), "ftol": float(ftol)},
            )
            xs.append(res.x)
            fs.append(res.fun)
            ok.append(_GTOL_OK if res.success else _LS_FAIL)
    return _best_start(np.array(xs), np.array(fs, dtype=float), np.array(ok), "hoffmann-scipy")


# --------------------------------------------------------------------------------- Gadre


def _downstream_np(loss, eps, k, gamma):
    # numpy twin of laws.downstream_error: float64 and no JAX dispatch inside SciPy loops
    return eps - k * np.exp(-gamma * loss)


def _multistart_lsq(residuals, jacobian, starts, lower):
    """Run ``least_squares`` (TRF) from every start; keep the lowest cost."""
    best = None
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        for x0 in starts:
            try:
                res = optimize.least_squares(
                    residuals, x0, jac=jacobian, bounds=(lower, np.inf), method="trf"
                )
            except ValueError:  # non-finite residuals at this start
                continue
            if np.isfinite(res.cost) and (best is None or res.cost < best.cost):
                best = res
    if best is None:
        raise RuntimeError("no start of the grid gave a finite fit")
    return best


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
    n, d, y = _check_sizes(params, tokens, loss, n_min=4, what="the over-training law (4 params)")
    g = _grid_array(grid, _gadre_default_grid(), 4, "(E, a, b, eta)")
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

    res = _multistart_lsq(residuals, jacobian, starts, np.array([-np.inf, -np.inf, -np.inf, 0.0]))
    E, la, lb, eta = res.x
    return OvertrainFit(
        float(E), float(np.exp(la)), float(np.exp(lb)), float(eta), float(res.cost),
        bool(res.success), "gadre",
    )  # fmt: skip


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
    x = _vector("loss", loss)
    e = _vector("err", err, positive=False)
    if np.any(e < 0):
        raise ValueError(f"err must be >= 0 (an error rate), got min {e.min():g}")
    _check_points(_same_length({"loss": x, "err": e}), 3, "the downstream law (3 params)")
    g = _grid_array(grid, _downstream_default_grid(), 3, "(eps, k, gamma)")
    if np.any(g[:, 1] <= 0):
        raise ValueError("grid values of k must be > 0")
    starts = np.column_stack([g[:, 0], np.log(g[:, 1]), np.maximum(g[:, 2], 0)])

    def residuals(theta):
        return _downstream_np(x, theta[0], np.exp(theta[1]), theta[2]) - e

    def jacobian(theta):
        t = np.exp(theta[1] - theta[2] * x)
        return np.column_stack([np.ones_like(x), -t, x * t])

    res = _multistart_lsq(residuals, jacobian, starts, np.array([-np.inf, -np.inf, 0.0]))
    eps, lk, gamma = res.x
    return DownstreamFit(
        float(eps), float(np.exp(lk)), float(gamma), float(res.cost), bool(res.success),
        "gadre-downstream",
    )  # fmt: skip


BASELINES = {"hitchhiker": fit_hitchhiker, "hoffmann": fit_hoffmann, "gadre": fit_gadre}
