"""Pure ``jax.numpy`` functional forms of the scaling laws.

Every function here is side-effect free, broadcasts over its arguments and is
safe under ``jit``/``vmap``/``grad``.

A family's law lives in one container, :class:`LawParams`, and is evaluated by
one function, :func:`log_loss`; every other module (the model, predictions,
experiment design, evaluation, reports) goes through them. The coefficients
``a`` and ``b`` are the log reducible terms at a reference model of
``N_REF = 1e9`` parameters and ``D_REF = 1e11`` tokens, and ``log_scale`` is
the log of the family's loss constant (the model fits ``loss / scale``), so
that ``exp(log_loss)`` is in nats.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

N_REF = 1e9
D_REF = 1e11
LOG_N_REF = math.log(N_REF)
LOG_D_REF = math.log(D_REF)


class LawParams(NamedTuple):
    """Coefficients of the Chinchilla law ``L = s (E + A/N^alpha + B/D^beta)``.

    Fields broadcast against each other: scalars for one law, arrays of draws
    or families for many.

    Attributes
    ----------
    log_E : array
        Log of the irreducible loss on the relative scale.
    a, b : array
        Log reducible terms at ``N_REF`` parameters and ``D_REF`` tokens
        (relative scale): ``a = log A - alpha log N_REF``.
    alpha, beta : array
        Exponents in parameters and tokens.
    log_scale : array
        Log of the loss constant the relative scale is divided by (0: nats).
    """

    log_E: jax.Array
    a: jax.Array
    b: jax.Array
    alpha: jax.Array
    beta: jax.Array
    log_scale: jax.Array = 0.0

    def map(self, fn) -> LawParams:
        """Apply ``fn`` (e.g. indexing draws) to every array field; scalars stay as they are."""
        return LawParams(*(fn(v) if jnp.ndim(v) else v for v in self))


def log_loss(p: LawParams, log_params, log_tokens):
    """Log of the law in nats at ``log N`` and ``log D`` (natural logs of raw counts).

    Computed with log-sum-exp, stable for every coefficient value.
    """
    n_term = p.a - p.alpha * (log_params - LOG_N_REF)
    d_term = p.b - p.beta * (log_tokens - LOG_D_REF)
    log_e, n_term, d_term = jnp.broadcast_arrays(p.log_E, n_term, d_term)
    return p.log_scale + jnp.logaddexp(jnp.logaddexp(log_e, n_term), d_term)


def loss(p: LawParams, params, tokens):
    """The law in nats at raw parameter and token counts."""
    return jnp.exp(log_loss(p, jnp.log(params), jnp.log(tokens)))


def chinchilla(params, tokens, E, A, B, alpha, beta):
    """Chinchilla law in the published form ``E + A / N**alpha + B / D**beta``.

    Parameters
    ----------
    params, tokens : array
        Raw parameter and token counts.
    E, A, B, alpha, beta : array
        Published coefficients (e.g. Hoffmann et al.: E=1.69, A=406.4,
        B=410.7, alpha=0.34, beta=0.28).
    """
    return E + A * params ** (-alpha) + B * tokens ** (-beta)


def from_published(E, A, B, alpha, beta) -> LawParams:
    """:class:`LawParams` (nats, ``log_scale = 0``) of ``E + A/N^alpha + B/D^beta``."""
    return from_log_published(jnp.log(E), jnp.log(A), jnp.log(B), alpha, beta)


def from_log_published(log_E, log_A, log_B, alpha, beta) -> LawParams:
    """:class:`LawParams` from ``(log E, log A, log B, alpha, beta)`` (nats)."""
    a = log_A - alpha * LOG_N_REF
    b = log_B - beta * LOG_D_REF
    return LawParams(jnp.asarray(log_E), a, b, jnp.asarray(alpha), jnp.asarray(beta), 0.0)


def to_published(p: LawParams):
    """``(E, A, B, alpha, beta)`` of a law, in nats."""
    E = jnp.exp(p.log_scale + p.log_E)
    A = jnp.exp(p.log_scale + p.a + p.alpha * LOG_N_REF)
    B = jnp.exp(p.log_scale + p.b + p.beta * LOG_D_REF)
    return E, A, B, p.alpha, p.beta


def compute_optimal(flops, p: LawParams):
    """Compute-optimal ``(N*, D*)`` for ``C = 6 N D`` under the law ``p``.

    Minimising ``A N^-alpha + B D^-beta`` subject to ``6 N D = C`` gives
    ``N* = G (C/6)^(beta/(alpha+beta))`` and ``D* = (C/6) / N*`` with
    ``G = (alpha A / (beta B))^(1/(alpha+beta))``, computed in logs.
    """
    s = p.alpha + p.beta
    log_a = p.a + p.alpha * LOG_N_REF
    log_b = p.b + p.beta * LOG_D_REF
    log_g = (jnp.log(p.alpha) + log_a - jnp.log(p.beta) - log_b) / s
    log_c6 = jnp.log(flops / 6.0)
    log_n = log_g + (p.beta / s) * log_c6
    return jnp.exp(log_n), jnp.exp(log_c6 - log_n)


def overtrain(flops, tok_per_param, E, a, b, eta):
    """Over-training law of Gadre et al. in ``(C, M)`` coordinates.

    ``L(C, M) = E + (a * M**eta + b * M**-eta) * C**-eta``, the Chinchilla law
    with ``alpha = beta = 2 * eta`` rewritten with ``N = sqrt(C / (6 M))`` and
    ``D = sqrt(C M / 6)``.

    Parameters
    ----------
    flops : array
        Training compute ``C = 6 N D``.
    tok_per_param : array
        Token multiplier ``M = D / N``.
    E, a, b, eta : array
        Irreducible loss, the two scale coefficients and the compute exponent.
    """
    return E + (a * tok_per_param**eta + b * tok_per_param ** (-eta)) * flops ** (-eta)


def to_overtrain(p: LawParams):
    """``(E, a, b, eta)`` of the ``(C, M)`` form of a law with ``alpha = beta``.

    With ``alpha = beta``: ``A N^-alpha = A (C/(6M))^(-alpha/2)`` so
    ``a = A 6^(alpha/2)``, ``b = B 6^(alpha/2)``, ``eta = alpha / 2``.
    """
    E, A, B, alpha, _ = to_published(p)
    eta = alpha / 2.0
    return E, A * 6.0**eta, B * 6.0**eta, eta


def optimal_tok_per_param(a, b, eta):
    """Loss-optimal token multiplier ``M* = (b / a)^(1 / (2 eta))`` of the (C, M) law."""
    return (b / a) ** (1.0 / (2.0 * eta))


def downstream_error(loss, eps, k, gamma):
    """Gadre et al. loss-to-error law ``Err(L) = eps - k * exp(-gamma * L)``.

    Parameters
    ----------
    loss : array
        Validation loss in nats.
    eps : array
        Error ceiling (chance-level error as loss grows).
    k, gamma : array
        Scale and rate; ``Err -> eps - k`` as ``L -> 0``.
    """
    return eps - k * jnp.exp(-gamma * loss)


def downstream_error_saturating(loss, eps, k, gamma, floor=0.0):
    """Gadre's downstream law made to saturate between a floor and the ceiling.

    ``Err(L) = floor + (eps - floor) * sigmoid(gamma * L - log(k / (eps - floor)))``.

    Near the ceiling (``k exp(-gamma L)`` small against ``eps - floor``) it
    equals :func:`downstream_error` to first order; with ``floor = 0`` the
    difference is ``(k exp(-gamma L))**2 / (eps + k exp(-gamma L))``. Far below
    the data it levels off at ``floor`` instead of crossing zero, so ``Err``
    stays in ``(floor, eps)`` for every loss. With ``floor = 0`` it is the
    logistic ``eps / (1 + (k / eps) exp(-gamma L))``.

    Parameters
    ----------
    loss : array
        Validation loss in nats.
    eps : array
        Error ceiling, in (0, 1).
    k, gamma : array
        Positive scale and rate, as in :func:`downstream_error`.
    floor : array
        Error the task levels off at (label noise, a format plateau); ``< eps``.
    """
    return floor + (eps - floor) * jax.nn.sigmoid(gamma * loss - jnp.log(k / (eps - floor)))
