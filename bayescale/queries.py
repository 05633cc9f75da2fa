"""Posterior predictive queries: loss at (N, D), compute-optimal allocation, M*.

A query point is always ``(family, params, tokens)``; sizes are raw counts
or strings such as ``"175B"``. Every query draws through one path,
:func:`loss_draws`: the family's law (:meth:`Posterior.law`), the uncertainty
of its level (:meth:`Posterior.level_offsets`) and, for ``kind="new_run"``,
the seed effect and trajectory noise of one fresh run
(:meth:`Posterior.new_run_offsets`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bayescale import laws
from bayescale.options import (
    DEFAULT_CI_PROB,
    KINDS,
    MIN_COUNT,
    check_choice,
    check_ci_prob,
    parse_count,
)

POINT_ESTIMATE_DRAWS = 1000


def counts(values, name: str) -> np.ndarray:
    """A 1-d float array of raw counts from numbers, ``"175B"`` strings or a mix."""
    arr = np.atleast_1d(np.asarray(values, dtype=object)).ravel()
    try:
        out = np.array([parse_count(v) for v in arr], dtype=float)
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None
    if np.any(out < MIN_COUNT):
        raise ValueError(
            f"{name} below 1e4 look like billions; pass raw counts (e.g. 7e9 or '7B', not 7)"
        )
    return out


def query_points(params, tokens):
    """Broadcast ``params`` and ``tokens`` into two equal-length arrays of counts."""
    p, t = counts(params, "params"), counts(tokens, "tokens")
    if p.size != t.size and 1 not in (p.size, t.size):
        raise ValueError(
            f"params and tokens must have the same length or one of them a single value; "
            f"got {p.size} and {t.size}"
        )
    return np.broadcast_arrays(p, t)


def check_has_schedules(post) -> None:
    """A ValueError unless the fit reads learning-rate schedules (a ``schedule=`` needs one)."""
    if not post.data.has_schedules:
        raise ValueError("this fit has no learning-rate schedules (no 'lr' column); drop schedule=")


def schedule_grid(post, schedule):
    """A planned run's LR schedule (table with ``tokens`` and ``lr``) as a Grid, or None."""
    from bayescale.schedules import Grid, grid

    if schedule is None or isinstance(schedule, Grid):
        return schedule
    check_has_schedules(post)
    try:
        t = np.asarray(schedule["tokens"], dtype=float)
        lr = np.asarray(schedule["lr"], dtype=float)
    except (KeyError, TypeError, ValueError):
        raise ValueError(
            "schedule must be a table with columns 'tokens' and 'lr' (the planned run's "
            "learning rate at logged points)"
        ) from None
    order = np.argsort(t, kind="stable")
    if t.size == 0 or not np.all(np.isfinite(lr)) or np.any(lr < 0) or np.any(t <= 0):
        raise ValueError("schedule needs tokens > 0 and learning rates >= 0, finite")
    if not np.any(lr > 0):
        raise ValueError("schedule has no positive learning rate")
    return grid(t[order], lr[order], lr.max())


def _per_draw(v):
    """An (S, 1, 1) draw array as (S, 1); scalars as they are."""
    return v[:, :, 0] if np.ndim(v) == 3 else v


def log_law_draws(law, anneal, params, tokens, schedule=None) -> np.ndarray:
    """Log loss (nats) of a law's draws at query points, ``(S, P)``: the one evaluation.

    ``law`` (and ``anneal``, the annealing bonus, or None) hold one value per
    draw; ``schedule`` is the run's :class:`~bayescale.schedules.Grid` (None:
    a constant learning rate, the law in tokens).
    """
    from bayescale.schedules import features, scheduled_log_loss

    law = law.map(lambda v: np.asarray(v)[:, None])
    if schedule is None:
        return np.asarray(laws.log_loss(law, np.log(params), np.log(tokens)))
    log_area, drop, eta, after = features(schedule, tokens)
    if anneal is not None:
        # (S, 1, 1) against the (1, P, K) columns; the bonus size multiplies the (S, P) sum
        anneal = anneal.map(lambda v: np.asarray(v)[:, None, None])
        anneal = anneal._replace(B=anneal.B[:, :, 0], kappa=_per_draw(anneal.kappa))
    return np.asarray(
        scheduled_log_loss(
            law, anneal, np.log(params), log_area, drop[None], eta[None], after[None]
        )
    )


