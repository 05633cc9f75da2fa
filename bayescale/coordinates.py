"""A family's law coefficients in coordinates centred on its own data.

The law (relative scale) is ``mu = E + exp(a - alpha x) + exp(b - beta y)``
with ``x``, ``y`` the log size and log tokens relative to the law's reference
sizes, ``E = e_frac * e_max`` below the family's smallest loss. A family's data
pin the law's value near their centre ``(x_f, y_f)`` (mean log size of its
runs, mean log tokens of its checkpoints) far better than they pin how it
splits into E and the two terms; with two or three sizes the split is left to
the priors along a curved ridge (``E + exp(a - alpha x_f)`` fixed), which NUTS
crossed in maximal trees: R-hat up to 1.63 in fits of one family at two sizes.

So each family is sampled as three coordinates (:class:`FamilyCoords`):

- ``level``, the log of the law's value at the centre,
  ``L = E + exp(a_c) + exp(b_c)``, with ``a_c = a - alpha x_f`` and
  ``b_c = b - beta y_f``;
- ``e_logit``, the logit of E's share of what it may take:
  ``E = min(L, e_max) * sigmoid(e_logit)`` (so ``E < e_max`` and ``E < L``);
- ``nd_logit = a_c - b_c``, how the rest, ``L - E``, splits between the size
  and the token term.

The prior is the model's prior on ``(e_frac, a, b)``, carried over with the
Jacobian of the map (:func:`to_law`): the same joint law, other coordinates.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
from jax.scipy.special import betaln
from numpyro.distributions import constraints

COORDS = ("level", "e_logit", "nd_logit")


def family_centres(inputs) -> np.ndarray:
    """Each family's data centre, (F, 2): mean log size of its runs, log time of its checkpoints.

    Both relative to the law's reference sizes (:data:`bayescale.laws.N_REF`,
    ``D_REF``); time is the law's axis: log tokens, or the log LR area under
    schedules. ``inputs`` is a :class:`bayescale.model.ModelInputs`.
    """
    from bayescale.laws import LOG_D_REF, LOG_N_REF

    f = inputs.n_families
    fam = np.asarray(inputs.run_family)
    runs = np.maximum(np.bincount(fam, minlength=f), 1)
    x = np.bincount(fam, np.asarray(inputs.log_n) - LOG_N_REF, minlength=f) / runs
    time = inputs.log_d if inputs.log_area is None else inputs.log_area
    fam_obs = fam[np.asarray(inputs.obs_run)]
    obs = np.maximum(np.bincount(fam_obs, minlength=f), 1)
    y = np.bincount(fam_obs, np.asarray(time) - LOG_D_REF, minlength=f) / obs
    return np.stack([x, y], axis=-1)


def log1mexp(x):
    """``log(1 - exp(x))`` for ``x < 0``, accurate near 0 and far below it."""
    near = x > -math.log(2.0)
    # each branch evaluated only where it is accurate, so neither feeds a NaN gradient
    x_near = jnp.where(near, jnp.minimum(x, -jnp.finfo(jnp.result_type(x)).tiny), -1.0)
    x_far = jnp.where(near, -1.0, x)
    return jnp.where(near, jnp.log(-jnp.expm1(x_near)), jnp.log1p(-jnp.exp(x_far)))


def e_fraction_logs(coords, log_e_max):
    """``(log e_frac, log(1 - e_frac))`` of coordinates ``coords`` (F, 3).

    Computed in log space: where E presses on its bound the share
    ``sigmoid(e_logit)`` rounds to 1 in float32 (``e_logit`` above ~17), and
    ``e_frac`` computed directly gave the Beta prior an infinite density there,
    on which NUTS stopped moving.
    """
    level, e_logit = coords[..., 0], coords[..., 1]
    below = level < log_e_max
    log_frac = jnp.where(below, level - log_e_max, 0.0) + jax.nn.log_sigmoid(e_logit)
    log1m_frac = jnp.where(below, log1mexp(log_frac), jax.nn.log_sigmoid(-e_logit))
    return log_frac, log1m_frac


def to_law(coords, log_e_max, centre, alpha, beta):
    """``(e_frac, theta, log_jacobian)`` of coordinates ``coords`` (F, 3).

    ``theta`` (F, 2) holds ``(a, b)`` at the reference sizes; the log Jacobian
    (F,) is that of ``(e_frac, a, b)`` with respect to ``coords``.
    """
    level, e_logit, nd_logit = coords[..., 0], coords[..., 1], coords[..., 2]
    below = level < log_e_max
    log_frac, _ = e_fraction_logs(coords, log_e_max)
    # L - E = L (1 - E / L), E / L = min(L, e_max) / L * share; formed without a
    # difference of logs that would round a share near 1 away
    log_rest = level + log1mexp(
        jnp.where(below, 0.0, log_e_max - level) + jax.nn.log_sigmoid(e_logit)
    )
    a = log_rest + jax.nn.log_sigmoid(nd_logit) + alpha * centre[..., 0]
    b = log_rest + jax.nn.log_sigmoid(-nd_logit) + beta * centre[..., 1]
    # |d(e_frac, a_c, b_c) / d(level, e_logit, nd_logit)|: e_frac where E's cap is
    # L, and sigmoid'(e_logit) L / (L - E) where it is e_max
    log_jac = jnp.where(
        below,
        log_frac,
        jax.nn.log_sigmoid(e_logit) + jax.nn.log_sigmoid(-e_logit) + level - log_rest,
    )
    return jnp.exp(log_frac), jnp.stack([a, b], axis=-1), log_jac


def from_law(e_frac, theta, log_e_max, centre, alpha, beta):
    """The coordinates (F, 3) of ``(e_frac, theta)``: the inverse of :func:`to_law`."""
    a_c = theta[..., 0] - alpha * centre[..., 0]
    b_c = theta[..., 1] - beta * centre[..., 1]
    log_e = jnp.log(e_frac) + log_e_max
    level = jnp.logaddexp(log_e, jnp.logaddexp(a_c, b_c))
    # E's share of its cap, min(L, e_max)
    log_share = log_e - jnp.minimum(level, log_e_max)
    e_logit = log_share - log1mexp(log_share)
    return jnp.stack([level, e_logit, a_c - b_c], axis=-1)


class FamilyCoords(dist.Distribution):
    """Prior of every family's coordinates, (F, 3), from the prior of ``(e_frac, theta)``.

    Parameters
    ----------
    e_prior : numpyro.distributions.Beta
        Prior of ``e_frac``, batch shape (F,) or broadcastable.
    offsets : Distribution
        Joint prior of ``theta`` (F, 2), e.g. :class:`bayescale.pooling.PooledOffsets`.
    log_e_max : (F,)
        Log of each family's bound on E.
    centre : (F, 2)
        :func:`family_centres`.
    alpha, beta : (F,)
        The family exponents.
    """

    arg_constraints = {}
    support = constraints.independent(constraints.real, 2)

    def __init__(self, e_prior, offsets, log_e_max, centre, alpha, beta, *, validate_args=None):
        self.e_prior, self.offsets = e_prior, offsets
        self.log_e_max, self.centre = jnp.asarray(log_e_max), jnp.asarray(centre)
        self.alpha, self.beta = jnp.asarray(alpha), jnp.asarray(beta)
        n = self.centre.shape[0]
        super().__init__(event_shape=(n, len(COORDS)), validate_args=validate_args)

    def sample(self, key, sample_shape=()):
        k_e, k_theta = jax.random.split(key)
        n = self.centre.shape[0]
        e_frac = self.e_prior.expand((n,)).sample(k_e, sample_shape)
        theta = self.offsets.sample(k_theta, sample_shape)
        return from_law(e_frac, theta, self.log_e_max, self.centre, self.alpha, self.beta)

    def log_prob(self, value):
        _, theta, log_jac = to_law(value, self.log_e_max, self.centre, self.alpha, self.beta)
        # the Beta density from log e_frac and log(1 - e_frac), finite up to the bound
        log_frac, log1m_frac = e_fraction_logs(value, self.log_e_max)
        c1, c0 = self.e_prior.concentration1, self.e_prior.concentration0
        e_term = (c1 - 1.0) * log_frac + (c0 - 1.0) * log1m_frac - betaln(c1, c0)
        return self.offsets.log_prob(theta) + jnp.sum(e_term + log_jac, axis=-1)
