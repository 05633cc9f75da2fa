"""New runs under one posterior draw: their inputs, simulated losses and marginal likelihood.

Everything here uses the model's own trajectory distribution
(:func:`bayescale.model.trajectory`), so what ``plan`` simulates and how it
weighs an outcome is exactly what the fit assumes.

Run offsets. A new run sits at its family's law plus the family's discrepancy
at its size, ``delta`` (:meth:`bayescale.posterior.Posterior.discrepancy_at`,
drawn jointly with the target's, so that a run near the target informs it),
plus its own seed effect ``Normal(0, sigma_seed)``, which is integrated out
exactly (the noise is Gaussian, as in the fit: :mod:`bayescale.offsets`).
New seeds at a fitted size sharpen that size's discrepancy and, through the
shared inducing values, the law; a run at a new size measures the discrepancy
near it.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
import pandas as pd

from bayescale import laws
from bayescale.design.candidates import Candidate, family_design
from bayescale.model import ModelInputs, family_law, law_mean, trajectory
from bayescale.offsets import run_statistics

#: The sites of one posterior draw that the run likelihood needs.
PARAM_KEYS = ("log_E", "a", "b", "alpha_f", "beta_f", "sigma_obs", "ell", "sigma_seed")
# the arrays of ModelInputs that describe a run (traced under jit)
RUN_FIELDS = (
    "run_family", "log_n", "run_x", "seeded", "obs_run", "log_d", "first", "y", "obs_mask"
)  # fmt: skip


def draw_params(post, idx: np.ndarray) -> dict:
    """The sites of :data:`PARAM_KEYS` at draws ``idx``, as jnp arrays (S, ...)."""
    return {k: jnp.asarray(post.draws(k)[idx]) for k in PARAM_KEYS}


def target_draws(post, target, kind: str, idx: np.ndarray, delta, rng) -> np.ndarray:
    """Loss at the target under posterior draws ``idx`` (nats), shape (S,).

    ``delta`` is the family offset per draw (module notes); for
    ``kind="new_run"`` a new run's seed effect and trajectory noise are drawn
    with ``rng`` as every prediction draws them
    (:meth:`~bayescale.posterior.Posterior.new_run_offsets`).
    """
    law = post.law(target.family).map(lambda v: np.asarray(v)[idx])
    log_mu = np.asarray(laws.log_loss(law, math.log(target.params), math.log(target.tokens)))
    log_mu = log_mu + delta
    if kind == "new_run":
        noise = post.new_run_offsets(target.family, [target.params], [target.tokens], rng, idx)
        log_mu = log_mu + noise[:, 0]
    return np.exp(log_mu)


def seeded_runs(post, f: int) -> bool:
    """Whether new runs of family ``f`` carry a seed effect (not in a final-loss-only family)."""
    return not bool(post.inputs.final_only[f])


def run_inputs(f: int, params: float, tokens, n_pad: int | None = None, x=None, seeded=True):
    """:class:`ModelInputs` of one new run of family ``f`` (``y`` zero), and its mask.

    With ``n_pad`` the run is padded to that many checkpoints (log-spaced past
    the last one) so that runs of different lengths share compiled code; the
    mask is False on the padding. ``x`` is the run's discrepancy coordinate
    (:meth:`~bayescale.posterior.Posterior.query_x`; default ``(log N, 0)``).
    ``seeded=False`` for a family fitted on final losses only, where
    ``sigma_obs`` is the whole run-to-run scatter.
    """
    tokens = np.asarray(tokens, dtype=float)
    n = tokens.size
    n_pad = n if n_pad is None else int(n_pad)
    if n_pad < n:
        raise ValueError(f"n_pad={n_pad} is shorter than the run ({n} checkpoints)")
    tokens = np.concatenate([tokens, tokens[-1] * np.exp(0.1 * np.arange(1, n_pad - n + 1))])
    first = np.zeros(n_pad, dtype=bool)
    first[0] = True
    inputs = ModelInputs(
        run_family=np.array([f], dtype=np.int32),
        log_n=np.array([math.log(params)]),
        run_x=np.array([[math.log(params), 0.0]]) if x is None else np.reshape(x, (1, 2)),
        seeded=np.array([bool(seeded)]),
        obs_run=np.zeros(n_pad, dtype=np.int32),
        log_d=np.log(tokens),
        first=first,
        y=np.zeros(n_pad),
        obs_mask=np.ones(n_pad),
        **_NO_FAMILIES,
    )
    return inputs, np.arange(n_pad) < n


# the family-level fields of ModelInputs: the run likelihood does not read them
_NO_FAMILIES = dict(
    n_families=0,
    center=np.zeros((0, 2)),
    noncentred=np.zeros(0, dtype=bool),
    final_only=np.zeros(0, dtype=bool),
    inducing=np.zeros((0, 1, 2)),
    inducing_mask=np.zeros((0, 1), dtype=bool),
    gp_buckets=(),
)


def run_inputs_from(arrays: dict) -> ModelInputs:
    """Rebuild one run's inputs from their arrays (the family-level fields unused)."""
    return ModelInputs(**arrays, **_NO_FAMILIES)


def one_draw(params: dict, i) -> dict:
    return {k: v[i] for k, v in params.items()}


def _seed_var(inputs1: ModelInputs, draw: dict):
    return jnp.where(jnp.asarray(inputs1.seeded)[0], draw["sigma_seed"] ** 2, 0.0)


def simulate_run(key, inputs1: ModelInputs, draw: dict, delta, z):
    """Relative log loss of one new run under one draw, offset ``delta`` plus ``z`` seed sds."""
    u = jnp.reshape(delta + jnp.sqrt(_seed_var(inputs1, draw)) * z, (1,))
    traj = trajectory(inputs1, family_law(draw), u, draw["sigma_obs"], draw["ell"])
    return traj.sample(key)


def run_log_marginal(inputs1: ModelInputs, draw: dict, delta, y, mask=None):
    """``log ∫ p(y | draw, u = delta + v) Normal(v; 0, sigma_seed) dv`` for one run.

    Exact: the run's OU noise is Gaussian, so its seed effect is integrated
    out by Sherman-Morrison on the run's whitened sums
    (:func:`bayescale.offsets.run_statistics`). ``mask`` (bool, per
    checkpoint) drops padding.
    """
    keep = inputs1.obs_mask if mask is None else jnp.asarray(mask, dtype=float)
    inputs1 = inputs1._replace(y=y, obs_mask=keep)
    loc = law_mean(inputs1, family_law(draw)) + delta
    q, a, b, half_logdet = run_statistics(inputs1, loc, draw["sigma_obs"], draw["ell"])
    d = _seed_var(inputs1, draw)
    g = 1.0 + d * a[0]
    quad = q[0] - d * b[0] ** 2 / g
    n = jnp.sum(keep)
    return -0.5 * quad - half_logdet - 0.5 * jnp.log(g) - 0.5 * n * math.log(2 * math.pi)


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
    return pd.DataFrame(rows)
