"""Inference shared by every model: MAP start, NUTS, DataTree, the posterior base.

A fit runs the same steps for the loss law and the downstream law:

1. a MAP estimate, the best of several L-BFGS starts (:mod:`bayescale.optim`);
2. for ``method="map"``, that point is the result (one draw);
3. otherwise NUTS, one chain per device in parallel (see
   :func:`bayescale.set_host_device_count`), each chain started from its own
   point around the MAP so that R-hat can see chains that disagree (or, with
   ``start="prior"``, from its own prior draw and without step 1);
4. while the worst R-hat lies between 1.01 and 1.05 (where more draws, not a
   new warm-up, can settle it), up to ``extend`` further rounds of draws from
   where the chains stopped;
5. while the draws have divergent transitions, up to ``retry`` fresh warm-ups
   from the same starts at a higher target acceptance (smaller steps), or at
   0.99 with twice the warm-up (:func:`retried`), kept unless its chains agree
   less or it diverges more (:func:`keeps_retry`);
6. draws, sampling statistics and pointwise log-likelihood as an ArviZ
   DataTree, then R-hat, ESS and divergences checked
   (:mod:`bayescale.convergence`): problems are raised as a visible
   :class:`~bayescale.convergence.ConvergenceWarning`, never silently.
"""

from __future__ import annotations

import copy
import functools
import json
import warnings
from dataclasses import asdict, dataclass, fields, replace

import numpy as np

from bayescale import progress
from bayescale.convergence import (
    RHAT_CHANCE,
    RHAT_MAX,
    ConvergenceWarning,
    convergence_advice,
    raised_accept,
    rhat_summary,
    sampling_diagnostics,
)
from bayescale.options import METHODS, STARTS, check_choice

#: Integer settings of :class:`InferenceConfig` and the least value each may take.
_COUNTS = {"num_chains": 1, "num_warmup": 0, "num_samples": 1, "max_tree_depth": 1}
_COUNTS |= {"map_starts": 1, "extend": 0, "retry": 0}


@dataclass(frozen=True)
class InferenceConfig:
    """Sampler settings shared by the loss-law and downstream fits.

    Attributes
    ----------
    method : {"nuts", "map"}
        Full posterior by NUTS, or the MAP point alone (no intervals from
        parameter uncertainty).
    num_chains, num_warmup, num_samples : int
        NUTS chains, warm-up (adaptation) steps and kept draws per chain.
    seed : int
        Seed of everything random in the fit.
    target_accept : float
        NUTS target acceptance probability; raise it (e.g. 0.95) when a fit
        reports divergent transitions.
    max_tree_depth : int
        NUTS maximum tree depth (at most ``2**depth`` steps per draw).
    map_starts : int
        L-BFGS starts of the MAP search.
    start : {"map", "prior"}
        Where the NUTS chains start: ``"map"`` around the MAP (moved off its
        edges, small jitter per chain); ``"prior"`` each from its own draw of
        the prior, with no MAP search, so that chains reach separate modes
        (and R-hat flags them) where a search from one point finds only one.
    extend : int
        Rounds of ``num_samples`` further draws per chain (same step size and
        mass matrix, no new warm-up), each taken only while the worst R-hat
        lies in (``RHAT_MAX``, ``RHAT_CHANCE``]: there chains that agree may
        not yet have drawn enough to show it. 0 keeps ``num_samples`` draws.
    retry : int
        Fresh warm-ups while the chains report divergent transitions, each at
        a higher ``target_accept`` (0.95, then 0.99) or, at 0.99, with twice
        the warm-up steps (:func:`retried`). A retry's draws replace the
        previous ones unless their chains agree less (a higher band of R-hat)
        or, at the same agreement, they diverge more (:func:`keeps_retry`);
        the posterior's config records the settings of the draws kept, so a
        refit with it gives the same draws. 0: never.
    """

    method: str = "nuts"
    num_chains: int = 4
    num_warmup: int = 500
    num_samples: int = 500
    seed: int = 0
    target_accept: float = 0.9
    max_tree_depth: int = 8
    map_starts: int = 3
    start: str = "map"
    extend: int = 2
    retry: int = 1

    _PRIORS = None  # the priors class of subclasses that carry a ``priors`` field

    def __post_init__(self):
        check_choice("method", self.method, METHODS)
        check_choice("start", self.start, STARTS)
        for name, least in _COUNTS.items():
            value = getattr(self, name)
            if int(value) != value or value < least:
                kind = "positive" if least else "non-negative"
                raise ValueError(f"{name} must be a {kind} integer, got {value!r}")
        if not 0 < float(self.target_accept) < 1:
            raise ValueError(f"target_accept must be in (0, 1), got {self.target_accept!r}")

    def to_json(self) -> str:
        d = asdict(self)
        if hasattr(self, "priors"):
            d["priors"] = self.priors.to_dict()
        return json.dumps(d, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict):
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown config field(s) {unknown}")
        d = dict(d)
        if "priors" in d and isinstance(d["priors"], dict):
            d["priors"] = cls._PRIORS.from_dict(d["priors"])
        return cls(**d)

    def label(self) -> str:
        """``"map"``, ``"nuts 4x(500+500)"``, or with another acceptance ``"... accept 0.95"``."""
        if self.method == "map":
            return "map"
        label = f"nuts {self.num_chains}x({self.num_warmup}+{self.num_samples})"
        default = type(self).__dataclass_fields__["target_accept"].default
        return label if self.target_accept == default else f"{label} accept {self.target_accept:g}"


