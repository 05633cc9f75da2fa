"""Fitting the downstream law: :func:`fit_downstream` -> :class:`DownstreamPosterior`.

The same inference as the loss law (:mod:`bayescale.inference`): MAP start,
NUTS, an ArviZ DataTree, visible diagnostics, atomic and checksummed files.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

import numpy as np
import pandas as pd
import xarray as xr

from bayescale import fitfile
from bayescale.devices import float64
from bayescale.downstream.data import TASK_SETS, DownstreamData
from bayescale.downstream.model import TASK_VARS, DownstreamPriors, downstream_model
from bayescale.inference import InferenceConfig, PosteriorBase, draws_tree, run
from bayescale.options import DEFAULT_CI_PROB, check_ci_prob

CONFIG_ATTR = "bayescale_downstream_config"
_DIMS = {
    **{f"z_{n}": ["task"] for n in ("ceiling", "floor", "rate", "midpoint", "dispersion")},
    **{v: ["task"] for v in TASK_VARS},
    "z_shift": ["family"],
    "shift": ["family"],
    "correct": ["obs"],
}


@dataclass(frozen=True)
class DownstreamConfig(InferenceConfig):
    """Everything needed to reproduce a downstream fit (stored with the saved file).

    Sampler settings as in :class:`~bayescale.inference.InferenceConfig`
    (here ``target_accept`` 0.95 and 8 MAP starts by default).
    """

    target_accept: float = 0.95
    map_starts: int = 8
    priors: DownstreamPriors = field(default_factory=DownstreamPriors)

    _PRIORS = DownstreamPriors


def fit_downstream(
    data,
    config: DownstreamConfig | None = None,
    *,
    tasks=None,
    families=None,
    progress_bar=None,
    **options,
) -> DownstreamPosterior:
    """Fit the hierarchical per-task downstream law.

    Computes in float64 (within this call only; JAX's settings are left as
    they were): beta-binomial log-densities of 10k-item tasks difference
    large log-gamma values, and float32 round-off there stalls NUTS.

    Parameters
    ----------
    data : pandas.DataFrame or DownstreamData
        One row per run x task (see :meth:`DownstreamData.from_frame`); e.g.
        ``load_dataset("gadre_downstream").query("default_fit_err")``.
    config : DownstreamConfig, optional
    tasks, families : list of str, optional
        Fit only these (when ``data`` is a frame).
    progress_bar : bool, optional
    **options
        Fields of :class:`DownstreamConfig` overriding ``config``.

    Returns
    -------
    DownstreamPosterior
    """
    known = {f.name for f in fields(DownstreamConfig)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise TypeError(f"fit_downstream() got unknown option(s) {unknown}")
    config = replace(config or DownstreamConfig(), **options)
    if isinstance(data, pd.DataFrame):
        data = DownstreamData.from_frame(data, tasks=tasks, families=families)
    elif not isinstance(data, DownstreamData):
        raise TypeError("data must be a pandas DataFrame or a DownstreamData")
    kwargs = {"inputs": data.inputs(), "priors": config.priors}
    with float64():
        samples, stats, config = run(
            downstream_model,
            kwargs,
            config,
            skip=DownstreamPosterior._SKIP_VARS,
            progress_bar=progress_bar,
            what="downstream fit",
        )
        log_lik = None
        if stats is not None:
            from numpyro.infer import log_likelihood

            flat = {k: v.reshape((-1,) + v.shape[2:]) for k, v in samples.items()}
            ll = log_likelihood(downstream_model, flat, **kwargs)["correct"]
            log_lik = {"correct": np.asarray(ll).reshape(config.num_chains, -1, ll.shape[-1])}
        samples = {k: np.asarray(v) for k, v in samples.items()}
        tree = _tree(samples, data, stats=stats, log_likelihood=log_lik)
    post = DownstreamPosterior(tree=tree, data=data, config=config)
    if stats is not None:
        post.check(warn=True)
    return post


def _coords(data: DownstreamData) -> dict:
    return {"task": list(data.tasks), "family": list(data.families), "obs": np.arange(data.n_obs)}


def _tree(samples: dict, data: DownstreamData, *, stats=None, log_likelihood=None):
    tree = draws_tree(samples, _coords(data), _DIMS, stats=stats, log_likelihood=log_likelihood)
    const = xr.Dataset(
        {
            "chance_err": ("task", np.asarray(data.chance_err, dtype=float)),
            "n_items": ("task", np.asarray(data.n_items, dtype=np.int64)),
            "run_family": ("run", np.asarray(data.run_family, dtype=np.int32)),
            "run_loss": ("run", np.asarray(data.run_loss, dtype=float)),
            "obs_task": ("obs", np.asarray(data.obs_task, dtype=np.int32)),
            "obs_run": ("obs", np.asarray(data.obs_run, dtype=np.int32)),
        },
        coords={
            "task": list(data.tasks),
            "family": list(data.families),
            "run": list(data.runs),
            "obs": np.arange(data.n_obs),
        },
        attrs={"loss_ref": float(data.loss_ref)},
    )
    obs = xr.Dataset(
        {"correct": ("obs", np.asarray(data.correct, dtype=np.int64))}, coords={"obs": const.obs}
    )
    tree["constant_data"] = xr.DataTree(const)
    tree["observed_data"] = xr.DataTree(obs)
    return tree


def _data_from_tree(tree: xr.DataTree) -> DownstreamData:
    const = tree["constant_data"].to_dataset()
    return DownstreamData(
        tasks=tuple(str(t) for t in const["task"].values),
        chance_err=const["chance_err"].values.astype(float),
        n_items=const["n_items"].values.astype(np.int64),
        families=tuple(str(f) for f in const["family"].values),
        runs=tuple(str(r) for r in const["run"].values),
        obs_task=const["obs_task"].values.astype(np.int32),
        obs_run=const["obs_run"].values.astype(np.int32),
        run_family=const["run_family"].values.astype(np.int32),
        run_loss=const["run_loss"].values.astype(float),
        correct=tree["observed_data"]["correct"].values.astype(np.int64),
        loss_ref=float(const.attrs["loss_ref"]),
    )


@dataclass(frozen=True)
class DownstreamPosterior(PosteriorBase):
    """A fitted downstream model.

    Per-task ``eps``, ``floor``, ``gamma``, ``midpoint`` and ``k`` are stated
    on the population's loss scale; corpus ``f`` sees each law at
    ``L - shift_f`` (so its own ``k`` is ``k exp(gamma shift_f)``).

    Attributes
    ----------
    tree : xarray.DataTree
        ``posterior`` (dims ``task``, ``family``), ``sample_stats`` and
        ``log_likelihood`` (dim ``obs``; NUTS), ``constant_data`` and
        ``observed_data`` (the fitted counts).
    data : DownstreamData
    config : DownstreamConfig
    """

    tree: xr.DataTree
    data: DownstreamData
    config: DownstreamConfig

    _WARN_PREFIX = "downstream fit: "

    @classmethod
    def from_draws(cls, draws: dict, data: DownstreamData, config=None) -> DownstreamPosterior:
        """A posterior from draws shaped (chain, draw, ...) of the model's sites (e.g. tests)."""
        return cls(_tree(draws, data), data, config or DownstreamConfig())

    @property
    def tasks(self) -> tuple:
        return self.data.tasks

    def summary(self, var_names=None, *, ci_prob: float = DEFAULT_CI_PROB, **kwargs):
        """ArviZ summary of the task laws, ``ci_prob`` equal-tailed intervals."""
        from arviz_stats import summary

        var_names = var_names or ["eps", "floor", "k", "gamma", "phi", "shift", "tau_shift"]
        if self.is_point_estimate:
            kwargs.setdefault("kind", "stats")
        kwargs.setdefault("ci_kind", "eti")
        return summary(self.tree, var_names=var_names, ci_prob=check_ci_prob(ci_prob), **kwargs)

    def task_sets(self) -> dict:
        """Task averages this fit can predict: the paper's sets it covers, and "all"."""
        sets = {k: v for k, v in TASK_SETS.items() if set(v) <= set(self.tasks)}
        return sets | {"all": self.tasks}

    def predict(
        self, loss, *, family=None, tasks="avg17", kind="mean", ci_prob=DEFAULT_CI_PROB, seed=0
    ):
        """Predicted error at a known loss; see :func:`bayescale.downstream.predict_error`."""
        from bayescale.downstream.queries import predict_error

        return predict_error(
            self, loss, family=family, tasks=tasks, kind=kind, ci_prob=ci_prob, seed=seed
        )

    def __repr__(self) -> str:
        d = self.data
        return (
            f"<DownstreamPosterior: {len(d.tasks)} tasks, {len(d.families)} families, "
            f"{len(d.runs)} runs; {self.config.label()}>"
        )

    def save(self, path, *, overwrite: bool = False):
        """Write the fit (tree, config, version, checksums) atomically to a netCDF file."""
        return fitfile.write_tree(
            self.tree,
            path,
            {CONFIG_ATTR: self.config.to_json(), "bayescale_data_hash": self.data.hash()},
            overwrite=overwrite,
        )


