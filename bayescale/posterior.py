"""A fitted scaling law: :class:`Posterior` (an ArviZ DataTree plus its data and config).

The posterior is the one place that turns draws into the quantities every
query uses: a family's law (:meth:`Posterior.law`, a
:class:`~bayescale.laws.LawParams` of draws, drawn from the population for a
family the fit never saw), the uncertainty of the family's level
(:meth:`Posterior.level_offsets`) and the scatter of a new run
(:meth:`Posterior.new_run_offsets`). Predictions, compute-optimal allocation,
experiment design, evaluation and reports all go through them.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import xarray as xr
from scipy.special import expit, logit

from bayescale import fitfile
from bayescale.coordinates import COORDS, beta_log_odds
from bayescale.data import ScalingData
from bayescale.inference import PosteriorBase, draws_tree
from bayescale.laws import LawParams
from bayescale.model import COEFS, GROUP_COEFS, spread_priors
from bayescale.options import DEFAULT_CI_PROB, check_ci_prob, format_count
from bayescale.seeds import law_offset_runs

CONFIG_ATTR = "bayescale_config"
_DIMS = {
    "coords": ["family", "coord"],
    "e_frac": ["family"],
    "log_E": ["family"],
    "a": ["family"],
    "b": ["family"],
    "alpha_f": ["family"],
    "beta_f": ["family"],
    "sigma_obs": ["family"],
    "anneal_B": ["family"],
    "z_u": ["run"],
    "u": ["run"],
    "delta": ["run"],
    "z_delta": ["size"],
    "z_delta_d": ["budget"],
    "mu_theta": ["coef"],
    "z_mu": ["coef"],
    "sigma_theta": ["coef"],
    "L_omega": ["coef", "coef_bis"],
    "sigma_group": ["group_coef"],
    "z_group": ["group", "group_coef"],
    "group_effect": ["group", "group_coef"],
    "y": ["obs"],
}
_REQUIRED = ("alpha", "beta", "log_E", "a", "b", "alpha_f", "beta_f", "sigma_obs", "sigma_seed")


class UnseenFamilyWarning(UserWarning):
    """A query names a family that was not in the fit."""


def _coords(data: ScalingData) -> dict:
    groups = {"group": list(data.groups), "group_coef": list(GROUP_COEFS)} if data.groups else {}
    from bayescale.discrepancy import TERMS

    inputs = data.inputs()
    slot_labels = {}
    for term in TERMS:
        slots = term.slots_of(inputs)
        unit = "" if term.axis == "params" else " tokens"
        labels = [
            f"{data.families[f]} {format_count(math.exp(x))}{unit}"
            for f, x in zip(slots.family, slots.x, strict=True)
        ]
        if len(set(labels)) < len(labels):
            # positions within a rounding of each other: keep the labels apart
            labels = [f"{label} #{i}" for i, label in enumerate(labels)]
        slot_labels[term.plate] = labels
    return (
        groups
        | slot_labels
        | {
            "family": list(data.families),
            "run": list(data.runs),
            "obs": np.arange(data.n_obs),
            "coef": list(COEFS),
            "coef_bis": list(COEFS),
            "coord": list(COORDS),
        }
    )


def build_tree(samples: dict, data: ScalingData, *, stats=None, log_likelihood=None):
    """The fit's DataTree: draws (chain, draw, ...), sampling stats, data groups."""
    tree = draws_tree(samples, _coords(data), _DIMS, stats=stats, log_likelihood=log_likelihood)
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
    if data.family_group is not None:
        const = const.assign(family_group=("family", np.asarray(data.family_group, dtype=str)))
    if data.run_planned is not None:
        const = const.assign(run_planned=("run", np.asarray(data.run_planned, dtype=float)))
    if data.has_schedules:
        const = const.assign(
            grid_run=("grid", np.asarray(data.grid_run, dtype=np.int32)),
            grid_tokens=("grid", np.asarray(data.grid_tokens, dtype=float)),
            grid_eta=("grid", np.asarray(data.grid_eta, dtype=float)),
            grid_area=("grid", np.asarray(data.grid_area, dtype=float)),
        )
        const.attrs["lr_ref"] = float(data.lr_ref)
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


