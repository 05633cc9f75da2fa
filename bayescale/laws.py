"""Pure ``jax.numpy`` functional forms of the scaling laws.

Every function here is side-effect free, broadcasts over its arguments and is
safe under ``jit``/``vmap``/``grad``. Sizes enter in raw counts (parameters,
tokens, FLOPs) or as centred logs where the name says so.

The centring constants make ``a`` and ``b`` the log reducible terms at a
reference model (1e9 parameters, 1e11 tokens), which decorrelates them from
the exponents during sampling.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

LOG_N_REF = float(jnp.log(1e9))
LOG_D_REF = float(jnp.log(1e11))


def center_log_params(params):
    """``log N - log 1e9``."""
    return jnp.log(params) - LOG_N_REF


def center_log_tokens(tokens):
    """``log D - log 1e11``."""
    return jnp.log(tokens) - LOG_D_REF


def chinchilla_centered(log_n_c, log_d_c, log_e, a, b, alpha, beta):
    """Chinchilla law on centred logs.

    ``L = exp(log_e) + exp(a - alpha * log_n_c) + exp(b - beta * log_d_c)``.

    Parameters
    ----------
    log_n_c, log_d_c : array
        ``log N - log 1e9`` and ``log D - log 1e11``.
    log_e : array
        Log of the irreducible loss ``E``.
    a, b : array
        Log reducible terms at the reference size (N = 1e9, D = 1e11).
    alpha, beta : array
        Exponents in N and D.
    """
    return jnp.exp(log_e) + jnp.exp(a - alpha * log_n_c) + jnp.exp(b - beta * log_d_c)


def log_chinchilla_centered(log_n_c, log_d_c, log_e, a, b, alpha, beta):
    """``log`` of :func:`chinchilla_centered`, computed stably with log-sum-exp."""
    terms = jnp.stack(jnp.broadcast_arrays(log_e, a - alpha * log_n_c, b - beta * log_d_c), axis=0)
    return jnp.logaddexp(jnp.logaddexp(terms[0], terms[1]), terms[2])


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


def published_to_centered(E, A, B, alpha, beta):
    """Convert published ``(E, A, B)`` to centred ``(log_e, a, b)``."""
    a = jnp.log(A) - alpha * LOG_N_REF
    b = jnp.log(B) - beta * LOG_D_REF
    return jnp.log(E), a, b


def centered_to_published(log_e, a, b, alpha, beta):
    """Inverse of :func:`published_to_centered`: returns ``(E, A, B)``."""
    return jnp.exp(log_e), jnp.exp(a + alpha * LOG_N_REF), jnp.exp(b + beta * LOG_D_REF)


def compute_optimal(flops, A, B, alpha, beta):
    """Compute-optimal ``(N*, D*)`` for ``C = 6 N D`` under the Chinchilla law.

    Minimising ``A N^-alpha + B D^-beta`` subject to ``6 N D = C`` gives
    ``N* = G (C/6)^(beta/(alpha+beta))`` and ``D* = (C/6) / N*`` with
    ``G = (alpha A / (beta B))^(1/(alpha+beta))``.
    """
    s = alpha + beta
    g = (alpha * A / (beta * B)) ** (1.0 / s)
    n_opt = g * (flops / 6.0) ** (beta / s)
    d_opt = (flops / 6.0) / n_opt
    return n_opt, d_opt


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


def overtrain_from_chinchilla(E, A, B, alpha):
    """Map Chinchilla coefficients with ``alpha = beta`` to ``(E, a, b, eta)``.

    With ``alpha = beta``: ``A N^-alpha = A (C/(6M))^(-alpha/2)`` so
    ``a = A 6^(alpha/2)``, ``b = B 6^(alpha/2)``, ``eta = alpha / 2``.
    """
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
