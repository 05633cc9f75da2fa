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

Families that span several token budgets at one size (isoFLOP and
over-training grids of final losses, :func:`budget_families`) add a second,
independent process of the same kind in the log tokens of those runs, with
its own pooled scale and length: there the law's misfit can lie in D as much
as in N, and the two add.

The model sees each discrepancy centred within each family (its average over
the family's positions is part of the family's law, as the run effects'
average is), so a prediction adds ``delta(x*) - mean(delta)`` to the fitted
law (:func:`query_offsets`).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

# positions closer than this in log N or log D are one (float noise in a column)
_SAME = 1e-6


class Slots(NamedTuple):
    """The distinct (family, position) pairs of a fit, sorted by family, then position.

    A position is a run's log parameters (sizes) or, for the token-budget
    term, a single-checkpoint run's log tokens (budgets).

    Attributes
    ----------
    run_slot : (R,) int, the slot of each run (-1: the run has none).
    family : (S,) int, the family of each slot.
    x : (S,) float, the position of each slot.
    first : (S,) bool, True at each family's smallest position.
    """

    run_slot: np.ndarray
    family: np.ndarray
    x: np.ndarray
    first: np.ndarray


def group_slots(run_family, x, runs=None) -> Slots:
    """Group ``runs`` (bool mask, default all) by family and position ``x`` (:class:`Slots`)."""
    run_family = np.asarray(run_family, dtype=int)
    x = np.asarray(x, dtype=float)
    runs = np.ones(run_family.size, bool) if runs is None else np.asarray(runs, bool)
    run_slot = np.full(run_family.size, -1)
    if not runs.any():
        return Slots(run_slot, np.zeros(0, int), np.zeros(0), np.zeros(0, bool))
    key = np.round(x[runs] / _SAME)
    pairs, inverse = np.unique(
        np.stack([run_family[runs], key], axis=1), axis=0, return_inverse=True
    )
    inverse = inverse.ravel()
    run_slot[runs] = inverse
    family = pairs[:, 0].astype(int)
    # each slot's position as given (not the rounded key): that of its first run
    first_run = np.full(len(pairs), inverse.size)
    np.minimum.at(first_run, inverse, np.arange(inverse.size))
    first = np.ones(len(pairs), dtype=bool)
    first[1:] = family[1:] != family[:-1]
    return Slots(run_slot, family, x[runs][first_run], first)


def size_slots(inputs) -> Slots:
    """Every run by family and size (log N): where ``delta_f(log N)`` lives."""
    return group_slots(inputs.run_family, inputs.log_n)


def budget_families(inputs) -> np.ndarray:
    """Which families span several token budgets at one size, (F,) bool.

    The rule for the token-budget term: a family has it when two or more of
    its single-checkpoint runs share a size but not a token count (isoFLOP
    and over-training grids). Loss curves do not qualify: along one run the
    trajectory noise already follows the tokens.
    """
    single = np.asarray(inputs.run_single, bool)
    fam = np.asarray(inputs.run_family)[single]
    log_n = np.round(np.asarray(inputs.log_n)[single] / _SAME)
    log_d = np.round(run_log_tokens(inputs)[single] / _SAME)
    out = np.zeros(inputs.n_families, bool)
    for f, n in set(zip(fam.tolist(), log_n.tolist(), strict=True)):
        sel = (fam == f) & (log_n == n)
        out[f] |= np.unique(log_d[sel]).size > 1
    return out


def run_log_tokens(inputs) -> np.ndarray:
    """Log tokens of each run's last kept checkpoint, (R,)."""
    out = np.full(np.shape(inputs.run_family), -np.inf)
    np.maximum.at(out, np.asarray(inputs.obs_run), np.asarray(inputs.log_d, dtype=float))
    return out


def budget_slots(inputs) -> Slots:
    """Single-checkpoint runs of :func:`budget_families` by family and log tokens."""
    runs = np.asarray(inputs.run_single, bool) & budget_families(inputs)[inputs.run_family]
    return group_slots(inputs.run_family, run_log_tokens(inputs), runs)


class Term(NamedTuple):
    """One discrepancy process: its site suffix, plate, slots and query axis."""

    suffix: str  # sites sigma_delta{suffix}, ell_delta{suffix}, z_delta{suffix}
    plate: str
    slots_of: object  # ModelInputs -> Slots
    axis: str  # "params" or "tokens": what a query's position is the log of
    for_unseen: bool  # a family the fit did not see gets a fresh draw of it


#: The size term of every family and the token-budget term of grid families.
TERMS = (
    Term("", "size", size_slots, "params", True),
    Term("_d", "budget", budget_slots, "tokens", False),
)


def fitted_terms(sites, inputs) -> list:
    """The terms a fit has, those whose ``z_delta`` is among ``sites``: ``(term, slots)``."""
    return [(t, t.slots_of(inputs)) for t in TERMS if f"z_delta{t.suffix}" in sites]


def slot_rho(slots: Slots, length):
    """Correlation of each slot with the family's next smaller position (0 at the smallest)."""
    from bayescale.trajectory import ou_rho

    return ou_rho(slots.x, slots.first, length)


def slot_values(slots: Slots, z, sigma, length):
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


def family_means(slots: Slots, values, n_families: int):
    """Each family's average discrepancy over its sizes, (..., F)."""
    import jax.numpy as jnp

    onehot = np.eye(n_families)[slots.family]  # (S, F)
    counts = np.maximum(onehot.sum(axis=0), 1.0)
    return jnp.asarray(values) @ onehot / counts


