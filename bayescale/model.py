"""NumPyro model functions for hierarchical scaling laws (no I/O, arrays only).

For checkpoint ``i`` of run ``r`` (``N_r`` parameters) in family ``f``::

    log(L_i / c_f) = log mu_f(N_r, D_i) + delta_f(x_r) + s_r + eps_i
    mu_f(N, D)     = E_f + exp(a_f - alpha_f log(N / 1e9)) + exp(b_f - beta_f log(D / 1e11))

* ``c_f`` is a fixed per-family loss constant (the median observed loss), so
  that families measured on different scales pool.
* **The law.** Exponents ``alpha_f, beta_f`` are pooled around shared ones
  (``exponents="pooled"``) or shared. The coefficients ``(a_f, b_f)`` are
  multivariate normal around population means with an LKJ correlation, in the
  shared coordinates (1e9 parameters, 1e11 tokens); they are *sampled* at the
  family's own centre (geometric-mean size and tokens of its data), where the
  data pin them, and mapped to the shared coordinates linearly. At the centre
  the law is written as its value, the irreducible fraction ``E_f / L_c``
  (logit-normal, pooled across families) and the split of the rest between the size
  and token terms.
* **Three kinds of scatter, each its own term.**

  - *size-level discrepancy* ``delta_f(x_r)``: how the family's sizes depart
    from its power law, a Gaussian process in ``x = (log N, log D_final)``
    with scale and lengths pooled across families
    (:mod:`bayescale.discrepancy`). Near fitted sizes it is pinned; far from
    them it widens to its prior scale.
  - *seed effect* ``s_r ~ Normal(0, sigma_seed)``: independent per run, so
    ``sigma_seed`` is the population seed spread. Runs that share family and
    size (replicates) identify it; without replicates its prior carries it.
    In a family of final losses only (every run a single checkpoint) a seed
    effect cannot be told from that checkpoint's noise, and ``sigma_obs``
    alone is the family's run-to-run scatter (two scales on one quantity
    would leave a ridge); such runs have no seed term.
  - *trajectory noise* ``eps``: an Ornstein-Uhlenbeck process in log-token
    time with Gaussian innovations (:class:`~bayescale.trajectory.OUTrajectory`).

  Given the law, the run offsets ``u_r = delta_f(x_r) + s_r`` are Gaussian
  and the noise is Gaussian, so the offsets are integrated out of the
  likelihood exactly (:mod:`bayescale.offsets`); fits keep one draw of them
  per posterior draw, from their Gaussian conditional, for queries. Outliers
  in digitised curves raise their family's ``sigma_obs`` (Gaussian
  innovations are what make the integral exact).

* **Parameterisation for sampling.** The law of a family is sampled where its
  data pin it: at the family's centre, as its value there, the irreducible
  fraction and the split of the rest between the size and token terms
  (an L-shaped ridge in ``(a, b)`` becomes a rectangle). A family with fewer
  than three distinct sizes (one run, two sizes) cannot pin its exponents:
  they are sampled non-centred (``z`` with the population spread outside),
  the others centred. What remains to sample is the law and a handful of
  scales; no per-run latent.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from jax.scipy.linalg import solve_triangular

from bayescale import discrepancy as gp
from bayescale.laws import LOG_D_REF, LOG_N_REF, LawParams, log_loss
from bayescale.offsets import (
    draw_offsets,
    gp_buckets,
    inducing_posterior,
    marginal_log_likelihood,
    run_log_likelihoods,
)
from bayescale.options import EXPONENT_FORMS, LAWS, check_choice
from bayescale.trajectory import OUTrajectory, ou_rho

COEFS = ("a", "b")
#: Families with fewer distinct sizes than this sample their exponents non-centred.
CENTRED_MIN_SIZES = 3


@dataclass(frozen=True)
class Priors:
    """Weakly-informative priors, on the relative (loss / family constant) scale.

    Attributes
    ----------
    exponent_median, exponent_log_sd : float
        ``alpha, beta ~ LogNormal(log 0.3, 0.5)``: 90% mass in 0.13-0.68,
        covering the 0.28-0.37 the literature reports with room to disagree.
    exponent_spread : float
        Prior mean of ``tau_alpha``, ``tau_beta``, the log-scale spread of
        family exponents around the shared ones (``exponents="pooled"``):
        ``tau ~ Gamma(2, 2 / 0.15)``, 90% in 0.03-0.36. Published per-family
        fits differ by tens of percent; the Gamma(2) shape has zero density
        at 0 (a boundary-avoiding prior).
    e_logit_loc, e_logit_scale, e_spread : float
        ``E_f`` is a fraction ``p_f`` of the family's loss at its centre,
        ``logit p_f = m + s z_f`` with ``m ~ Normal(0.4, 1)`` (a fraction of
        0.6: for language-model cross-entropy the irreducible part is most of
        the loss), ``s ~ Gamma(2, 2 / 0.5)`` and ``z_f ~ Normal(0, 1)``,
        sampled non-centred: the data pin a family's fraction only loosely, and
        a centred hierarchy put a funnel between ``p_f`` and its spread. The
        logit's normal tail keeps ``E -> 0`` unlikely without a hard edge.
    ab_loc, ab_scale : float
        Population means of ``a_f``, ``b_f``: log reducible terms at 1e9
        params / 1e11 tokens, a few to tens of percent of the loss; wide.
    offset_sd : tuple of float
        Prior means of the family spread of ``(a, b)``, each ``Gamma(2, 2 /
        0.6)`` (boundary-avoiding, as for ``tau``).
    lkj_concentration : float
        LKJ prior on the correlation of the family offsets ``(a, b)``; 2
        mildly favours weak correlation but lets the data show one.
    seed_sd : float
        ``sigma_seed ~ HalfNormal(0.03)`` on log loss: published seed scatter
        is up to ~3.5-4% of loss, which this keeps plausible without forcing.
    discrepancy_sd : float
        Scale of the size-level discrepancy, ``HalfNormal(0.03)`` on log loss:
        published families depart from a single power law by a few percent
        over their sizes; this is also how far a prediction far beyond the
        fitted sizes may sit from the law (1 sd).
    discrepancy_length_loc, discrepancy_length_sd : float
        Correlation lengths in ``log N`` and ``log D``,
        ``LogNormal(log 1.5, 0.5)`` each: sizes 4.5x apart are correlated
        0.6, sizes 20x apart 0.1.
    noise_log_loc, noise_log_scale : float
        Per-family trajectory noise scale ``sigma_f ~ LogNormal(log 0.01,
        1.5)``, independent across families: measurement quality differs by
        orders of magnitude (digitised curves vs. 174M-token eval sets).
    ell_loc, ell_scale : float
        OU correlation length in log tokens, ``LogNormal(log 1, 0.6)``: real
        curves stay on one side of their law for about a factor ``e`` of
        tokens.
    """

    exponent_median: float = 0.3
    exponent_log_sd: float = 0.5
    exponent_spread: float = 0.15
    e_logit_loc: float = 0.4
    e_logit_scale: float = 1.0
    e_spread: float = 0.5
    ab_loc: float = math.log(0.2)
    ab_scale: float = 1.5
    offset_sd: tuple = (0.6, 0.6)
    lkj_concentration: float = 2.0
    seed_sd: float = 0.03
    discrepancy_sd: float = 0.03
    discrepancy_length_loc: float = math.log(1.5)
    discrepancy_length_sd: float = 0.5
    noise_log_loc: float = math.log(0.01)
    noise_log_scale: float = 1.5
    ell_loc: float = 0.0
    ell_scale: float = 0.6

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> Priors:
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


class ModelInputs(NamedTuple):
    """Arrays the model function consumes (all jnp-compatible).

    Checkpoints are laid out run after run, each run sorted by tokens.
    """

    run_family: np.ndarray  # (R,) int
    log_n: np.ndarray  # (R,) log N (raw count)
    run_x: np.ndarray  # (R, 2) discrepancy coordinates: log N, log D_final (0 if unused)
    seeded: np.ndarray  # (R,) bool: the run's offset includes a seed effect
    obs_run: np.ndarray  # (n,) int
    log_d: np.ndarray  # (n,) log D (raw count)
    first: np.ndarray  # (n,) bool: first kept checkpoint of its run
    y: np.ndarray  # (n,) log(loss / family_scale)
    obs_mask: np.ndarray  # (n,) float: 1 observed, 0 padding
    n_families: int
    center: np.ndarray  # (F, 2) mean log N of runs, mean log D of checkpoints
    noncentred: np.ndarray  # (F,) bool: weakly identified family
    final_only: np.ndarray  # (F,) bool: every run of the family has a single checkpoint
    inducing: np.ndarray  # (F, M, 2) discrepancy inducing points
    inducing_mask: np.ndarray  # (F, M) bool
    gp_buckets: tuple  # of offsets.GPBucket: families grouped by inducing-point count


# -- the parameters of one draw -------------------------------------------------------------
def family_law(sites: dict) -> LawParams:
    """Per-family laws (relative scale) from a dict of the model's sites."""
    return LawParams(sites["log_E"], sites["a"], sites["b"], sites["alpha_f"], sites["beta_f"])