def loss_draws(
    post, family: str, params, tokens, *, kind: str = "mean", seed: int = 0, schedule=None
):
    """Draws of the loss (nats) at each ``(params, tokens)`` pair: shape ``(S, P)``.

    ``schedule``: the learning-rate schedule of the run asked about (a table
    with ``tokens`` and ``lr``), for fits with schedules; default a constant rate.
    """
    return np.exp(
        log_loss_draws(post, family, params, tokens, kind=kind, seed=seed, schedule=schedule)
    )


def log_loss_draws(
    post, family: str, params, tokens, *, kind: str = "mean", seed: int = 0, schedule=None
):
    """Draws of the log loss: :func:`loss_draws` before the exponential.

    The model's noise is Student-t on this scale, so scores of a ``new_run``
    forecast are finite here and not on the loss scale (see
    :func:`bayescale.evaluation.metrics.crps`).
    """
    check_choice("kind", kind, KINDS)
    params, tokens = query_points(params, tokens)
    rng = np.random.default_rng([seed, 1])
    law = post.law(family, seed=seed)
    anneal = post.anneal(family)
    if post.n_draws == 1:
        # a point estimate: repeat it so that new-run noise still has a spread
        law = law.map(lambda v: np.repeat(np.asarray(v), POINT_ESTIMATE_DRAWS))
        if anneal is not None:
            anneal = anneal.map(lambda v: np.repeat(np.asarray(v), POINT_ESTIMATE_DRAWS))
    s = law.alpha.shape[0]
    log_mu = log_law_draws(law, anneal, params, tokens, schedule_grid(post, schedule))
    idx = np.arange(s) % post.n_draws
    log_mu = log_mu + post.level_offsets(family, params, tokens, rng, idx)
    if kind == "new_run":
        log_mu = log_mu + post.new_run_offsets(family, params, tokens, rng, idx)
    return log_mu


def extrapolation(post, family: str, params, tokens) -> np.ndarray:
    """How far each query lies beyond the fitted data: ``max(N / N_max, D / D_max, 1)``.

    ``N_max`` and ``D_max`` are the largest size and token count the family was
    fitted on (every fitted family's, for a family the fit did not see); 1
    means inside the range of the data, 10 a tenfold extrapolation.
    """
    data = post.data
    runs = data.run_family == data.families.index(family) if family in data.families else None
    n_max = data.run_params[runs].max() if runs is not None else data.run_params.max()
    obs = data.obs_family == data.families.index(family) if runs is not None else slice(None)
    d_max = data.tokens[obs].max()
    p, t = np.broadcast_arrays(np.asarray(params, float), np.asarray(tokens, float))
    return np.maximum(np.maximum(p / n_max, t / d_max), 1.0)


def interval(draws: np.ndarray, ci_prob: float, axis: int = 0):
    """Median and equal-tailed ``ci_prob`` interval along ``axis``."""
    lo, med, hi = np.quantile(draws, [(1 - ci_prob) / 2, 0.5, (1 + ci_prob) / 2], axis=axis)
    return med, lo, hi


