"""NumPyro model functions for hierarchical scaling laws (no I/O, arrays only).

For checkpoint ``i`` of run ``r`` in family ``f``::

    log(L_i / s_f) = log mu_f(N_r, D_i) + u_r + eps_i
    mu_f(N, D)     = E_f + exp(a_f - alpha_f log N~) + exp(b_f - beta_f log D~)

with ``s_f`` a fixed per-family loss constant (median observed loss), ``N~``
and ``D~`` the sizes relative to 1e9 parameters and 1e11 tokens, ``u_r`` a
run (seed) effect and ``eps`` an Ornstein-Uhlenbeck process in log-token time
with Student-t innovations (:class:`bayescale.trajectory.OUTrajectory`).
The run effects of a family are its runs' seeds around their average
(:class:`bayescale.seeds.RunEffects`): ``sigma_seed`` is the population
seed spread.

With ``discrepancy=True`` the run offset is ``u_r + delta_f(N_r)``: the
size-level discrepancy, an OU process in log N per family with pooled scale
``sigma_delta`` and length ``ell_delta`` (:mod:`bayescale.discrepancy`;
sites ``sigma_delta``, ``ell_delta``, ``z_delta`` on plate ``size``, and
``delta`` per run), shared by the runs of one size, single-checkpoint runs
included. Seed scatter is what replicates of one size differ by; the
discrepancy is what a replicate would not change. So with it, seed effects
sum to zero within each (family, size), and a run alone at its size has
none (:mod:`bayescale.seeds`): its offset is the discrepancy's. Families whose final
losses span several token budgets at one size add a second such process in
log D (sites ``sigma_delta_d``, ``ell_delta_d``, ``z_delta_d`` on plate
``budget``; :func:`bayescale.discrepancy.budget_families`).

Family coefficients ``(a_f, b_f)`` and exponents are partially pooled around
population means. Each family's ``E_f``, ``a_f``, ``b_f`` are sampled in
coordinates centred on its own data (:mod:`bayescale.coordinates`: the law's
log value at the family's mean size and tokens, the token term's share of it,
and E's share of the rest), with the same prior; E's prior is on its share of
the law at the reference sizes (``e_frac``). With family groups
(``inputs.family_group``: one lab's suite of families, or families evaluated
on one metric) the means are shifted per group, ``mu + g_g`` with ``g_g ~
Normal(0, sigma_group)``, the mean of E's share on its log-odds (sites
``sigma_group``, ``z_group``, ``group_effect``; centred for groups of three
or more families, non-centred below, :func:`centred_groups`), so a family
with one run borrows first from its own group and only then from the rest.
Pooled exponents, ``log alpha_f ~ Normal(log alpha (+ g), tau_alpha)`` and
``beta_f`` likewise, are sampled centred where the family's data pin them
(curves at several sizes for ``alpha_f``, over a range of tokens for
``beta_f``) and non-centred elsewhere (sites ``z_alpha``, ``z_beta``;
:func:`centred_exponents`).

With learning-rate schedules (``inputs.anneal``), ``D`` is the area under the
run's normalised rate and ``mu`` loses the annealing bonus of
:mod:`bayescale.schedules` (sites ``anneal_B`` per family, ``anneal_C``,
``anneal_beta``, ``anneal_gamma``, and ``anneal_kappa``, the bonus's growth
with model size, when some family anneals at two or more sizes:
:func:`bonus_sizes_vary`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from jax.scipy.special import expit, logit

from bayescale.centring import centred_exponents, centred_groups, lone_exponents, partly_centred
from bayescale.coordinates import FamilyCoords, e_share_logs, family_centres, to_law
from bayescale.laws import LawParams
from bayescale.options import EXPONENT_FORMS, LAWS, check_choice
from bayescale.pooling import PooledOffsets, lone_exponent, mean_given_offsets
from bayescale.seeds import RunEffects
from bayescale.trajectory import OUTrajectory

COEFS = ("a", "b")
# what a group shifts: the population means of a, b, log alpha, log beta and of
# E's share (on its log-odds), so families measured on one metric share their floor
GROUP_COEFS = ("a", "b", "log_alpha", "log_beta", "e_logit")
# least group scale a MAP start is given (spread_scales), as for the family scales:
# 0.1 for a and b (sigma_theta) and E's log-odds, 0.05 for the log exponents (tau)
_GROUP_SCALE_FLOOR = dict(zip(GROUP_COEFS, (0.1, 0.1, 0.05, 0.05, 0.1), strict=True))


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
        at 0, which keeps the centred hierarchy out of its funnel neck when
        few families are fitted (a boundary-avoiding prior).
    e_frac_mean : tuple of float
        ``E_f`` is a share ``p_f`` of the family's law at the reference sizes
        (1e9 parameters, 1e11 tokens; the Chinchilla fit gives 0.71 there), one
        point for every family whatever sizes it was trained at,
        ``p_f ~ Beta(m k, (1 - m) k)`` across families with ``m ~ Beta(3.5, 1.5)``:
        mean 0.7, the published laws' share there (Hoffmann et al. 0.71,
        Besiroglu et al.'s re-fit 0.77). It acts most where few families inform
        ``m``; at mean 0.6 it pulled the E of families fitted on two sizes low
        and their predictions with it. And
    e_frac_concentration : float
        ``k ~ Gamma(2, 2 / 10)``. On the log scale a normal hierarchy on
        ``log E`` left a flat plateau towards ``E -> 0`` (whenever the data
        cannot rule out a negligible ``E``) in which chains got stuck; the
        Beta's power-law edge at 0 decays exponentially in ``log E``.
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
    noise_log_loc, noise_log_scale : float
        Per-family trajectory noise scale ``sigma_f ~ LogNormal(log 0.01,
        1.5)``, independent across families: measurement quality differs by
        orders of magnitude (digitised curves vs. 174M-token eval sets), so
        pooling it buys little, and a hierarchy on it mixed badly (funnel)
        with few families.
    ell_loc, ell_scale : float
        OU correlation length in log tokens, ``LogNormal(log 0.3, 0.5)``:
        centred below the log-token span of a run (~3 past the warm-up cut)
        so that the run effect ``u_r``, not the noise, carries differences
        between runs; real curves still pull it to ~1-2.5.
    nu_loc, nu_scale : float
        Student-t degrees of freedom ``LogNormal(log 4, 0.75)``: digitised
        curves have outliers (the feasibility sketch found nu ~ 1.2).
    group_spread : tuple of float
        Only with a ``group`` column: prior means of the spread of group
        shifts of ``(a, b, log alpha, log beta)`` and of the log-odds of
        E's share, each ``Gamma(2, 2 / m)``; the first four the same as the
        family-level spreads (``offset_sd``, ``exponent_spread``): a priori
        groups differ as much as families do. The last is 1: metrics differ
        in their floor (a log-perplexity of LAMBADA falls far below its
        value at 1e9 parameters, a web-text loss much less).
    anneal_b_sd, anneal_c_loc, anneal_c_scale, anneal_shape_loc, anneal_shape_scale : float
        Only with learning-rate schedules (:mod:`bayescale.schedules`): the
        bonus of a full decay ``B_f ~ HalfNormal(0.1)`` (annealing lowers the
        loss by a few percent); its rate ``C ~ LogNormal(log 1e3, 2.5)``
        (area in units of 1e11 tokens; wide, since tokens per step are often
        unknown); ``beta_LD, gamma ~ LogNormal(log 0.5, 0.7)`` (Luo et al.
        fit values near 0.5).
    delta_sd, delta_ell_loc, delta_ell_scale : float
        Only with the size-level discrepancy (:mod:`bayescale.discrepancy`):
        its scale ``sigma_delta ~ HalfNormal(0.03)``, as large as the seed
        scatter a priori (published laws miss single sizes by a few percent),
        and its correlation length in log parameters ``ell_delta ~
        LogNormal(log 1.5, 0.5)``: sizes 4.5 times apart correlate by
        ``exp(-1)``, so a family's neighbouring sizes share most of their
        departure from the law, and sizes a decade away little of it. The
        token-budget term of grid families has the same priors, in log tokens.
    anneal_kappa_sd : float
        The bonus of a run of ``N`` parameters is ``B_f (N / 1e9)^kappa``,
        ``kappa ~ Normal(0, 0.5)``: Luo et al. fit the bonus per model size,
        and on their curves it grows with size; one prior sd is a factor of
        about 3 per decade of size, either way.
    """

    exponent_median: float = 0.3
    exponent_log_sd: float = 0.5
    exponent_spread: float = 0.15
    e_frac_mean: tuple = (3.5, 1.5)
    e_frac_concentration: float = 10.0
    ab_loc: float = math.log(0.2)
    ab_scale: float = 1.5
    offset_sd: tuple = (0.6, 0.6)
    lkj_concentration: float = 2.0
    seed_sd: float = 0.03
    noise_log_loc: float = math.log(0.01)
    noise_log_scale: float = 1.5
    ell_loc: float = math.log(0.3)
    ell_scale: float = 0.5
    nu_loc: float = math.log(4.0)
    nu_scale: float = 0.75
    group_spread: tuple = (0.6, 0.6, 0.15, 0.15, 1.0)
    anneal_b_sd: float = 0.1
    anneal_c_loc: float = math.log(1e3)
    anneal_c_scale: float = 2.5
    anneal_shape_loc: float = math.log(0.5)
    anneal_shape_scale: float = 0.7
    anneal_kappa_sd: float = 0.5
    delta_sd: float = 0.03
    delta_ell_loc: float = math.log(1.5)
    delta_ell_scale: float = 0.5

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
    obs_run: np.ndarray  # (n,) int
    log_d: np.ndarray  # (n,) log D (raw count)
    first: np.ndarray  # (n,) bool: first kept checkpoint of its run
    y: np.ndarray  # (n,) log(loss / family_scale)
    n_families: int
    run_single: np.ndarray  # (R,) bool: the run has a single kept checkpoint
    # (R,) seed variance of a single-checkpoint run's point around the fitted law,
    # in units of sigma_seed^2 (see obs_scale); None: 1
    single_seed_var: np.ndarray | None = None
    # learning-rate schedules (bayescale.schedules), None without an lr column:
    log_area: np.ndarray | None = None  # (n,) log LR area, the law's time axis
    anneal: tuple | None = None  # three (n, K): LR drops, LR at the drop, area since it
    # family groups (a `group` column), None without: (F,) int group of each family
    family_group: np.ndarray | None = None
    n_groups: int = 0


