"""A family's law coefficients in coordinates centred on its own data.

The law (relative scale) is ``mu = E + exp(a - alpha x) + exp(b - beta y)``
with ``x``, ``y`` the log size and log tokens relative to the law's reference
sizes. E's prior is on ``e_frac``, its share of the law at the reference
sizes, ``E / (E + exp(a) + exp(b))``: one point for every family, so the
pooled share does not depend on how far each family was scaled. (A share of
each family's smallest observed loss, as before, meant a smaller share for a
family seen only at a small size; pooled with families seen up to large
sizes, it put the E of a one-run family too high and its predicted gain from
scale too low.)

A family's data pin the law's value near their centre ``(x_f, y_f)`` (mean
log size of its runs, mean log tokens of its checkpoints) far better than they
pin how it splits into E and the two terms. Every run's curve shows the token
term, but only several sizes show the size term: at one size the data pin
``E + exp(a - alpha x_f)`` and leave its split to the priors, a ridge that
NUTS crossed in maximal trees when it was curved in the sampling coordinates
(R-hat up to 1.63 in fits of one family at two sizes). So each family is
sampled as three coordinates (:class:`FamilyCoords`), the weakly identified
split last and on its own axis:

- ``level``, the log of the law's value at the centre,
  ``L = E + exp(a_c) + exp(b_c)``, with ``a_c = a - alpha x_f`` and
  ``b_c = b - beta y_f``;
- ``d_logit``, the logit of the token term's share of it,
  ``exp(b_c) = L sigmoid(d_logit)``;
- ``e_logit``, the logit of E's share of the rest, ``E + exp(a_c)``:
  ``E = L sigmoid(-d_logit) sigmoid(e_logit)``.

The map from the coordinates to ``(log E, a, b)`` has Jacobian 1, and from
there to ``(e_frac, a, b)`` it is ``e_frac (1 - e_frac)``; the prior is the
model's prior on ``(e_frac, a, b)`` carried over with it (:func:`to_law`):
the same joint law, other coordinates.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
from jax.scipy.special import betaln
from numpyro.distributions import constraints

COORDS = ("level", "d_logit", "e_logit")


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


def e_share_logs(log_e, theta):
    """``(log e_frac, log(1 - e_frac))``: E's share of the law at the reference sizes.

    ``theta`` (..., 2) holds ``(a, b)``. Formed from log-sum-exps, so a share
    near 0 or 1 keeps its logs (and the Beta density built on them) finite.
    """
    rest = jnp.logaddexp(theta[..., 0], theta[..., 1])
    total = jnp.logaddexp(log_e, rest)
    return log_e - total, rest - total


def log_e_of_share(e_frac, theta):
    """``log E`` of a family whose E takes share ``e_frac`` of its law at the reference sizes."""
    return jnp.log(e_frac) - jnp.log1p(-e_frac) + jnp.logaddexp(theta[..., 0], theta[..., 1])


def beta_log_odds(rng: np.random.Generator, c1, c0) -> np.ndarray:
    """Draws of ``log(p / (1 - p))`` for ``p ~ Beta(c1, c0)``, exact for small shapes.

    ``p = g1 / (g1 + g0)`` with ``g ~ Gamma(c)``, each drawn in logs as
    ``Gamma(c + 1) U^(1/c)``: a Beta draw itself rounds to exactly 1 (or a
    gamma draw to 0) when a shape is below ~1, which made ``log E`` infinite.
    """
    c1, c0 = np.broadcast_arrays(np.asarray(c1, float), np.asarray(c0, float))

    def log_gamma(c):
        return np.log(rng.standard_gamma(c + 1.0)) + np.log(rng.uniform(size=c.shape)) / c

    return log_gamma(c1) - log_gamma(c0)


def to_law(coords, centre, alpha, beta):
    """``(log_E, theta)`` of coordinates ``coords`` (F, 3); ``theta`` (F, 2) is ``(a, b)``."""
    level, d_logit, e_logit = coords[..., 0], coords[..., 1], coords[..., 2]
    log_rest = level + jax.nn.log_sigmoid(-d_logit)
    log_e = log_rest + jax.nn.log_sigmoid(e_logit)
    a = log_rest + jax.nn.log_sigmoid(-e_logit) + alpha * centre[..., 0]
    b = level + jax.nn.log_sigmoid(d_logit) + beta * centre[..., 1]
    return log_e, jnp.stack([a, b], axis=-1)


def from_law(e_frac, theta, centre, alpha, beta):
    """The coordinates (F, 3) of ``(e_frac, theta)``: the inverse of :func:`to_law`."""
    log_e = log_e_of_share(e_frac, theta)
    a_c = theta[..., 0] - alpha * centre[..., 0]
    b_c = theta[..., 1] - beta * centre[..., 1]
    log_rest = jnp.logaddexp(log_e, a_c)
    return jnp.stack([jnp.logaddexp(log_rest, b_c), b_c - log_rest, log_e - a_c], axis=-1)


class FamilyCoords(dist.Distribution):
    """Prior of every family's coordinates, (F, 3), from the prior of ``(e_frac, theta)``.

    Parameters
    ----------
    e_prior : numpyro.distributions.Beta
        Prior of ``e_frac``, E's share of the law at the reference sizes,
        batch shape (F,) or broadcastable.
    offsets : Distribution
        Joint prior of ``theta`` (F, 2), e.g. :class:`bayescale.pooling.PooledOffsets`.
    centre : (F, 2)
        :func:`family_centres`.
    alpha, beta : (F,)
        The family exponents.
    """

    arg_constraints = {}
    support = constraints.independent(constraints.real, 2)

    def __init__(self, e_prior, offsets, centre, alpha, beta, *, validate_args=None):
        self.e_prior, self.offsets = e_prior, offsets
        self.centre = jnp.asarray(centre)
        self.alpha, self.beta = jnp.asarray(alpha), jnp.asarray(beta)
        n = self.centre.shape[0]
        super().__init__(event_shape=(n, len(COORDS)), validate_args=validate_args)

    def sample(self, key, sample_shape=()):
        k_e, k_theta = jax.random.split(key)
        n = self.centre.shape[0]
        e_frac = self.e_prior.expand((n,)).sample(k_e, sample_shape)
        theta = self.offsets.sample(k_theta, sample_shape)
        return from_law(e_frac, theta, self.centre, self.alpha, self.beta)

    def log_prob(self, value):
        log_e, theta = to_law(value, self.centre, self.alpha, self.beta)
        log_frac, log1m_frac = e_share_logs(log_e, theta)
        # Beta(c1, c0) density of e_frac times the Jacobian e_frac (1 - e_frac)
        c1, c0 = self.e_prior.concentration1, self.e_prior.concentration0
        e_term = c1 * log_frac + c0 * log1m_frac - betaln(c1, c0)
        return self.offsets.log_prob(theta) + jnp.sum(e_term, axis=-1)
