"""Simulated scaling data with known truth (for recovery tests and design studies).

The generative process is the model's own (:func:`bayescale.model.trajectory`):
family laws, a size-level discrepancy, per-run seed effects and OU trajectory
noise with Gaussian innovations, so that a fit to this data should recover the truth.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import jax
import numpy as np
import pandas as pd

from bayescale import laws
from bayescale.data import ScalingData
from bayescale.model import trajectory


@dataclass(frozen=True)
class Truth:
    """Parameters of a simulated world (relative scale: loss / ``scale``).

    ``log_E``, ``a``, ``b``, ``alpha_f``, ``beta_f``, ``sigma_obs`` and
    ``scale`` have one entry per family; ``u`` (the run's offset from its
    family law: discrepancy plus seed) and ``delta`` (the discrepancy at the
    run's size) one per run.
    """

    alpha: float = 0.34
    beta: float = 0.28
    sigma_seed: float = 0.02
    discrepancy_sd: float = 0.0
    discrepancy_length: float = 1.5
    ell: float = 0.5
    log_E: np.ndarray = field(default=None)
    a: np.ndarray = field(default=None)
    b: np.ndarray = field(default=None)
    alpha_f: np.ndarray = field(default=None)
    beta_f: np.ndarray = field(default=None)
    sigma_obs: np.ndarray = field(default=None)
    scale: np.ndarray = field(default=None)
    u: np.ndarray = field(default=None)
    delta: np.ndarray = field(default=None)


def simulate_frame(
    *,
    n_families: int = 6,
    sizes=(1e8, 3e8, 1e9, 3e9),
    seeds_per_size: int = 2,
    n_checkpoints: int = 24,
    tokens_range=(1e10, 3e11),
    alpha: float = 0.34,
    beta: float = 0.28,
    exponent_spread: float = 0.0,
    sigma_seed: float = 0.02,
    discrepancy_sd: float = 0.0,
    discrepancy_length: float = 1.5,
    sigma_obs: float = 0.01,
    ell: float = 0.5,
    seed: int = 0,
):
    """Simulate a tidy loss table from the hierarchical model.

    Parameters
    ----------
    n_families : int
    sizes : sequence of float
        Model sizes (raw parameter counts) trained in every family.
    seeds_per_size : int
        Seed replicates per size (runs differing only in ``u``).
    n_checkpoints : int
        Log-spaced checkpoints per run over ``tokens_range``.
    alpha, beta : float
        Population exponents; family exponents are ``alpha * exp(spread z)``.
    exponent_spread : float
        Log-scale spread of family exponents (0: shared exponents).
    sigma_seed, sigma_obs, ell : float
        Seed-effect sd (log loss), OU stationary sd and correlation length (log
        tokens).
    discrepancy_sd, discrepancy_length : float
        Scale (log loss) and length (log N) of each family's size-level
        discrepancy from its law, a squared-exponential Gaussian process over
        its sizes (0: the sizes follow the law exactly).
    seed : int

    Returns
    -------
    frame : pandas.DataFrame
        Columns ``family, run, params, tokens, loss, seed``.
    truth : Truth
    """
    rng = np.random.default_rng(seed)
    f = int(n_families)
    log_e = rng.normal(np.log(0.7), 0.1, f)
    a = rng.normal(np.log(0.12), 0.2, f)
    b = rng.normal(np.log(0.12), 0.2, f)
    alpha_f = alpha * np.exp(exponent_spread * rng.standard_normal(f))
    beta_f = beta * np.exp(exponent_spread * rng.standard_normal(f))
    scale = np.exp(rng.normal(np.log(2.5), 0.3, f))
    tokens = np.geomspace(tokens_range[0], tokens_range[1], int(n_checkpoints))
    rows = []
    for fi in range(f):
        for n in sizes:
            for s in range(int(seeds_per_size)):
                run = f"fam{fi}-{n:.0e}-s{s}"
                for d in tokens:
                    rows.append((f"fam{fi}", run, float(n), float(d), 1.0, str(s)))
    frame = pd.DataFrame(rows, columns=["family", "run", "params", "tokens", "loss", "seed"])
    # a design-only ScalingData gives the same run/obs ordering the fit will use
    design = ScalingData.from_frame(frame, min_tokens=None, max_points_per_run=None)
    log_sizes = np.log(np.asarray(sizes, dtype=float))
    k = discrepancy_sd**2 * np.exp(
        -0.5 * ((log_sizes[:, None] - log_sizes[None, :]) / discrepancy_length) ** 2
    )
    chol = np.linalg.cholesky(k + 1e-12 * np.eye(len(sizes)))
    delta_size = (chol @ rng.standard_normal((len(sizes), f))).T  # (F, sizes)
    fam_run = np.array([int(design.families[g][3:]) for g in design.run_family])
    size_run = np.array([list(sizes).index(n) for n in design.run_params])
    delta = delta_size[fam_run, size_run]
    u = delta + sigma_seed * rng.standard_normal(design.n_runs)
    fam_of = np.array([int(fam[3:]) for fam in design.families])
    law = laws.LawParams(log_e[fam_of], a[fam_of], b[fam_of], alpha_f[fam_of], beta_f[fam_of])
    traj = trajectory(design.inputs(), law, u, np.full(design.n_families, sigma_obs), ell)
    log_loss = np.asarray(traj.sample(jax.random.PRNGKey(seed)))
    frame = design.to_frame()
    frame["loss"] = np.exp(log_loss) * scale[fam_of][design.obs_family]
    truth = Truth(
        alpha=alpha,
        beta=beta,
        sigma_seed=sigma_seed,
        discrepancy_sd=discrepancy_sd,
        discrepancy_length=discrepancy_length,
        ell=ell,
        log_E=log_e,
        a=a,
        b=b,
        alpha_f=alpha_f,
        beta_f=beta_f,
        sigma_obs=np.full(f, sigma_obs),
        scale=scale,
        u=u,
        delta=delta,
    )
    return frame, truth


def true_loss(truth: Truth, family: int, params, tokens):
    """Noise-free law of one simulated family in absolute loss units."""
    law = laws.LawParams(
        truth.log_E[family],
        truth.a[family],
        truth.b[family],
        truth.alpha_f[family],
        truth.beta_f[family],
        np.log(truth.scale[family]),
    )
    return np.asarray(laws.loss(law, np.asarray(params, float), np.asarray(tokens, float)))


def prior_world(
    *,
    n_families: int = 2,
    sizes=(1e8, 3e8, 1e9),
    seeds_per_size: int = 2,
    n_checkpoints: int = 8,
    tokens_range=(1e10, 1e11),
    priors=None,
    exponents: str = "pooled",
    seed: int = 0,
):
    """A data set drawn from the model's own prior (simulation-based calibration).

    Every parameter is drawn from :func:`bayescale.model.scaling_model`'s prior,
    the discrepancy's inducing values and the run offsets from theirs, and the
    checkpoints from :class:`~bayescale.trajectory.OUTrajectory`. The family
    loss constants are 1, so the data are on the model's own relative scale
    (a fit of the returned arrays uses exactly the prior that made them).

    Returns
    -------
    data : ScalingData
    truth : dict
        The drawn value of every site (``alpha``, ``beta``, ``e_frac``,
        ``sigma_seed``, ``gp_scale``, ...) and the run offsets ``u``.
    """
    from dataclasses import replace

    import jax.numpy as jnp
    from numpyro.infer import Predictive

    from bayescale import discrepancy as gp
    from bayescale.model import Priors, family_law, scaling_model

    priors = priors or Priors()
    rows = [
        (f"fam{fi}", f"fam{fi}-{n:.0e}-s{s}", float(n), float(d), 1.0)
        for fi in range(int(n_families))
        for n in sizes
        for s in range(int(seeds_per_size))
        for d in np.geomspace(*tokens_range, int(n_checkpoints))
    ]
    frame = pd.DataFrame(rows, columns=["family", "run", "params", "tokens", "loss"])
    data = ScalingData.from_frame(frame, min_tokens=None, max_points_per_run=None)
    data = replace(data, family_scale=np.ones(data.n_families))
    inputs = data.inputs()
    k_prior, k_w, k_u, k_y = jax.random.split(jax.random.PRNGKey(seed), 4)
    kwargs = {"exponents": exponents, "priors": priors, "observe": False}
    draw = Predictive(scaling_model, num_samples=1)(k_prior, inputs, **kwargs)
    sites = {k: jnp.asarray(v)[0] for k, v in draw.items()}
    pts, mask = jnp.asarray(inputs.inducing), jnp.asarray(inputs.inducing_mask)
    scale, length = sites["gp_scale"], sites["gp_length"]
    chol = gp.inducing_cholesky(pts, mask, scale, length)
    phi, leftover = gp.projections(
        jnp.asarray(inputs.run_x), inputs.run_family, pts, mask, chol, scale, length
    )
    w = jax.random.normal(k_w, pts.shape[:2]) * mask
    sd = jnp.sqrt(leftover + jnp.where(jnp.asarray(inputs.seeded), sites["sigma_seed"] ** 2, 0.0))
    u = jnp.sum(phi * w[inputs.run_family], axis=-1) + sd * jax.random.normal(k_u, sd.shape)
    traj = trajectory(inputs, family_law(sites), u, sites["sigma_obs"], sites["ell"])
    y = np.asarray(traj.sample(k_y))
    truth = {k: np.asarray(v) for k, v in sites.items()}
    truth["u"] = np.asarray(u)
    return replace(data, loss=np.exp(y)), truth