def spread_priors(priors: Priors) -> dict:
    """The hierarchy's spread sites, each ``Gamma(2, 2 / m)`` a priori, -> their means ``m``."""
    return {
        "sigma_theta": priors.offset_sd,
        "tau_alpha": priors.exponent_spread,
        "tau_beta": priors.exponent_spread,
        "sigma_group": priors.group_spread,
    }


# -- the parameters of one draw -------------------------------------------------------------
def family_law(sites: dict) -> LawParams:
    """Per-family laws (relative scale) from a dict of the model's sites."""
    return LawParams(sites["log_E"], sites["a"], sites["b"], sites["alpha_f"], sites["beta_f"])


def anneal_params(sites: dict):
    """The annealing-bonus parameters of one draw, or ``None`` for a fit without schedules."""
    from bayescale.schedules import AnnealParams

    if "anneal_B" not in sites:
        return None
    return AnnealParams(
        sites["anneal_B"],
        sites["anneal_C"],
        sites["anneal_beta"],
        sites["anneal_gamma"],
        sites.get("anneal_kappa", 0.0),
    )


def obs_scale(inputs: ModelInputs, sigma_obs, sigma_seed):
    """Stationary noise sd at each checkpoint.

    The lone checkpoint of a single-checkpoint run carries the seed scatter
    too (its run effect is 0, see :func:`~bayescale.seeds.centered_run_effects`):
    ``sqrt(sigma_obs^2 + c sigma_seed^2)``. The fitted law is the average of
    the family's ``K`` multi-checkpoint runs, so such a point sits
    ``sigma_seed^2 (1 + 1/K)`` around it (``c = 1`` when ``K = 0``, where the
    law is the family's population mean; :func:`~bayescale.seeds.single_seed_var`).
    """
    fam_obs = inputs.run_family[inputs.obs_run]
    single = jnp.asarray(inputs.run_single, dtype=bool)[inputs.obs_run]
    c = 1.0 if inputs.single_seed_var is None else jnp.asarray(inputs.single_seed_var)
    c = jnp.broadcast_to(c, jnp.shape(inputs.run_single))[inputs.obs_run]
    sig = jnp.asarray(sigma_obs)[fam_obs]
    return jnp.where(single, jnp.sqrt(sig**2 + c * sigma_seed**2), sig)


