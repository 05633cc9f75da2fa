"""The size-level discrepancy: how a family's sizes depart from its power law.

With one run per size (most real families) a run's offset from the law mixes
two kinds of scatter: its seed, which a replicate would redraw, and how the
family's loss at that size departs from the power law, which it would not.
The discrepancy ``delta_f(log N)`` is a Gaussian process in log parameters
with an exponential (Ornstein-Uhlenbeck) kernel,
``cov = sigma_delta^2 exp(-|Δlog N| / ell_delta)``, pooled scale and length,
one path per family. Its Markov property makes everything linear in the
number of sizes: the prior is a recursion over each family's sorted distinct
sizes (the same associative scan as the trajectory noise), and the value at
a size the fit did not see depends only on its two nearest fitted sizes.
So a prediction near a fitted size inherits that size's discrepancy, and one
far from every fitted size carries up to ``sigma_delta`` of new uncertainty.

The model sees the discrepancy centred within each family (its average over
the family's sizes is part of the family's law, as the run effects' average
is), so a prediction adds ``delta(N*) - mean(delta)`` to the fitted law
(:func:`query_offsets`).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

# sizes closer than this in log N are one size (float noise in a params column)
_SAME_SIZE = 1e-6


class SizeSlots(NamedTuple):
    """The distinct (family, size) pairs of a fit, sorted by family, then size.

    Attributes
    ----------
    run_slot : (R,) int, the slot of each run.
    family : (S,) int, the family of each slot.
    log_n : (S,) float, log parameters of each slot.
    first : (S,) bool, True at each family's smallest size.
    """

    run_slot: np.ndarray
    family: np.ndarray
    log_n: np.ndarray
    first: np.ndarray


def size_slots(run_family, log_n) -> SizeSlots:
    """Group runs by family and size (:class:`SizeSlots`)."""
    run_family = np.asarray(run_family, dtype=int)
    key = np.round(np.asarray(log_n, dtype=float) / _SAME_SIZE)
    pairs, run_slot = np.unique(np.stack([run_family, key], axis=1), axis=0, return_inverse=True)
    family = pairs[:, 0].astype(int)
    run_slot = run_slot.ravel()
    # each slot's size as given (not the rounded key): that of its first run
    first_run = np.zeros(len(pairs), dtype=int)
    first_run[run_slot[::-1]] = np.arange(run_slot.size)[::-1]
    slot_log_n = np.asarray(log_n, dtype=float)[first_run]
    first = np.ones(len(pairs), dtype=bool)
    first[1:] = family[1:] != family[:-1]
    return SizeSlots(run_slot, family, slot_log_n, first)


def slot_rho(slots: SizeSlots, length):
    """Correlation of each slot with the family's next smaller size (0 at the smallest)."""
    from bayescale.trajectory import ou_rho

    return ou_rho(slots.log_n, slots.first, length)


def slot_values(slots: SizeSlots, z, sigma, length):
    """The discrepancy at each slot from standard normal ``z`` (..., S): the OU recursion.

    ``sigma`` and ``length`` broadcast against ``z``'s leading axes (one per
    draw). Works on NumPy and JAX arrays alike.
    """
    import jax.numpy as jnp

    from bayescale.trajectory import MIN_INNOVATION_VARIANCE, ou_paths

    sigma = jnp.asarray(sigma)[..., None]
    rho = slot_rho(slots, jnp.asarray(length)[..., None])
    scale = jnp.sqrt(jnp.clip(1.0 - rho**2, MIN_INNOVATION_VARIANCE, 1.0))
    return sigma * ou_paths(rho, scale * z)


def family_means(slots: SizeSlots, values, n_families: int):
    """Each family's average discrepancy over its sizes, (..., F)."""
    import jax.numpy as jnp

    onehot = np.eye(n_families)[slots.family]  # (S, F)
    counts = np.maximum(onehot.sum(axis=0), 1.0)
    return jnp.asarray(values) @ onehot / counts


def conditional(x_fit, v_fit, x_query, sigma, length):
    """Mean and sd of an OU path at ``x_query`` given its values ``v_fit`` at sorted ``x_fit``.

    Parameters
    ----------
    x_fit : (K,) sorted positions (K >= 1).
    v_fit : (S, K) values per draw.
    x_query : (P,) or (S, P) positions.
    sigma, length : (S,) stationary sd and correlation length per draw.

    Returns
    -------
    mean, sd : (S, P)
        Conditioned on the nearest fitted position on each side only, which is
        exact for the exponential kernel (Markov).
    """
    x_fit = np.asarray(x_fit, dtype=float)
    v_fit = np.asarray(v_fit, dtype=float)
    sigma = np.asarray(sigma, dtype=float)[:, None]
    length = np.asarray(length, dtype=float)[:, None]
    x_query = np.broadcast_to(
        np.asarray(x_query, dtype=float), (v_fit.shape[0],) + np.shape(x_query)[-1:]
    )
    k = x_fit.size
    hi = np.searchsorted(x_fit, x_query, side="left")  # first fitted >= query
    lo = hi - 1
    lo_c, hi_c = np.clip(lo, 0, k - 1), np.clip(hi, 0, k - 1)
    # a, b: correlation with the nearest fitted size below and above (0 where none)
    a = np.where(lo >= 0, np.exp(-np.abs(x_query - x_fit[lo_c]) / length), 0.0)
    b = np.where(hi < k, np.exp(-np.abs(x_fit[hi_c] - x_query) / length), 0.0)
    v_lo = np.take_along_axis(v_fit, lo_c, axis=1)
    v_hi = np.take_along_axis(v_fit, hi_c, axis=1)
    denom = np.maximum(1.0 - a**2 * b**2, 1e-12)
    mean = (a * (1.0 - b**2) * v_lo + b * (1.0 - a**2) * v_hi) / denom
    var = (1.0 - a**2) * (1.0 - b**2) / denom
    return mean, sigma * np.sqrt(np.clip(var, 0.0, 1.0))


def query_offsets(slots: SizeSlots, family, z, sigma, length, log_n_query, rng) -> np.ndarray:
    """Draws of ``delta(N*) - mean_f(delta)`` at query sizes, (S, P).

    ``z`` (S, n_slots), ``sigma``, ``length`` (S,): posterior draws of the
    discrepancy. ``log_n_query`` is (P,), or (S, P) for sizes that differ by
    draw. Each distinct query size is drawn from its conditional given the
    family's fitted sizes (points of one size share the draw; distinct query
    sizes are not conditioned on each other). ``family=None``: a family the
    fit did not see, whose discrepancy is a fresh draw of the prior process.
    """
    sigma = np.asarray(sigma, dtype=float)
    log_n_query = np.asarray(log_n_query, dtype=float)
    s = sigma.shape[0]
    if log_n_query.ndim == 1:
        uniq, inverse = np.unique(log_n_query, return_inverse=True)
        uniq, inverse = np.broadcast_to(uniq, (s, uniq.size)), inverse.ravel()
    else:
        uniq, inverse = log_n_query, np.arange(log_n_query.shape[-1])
    if family is None:
        return (sigma[:, None] * rng.standard_normal(uniq.shape))[:, inverse]
    values = np.asarray(slot_values(slots, z, sigma, length))
    v_fit = values[:, slots.family == family]
    mean, sd = conditional(slots.log_n[slots.family == family], v_fit, uniq, sigma, length)
    draw = mean + sd * rng.standard_normal(mean.shape)
    return (draw - v_fit.mean(axis=1, keepdims=True))[:, inverse]