def trajectory(inputs: ModelInputs, law: LawParams, run_offset, sigma_obs, ell):
    """The distribution of ``inputs.y`` given the run offsets: the law plus OU noise.

    The model integrates the offsets out; simulations, pointwise
    log-likelihoods and predictions of new runs use this conditional form,
    so all of them assume the same noise.
    """
    loc = law_mean(inputs, law) + jnp.asarray(run_offset)[inputs.obs_run]
    rho = ou_rho(inputs.log_d, inputs.first, ell)
    scale = jnp.asarray(sigma_obs)[inputs.run_family[inputs.obs_run]]
    return OUTrajectory(loc, scale, rho, mask=inputs.obs_mask)


def _family_block(inputs: ModelInputs, exponents: str, law: str, p: Priors):
    """Population and family-level sites of the law; returns per-family laws and noise."""
    n_families = inputs.n_families
    nc = jnp.asarray(inputs.noncentred)
    alpha = numpyro.sample("alpha", dist.LogNormal(math.log(p.exponent_median), p.exponent_log_sd))
    if law == "overtrain":
        # Gadre et al.'s (C, M) form: one exponent for N and D
        beta = numpyro.deterministic("beta", alpha)
    else:
        beta = numpyro.sample(
            "beta", dist.LogNormal(math.log(p.exponent_median), p.exponent_log_sd)
        )
    e_loc = numpyro.sample("e_loc", dist.Normal(p.e_logit_loc, p.e_logit_scale))
    e_spread = numpyro.sample("e_spread", dist.Gamma(2.0, 2.0 / p.e_spread))
    loc = jnp.array([p.ab_loc, p.ab_loc])
    mu_theta = numpyro.sample("mu_theta", dist.Normal(loc, p.ab_scale).to_event(1))
    sigma_theta = numpyro.sample(
        "sigma_theta", dist.Gamma(2.0, 2.0 / jnp.array(p.offset_sd)).to_event(1)
    )
    l_omega = numpyro.sample("L_omega", dist.LKJCholesky(2, p.lkj_concentration))
    if exponents == "pooled":
        tau_alpha = numpyro.sample("tau_alpha", dist.Gamma(2.0, 2.0 / p.exponent_spread))
        tau_beta = (
            tau_alpha
            if law == "overtrain"
            else numpyro.sample("tau_beta", dist.Gamma(2.0, 2.0 / p.exponent_spread))
        )
    with numpyro.plate("family", n_families):
        if exponents == "pooled":
            alpha_f = _pooled("alpha_f", jnp.log(alpha), tau_alpha, nc)
            if law == "overtrain":
                beta_f = numpyro.deterministic("beta_f", alpha_f)
            else:
                beta_f = _pooled("beta_f", jnp.log(beta), tau_beta, nc)
        else:
            alpha_f = numpyro.deterministic("alpha_f", jnp.broadcast_to(alpha, (n_families,)))
            beta_f = numpyro.deterministic("beta_f", jnp.broadcast_to(beta, (n_families,)))
        # The law at the family's centre (its geometric-mean size and tokens):
        # its value L_c, the irreducible fraction p_E = E / L_c, and the split q of
        # the rest between the size and token terms. The data pin log L_c, the prior
        # (or the data) the fractions: no L-shaped ridge between the two reducible
        # terms when D grows with N, or between E and the size term of one run.
        e_z = numpyro.sample("e_z", dist.Normal(0.0, 1.0))
        e_logit = e_loc + e_spread * e_z
        numpyro.deterministic("e_frac", jax.nn.sigmoid(e_logit))
        # logs of p_E and 1 - p_E without rounding p_E to 0 or 1 (float32)
        log1m_e = jax.nn.log_sigmoid(-e_logit)
        # (a, b) in the shared coordinates = (a, b) at the family's centre + this shift
        center = jnp.asarray(inputs.center)
        shift = jnp.stack(
            [alpha_f * (center[:, 0] - LOG_N_REF), beta_f * (center[:, 1] - LOG_D_REF)], axis=-1
        )
        tril = sigma_theta[:, None] * l_omega
        # the population prior of (a, b), written in the coordinates the data pin
        law_c = numpyro.sample(
            "law_centre",
            dist.TransformedDistribution(
                dist.MultivariateNormal(mu_theta - shift, scale_tril=tril),
                CentreTransform(log1m_e),
            ),
            infer={"event_dims": ["centre"]},
        )
        log_lc = law_c[..., 0]
        theta_c = CentreTransform(log1m_e).inv(law_c)
        sigma_f = numpyro.sample("sigma_obs", dist.LogNormal(p.noise_log_loc, p.noise_log_scale))
    theta = numpyro.deterministic("theta", theta_c + shift)
    log_e = numpyro.deterministic("log_E", log_lc + jax.nn.log_sigmoid(e_logit))
    numpyro.deterministic("a", theta[:, 0])
    numpyro.deterministic("b", theta[:, 1])
    return LawParams(log_e, theta[:, 0], theta[:, 1], alpha_f, beta_f), sigma_f