def _data_from_tree(
    tree: xr.DataTree, min_tokens: float, warmup_fraction: float = np.nan
) -> ScalingData:
    const = tree["constant_data"].to_dataset()
    rep = tree["data_report"].to_dataset()
    report = pd.DataFrame({"family": rep["family"].values.astype(str)})
    for name in rep.data_vars:
        report[name] = rep[name].values
    sched = {}
    if "family_group" in const:
        sched["family_group"] = tuple(str(g) for g in const["family_group"].values)
    if "run_planned" in const:
        sched["run_planned"] = const["run_planned"].values.astype(float)
    if "grid_run" in const:
        sched |= {
            "lr_ref": float(const.attrs["lr_ref"]),
            "grid_run": const["grid_run"].values.astype(np.int32),
            **{
                f"grid_{k}": const[f"grid_{k}"].values.astype(float)
                for k in ("tokens", "eta", "area")
            },
        }
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
        warmup_fraction=warmup_fraction,
        **sched,
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
    config: object

    _SKIP_VARS = ("L_omega",)

    def _spreads(self) -> dict:
        if len(self.families) < 2:  # one family's spreads are its priors'; no neck
            return {}
        return spread_priors(self.config.priors)

    @classmethod
    def from_draws(cls, draws: dict, data: ScalingData, config=None) -> Posterior:
        """A posterior from draws shaped (chain, draw, ...) of the model's sites.

        Sites the model derives (``a``, ``b``, ``log_E``, ``u``...) must be
        given too. Used for point estimates and for hand-made test posteriors
        (:func:`bayescale.testing.posterior`).
        """
        from bayescale.fitting import FitConfig

        missing = [k for k in _REQUIRED if k not in draws]
        if missing:
            raise ValueError(f"draws lack site(s) {missing}")
        return cls(build_tree(draws, data), data, config or FitConfig())

    # -- the quantities every query uses ------------------------------------------------------
    def law(self, family: str, *, seed: int = 0) -> LawParams:
        """Draws of a family's law (shape (S,) per field), ``log_scale`` included.

        A family not in the fit gets coefficients from the population
        distribution (in a fit with groups, as a member of a new group), its
        ``E`` from the population share of the law at the reference sizes and its loss
        scale from the spread of the fitted families' scales, with an
        :class:`UnseenFamilyWarning`.
        """
        s = self.n_draws
        if family in self.families:
            f = self.families.index(family)
            return LawParams(
                self.draws("log_E")[:, f],
                self.draws("a")[:, f],
                self.draws("b")[:, f],
                self.draws("alpha_f")[:, f],
                self.draws("beta_f")[:, f],
                np.full(s, np.log(self.data.family_scale[f])),
            )
        return self._population_law(family, np.random.default_rng([seed, 11]))

    def anneal(self, family: str):
        """Draws of the family's annealing bonus (:class:`~bayescale.schedules.AnnealParams`).

        ``None`` for a fit without learning-rate schedules; an unseen family
        gets the population's median bonus size.
        """
        from bayescale.schedules import AnnealParams

        if "anneal_B" not in self.tree["posterior"]:
            return None
        b = self.draws("anneal_B")
        b = b[:, self.families.index(family)] if family in self.families else np.median(b, 1)
        kappa = self.draws("anneal_kappa") if "anneal_kappa" in self.tree["posterior"] else 0.0
        return AnnealParams(
            b,
            self.draws("anneal_C"),
            self.draws("anneal_beta"),
            self.draws("anneal_gamma"),
            kappa,
        )

    def _population_law(self, family: str, rng) -> LawParams:
        from bayescale.options import did_you_mean

        warnings.warn(
            f"family {family!r} is not in the fit{did_you_mean(family, self.families)}; "
            f"predicting it from the population of the fitted families {list(self.families)}, "
            "with a loss scale drawn from theirs",
            UnseenFamilyWarning,
            stacklevel=4,
        )
        s = self.n_draws
        mu, sd, chol = self.draws("mu_theta"), self.draws("sigma_theta"), self.draws("L_omega")
        theta = mu + np.einsum("sij,sj->si", sd[:, :, None] * chol, rng.standard_normal(mu.shape))
        # a family of unknown group: its group is a new one, drawn like the fitted groups
        shift = np.zeros((s, len(GROUP_COEFS)))
        if "sigma_group" in self.tree["posterior"]:
            shift = self.draws("sigma_group") * rng.standard_normal(shift.shape)
        theta = theta + shift[:, :2]
        e_mu, e_kappa = self.draws("e_mu"), self.draws("e_kappa")
        e_mu = expit(logit(e_mu) + shift[:, 4])
        # log E = log odds of its share + log of the other terms at the reference sizes
        log_odds = beta_log_odds(rng, e_mu * e_kappa, (1.0 - e_mu) * e_kappa)
        log_e = log_odds + np.logaddexp(theta[:, 0], theta[:, 1])
        alpha, beta = self.draws("alpha"), self.draws("beta")
        if self.config.exponents == "pooled":
            alpha = alpha * np.exp(shift[:, 2] + self.draws("tau_alpha") * rng.standard_normal(s))
            if self.config.law == "overtrain":
                beta = alpha
            else:
                beta = beta * np.exp(shift[:, 3] + self.draws("tau_beta") * rng.standard_normal(s))
        log_scales = np.log(self.data.family_scale)
        spread = log_scales.std(ddof=1) if len(log_scales) > 1 else 1.0
        log_scale = rng.normal(log_scales.mean(), spread, size=s)
        return LawParams(log_e, theta[:, 0], theta[:, 1], alpha, beta, log_scale)

    def level_offset_sd(self, family: str, idx=None) -> np.ndarray:
        """Per draw, the sd of the family's law around the fitted one, (S,).

        Run effects sum to zero within a family, so the fitted law describes
        the average of its ``K`` runs, which is itself ``sigma_seed / sqrt(K)``
        away from the family's law (0 for a family the fit did not see, whose
        law is drawn from the population). ``idx`` picks (and may repeat)
        posterior draws; default all.
        """
        sigma_seed = self._pick("sigma_seed", idx)
        if family not in self.families:
            return np.zeros_like(sigma_seed)
        k = int(law_offset_runs(self.data.inputs())[self.families.index(family)])
        return sigma_seed / np.sqrt(k) if k else np.zeros_like(sigma_seed)

    def level_offsets(self, family: str, params, tokens, rng, idx=None, single=None) -> np.ndarray:
        """Draws of how far the family's law may sit from the fitted one at each query, (S, P).

        The seed average of the fitted runs (:meth:`level_offset_sd`), one
        offset per draw shared by all points, and, in fits with the
        discrepancy, its value at each query's size (and token count, for
        families with token-budget grids) relative to the family's fitted
        ones (:func:`bayescale.discrepancy.query_offsets`), drawn jointly
        across the queries. ``params`` and ``tokens`` are (P,), or (S, P)
        where they differ by draw. ``single`` (P,) marks the points that are
        final losses of single-checkpoint runs, the only ones the token-budget
        term applies to (default: all, as for a prediction).

        The discrepancy of each term is drawn from a stream of its own spawned
        from ``rng``, the first query first: the draws at a query do not
        depend on the queries after it, nor does what ``rng`` draws next.
        """
        from bayescale.discrepancy import fitted_terms, query_offsets

        params, tokens = np.broadcast_arrays(np.asarray(params, float), np.asarray(tokens, float))
        p = params.shape[-1]
        single = np.ones(p, bool) if single is None else np.asarray(single, bool)
        sd = self.level_offset_sd(family, idx)
        out = (sd * rng.standard_normal(sd.shape[0]))[:, None] * np.ones(p)
        posterior = self.tree["posterior"]
        inputs = self.data.inputs()
        f = self.families.index(family) if family in self.families else None
        for term, slots in fitted_terms(posterior, inputs):
            term_rng = rng.spawn(1)[0]
            if not (term.for_unseen if f is None else np.any(slots.family == f)):
                continue  # e.g. a family without a token-budget grid
            cols = np.ones(p, bool) if term.axis == "params" else single
            x = np.log(params if term.axis == "params" else tokens)[..., cols]
            out[:, cols] += query_offsets(
                slots,
                f,
                self._pick(f"z_delta{term.suffix}", idx),
                self._pick(f"sigma_delta{term.suffix}", idx),
                self._pick(f"ell_delta{term.suffix}", idx),
                x,
                term_rng,
            )
        return out

    def run_offsets(self) -> np.ndarray:
        """Draws of each fitted run's offset from its family's law, (S, R).

        Its seed effect ``u`` plus, in fits with the size-level discrepancy,
        that of its size: the offset the likelihood centres its checkpoints on.
        """
        from bayescale.model import run_offsets

        names = [k for k in ("u", "delta") if k in self.tree["posterior"]]
        return np.asarray(run_offsets({k: self.draws(k) for k in names}))

    def _pick(self, name: str, idx=None) -> np.ndarray:
        d = self.draws(name)
        return d if idx is None else d[idx]

    def new_run_offsets(self, family: str, params, tokens, rng, idx=None) -> np.ndarray:
        """Draws of what one new run adds at each query point, (S, P).

        Each distinct size in the query is one new run: a seed effect
        ``Normal(0, sigma_seed)`` and the trajectory noise the likelihood
        assumes (:class:`~bayescale.trajectory.OUTrajectory`) along its
        checkpoints, sorted by tokens. ``idx`` picks posterior draws.
        """
        import jax

        from bayescale.trajectory import OUTrajectory, ou_rho

        params, tokens = np.broadcast_arrays(np.asarray(params, float), np.asarray(tokens, float))
        sigma_seed = self._pick("sigma_seed", idx)
        s = sigma_seed.shape[0]
        sigma_obs = self._pick("sigma_obs", idx)
        if family in self.families:
            sigma_obs = sigma_obs[:, self.families.index(family)]
        else:
            # the checkpoint noise of an unseen family: a fitted family's, at random
            sigma_obs = sigma_obs[np.arange(s), rng.integers(0, len(self.families), s)]
        ell, nu = self._pick("ell", idx), self._pick("nu", idx)
        out = np.zeros((s, params.size))
        for n in np.unique(params):
            cols = np.flatnonzero(params == n)
            cols = cols[np.argsort(tokens[cols], kind="stable")]
            first = np.arange(cols.size) == 0
            rho = np.asarray(ou_rho(np.log(tokens[cols])[None, :], first[None, :], ell[:, None]))
            scale = sigma_obs[:, None] * np.ones(cols.size)
            traj = OUTrajectory(np.zeros((s, cols.size)), scale, rho, nu)
            noise = np.asarray(traj.sample(jax.random.PRNGKey(int(rng.integers(2**31)))))
            out[:, cols] = noise + (sigma_seed * rng.standard_normal(s))[:, None]
        return out

    # -- summaries -------------------------------------------------------------------------------
    def summary(self, var_names=None, *, ci_prob: float = DEFAULT_CI_PROB, **kwargs):
        """ArviZ summary with ``ci_prob`` equal-tailed intervals.

        Displayed rounded (ArviZ's ``round_to="auto"``: the numbers underneath
        stay exact); ``round_to="none"`` returns plain floats. Other keywords
        go to :func:`arviz_stats.summary`.
        """
        from arviz_stats import summary

        if var_names is None:
            var_names = ["alpha", "beta", "log_E", "a", "b", "alpha_f", "beta_f", "sigma_seed"]
            var_names += ["e_mu", "sigma_obs", "ell", "nu"]
            if self.config.exponents == "pooled":
                var_names += ["tau_alpha"] + (
                    ["tau_beta"] if self.config.law != "overtrain" else []
                )
            if "sigma_delta" in self.tree["posterior"]:
                var_names += ["sigma_delta", "ell_delta"]
        kwargs.setdefault("ci_kind", "eti")
        if self.is_point_estimate:
            kwargs.setdefault("kind", "stats")
        return summary(self.tree, var_names=var_names, ci_prob=check_ci_prob(ci_prob), **kwargs)

    def __repr__(self) -> str:
        d = self.data
        diag = self.diagnostics()
        if self.is_point_estimate:
            status = "MAP point estimate"
        else:
            status = (
                f"{self.config.num_chains}x{diag['draws']} draws, "
                f"{diag['status']}, R-hat {diag['rhat_max']:.3f}, "
                f"{diag['divergences']} divergences"
            )
        fams = ", ".join(d.families[:3]) + (f" +{d.n_families - 3}" if d.n_families > 3 else "")
        return (
            f"<Posterior {self.config.law} law, {self.config.exponents} exponents: "
            f"{d.n_families} families ({fams}), {d.n_runs} runs, {d.n_obs} checkpoints; "
            f"{status}>"
        )

    def _repr_html_(self) -> str:
        import html

        return f"<code>{html.escape(repr(self))}</code>"

    # -- queries (implemented in queries.py) ------------------------------------------------
    def predict(
        self,
        family=None,
        params=None,
        tokens=None,
        *,
        kind="mean",
        run=None,
        ci_prob=DEFAULT_CI_PROB,
        draws=False,
        seed=0,
        schedule=None,
    ):
        """Posterior predictive loss; see :func:`bayescale.queries.predict`.

        With ``run="NAME"``, forecast that fitted run (a run in progress) at
        later ``tokens`` (default: its ``planned_tokens``):
        :func:`bayescale.queries.predict_run`.
        """
        from bayescale.queries import predict, predict_run

        if run is not None:
            if family is not None or params is not None:
                raise TypeError(
                    "with run=..., give only tokens (the run fixes family and size): "
                    "post.predict(run='NAME', tokens=[...])"
                )
            return predict_run(
                self, run, tokens, ci_prob=ci_prob, draws=draws, seed=seed, schedule=schedule
            )
        if family is None or params is None or tokens is None:
            raise TypeError("predict() needs family, params and tokens (or run= and tokens)")
        return predict(
            self,
            family,
            params,
            tokens,
            kind=kind,
            ci_prob=ci_prob,
            draws=draws,
            seed=seed,
            schedule=schedule,
        )

    def compute_optimal(self, flops, *, family, ci_prob=DEFAULT_CI_PROB, seed=0):
        """Compute-optimal allocation; see :func:`bayescale.queries.compute_optimal`."""
        from bayescale.queries import compute_optimal

        return compute_optimal(self, flops, family=family, ci_prob=ci_prob, seed=seed)

    # -- persistence ------------------------------------------------------------------------------
    def save(self, path, *, overwrite: bool = False):
        """Write the fit (tree, config, version, checksums) atomically to a netCDF file."""
        return fitfile.write_tree(
            self.tree,
            path,
            {CONFIG_ATTR: self.config.to_json(), "bayescale_data_hash": self.data.hash()},
            overwrite=overwrite,
        )


