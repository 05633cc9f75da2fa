"""Fitting: ``fit()`` → :class:`Posterior` (an ArviZ DataTree plus its data).

NUTS is the default; chains run in parallel across host devices when there
are enough of them (see ``bayescale/__init__.py``), each started from a
jittered MAP estimate. Every fit is checked for divergences and R-hat, and
problems are raised as visible :class:`ConvergenceWarning` s.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass, field, replace

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import xarray as xr
from numpyro.infer import MCMC, NUTS, init_to_median

from bayescale.data import DEFAULT_MAX_POINTS, DEFAULT_MIN_TOKENS, ScalingData
from bayescale.model import COEFS, Priors, inputs_from_data, scaling_model
from bayescale.optim import map_search
from bayescale.posterior_base import (
    PosteriorBase,
    check_data_hash,
    draws_tree,
    jittered_inits,
    read_tree,
)

METHODS = ("nuts", "map")
# Within a family E, A and alpha trade off along a curved ridge, and the shared
# exponents tie all families together: a dense mass matrix over this block
# (diagonal elsewhere) cut NUTS trajectories from the 255-step cap to ~50-100.
DENSE_BLOCK = ("theta", "e_frac", "alpha", "beta", "alpha_f", "beta_f")


@dataclass(frozen=True)
class FitConfig:
    """Everything needed to reproduce a fit (stored with the saved file)."""

    law: str = "chinchilla"
    exponents: str = "pooled"
    method: str = "nuts"
    num_chains: int = 4
    num_warmup: int = 500
    num_samples: int = 500
    seed: int = 0
    target_accept: float = 0.9
    max_tree_depth: int = 8
    dense_mass: bool = True
    min_tokens: float | None = DEFAULT_MIN_TOKENS
    max_points_per_run: int | None = DEFAULT_MAX_POINTS
    map_starts: int = 3
    priors: Priors = field(default_factory=Priors)

    def to_json(self) -> str:
        d = asdict(self)
        d["priors"] = self.priors.to_dict()
        return json.dumps(d, sort_keys=True)

    @classmethod
    def from_json(cls, s: str) -> FitConfig:
        d = json.loads(s)
        d["priors"] = Priors.from_dict(d["priors"])
        return cls(**d)


_DIMS = {
    "theta": ["family", "coef"],
    "e_frac": ["family"],
    "log_E": ["family"],
    "a": ["family"],
    "b": ["family"],
    "alpha_f": ["family"],
    "beta_f": ["family"],
    "sigma_obs": ["family"],
    "z_u": ["run"],
    "u": ["run"],
    "mu_theta": ["coef"],
    "sigma_theta": ["coef"],
    "L_omega": ["coef", "coef_bis"],
    "innovation": ["obs"],
}


def _model_kwargs(data: ScalingData, config: FitConfig, observe: bool = True) -> dict:
    return {
        "inputs": inputs_from_data(data),
        "exponents": config.exponents,
        "law": config.law,
        "priors": config.priors,
        "observe": observe,
    }


def map_estimate(data: ScalingData, config: FitConfig, *, key=None):
    """Best of several L-BFGS runs on the posterior potential (see :mod:`bayescale.optim`).

    Returns
    -------
    best : dict
        Unconstrained parameter values at the best optimum.
    info : dict
        ``potential`` of the best start, all final potentials, number of starts.
    """
    key = jax.random.PRNGKey(config.seed) if key is None else key
    z_best, fs, postprocess_fn = map_search(
        scaling_model, _model_kwargs(data, config), n_starts=config.map_starts, key=key
    )
    return z_best, {
        "potential": float(np.min(fs)),
        "all_potentials": fs,
        "n_starts": len(fs),
        "postprocess_fn": postprocess_fn,
    }


def _unpinch_scales(z_map: dict, values: dict) -> dict:
    """Move population scales off the MAP's collapsed values.

    The joint density of a centred hierarchy grows without bound as a group
    scale shrinks to zero with every member at the mean, so the MAP pinches
    ``tau`` and ``sigma_theta`` towards 0: a funnel's neck, where NUTS gets
    stuck. Restart them at the spread of the MAP's own family values
    (unconstrained values of positive sites are logs).
    """
    z = dict(z_map)
    theta = np.asarray(values["theta"])
    n_fam = theta.shape[0]
    if "sigma_theta" in z:
        spread = np.std(theta, axis=0) if n_fam > 1 else np.full(theta.shape[1], 0.3)
        z["sigma_theta"] = jnp.log(jnp.asarray(np.maximum(spread, 0.1)))
    if "e_frac" in z:
        # Beta densities with a shape below 1 are unbounded at the edge, and
        # the MAP can run into E = the smallest loss (no reducible loss left
        # there); start the chains inside
        frac = np.clip(np.asarray(values["e_frac"]), 0.05, 0.95)
        z["e_frac"] = jnp.asarray(np.log(frac) - np.log1p(-frac))
        values = {**values, "e_frac": frac}
        if "e_mu" in z:
            e_mu = float(np.clip(np.asarray(values["e_mu"]), 0.05, 0.95))
            z["e_mu"] = jnp.asarray(np.log(e_mu) - np.log1p(-e_mu))
    if "e_kappa" in z and n_fam > 1:
        frac = np.asarray(values["e_frac"])
        m, v = frac.mean(), max(frac.var(), 1e-4)
        # method of moments for a Beta's concentration, kept moderate
        z["e_kappa"] = jnp.log(jnp.asarray(float(np.clip(m * (1 - m) / v - 1, 2.0, 50.0))))
    for tau, site in (("tau_alpha", "alpha_f"), ("tau_beta", "beta_f")):
        if tau in z:
            logs = np.log(np.asarray(values[site]))
            spread = float(np.std(logs)) if n_fam > 1 else 0.1
            z[tau] = jnp.log(jnp.asarray(max(spread, 0.05)))
    return z


def fit(
    data,
    *,
    law: str = "chinchilla",
    exponents: str = "pooled",
    method: str = "nuts",
    seed: int = 0,
    num_chains: int = 4,
    num_warmup: int = 500,
    num_samples: int = 500,
    target_accept: float = 0.9,
    max_tree_depth: int = 8,
    dense_mass: bool = True,
    families=None,
    min_tokens: float | None = DEFAULT_MIN_TOKENS,
    min_tokens_by_family: dict | None = None,
    max_points_per_run: int | None = DEFAULT_MAX_POINTS,
    priors: Priors | None = None,
    progress_bar: bool | None = None,
) -> Posterior:
    """Fit the hierarchical scaling law.

    Parameters
    ----------
    data : pandas.DataFrame or ScalingData
        Tidy loss table (DESIGN §2) or already-validated arrays.
    law : {"chinchilla", "overtrain"}
        ``"overtrain"`` ties ``alpha = beta`` (Gadre et al.'s (C, M) form).
    exponents : {"pooled", "shared"}
        Family exponents partially pooled around shared ones, or one pair.
    method : {"nuts", "map"}
        Full posterior by NUTS, or a MAP point estimate (one draw).
    seed : int
        Seed for everything random in the fit.
    num_chains, num_warmup, num_samples, target_accept, max_tree_depth
        NUTS settings.
    dense_mass : bool
        Adapt a dense mass matrix over the law block ``DENSE_BLOCK``.
    families, min_tokens, min_tokens_by_family, max_points_per_run
        Passed to :meth:`ScalingData.from_frame` when ``data`` is a frame.
    priors : Priors, optional
    progress_bar : bool, optional
        Default: shown when stderr is a terminal.

    Returns
    -------
    Posterior
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    config = FitConfig(
        law=law,
        exponents=exponents,
        method=method,
        num_chains=int(num_chains),
        num_warmup=int(num_warmup),
        num_samples=int(num_samples),
        seed=int(seed),
        target_accept=float(target_accept),
        max_tree_depth=int(max_tree_depth),
        dense_mass=bool(dense_mass),
        min_tokens=min_tokens,
        max_points_per_run=max_points_per_run,
        priors=priors or Priors(),
    )
    if isinstance(data, pd.DataFrame):
        data = ScalingData.from_frame(
            data,
            families=families,
            min_tokens=min_tokens,
            min_tokens_by_family=min_tokens_by_family,
            max_points_per_run=max_points_per_run,
        )
    elif not isinstance(data, ScalingData):
        raise TypeError("data must be a pandas DataFrame or a ScalingData")
    if progress_bar is None:
        progress_bar = sys.stderr.isatty()
    key = jax.random.PRNGKey(config.seed)
    k_map, k_jit, k_mcmc = jax.random.split(key, 3)
    z_map, map_info = map_estimate(data, config, key=k_map)
    if method == "map":
        samples = map_info["postprocess_fn"](z_map)
        samples = jax.tree.map(lambda v: np.asarray(v)[None, None], samples)
        tree = _tree_from_samples(samples, data)
        return Posterior(tree=tree, data=data, config=config)

    nchains = config.num_chains
    chain_method = "parallel" if jax.local_device_count() >= nchains else "sequential"
    kernel = NUTS(
        scaling_model,
        target_accept_prob=config.target_accept,
        max_tree_depth=config.max_tree_depth,
        dense_mass=[tuple(k for k in DENSE_BLOCK if k in z_map)] if config.dense_mass else False,
        init_strategy=init_to_median(num_samples=15),
    )
    mcmc = MCMC(
        kernel,
        num_warmup=config.num_warmup,
        num_samples=config.num_samples,
        num_chains=nchains,
        chain_method=chain_method,
        progress_bar=bool(progress_bar),
    )
    # chains start at the MAP, jittered
    z_start = _unpinch_scales(z_map, map_info["postprocess_fn"](z_map))
    init = jittered_inits(z_start, nchains, k_jit)
    mcmc.run(k_mcmc, init_params=init, extra_fields=("num_steps",), **_model_kwargs(data, config))
    samples = mcmc.get_samples()
    dims = {k: v for k, v in _DIMS.items() if k in samples or k == "innovation"}
    tree = _attach_data(draws_tree(mcmc, _coords(data), dims), data)
    post = Posterior(tree=tree, data=data, config=config)
    post.check(warn=True)
    return post


def _coords(data: ScalingData) -> dict:
    return {
        "family": list(data.families),
        "run": list(data.runs),
        "obs": np.arange(data.n_obs),
        "coef": list(COEFS),
        "coef_bis": list(COEFS),
    }


def _tree_from_samples(samples: dict, data: ScalingData) -> xr.DataTree:
    return _attach_data(draws_tree(samples, _coords(data), _DIMS), data)


def _attach_data(tree: xr.DataTree, data: ScalingData) -> xr.DataTree:
    const = xr.Dataset(
        {
            "family_scale": ("family", np.asarray(data.family_scale, dtype=float)),
            "run_family": ("run", np.asarray(data.run_family, dtype=np.int32)),
            "run_params": ("run", np.asarray(data.run_params, dtype=float)),
            "run_seed": ("run", np.asarray(data.run_seed, dtype=str)),
            "obs_run": ("obs", np.asarray(data.obs_run, dtype=np.int32)),
            "tokens": ("obs", np.asarray(data.tokens, dtype=float)),
            "first": ("obs", np.asarray(data.first, dtype=np.int8)),
        },
        coords={
            "family": list(data.families),
            "run": list(data.runs),
            "obs": np.arange(data.n_obs),
        },
    )
    obs = xr.Dataset(
        {"loss": ("obs", np.asarray(data.loss, dtype=float))}, coords={"obs": const.obs}
    )
    tree["constant_data"] = xr.DataTree(const)
    tree["observed_data"] = xr.DataTree(obs)
    report = xr.Dataset(
        {c: ("family", data.report[c].to_numpy()) for c in data.report.columns if c != "family"},
        coords={"family": list(data.report["family"])},
    )
    tree["data_report"] = xr.DataTree(report)
    return tree


def _data_from_tree(tree: xr.DataTree, min_tokens: float) -> ScalingData:
    const = tree["constant_data"].to_dataset()
    rep = tree["data_report"].to_dataset()
    report = pd.DataFrame({"family": rep["family"].values.astype(str)})
    for name in rep.data_vars:
        report[name] = rep[name].values
    return ScalingData(
        families=tuple(str(f) for f in const["family"].values),
        family_scale=const["family_scale"].values.astype(float),
        runs=tuple(str(r) for r in const["run"].values),
        run_family=const["run_family"].values.astype(np.int32),
        run_params=const["run_params"].values.astype(float),
        run_seed=tuple(str(s) for s in const["run_seed"].values),
        obs_run=const["obs_run"].values.astype(np.int32),
        tokens=const["tokens"].values.astype(float),
        loss=tree["observed_data"]["loss"].values.astype(float),
        first=const["first"].values.astype(bool),
        report=report,
        min_tokens=min_tokens,
    )


@dataclass(frozen=True)
class Posterior(PosteriorBase):
    """A fitted hierarchical scaling law.

    Attributes
    ----------
    tree : xarray.DataTree
        ArviZ 1.x tree: ``posterior``, ``sample_stats`` and ``log_likelihood``
        (NUTS), ``constant_data``/``observed_data`` (the fitted arrays) and
        ``data_report`` (what the warm-up cut and thinning removed).
    data : ScalingData
    config : FitConfig
    """

    tree: xr.DataTree
    data: ScalingData
    config: FitConfig

    _WARN_ADVICE = (
        "Intervals may be unreliable: run longer (--warmup/--samples), or raise target_accept."
    )
    _SKIP_VARS = ("L_omega",)

    # -- summaries ---------------------------------------------------------------
    def summary(self, var_names=None, **kwargs) -> pd.DataFrame:
        """ArviZ summary (defaults: 89% equal-tailed intervals, numbers unrounded)."""
        from arviz_stats import summary

        if var_names is None:
            var_names = ["alpha", "beta", "log_E", "a", "b", "alpha_f", "beta_f", "sigma_seed"]
            var_names += ["e_mu"]
            var_names += ["sigma_obs", "ell", "nu"]
            if self.config.exponents == "pooled":
                var_names += ["tau_alpha"] + (
                    ["tau_beta"] if self.config.law != "overtrain" else []
                )
        kwargs.setdefault("round_to", "none")
        if self.config.method == "map":
            kwargs.setdefault("kind", "stats")
        return summary(self.tree, var_names=var_names, **kwargs)

    # -- queries (implemented in predict.py) ---------------------------------------
    def predict(self, family, params, tokens, *, kind="mean", prob=0.9, draws=False, seed=0):
        """Posterior predictive loss; see :func:`bayescale.predict.predict`."""
        from bayescale.predict import predict

        return predict(
            self, family, params, tokens, kind=kind, prob=prob, return_draws=draws, seed=seed
        )

    def compute_optimal(self, flops, *, family, prob=0.9, seed=0):
        """Compute-optimal allocation; see :func:`bayescale.predict.compute_optimal`."""
        from bayescale.predict import compute_optimal

        return compute_optimal(self, flops, family=family, prob=prob, seed=seed)

    def predict_downstream(
        self, down_post, *, family, params, tokens, tasks="avg17", kind="mean", prob=0.9, seed=0
    ):
        """Chained downstream error; see :func:`bayescale.downstream.predict_downstream`."""
        from bayescale.downstream import predict_downstream

        return predict_downstream(
            self,
            down_post,
            family=family,
            params=params,
            tokens=tokens,
            tasks=tasks,
            kind=kind,
            prob=prob,
            seed=seed,
        )

    # -- persistence -------------------------------------------------------------
    def save(self, path) -> None:
        """Write a netCDF file with the tree, config, package version and data hash."""
        self._write(path, "bayescale_config")


def load(path, *, data=None) -> Posterior:
    """Read a fit written by :meth:`Posterior.save`.

    Parameters
    ----------
    path : str or path-like
    data : ScalingData, optional
        If given, its hash must match the one stored in the file.

    Raises
    ------
    FitFileError
        If the file is not a bayescale fit, or the data hash does not match.
    """
    tree = read_tree(
        path,
        "bayescale_config",
        kind="a loss-law fit",
        other_attr="bayescale_downstream_config",
        other="a downstream fit (read it with bayescale.load_downstream)",
    )
    config = FitConfig.from_json(tree.attrs["bayescale_config"])
    stored = _data_from_tree(tree, config.min_tokens if config.min_tokens is not None else np.nan)
    check_data_hash(path, tree, stored, data)
    return Posterior(tree=tree, data=stored, config=config)


def with_tree(post: Posterior, tree: xr.DataTree) -> Posterior:
    """A copy of ``post`` with another tree (e.g. reweighted draws)."""
    return replace(post, tree=tree)