def conditional(x_fit, v_fit, x_query, sigma, length, xp=np):
    """Mean and sd of an OU path at ``x_query`` given its values ``v_fit`` at sorted ``x_fit``.

    Parameters
    ----------
    x_fit : (K,) sorted positions (K >= 1).
    v_fit : (S, K) values per draw.
    x_query : (P,) or (S, P) positions.
    sigma, length : (S,) stationary sd and correlation length per draw.
    xp : array namespace
        ``numpy`` (float64, default) or ``jax.numpy`` (traceable).

    Returns
    -------
    mean, sd : (S, P)
        Conditioned on the nearest fitted position on each side only, which is
        exact for the exponential kernel (Markov).
    """
    x_fit = xp.asarray(x_fit)
    v_fit = xp.asarray(v_fit)
    sigma = xp.asarray(sigma)[:, None]
    length = xp.asarray(length)[:, None]
    x_query = xp.broadcast_to(xp.asarray(x_query), (v_fit.shape[0],) + np.shape(x_query)[-1:])
    k = x_fit.shape[0]
    hi = xp.searchsorted(x_fit, x_query, side="left")  # first fitted >= query
    lo = hi - 1
    lo_c, hi_c = xp.clip(lo, 0, k - 1), xp.clip(hi, 0, k - 1)
    # a, b: correlation with the nearest fitted size below and above (0 where none)
    a = xp.where(lo >= 0, xp.exp(-xp.abs(x_query - x_fit[lo_c]) / length), 0.0)
    b = xp.where(hi < k, xp.exp(-xp.abs(x_fit[hi_c] - x_query) / length), 0.0)
    v_lo = xp.take_along_axis(v_fit, lo_c, axis=1)
    v_hi = xp.take_along_axis(v_fit, hi_c, axis=1)
    denom = xp.maximum(1.0 - a**2 * b**2, 1e-12)
    mean = (a * (1.0 - b**2) * v_lo + b * (1.0 - a**2) * v_hi) / denom
    var = xp.clip((1.0 - a**2) * (1.0 - b**2) / denom, 0.0, 1.0)
    # at a known position the sd is exactly 0; the double where keeps its gradient finite
    sd = xp.where(var > 0.0, xp.sqrt(xp.where(var > 0.0, var, 1.0)), 0.0)
    return mean, sigma * sd


def joint_draws(x_fit, v_fit, x_query, sigma, length, normals) -> np.ndarray:
    """Joint draws of an OU path at distinct positions ``x_query`` (P,), given ``v_fit``.

    Each position, in the order given, is drawn from its conditional given
    the fitted positions and the positions drawn before it (for a Markov
    path, its nearest known neighbour on each side), from ``normals[p]``
    (S,). So the draw at the first position is the same whatever follows it.
    Shapes as in :func:`conditional`, except that ``x_fit`` may be empty (a
    path nothing is known of: the first position is drawn from the stationary
    law); returns (S, P).
    """
    known_x = np.asarray(x_fit, dtype=float)
    known_v = np.asarray(v_fit, dtype=float)
    out = np.empty((known_v.shape[0], len(x_query)))
    for p, x in enumerate(np.asarray(x_query, dtype=float)):
        if known_x.size == 0:
            out[:, p] = np.asarray(sigma, dtype=float) * normals[p]
        else:
            mean, sd = conditional(known_x, known_v, np.array([x]), sigma, length)
            out[:, p] = mean[:, 0] + sd[:, 0] * normals[p]
        at = int(np.searchsorted(known_x, x))
        known_x = np.insert(known_x, at, x)
        known_v = np.insert(known_v, at, out[:, p], axis=1)
    return out


def query_offsets(slots: Slots, family, z, sigma, length, x_query, rng) -> np.ndarray:
    """Draws of ``delta(x*) - mean_f(delta)`` at query positions, (S, P).

    ``z`` (S, n_slots), ``sigma``, ``length`` (S,): posterior draws of the
    discrepancy. ``x_query`` (P,) positions are drawn jointly
    (:func:`joint_draws`, in order of first appearance, points at one
    position sharing their draw), so a query near another moves with it;
    ``x_query`` (S, P), positions that differ by draw, are drawn each from
    its own conditional. ``family=None``: a family the fit did not see, whose
    discrepancy is a fresh path of the prior process (not centred: the
    family's offset is a fresh draw too).
    """
    sigma = np.asarray(sigma, dtype=float)
    x_query = np.asarray(x_query, dtype=float)
    s = sigma.shape[0]
    if family is None:
        if x_query.ndim == 2:
            return sigma[:, None] * rng.standard_normal(x_query.shape)
        x_known, v_fit = np.empty(0), np.empty((s, 0))
    else:
        cols = slots.family == family
        x_known = slots.x[cols]
        v_fit = np.asarray(slot_values(slots, z, sigma, length))[:, cols]
    if x_query.ndim == 1:
        uniq, first, inverse = np.unique(x_query, return_index=True, return_inverse=True)
        order = np.argsort(first)
        rank = np.empty_like(order)
        rank[order] = np.arange(order.size)
        normals = rng.standard_normal((order.size, s))
        draw = joint_draws(x_known, v_fit, uniq[order], sigma, length, normals)
        draw = draw[:, rank[inverse.ravel()]]
    else:
        mean, sd = conditional(x_known, v_fit, x_query, sigma, length)
        draw = mean + sd * rng.standard_normal(mean.shape)
    return draw if family is None else draw - v_fit.mean(axis=1, keepdims=True)