def predict(
    post,
    family: str,
    params,
    tokens,
    *,
    kind: str = "mean",
    ci_prob: float = DEFAULT_CI_PROB,
    draws: bool = False,
    seed: int = 0,
    schedule=None,
) -> pd.DataFrame:
    """Predicted loss with an equal-tailed interval.

    Parameters
    ----------
    post : Posterior
    family : str
        Fitted family, or a new one (predicted from the population).
    params, tokens : float, str or array
        Parameter and token counts (``7e9`` or ``"7B"``); broadcast.
    kind : {"mean", "new_run"}
        ``"mean"``: the family's law. ``"new_run"``: what one fresh training
        run will measure: the law plus a new seed effect and the noise of its
        evaluation, drawn as the likelihood assumes.
    ci_prob : float
        Interval probability (default 0.9).
    draws : bool
        Add a ``draws`` column holding each row's posterior draws.
    seed : int
    schedule : pandas.DataFrame, optional
        For a fit with learning-rate schedules: the planned run's ``tokens``
        and ``lr`` (every logged point); the law then runs on its LR area and
        adds its annealing bonus. Default: a constant learning rate.

    Returns
    -------
    pandas.DataFrame
        Columns: family, params, tokens, kind, ci_prob, median, mean, lower,
        upper, extrapolation (:func:`extrapolation`: 1 inside the fitted
        range, 10 for ten times beyond it), point_estimate (True for a MAP
        fit: the interval then holds only the run-to-run noise, not the
        uncertainty of the law). ``mean`` is the draws' average: for
        ``new_run`` the evaluation noise is Student-t on log loss, whose
        exponential has no mean, so where the fit leaves the degrees of
        freedom to their prior (a few single-checkpoint runs) it can be
        absurdly large; use ``median``.
    """
    ci_prob = check_ci_prob(ci_prob)
    p, t = query_points(params, tokens)
    d = loss_draws(post, family, p, t, kind=kind, seed=seed, schedule=schedule)
    med, lo, hi = interval(d, ci_prob)
    out = pd.DataFrame(
        {
            "family": family,
            "params": p,
            "tokens": t,
            "kind": kind,
            "ci_prob": ci_prob,
            "median": med,
            "mean": d.mean(axis=0),
            "lower": lo,
            "upper": hi,
            "extrapolation": extrapolation(post, family, p, t),
            "point_estimate": post.is_point_estimate,
        }
    )
    if draws:
        out["draws"] = list(d.T)
    return out


def compute_optimal(
    post, flops, *, family: str, ci_prob: float = DEFAULT_CI_PROB, seed: int = 0
) -> pd.DataFrame:
    """Compute-optimal N*, D*, tokens per parameter and loss at FLOP budgets ``C = 6ND``.

    The loss at the optimum includes the uncertainty of the family's level,
    as :func:`predict` with ``kind="mean"`` does. In a fit with learning-rate
    schedules it is the optimum of constant-rate runs (the law on the LR area,
    no annealing bonus); where all of a family's runs follow one decaying
    schedule, the data do not pin that law (the fit warns, see
    :func:`bayescale.schedules.one_schedule_families`).

    Returns
    -------
    pandas.DataFrame
        One row per budget: ``flops`` and, for ``params_opt``, ``tokens_opt``,
        ``tokens_per_param`` and ``loss_opt``, the median and interval bounds
        (``*_lower``, ``*_upper``).
    """
    ci_prob = check_ci_prob(ci_prob)
    flops = np.atleast_1d(np.asarray(flops, dtype=float))
    if np.any(~np.isfinite(flops) | (flops <= 0)):
        raise ValueError("flops must be finite and > 0")
    rng = np.random.default_rng([seed, 1])
    law = post.law(family, seed=seed).map(lambda v: np.asarray(v)[:, None])
    n_opt, d_opt = (np.asarray(x) for x in laws.compute_optimal(flops[None, :], law))
    log_loss = np.asarray(laws.log_loss(law, np.log(n_opt), np.log(d_opt)))
    loss = np.exp(log_loss + post.level_offsets(family, n_opt, d_opt, rng))
    out = {"family": family, "flops": flops, "ci_prob": ci_prob}
    for name, arr in (
        ("params_opt", n_opt),
        ("tokens_opt", d_opt),
        ("tokens_per_param", d_opt / n_opt),
        ("loss_opt", loss),
    ):
        med, lo, hi = interval(arr, ci_prob)
        out[name] = med
        out[f"{name}_lower"] = lo
        out[f"{name}_upper"] = hi
    return pd.DataFrame(out)


