"""Inference shared by every model: MAP start, NUTS, DataTree, diagnostics, the posterior base.

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
5. draws, sampling statistics and pointwise log-likelihood as an ArviZ
   DataTree, then R-hat, ESS and divergences checked: problems are raised as
   a visible :class:`ConvergenceWarning`, never silently.
"""

from __future__ import annotations

import copy
import functools
import json
import math
import warnings
from dataclasses import asdict, dataclass, fields

import numpy as np

from bayescale import progress
from bayescale.options import METHODS, STARTS, check_choice

RHAT_MAX = 1.01
#: Bulk ESS below which R-hat cannot resolve ``RHAT_MAX``: chains drawn from one
#: distribution (4 x 500 draws) exceed 1.01 by chance with probability 0.78 at
#: ESS 200, 0.32 at 400 and 0.07 at 600 (``benchmarks/rhat_resolution.py``);
#: Vehtari et al. (2021) ask for 400.
ESS_RESOLVE = 400
#: Above this R-hat chains disagree whatever the ESS: warm up longer as well.
RHAT_CHANCE = 1.05
#: A MAP spread below this share of its prior mean has fallen into the hierarchy's
#: neck: under the Gamma(2) spread priors a share this small has prior mass 0.5%.
SPREAD_COLLAPSED = 0.05
#: Where divergent draws are located: an entry is named when their mean lies at
#: least this many posterior sd from the other draws' mean ...
DIVERGENT_SHIFT = 0.5
#: ... and that shift, times the square root of the number of divergent draws,
#: reaches this (a chance shift of one of a few hundred entries rarely does).
DIVERGENT_SHIFT_Z = 4.0


#: Integer settings of :class:`InferenceConfig` and the least value each may take.
_COUNTS = {"num_chains": 1, "num_warmup": 0, "num_samples": 1, "max_tree_depth": 1}
_COUNTS |= {"map_starts": 1, "extend": 0}


