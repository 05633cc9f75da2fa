"""Per-task downstream law as a NumPyro model (arrays only).

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
than a 10k-item one.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

from bayescale import laws

# generative tasks have chance error 1; the ceiling's logit needs a finite anchor
_CHANCE_CLIP = (1e-3, 0.999)


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
