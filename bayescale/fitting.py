"""``fit()``: a tidy loss table (or :class:`ScalingData`) and a :class:`FitConfig` in, a
:class:`~bayescale.posterior.Posterior` out.

The config holds everything needed to reproduce the fit (data selection,
model, sampler, priors) and is stored with the saved file, so
``bayescale.load`` gives it back.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field, fields, replace

import numpy as np
import pandas as pd
from scipy.special import logit

from bayescale.centring import centred_groups, group_coords
from bayescale.coordinates import family_centres, from_law
from bayescale.data import (
    DEFAULT_MAX_POINTS,
    DEFAULT_MIN_TOKENS,
    DEFAULT_WARMUP_FRACTION,
    ScalingData,
)
from bayescale.inference import InferenceConfig, run
from bayescale.model import Priors, scaling_model, spread_scales
from bayescale.options import EXPONENT_FORMS, LAWS, check_choice
from bayescale.posterior import Posterior, build_tree
from bayescale.seeds import RunEffects

# Within a family the law's coordinates and exponents stay correlated, and the
# shared exponents tie all families together: a dense mass matrix over this
# block (diagonal elsewhere) cut NUTS trajectories from the 255-step cap to
# ~50-100 (measured with E, a, b as the coordinates).
DENSE_BLOCK = ("coords", "alpha", "beta", "z_alpha", "z_beta", "z_group")


@dataclass(frozen=True)
class FitConfig(InferenceConfig):
    """Everything needed to reproduce a fit (stored with the saved file).

    Sampler settings are those of :class:`~bayescale.inference.InferenceConfig`.

    Attributes
    ----------
    law : {"chinchilla", "overtrain"}
        ``"overtrain"`` ties ``alpha = beta`` (Gadre et al.'s (C, M) form).
    exponents : {"pooled", "shared"}
        Family exponents partially pooled around shared ones, or one pair.
    dense_mass : bool
        Adapt a dense mass matrix over the law block (``DENSE_BLOCK``).
    families : tuple of str, optional
        Fit only these families of the table (in this order).
    min_tokens : float or None
        Warm-up cut: intermediate checkpoints below this many tokens are
        dropped; each run's final checkpoint is kept. ``None`` keeps all.
    min_tokens_by_family : dict, optional
        Per-family override of ``min_tokens``.
    warmup_fraction : float or None
        No run loses more than this fraction of its tokens to the cut
        (:func:`~bayescale.data.warmup_cut`); ``None``: ``min_tokens`` alone.
    max_points_per_run : int or None
        Thin dense curves to at most this many log-spaced checkpoints per run.
    discrepancy : bool
        Model how each family's sizes depart from its power law
        (:mod:`~bayescale.discrepancy`) apart from the seed effects, so that
        a prediction far from the fitted sizes carries more uncertainty.
    seed_centring : float
        Weight ``w`` in [0, 1] of the seed effects' sampling coordinates
        (:class:`~bayescale.seeds.RunEffects`): 0 non-centred, 1 centred.
        The model is the same; only how NUTS moves through it changes.
    exponent_centring : float or None
        Weight ``w`` in [0, 1] of every family's pooled exponents' sampling
        coordinates (:func:`~bayescale.centring.partly_centred`); ``None``
        (default) centres each by the rule of
        :func:`~bayescale.centring.centred_exponents`. A lone family's
        exponents keep their own form. Again the same model.
    priors : Priors
    """

    law: str = "chinchilla"
    exponents: str = "pooled"
    dense_mass: bool = True
    families: tuple | None = None
    min_tokens: float | None = DEFAULT_MIN_TOKENS
    min_tokens_by_family: dict | None = None
    warmup_fraction: float | None = DEFAULT_WARMUP_FRACTION
    max_points_per_run: int | None = DEFAULT_MAX_POINTS
    discrepancy: bool = False
    seed_centring: float = 0.0
    exponent_centring: float | None = None
    priors: Priors = field(default_factory=Priors)

    _PRIORS = Priors

    def __post_init__(self):
        super().__post_init__()
        check_choice("law", self.law, LAWS)
        check_choice("exponents", self.exponents, EXPONENT_FORMS)
        if not 0.0 <= float(self.seed_centring) <= 1.0:
            raise ValueError(f"seed_centring must be in [0, 1], got {self.seed_centring!r}")
        w = self.exponent_centring
        if w is not None and not 0.0 <= float(w) <= 1.0:
            raise ValueError(f"exponent_centring must be in [0, 1] or None, got {w!r}")
        if self.families is not None:
            if isinstance(self.families, str):
                object.__setattr__(self, "families", (self.families,))
            object.__setattr__(self, "families", tuple(str(f) for f in self.families))
        if self.min_tokens_by_family is not None:
            object.__setattr__(
                self,
                "min_tokens_by_family",
                {str(k): v for k, v in self.min_tokens_by_family.items()},
            )

    def data_options(self) -> dict:
        """Keyword arguments of :meth:`ScalingData.from_frame`."""
        return {
            "families": self.families,
            "min_tokens": self.min_tokens,
            "min_tokens_by_family": self.min_tokens_by_family,
            "warmup_fraction": self.warmup_fraction,
            "max_points_per_run": self.max_points_per_run,
        }


def model_kwargs(inputs, config: FitConfig, observe: bool = True) -> dict:
    """Keyword arguments of :func:`~bayescale.model.scaling_model` for ``config``."""
    return {
        "inputs": inputs,
        "exponents": config.exponents,
        "law": config.law,
        "priors": config.priors,
        "discrepancy": config.discrepancy,
        "seed_centring": config.seed_centring,
        "exponent_centring": config.exponent_centring,
        "observe": observe,
    }


#: largest |correlation| of the family offsets a chain starts from
CORR_START = 0.9


def chain_start(z_map: dict, values: dict, *, inputs, config: FitConfig) -> dict:
    """Move chain starts off the MAP's edges: pinched group scales (see
    :func:`spread_scales`), E's share at 0 or 1, a correlation of the family
    offsets near +-1.

    ``inputs`` (:class:`~bayescale.model.ModelInputs`) tells which group shifts
    are sampled centred. The MAP is searched in non-centred seed coordinates
    (a centred MAP pinches ``sigma_seed`` or lets the seeds take over the
    law); ``config`` gives the coordinates the chains run in.
    """
    import jax.numpy as jnp

    z = dict(z_map)
    if config.seed_centring:
        z["z_u"] = _seed_coords(z["z_u"], values["sigma_seed"], inputs, config)
    n_fam = np.asarray(values["a"]).shape[0]
    spread = spread_scales(values, n_fam)
    for name in ("sigma_theta", "tau_alpha", "tau_beta"):
        if name in z:
            z[name] = jnp.log(jnp.asarray(spread[name]))
    if "L_omega" in z:
        # a full MAP search can run the offsets' correlation to +-1, where its
        # tanh coordinate saturates and chains started there do not move
        r = float(np.asarray(values["L_omega"])[1, 0])
        z["L_omega"] = jnp.atleast_1d(jnp.arctanh(jnp.clip(r, -CORR_START, CORR_START)))
    if "sigma_group" in z:
        # the same group shifts under the unpinched scale
        sigma = np.asarray(spread["sigma_group"])
        z["sigma_group"] = jnp.log(jnp.asarray(sigma))
        centred = centred_groups(inputs)
        z["z_group"] = jnp.asarray(group_coords(values["group_effect"], sigma, centred))
    if "coords" in z:
        # the MAP can run E's share to an edge (all of the loss, or none), where
        # its coordinate saturates; start the chains inside, with the MAP's a and b
        frac = np.clip(np.asarray(values["e_frac"]), 0.05, 0.95)
        theta = np.stack([np.asarray(values["a"]), np.asarray(values["b"])], axis=-1)
        z["coords"] = from_law(
            jnp.asarray(frac),
            jnp.asarray(theta),
            jnp.asarray(family_centres(inputs)),
            jnp.asarray(values["alpha_f"]),
            jnp.asarray(values["beta_f"]),
        )
        if "e_mu" in z:
            e_mu = float(np.clip(np.asarray(values["e_mu"]), 0.05, 0.95))
            z["e_mu"] = jnp.asarray(logit(e_mu))
        if "e_kappa" in z and n_fam > 1:
            m, v = frac.mean(), max(frac.var(), 1e-4)
            # method of moments for a Beta's concentration, kept moderate
            z["e_kappa"] = jnp.log(jnp.asarray(float(np.clip(m * (1 - m) / v - 1, 2.0, 50.0))))
    return z


def fit(
    data, config: FitConfig | None = None, *, progress_bar=None, check: bool = True, **options
) -> Posterior:
    """Fit the hierarchical scaling law.

    Parameters
    ----------
    data : pandas.DataFrame or ScalingData
        Tidy loss table (one row per checkpoint: ``family``, ``run``,
        ``params``, ``tokens``, ``loss``) or already-validated arrays.
    config : FitConfig, optional
        All settings; default ``FitConfig()`` (NUTS, 4 chains x 500 draws,
        pooled exponents, warm-up cut at 1e10 tokens).
    progress_bar : bool, optional
        Default: shown when a person is watching (terminal or Jupyter).
    check : bool
        Warn (:class:`~bayescale.convergence.ConvergenceWarning`) about sampling
        problems, or for a MAP fit about spreads that fell to zero
        (:func:`~bayescale.convergence.collapsed_spreads`); ``post.diagnostics()``
        reports them either way.
    **options
        Fields of :class:`FitConfig` that override ``config``, e.g.
        ``fit(df, num_chains=2, seed=1)``.

    Returns
    -------
    Posterior
    """
    known = {f.name for f in fields(FitConfig)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise TypeError(f"fit() got unknown option(s) {unknown}; FitConfig fields: {sorted(known)}")
    config = replace(config or FitConfig(), **options)
    if isinstance(data, pd.DataFrame):
        data = ScalingData.from_frame(data, **config.data_options())
    elif not isinstance(data, ScalingData):
        raise TypeError(
            f"data must be a pandas DataFrame or a ScalingData, got {type(data).__name__}"
        )
    inputs = data.inputs()
    samples, stats, config = sample_inputs(inputs, config, progress_bar=progress_bar)
    log_lik = None
    if stats is not None:
        log_lik = {"y": pointwise_log_likelihood(inputs, samples)}
    tree = build_tree(samples, data, stats=stats, log_likelihood=log_lik)
    post = Posterior(tree=tree, data=data, config=config)
    if check:
        post.check(warn=True)
    return post


def sample_inputs(inputs, config: FitConfig, *, progress_bar=None):
    """The default inference (MAP, chain starts, NUTS) on model arrays.

    Returns ``(samples, stats, config)`` as :func:`bayescale.inference.run`; ``fit``
    and simulation-based calibration (:mod:`bayescale.evaluation.sbc`) share it.
    """
    kwargs = model_kwargs(inputs, config)
    # the MAP in non-centred seed coordinates, whatever the chains use (chain_start)
    samples, stats, config = run(
        scaling_model,
        kwargs,
        config,
        map_kwargs={**kwargs, "seed_centring": 0.0},
        move_start=functools.partial(chain_start, inputs=inputs, config=config),
        dense_block=DENSE_BLOCK if config.dense_mass else (),
        skip=Posterior._SKIP_VARS,
        progress_bar=progress_bar,
        what="fit",
    )
    if stats is None and config.seed_centring:
        sigma = np.asarray(samples["sigma_seed"])[..., None]
        samples["z_u"] = _seed_coords(samples["z_u"], sigma, inputs, config)
    return samples, stats, config


def _seed_coords(z_u, sigma_seed, inputs, config: FitConfig):
    """The config's seed coordinates of effects given in non-centred ones."""
    seeds = RunEffects(
        sigma_seed, inputs, config.discrepancy, config.seed_centring, config.priors.seed_sd
    )
    return seeds.from_standard(z_u)


def pointwise_log_likelihood(inputs, samples: dict) -> np.ndarray:
    """Log-likelihood of each checkpoint under each draw, (chain, draw, obs)."""
    import jax

    from bayescale.model import log_likelihood

    names = ("log_E", "a", "b", "alpha_f", "beta_f", "sigma_obs", "u", "sigma_seed", "ell", "nu")
    names += ("anneal_B", "anneal_C", "anneal_beta", "anneal_gamma", "anneal_kappa", "delta")
    sites = {k: samples[k] for k in names if k in samples}
    flat = jax.tree.map(lambda v: v.reshape((-1,) + v.shape[2:]), sites)
    ll = jax.lax.map(lambda d: log_likelihood(inputs, d), flat, batch_size=256)
    chains, draws = samples["alpha"].shape[:2]
    return np.asarray(ll).reshape(chains, draws, -1)