def trajectory(
    inputs: ModelInputs, law: LawParams, run_offset, sigma_obs, sigma_seed, ell, nu, anneal=None
):
    """The distribution of ``inputs.y``: the law plus run offsets, with OU noise.

    This is the likelihood the model conditions on; simulations and
    predictions of new runs draw from it. With learning-rate schedules the
    law runs on the LR area and ``anneal`` (:class:`~bayescale.schedules.AnnealParams`)
    adds the annealing bonus; the OU noise stays in log-token time.
    """
    from bayescale.laws import log_loss
    from bayescale.schedules import scheduled_log_loss
    from bayescale.trajectory import ou_rho

    fam_obs = inputs.run_family[inputs.obs_run]
    per_obs = law.map(lambda v: jnp.asarray(v)[fam_obs])
    log_n = inputs.log_n[inputs.obs_run]
    if inputs.anneal is None:
        loc = log_loss(per_obs, log_n, inputs.log_d)
    else:
        if anneal is not None:
            anneal = anneal._replace(B=jnp.asarray(anneal.B)[fam_obs])
        loc = scheduled_log_loss(per_obs, anneal, log_n, inputs.log_area, *inputs.anneal)
    loc = loc + run_offset[inputs.obs_run]
    rho = ou_rho(inputs.log_d, inputs.first, ell)
    return OUTrajectory(loc, obs_scale(inputs, sigma_obs, sigma_seed), rho, nu)


