"""Downstream task error from validation loss: hierarchical per-task model.

Gadre et al. (2024) found that the average top-1 error over many tasks follows
``Err(L) = eps - k exp(-gamma L)`` in the validation loss ``L``. Here every
task ``t`` gets its own law, partially pooled around population values, and
its score is observed as a count of correct items::

    correct_rt ~ BetaBinomial(n_t, mean = 1 - Err_t(L_r - shift_f))
    Err_t(L)   = floor_t + (eps_t - floor_t) sigmoid(gamma_t (L - midpoint_t))

The logistic form equals Gadre's law to first order near the ceiling
(``k_t = (eps_t - floor_t) exp(gamma_t midpoint_t)``) but cannot leave
``(floor_t, eps_t)``: a task whose error has started to fall keeps falling,
then levels off instead of crossing zero. The ceiling is tied to the task's
chance error, ``shift_f`` lets each training corpus map eval loss to
capability differently, and the beta-binomial lets a 32-item task speak less
than a 10k-item one. Predictions chain a loss posterior's draws
(:func:`predict_downstream`).

Pitfall: the law is tied to the eval set whose loss it was fitted on (C4 eval
in the bundled Gadre data). Feeding it a loss measured on another eval set, or
predicted by a loss law fitted to another eval set, gives numbers with no
meaning; :class:`DownstreamFamilyWarning` flags families the fit never saw.
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
import warnings
from dataclasses import asdict, dataclass, field
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pandas as pd
import xarray as xr

from bayescale import laws
from bayescale.data import DataError
from bayescale.posterior_base import (
    PosteriorBase,
    check_data_hash,
    draws_tree,
    jittered_inits,
    read_tree,
)

GADRE_TASKS_17 = (
    "arc_easy",
    "bigbench_cs_algorithms",
    "bigbench_dyck_languages",
    "bigbench_novel_concepts",
    "bigbench_operators",
    "bigbench_qa_wikidata",
    "boolq",
    "commonsense_qa",
    "copa",
    "coqa",
    "hellaswag",
    "hellaswag_zeroshot",
    "lambada_openai",
    "piqa",
    "pubmed_qa_labeled",
    "squad",
    "winograd",
)
GADRE_TASKS_46 = tuple(
    sorted(
        GADRE_TASKS_17
        + (
            "agi_eval_lsat_ar",
            "agi_eval_lsat_lr",
            "agi_eval_lsat_rc",
            "agi_eval_sat_en",
            "arc_challenge",
            "bbq",
            "bigbench_conceptual_combinations",
            "bigbench_conlang_translation",
            "bigbench_elementary_math_qa",
            "bigbench_language_identification",
            "bigbench_logical_deduction",
            "bigbench_misconceptions",
            "bigbench_repeat_copy_logic",
            "bigbench_strange_stories",
            "bigbench_strategy_qa",
            "bigbench_understanding_fables",
            "enterprise_pii_classification",
            "jeopardy",
            "logi_qa",
            "math_qa",
            "mmlu",
            "mmlu_zeroshot",
            "openbook_qa",
            "simple_arithmetic_nospaces",
            "simple_arithmetic_withspaces",
            "siqa",
            "winogender_mc_female",
            "winogender_mc_male",
            "winogrande",
        )
    )
)
#: The paper's task averages: "avg17" (its default metric) and "avg46".
TASK_SETS = {"avg17": GADRE_TASKS_17, "avg46": GADRE_TASKS_46}
KINDS = ("mean", "new_run")
METHODS = ("nuts", "map")
# generative tasks have chance error 1; the ceiling's logit needs a finite anchor
_CHANCE_CLIP = (1e-3, 0.999)
_MIN_NEW_RUN_DRAWS = 2000
_REQUIRED = ("family", "run", "task", "loss", "n_items", "chance_err")


class DownstreamFamilyWarning(UserWarning):
    """A prediction names a training corpus (family) the downstream fit did not see."""


# -- priors -----------------------------------------------------------------------------


@dataclass(frozen=True)
class DownstreamPriors:
    """Priors of the per-task downstream model.

    Every task parameter is ``population mean + spread * z_t`` (non-centred),
    so a task with few or noisy items is pulled towards the others.

    Attributes
    ----------
    ceiling_loc, ceiling_scale : float
        Population mean of the ceiling offset, ``logit(eps_t) - logit(chance_t)
        ~ Normal(0, 0.5)``: an untrained model errs at chance, and biased
        multiple-choice models sit a little above or below it (boolq's tiny
        models err 62% against a 50% chance level). Generative tasks (chance
        error 1) are anchored at 0.999 so that the logit stays finite.
    ceiling_spread : float
        HalfNormal scale of the task spread of that offset (0.5 on the logit
        scale: a 0.75-chance task keeps its ceiling within about 0.6-0.85).
    floor_loc, floor_scale, floor_df : float
        ``logit(floor_t / eps_t) = logit(0.05) + 0.5 * t_4``, with these
        values fixed rather than learned: a floor is only seen in tasks whose
        error has levelled off, so a learned population mean drifts up with
        them and then stops every other task from improving. Most tasks get a
        floor near 5% of their ceiling (label noise), and the heavy Student-t
        tails let the few that plateau far above zero keep their floor (a
        generative task whose error falls from 100% to a 55% plateau once the
        answer format is learned).
    rate_median, rate_log_sd : float
        ``gamma`` population median 1 per nat, ``LogNormal`` sd 1: Gadre et
        al.'s average-error fits give 0.5-0.8; single tasks fall faster.
    rate_spread : float
        HalfNormal(1) spread of ``log gamma_t``: rates differ by tasks (a
        format-learning step is nearly vertical); the floor, not the rate
        prior, keeps steep tasks from running off when extrapolated.
    midpoint_loc, midpoint_scale, midpoint_spread : float
        ``midpoint_t - L_ref``: where the task has lost half of its
        ceiling-to-floor range, in nats from the reference loss (the median
        training loss); population mean ``Normal(-0.5, 1)``, HalfNormal(1)
        spread: most tasks are still on their way down at the training losses,
        some (format-learning steps) are past it. Sampling the midpoint rather
        than the progress at the reference keeps a step-like task, whose rate
        is only bounded below, on an axis-aligned ridge NUTS can walk.
    dispersion_loc, dispersion_scale, dispersion_spread : float
        Beta-binomial concentration ``phi_t``: ``log phi_t`` population mean
        ``Normal(log 100, 1.5)`` (run-to-run scatter of a few points of
        accuracy beyond item sampling), HalfNormal(1.5) spread: some tasks
        (boolq, 32-item sets) scatter far more than others.
    shift_spread : float
        ``shift_f ~ Normal(0, tau)``, ``tau ~ HalfNormal(0.2)``: the same eval
        loss means somewhat different capability for models trained on
        different corpora (a C4-trained model has a lower C4 loss for the same
        skills); 0.2 nats covers the spread seen across the Gadre corpora.
    """

    ceiling_loc: float = 0.0
    ceiling_scale: float = 0.5
    ceiling_spread: float = 0.5
    floor_loc: float = math.log(0.05 / 0.95)
    floor_scale: float = 0.5
    floor_df: float = 4.0
    rate_median: float = 1.0
    rate_log_sd: float = 1.0
    rate_spread: float = 1.0
    midpoint_loc: float = -0.5
    midpoint_scale: float = 1.0
    midpoint_spread: float = 1.0
    dispersion_loc: float = math.log(100.0)
    dispersion_scale: float = 1.5
    dispersion_spread: float = 1.5
    shift_spread: float = 0.2

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> DownstreamPriors:
        return cls(**d)


# -- data -------------------------------------------------------------------------------


@dataclass(frozen=True)
class DownstreamData:
    """Validated arrays for the downstream model (one observation per run x task)."""

    tasks: tuple
    chance_err: np.ndarray  # (T,)
    n_items: np.ndarray  # (T,) int
    families: tuple
    runs: tuple
    obs_task: np.ndarray  # (n,) int
    obs_run: np.ndarray  # (n,) int
    run_family: np.ndarray  # (R,) int
    run_loss: np.ndarray  # (R,)
    correct: np.ndarray  # (n,) int
    loss_ref: float

    @property
    def n_obs(self) -> int:
        return int(self.obs_task.shape[0])

    @property
    def obs_family(self) -> np.ndarray:
        return self.run_family[self.obs_run]

    @property
    def obs_loss(self) -> np.ndarray:
        return self.run_loss[self.obs_run]

    def hash(self) -> str:
        """SHA-256 of the arrays and labels the model sees."""
        h = hashlib.sha256()
        for arr in (self.obs_task, self.obs_run, self.run_family, self.correct, self.n_items):
            h.update(np.ascontiguousarray(arr, dtype=np.int64).tobytes())
        for arr in (self.chance_err, self.run_loss):
            h.update(np.ascontiguousarray(arr, dtype=np.float64).tobytes())
        for labels in (self.tasks, self.families, self.runs):
            h.update("\x1f".join(labels).encode())
        return h.hexdigest()[:16]

    @classmethod
    def from_frame(cls, df: pd.DataFrame, *, tasks=None, families=None) -> DownstreamData:
        """Validate a run x task table.

        Parameters
        ----------
        df : pandas.DataFrame
            One row per (run, task) with ``family``, ``run``, ``task``,
            ``loss`` (the run's eval loss, nats), ``n_items``, ``chance_err``
            (1 - random-guess accuracy) and the score as ``correct`` (count),
            ``acc`` or ``err`` (fractions; ``correct = round(acc * n_items)``).
        tasks, families : list of str, optional
            Keep only these.
        """
        if not isinstance(df, pd.DataFrame):
            raise DataError(f"expected a pandas DataFrame, got {type(df).__name__}")
        missing = [c for c in _REQUIRED if c not in df.columns]
        score = next((c for c in ("correct", "acc", "err") if c in df.columns), None)
        if missing or score is None:
            need = missing + ([] if score else ["one of correct/acc/err"])
            raise DataError(
                f"missing column(s) {need}; the downstream table needs one row per run x task "
                f"with {list(_REQUIRED)} and the score as correct (count), acc or err (fractions)"
            )
        out = df.reset_index(drop=True).copy()
        if tasks is not None:
            tasks = [tasks] if isinstance(tasks, str) else list(tasks)
            unknown = sorted(set(tasks) - set(out["task"].astype(str)))
            if unknown:
                raise DataError(f"task(s) {unknown} are not in the table")
            out = out[out["task"].astype(str).isin(tasks)]
        if families is not None:
            families = [families] if isinstance(families, str) else list(families)
            out = out[out["family"].astype(str).isin(families)]
        if len(out) == 0:
            raise DataError("no rows left to fit (check the tasks/families filters)")
        for col in ("family", "run", "task"):
            out[col] = out[col].astype(str)
        for col in ("loss", "n_items", "chance_err", score):
            vals = pd.to_numeric(out[col], errors="coerce")
            bad = out.index[~np.isfinite(vals.to_numpy(dtype=float))]
            if len(bad):
                raise DataError(f"column '{col}' is missing or not numeric at rows {list(bad[:8])}")
            out[col] = vals
        checks = (
            ("loss", out["loss"] <= 0, "must be > 0 (eval loss in nats)"),
            (
                "n_items",
                (out["n_items"] < 1) | (out["n_items"] != np.round(out["n_items"])),
                "must be a positive whole number of items",
            ),
            ("chance_err", (out["chance_err"] <= 0) | (out["chance_err"] > 1), "must be in (0, 1]"),
        )
        if score in ("acc", "err"):
            bad_score = (out[score] < 0) | (out[score] > 1)
            checks += ((score, bad_score, "must be a fraction in [0, 1]"),)
        else:
            bad_score = (out[score] < 0) | (out[score] > out["n_items"])
            checks += ((score, bad_score, "must be a count in [0, n_items]"),)
        for col, mask, what in checks:
            if mask.any():
                raise DataError(f"column '{col}' {what}; bad rows {list(out.index[mask][:8])}")
        dup = out.duplicated(["run", "task"], keep=False)
        if dup.any():
            raise DataError(f"duplicated (run, task) pairs at rows {list(out.index[dup][:8])}")
        for key, cols in (("task", ("n_items", "chance_err")), ("run", ("loss", "family"))):
            for col in cols:
                varies = out.groupby(key)[col].nunique() > 1
                if varies.any():
                    raise DataError(
                        f"column '{col}' must be constant within each {key}; it varies for "
                        f"{list(varies.index[varies][:5])}"
                    )
        n = out["n_items"].to_numpy(dtype=np.int64)
        if score == "correct":
            correct = out["correct"].to_numpy(dtype=float).round().astype(np.int64)
        else:
            acc = out[score].to_numpy(dtype=float)
            acc = acc if score == "acc" else 1.0 - acc
            correct = np.round(acc * n).astype(np.int64)
        task_names = tuple(sorted(out["task"].unique()))
        meta = out.drop_duplicates("task").set_index("task").loc[list(task_names)]
        run_names = tuple(sorted(out["run"].unique()))
        run_meta = out.drop_duplicates("run").set_index("run").loc[list(run_names)]
        fam_names = tuple(sorted(out["family"].unique()))
        t_idx = {t: i for i, t in enumerate(task_names)}
        r_idx = {r: i for i, r in enumerate(run_names)}
        f_idx = {f: i for i, f in enumerate(fam_names)}
        run_loss = run_meta["loss"].to_numpy(dtype=float)
        return cls(
            tasks=task_names,
            chance_err=meta["chance_err"].to_numpy(dtype=float),
            n_items=meta["n_items"].to_numpy(dtype=np.int64),
            families=fam_names,
            runs=run_names,
            obs_task=out["task"].map(t_idx).to_numpy(dtype=np.int32),
            obs_run=out["run"].map(r_idx).to_numpy(dtype=np.int32),
            run_family=run_meta["family"].map(f_idx).to_numpy(dtype=np.int32),
            run_loss=run_loss,
            correct=correct,
            loss_ref=float(np.median(run_loss)),
        )


class DownstreamInputs(NamedTuple):
    """Arrays the model function consumes."""

    obs_task: np.ndarray  # (n,) int
    obs_family: np.ndarray  # (n,) int
    loss: np.ndarray  # (n,) the run's eval loss
    n_items: np.ndarray  # (n,) int
    correct: np.ndarray  # (n,) int
    logit_chance: np.ndarray  # (T,)
    loss_ref: float
    n_families: int


def logit_chance(chance_err) -> np.ndarray:
    c = np.clip(np.asarray(chance_err, dtype=float), *_CHANCE_CLIP)
    return np.log(c / (1.0 - c))


def inputs_from_data(data: DownstreamData) -> DownstreamInputs:
    return DownstreamInputs(
        obs_task=np.asarray(data.obs_task, dtype=np.int32),
        obs_family=np.asarray(data.obs_family, dtype=np.int32),
        loss=np.asarray(data.obs_loss, dtype=float),
        n_items=np.asarray(data.n_items[data.obs_task], dtype=np.int64),
        correct=np.asarray(data.correct, dtype=np.int64),
        logit_chance=logit_chance(data.chance_err),
        loss_ref=float(data.loss_ref),
        n_families=len(data.families),
    )


# -- model ------------------------------------------------------------------------------

TASK_VARS = ("eps", "floor", "k", "gamma", "midpoint", "phi")


def task_error(loss, eps, floor, gamma, midpoint):
    """Per-task error at (shifted) loss ``loss`` (broadcasts).

    :func:`bayescale.laws.downstream_error_saturating` with
    ``k = (eps - floor) exp(gamma * midpoint)``, written so that no large
    ``k`` is formed.
    """
    return laws.downstream_error_saturating(loss - midpoint, eps, eps - floor, gamma, floor)


def downstream_model(
    inputs: DownstreamInputs,
    *,
    priors: DownstreamPriors = DownstreamPriors(),  # noqa: B008 - frozen, immutable default
    observe: bool = True,
):
    """Hierarchical per-task downstream model (plates ``family``, ``task``, ``obs``)."""
    p = priors
    n_tasks = inputs.logit_chance.shape[0]
    mus, taus = {}, {}
    for name, loc, scale, spread in (
        ("ceiling", p.ceiling_loc, p.ceiling_scale, p.ceiling_spread),
        ("rate", math.log(p.rate_median), p.rate_log_sd, p.rate_spread),
        ("midpoint", p.midpoint_loc, p.midpoint_scale, p.midpoint_spread),
        ("dispersion", p.dispersion_loc, p.dispersion_scale, p.dispersion_spread),
    ):
        mus[name] = numpyro.sample(f"mu_{name}", dist.Normal(loc, scale))
        taus[name] = numpyro.sample(f"tau_{name}", dist.HalfNormal(spread))
    tau_shift = numpyro.sample("tau_shift", dist.HalfNormal(p.shift_spread))
    with numpyro.plate("family", inputs.n_families):
        z_shift = numpyro.sample("z_shift", dist.Normal(0.0, 1.0))
    shift = numpyro.deterministic("shift", tau_shift * z_shift)
    with numpyro.plate("task", n_tasks):
        z = {
            name: numpyro.sample(f"z_{name}", dist.Normal(0.0, 1.0))
            for name in ("ceiling", "rate", "midpoint", "dispersion")
        }
        z["floor"] = numpyro.sample("z_floor", dist.StudentT(p.floor_df, 0.0, 1.0))
    raw = {name: mus[name] + taus[name] * z[name] for name in mus}
    raw["floor"] = p.floor_loc + p.floor_scale * z["floor"]
    eps = numpyro.deterministic("eps", jax.nn.sigmoid(inputs.logit_chance + raw["ceiling"]))
    floor = numpyro.deterministic("floor", eps * jax.nn.sigmoid(raw["floor"]))
    gamma = numpyro.deterministic("gamma", jnp.exp(raw["rate"]))
    midpoint = numpyro.deterministic("midpoint", inputs.loss_ref + raw["midpoint"])
    numpyro.deterministic("k", (eps - floor) * jnp.exp(gamma * midpoint))
    phi = numpyro.deterministic("phi", jnp.exp(raw["dispersion"]))
    if not observe:
        return
    t = inputs.obs_task
    loss = inputs.loss - shift[inputs.obs_family]
    err = task_error(loss, eps[t], floor[t], gamma[t], midpoint[t])
    p_correct = jnp.clip(1.0 - err, 1e-9, 1.0 - 1e-9)
    with numpyro.plate("obs", inputs.correct.shape[0]):
        numpyro.sample(
            "correct",
            dist.BetaBinomial(p_correct * phi[t], (1.0 - p_correct) * phi[t], inputs.n_items),
            obs=inputs.correct,
        )


# -- fit --------------------------------------------------------------------------------


@dataclass(frozen=True)
class DownstreamConfig:
    """Everything needed to reproduce a downstream fit (stored with the saved file)."""

    method: str = "nuts"
    num_chains: int = 4
    num_warmup: int = 500
    num_samples: int = 500
    seed: int = 0
    target_accept: float = 0.95
    max_tree_depth: int = 8
    map_starts: int = 8
    priors: DownstreamPriors = field(default_factory=DownstreamPriors)

    def to_json(self) -> str:
        d = asdict(self)
        d["priors"] = self.priors.to_dict()
        return json.dumps(d, sort_keys=True)

    @classmethod
    def from_json(cls, s: str) -> DownstreamConfig:
        d = json.loads(s)
        d["priors"] = DownstreamPriors.from_dict(d["priors"])
        return cls(**d)


_DIMS = {
    **{f"z_{n}": ["task"] for n in ("ceiling", "floor", "rate", "midpoint", "dispersion")},
    **{v: ["task"] for v in TASK_VARS},
    "z_shift": ["family"],
    "shift": ["family"],
    "correct": ["obs"],
}


def _map(inputs: DownstreamInputs, config: DownstreamConfig, key):
    """Best of several L-BFGS runs on the posterior potential (unconstrained values)."""
    from bayescale.optim import map_search

    z_best, _, postprocess_fn = map_search(
        downstream_model,
        {"inputs": inputs, "priors": config.priors},
        n_starts=config.map_starts,
        key=key,
        maxiter=500,
    )
    return z_best, postprocess_fn


def fit_downstream(
    data,
    *,
    method: str = "nuts",
    seed: int = 0,
    num_chains: int = 4,
    num_warmup: int = 500,
    num_samples: int = 500,
    target_accept: float = 0.95,
    max_tree_depth: int = 8,
    map_starts: int = 8,
    tasks=None,
    families=None,
    priors: DownstreamPriors | None = None,
    progress_bar: bool | None = None,
) -> DownstreamPosterior:
    """Fit the hierarchical per-task downstream law.

    Parameters
    ----------
    data : pandas.DataFrame or DownstreamData
        One row per run x task (see :meth:`DownstreamData.from_frame`); e.g.
        ``load_dataset("gadre_downstream").query("default_fit_err")``.
    method : {"nuts", "map"}
        Full posterior by NUTS (chains in parallel, started from a jittered
        MAP), or the MAP point alone (one draw; no intervals from parameter
        uncertainty, and hierarchical spreads can collapse: for quick looks).
    seed : int
    num_chains, num_warmup, num_samples, target_accept, max_tree_depth
        NUTS settings.
    map_starts : int
        L-BFGS starts of the MAP search.
    tasks, families : list of str, optional
        Fit only these (when ``data`` is a frame).
    priors : DownstreamPriors, optional
    progress_bar : bool, optional
        Default: shown when stderr is a terminal.

    Returns
    -------
    DownstreamPosterior
    """
    from numpyro.infer import MCMC, NUTS

    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    config = DownstreamConfig(
        method=method,
        num_chains=int(num_chains),
        num_warmup=int(num_warmup),
        num_samples=int(num_samples),
        seed=int(seed),
        target_accept=float(target_accept),
        max_tree_depth=int(max_tree_depth),
        map_starts=int(map_starts),
        priors=priors or DownstreamPriors(),
    )
    if isinstance(data, pd.DataFrame):
        data = DownstreamData.from_frame(data, tasks=tasks, families=families)
    elif not isinstance(data, DownstreamData):
        raise TypeError("data must be a pandas DataFrame or a DownstreamData")
    if progress_bar is None:
        progress_bar = sys.stderr.isatty()
    inputs = inputs_from_data(data)
    # float64: beta-binomial log-densities of 10k-item tasks difference large
    # log-gamma values, and float32 round-off there stalls NUTS step sizes
    with jax.enable_x64(True):
        k_map, k_jit, k_mcmc = jax.random.split(jax.random.PRNGKey(config.seed), 3)
        z_map, postprocess = _map(inputs, config, k_map)
        if method == "map":
            samples = jax.tree.map(lambda v: np.asarray(v)[None, None], postprocess(z_map))
            tree = _tree_from_samples(samples, data)
            return DownstreamPosterior(tree=tree, data=data, config=config)
        nchains = config.num_chains
        mcmc = MCMC(
            NUTS(
                downstream_model,
                target_accept_prob=config.target_accept,
                max_tree_depth=config.max_tree_depth,
            ),
            num_warmup=config.num_warmup,
            num_samples=config.num_samples,
            num_chains=nchains,
            chain_method="parallel" if jax.local_device_count() >= nchains else "sequential",
            progress_bar=bool(progress_bar),
        )
        init = jittered_inits(z_map, nchains, k_jit)
        mcmc.run(k_mcmc, inputs, priors=config.priors, init_params=init)
        tree = _attach_data(draws_tree(mcmc, _coords(data), _DIMS), data)
    post = DownstreamPosterior(tree=tree, data=data, config=config)
    post.check(warn=True)
    return post


def _coords(data: DownstreamData) -> dict:
    return {"task": list(data.tasks), "family": list(data.families), "obs": np.arange(data.n_obs)}


def _tree_from_samples(samples: dict, data: DownstreamData) -> xr.DataTree:
    return _attach_data(draws_tree(samples, _coords(data), _DIMS), data)


def _attach_data(tree: xr.DataTree, data: DownstreamData) -> xr.DataTree:
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


# -- posterior --------------------------------------------------------------------------


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

    @property
    def tasks(self) -> tuple:
        return self.data.tasks

    def summary(self, var_names=None, **kwargs) -> pd.DataFrame:
        """ArviZ summary of the task laws (89% equal-tailed intervals, unrounded)."""
        from arviz_stats import summary

        var_names = var_names or ["eps", "floor", "k", "gamma", "phi", "shift", "tau_shift"]
        kwargs.setdefault("round_to", "none")
        if self.config.method == "map":
            kwargs.setdefault("kind", "stats")
        return summary(self.tree, var_names=var_names, **kwargs)

    def task_sets(self) -> dict:
        """Task averages this fit can predict: the paper's sets it covers, and "all"."""
        sets = {k: v for k, v in TASK_SETS.items() if set(v) <= set(self.tasks)}
        return sets | {"all": self.tasks}

    def predict(self, loss, *, family=None, tasks="avg17", kind="mean", prob=0.9, seed=0):
        """Predicted error at a known loss; see :func:`predict_error`."""
        return predict_error(
            self, loss, family=family, tasks=tasks, kind=kind, prob=prob, seed=seed
        )

    def save(self, path) -> None:
        """Write a netCDF file with the tree, config, package version and data hash."""
        self._write(path, "bayescale_downstream_config")


def load_downstream(path, *, data: DownstreamData | None = None) -> DownstreamPosterior:
    """Read a fit written by :meth:`DownstreamPosterior.save`.

    Raises
    ------
    FitFileError
        Unreadable file, a loss-law fit instead of a downstream one, or a data
        hash that does not match (the stored one, or ``data``'s).
    """
    tree = read_tree(
        path,
        "bayescale_downstream_config",
        kind="a downstream fit",
        other_attr="bayescale_config",
        other="a loss-law fit (read it with bayescale.load)",
    )
    stored = _data_from_tree(tree)
    check_data_hash(path, tree, stored, data)
    config = DownstreamConfig.from_json(tree.attrs["bayescale_downstream_config"])
    return DownstreamPosterior(tree=tree, data=stored, config=config)


# -- prediction -------------------------------------------------------------------------


def _resolve_tasks(post: DownstreamPosterior, tasks) -> list:
    """``[(label, task indices)]`` for "avg17"/"avg46"/"all", a task name or a list."""
    items = [tasks] if isinstance(tasks, str) else list(tasks)
    if not items:
        raise ValueError("tasks is empty; give 'avg17', 'avg46', a task name or a list")
    index = {t: i for i, t in enumerate(post.tasks)}
    out = []
    for item in items:
        if item in TASK_SETS or item == "all":
            names = post.tasks if item == "all" else TASK_SETS[item]
            missing = [t for t in names if t not in index]
            if missing:
                raise ValueError(
                    f"{item!r} needs task(s) the downstream fit does not have: {missing}; "
                    f"refit on them or ask for single tasks (fitted: {list(post.tasks)})"
                )
            out.append((item, np.array([index[t] for t in names])))
        elif item in index:
            out.append((item, np.array([index[item]])))
        else:
            raise ValueError(
                f"unknown task {item!r}: not in the downstream fit. Use 'avg17', 'avg46', 'all' "
                f"or one of {list(post.tasks)}"
            )
    return out


def _family_shift(post: DownstreamPosterior, family, rng) -> np.ndarray:
    """Per-draw loss shift of a corpus; an unseen one is drawn from the population."""
    if family is not None and family in post.families:
        return post.draws("shift")[:, post.families.index(family)]
    if family is not None:
        warnings.warn(
            f"family {family!r} is not in the downstream fit (fitted: {list(post.families)}). "
            "Its loss-to-error shift is drawn from the population, and the law only applies "
            "to losses on the eval set the downstream fit used (C4 eval for the bundled Gadre "
            "data): a loss law fitted to another eval set gives meaningless error predictions.",
            DownstreamFamilyWarning,
            stacklevel=4,
        )
    tau = post.draws("tau_shift")
    return tau * rng.standard_normal(tau.shape[0])


def _loss_matrix(loss) -> np.ndarray:
    """Float -> (1, 1); 1-d draws -> (S, 1); (S, P) stays."""
    arr = np.asarray(loss, dtype=float)
    if arr.ndim == 0:
        arr = arr.reshape(1, 1)
    elif arr.ndim == 1:
        arr = arr[:, None]
    elif arr.ndim != 2:
        raise ValueError(f"loss must be a float, 1-d draws or (S, P) draws; got shape {arr.shape}")
    if arr.size == 0 or not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise ValueError("loss must be finite and > 0 (nats)")
    return arr


def error_draws(
    post: DownstreamPosterior, loss, *, family=None, tasks="avg17", kind="mean", seed=0
):
    """Draws of the predicted error, one array per requested task or average.

    Parameters
    ----------
    post : DownstreamPosterior
    loss : float or array
        Eval loss: a float (known exactly), 1-d draws of one loss, or an
        ``(S, P)`` array of draws for ``P`` query points.
    family, tasks, kind, seed
        See :func:`predict_error`.

    Returns
    -------
    labels : list of str
    draws : list of arrays, each of shape (S', P)
        ``S'`` pairs loss draws with downstream draws (the larger count).
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    items = _resolve_tasks(post, tasks)
    loss = _loss_matrix(loss)
    rng = np.random.default_rng(seed)
    shift = _family_shift(post, family, rng)
    s_down, s_loss = post.n_draws, loss.shape[0]
    # sampling noise needs many draws even around a single (MAP, exact-loss) point
    n = max(s_down, s_loss, _MIN_NEW_RUN_DRAWS if kind == "new_run" else 1)
    # the two posteriors are independent: pair them by random, balanced indices
    i_down = rng.permutation(np.resize(np.arange(s_down), n))
    i_loss = rng.permutation(np.resize(np.arange(s_loss), n))
    used = np.unique(np.concatenate([idx for _, idx in items]))
    par = {v: post.draws(v)[i_down][:, None, used] for v in ("eps", "floor", "gamma", "midpoint")}
    shifted = (loss[i_loss] - shift[i_down][:, None])[:, :, None]
    err = np.asarray(task_error(shifted, **par), dtype=float)
    if kind == "new_run":
        # a fresh run's score: item sampling plus the task's run-to-run scatter
        phi = post.draws("phi")[i_down][:, None, used]
        p_ok = np.clip(1.0 - err, 1e-9, 1.0 - 1e-9)
        n_items = post.data.n_items[used]
        ok = rng.binomial(n_items, rng.beta(p_ok * phi, (1.0 - p_ok) * phi))
        err = 1.0 - ok / n_items
    pos = {t: j for j, t in enumerate(used)}
    return [label for label, _ in items], [
        err[:, :, [pos[i] for i in idx]].mean(axis=-1) for _, idx in items
    ]


def _frame(labels, draws, n_tasks, prob, kind, loss_med, extra: dict) -> pd.DataFrame:
    rows = []
    for label, d, nt in zip(labels, draws, n_tasks, strict=True):
        lo, med, hi = np.quantile(d, [(1 - prob) / 2, 0.5, (1 + prob) / 2], axis=0)
        for j in range(d.shape[1]):
            row = {k: v[j] for k, v in extra.items()}
            row |= {"loss_median": loss_med[j], "task": label, "n_tasks": nt, "kind": kind}
            row |= {"prob": prob, "median": med[j], "mean": d[:, j].mean()}
            rows.append(row | {"lower": lo[j], "upper": hi[j]})
    return pd.DataFrame(rows)


def _check_prob(prob) -> float:
    prob = float(prob)
    if not 0 < prob < 1:
        raise ValueError(f"prob must be in (0, 1), got {prob}")
    return prob


def predict_error(
    down_post: DownstreamPosterior,
    loss,
    *,
    family=None,
    tasks="avg17",
    kind: str = "mean",
    prob: float = 0.9,
    seed: int = 0,
) -> pd.DataFrame:
    """Predicted top-1 error at a given eval loss (no loss posterior needed).

    Parameters
    ----------
    down_post : DownstreamPosterior
    loss : float or array
        A float is taken as exact; 1-d array = draws of one loss (e.g. from
        another model); ``(S, P)`` = draws for ``P`` points (``(1, P)`` for
        ``P`` exact losses). Must be measured on the downstream fit's eval set.
    family : str, optional
        Training corpus whose loss-to-error shift applies. ``None`` (or a
        family the fit did not see, with a warning) draws it from the
        population, which widens the interval.
    tasks : str or list of str
        ``"avg17"``, ``"avg46"`` (the paper's averages), ``"all"`` (every
        fitted task), a task name, or a list mixing these; one row each.
    kind : {"mean", "new_run"}
        ``"mean"``: the error the law gives; the interval holds the
        uncertainty of the task laws and of the loss. ``"new_run"``: the
        score one evaluated run would get, adding each task's item sampling
        (binomial in its item count: a 32-item task scatters far more than a
        10k-item one) and its run-to-run scatter (beta-binomial
        over-dispersion). Compare observed scores with ``"new_run"``.
    prob : float
        Equal-tailed interval probability.
    seed : int

    Returns
    -------
    pandas.DataFrame
        One row per loss point and requested item: loss_median, task, n_tasks,
        kind, prob, median, mean, lower, upper (of the error, a fraction).
    """
    prob = _check_prob(prob)
    labels, draws = error_draws(down_post, loss, family=family, tasks=tasks, kind=kind, seed=seed)
    loss_med = np.median(_loss_matrix(loss), axis=0)
    n_tasks = [len(idx) for _, idx in _resolve_tasks(down_post, tasks)]
    extra = {"family": np.full(loss_med.shape[0], family, dtype=object)}
    return _frame(labels, draws, n_tasks, prob, kind, loss_med, extra)


def predict_downstream(
    loss_post,
    down_post: DownstreamPosterior,
    *,
    family: str,
    params,
    tokens,
    tasks="avg17",
    kind: str = "mean",
    prob: float = 0.9,
    seed: int = 0,
) -> pd.DataFrame:
    """Predicted downstream error of model (params, tokens), chaining the loss posterior.

    Every loss-law draw's predicted eval loss goes through a downstream draw,
    so the interval carries both uncertainties (nothing is plugged in).

    Parameters
    ----------
    loss_post : Posterior
        A loss-law fit (``bayescale.fit``) on the eval loss the downstream
        model was fitted on (C4 eval for the bundled Gadre data).
    down_post : DownstreamPosterior
    family : str
        Family of the loss law; also the training corpus whose loss-to-error
        shift applies. A family the downstream fit did not see raises a
        :class:`DownstreamFamilyWarning` (and uses the population shift).
    params, tokens : float or array
        Raw parameter and token counts (broadcast).
    tasks, kind, prob, seed
        As in :func:`predict_error`. ``kind="new_run"`` also adds the loss
        law's seed noise (a fresh training run), then the run's task scores.

    Returns
    -------
    pandas.DataFrame
        One row per (params, tokens) and requested item: family, params,
        tokens, loss_median, task, n_tasks, kind, prob, median, mean, lower,
        upper.
    """
    from bayescale.predict import loss_draws

    prob = _check_prob(prob)
    p, t = (np.atleast_1d(np.asarray(x, dtype=float)).ravel() for x in (params, tokens))
    if p.shape != t.shape and 1 not in (p.size, t.size):
        raise ValueError(
            f"params and tokens must have the same length or one of them a single value; "
            f"got {p.size} and {t.size}"
        )
    p, t = np.broadcast_arrays(p, t)
    loss = loss_draws(loss_post, family, p, t, kind=kind, seed=seed)
    labels, draws = error_draws(
        down_post, loss, family=family, tasks=tasks, kind=kind, seed=seed + 1
    )
    n_tasks = [len(idx) for _, idx in _resolve_tasks(down_post, tasks)]
    extra = {"family": np.full(p.shape[0], family, dtype=object), "params": p, "tokens": t}
    return _frame(labels, draws, n_tasks, prob, kind, np.median(loss, axis=0), extra)
