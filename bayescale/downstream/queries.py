"""Downstream predictions: error at a known loss, or chained on a loss posterior.

Pitfall: the law is tied to the eval set whose loss it was fitted on (C4 eval
in the bundled Gadre data). Feeding it a loss measured on another eval set, or
predicted by a loss law fitted to another eval set, gives numbers with no
meaning; :class:`DownstreamFamilyWarning` flags families the fit never saw.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from bayescale.downstream.data import TASK_SETS
from bayescale.downstream.model import task_error
from bayescale.options import DEFAULT_CI_PROB, KINDS, check_choice, check_ci_prob

_MIN_NEW_RUN_DRAWS = 2000


class DownstreamFamilyWarning(UserWarning):
    """A prediction names a training corpus (family) the downstream fit did not see."""


def _resolve_tasks(post, tasks) -> list:
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


def _family_shift(post, family, rng) -> np.ndarray:
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


def error_draws(post, loss, *, family=None, tasks="avg17", kind="mean", seed=0):
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
    check_choice("kind", kind, KINDS)
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


def _frame(labels, draws, n_tasks, ci_prob, kind, loss_med, extra: dict) -> pd.DataFrame:
    rows = []
    for label, d, nt in zip(labels, draws, n_tasks, strict=True):
        lo, med, hi = np.quantile(d, [(1 - ci_prob) / 2, 0.5, (1 + ci_prob) / 2], axis=0)
        for j in range(d.shape[1]):
            row = {k: v[j] for k, v in extra.items()}
            row |= {"loss_median": loss_med[j], "task": label, "n_tasks": nt, "kind": kind}
            row |= {"ci_prob": ci_prob, "median": med[j], "mean": d[:, j].mean()}
            rows.append(row | {"lower": lo[j], "upper": hi[j]})
    return pd.DataFrame(rows)


def predict_error(
    down_post,
    loss,
    *,
    family=None,
    tasks="avg17",
    kind: str = "mean",
    ci_prob: float = DEFAULT_CI_PROB,
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
    ci_prob : float
        Equal-tailed interval probability (default 0.9).
    seed : int

    Returns
    -------
    pandas.DataFrame
        One row per loss point and requested item: loss_median, task, n_tasks,
        kind, ci_prob, median, mean, lower, upper (of the error, a fraction).
    """
    ci_prob = check_ci_prob(ci_prob)
    labels, draws = error_draws(down_post, loss, family=family, tasks=tasks, kind=kind, seed=seed)
    loss_med = np.median(_loss_matrix(loss), axis=0)
    n_tasks = [len(idx) for _, idx in _resolve_tasks(down_post, tasks)]
    extra = {"family": np.full(loss_med.shape[0], family, dtype=object)}
    return _frame(labels, draws, n_tasks, ci_prob, kind, loss_med, extra)


def predict_downstream(
    loss_post,
    down_post,
    *,
    family: str,
    params,
    tokens,
    tasks="avg17",
    kind: str = "mean",
    ci_prob: float = DEFAULT_CI_PROB,
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
    tasks, kind, ci_prob, seed
        As in :func:`predict_error`. ``kind="new_run"`` also adds the loss
        law's seed noise (a fresh training run), then the run's task scores.

    Returns
    -------
    pandas.DataFrame
        One row per (params, tokens) and requested item: family, params,
        tokens, loss_median, task, n_tasks, kind, ci_prob, median, mean, lower,
        upper.
    """
    from bayescale.queries import loss_draws, query_points

    ci_prob = check_ci_prob(ci_prob)
    p, t = query_points(params, tokens)
    loss = loss_draws(loss_post, family, p, t, kind=kind, seed=seed)
    labels, draws = error_draws(
        down_post, loss, family=family, tasks=tasks, kind=kind, seed=seed + 1
    )
    n_tasks = [len(idx) for _, idx in _resolve_tasks(down_post, tasks)]
    extra = {"family": np.full(p.shape[0], family, dtype=object), "params": p, "tokens": t}
    return _frame(labels, draws, n_tasks, ci_prob, kind, np.median(loss, axis=0), extra)
