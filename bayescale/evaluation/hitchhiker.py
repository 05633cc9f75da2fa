"""The Hitchhiker's-guide protocol (Choshen, Zhang & Andreas, 2025).

For each family with loss curves at 3 or more sizes and each cell
``(n_models, q)``: train on the ``n_models`` largest of the smaller models
(checkpoints past 1e10 tokens, the first ``q`` of each run), predict the
checkpoints in the last 30% of the largest model's training.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import pandas as pd

from bayescale import baselines as bl
from bayescale.datasets.hitchhiker import without_twins_at
from bayescale.evaluation.common import (
    MAP,
    Evaluation,
    fit_columns,
    fit_logged,
    point_rows,
    posterior_rows,
    result,
    settings_for,
)
from bayescale.evaluation.reference import (
    BAYES_GRID_Q,
    HOFFMANN_EVAL_GRID,
    MIN_CELL_POINTS,
    MIN_TOKENS,
    Q_GRID,
    QUICK_CONTEXT,
    TARGET_FRACTION,
)
from bayescale.fitting import FitConfig

METHODS = ("bayescale-hier", "bayescale-family", "hitchhiker", "hoffmann")


def _has_curve(frame: pd.DataFrame, min_tokens: float) -> pd.Series:
    """Per (family, params): some run of that size has 3+ checkpoints past the cut."""
    past = frame[frame["tokens"] > min_tokens]
    per_run = past.groupby(["family", "params", "run"]).size() >= 3
    return per_run.groupby(level=["family", "params"]).any()


def hitchhiker_families(df: pd.DataFrame, *, min_sizes: int = 3, min_tokens=MIN_TOKENS):
    """Families with at least ``min_sizes`` model sizes that have loss curves.

    A size "has a curve" when one of its runs has 3 or more checkpoints past
    ``min_tokens``; this leaves out final-loss-only collections
    (``chinchilla``, ``datablations-contour-c4``) and the single-run families.
    """
    ok = _has_curve(df, min_tokens)
    sizes = ok[ok].groupby(level="family").size()
    return sorted(sizes[sizes >= min_sizes].index)


def context_families(df: pd.DataFrame, *, min_tokens=MIN_TOKENS):
    """Families pooled in hierarchical fits: every family with curves at 2+ sizes."""
    return hitchhiker_families(df, min_sizes=2, min_tokens=min_tokens)


def family_sizes(frame: pd.DataFrame, min_tokens: float) -> np.ndarray:
    ok = _has_curve(frame, min_tokens)
    return np.unique(np.array([n for (_, n), v in ok.items() if v], dtype=float))


def hitchhiker_cells(frame: pd.DataFrame, *, q_values=Q_GRID, min_tokens=MIN_TOKENS):
    """All ``(n_models, q)`` cells of one family: 2 .. (#sizes - 1) models x q."""
    k_max = len(family_sizes(frame, min_tokens)) - 1
    return [(k, float(q)) for k in range(2, k_max + 1) for q in q_values]


def hitchhiker_split(
    frame: pd.DataFrame,
    *,
    n_models: int | None = None,
    q: float = 1.0,
    min_tokens: float = MIN_TOKENS,
    target_fraction: float = TARGET_FRACTION,
):
    """Training and target checkpoints of one family under the Hitchhiker protocol.

    Parameters
    ----------
    frame : pandas.DataFrame
        One family's rows (``params``, ``tokens``, loss columns).
    n_models : int, optional
        Use the ``n_models`` largest of the smaller model sizes (default all).
    q : float
        Keep each training run's checkpoints up to ``q`` times its final tokens.
    min_tokens : float
        Drop checkpoints at or below this many tokens (training and target).
    target_fraction : float
        Target = checkpoints of the largest model at or past
        ``(1 - target_fraction)`` of its final tokens.

    Returns
    -------
    train, target : pandas.DataFrame
    """
    sizes = family_sizes(frame, min_tokens)
    if len(sizes) < 2:
        raise ValueError("the family needs curves at 2 or more model sizes")
    smaller = sizes[:-1]
    use = smaller if n_models is None else smaller[-int(n_models) :]
    past = frame[frame["tokens"] > min_tokens]
    final = frame.groupby("run")["tokens"].transform("max")
    keep = frame["params"].isin(use) & (frame["tokens"] <= q * final + 1e-6 * final)
    train = past[keep.loc[past.index]]
    big = frame[frame["params"] == sizes[-1]]
    cut = (1.0 - target_fraction) * big.groupby("run")["tokens"].transform("max")
    target = big[(big["tokens"] >= cut) & (big["tokens"] > min_tokens)]
    return train.drop(columns=["is_final"], errors="ignore"), target


def _valid_cell(train: pd.DataFrame) -> bool:
    return len(train) >= MIN_CELL_POINTS and train["params"].nunique() >= 2


def _hoffmann_batches(tasks: list, grid: np.ndarray):
    """Run ``fit_hoffmann_many`` on tasks grouped by length (little padding, few compilations)."""
    fits = [None] * len(tasks)
    lengths = np.array([len(t[0]) for t in tasks])
    # short cells share one bucket: padding them costs less than compiling for each length
    buckets = np.ceil(np.log2(np.maximum(lengths, 64))).astype(int)
    for b in np.unique(buckets):
        idx = np.flatnonzero(buckets == b)
        out = bl.fit_hoffmann_many([tasks[i] for i in idx], grid=grid)
        for i, f in zip(idx, out, strict=True):
            fits[i] = f
    return fits


def _fold_of(families: Sequence[str], folds: int | None) -> dict:
    """Family → fold; ``None`` = one fold per family (leave one family out)."""
    fams = sorted(families)
    if folds is None:
        return {f: i for i, f in enumerate(fams)}
    return {f: i % int(folds) for i, f in enumerate(fams)}


def evaluate_hitchhiker(
    df: pd.DataFrame | None = None,
    *,
    families: Sequence[str] | None = None,
    context: Sequence[str] | None = None,
    q_values: Sequence[float] = Q_GRID,
    settings: FitConfig | None = None,
    grid_settings: FitConfig | None = None,
    bayes_grid: str = "subset",
    hier_folds: int | None = None,
    methods: Sequence[str] = ("bayescale-hier", "bayescale-family", "hitchhiker", "hoffmann"),
    quantities: Sequence[str] = ("loss", "hh_perf"),
    hoffmann_grid: np.ndarray | None = None,
    quick: bool = False,
    seed: int = 0,
) -> Evaluation:
    """The Hitchhiker's-guide protocol on every eligible family.

    For each family with loss curves at 3 or more sizes, and each cell
    ``(n_models, q)``: train on the ``n_models`` largest smaller models
    (checkpoints past 1e10 tokens, the first ``q`` of each run), predict the
    checkpoints in the last 30% of the largest model's training.

    Parameters
    ----------
    df : pandas.DataFrame, optional
        Default ``load_dataset("hitchhiker")``; needs ``hh_perf`` for that
        quantity.
    families : list of str, optional
        Target families; default :func:`hitchhiker_families`.
    context : list of str, optional
        Families pooled in the hierarchical fits (complete); default
        :func:`context_families` plus the targets.
    q_values : sequence of float
        The ``q`` axis of the grid.
    settings : FitConfig, optional
        bayescale at the headline cell (all smaller models, q = 1); default
        :func:`~bayescale.evaluation.common.protocol_settings` (``QUICK`` when ``quick``).
    grid_settings : FitConfig, optional
        bayescale on the other cells of ``bayes_grid``; default MAP.
    bayes_grid : {"headline", "subset", "full"}
        Cells where bayescale runs besides the headline: none, ``n_models`` in
        {2, all} x ``q`` in :data:`BAYES_GRID_Q`, or the whole grid.
    hier_folds : int, optional
        Hierarchical fits: ``None`` refits once per target family (every other
        family complete); ``k`` splits the targets into ``k`` folds whose
        members are reduced to the cell together (cheaper, and harder: those
        families lose their largest model too).
    methods : sequence of str
    quantities : sequence of {"loss", "hh_perf"}
        Baselines run on each; bayescale on ``loss`` (nats) only.
    hoffmann_grid : array, optional
        Starts of the Hoffmann fit; default 243 (:data:`HOFFMANN_EVAL_GRID`).
    quick : bool
        OPT and t5-pile, q in {0.5, 1}, short NUTS, no bayescale grid, one
        hierarchical fit (both targets hidden) with a small context.
    seed : int

    Returns
    -------
    Evaluation
        ``points`` with columns :data:`COLUMNS`; ``fits``, one row per bayescale fit.
    """
    from bayescale.datasets import load_dataset

    if df is None:
        df = load_dataset("hitchhiker")
    if quick:
        families = families or [f for f in ("OPT", "t5-pile") if f in set(df["family"])]
        q_values = (0.5, 1.0)
        bayes_grid = "headline"
        hier_folds = 1
        if context is None:
            context = sorted(set(QUICK_CONTEXT) & set(df["family"]))
    settings = settings_for(settings, quick, seed, "hitchhiker")
    grid_settings = replace(grid_settings or MAP, seed=seed)
    if bayes_grid not in ("headline", "subset", "full"):
        raise ValueError(f"bayes_grid must be headline, subset or full, got {bayes_grid!r}")
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        raise ValueError(f"unknown methods {unknown}; choose from {METHODS}")
    families = list(families) if families is not None else hitchhiker_families(df)
    if context is None:
        context = sorted(set(context_families(df)) | set(families))
    grid = bl.hoffmann_grid(**HOFFMANN_EVAL_GRID) if hoffmann_grid is None else hoffmann_grid

    # the cells and their splits, shared by every method
    cells = {}  # (family, k, q) -> (train, target)
    for fam in families:
        frame = df[df["family"] == fam]
        k_all = len(family_sizes(frame, MIN_TOKENS)) - 1
        for k, q in hitchhiker_cells(frame, q_values=q_values):
            train, target = hitchhiker_split(frame, n_models=k, q=q)
            if _valid_cell(train) and len(target):
                cells[(fam, k, q)] = (train, target, k == k_all and q == 1.0)
    rows: list[dict] = []
    log: list[dict] = []

    # baselines on every cell and quantity (all Hoffmann fits in a few vmapped calls)
    jobs = [(quantity, key) for quantity in quantities for key in cells]
    tasks = [(cells[k][0]["params"], cells[k][0]["tokens"], cells[k][0][qty]) for qty, k in jobs]
    hoff = _hoffmann_batches(tasks, grid) if "hoffmann" in methods and jobs else []
    for i, (quantity, key) in enumerate(jobs):
        fam, k, q = key
        train, target, head = cells[key]
        tgt = target.assign(actual=target[quantity])
        base = {"protocol": "hitchhiker", "family": fam, "quantity": quantity}
        base.update(n_models=k, q=q, headline=head)
        if "hitchhiker" in methods:
            fit = bl.fit_hitchhiker(train["params"], train["tokens"], train[quantity])
            rows += point_rows(fit, tgt, {**base, "method": "hitchhiker", "fit_method": "lsq"})
        if hoff:
            rows += point_rows(hoff[i], tgt, {**base, "method": "hoffmann", "fit_method": "huber"})

    # bayescale: headline cell with `settings`, other cells with `grid_settings`
    bayes_cells = _bayes_cells(cells, bayes_grid)
    for key in sorted(cells):
        if key not in bayes_cells:
            continue
        fam, k, q = key
        train, target, head = cells[key]
        st = settings if head else grid_settings
        base = {"protocol": "hitchhiker", "family": fam, "quantity": "loss", "n_models": k}
        base.update(q=q, headline=head, method="bayescale-family")
        if "bayescale-family" in methods:
            # one family: its own exponents ("pooled" would add an unidentified spread)
            post = fit_logged(train, st, log, label=f"family {fam} k={k} q={q}", exponents="shared")
            rows += posterior_rows(post, fam, target.assign(actual=target["loss"]), base)
    if "bayescale-hier" in methods:
        rows += _hitchhiker_hier(
            df, cells, bayes_cells, context, settings, grid_settings, hier_folds, log
        )
    return result(rows, log)


def _bayes_cells(cells: dict, bayes_grid: str) -> set:
    if bayes_grid == "full":
        return set(cells)
    k_all = {}
    for fam, k, _ in cells:
        k_all[fam] = max(k, k_all.get(fam, 0))
    out = set()
    for key, (_, _, head) in cells.items():
        fam, k, q = key
        if head or (bayes_grid == "subset" and k in (2, k_all[fam]) and q in BAYES_GRID_Q):
            out.add(key)
    return out


def _hitchhiker_hier(df, cells, bayes_cells, context, settings, grid_settings, folds, log):
    """Hierarchical fits: each target family reduced to its cell, the others complete.

    Complete but for the target's size in its near twins (:func:`without_twins_at`).

    A fit serves one cell "spec" -- ``("all", q)`` or ``(k, q)`` -- applied to
    every target family of one fold at once.
    """
    targets = sorted({fam for fam, _, _ in bayes_cells})
    fold_of = _fold_of(targets, folds)
    k_all = {fam: max(k for f, k, _ in cells if f == fam) for fam in targets}
    groups: dict = {}  # (spec, fold) -> [cell keys]
    for key in sorted(bayes_cells):
        fam, k, q = key
        spec = ("all" if k == k_all[fam] else k, q)
        groups.setdefault((spec, fold_of[fam]), []).append(key)
    subset = "leave-one-family-out" if folds is None else f"{folds} folds"
    rows = []
    for (spec, _fold), keys in sorted(groups.items(), key=lambda kv: (str(kv[0][0]), kv[0][1])):
        members = [fam for fam, _, _ in keys]
        others = df[df["family"].isin(set(context) - set(members))]
        for key in keys:  # a target is predicted, not looked up in a near twin's same size
            others = without_twins_at(others, key[0], float(cells[key][1]["params"].max()))
        parts = [others] + [cells[key][0] for key in keys]
        data = pd.concat([fit_columns(p) for p in parts], ignore_index=True)
        st = settings if spec == ("all", 1.0) else grid_settings
        post = fit_logged(data, st, log, label=f"hier n_models={spec[0]} q={spec[1]}: {members}")
        for key in keys:
            fam, k, q = key
            _, target, head = cells[key]
            base = {"protocol": "hitchhiker", "family": fam, "quantity": "loss", "n_models": k}
            base.update(q=q, headline=head, method="bayescale-hier", subset=subset)
            rows += posterior_rows(post, fam, target.assign(actual=target["loss"]), base)
    return rows
