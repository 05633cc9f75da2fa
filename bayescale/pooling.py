"""Family offsets with their population mean integrated out, and that mean drawn after them.

The hierarchy ``mu ~ Normal(m0, s0^2 I)``, ``theta_f ~ Normal(mu + shift_f,
Sigma)`` is sampled in the order ``theta``, then ``mu``: first the family
offsets from their joint prior with ``mu`` integrated out (every pair of
families covaries by ``s0^2 I``, :class:`PooledOffsets`), then ``mu`` from its
exact conditional given them, non-centred (:func:`mean_given_offsets`).

The joint distribution is the same. What changes is the geometry: a family's
data pin its ``theta_f``, and in the centred order ``mu`` is then pinned to
``theta_f`` within ``Sigma``, a funnel whose neck is a small ``Sigma``, which
nothing but the prior keeps away from when there is one family or a few.
:func:`lone_exponent` does the same for the exponents of a one-family fit.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist
from numpyro.distributions import constraints


class PooledOffsets(dist.Distribution):
    """Joint prior of the family offsets, (F, K), with their common mean integrated out.

    Parameters
    ----------
    m0 : (K,)
        Prior mean of the common mean.
    shift : (F, K)
        Each family's shift from the common mean (its group's; zeros without groups).
    mean_sd : float
        Prior sd ``s0`` of the common mean, per coordinate.
    scale_tril : (K, K)
        Cholesky factor of ``Sigma``, the spread of families around the mean.

    Notes
    -----
    The density is ``p(theta | mu) p(mu) / p(mu | theta)`` at the conditional
    mean of ``mu``: 2 x 2 algebra only, as well conditioned in float32 as the
    centred form, where the (F K)-square covariance of the offsets is not.
    """

    arg_constraints = {}
    support = constraints.independent(constraints.real, 2)

    def __init__(self, m0, shift, mean_sd, scale_tril, *, validate_args=None):
        self.m0, self.shift = jnp.asarray(m0), jnp.asarray(shift)
        self.mean_sd, self.scale_tril = mean_sd, jnp.asarray(scale_tril)
        super().__init__(event_shape=self.shift.shape, validate_args=validate_args)

    @property
    def loc(self):
        """Each family's prior mean, ``m0 + shift_f``."""
        return self.m0 + self.shift

    def sample(self, key, sample_shape=()):
        k_mu, k_f = jax.random.split(key)
        shape = tuple(sample_shape)
        mu = self.m0 + self.mean_sd * jax.random.normal(k_mu, shape + (1,) + self.m0.shape)
        eps = jax.random.normal(k_f, shape + self.event_shape)
        return mu + self.shift + eps @ self.scale_tril.T

    def log_prob(self, value):
        mean, cov = _mean_conditional(value, self.shift, self.m0, self.mean_sd, self.scale_tril)
        k = self.m0.shape[-1]
        around = dist.MultivariateNormal(mean[..., None, :], scale_tril=self.scale_tril)
        prior = dist.Normal(self.m0, self.mean_sd).log_prob(mean).sum(-1)
        _, logdet = jnp.linalg.slogdet(cov)
        return (
            around.log_prob(value - self.shift).sum(-1)
            + prior
            + 0.5 * (k * jnp.log(2 * jnp.pi) + logdet)
        )


def _mean_conditional(theta, shift, m0, mean_sd, scale_tril):
    """Mean and covariance of the common mean given the offsets ``theta`` (..., F, K).

    With ``A = s0^2 I`` and ``B = Sigma / F`` the conditional is
    ``Normal(B (A + B)^-1 m0 + A (A + B)^-1 theta_bar, A (A + B)^-1 B)``,
    ``theta_bar`` the average of ``theta_f - shift_f``: only ``A + B``
    (at least ``s0^2 I``) is inverted, so a small ``Sigma`` is harmless.
    """
    n, k = theta.shape[-2:]
    b = scale_tril @ scale_tril.T / n
    a = mean_sd**2 * jnp.eye(k)
    m = jnp.linalg.inv(a + b)
    theta_bar = jnp.mean(theta - shift, axis=-2)
    mean = m0 @ (b @ m).T + theta_bar @ (a @ m).T
    cov = a @ m @ b
    return mean, 0.5 * (cov + cov.T)


def mean_given_offsets(theta, shift, m0, mean_sd, scale_tril, z):
    """The common mean from its conditional given the offsets, non-centred by ``z`` (K,)."""
    mean, cov = _mean_conditional(theta, shift, m0, mean_sd, scale_tril)
    return mean + jnp.linalg.cholesky(cov + 1e-12 * jnp.eye(cov.shape[-1])) @ z


def lone_exponent(name: str, tau, population: dist.LogNormal):
    """Shared and family exponent of a one-family fit whose data pin the family's.

    ``log x_f ~ Normal(log x, tau)`` under ``log x ~ Normal(m, s)``
    (``population`` is ``x``'s LogNormal prior): with one family its data pin
    ``x_f``, while ``x`` and ``tau`` are free, a funnel (24 divergences in a
    default fit of Chinchilla's points, 6 in this form). The same joint law is
    drawn as the marginal ``log x_f ~ Normal(m, sqrt(s^2 + tau^2))`` (site
    ``z_<name>``, the family's value, as for centred families) and then
    ``log x`` from its conditional given it (standardised, site ``w_<name>``),
    as the offsets' common mean is drawn (:func:`mean_given_offsets`).
    Returns ``x`` (deterministic site ``name``) and ``x_f`` (shape (1,)).
    """
    m, s = population.loc, population.scale
    with numpyro.plate("family", 1):
        log_f = numpyro.sample(f"z_{name}", dist.Normal(m, jnp.sqrt(s**2 + tau**2)))
    w = numpyro.sample(f"w_{name}", dist.Normal(0.0, 1.0))
    # one family, one coordinate: (F, K) = (1, 1) offsets around no shift
    log_x = mean_given_offsets(
        log_f[:, None], 0.0, jnp.atleast_1d(m), s, jnp.reshape(tau, (1, 1)), w[None]
    )
    return numpyro.deterministic(name, jnp.exp(log_x[0])), jnp.exp(log_f)