class CentreTransform(dist.transforms.Transform):
    """``(a_c, b_c) -> (log L_c, split)``: the law at a family's centre in the coordinates its
    data pin.

    ``L_c = (exp(a_c) + exp(b_c)) / (1 - p_E)`` is the law's value at the centre
    (``p_E = E / L_c``, given) and ``split = a_c - b_c`` shares the reducible part
    between the size and token terms. The map is a bijection of the plane with
    unit Jacobian, so a density on ``(a_c, b_c)`` is the same density on the new
    coordinates.
    """

    domain = dist.constraints.real_vector
    codomain = dist.constraints.real_vector

    def __init__(self, log1m_e_frac):
        self.log1m_e_frac = log1m_e_frac

    def __call__(self, x):
        a, b = x[..., 0], x[..., 1]
        return jnp.stack([jnp.logaddexp(a, b) - self.log1m_e_frac, a - b], axis=-1)

    def _inverse(self, y):
        log_rest = y[..., 0] + self.log1m_e_frac
        split = y[..., 1]
        return jnp.stack(
            [log_rest + jax.nn.log_sigmoid(split), log_rest + jax.nn.log_sigmoid(-split)], -1
        )

    def log_abs_det_jacobian(self, x, y, intermediates=None):
        return jnp.zeros(jnp.shape(x)[:-1])

    def tree_flatten(self):
        return (self.log1m_e_frac,), (("log1m_e_frac",), {})

    def __eq__(self, other):
        return isinstance(other, CentreTransform) and self.log1m_e_frac is other.log1m_e_frac


