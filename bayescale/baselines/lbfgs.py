"""A small L-BFGS in JAX that vmaps over starts and datasets and can pause and resume.

``jax.scipy.optimize`` offers BFGS and an experimental L-BFGS that its authors
ask not to rely on, and optax is not a dependency. The problems here have five
parameters, so the solver is small: the two-loop recursion over ten stored
pairs and a weak-Wolfe bisection line search, as a state machine in
``lax.while_loop``. Its stopping rules mirror SciPy's L-BFGS-B (``gtol`` on the
gradient's max-norm, ``ftol`` on the relative decrease).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

# L-BFGS(-B) stopping rules, SciPy's defaults.
FTOL = 2.220446049250313e-09
GTOL = 1e-5
HISTORY = 10
MAX_LINESEARCH = 20  # SciPy's maxls


def two_loop(g, S, Y, rho, npairs):
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
RUNNING, GTOL_OK, FTOL_OK, MAXITER, LS_FAIL, NONFINITE = 0, 1, 2, 3, 4, 5


class State(NamedTuple):
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


def descent(g, S, Y, rho, npairs):
    """L-BFGS direction, or normalised steepest descent if it is not a descent one."""
    d = two_loop(g, S, Y, rho, npairs)
    bad = ~(jnp.dot(d, g) < 0) | ~jnp.all(jnp.isfinite(d))
    d = jnp.where(bad, -g / jnp.maximum(jnp.linalg.norm(g), 1e-12), d)
    return d, jnp.where(bad, 0, npairs).astype(jnp.int32)


def minimize(fg, x0, maxiter, gtol, ftol, history=HISTORY, c1=1e-4, c2=0.9):
    """Minimise ``fg``'s value from ``x0``; returns ``(x, f, status, iterations, nfev)``.

    :func:`start`, then :func:`step` until the status leaves
    ``RUNNING``. The loop may be stopped and resumed from its state
    (:func:`_hoffmann_rounds`).
    """
    state = start(fg, x0, gtol, history)
    body = step(fg, maxiter, gtol, ftol, history, c1, c2)
    out = jax.lax.while_loop(lambda s: s.status == RUNNING, body, state)
    return out.x, out.f, out.status, out.k, out.nfev


def start(fg, x0, gtol, history=HISTORY) -> State:
    """The L-BFGS state at ``x0``: one evaluation, steepest-descent direction."""
    n = x0.shape[0]
    dt = x0.dtype
    f0, g0 = fg(x0)
    S = jnp.zeros((history, n), dt)
    rho = jnp.zeros(history, dt)
    d0, npairs = descent(g0, S, S, rho, jnp.int32(0))
    status0 = jnp.where(
        ~jnp.isfinite(f0) | ~jnp.all(jnp.isfinite(g0)),
        NONFINITE,
        jnp.where(jnp.max(jnp.abs(g0)) <= gtol, GTOL_OK, RUNNING),
    ).astype(jnp.int32)
    one = jnp.ones((), dt)
    return State(
        jnp.int32(0),
        x0,
        f0,
        g0,
        d0,
        one,
        0 * one,
        jnp.inf * one,
        jnp.int32(0),
        x0,
        jnp.inf * one,
        g0,
        S,
        S,
        rho,
        npairs,
        status0,
        jnp.int32(1),
    )


def step(fg, maxiter, gtol, ftol, history=HISTORY, c1=1e-4, c2=0.9):
    """One step of the L-BFGS state machine, as a ``State -> State`` function.

    Written as a flat state machine, one function evaluation per loop step
    (a line-search trial or the first trial of the next iteration), so that under
    ``vmap`` a start in a long line search does not stall the others: the loop
    costs the largest number of evaluations of any start, not the sum over
    iterations of the longest line search. The line search is weak-Wolfe by
    bisection/doubling (Lewis & Overton), robust on the piecewise-smooth Huber
    loss; if it ends without a Wolfe point the best sufficient-decrease point is
    taken.
    """

    def body(s: State) -> State:
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
        end = wolfe | (nls >= MAX_LINESEARCH)
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
        d_new, npairs_new = descent(g, S, Y, rho, npairs)
        npairs = jnp.where(ok, npairs_new, npairs)
        k = s.k + ok.astype(jnp.int32)

        # SciPy's tests: projected-gradient max-norm, and relative decrease
        scale = jnp.maximum(jnp.maximum(jnp.abs(s.f), jnp.abs(f)), 1.0)
        status = jnp.select(
            [
                end & ~ok,
                ok & (jnp.max(jnp.abs(g)) <= gtol),
                ok & (s.f - f <= ftol * scale),
                ok & (k >= maxiter),
            ],
            [LS_FAIL, GTOL_OK, FTOL_OK, MAXITER],
            RUNNING,
        ).astype(jnp.int32)
        t_next = jnp.where(jnp.isinf(hi), 2.0 * lo, 0.5 * (lo + hi))
        return State(
            k,
            x,
            f,
            g,
            jnp.where(ok, d_new, s.d),
            jnp.where(ok, 1.0, t_next),
            jnp.where(ok, 0.0, lo),
            jnp.where(ok, jnp.inf, hi),
            jnp.where(ok, 0, nls).astype(jnp.int32),
            xb,
            jnp.where(ok, jnp.inf, fb),
            gb,
            S,
            Y,
            rho,
            npairs,
            status,
            s.nfev + 1,
        )

    return body