def optimal_tok_per_param(
    post, family, *, ci_prob: float = DEFAULT_CI_PROB, seed: int = 0
) -> pd.DataFrame:
    """Loss-optimal tokens per parameter ``M* = (b / a)^(1 / (2 eta))`` with an interval.

    With ``alpha = beta`` the law in ``(C, M = D/N)`` coordinates (Gadre et al.)
    is ``E + (a M^eta + b M^-eta) C^-eta``, ``eta = alpha / 2``, and its
    minimiser in ``M`` at fixed compute does not depend on the budget. Only
    fits with tied exponents (``law="overtrain"``) have this property; for
    others use :func:`compute_optimal`, whose ``D*/N*`` changes with the budget.

    Parameters
    ----------
    post : Posterior
        A fit with ``law="overtrain"``.
    family : str or list of str
        One row per family; an unseen family is drawn from the population.
    ci_prob : float
    seed : int

    Returns
    -------
    pandas.DataFrame
        Columns: family, ci_prob, median, mean, lower, upper (of M*) and
        ``eta_median``.
    """
    ci_prob = check_ci_prob(ci_prob)
    if post.config.law != "overtrain":
        raise ValueError(
            f"M* is budget-independent only when alpha = beta; this fit has law="
            f"{post.config.law!r}. Refit with law='overtrain', or use compute_optimal(post, "
            "flops, family=...) for tokens per parameter at a given budget."
        )
    rows = []
    for fam in [family] if isinstance(family, str) else list(family):
        _, a, b, eta = laws.to_overtrain(post.law(fam, seed=seed))
        m_star = np.asarray(laws.optimal_tok_per_param(a, b, eta), dtype=float)
        med, lo, hi = interval(m_star, ci_prob)
        rows.append(
            {
                "family": fam,
                "ci_prob": ci_prob,
                "median": med,
                "mean": m_star.mean(),
                "lower": lo,
                "upper": hi,
                "eta_median": float(np.median(eta)),
            }
        )
    return pd.DataFrame(rows)


def run_curve_draws(post, run: int, tokens) -> np.ndarray:
    """Draws of a fitted run's curve, the law times ``exp(offset_run)``: shape (S, P).

    This is the curve the likelihood centres that run's checkpoints on.
    """
    tokens = np.atleast_1d(np.asarray(tokens, dtype=float))
    family = post.families[int(post.data.run_family[run])]
    n = float(post.data.run_params[run])
    sched = post.data.schedule(int(run))
    log_mu = log_law_draws(post.law(family), post.anneal(family), n, tokens, sched)
    return np.exp(log_mu + post.run_offsets()[:, run][:, None])


def run_index(post, run: str) -> int:
    """Index of a fitted run by its label; the error lists near matches."""
    from bayescale.options import did_you_mean

    if run in post.data.runs:
        return post.data.runs.index(run)
    raise ValueError(
        f"run {run!r} is not in the fit{did_you_mean(run, post.data.runs)}; a run in progress "
        "must be part of the fitted table (its checkpoints so far, not marked final)"
    )


