"""Hoffmann et al. (2022), Approach 3, as re-fitted by Besiroglu et al. (2024).

Huber loss (``delta=1e-3``) of ``log L_hat - log L`` with ``log L_hat =
LSE(a - alpha log N, b - beta log D, e)``, minimised by L-BFGS from every
point of the published init grid, best kept. All starts run through one
jitted, vmapped JAX solver (:mod:`bayescale.baselines.lbfgs`) in float64, in
rounds that drop the starts that have stopped; :func:`fit_hoffmann_scipy` is
the same fit as a Python loop over SciPy's L-BFGS-B, and
:func:`fit_hoffmann_many` fits many datasets in one call.

The Huber objective is *summed* over points, as in the Chinchilla paper. With
SciPy's default relative tolerance ``ftol`` (scaled by ``max(|f|, 1)``) a
*mean* objective of order 1e-5 makes the optimiser stop early; Besiroglu et
al. trace Hoffmann et al.'s published coefficients partly to this loss scale.
``reduction="mean"`` is available to reproduce that behaviour.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from scipy import optimize

from bayescale import laws
from bayescale.baselines import lbfgs
from bayescale.baselines.common import ChinchillaFit, check_sizes, grid_array


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
    # Hoffmann's LSE form, with a = log A and b = log B
    pred = laws.log_loss(laws.from_log_published(e, a, b, alpha, beta), log_n, log_d)
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


def _hoffmann_fg(data, i, delta, mean):
    ln, ld, ll, w = (v[i] for v in data)
    return partial(
        _hoffmann_value_and_grad, log_n=ln, log_d=ld, log_l=ll, weight=w, delta=delta, mean=mean
    )


@jax.jit
def _hoffmann_start(x0, idx, data, delta, mean, gtol):
    """Start states for starts ``x0`` ``(B, 5)`` on datasets ``idx`` ``(B,)`` of ``data``."""

    def one(x, i):
        return lbfgs.start(_hoffmann_fg(data, i, delta, mean), x, gtol)

    return jax.vmap(one)(x0, idx)


@jax.jit
def _hoffmann_advance(state, idx, data, delta, mean, maxiter, gtol, ftol, steps):
    """Run each start of ``state`` for at most ``steps`` more evaluations."""

    def one(s, i):
        body = lbfgs.step(_hoffmann_fg(data, i, delta, mean), maxiter, gtol, ftol)
        cap = s.nfev + steps
        return jax.lax.while_loop(lambda t: (t.status == lbfgs.RUNNING) & (t.nfev < cap), body, s)

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
    pending = np.flatnonzero(held.status == lbfgs.RUNNING)
    while pending.size:
        for part, pad in batches(pending):
            sub = jax.tree.map(lambda v, pad=pad: v[pad], held)
            args = (data, delta, mean, maxiter, gtol, ftol, steps)
            store(part, _hoffmann_advance(sub, ds[pad], *args))
        pending = pending[held.status[pending] == lbfgs.RUNNING]
        steps *= 2
    return held.x.reshape(k, s, -1), held.f.reshape(k, s), held.status.reshape(k, s)


def _best_start(x, f, status, method) -> ChinchillaFit:
    f = np.where(np.isfinite(f), f, np.inf)
    i = int(np.argmin(f))
    a, b, e, alpha, beta = (float(v) for v in x[i])
    success = bool(np.isfinite(f[i]) and status[i] in (lbfgs.GTOL_OK, lbfgs.FTOL_OK))
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
    gtol: float = lbfgs.GTOL,
    ftol: float = lbfgs.FTOL,
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
                check_sizes(params, tokens, loss, n_min=5, what="the Chinchilla law (5 params)")
            )
        except ValueError as exc:
            raise ValueError(f"dataset {i}: {exc}") from None
    starts = grid_array(grid, hoffmann_grid(), 5, "(a, b, e, alpha, beta)")
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
    gtol=lbfgs.GTOL,
    ftol=lbfgs.FTOL,
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
    gtol=lbfgs.GTOL,
    ftol=lbfgs.FTOL,
) -> ChinchillaFit:
    """:func:`fit_hoffmann` as a Python loop of SciPy L-BFGS-B runs, one per start.

    Same objective and options (analytic gradient; SciPy's default tolerances
    and iteration cap). The reference for correctness and speed of the
    vmapped JAX fit.
    """
    mean = _check_options(delta, reduction, maxiter, gtol, ftol)
    n, d, y = check_sizes(params, tokens, loss, n_min=5, what="the Chinchilla law (5 params)")
    starts = grid_array(grid, hoffmann_grid(), 5, "(a, b, e, alpha, beta)")
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
            ok.append(lbfgs.GTOL_OK if res.success else lbfgs.LS_FAIL)
    return _best_start(np.array(xs), np.array(fs, dtype=float), np.array(ok), "hoffmann-scipy")
