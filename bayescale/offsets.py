"""Run offsets integrated out of the likelihood.

Given the law, the log losses of a family are Gaussian::

    y = mu + Z u + e,    u_r = phi_r . w + e_r,    w ~ Normal(0, I),
                         e_r ~ Normal(0, d_r),     e ~ OU(sigma_obs, ell) along each run

``u_r`` is run ``r``'s offset from its law: the size-level discrepancy
(whitened inducing values ``w``, :mod:`bayescale.discrepancy`) plus a part
independent per run, ``d_r`` = its seed variance plus the discrepancy the
inducing points do not carry. ``Z`` maps checkpoints to runs; the OU noise is
independent across runs. Everything but the law is Gaussian, so ``w`` and
``e_r`` are integrated out exactly: the sampler sees the law and a handful of
scales, never a per-run or per-size latent. This removes what kept chains from
mixing when offsets were sampled: the funnel between the discrepancy scale
and the offsets, and the trade-off between a run's offset and the slow level
of its OU noise.

With ``B_r`` a run's OU covariance, its whitened sums (``O(n)``, the inverse is
never formed) are ``q = r^T B^-1 r``, ``a = 1^T B^-1 1``, ``b = 1^T B^-1 r``.
Adding ``d_r 1 1^T`` (Sherman-Morrison) gives ``q - d b^2 / g``, ``a / g``,
``b / g`` and ``log g`` with ``g = 1 + d a``; then per family (Woodbury, ``M``
inducing points)::

    log p(y) = -(q' - v^T S^-1 v) / 2 - log|B| / 2 - sum(log g) / 2 - log|S| / 2 - n log(2 pi) / 2
    S = I + sum_r a'_r phi_r phi_r^T,   v = sum_r b'_r phi_r

Given a draw of the law, ``w`` and ``e`` are Gaussian too
(:func:`draw_offsets`): fits keep one draw of them per posterior draw, which
queries condition on.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.linalg import solve_triangular

from bayescale import discrepancy as gp
from bayescale.trajectory import MIN_INNOVATION_VARIANCE, ou_rho


def run_statistics(inputs, loc, sigma_obs, ell):
    """Whitened sums of each run under its OU noise, and half the OU log-determinant.

    Returns ``q`` (R,): squared norm of the whitened residuals ``y - loc``;
    ``a`` (R,): of the whitened ones; ``b`` (R,): their inner product; and
    ``log|B| / 2`` over observed checkpoints.
    """
    fam_obs = inputs.run_family[inputs.obs_run]
    s = jnp.asarray(sigma_obs)[fam_obs]
    rho = ou_rho(inputs.log_d, inputs.first, ell)
    c = jnp.sqrt(jnp.clip(1.0 - rho**2, MIN_INNOVATION_VARIANCE, 1.0))
    mask = jnp.asarray(inputs.obs_mask)
    z = (jnp.asarray(inputs.y) - loc) / s
    prev = jnp.concatenate([jnp.zeros(1), z[:-1]])
    w = mask * (z - rho * prev) / c
    # the scale is constant within a run, so the whitened ones are (1 - rho) / (s c)
    w1 = mask * (1.0 - rho) / (s * c)
    n_runs = inputs.log_n.shape[0]

    def per_run(v):
        return jax.ops.segment_sum(v, inputs.obs_run, num_segments=n_runs)

    return per_run(w**2), per_run(w1**2), per_run(w1 * w), jnp.sum(mask * jnp.log(s * c))


def run_log_likelihoods(inputs, loc, sigma_obs, ell, sigma_seed, scale, length, w):
    """Log density of each run's checkpoints given the law and the inducing values ``w``, (R,).

    The run's own part of its offset (seed, discrepancy leftover) is
    integrated out; runs are independent given ``w``. This is the
    leave-one-run-out likelihood that PSIS-LOO uses: checkpoints of one run
    are too correlated to be left out one at a time.
    """
    fam_obs = inputs.run_family[inputs.obs_run]
    s = jnp.asarray(sigma_obs)[fam_obs]
    rho = ou_rho(inputs.log_d, inputs.first, ell)
    c = jnp.sqrt(jnp.clip(1.0 - rho**2, MIN_INNOVATION_VARIANCE, 1.0))
    mask = jnp.asarray(inputs.obs_mask)
    n_runs = inputs.log_n.shape[0]
    q, a, b, _ = run_statistics(inputs, loc, sigma_obs, ell)
    half_logdet = jax.ops.segment_sum(mask * jnp.log(s * c), inputs.obs_run, num_segments=n_runs)
    n = jax.ops.segment_sum(mask, inputs.obs_run, num_segments=n_runs)
    u_pts, u_mask = jnp.asarray(inputs.inducing), jnp.asarray(inputs.inducing_mask)
    chol_k = gp.inducing_cholesky(u_pts, u_mask, scale, length)
    phi, leftover = gp.projections(
        jnp.asarray(inputs.run_x), inputs.run_family, u_pts, u_mask, chol_k, scale, length
    )
    m = jnp.sum(phi * jnp.asarray(w)[inputs.run_family], axis=-1)
    q, b = q - 2 * m * b + m**2 * a, b - m * a
    d = leftover + jnp.where(jnp.asarray(inputs.seeded), sigma_seed**2, 0.0) + 1e-10
    g = 1.0 + d * a
    quad = q - d * b**2 / g
    return -0.5 * quad - half_logdet - 0.5 * jnp.log(g) - 0.5 * n * math.log(2 * math.pi)


class GPBucket(NamedTuple):
    """Families whose inducing points fit in ``m`` slots, and their runs."""

    families: np.ndarray  # (B,) int
    runs: np.ndarray  # (R_b,) int: the runs of these families
    local: np.ndarray  # (R_b,) int: each run's family, as a position in ``families``
    m: int


def gp_buckets(run_family: np.ndarray, inducing_mask: np.ndarray) -> tuple[GPBucket, ...]:
    """Group families by their number of inducing points (padded to 4, 8, or the largest).

    Most families have a few sizes; one family on a 2-D grid should not make
    every other family pay for its 24 points.
    """
    counts = inducing_mask.sum(axis=1)
    top = inducing_mask.shape[1]
    slots = np.where(counts <= 4, min(4, top), np.where(counts <= 8, min(8, top), top))
    out = []
    for m in np.unique(slots):
        fams = np.flatnonzero(slots == m)
        runs = np.flatnonzero(np.isin(run_family, fams))
        local = np.searchsorted(fams, run_family[runs])
        out.append(GPBucket(fams.astype(np.int32), runs.astype(np.int32), local, int(m)))
    return tuple(out)


def _factors(inputs, loc, sigma_obs, ell, sigma_seed, scale, length):
    """Per-run and per-family pieces shared by the likelihood and the offsets' draw."""
    q, a, b, half_logdet = run_statistics(inputs, loc, sigma_obs, ell)
    seed_var = jnp.where(jnp.asarray(inputs.seeded), sigma_seed**2, 0.0)
    x = jnp.asarray(inputs.run_x)
    out = {"half_logdet": half_logdet, "q": q, "log_g": 0.0, "logdet_s": 0.0, "blocks": []}
    for bk in inputs.gp_buckets:
        pts = jnp.asarray(inputs.inducing[bk.families, : bk.m])
        pmask = jnp.asarray(inputs.inducing_mask[bk.families, : bk.m])
        chol_k = gp.inducing_cholesky(pts, pmask, scale, length)
        inv_k = solve_triangular(chol_k, jnp.broadcast_to(jnp.eye(bk.m), chol_k.shape), lower=True)
        kr = gp.kernel(x[bk.runs][:, None, :], pts[bk.local], scale, length)[:, 0, :]
        phi = jnp.einsum("rij,rj->ri", inv_k[bk.local], kr * pmask[bk.local])
        d = jnp.maximum(scale**2 - jnp.sum(phi**2, axis=-1), 0.0) + seed_var[bk.runs] + 1e-10
        ar, br = a[bk.runs], b[bk.runs]
        g = 1.0 + d * ar
        a1, b1 = ar / g, br / g
        n_fam = bk.families.size
        s = jnp.eye(bk.m) + jax.ops.segment_sum(
            a1[:, None, None] * phi[:, :, None] * phi[:, None, :], bk.local, num_segments=n_fam
        )
        v = jax.ops.segment_sum(b1[:, None] * phi, bk.local, num_segments=n_fam)
        chol_s = jnp.linalg.cholesky(s)
        t = solve_triangular(chol_s, v[..., None], lower=True)[..., 0]
        out["q"] = out["q"].at[bk.runs].add(-d * br * b1)
        out["log_g"] = out["log_g"] + jnp.sum(jnp.log(g))
        out["logdet_s"] = out["logdet_s"] + jnp.sum(
            jnp.log(jnp.diagonal(chol_s, axis1=-2, axis2=-1))
        )
        out["blocks"].append({"chol_s": chol_s, "t": t, "phi": phi, "d": d, "a": ar, "b": br})
    return out


