"""New runs under one posterior draw: their inputs, simulated losses and marginal likelihood.

Everything here uses the model's own trajectory distribution
(:func:`bayescale.model.trajectory`), so what ``plan`` simulates and how it
weighs an outcome is exactly what the fit assumes.

Run effects. A new run's seed effect is ``Normal(0, sigma_seed)`` around the
family's law, which sits an unknown ``delta`` away from the fitted law
(:meth:`bayescale.posterior.Posterior.level_offsets`). ``delta`` is an
explicit latent per draw, shared by the target and the new runs, so that new
seeds can inform it: that is where "more seeds" earns its keep. In fits with
the size-level discrepancy ``delta`` also holds the discrepancy at the run's
size, drawn jointly with the target's, so that a run near the target measures
it.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pandas as pd

from bayescale.design.candidates import Candidate, family_design
from bayescale.model import ModelInputs, anneal_params, family_law, trajectory

#: The sites of one posterior draw that the run likelihood needs.
PARAM_KEYS = ("log_E", "a", "b", "alpha_f", "beta_f", "sigma_obs", "u", "ell", "nu", "sigma_seed")
#: ... and in fits with learning-rate schedules, the annealing bonus's (those it has).
ANNEAL_KEYS = ("anneal_B", "anneal_C", "anneal_beta", "anneal_gamma", "anneal_kappa")
# the arrays of ModelInputs that describe a run (traced under jit)
RUN_FIELDS = ("run_family", "log_n", "obs_run", "log_d", "first", "y", "run_single")
# ... and of a run with a schedule: its LR area and the bonus's three feature matrices
SCHEDULE_FIELDS = ("log_area", "anneal_drop", "anneal_eta", "anneal_after")
_GH_NODES = 20
_FISHER_STEPS = 6


def param_keys(post) -> tuple:
    """The sites a new run's likelihood needs in this fit (:data:`PARAM_KEYS`, annealing)."""
    tree = post.tree["posterior"]
    return PARAM_KEYS + tuple(k for k in ANNEAL_KEYS if k in tree)


def draw_params(post, idx: np.ndarray) -> dict:
    """The sites of :func:`param_keys` at draws ``idx``, as jnp arrays (S, ...)."""
    return {k: jnp.asarray(post.draws(k)[idx]) for k in param_keys(post)}


def target_draws(post, target, kind: str, idx: np.ndarray, delta, rng, schedule=None) -> np.ndarray:
    """Loss at the target under posterior draws ``idx`` (nats), shape (S,).

    ``delta`` is the family offset per draw (module notes); for
    ``kind="new_run"`` a new run's seed effect and trajectory noise are drawn
    with ``rng`` as every prediction draws them
    (:meth:`~bayescale.posterior.Posterior.new_run_offsets`). ``schedule``
    (a :class:`~bayescale.schedules.Shape`): the target run's schedule,
    stretched over its tokens; ``None``: a constant rate.
    """
    from bayescale.queries import log_law_draws

    law = post.law(target.family).map(lambda v: np.asarray(v)[idx])
    grid, anneal = None, None
    if schedule is not None:
        grid = schedule.grid(target.tokens)
        anneal = post.anneal(target.family).map(lambda v: np.asarray(v)[idx])
    log_mu = log_law_draws(law, anneal, [target.params], [target.tokens], grid)[:, 0]
    log_mu = log_mu + delta
    if kind == "new_run":
        noise = post.new_run_offsets(target.family, [target.params], [target.tokens], rng, idx)
        log_mu = log_mu + noise[:, 0]
    return np.exp(log_mu)


def run_inputs(
    f: int, n_families: int, params: float, tokens, n_pad: int | None = None, schedule=None
):
    """:class:`ModelInputs` of one new run of family ``f`` (``y`` zero), and its mask.

    With ``n_pad`` the run is padded to that many checkpoints (log-spaced past
    the last one) so that runs of different lengths share compiled code; the
    mask is False on the padding. ``schedule`` (a
    :class:`~bayescale.schedules.Shape`) is stretched over the run's tokens;
    ``None``: a constant rate.
    """
    tokens = np.asarray(tokens, dtype=float)
    n = tokens.size
    n_pad = n if n_pad is None else int(n_pad)
    if n_pad < n:
        raise ValueError(f"n_pad={n_pad} is shorter than the run ({n} checkpoints)")
    end = tokens[-1]
    tokens = np.concatenate([tokens, end * np.exp(0.1 * np.arange(1, n_pad - n + 1))])
    sched = {}
    if schedule is not None:
        from bayescale.schedules import features

        log_area, *anneal = features(schedule.grid(end), tokens, schedule.width)
        sched = {"log_area": log_area, "anneal": tuple(anneal)}
    first = np.zeros(n_pad, dtype=bool)
    first[0] = True
    inputs = ModelInputs(
        run_family=np.array([f], dtype=np.int32),
        log_n=np.array([math.log(params)]),
        obs_run=np.zeros(n_pad, dtype=np.int32),
        log_d=np.log(tokens),
        first=first,
        y=np.zeros(n_pad),
        n_families=int(n_families),
        run_single=np.zeros(1, dtype=bool),
        **sched,
    )
    return inputs, np.arange(n_pad) < n


