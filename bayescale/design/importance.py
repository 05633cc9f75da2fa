"""Importance sampling: the target's posterior after an experiment, by reweighting draws.

For each candidate, simulated outcomes come from the posterior predictive (a
draw, a fresh seed effect per new run, whole trajectories); each outcome
reweights the draws by its likelihood under them (:func:`run_log_marginal`),
and the weighted sd and interval width of the target are read off. Candidates
that share a run design share their simulated runs (common random numbers).
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from bayescale.design.candidates import Candidate, family_design
from bayescale.design.runs import (
    draw_params,
    one_draw,
    run_arrays,
    run_inputs,
    run_inputs_from,
    run_log_marginal,
    simulate_run,
    stacked,
    target_draws,
)
from bayescale.options import DEFAULT_CI_PROB, KINDS, Target, check_choice


def checked_target(post, target) -> Target:
    """A :class:`~bayescale.options.Target` of a fitted family (``plan`` needs one)."""
    from bayescale.options import did_you_mean

    tgt = Target.parse(target)
    if tgt.family not in post.families:
        raise ValueError(
            f"target family {tgt.family!r} is not in the fit"
            f"{did_you_mean(tgt.family, post.families)}"
            f" (fitted: {list(post.families)}); new runs can only be planned for a fitted family"
        )
    return tgt


@dataclass(frozen=True)
class Setup:
    post: object
    target: object  # options.Target
    kind: str
    f: int
    params: dict  # (S, ...) jnp arrays
    run_delta: dict  # (params, tokens) of a run design -> (S,) offsets of its new runs
    t_draws: np.ndarray  # (S,)
    gen: np.ndarray  # (M,) generating draw per outcome
    base_key: jax.Array
    z_seed: np.ndarray  # (M, max_runs) standard normals for the new seed effects
    ci_prob: float
    schedule: object = None  # schedules.Shape of the target and new runs; None: constant rate


def weighted_stats(t, order, logw, ci_prob):
    """Weighted sd, interval width and Kish ESS of the target draws ``t`` under ``logw``."""
    w = jax.nn.softmax(logw)
    mean = jnp.sum(w * t)
    var = jnp.sum(w * (t - mean) ** 2)
    ws, ts = w[order], t[order]
    cdf = jnp.cumsum(ws) - 0.5 * ws
    lo, hi = jnp.interp(jnp.array([(1 - ci_prob) / 2, (1 + ci_prob) / 2]), cdf, ts)
    return jnp.sqrt(var), hi - lo, 1.0 / jnp.sum(w**2)


def outcome_key(base_key, m, r):
    return jax.random.fold_in(jax.random.fold_in(base_key, m), r)


@jax.jit
def _items_log_marginals(designs, masks, items, z, params, delta, base_key):
    """Log marginal likelihood of simulated new runs under every draw: (items, S).

    ``designs`` stacks padded single-run inputs (G designs) and ``delta``
    their runs' offsets (G, S); item ``i`` is run ``r`` of outcome ``m`` of
    design ``g``, simulated from draw ``j``, with seed normal ``z[i]``.
    """

    def per_item(args):
        (g, m, r, j), zi = args
        inputs1 = run_inputs_from({k: a[g] for k, a in designs.items()})
        mask, d_g = masks[g], delta[g]
        y = simulate_run(outcome_key(base_key, m, r), inputs1, one_draw(params, j), d_g[j], zi)
        return jax.vmap(lambda draw, d: run_log_marginal(inputs1, draw, d, y, mask))(params, d_g)

    return jax.lax.map(per_item, (tuple(items.T), z))


def next_pow2(n: int) -> int:
    return 1 << max(int(n) - 1, 0).bit_length()


def importance_groups(setup: Setup, groups: dict, checkpoints: dict) -> dict:
    """Expected posterior sd etc. of every candidate, by importance sampling.

    Candidates sharing a run design share their simulated runs (run ``r`` of
    outcome ``m`` is the same draw of noise everywhere), so ``k`` seeds reuse
    the first ``k`` runs of the largest ``k``, and comparisons between
    candidates carry common random numbers.
    """
    post = setup.post
    n_out = setup.gen.shape[0]
    # one padded length for all designs: one compilation, which costs more than the padding
    n_pad = next_pow2(max(ck.size for ck in checkpoints.values()))
    by_pad = {n_pad: list(groups)}
    order = jnp.asarray(np.argsort(setup.t_draws))
    t = jnp.asarray(setup.t_draws)
    gen = jnp.asarray(setup.gen)
    stats_fn = jax.jit(jax.vmap(lambda lw: weighted_stats(t, order, lw, setup.ci_prob)))
    out = {}
    for n_pad, keys in by_pad.items():
        built = [
            run_inputs(setup.f, post.data.n_families, k[0], checkpoints[k], n_pad, setup.schedule)
            for k in keys
        ]
        designs = stacked([run_arrays(b[0]) for b in built])
        masks = jnp.asarray(np.stack([b[1] for b in built]))
        items, span = [], {}
        for g, key in enumerate(keys):
            k_max = max(c.n_runs for c in groups[key])
            span[key] = (len(items), k_max)
            items += [(g, m, r, setup.gen[m]) for m in range(n_out) for r in range(k_max)]
        items = np.asarray(items, dtype=np.int32)
        z = jnp.asarray(setup.z_seed[items[:, 1], items[:, 2]])
        ll = _items_log_marginals(
            designs,
            masks,
            jnp.asarray(items),
            z,
            setup.params,
            jnp.asarray(np.stack([setup.run_delta[k] for k in keys])),
            setup.base_key,
        )
        for key in keys:
            start, k_max = span[key]
            cum = jnp.cumsum(ll[start : start + n_out * k_max].reshape(n_out, k_max, -1), axis=1)
            for c in groups[key]:
                logw = cum[:, c.n_runs - 1, :]
                # the draw that generated an outcome is left out: it would explain it perfectly
                logw = logw.at[jnp.arange(n_out), gen].set(-jnp.inf)
                sd, width, ess = stats_fn(logw)
                out[c] = {"sd": np.asarray(sd), "width": np.asarray(width), "ess": np.asarray(ess)}
    return out


def draws_and_target(post, tgt, kind: str, max_draws: int, seed: int, designs=(), schedule=None):
    """Posterior draws used (a fixed subsample), their target values and new runs' offsets.

    ``designs`` lists the ``(params, tokens)`` of new runs. Per draw, the
    family's offset from the fitted law at the target and at each design is
    drawn jointly (:meth:`~bayescale.posterior.Posterior.level_offsets`): the
    seed average of the fitted runs, shared by all, and in fits with the
    discrepancy its value at each size, so that a new run near the target
    measures the target's discrepancy. The target's draws do not depend on
    ``designs``; ``schedule`` is its run's (:func:`target_draws`). Returns
    ``idx``, the draws' parameters, the target values (S,) and
    ``{design: offsets (S,)}``.
    """
    rng = np.random.default_rng([seed, 7])
    s_all = post.n_draws
    if s_all > max_draws:
        idx = np.sort(rng.choice(s_all, max_draws, replace=False))
    else:
        idx = np.arange(s_all)
    params = draw_params(post, idx)
    designs = list(dict.fromkeys((float(n), float(d)) for n, d in designs))
    fam = family_design(post, tgt.family)
    # the token-budget term is a property of final losses: new runs with a curve have none
    single = [True] + [fam.checkpoints(d).size == 1 for _, d in designs]
    offsets = post.level_offsets(
        tgt.family,
        [tgt.params] + [n for n, _ in designs],
        [tgt.tokens] + [d for _, d in designs],
        rng,
        idx,
        single=single,
    )
    t_draws = target_draws(post, tgt, kind, idx, offsets[:, 0], rng, schedule)
    return idx, params, t_draws, {k: offsets[:, i + 1] for i, k in enumerate(designs)}


def draw_efficiency(post, t_draws: np.ndarray) -> float:
    """Relative effective sample size of the target's sd across the posterior draws.

    Weights on autocorrelated draws are worth fewer independent ones; the
    Kish ESS of the weights is multiplied by this (at most 1).
    """
    from arviz_stats.base import array_stats

    post_ds = post.tree["posterior"]
    chains, draws = int(post_ds.sizes["chain"]), int(post_ds.sizes["draw"])
    if t_draws.size != chains * draws or draws < 8:
        return 1.0
    rel = float(array_stats.ess(t_draws.reshape(chains, draws), method="sd", relative=True))
    return float(np.clip(rel, 0.0, 1.0)) if np.isfinite(rel) else 1.0


def importance_update(
    post,
    target,
    candidate,
    loss,
    *,
    kind: str = "mean",
    max_draws: int = 1000,
    ci_prob: float = DEFAULT_CI_PROB,
    seed: int = 0,
) -> dict:
    """The target's posterior after observing an experiment, by reweighting the draws.

    Parameters
    ----------
    post : Posterior
    target : Target, dict, tuple or str
        The prediction (a fitted family), e.g. ``"OPT:175B:300B"``.
    candidate : Candidate or dict
        The experiment that was run.
    loss : array, shape (n_runs, n_checkpoints)
        Its losses (nats) at the checkpoints of :meth:`FamilyDesign.checkpoints`.
    kind, max_draws, ci_prob, seed
        As in :func:`plan` (same seed, same draws).

    Returns
    -------
    dict
        ``current_sd``, ``sd``, ``mean``, ``width`` (of the ``ci_prob`` interval),
        ``ess`` and the normalised ``weights`` of the draws.
    """
    tgt = checked_target(post, target)
    check_choice("kind", kind, KINDS)
    cand = Candidate.coerce(candidate)
    t_draws, logw = outcome_log_weights(
        post, tgt, cand, loss, kind=kind, max_draws=max_draws, seed=seed
    )
    logw = logw[0]
    t = jnp.asarray(t_draws)
    sd, width, ess = weighted_stats(t, jnp.argsort(t), logw, ci_prob)
    w = np.asarray(jax.nn.softmax(logw))
    return {
        "current_sd": float(np.std(t_draws)),
        "sd": float(sd),
        "mean": float(np.sum(w * t_draws)),
        "width": float(width),
        "ess": float(ess),
        "weights": w,
    }


def outcome_log_weights(
    post, target, candidate: Candidate, loss, *, kind, max_draws, seed, schedule=None
):
    """Log importance weights of the draws after each of several observed outcomes.

    ``loss`` holds one or more outcomes of ``candidate``, shape
    ``([n_outcomes,] n_runs, n_checkpoints)``; one compiled function serves
    them all. ``schedule``: the :class:`~bayescale.schedules.Shape` the
    candidate and the target train with (``None``: a constant rate). Returns
    the draws' target values (S,) and the log weights (n_outcomes, S),
    unnormalised.
    """
    f = post.data.family_index(target.family)
    ckpt = family_design(post, target.family).checkpoints(candidate.tokens)
    y = np.log(np.asarray(loss, dtype=float).reshape(-1, candidate.n_runs, ckpt.size))
    y = jnp.asarray(y - np.log(post.data.family_scale[f]))
    design = (float(candidate.params), float(candidate.tokens))
    _, params, t_draws, run_delta = draws_and_target(
        post, target, kind, max_draws, seed, designs=[design], schedule=schedule
    )
    delta = run_delta[design]
    inputs1, _ = run_inputs(f, post.data.n_families, candidate.params, ckpt, schedule=schedule)

    @jax.jit
    def log_w(params, delta, ys):
        def one(y):
            def per_draw(draw, d):
                return jax.vmap(lambda yr: run_log_marginal(inputs1, draw, d, yr))(y).sum()

            return jax.vmap(per_draw)(params, delta)

        return jax.lax.map(one, ys)

    return t_draws, log_w(params, jnp.asarray(delta), y)