def _pooled(name: str, log_mean, tau, noncentred):
    """A family exponent ``exp(log_mean + tau z)``: centred, or non-centred where asked."""
    raw = numpyro.sample(
        f"{name}_raw",
        dist.Normal(jnp.where(noncentred, 0.0, log_mean), jnp.where(noncentred, 1.0, tau)),
    )
    return numpyro.deterministic(name, jnp.exp(jnp.where(noncentred, log_mean + tau * raw, raw)))


def discrepancy_conditional(inputs: ModelInputs, f: int, sites: dict, xq):
    """Mean (Q,) and covariance (Q, Q) of family ``f``'s discrepancy at ``xq`` (Q, 2).

    Given one draw's ``sites``: the Gaussian process conditioned on the
    family's whitened inducing values ``z_gp``. This is the one place a
    query's discrepancy (and its uncertainty) is computed.
    """
    return gp.conditional(
        xq, inputs.inducing[f], inputs.inducing_mask[f], sites["z_gp"][f],
        sites["gp_scale"], sites["gp_length"],
    )  # fmt: skip


def discrepancy_given_data(inputs: ModelInputs, f: int, sites: dict, xq):
    """Mean (Q,) and covariance (Q, Q) of family ``f``'s discrepancy at ``xq`` given the data.

    Given the law (``sites``) but not the inducing values: they are
    integrated out with their Gaussian conditional (:mod:`bayescale.offsets`).
    """
    mean_w, chol_s = inducing_given_data(inputs, sites)
    scale, length = sites["gp_scale"], sites["gp_length"]
    u, mask = jnp.asarray(inputs.inducing[f]), jnp.asarray(inputs.inducing_mask[f])
    chol_k = gp.inducing_cholesky(u[None], mask[None], scale, length)[0]
    phi = solve_triangular(chol_k, gp.kernel(u, xq, scale, length) * mask[:, None], lower=True)
    a = solve_triangular(chol_s[f], phi, lower=True)  # S^-1 = R^-T R^-1
    cov = gp.kernel(xq, xq, scale, length) - phi.T @ phi + a.T @ a
    return phi.T @ mean_w[f], cov