def run(
    model,
    model_kwargs: dict,
    config: InferenceConfig,
    *,
    move_start=None,
    map_kwargs=None,
    dense_block=(),
    skip=(),
    progress_bar=None,
    what: str = "fit",
):
    """MAP, then NUTS: the draws of ``model`` as arrays shaped (chain, draw, ...).

    Parameters
    ----------
    model : callable
        NumPyro model function.
    model_kwargs : dict
        Its keyword arguments.
    config : InferenceConfig
    move_start : callable, optional
        ``move_start(z_map, values) -> z``: move the MAP (unconstrained values
        ``z_map``, constrained ``values``) to a better place to start chains.
    map_kwargs : dict, optional
        Keyword arguments of the model for the MAP search (default
        ``model_kwargs``): other coordinates of the same model, which
        ``move_start`` then maps to the sampler's.
    dense_block : sequence of str
        Sites sharing a dense mass matrix (diagonal elsewhere).
    skip : sequence of str
        Sites left out of the R-hat that decides on more draws (as in the
        fit's reported diagnostics).
    progress_bar : bool, optional
        Default: shown when a person is watching (:mod:`bayescale.progress`).
    what : str
        Name of the fit in progress messages.

    Returns
    -------
    samples : dict
        Site name -> array (chain, draw, ...).
    stats : dict or None
        Sampling statistics, each (chain, draw): ``diverging``, ``n_steps``,
        ``step_size``, ``lp`` (None for a MAP fit).
    config : InferenceConfig
        The settings the draws were made with: ``config``, or those of the
        retry whose draws were kept (:func:`retried`).
    """
    import jax

    from bayescale.optim import map_search

    show = progress.resolve(progress_bar)
    k_map, k_start, k_mcmc = jax.random.split(jax.random.PRNGKey(config.seed), 3)
    if config.method == "nuts" and config.start == "prior":
        init = prior_starts(model, model_kwargs, config.num_chains, k_start)
    else:
        z_map, _, info = map_search(
            model,
            model_kwargs if map_kwargs is None else map_kwargs,
            n_starts=config.map_starts,
            key=k_map,
            show=show,
            what=what,
        )
        values = info.postprocess_fn(z_map)
        if config.method == "map":
            return jax.tree.map(lambda v: np.asarray(v)[None, None], values), None, config
        z_start = move_start(z_map, values) if move_start is not None else z_map
        init = chain_starts(z_start, config.num_chains, k_start)
    if config.num_chains == 1:
        # NumPyro reads a leading chain axis only when there are several chains
        init = {name: z[0] for name, z in init.items()}
    dense = tuple(k for k in dense_block if k in init)
    nuts = functools.partial(
        _nuts,
        model,
        model_kwargs,
        init=init,
        key=k_mcmc,
        dense=dense,
        skip=skip,
        show=show,
        what=what,
    )
    samples, stats = nuts(config)
    for _ in range(config.retry):
        n_div = int(np.sum(stats["diverging"]))
        tried = retried(config)
        if not n_div or tried == config:
            break
        # same starts and key: a refit with the returned config repeats these draws
        desc = f"{what}: {n_div} divergent transitions, warm-up again ({tried.label()})"
        with progress.stage(desc, show):
            more, more_stats = nuts(tried)
        first = (n_div, _worst_rhat(samples, skip))
        if not keeps_retry(first, (int(np.sum(more_stats["diverging"])), _worst_rhat(more, skip))):
            break
        config, samples, stats = tried, more, more_stats
    return samples, stats, config


