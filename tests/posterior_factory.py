"""Hand-made posteriors for plot and report tests (no sampling).

The draws are random around known values, stored in the same DataTree layout
as a real fit (``fit._tree_from_samples`` / ``_attach_data``), with optional
``sample_stats`` and ``log_likelihood`` groups so that diagnostics and LOO run.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from bayescale import laws
from bayescale.data import ScalingData
from bayescale.fit import FitConfig, Posterior, _tree_from_samples
from bayescale.model import inputs_from_data

TRUE = {"alpha": 0.34, "beta": 0.28, "E": 1.7, "A": 400.0, "B": 410.0}


def synthetic_frame(
    families=("fam-a", "fam-b"), sizes=(1e8, 3e8, 1e9), n_ckpt=8, seed=0
) -> pd.DataFrame:
    """Chinchilla-law loss curves with small noise: one run per size and family."""
    rng = np.random.default_rng(seed)
    rows = []
    for i, fam in enumerate(families):
        shift = 1.0 + 0.1 * i
        for n in sizes:
            tokens = np.geomspace(1e10, 20 * n * 10, n_ckpt)
            loss = shift * laws.chinchilla(
                n, tokens, TRUE["E"], TRUE["A"], TRUE["B"], TRUE["alpha"], TRUE["beta"]
            )
            loss = np.asarray(loss) * np.exp(rng.normal(0, 0.003, n_ckpt))
            for t, value in zip(tokens, loss, strict=True):
                rows.append(
                    {
                        "family": fam,
                        "run": f"{fam}-{n:.0e}",
                        "params": n,
                        "tokens": t,
                        "loss": float(value),
                    }
                )
    return pd.DataFrame(rows)


def synthetic_posterior(
    *,
    families=("fam-a", "fam-b"),
    exponents="pooled",
    chains=4,
    draws=250,
    divergences=0,
    chain_shift=0.0,
    log_lik=True,
    seed=0,
) -> Posterior:
    """A :class:`Posterior` with random draws near the true law of :func:`synthetic_frame`.

    ``divergences`` marks that many draws as divergent; ``chain_shift`` moves
    the second chain of ``alpha`` to make R-hat large.
    """
    frame = synthetic_frame(families=families, seed=seed)
    data = ScalingData.from_frame(frame, min_tokens=None, max_points_per_run=None)
    rng = np.random.default_rng(seed + 1)
    nf, nr = data.n_families, data.n_runs
    shape = (chains, draws)

    def around(value, sd, extra=()):
        return value + sd * rng.standard_normal(shape + tuple(extra))

    log_e0, a0, b0 = (
        float(v)
        for v in laws.published_to_centered(
            TRUE["E"], TRUE["A"], TRUE["B"], TRUE["alpha"], TRUE["beta"]
        )
    )
    # relative scale: divide the law by each family's loss constant
    rel = np.log(data.family_scale)
    alpha = around(TRUE["alpha"], 0.01)
    alpha[-1] += chain_shift
    beta = around(TRUE["beta"], 0.01)
    pooled = exponents == "pooled"
    alpha_f = alpha[..., None] * np.exp(around(0.0, 0.02, (nf,))) if pooled else alpha[..., None]
    beta_f = beta[..., None] * np.exp(around(0.0, 0.02, (nf,))) if pooled else beta[..., None]
    shift = np.log(1.0 + 0.1 * np.arange(nf))
    inputs = inputs_from_data(data)
    log_e = np.minimum(around(log_e0, 0.02, (nf,)) + shift - rel, inputs.log_e_max - 0.01)
    a = around(a0, 0.05, (nf,)) + shift - rel
    b = around(b0, 0.05, (nf,)) + shift - rel
    samples = {
        "alpha": alpha,
        "beta": beta,
        "alpha_f": np.broadcast_to(alpha_f, shape + (nf,)).copy(),
        "beta_f": np.broadcast_to(beta_f, shape + (nf,)).copy(),
        "e_frac": np.exp(log_e - inputs.log_e_max),
        "e_mu": np.clip(around(0.6, 0.05), 0.05, 0.95),
        "e_kappa": np.abs(around(10.0, 1.0)),
        "log_E": log_e,
        "theta": np.stack([a, b], axis=-1),
        "a": a,
        "b": b,
        "mu_theta": around(0.0, 0.1, (2,)) + np.array([a0, b0]),
        "sigma_theta": np.abs(around(0.3, 0.05, (2,))),
        "L_omega": np.broadcast_to(np.eye(2), shape + (2, 2)).copy(),
        "sigma_seed": np.abs(around(0.01, 0.002)),
        "z_u": around(0.0, 1.0, (nr,)),
        "u": around(0.0, 0.005, (nr,)),
        "sigma_obs": np.abs(around(0.003, 0.0005, (nf,))),
        "ell": np.abs(around(0.3, 0.03)),
        "nu": np.abs(around(5.0, 0.5)),
    }
    if pooled:
        samples["tau_alpha"] = np.abs(around(0.05, 0.01))
        samples["tau_beta"] = np.abs(around(0.05, 0.01))
    tree = _tree_from_samples(samples, data)
    diverging = np.zeros(shape, dtype=bool)
    diverging.ravel()[:divergences] = True
    tree["sample_stats"] = xr.DataTree(
        xr.Dataset(
            {"diverging": (("chain", "draw"), diverging)},
            coords={"chain": np.arange(chains), "draw": np.arange(draws)},
        )
    )
    if log_lik:
        # well-behaved pointwise log-likelihood: Gaussian around a per-draw offset
        mu = 0.01 * rng.standard_normal(shape + (1,))
        y = 0.01 * rng.standard_normal(data.n_obs)
        ll = -0.5 * ((y - mu) / 0.05) ** 2 - np.log(0.05 * np.sqrt(2 * np.pi))
        tree["log_likelihood"] = xr.DataTree(
            xr.Dataset(
                {"innovation": (("chain", "draw", "obs"), ll)},
                coords={
                    "chain": np.arange(chains),
                    "draw": np.arange(draws),
                    "obs": np.arange(data.n_obs),
                },
            )
        )
    config = FitConfig(
        exponents=exponents,
        method="nuts",
        num_chains=chains,
        num_warmup=draws,
        num_samples=draws,
        min_tokens=None,
        max_points_per_run=None,
    )
    return Posterior(tree=tree, data=data, config=config)


def map_like(post: Posterior) -> Posterior:
    """The first draw of ``post`` as a one-draw MAP posterior."""
    from dataclasses import replace

    tree = post.tree.copy()
    tree["posterior"] = xr.DataTree(post.tree["posterior"].to_dataset().isel(chain=[0], draw=[0]))
    for group in ("sample_stats", "log_likelihood"):
        if group in tree.children:
            del tree[group]
    return replace(post, tree=tree, config=replace(post.config, method="map", num_chains=1))