def scaling_model(
    inputs: ModelInputs,
    *,
    exponents: str = "pooled",
    law: str = "chinchilla",
    priors: Priors = Priors(),  # noqa: B008 - frozen, immutable default
    observe: bool = True,
):
    """Hierarchical scaling-law model (plates ``family``; the data as one factor ``y``).

    The run offsets are integrated out (:mod:`bayescale.offsets`); the
    likelihood of the whole vector of log relative losses is the factor ``y``.
    """
    check_choice("exponents", exponents, EXPONENT_FORMS)
    check_choice("law", law, LAWS)
    p = priors
    fam_law, sigma_f = _family_block(inputs, exponents, law, p)
    sigma_seed = numpyro.sample("sigma_seed", dist.HalfNormal(p.seed_sd))
    gp_scale = numpyro.sample("gp_scale", dist.HalfNormal(p.discrepancy_sd))
    gp_length = numpyro.sample(
        "gp_length",
        dist.LogNormal(p.discrepancy_length_loc, p.discrepancy_length_sd).expand([2]).to_event(1),
    )
    ell = numpyro.sample("ell", dist.LogNormal(p.ell_loc, p.ell_scale))
    if not observe:
        return
    loc = law_mean(inputs, fam_law)
    numpyro.factor(
        "y",
        marginal_log_likelihood(inputs, loc, sigma_f, ell, sigma_seed, gp_scale, gp_length),
    )


def law_mean(inputs: ModelInputs, law: LawParams):
    """The law's log relative loss at every checkpoint, (n,)."""
    fam_obs = inputs.run_family[inputs.obs_run]
    per_obs = law.map(lambda v: jnp.asarray(v)[fam_obs])
    return log_loss(per_obs, inputs.log_n[inputs.obs_run], inputs.log_d)


def _offset_args(inputs: ModelInputs, sites: dict):
    return (
        inputs, law_mean(inputs, family_law(sites)), sites["sigma_obs"], sites["ell"],
        sites["sigma_seed"], sites["gp_scale"], sites["gp_length"],
    )  # fmt: skip