def continue_run_draws(post, run: str, tokens, *, seed: int = 0, schedule=None) -> np.ndarray:
    """Draws of a fitted run's loss at later ``tokens``: shape ``(S, P)``.

    Conditions on the run itself: its law, its run effect ``u`` and the state
    of its trajectory noise at its last fitted checkpoint, from which the OU
    process continues (the deviation decays as ``exp(-Δlog D / ell)`` and new
    innovations add up). Every posterior draw carries its own law, ``u``,
    noise scale and correlation length, so the spread holds everything still
    uncertain about this run. ``schedule`` (fits with learning-rate schedules):
    the run's planned ``tokens`` and ``lr``, past and future; without it the
    rate stays at its last logged value.
    """
    import jax

    from bayescale.trajectory import OUTrajectory, ou_rho

    r = run_index(post, run)
    tokens = counts(tokens, "tokens")
    data = post.data
    obs = np.flatnonzero(data.obs_run == r)
    d_last = float(data.tokens[obs[-1]])
    if np.any(tokens <= d_last):
        raise ValueError(
            f"run {run!r} was fitted up to {d_last:.4g} tokens; forecast later tokens "
            f"(got {tokens.min():.4g}); earlier checkpoints are data, not forecasts"
        )
    if post.is_point_estimate:
        raise ValueError("continuing a run needs posterior draws; refit with method='nuts'")
    f = int(data.run_family[r])
    family = data.families[f]
    law, anneal = post.law(family, seed=seed), post.anneal(family)
    sched = data.schedule(r) if schedule is None else schedule_grid(post, schedule)
    n = float(data.run_params[r])
    u = post.run_offsets()[:, r][:, None]
    sigma = post.draws("sigma_obs")[:, f]
    inputs = data.inputs()
    if inputs.run_single[r]:
        # the lone checkpoint of a single-checkpoint run carries the seed scatter too
        # (model.obs_scale)
        sigma = np.sqrt(sigma**2 + inputs.single_seed_var[r] * post.draws("sigma_seed") ** 2)
    ell, nu = post.draws("ell"), post.draws("nu")
    log_last = log_law_draws(law, anneal, n, np.array([d_last]), sched)[:, 0]
    z_last = (np.log(data.loss[obs[-1]]) - log_last - u[:, 0]) / sigma
    order = np.argsort(tokens, kind="stable")
    logt = np.log(np.concatenate([[d_last], tokens[order]]))
    first = np.zeros(logt.size, dtype=bool)
    first[0] = True
    rho = np.asarray(ou_rho(logt[None, :], first[None, :], ell[:, None]))[:, 1:]
    s = sigma.shape[0]
    fresh = OUTrajectory(np.zeros((s, tokens.size)), np.ones((s, tokens.size)), rho, nu)
    key = jax.random.PRNGKey(int(np.random.default_rng([seed, 2]).integers(2**31)))
    # the path from a zero start plus the decayed last deviation: the OU recursion is linear
    z = np.cumprod(rho, axis=1) * z_last[:, None] + np.asarray(fresh.sample(key))
    # past its last logged row a run's learning rate is taken to stay where it was
    log_mu = log_law_draws(law, anneal, n, tokens[order], sched)
    out = np.empty((s, tokens.size))
    out[:, order] = np.exp(log_mu + u + sigma[:, None] * z)
    return out


def planned_end(data, r: int, run: str) -> float:
    """Run ``r``'s planned total tokens; a ValueError naming the fix if it has none."""
    planned = np.nan if data.run_planned is None else float(data.run_planned[r])
    last = float(data.tokens[data.obs_run == r].max())
    if not np.isfinite(planned):
        raise ValueError(
            f"run {run!r} has no planned total: give tokens=[...] to forecast at, or a "
            "'planned_tokens' column in the table"
        )
    if planned <= last * (1 + 1e-9):
        raise ValueError(
            f"run {run!r} has reached its planned {planned:.4g} tokens: it is finished, "
            "and its last checkpoint is data, not a forecast"
        )
    return planned


def predict_run(
    post,
    run: str,
    tokens=None,
    *,
    ci_prob: float = DEFAULT_CI_PROB,
    draws: bool = False,
    seed: int = 0,
    schedule=None,
) -> pd.DataFrame:
    """Forecast of a run in progress at later ``tokens`` (see :func:`continue_run_draws`).

    ``tokens`` defaults to the run's planned total (the ``planned_tokens``
    column): where will this run end. Returns the columns of :func:`predict`
    with ``kind="run"`` and a ``run`` column; ``extrapolation`` is the ratio
    of each query's tokens to the run's last fitted checkpoint.
    """
    ci_prob = check_ci_prob(ci_prob)
    r = run_index(post, run)
    if tokens is None:
        tokens = planned_end(post.data, r, run)
    t = counts(tokens, "tokens")
    d = continue_run_draws(post, run, t, seed=seed, schedule=schedule)
    med, lo, hi = interval(d, ci_prob)
    data = post.data
    out = pd.DataFrame(
        {
            "family": data.families[int(data.run_family[r])],
            "run": run,
            "params": float(data.run_params[r]),
            "tokens": t,
            "kind": "run",
            "ci_prob": ci_prob,
            "median": med,
            "mean": d.mean(axis=0),
            "lower": lo,
            "upper": hi,
            "extrapolation": t / data.tokens[data.obs_run == r].max(),
            "point_estimate": False,
        }
    )
    if draws:
        out["draws"] = list(d.T)
    return out