def marginal_log_likelihood(inputs, loc, sigma_obs, ell, sigma_seed, scale, length):
    """Log density of ``inputs.y`` given the law at each checkpoint (``loc``), offsets
    integrated out."""
    p = _factors(inputs, loc, sigma_obs, ell, sigma_seed, scale, length)
    n_obs = jnp.sum(jnp.asarray(inputs.obs_mask))
    fit = sum(jnp.sum(blk["t"] ** 2) for blk in p["blocks"])
    return (
        -0.5 * (jnp.sum(p["q"]) - fit)
        - p["half_logdet"]
        - 0.5 * p["log_g"]
        - p["logdet_s"]
        - 0.5 * n_obs * math.log(2 * math.pi)
    )


def _padded_w(inputs, per_bucket):
    w = jnp.zeros(inputs.inducing.shape[:2])
    for bk, wb in zip(inputs.gp_buckets, per_bucket, strict=True):
        w = w.at[bk.families, : bk.m].set(wb)
    return w


def inducing_posterior(inputs, loc, sigma_obs, ell, sigma_seed, scale, length):
    """Mean (F, M) of the whitened inducing values ``w`` given the data, and the Cholesky
    factor ``R`` (F, M, M) of their precision ``S = R R^T`` (identity on padding)."""
    p = _factors(inputs, loc, sigma_obs, ell, sigma_seed, scale, length)
    f, m = inputs.inducing.shape[:2]
    chol = jnp.broadcast_to(jnp.eye(m), (f, m, m))
    means = []
    for bk, blk in zip(inputs.gp_buckets, p["blocks"], strict=True):
        chol_t = jnp.swapaxes(blk["chol_s"], -1, -2)
        means.append(solve_triangular(chol_t, blk["t"][..., None], lower=False)[..., 0])
        chol = chol.at[bk.families, : bk.m, : bk.m].set(blk["chol_s"])
    return _padded_w(inputs, means), chol