def load_downstream(path, *, data: DownstreamData | None = None) -> DownstreamPosterior:
    """Read a fit written by :meth:`DownstreamPosterior.save`.

    Raises
    ------
    FitFileError
        Unreadable or altered file, a loss-law fit instead of a downstream
        one, or a data hash that does not match (the stored one, or ``data``'s).
    """
    tree = fitfile.read_tree(
        path,
        config_attr=CONFIG_ATTR,
        kind="a downstream fit",
        groups=("posterior", "constant_data", "observed_data"),
        variables={"posterior": ("eps", "floor", "gamma", "midpoint", "phi", "tau_shift")},
    )
    try:
        config = DownstreamConfig.from_dict(fitfile.load_config_json(path, tree.attrs[CONFIG_ATTR]))
        stored = _data_from_tree(tree)
    except fitfile.FitFileError:
        raise
    except Exception as exc:  # noqa: BLE001 - a valid checksum over invalid contents
        raise fitfile.FitFileError(f"{path}: cannot rebuild the fit ({exc})") from None
    if stored.hash() != tree.attrs.get("bayescale_data_hash"):
        raise fitfile.FitFileError(f"{path}: stored data do not match the stored hash")
    if data is not None and data.hash() != stored.hash():
        raise fitfile.FitFileError(f"{path} was fitted to different data")
    return DownstreamPosterior(tree=tree, data=stored, config=config)
