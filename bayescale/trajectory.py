"""The trajectory noise of loss curves as a NumPyro distribution.

Consecutive checkpoints of one run are strongly correlated: a run that sits
above its law at 100B tokens still sits above it at 120B. bayescale models the
deviation of a run's log loss from its curve as an Ornstein-Uhlenbeck process
in log-token time, correlation ``exp(-Δlog D / ell)`` between checkpoints,
with Student-t innovations (digitised curves have outliers).

:class:`OUTrajectory` holds any number of runs laid end to end in one vector
(``rho = 0`` starts a new run). With ``z_i = e_i / sigma_i`` the deviation in
units of its stationary sd, its density is written through the innovations
``w_i = z_i - rho_i z_{i-1}``: independent Student-t variables with scale
``sqrt(1 - rho_i^2)`` (the Jacobian is ``1 / sigma_i``). That is exact for
irregular spacing and vectorised (no scan). Sampling runs the recursion
``z_i = rho_i z_{i-1} + w_i`` with one associative scan.
The model conditions on it; predictions, simulations and experiment planning
draw from it, so all of them assume the same noise.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpyro.distributions as dist
from numpyro.distributions import constraints
from numpyro.distributions.util import promote_shapes

# floor of 1 - rho^2: near-duplicate checkpoints must not give a zero innovation scale
MIN_INNOVATION_VARIANCE = 1e-4


def ou_rho(log_tokens, first, length):
    """Correlation of each checkpoint with the previous one of its run.

    Parameters
    ----------
    log_tokens : array, shape (n,)
        Log tokens of the checkpoints, runs laid end to end, each sorted.
    first : array of bool, shape (n,)
        True at the first checkpoint of each run (correlation 0 there).
    length : float
        Correlation length ``ell`` in log tokens.
    """
    gap = jnp.diff(log_tokens, prepend=log_tokens[..., :1])
    # a run's first checkpoint follows the previous run's last, so its gap can be
    # large and negative: exp(-gap / length) overflows for a short length, and
    # where() passes 0 * inf = nan back into the gradient. Mask the gap, not the result.
    gap = jnp.where(first, 0.0, gap)
    return jnp.where(first, 0.0, jnp.exp(-gap / length))


def ou_paths(rho, innovations):
    """Run ``e_i = rho_i e_{i-1} + w_i`` along the last axis.

    ``rho`` is 0 at each run's first checkpoint, which restarts the path, so
    one associative scan handles all runs at once.
    """

    def combine(left, right):
        a1, b1 = left
        a2, b2 = right
        return a1 * a2, a2 * b1 + b2

    rho, innovations = jnp.broadcast_arrays(rho, innovations)
    _, e = jax.lax.associative_scan(combine, (rho, innovations), axis=-1)
    return e


class OUTrajectory(dist.Distribution):
    """Log losses of runs laid end to end: ``loc`` plus OU noise with Student-t innovations.

    Parameters
    ----------
    loc : array, shape (..., n)
        The curve each checkpoint is centred on (law plus run offsets).
    scale : array, shape (..., n)
        Stationary sd of the noise at each checkpoint.
    rho : array, shape (..., n)
        Correlation with the previous checkpoint (0 at the start of a run),
        e.g. :func:`ou_rho`.
    df : array
        Degrees of freedom of the Student-t innovations.
    """

    arg_constraints = {
        "loc": constraints.real_vector,
        "scale": constraints.independent(constraints.positive, 1),
        "rho": constraints.independent(constraints.interval(0.0, 1.0), 1),
        "df": constraints.positive,
    }
    support = constraints.real_vector
    pytree_data_fields = ("loc", "scale", "rho", "df")

    def __init__(self, loc, scale, rho, df, *, validate_args=None):
        loc, scale, rho = jnp.broadcast_arrays(loc, scale, rho)
        batch_shape = jax.lax.broadcast_shapes(jnp.shape(loc)[:-1], jnp.shape(df))
        event_shape = jnp.shape(loc)[-1:]
        self.loc, self.scale, self.rho = loc, scale, rho
        (self.df,) = promote_shapes(df, shape=batch_shape)
        super().__init__(batch_shape, event_shape, validate_args=validate_args)

    @property
    def innovation_scale(self):
        """Scale of each standardised innovation, ``sqrt(1 - rho^2)`` (floored)."""
        return jnp.sqrt(jnp.clip(1.0 - self.rho**2, MIN_INNOVATION_VARIANCE, 1.0))

    def innovations(self, value):
        """The whitened residuals ``z_i - rho_i z_{i-1}`` of ``z = (value - loc) / scale``."""
        z = (value - self.loc) / self.scale
        prev = jnp.concatenate([jnp.zeros_like(z[..., :1]), z[..., :-1]], axis=-1)
        return z - self.rho * prev

    def pointwise_log_prob(self, value):
        """Log density of each checkpoint given the previous one, shape (..., n)."""
        df = jnp.expand_dims(self.df, -1)
        w = self.innovations(value)
        return dist.StudentT(df, 0.0, self.innovation_scale).log_prob(w) - jnp.log(self.scale)

    def log_prob(self, value):
        return jnp.sum(self.pointwise_log_prob(value), axis=-1)

    def sample(self, key, sample_shape=()):
        shape = tuple(sample_shape) + self.batch_shape + self.event_shape
        df = jnp.expand_dims(self.df, -1)
        w = jax.random.t(key, df, shape=shape) * self.innovation_scale
        return self.loc + self.scale * ou_paths(self.rho, w)

    @property
    def mean(self):
        return jnp.broadcast_to(self.loc, self.batch_shape + self.event_shape)