def _family_block(
    inputs: ModelInputs, exponents: str, law: str, priors: Priors, exponent_centring=None
):
    """Population and family-level sites; returns per-family arrays.

    Family offsets are sampled *centred* (drawn directly from their
    population distribution): every real family has tens to hundreds of
    checkpoints, so its own data pin it down and the non-centred form turned
    that into long, curved ridges between ``z`` and the population scale.
    They are drawn with ``E_f`` in coordinates centred on the family's data
    (site ``coords``, :class:`~bayescale.coordinates.FamilyCoords`), after
    the exponents they depend on.
    Pooled exponents are centred for the families whose data pin them and
    non-centred for the others (sites ``z_alpha``, ``z_beta``;
    :func:`centred_exponents`), or all partly centred with weight
    ``exponent_centring`` (:func:`~bayescale.centring.partly_centred`); a
    one-family fit draws its family's pinned
    exponent first and the shared one given it (:func:`lone_exponent`). The
    fit pairs this with a dense mass matrix over the law block (see
    ``fitting.DENSE_BLOCK``) for the correlations left within a family.
    The population mean of the offsets, ``mu_theta``, is integrated out of
    their prior and drawn after them (:mod:`bayescale.pooling`, site ``z_mu``).
    """
    p = priors
    n_families = inputs.n_families
    lone = lone_exponents(inputs, exponents, law)
    # a lone family's exponents need the spreads first (its site order is its own)
    spreads = _exponent_spreads(p, law) if any(lone) else None
    population = dist.LogNormal(math.log(p.exponent_median), p.exponent_log_sd)
    if lone[0]:
        alpha, alpha_lone = lone_exponent("alpha", spreads[0], population)
    else:
        alpha = numpyro.sample("alpha", population)
    if law == "overtrain":
        # Gadre et al.'s (C, M) form: one exponent for N and D
        beta = numpyro.deterministic("beta", alpha)
    elif lone[1]:
        beta, beta_lone = lone_exponent("beta", spreads[1], population)
    else:
        beta = numpyro.sample("beta", population)
    e_mu = numpyro.sample("e_mu", dist.Beta(*p.e_frac_mean))
    e_kappa = numpyro.sample("e_kappa", dist.Gamma(2.0, 2.0 / p.e_frac_concentration))
    loc = jnp.array([p.ab_loc, p.ab_loc])
    m_theta = jnp.array(p.offset_sd)
    sigma_theta = numpyro.sample("sigma_theta", dist.Gamma(2.0, 2.0 / m_theta).to_event(1))
    l_omega = numpyro.sample("L_omega", dist.LKJCholesky(2, p.lkj_concentration))
    if exponents == "pooled":
        tau_alpha, tau_beta = spreads if spreads is not None else _exponent_spreads(p, law)
        centred = centred_exponents(inputs, law)

        def pooled(site, log_loc, tau, column):
            z = partly_centred(site, log_loc, tau, centred[:, column], weight=exponent_centring)
            return jnp.exp(z)

    shift = _group_shift(inputs, p)
    log_alpha, log_beta = jnp.log(alpha), jnp.log(beta)
    if shift is not None:
        log_alpha, log_beta = log_alpha + shift[:, 2], log_beta + shift[:, 3]
    with numpyro.plate("family", n_families):
        sigma_f = numpyro.sample("sigma_obs", dist.LogNormal(p.noise_log_loc, p.noise_log_scale))
        if exponents == "pooled":
            alpha_f = numpyro.deterministic(
                "alpha_f",
                alpha_lone if lone[0] else pooled("z_alpha", log_alpha, tau_alpha, 0),
            )
            if law == "overtrain":
                beta_f = numpyro.deterministic("beta_f", alpha_f)
            else:
                beta_f = numpyro.deterministic(
                    "beta_f",
                    beta_lone if lone[1] else pooled("z_beta", log_beta, tau_beta, 1),
                )
        else:
            alpha_f = numpyro.deterministic("alpha_f", jnp.broadcast_to(alpha, (n_families,)))
            beta_f = numpyro.deterministic("beta_f", jnp.broadcast_to(beta, (n_families,)))
    theta_shift = jnp.zeros((n_families, 2)) if shift is None else shift[:, :2]
    scale_tril = sigma_theta[:, None] * l_omega
    # the offsets' population mean integrated out of their prior, drawn after them
    # (bayescale.pooling): the same joint law without the funnel between the two
    offsets = PooledOffsets(loc, theta_shift, p.ab_scale, scale_tril)
    if shift is not None:
        # the group's share mean: e_mu's log-odds moved by the group's shift
        e_mu = expit(logit(e_mu) + shift[:, 4])
    e_prior = dist.Beta(e_mu * e_kappa, (1.0 - e_mu) * e_kappa)
    # E, a and b in coordinates centred on each family's data (bayescale.coordinates)
    centre = family_centres(inputs)
    coords = numpyro.sample("coords", FamilyCoords(e_prior, offsets, centre, alpha_f, beta_f))
    log_e, theta = to_law(coords, centre, alpha_f, beta_f)
    numpyro.deterministic("e_frac", jnp.exp(e_share_logs(log_e, theta)[0]))
    z_mu = numpyro.sample("z_mu", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
    numpyro.deterministic(
        "mu_theta", mean_given_offsets(theta, theta_shift, loc, p.ab_scale, scale_tril, z_mu)
    )
    log_e = numpyro.deterministic("log_E", log_e)
    numpyro.deterministic("a", theta[:, 0])
    numpyro.deterministic("b", theta[:, 1])
    return LawParams(log_e, theta[:, 0], theta[:, 1], alpha_f, beta_f), sigma_f


def _exponent_spreads(p: Priors, law: str):
    """``tau_alpha, tau_beta`` (one and the same under the over-training law)."""
    tau_alpha = numpyro.sample("tau_alpha", dist.Gamma(2.0, 2.0 / p.exponent_spread))
    if law == "overtrain":
        return tau_alpha, tau_alpha
    return tau_alpha, numpyro.sample("tau_beta", dist.Gamma(2.0, 2.0 / p.exponent_spread))


def _group_shift(inputs: ModelInputs, p: Priors):
    """Per family, its group's shift of ``GROUP_COEFS`` (F, 5); ``None`` without groups.

    ``z_group`` holds each group's shift in its sampling coordinates: the
    shift ``~ Normal(0, sigma_group)`` for a group of several families, the
    standardised ``shift / sigma_group ~ Normal(0, 1)`` for the others
    (:func:`centred_groups`). Under ``exponents="shared"`` the exponent shifts
    are unused.
    """
    if inputs.family_group is None:
        return None
    m = jnp.array(p.group_spread)
    sigma = numpyro.sample("sigma_group", dist.Gamma(2.0, 2.0 / m).to_event(1))
    centred = jnp.asarray(centred_groups(inputs))[:, None]
    with numpyro.plate("group", inputs.n_groups):
        effect = partly_centred("z_group", 0.0, sigma, centred, event_dims=1)
    effect = numpyro.deterministic("group_effect", effect)
    return effect[jnp.asarray(inputs.family_group)]


def scaling_model(
    inputs: ModelInputs,
    *,
    exponents: str = "pooled",
    law: str = "chinchilla",
    priors: Priors = Priors(),  # noqa: B008 - frozen, immutable default
    discrepancy: bool = False,
    seed_centring: float = 0.0,
    exponent_centring: float | None = None,
    observe: bool = True,
):
    """Hierarchical scaling-law model (plate ``family``, seed coordinates ``z_u``; observed ``y``).

    The observed site ``y`` is the whole vector of log relative losses under
    :class:`~bayescale.trajectory.OUTrajectory`. ``discrepancy`` adds the
    size-level discrepancy to every run's offset (plate ``size``,
    :func:`_discrepancy_block`). ``seed_centring`` is the weight ``w`` of the
    seed coordinates ``z_u`` (:class:`~bayescale.seeds.RunEffects`), and
    ``exponent_centring`` (``None``: the rule of
    :func:`~bayescale.centring.centred_exponents`) that of the pooled
    exponents' ``z_alpha``, ``z_beta``: the same model, other coordinates.
    """
    check_choice("exponents", exponents, EXPONENT_FORMS)
    check_choice("law", law, LAWS)
    p = priors
    fam_law, sigma_f = _family_block(inputs, exponents, law, p, exponent_centring)
    sigma_seed = numpyro.sample("sigma_seed", dist.HalfNormal(p.seed_sd))
    ell = numpyro.sample("ell", dist.LogNormal(p.ell_loc, p.ell_scale))
    nu = numpyro.sample("nu", dist.LogNormal(p.nu_loc, p.nu_scale))
    prior = RunEffects(sigma_seed, inputs, discrepancy, seed_centring, p.seed_sd)
    z_u = numpyro.sample("z_u", prior)
    u = numpyro.deterministic("u", prior.effects(z_u))
    anneal = _anneal_block(inputs, p) if inputs.anneal is not None else None
    offset = u + _discrepancy_block(inputs, p) if discrepancy else u
    if not observe:
        return
    traj = trajectory(inputs, fam_law, offset, sigma_f, sigma_seed, ell, nu, anneal)
    numpyro.sample("y", traj, obs=inputs.y)


def _discrepancy_block(inputs: ModelInputs, p: Priors):
    """Sites of the discrepancy; returns each run's share, (R,).

    ``delta`` at each family's distinct sizes is an OU path in log N drawn
    non-centred from ``z_delta`` (its scale and length are shared by all
    families; :mod:`bayescale.discrepancy`), centred within the family:
    its family average is part of the law, as the run effects' is. Runs of
    one size share it. Families with token-budget grids add a second path
    over their final losses' log tokens (sites ``sigma_delta_d``,
    ``ell_delta_d``, ``z_delta_d`` on plate ``budget``). Site ``delta``: the
    sum, per run.
    """
    from bayescale.discrepancy import TERMS

    delta = 0.0
    for term in TERMS:
        slots = term.slots_of(inputs)
        if slots.family.size:
            delta = delta + _ou_offsets(slots, inputs.n_families, p, term.suffix, term.plate)
    return numpyro.deterministic("delta", delta)


def _ou_offsets(slots, n_families: int, p: Priors, suffix: str, plate: str):
    """One family-centred OU discrepancy over ``slots``, per run (0 for runs without a slot)."""
    from bayescale.discrepancy import family_means, slot_values

    sigma = numpyro.sample(f"sigma_delta{suffix}", dist.HalfNormal(p.delta_sd))
    length = numpyro.sample(
        f"ell_delta{suffix}", dist.LogNormal(p.delta_ell_loc, p.delta_ell_scale)
    )
    with numpyro.plate(plate, slots.family.size):
        z = numpyro.sample(f"z_delta{suffix}", dist.Normal(0.0, 1.0))
    values = slot_values(slots, z, sigma, length)
    centred = values - family_means(slots, values, n_families)[slots.family]
    has = slots.run_slot >= 0
    return jnp.where(has, centred[np.maximum(slots.run_slot, 0)], 0.0)


def run_offsets(sites: dict):
    """Each run's offset from its family's law: seed effect plus discrepancy, (..., R)."""
    u = sites["u"]
    return u + sites["delta"] if "delta" in sites else u


def _anneal_block(inputs: ModelInputs, p: Priors):
    """Sites of the annealing bonus: a per-family size, shared rate and shapes."""
    from bayescale.schedules import AnnealParams

    with numpyro.plate("family", inputs.n_families):
        b = numpyro.sample("anneal_B", dist.HalfNormal(p.anneal_b_sd))
    c = numpyro.sample("anneal_C", dist.LogNormal(p.anneal_c_loc, p.anneal_c_scale))
    shape = dist.LogNormal(p.anneal_shape_loc, p.anneal_shape_scale)
    kappa = 0.0
    if bonus_sizes_vary(inputs):
        kappa = numpyro.sample("anneal_kappa", dist.Normal(0.0, p.anneal_kappa_sd))
    return AnnealParams(
        b, c, numpyro.sample("anneal_beta", shape), numpyro.sample("anneal_gamma", shape), kappa
    )


def bonus_sizes_vary(inputs: ModelInputs) -> bool:
    """Whether some family shows an annealing bonus at two or more sizes.

    Only then is the bonus's growth with size (``anneal_kappa``) in the
    model; otherwise it would trade with the families' bonus sizes ``B_f``
    along a ridge the data do not constrain, so it is 0.
    """
    if inputs.anneal is None:
        return False
    annealed = np.asarray(inputs.anneal[0]).any(axis=1)
    run_annealed = np.zeros(np.shape(inputs.run_family), bool)
    np.logical_or.at(run_annealed, np.asarray(inputs.obs_run), annealed)
    fam = np.asarray(inputs.run_family)[run_annealed]
    log_n = np.asarray(inputs.log_n)[run_annealed]
    return any(np.unique(log_n[fam == f]).size > 1 for f in np.unique(fam))


def log_likelihood(inputs: ModelInputs, sites: dict):
    """Pointwise log-likelihood (conditional on the previous checkpoint) of one draw, (n,)."""
    traj = trajectory(
        inputs,
        family_law(sites),
        run_offsets(sites),
        sites["sigma_obs"],
        sites["sigma_seed"],
        sites["ell"],
        sites["nu"],
        anneal_params(sites),
    )
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
    if "group_effect" in values:
        shifts = np.asarray(values["group_effect"])
        out["sigma_group"] = np.maximum(shifts.std(axis=0), list(_GROUP_SCALE_FLOOR.values()))
    return out