def inducing_given_data(inputs: ModelInputs, sites: dict):
    """Mean (F, M) of the whitened inducing values given the data and a draw of the law, and
    the Cholesky factor ``R`` (F, M, M) of their precision."""
    return inducing_posterior(*_offset_args(inputs, sites))


def run_offsets(inputs: ModelInputs, sites: dict, key=None):
    """A draw (the mean, without ``key``) of the whitened inducing values (F, M) and the run
    offsets (R,), given the data and a draw of the rest."""
    return draw_offsets(*_offset_args(inputs, sites), key)


def run_log_likelihood(inputs: ModelInputs, sites: dict):
    """Log-likelihood of each run given one draw and its inducing values ``z_gp``, (R,)."""
    return run_log_likelihoods(*_offset_args(inputs, sites), sites["z_gp"])


def log_likelihood(inputs: ModelInputs, sites: dict):
    """Pointwise log-likelihood (given the run offsets and the previous checkpoint), (n,)."""
    traj = trajectory(inputs, family_law(sites), sites["u"], sites["sigma_obs"], sites["ell"])
    return traj.pointwise_log_prob(jnp.asarray(inputs.y))


def spread_scales(values: dict, n_families: int) -> dict:
    """Group scales of the hierarchy set from the spread of the family values.

    The joint density of a centred hierarchy grows without bound as a group
    scale shrinks to zero with every member at the mean, so a MAP pinches
    ``tau`` and ``sigma_theta`` towards 0: a funnel's neck, where NUTS gets
    stuck, and a Laplace approximation collapses. Returns constrained values
    of the scales that describe the families' actual spread.
    """
    out = {}
    theta = np.stack([np.asarray(values["a"]), np.asarray(values["b"])], axis=-1)
    out["sigma_theta"] = np.maximum(theta.std(axis=0) if n_families > 1 else np.full(2, 0.3), 0.1)
    for tau, site in (("tau_alpha", "alpha_f"), ("tau_beta", "beta_f")):
        spread = float(np.log(np.asarray(values[site])).std()) if n_families > 1 else 0.1
        out[tau] = max(spread, 0.05)
    return out


def design_inputs(
    *, run_family, run_params, run_final_tokens, obs_run, tokens, first, y, n_families
) -> ModelInputs:
    """Build :class:`ModelInputs` from the arrays of a data set (centres, inducing points)."""
    run_family = np.asarray(run_family, dtype=np.int32)
    log_n = np.log(np.asarray(run_params, dtype=float))
    log_final = np.log(np.asarray(run_final_tokens, dtype=float))
    log_d = np.log(np.asarray(tokens, dtype=float))
    obs_run = np.asarray(obs_run, dtype=np.int32)
    run_x = np.zeros((run_family.size, 2))
    run_x[:, 0] = log_n
    center = np.zeros((n_families, 2))
    noncentred = np.zeros(n_families, dtype=bool)
    single = np.bincount(obs_run, minlength=run_family.size) == 1
    final_only = np.array([single[run_family == f].all() for f in range(n_families)])
    points = []
    for f in range(n_families):
        runs = run_family == f
        uses_d = gp.varies_tokens(log_n[runs], log_final[runs])
        if uses_d:
            run_x[runs, 1] = log_final[runs]
        points.append(gp.inducing_points(run_x[runs], uses_d))
        center[f] = log_n[runs].mean(), log_d[runs[obs_run]].mean()
        noncentred[f] = len(np.unique(np.round(log_n[runs], 6))) < CENTRED_MIN_SIZES
    inducing, inducing_mask = gp.padded(points)
    return ModelInputs(
        run_family=run_family,
        log_n=log_n,
        run_x=run_x,
        seeded=~final_only[run_family],
        obs_run=obs_run,
        log_d=log_d,
        first=np.asarray(first, dtype=bool),
        y=np.asarray(y, dtype=float),
        obs_mask=np.ones(log_d.size),
        n_families=int(n_families),
        center=center,
        noncentred=noncentred,
        final_only=final_only,
        inducing=inducing,
        inducing_mask=inducing_mask,
        gp_buckets=gp_buckets(run_family, inducing_mask),
    )
