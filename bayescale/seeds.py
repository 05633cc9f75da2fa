"""Run (seed) effects: which runs are replicates, and their effects around their average.

A run's seed effect ``u_r`` is what a replicate would redraw. Without the
size-level discrepancy every multi-checkpoint run of a family is treated as
a replicate of the family's average run. With it (``by_size=True``) only
runs that share a family *and* a size are replicates: a size's departure
from the law is the discrepancy's, and a run alone at its size has no
separate seed effect (``u_r = 0``; its seed is part of the discrepancy at
that size, which a single run cannot tell apart). Were both free for a lone
run, their sum would be pinned and their split left to the priors: a ridge
the sampler crawled along.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def seed_groups(inputs, by_size: bool = False):
    """Each run's replicate group, (R,), and each group's number of multi-checkpoint runs.

    Groups are families (``by_size=False``) or (family, size) pairs.
    """
    if by_size:
        from bayescale.discrepancy import group_slots

        slots = group_slots(inputs.run_family, inputs.log_n)
        group, n_groups = slots.run_slot, slots.family.size
    else:
        group, n_groups = np.asarray(inputs.run_family), int(inputs.n_families)
    multi = ~np.asarray(inputs.run_single, dtype=bool)
    return group, np.bincount(group[multi], minlength=n_groups)


def centered_run_effects(z, inputs, by_size: bool = False):
    """Unit run effects that sum to zero within each replicate group: ``z - mean_g(z)``.

    A shift shared by all runs of a family is the same as a shift of the
    family's law (log E, a, b all move together), so the likelihood cannot
    tell them apart; pinning the family mean of ``u`` to zero removes that
    ridge, which otherwise made NUTS take maximal trajectories. The law then
    describes the family's average run; predictions add back the uncertainty
    of that average (``sigma_seed / sqrt(K_f)``, see :func:`law_offset_runs`).
    With ``by_size`` the same holds per (family, size), whose shared shift is
    the discrepancy's at that size (:func:`seed_groups`).

    The effects are not rescaled: with ``z`` standard normal,
    ``u = sigma_seed (z - mean(z))`` has covariance ``sigma_seed^2 (I - J/K)``,
    exactly what ``K`` independent seeds of spread ``sigma_seed`` look like
    around their own average (NumPyro's ``ZeroSumNormal`` convention). So the
    fitted ``sigma_seed`` is the population seed spread that ``predict`` and
    ``plan`` give a new run. (Rescaling each effect to unit variance, as v0.1
    did, fitted the smaller spread around the average: 30% too narrow at
    K = 2.) Each ``u_r`` stays tied to its own ``z_r``, which suits the
    diagonal mass matrix over ``z`` (an orthonormal contrast basis, tried,
    mixed each run's effect over many coordinates and mixed worse).

    Runs with a single kept checkpoint get ``u = 0``: their seed effect and
    their evaluation noise are the same kind of scatter and cannot be told
    apart, so the likelihood gives that point both variances instead (see
    :func:`bayescale.model.obs_scale`); a free ``u`` there let the MAP fit
    such points exactly and collapse the noise scale. A group with one
    multi-checkpoint run also has ``u = 0`` for it.
    """
    group, counts = seed_groups(inputs, by_size)
    multi = ~np.asarray(inputs.run_single, dtype=bool)
    z_masked = jnp.where(multi, z, 0.0)
    z_sum = jax.ops.segment_sum(z_masked, group, num_segments=counts.size)
    z_mean = z_sum / np.maximum(counts, 1.0)
    return jnp.where(multi, z - z_mean[group], 0.0)


def law_offset_runs(inputs) -> np.ndarray:
    """Per family, the number of runs whose effects the law absorbs (``K_f``)."""
    return seed_groups(inputs)[1]


def single_seed_var(inputs) -> np.ndarray:
    """Per run, ``1 + 1/K_f`` (``K_f``: :func:`law_offset_runs` of its family; 1 if none)."""
    k = law_offset_runs(inputs)[np.asarray(inputs.run_family)]
    return 1.0 + np.where(k > 0, 1.0 / np.maximum(k, 1), 0.0)
