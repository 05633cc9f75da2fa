"""Simulated scaling data with known truth (for recovery tests and design studies).

The generative process is the model's own (:func:`bayescale.model.trajectory`):
family laws, per-run seed effects and OU trajectory noise with Student-t
innovations, so that a fit to this data should recover the truth.
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
    ``scale`` have one entry per family; ``u`` one per run.
    """

    alpha: float = 0.34
    beta: float = 0.28
    sigma_seed: float = 0.02
    ell: float = 0.5
    nu: float = 5.0
    log_E: np.ndarray = field(default=None)
    a: np.ndarray = field(default=None)
    b: np.ndarray = field(default=None)
    alpha_f: np.ndarray = field(default=None)
    beta_f: np.ndarray = field(default=None)
    sigma_obs: np.ndarray = field(default=None)
    scale: np.ndarray = field(default=None)
    u: np.ndarray = field(default=None)


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
    sigma_obs: float = 0.01,
    ell: float = 0.5,
    nu: float = 5.0,
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
    sigma_seed, sigma_obs, ell, nu : float
        Seed-effect sd (log loss), OU stationary sd, correlation length (log
        tokens) and Student-t degrees of freedom of the innovations.
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
    u = sigma_seed * rng.standard_normal(design.n_runs)
    fam_of = np.array([int(fam[3:]) for fam in design.families])
    law = laws.LawParams(log_e[fam_of], a[fam_of], b[fam_of], alpha_f[fam_of], beta_f[fam_of])
    inputs = design.inputs()
    # single-checkpoint runs carry their seed effect like every other run here
    inputs = inputs._replace(run_single=np.zeros(design.n_runs, dtype=bool))
    traj = trajectory(inputs, law, u, np.full(design.n_families, sigma_obs), 0.0, ell, nu)
    log_loss = np.asarray(traj.sample(jax.random.PRNGKey(seed)))
    frame = design.to_frame()
    frame["loss"] = np.exp(log_loss) * scale[fam_of][design.obs_family]
    truth = Truth(
        alpha=alpha,
        beta=beta,
        sigma_seed=sigma_seed,
        ell=ell,
        nu=nu,
        log_E=log_e,
        a=a,
        b=b,
        alpha_f=alpha_f,
        beta_f=beta_f,
        sigma_obs=np.full(f, sigma_obs),
        scale=scale,
        u=u,
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