class ConvergenceWarning(UserWarning):
    """R-hat above 1.01, divergent transitions, low ESS, or a MAP spread at zero."""


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
        """``"map"`` or ``"nuts 4x(500+500)"``."""
        if self.method == "map":
            return "map"
        return f"nuts {self.num_chains}x({self.num_warmup}+{self.num_samples})"


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
    """
    import jax
    from numpyro.infer import MCMC, NUTS, init_to_median

    from bayescale.devices import chain_method
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
            return jax.tree.map(lambda v: np.asarray(v)[None, None], values), None
        z_start = move_start(z_map, values) if move_start is not None else z_map
        init = chain_starts(z_start, config.num_chains, k_start)
    dense = [tuple(k for k in dense_block if k in init)] if dense_block else False
    kernel = NUTS(
        model,
        target_accept_prob=config.target_accept,
        max_tree_depth=config.max_tree_depth,
        dense_mass=dense if dense and dense[0] else False,
        init_strategy=init_to_median(num_samples=15),
    )
    mcmc = MCMC(
        kernel,
        num_warmup=config.num_warmup,
        num_samples=config.num_samples,
        num_chains=config.num_chains,
        chain_method=chain_method(config.num_chains, stacklevel=4),
        progress_bar=show,
    )
    if config.num_chains == 1:
        # NumPyro reads a leading chain axis only when there are several chains
        init = {name: z[0] for name, z in init.items()}
    fields = ("num_steps", "potential_energy")
    mcmc.run(k_mcmc, init_params=init, extra_fields=fields, **model_kwargs)
    samples, stats = _drawn(mcmc)
    for round_ in range(config.extend):
        rhat = _worst_rhat(samples, skip)
        if not draws_can_settle(rhat):
            break
        # the chains go on from where they stopped, with their adapted kernel
        mcmc.post_warmup_state = mcmc.last_state
        key = jax.random.fold_in(k_mcmc, round_ + 1)
        desc = f"{what}: R-hat {rhat:.3f}, {config.num_samples} more draws per chain"
        with progress.stage(desc, show):
            mcmc.run(key, extra_fields=fields, **model_kwargs)
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
    return _rhat_summary(post)[0]


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


def _finite(ds) -> dict:
    vals = {v: np.asarray(ds[v].values, dtype=float).ravel() for v in ds.data_vars}
    return {v: x[np.isfinite(x)] for v, x in vals.items() if np.isfinite(x).any()}


def _rhat_summary(post) -> tuple[float, list]:
    """Worst finite R-hat of a posterior Dataset, and its three worst ``(rhat, entry)``."""
    from arviz_stats import rhat

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        rh = rhat(post)
    worst = sorted(((float(x.max()), v) for v, x in _finite(rh).items()), reverse=True)[:3]
    worst = [(r, worst_entry(rh[v])) for r, v in worst]
    return (worst[0][0] if worst else float("nan")), worst


def sampling_diagnostics(tree, method: str, *, skip=(), spreads=None) -> dict:
    """Worst R-hat, smallest bulk and tail ESS, divergences, problems and status.

    Variables named ``z_*`` (non-centred helpers) and those in ``skip`` are left
    out; entries constant across draws (fixed by construction) give NaN and are
    ignored. A point estimate has none of these; its problems are the
    hierarchy's ``spreads`` (site -> prior mean) that fell to zero
    (:func:`collapsed_spreads`).
    """
    out = {"method": method, "divergences": 0, "rhat_max": float("nan")}
    out.update({"ess_bulk_min": float("nan"), "ess_tail_min": float("nan"), "problems": []})
    out["draws"] = int(tree["posterior"].sizes["draw"])
    if method != "nuts":
        out["problems"] = collapsed_spreads(tree["posterior"], spreads or {})
        out["status"] = "warn" if out["problems"] else "n/a (point estimate)"
        return out
    from arviz_stats import ess

    names = [v for v in tree["posterior"].data_vars if not v.startswith("z_") and v not in skip]
    post = tree["posterior"].to_dataset()[names]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        eb = ess(post, method="bulk")
        et = ess(post, method="tail")

    def smallest(ds):
        return min((float(x.min()) for x in _finite(ds).values()), default=float("nan"))

    out["rhat_max"], worst = _rhat_summary(post)
    out["ess_bulk_min"] = smallest(eb)
    out["ess_tail_min"] = smallest(et)
    out["rhat_worst"] = {v: r for r, v in worst}
    diverging = np.asarray(tree["sample_stats"]["diverging"].values, dtype=bool)
    out["divergences"] = int(diverging.sum())
    if out["rhat_max"] > RHAT_MAX:
        top = ", ".join(f"{v} {r:.3f}" for r, v in worst)
        out["problems"].append(f"R-hat {out['rhat_max']:.3f} > {RHAT_MAX} (worst: {top})")
    if out["divergences"]:
        sites = divergence_sites(post, diverging)
        out["divergence_sites"] = dict(sites)
        where = ", ".join(f"{'high' if d > 0 else 'low'} {v} ({d:+.1f} sd)" for v, d in sites)
        out["problems"].append(
            f"{out['divergences']} divergent transitions"
            + (f", their draws at {where}" if where else "")
        )
    n_chains = tree["posterior"].sizes["chain"]
    if np.isfinite(out["ess_bulk_min"]) and out["ess_bulk_min"] < 100 * min(n_chains, 4) / 4:
        out["problems"].append(f"low bulk ESS ({out['ess_bulk_min']:.0f})")
    out["status"] = "warn" if out["problems"] else "pass"
    return out


def divergence_sites(post, diverging, top: int = 3) -> list:
    """Sites whose divergent draws lie apart from the others: ``[(entry, shift), ...]``.

    ``shift`` is the divergent draws' mean minus the other draws' mean, in
    posterior sd, for each site's most shifted entry (the entries of one
    site tend to move together); a site is named when it reaches
    :data:`DIVERGENT_SHIFT` and :data:`DIVERGENT_SHIFT_Z` (see there), the
    ``top`` largest first. A funnel shows as its spread far below its usual
    values (``tau_beta`` at -1 sd): the site to reparameterise or to pin
    with data.
    """
    mask = np.asarray(diverging, dtype=bool).reshape(-1)
    n_div = int(mask.sum())
    if n_div == 0 or n_div == mask.size:
        return []
    found = []
    for name in post.data_vars:
        arr = np.asarray(post[name].values, dtype=float)
        flat = arr.reshape(mask.size, -1)
        sd = flat.std(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            shift = (flat[mask].mean(axis=0) - flat[~mask].mean(axis=0)) / sd
        size = np.where(np.isfinite(shift) & (sd > 0), np.abs(shift), 0.0)
        k = int(np.argmax(size))
        d = float(shift[k])
        if size[k] >= DIVERGENT_SHIFT and size[k] * math.sqrt(n_div) >= DIVERGENT_SHIFT_Z:
            index = tuple(int(i) for i in np.unravel_index(k, arr.shape[2:]))
            found.append((entry_name(post[name].isel(chain=0, draw=0), index), d))
    return sorted(found, key=lambda e: -abs(e[1]))[:top]


def collapsed_spreads(post, spreads: dict) -> list:
    """Problems for spreads of a point estimate below ``SPREAD_COLLAPSED`` of their prior mean.

    The density of a hierarchy grows without bound as a spread shrinks with its
    members' offsets, so a MAP can settle at a spread of about zero and pool
    those members completely, whether or not the data call for it.
    """
    out = []
    for name, prior_mean in spreads.items():
        if name not in post:
            continue
        point = post[name].isel(chain=0, draw=0)
        arr = np.asarray(point.values, dtype=float)
        share = arr / np.broadcast_to(np.asarray(prior_mean, dtype=float), arr.shape)
        for index in np.ndindex(arr.shape):
            if not share[index] < SPREAD_COLLAPSED:
                continue
            out.append(
                f"MAP spread {entry_name(point, index)} is {arr[index]:.2g}, under "
                f"{SPREAD_COLLAPSED:.0%} of its prior mean: complete pooling, which a MAP of "
                "a hierarchy falls into whether or not the data call for it"
            )
    return out


def worst_index(values) -> tuple:
    """Position of the largest finite entry of an array (``()`` for a scalar)."""
    arr = np.asarray(getattr(values, "values", values), dtype=float)
    # the same entries the reported maximum is taken over: an infinite R-hat
    # (a constant entry) must not lend its label to the largest finite one
    arr = np.where(np.isfinite(arr), arr, -np.inf)
    return tuple(int(i) for i in np.unravel_index(np.argmax(arr), arr.shape))


def worst_entry(values) -> str:
    """``name[label, ...]`` of the largest finite entry of a labelled array.

    The name alone for a scalar. A warning that says ``beta_f[olmo]`` tells
    the user which family to look at; ``beta_f`` alone does not.
    """
    return entry_name(values, worst_index(values))


def entry_name(values, index: tuple) -> str:
    """``name[label, ...]`` of the entry at ``index`` of a labelled array (scalar: ``name``)."""
    if np.ndim(values.values) == 0:
        return str(values.name)
    labels = [
        str(values[dim].values[i]) if dim in values.coords else str(i)
        for dim, i in zip(values.dims, index, strict=True)
    ]
    return f"{values.name}[{', '.join(labels)}]"


def convergence_advice(diag: dict, config: InferenceConfig, style: str = "python") -> str:
    """What to change, named as the caller names it (Python keywords or CLI flags)."""
    warm, samples, accept, nuts, partly = {
        "python": (
            "num_warmup",
            "num_samples",
            "target_accept",
            'method="nuts"',
            "exponent_centring=0.5",
        ),
        "cli": (
            "--warmup",
            "--samples",
            "--target-accept",
            "--method nuts",
            "--exponent-centring 0.5",
        ),
    }[style]
    tips = []
    if any(p.startswith("MAP spread") for p in diag.get("problems", [])):
        tips.append(
            f"sample the spreads with NUTS ({nuts}), whose intervals take the families' "
            "partial pooling into account"
        )
    if any("divergent" in p for p in diag.get("problems", [])):
        higher = min(0.99, max(0.95, config.target_accept + 0.05))
        tips.append(f"raise {accept} (now {config.target_accept}, try {higher:g})")
        funnel = [
            v
            for v, d in diag.get("divergence_sites", {}).items()
            if v.startswith(("tau_alpha", "tau_beta")) and d < 0
        ]
        if funnel and getattr(config, "exponent_centring", 0.0) is None:
            # measured on small simulated fits: a third of the divergences (docs/model-notes.md)
            tips.append(
                f"sample the exponents partly centred ({partly}): the divergent draws sit at "
                f"a small {funnel[0]}, a funnel of exponents the data pin only loosely"
            )
    if any(("R-hat" in p) or ("ESS" in p) for p in diag.get("problems", [])):
        ess = diag.get("ess_bulk_min", float("nan"))
        rhat = diag.get("rhat_max", float("nan"))
        if np.isfinite(ess) and 0 < ess < ESS_RESOLVE and not rhat > RHAT_CHANCE:
            # chains that agree still show R-hat > 1.01 at this ESS
            # (benchmarks/rhat_resolution.py); more draws, not more warm-up
            drawn = diag.get("draws", config.num_samples)
            more = int(math.ceil(drawn * ESS_RESOLVE / ess / 100.0) * 100)
            tips.append(
                f"draw more ({samples}={more}): the smallest bulk ESS is {ess:.0f}, and "
                f"below about {ESS_RESOLVE} effective draws chains that agree still "
                f"show R-hat above {RHAT_MAX}"
            )
        else:
            tips.append(
                f"run longer ({warm}={2 * config.num_warmup}, {samples}={2 * config.num_samples})"
            )
    return "Intervals may be unreliable: " + (" and ".join(tips) or "refit") + "."


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