def run_arrays(inputs1: ModelInputs) -> dict:
    """The arrays of one run's inputs that differ between designs (stacked, traced)."""
    out = {k: getattr(inputs1, k) for k in RUN_FIELDS}
    if inputs1.anneal is not None:
        out |= dict(zip(SCHEDULE_FIELDS, (inputs1.log_area, *inputs1.anneal), strict=True))
    return out


def stacked(arrays: list) -> dict:
    """:func:`run_arrays` of several designs, stacked along a first axis."""
    return {k: jnp.asarray(np.stack([a[k] for a in arrays])) for k in arrays[0]}


def run_inputs_from(arrays: dict) -> ModelInputs:
    """Rebuild run inputs from :func:`run_arrays` (``n_families`` is unused by the likelihood)."""
    base = {k: arrays[k] for k in RUN_FIELDS}
    if SCHEDULE_FIELDS[0] not in arrays:
        return ModelInputs(**base, n_families=0)
    log_area, *anneal = (arrays[k] for k in SCHEDULE_FIELDS)
    return ModelInputs(**base, n_families=0, log_area=log_area, anneal=tuple(anneal))


def one_draw(params: dict, i) -> dict:
    return {k: v[i] for k, v in params.items()}


def _run_trajectory(inputs1: ModelInputs, draw: dict, u):
    return trajectory(
        inputs1,
        family_law(draw),
        jnp.reshape(u, (1,)),
        draw["sigma_obs"],
        draw["sigma_seed"],
        draw["ell"],
        draw["nu"],
        anneal_params(draw),
    )


def simulate_run(key, inputs1: ModelInputs, draw: dict, delta, z):
    """Relative log loss of one new run under one draw, seed effect ``delta + sigma_seed z``."""
    return _run_trajectory(inputs1, draw, delta + draw["sigma_seed"] * z).sample(key)


def run_log_marginal(
    inputs1: ModelInputs, draw: dict, delta, y, mask=None, n_nodes: int = _GH_NODES
):
    """``log ∫ p(y | draw, u = delta + v) Normal(v; 0, sigma_seed) dv`` for one run.

    The innovations are linear in the run effect, ``w(v) = w(0) - v c``, so
    two evaluations of the trajectory's innovations give the whole integrand;
    it is centred and scaled by a few Fisher-scoring steps (Student-t
    information) and integrated with ``n_nodes``-point Gauss-Hermite.
    ``mask`` (bool, per checkpoint) drops padding.
    """
    traj0 = _run_trajectory(inputs1, draw, delta)
    w0 = traj0.innovations(y)
    c = w0 - _run_trajectory(inputs1, draw, delta + 1.0).innovations(y)
    scale = traj0.innovation_scale
    keep = jnp.ones_like(w0) if mask is None else jnp.asarray(mask, dtype=w0.dtype)
    nu, sig = draw["nu"], draw["sigma_seed"]
    noise = dist.StudentT(nu, 0.0, scale)
    prior = dist.Normal(0.0, sig)
    # the innovations are in units of the noise sd: its Jacobian, as in the likelihood
    jacobian = -jnp.sum(keep * jnp.log(traj0.scale))

    def log_f(v):
        return jnp.sum(keep * noise.log_prob(w0 - v * c)) + prior.log_prob(v) + jacobian

    prec = keep * c**2 / scale**2
    info = jnp.sum(prec * (nu + 1.0) / (nu + 3.0)) + 1.0 / sig**2
    v = jnp.sum(keep * c * w0 / scale**2) / (jnp.sum(prec) + 1.0 / sig**2)
    grad = jax.grad(log_f)
    v = jax.lax.fori_loop(0, _FISHER_STEPS, lambda _, v: v + grad(v) / info, v)
    # the nodes only place the quadrature: derivatives flow through the integrand
    v = jax.lax.stop_gradient(v)
    h = jax.lax.stop_gradient(jnp.sqrt(2.0 / info))
    x, wq = np.polynomial.hermite.hermgauss(n_nodes)
    vals = jax.vmap(log_f)(v + h * x)
    return jax.scipy.special.logsumexp(vals + x**2 + np.log(wq)) + jnp.log(h)


def new_runs_frame(post, family: str, candidate, loss, *, prefix: str = "new") -> pd.DataFrame:
    """Tidy rows for the runs of an experiment, to append to the data.

    ``loss`` has shape ``(n_runs, n_checkpoints)`` at the checkpoints
    :meth:`FamilyDesign.checkpoints` gives for the candidate's token count.
    """
    cand = Candidate.coerce(candidate)
    ckpt = family_design(post, family).checkpoints(cand.tokens)
    loss = np.asarray(loss, dtype=float).reshape(cand.n_runs, ckpt.size)
    names = [f"{prefix}-{cand.params:.2g}-{r}" for r in range(cand.n_runs)]
    rows = {
        "family": np.repeat(family, loss.size),
        "run": np.repeat(names, ckpt.size),
        "params": np.full(loss.size, cand.params),
        "tokens": np.tile(ckpt, cand.n_runs),
        "loss": loss.ravel(),
        "seed": np.repeat([f"{prefix}{r}" for r in range(cand.n_runs)], ckpt.size),
    }
    if post.data.family_group is not None:
        rows["group"] = np.repeat(post.data.family_group[post.data.family_index(family)], loss.size)
    return pd.DataFrame(rows)