def keeps_retry(first: tuple[int, float], retry: tuple[int, float]) -> bool:
    """Whether a retry's draws replace the first ones.

    Each run is ``(divergences, worst R-hat)``. Chains that agree come first:
    runs are ranked by the band of their R-hat (at most ``RHAT_MAX``: agree; at
    most ``RHAT_CHANCE``: more draws may settle it; above: chains apart), then
    by their divergences, then by R-hat itself. The retry is kept unless it
    ranks below the first run: smaller steps whose chains disagree more, or that
    diverge more at the same agreement, are not better evidence.
    """

    def rank(run):
        n_div, rhat = run
        return (rhat > RHAT_MAX) + (rhat > RHAT_CHANCE), n_div, rhat

    return rank(retry) <= rank(first)


def retried(config: InferenceConfig) -> InferenceConfig:
    """The settings of a fresh warm-up after divergences: a higher target acceptance
    (:func:`~bayescale.convergence.raised_accept`), or at 0.99 twice the warm-up steps."""
    higher = raised_accept(config.target_accept)
    if higher > config.target_accept:
        return replace(config, target_accept=higher)
    return replace(config, num_warmup=2 * config.num_warmup)


def _nuts(model, model_kwargs, config, *, init, key, dense, skip, show, what):
    """Warm-up and draws from ``init``, then more draws while R-hat may settle (:func:`run`)."""
    import jax
    from numpyro.infer import MCMC, NUTS, init_to_median

    from bayescale.devices import chain_method

    kernel = NUTS(
        model,
        target_accept_prob=config.target_accept,
        max_tree_depth=config.max_tree_depth,
        dense_mass=[dense] if dense else False,
        init_strategy=init_to_median(num_samples=15),
    )
    mcmc = MCMC(
        kernel,
        num_warmup=config.num_warmup,
        num_samples=config.num_samples,
        num_chains=config.num_chains,
        chain_method=chain_method(config.num_chains, stacklevel=5),
        progress_bar=show,
    )
    fields = ("num_steps", "potential_energy")
    mcmc.run(key, init_params=init, extra_fields=fields, **model_kwargs)
    samples, stats = _drawn(mcmc)
    for round_ in range(config.extend):
        rhat = _worst_rhat(samples, skip)
        if not draws_can_settle(rhat):
            break
        # the chains go on from where they stopped, with their adapted kernel
        mcmc.post_warmup_state = mcmc.last_state
        desc = f"{what}: R-hat {rhat:.3f}, {config.num_samples} more draws per chain"
        with progress.stage(desc, show):
            mcmc.run(jax.random.fold_in(key, round_ + 1), extra_fields=fields, **model_kwargs)
        more, more_stats = _drawn(mcmc)
        samples = {k: np.concatenate([v, more[k]], axis=1) for k, v in samples.items()}
        stats = {k: np.concatenate([v, more_stats[k]], axis=1) for k, v in stats.items()}
    return samples, stats


def draws_can_settle(rhat: float) -> bool:
    """Whether more draws may settle an R-hat: it lies in (``RHAT_MAX``, ``RHAT_CHANCE``]."""
    return RHAT_MAX < rhat <= RHAT_CHANCE


def _drawn(mcmc) -> tuple[dict, dict]:
    """The last run's draws and sampling statistics, each (chain, draw, ...)."""
    samples = {k: np.asarray(v) for k, v in mcmc.get_samples(group_by_chain=True).items()}
    extra = mcmc.get_extra_fields(group_by_chain=True)
    diverging = np.asarray(extra["diverging"])
    # fixed after warm-up: one value per chain (a scalar with one chain)
    step = np.asarray(mcmc.last_state.adapt_state.step_size, dtype=float).reshape(-1, 1)
    stats = {
        "diverging": diverging,
        "n_steps": np.asarray(extra["num_steps"]),
        "step_size": np.broadcast_to(step, diverging.shape).copy(),
        "lp": -np.asarray(extra["potential_energy"]),
    }
    return samples, stats


def _worst_rhat(samples: dict, skip=()) -> float:
    """The largest finite R-hat over the draws, as :func:`sampling_diagnostics` reports it."""
    from arviz_base import from_dict

    names = [k for k in samples if not k.startswith("z_") and k not in skip]
    post = from_dict({"posterior": {k: samples[k] for k in names}})["posterior"].to_dataset()
    return rhat_summary(post)[0]


