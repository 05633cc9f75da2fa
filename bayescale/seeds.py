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
import numpyro.distributions as dist
from numpyro.distributions import constraints


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
    z_masked = jnp.moveaxis(jnp.where(multi, z, 0.0), -1, 0)  # leading axes: batch
    z_sum = jax.ops.segment_sum(z_masked, group, num_segments=counts.size)
    z_mean = jnp.moveaxis(z_sum, 0, -1) / np.maximum(counts, 1.0)
    return jnp.where(multi, z - z_mean[..., group], 0.0)


def law_offset_runs(inputs) -> np.ndarray:
    """Per family, the number of runs whose effects the law absorbs (``K_f``)."""
    return seed_groups(inputs)[1]


def single_seed_var(inputs) -> np.ndarray:
    """Per run, ``1 + 1/K_f`` (``K_f``: :func:`law_offset_runs` of its family; 1 if none)."""
    k = law_offset_runs(inputs)[np.asarray(inputs.run_family)]
    return 1.0 + np.where(k > 0, 1.0 / np.maximum(k, 1), 0.0)


class RunEffects(dist.Distribution):
    """Prior of the seed coordinates ``z_u`` (R,), partly centred with weight ``w``.

    The seed effects are ``u = sigma**(1 - w) c`` with ``c`` the contrasts
    :func:`centered_run_effects` of ``z_u``, whose law within each replicate
    group of ``K`` runs is a zero-sum normal of scale ``sigma**w`` (``K - 1``
    degrees of freedom): ``u`` has the same law for every ``w``. ``w = 0`` is
    the non-centred form (``z_u`` standard normal); ``w = 1`` the centred one,
    where ``z_u``'s contrasts are the effects themselves. The directions the
    likelihood never sees (each group's mean, the coordinates of runs without
    a seed effect) are ``Normal(0, anchor**w)``, free of ``sigma``, so none of
    them narrows with it (a funnel's neck).

    Centred coordinates suit effects the data pin, non-centred ones effects
    the prior carries. A run's level is pinned by its checkpoints, but with
    one run per size its split from the law is not: neither end fits every
    family (``FitConfig.seed_centring``; ``w = 1/2`` is measured in
    ``benchmarks/RESULTS.md``, section ``eval_hitchhiker_seed_centring_family_fits``).

    Parameters
    ----------
    sigma : scalar
        Population seed spread ``sigma_seed``.
    inputs : ModelInputs
    by_size : bool
        Replicate groups are (family, size) pairs (:func:`seed_groups`).
    w : float
        Centring weight in [0, 1].
    anchor : float
        Scale of the unseen directions at ``w = 1`` (the prior's seed scale).
    """

    arg_constraints = {}
    support = constraints.independent(constraints.real, 1)

    def __init__(self, sigma, inputs, by_size=False, w=0.0, anchor=0.03, *, validate_args=None):
        self.inputs, self.by_size = inputs, by_size
        self.sigma, self.w = jnp.asarray(sigma), float(w)
        self.scale, self.anchor = self.sigma**self.w, float(anchor) ** self.w
        counts = seed_groups(inputs, by_size)[1]
        self.dof = int(np.maximum(counts - 1, 0).sum())
        super().__init__(event_shape=np.shape(inputs.run_family), validate_args=validate_args)

    def contrasts(self, z):
        """Each group's contrasts of ``z`` (0 for runs without a seed effect)."""
        return centered_run_effects(z, self.inputs, self.by_size)

    def effects(self, z):
        """The seed effects ``u`` of coordinates ``z``."""
        return self.sigma ** (1.0 - self.w) * self.contrasts(z)

    def from_standard(self, x):
        """The coordinates of the effects whose non-centred (``w = 0``) coordinates are ``x``."""
        if self.w == 0.0:
            return x  # exactly: a non-centred fit draws what it always drew
        c = self.contrasts(x)
        return self.scale * c + self.anchor * (x - c)

    def sample(self, key, sample_shape=()):
        return self.from_standard(jax.random.normal(key, sample_shape + self.event_shape))

    def log_prob(self, value):
        base = dist.Normal(0.0, self.anchor).log_prob(value).sum(-1)
        if self.w == 0.0:
            return base
        # the contrasts' law: Normal(0, scale) in place of Normal(0, anchor)
        ss = jnp.sum(self.contrasts(value) ** 2, axis=-1)
        swap = -self.dof * jnp.log(self.scale / self.anchor)
        return base + swap - 0.5 * ss * (1.0 / self.scale**2 - 1.0 / self.anchor**2)