def draw_offsets(inputs, loc, sigma_obs, ell, sigma_seed, scale, length, key=None):
    """A draw (without ``key``: the mean) of ``w`` (F, M) and the run offsets ``u`` (R,).

    ``w | y`` is ``Normal(S^-1 v, S^-1)``; given ``w``, each run's own part
    ``e_r`` is ``Normal((b_r - a_r phi_r . w) / (a_r + 1 / d_r), 1 / (a_r + 1 / d_r))``.
    """
    p = _factors(inputs, loc, sigma_obs, ell, sigma_seed, scale, length)
    u = jnp.zeros(inputs.log_n.shape[0])
    ws = []
    keys = [None] * len(p["blocks"]) if key is None else jax.random.split(key, len(p["blocks"]))
    for bk, blk, k in zip(inputs.gp_buckets, p["blocks"], keys, strict=True):
        t = blk["t"]
        k_w, k_e = (None, None) if k is None else jax.random.split(k)
        if k_w is not None:
            t = t + jax.random.normal(k_w, t.shape)
        chol_t = jnp.swapaxes(blk["chol_s"], -1, -2)
        w = solve_triangular(chol_t, t[..., None], lower=False)[..., 0]
        low_rank = jnp.sum(blk["phi"] * w[bk.local], axis=-1)
        precision = blk["a"] + 1.0 / blk["d"]
        e = (blk["b"] - blk["a"] * low_rank) / precision
        if k_e is not None:
            e = e + jax.random.normal(k_e, e.shape) / jnp.sqrt(precision)
        u = u.at[bk.runs].set(low_rank + e)
        ws.append(w)
    return _padded_w(inputs, ws), u