def load(path, *, data: ScalingData | None = None) -> Posterior:
    """Read a fit written by :meth:`Posterior.save`.

    Parameters
    ----------
    path : str or path-like
    data : ScalingData, optional
        If given, it must be the data the fit was made on.

    Raises
    ------
    FitFileError
        If the file is unreadable, altered, incomplete, not a loss-law fit,
        or was fitted to other data than ``data``.
    """
    from bayescale.fitting import FitConfig

    tree = fitfile.read_tree(
        path,
        config_attr=CONFIG_ATTR,
        kind="a loss-law fit",
        groups=("posterior", "constant_data", "observed_data", "data_report"),
        variables={"posterior": _REQUIRED},
    )
    try:
        stored_config = fitfile.load_config_json(path, tree.attrs[CONFIG_ATTR])
        # files written before the relative cut existed used the absolute one only
        stored_config.setdefault("warmup_fraction", None)
        config = FitConfig.from_dict(stored_config)
        min_tokens = config.min_tokens if config.min_tokens is not None else np.nan
        frac = config.warmup_fraction if config.warmup_fraction is not None else np.nan
        stored = _data_from_tree(tree, min_tokens, frac)
    except fitfile.FitFileError:
        raise
    except Exception as exc:  # noqa: BLE001 - a valid checksum over invalid contents
        raise fitfile.FitFileError(f"{path}: cannot rebuild the fit ({exc})") from None
    if stored.hash() != tree.attrs.get("bayescale_data_hash"):
        raise fitfile.FitFileError(f"{path}: stored data do not match the stored hash")
    if data is not None and data.hash() != stored.hash():
        raise fitfile.FitFileError(f"{path} was fitted to different data")
    # the model's own labels: a fit whose coefficients differ is another model's
    ours = {"coef": list(COEFS), "coord": list(COORDS), "group_coef": list(GROUP_COEFS)}
    for dim, labels in ours.items():
        held = tree["posterior"].coords.get(dim)
        if held is not None and held.values.tolist() != labels:
            raise fitfile.FitFileError(
                f"{path} was fitted by a model whose {dim} are {held.values.tolist()}; this "
                f"version's are {labels}: refit the data"
            )
    return Posterior(tree=tree, data=stored, config=config)


def with_tree(post: Posterior, tree: xr.DataTree) -> Posterior:
    """A copy of ``post`` with another tree (e.g. reweighted draws)."""
    return replace(post, tree=tree)


def describe_query(family: str, params, tokens) -> str:
    """``OPT at 175B params, 300B tokens``."""
    return f"{family} at {format_count(params)} params, {format_count(tokens)} tokens"
