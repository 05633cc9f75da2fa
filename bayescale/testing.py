"""Posteriors for tests and examples, built without sampling.

:func:`posterior` fits the MAP of the model to a small synthetic table and
draws from the Laplace approximation there, in the model's own unconstrained
space, so every site (including the ones the model derives) is consistent
with the model whatever its current form. It takes seconds, not minutes, and
has a known law (:data:`TRUE`), so plots, reports and queries can be tested
against it.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import xarray as xr

from bayescale import laws
from bayescale.data import ScalingData

#: The published Chinchilla law (Hoffmann et al.) the synthetic families follow.
TRUE = {"E": 1.7, "A": 400.0, "B": 410.0, "alpha": 0.34, "beta": 0.28}


def synthetic_frame(
    families=("fam-a", "fam-b"), sizes=(1e8, 3e8, 1e9), n_ckpt: int = 8, seed: int = 0
) -> pd.DataFrame:
    """Chinchilla-law loss curves with 0.3% noise: one run per size and family.

    Family ``i`` has the law of :data:`TRUE` scaled by ``1 + 0.1 i``.
    """
    rng = np.random.default_rng(seed)
    rows = []
    for i, fam in enumerate(families):
        shift = 1.0 + 0.1 * i
        for n in sizes:
            tokens = np.geomspace(1e10, 200 * n, n_ckpt)
            loss = shift * laws.chinchilla(n, tokens, **TRUE)
            loss = np.asarray(loss) * np.exp(rng.normal(0, 0.003, n_ckpt))
            rows += [
                {"family": fam, "run": f"{fam}-{n:.0e}", "params": n, "tokens": t, "loss": v}
                for t, v in zip(tokens, loss, strict=True)
            ]
    return pd.DataFrame(rows)


def posterior(
    frame: pd.DataFrame | None = None,
    *,
    exponents: str = "pooled",
    law: str = "chinchilla",
    chains: int = 4,
    draws: int = 250,
    divergences: int = 0,
    chain_shift: float = 0.0,
    seed: int = 0,
):
    """A sampled-looking :class:`~bayescale.posterior.Posterior` around the MAP.

    Parameters
    ----------
    frame : pandas.DataFrame, optional
        Tidy loss table; default :func:`synthetic_frame`.
    exponents, law : str
        Model form, as in :class:`~bayescale.fitting.FitConfig`.
    chains, draws : int
    divergences : int
        Mark that many draws as divergent.
    chain_shift : float
        Add this to the last chain of ``alpha`` (a large R-hat).
    seed : int
    """
    import jax
    from jax.flatten_util import ravel_pytree

    from bayescale.fitting import FitConfig, model_kwargs, pointwise_log_likelihood
    from bayescale.model import scaling_model
    from bayescale.optim import map_search
    from bayescale.posterior import Posterior, build_tree

    frame = synthetic_frame(seed=seed) if frame is None else frame
    config = FitConfig(
        exponents=exponents, law=law, num_chains=chains, num_warmup=draws, num_samples=draws,
        min_tokens=None, max_points_per_run=None, seed=seed,
    )  # fmt: skip
    data = ScalingData.from_frame(frame, **config.data_options())
    inputs = data.inputs()
    z_map, _, info = map_search(
        scaling_model, model_kwargs(inputs, config), n_starts=1, key=jax.random.PRNGKey(seed)
    )
    flat, unravel = ravel_pytree(z_map)
    # jitted: eager op-by-op differentiation of the model costs minutes per call
    hessian = jax.jit(jax.hessian(lambda x: info.potential_fn(unravel(x))))
    hess = np.asarray(hessian(flat), dtype=float)
    # Laplace: N(mode, H^-1); directions the data hardly constrain (group scales
    # of a two-family hierarchy) are held to an sd of 0.05 instead of their prior width
    w, v = np.linalg.eigh(0.5 * (hess + hess.T))
    w = np.maximum(w, 400.0)
    rng = np.random.default_rng(seed + 1)
    eps = rng.standard_normal((chains * draws, flat.size))
    x = np.asarray(flat)[None, :] + (eps / np.sqrt(w)) @ v.T
    values = jax.jit(jax.vmap(lambda xi: info.postprocess_fn(unravel(xi))))(x.astype(flat.dtype))
    samples = {k: np.array(v).reshape((chains, draws) + np.shape(v)[1:]) for k, v in values.items()}
    samples["alpha"][-1] += chain_shift
    log_lik = {"y": pointwise_log_likelihood(inputs, samples)}
    tree = build_tree(samples, data, log_likelihood=log_lik)
    diverging = np.zeros((chains, draws), dtype=bool)
    diverging.ravel()[:divergences] = True
    tree["sample_stats"] = xr.DataTree(
        xr.Dataset(
            {"diverging": (("chain", "draw"), diverging)},
            coords={"chain": np.arange(chains), "draw": np.arange(draws)},
        )
    )
    return Posterior(tree=tree, data=data, config=config)


def point_estimate(post):
    """The first draw of ``post`` as a one-draw MAP posterior."""
    tree = post.tree.copy()
    tree["posterior"] = xr.DataTree(post.tree["posterior"].to_dataset().isel(chain=[0], draw=[0]))
    for group in ("sample_stats", "log_likelihood"):
        if group in tree.children:
            del tree[group]
    return replace(post, tree=tree, config=replace(post.config, method="map", num_chains=1))