def chain_starts(z: dict, n_chains: int, key, scale: float = 0.1) -> dict:
    """One start per chain: ``z`` plus independent normal jitter (unconstrained space).

    Distinct starts let R-hat see chains that would not agree; the jitter is
    small enough that every chain starts in the bulk of the posterior.
    """
    import jax
    import jax.numpy as jnp

    keys = jax.random.split(key, len(z))
    return {
        name: z[name][None] + scale * jax.random.normal(k, (n_chains,) + jnp.shape(z[name]))
        for k, name in zip(keys, sorted(z), strict=True)
    }


def prior_starts(model, model_kwargs: dict, n_chains: int, key) -> dict:
    """One start per chain, each an independent draw of the prior (unconstrained space)."""
    import jax
    import jax.numpy as jnp
    from numpyro.infer import init_to_sample
    from numpyro.infer.util import initialize_model

    zs = [
        initialize_model(
            k, model, model_kwargs=model_kwargs, init_strategy=init_to_sample
        ).param_info.z
        for k in jax.random.split(key, n_chains)
    ]
    return jax.tree.map(lambda *z: jnp.stack(z), *zs)


def draws_tree(samples: dict, coords: dict, dims: dict, *, stats=None, log_likelihood=None):
    """ArviZ DataTree of draws (chain, draw, ...), with sampling stats and log-likelihood.

    Parameters
    ----------
    samples : dict
        Site -> array (chain, draw, ...). Variables missing from ``dims``
        get default dims.
    coords, dims : dict
        Coordinates and per-variable dims (those of absent variables are dropped).
    stats : dict, optional
        ``sample_stats`` (divergences, steps, step size, log density), as
        :func:`run` returns them.
    log_likelihood : dict, optional
        Observed variable -> pointwise log-likelihood (chain, draw, ...).
    """
    from arviz_base import from_dict

    groups = {"posterior": {k: np.asarray(v) for k, v in samples.items()}}
    if log_likelihood:
        groups["log_likelihood"] = {k: np.asarray(v) for k, v in log_likelihood.items()}
    if stats is not None:
        groups["sample_stats"] = {k: np.asarray(v) for k, v in stats.items()}
    names = set(groups["posterior"]) | set(groups.get("log_likelihood", {}))
    dims = {k: v for k, v in dims.items() if k in names}
    return from_dict(groups, coords=coords, dims=dims)


class PosteriorBase:
    """Mixin for frozen dataclasses with ``tree``, ``data`` and ``config`` fields.

    Subclasses set ``_WARN_PREFIX`` (start of the visible warning) and
    ``_SKIP_VARS`` (variables left out of the diagnostics).
    """

    _WARN_PREFIX = "sampling problems: "
    _SKIP_VARS: tuple = ()

    def draws(self, name: str) -> np.ndarray:
        """Posterior draws of one variable, chains stacked: shape (S, ...)."""
        arr = np.asarray(self.tree["posterior"][name].values)
        return arr.reshape((-1,) + arr.shape[2:])

    @property
    def n_draws(self) -> int:
        post = self.tree["posterior"]
        return int(post.sizes["chain"] * post.sizes["draw"])

    @property
    def is_point_estimate(self) -> bool:
        """A MAP fit: one draw, no intervals from parameter uncertainty."""
        return self.config.method == "map" or self.n_draws < 2

    @property
    def families(self) -> tuple:
        return self.data.families

    def diagnostics(self) -> dict:
        """R-hat (max), bulk/tail ESS (min), divergences, and a pass/warn status."""
        return copy.deepcopy(self._diagnostics)

    @functools.cached_property
    def _diagnostics(self) -> dict:
        # computed once: the fit's check, the CLI and the report each ask, and the
        # draws of a frozen posterior do not change
        return sampling_diagnostics(
            self.tree, self.config.method, skip=self._SKIP_VARS, spreads=self._spreads()
        )

    def _spreads(self) -> dict:
        """Spread sites of the hierarchy -> their prior means (checked on point estimates)."""
        return {}

    def check(self, warn: bool = True, *, style: str = "python") -> dict:
        """Run :meth:`diagnostics` and warn visibly about any problem."""
        diag = self.diagnostics()
        if warn and diag["problems"]:
            warnings.warn(
                self._WARN_PREFIX
                + "; ".join(diag["problems"])
                + ". "
                + convergence_advice(diag, self.config, style),
                ConvergenceWarning,
                stacklevel=3,
            )
        return diag
