"""The evaluation protocols of DESIGN §6: bayescale beside the published estimators.

Each protocol runs bayescale and the point-estimate baselines of
:mod:`bayescale.baselines` on the same data splits as the papers and returns a
tidy frame with one row per (target checkpoint, method, prediction kind):

* :func:`evaluate_hitchhiker` -- Choshen et al.: fit the smaller models of a
  family (checkpoints past 1e10 tokens, the first ``q`` of each run), predict
  the last 30% of the largest model's training; grid over the number of
  models and ``q``.
* :func:`evaluate_one_model` -- one run of the target family plus every other
  family, predict the family's largest model.
* :func:`evaluate_gadre` -- Gadre et al.: fit the 5 small runs per corpus,
  predict every other over-training run.
* :func:`evaluate_chinchilla` -- the digitised Chinchilla points: posterior of
  the coefficients beside Epoch's re-fit, and held-out prediction of the
  largest compute budgets.

:func:`summarize` turns the rows into mean absolute relative error (ARE) and
interval coverage per cell; :func:`calibration` pools coverage per method and
prediction kind. bayescale rows come in two kinds, ``mean`` (the law) and
``new_run`` (the law plus a fresh run effect); point estimates (the baselines
and MAP fits) have kind ``point`` and no interval.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from bayescale import baselines as bl
from bayescale.laws import LOG_D_REF, LOG_N_REF, centered_to_published, log_chinchilla_centered

__all__ = [
    "COLUMNS",
    "EPOCH",
    "JSON_KEYS",
    "METHODS",
    "PROTOCOLS",
    "FitSettings",
    "calibration",
    "context_families",
    "evaluate",
    "evaluate_chinchilla",
    "evaluate_gadre",
    "evaluate_hitchhiker",
    "evaluate_one_model",
    "hitchhiker_cells",
    "hitchhiker_families",
    "hitchhiker_split",
    "summarize",
]

PROTOCOLS = ("hitchhiker", "one-model", "gadre", "chinchilla")
METHODS = ("bayescale-hier", "bayescale-family", "hitchhiker", "hoffmann", "gadre")
KINDS = ("mean", "new_run", "point")

# every row of every protocol has these columns (NaN / None where not defined)
COLUMNS = (
    "protocol",
    "row_type",  # "target" (a held-out checkpoint) or "coef" (a law coefficient)
    "family",
    "method",
    "kind",
    "fit_method",  # nuts, map, lsq (Hitchhiker), huber (Hoffmann), nls (Gadre)
    "law",
    "quantity",  # what is predicted: loss (nats), hh_perf, or a coefficient name
    "n_models",
    "q",
    "fit_params",  # one-model: size of the one run of the target family
    "subset",
    "headline",
    "target",
    "params",
    "tokens",
    "M",
    "actual",
    "median",
    "lower",
    "upper",
    "lower50",
    "upper50",
    "rel_error",
    "inside50",
    "inside90",
)
JSON_KEYS = (
    "protocol",
    "family",
    "method",
    "params",
    "tokens",
    "M",
    "actual",
    "median",
    "lower",
    "upper",
    "rel_error",
    "inside90",
)

MIN_TOKENS = 1e10  # the Hitchhiker warm-up cut (strict: tokens > 1e10)
TARGET_FRACTION = 0.3  # target = checkpoints in the last 30% of the largest run's tokens
Q_GRID = tuple(round(0.1 * i, 1) for i in range(1, 11))
BAYES_GRID_Q = (0.3, 0.6, 1.0)  # q of the cheap (MAP) bayescale grid; n_models in {2, all}
MIN_CELL_POINTS = 5  # the Chinchilla law has 5 parameters

# Hoffmann starts for the Hitchhiker grid: every other value of the published
# 4500-point grid in each coordinate (243 starts). On the grid cells checked in
# benchmarks/eval_hitchhiker.py it reaches the same optimum as the full grid.
HOFFMANN_EVAL_GRID = dict(
    a=(0.0, 10.0, 20.0),
    b=(0.0, 10.0, 20.0),
    e=(-1.0, 0.0, 1.0),
    alpha=(0.0, 1.0, 2.0),
    beta=(0.0, 1.0, 2.0),
)

# published numbers the protocols are compared with (percent ARE)
PAPER_HITCHHIKER = {"OPT": 7.4, "gpt3": 2.7, "t5-pile": 9.2}
ONE_MODEL_TARGETS = {
    "OPT": (6.7e9, 1.3e10, 3.0e10),
    "pythia": (1.414648e9, 2.775209e9, 6.857302e9),
    "olmo": (1.0e9,),
}
PAPER_ONE_MODEL = {
    ("OPT", 6.7e9): 32.5,
    ("OPT", 1.3e10): 24.9,
    ("OPT", 3.0e10): 15.0,
    ("pythia", 1.414648e9): 23.7,
    ("pythia", 2.775209e9): 11.7,
    ("pythia", 6.857302e9): 6.9,
    ("olmo", 1.0e9): 0.9,
}
PAPER_GADRE = {"1.4B": 0.71, "6.9B": 0.73, "grid": 0.88}  # RedPajama, percent
EPOCH = {  # Besiroglu et al. (2024): point estimate and 95% interval
    "E": (1.82, 1.77, 1.87),
    "A": (482.0, np.nan, np.nan),
    "B": (2085.0, np.nan, np.nan),
    "alpha": (0.348, 0.317, 0.373),
    "beta": (0.366, 0.331, 0.415),
}
CHINCHILLA_HOLDOUT_FLOPS = 1e21  # held-out: the points at the largest budgets
QUICK_CONTEXT = ("gpt3", "pythia", "olmo", "GPT2-c4-1")  # context of the --quick runs


# ---------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class FitSettings:
    """How bayescale is fitted inside a protocol (passed to :func:`bayescale.fit`)."""

    method: str = "nuts"
    num_chains: int = 4
    num_warmup: int = 500
    num_samples: int = 500
    max_points_per_run: int | None = 50
    exponents: str = "pooled"
    target_accept: float = 0.9
    seed: int = 0

    @classmethod
    def quick(cls, seed: int = 0) -> FitSettings:
        """Short chains and thinner curves for a sanity pass."""
        return cls(num_chains=2, num_warmup=150, num_samples=150, max_points_per_run=20, seed=seed)

    @classmethod
    def map(cls, seed: int = 0) -> FitSettings:
        """MAP point estimate (no intervals)."""
        return cls(method="map", seed=seed)

    def label(self) -> str:
        if self.method == "map":
            return "map"
        return f"nuts {self.num_chains}x({self.num_warmup}+{self.num_samples})"


def _fit(frame, settings: FitSettings, log: list, *, label: str, law="chinchilla", exponents=None):
    """Fit bayescale and record what the fit took and how it sampled."""
    from bayescale.fit import fit

    start = time.perf_counter()
    post = fit(
        frame,
        law=law,
        exponents=exponents or settings.exponents,
        method=settings.method,
        seed=settings.seed,
        num_chains=settings.num_chains,
        num_warmup=settings.num_warmup,
        num_samples=settings.num_samples,
        target_accept=settings.target_accept,
        max_points_per_run=settings.max_points_per_run,
        progress_bar=False,
    )
    diag = post.diagnostics()
    log.append(
        {
            "fit": label,
            "method": settings.label(),
            "law": law,
            "families": post.data.n_families,
            "runs": post.data.n_runs,
            "checkpoints": post.data.n_obs,
            "seconds": time.perf_counter() - start,
            "rhat_max": diag.get("rhat_max"),
            "ess_bulk_min": diag.get("ess_bulk_min"),
            "divergences": diag.get("divergences"),
        }
    )
    return post


# ------------------------------------------------------------------------------- rows


def _frame(rows: list[dict]) -> pd.DataFrame:
    """Rows → frame with every column of :data:`COLUMNS`, in that order."""
    df = pd.DataFrame(rows)
    for col in COLUMNS:
        if col not in df.columns:
            df[col] = np.nan
    extra = [c for c in df.columns if c not in COLUMNS]
    df = df[list(COLUMNS) + extra]
    for col in ("inside50", "inside90"):
        df[col] = df[col].astype(object).where(df[col].notna(), None)
    return df


def _target_rows(base: dict, targets: pd.DataFrame, actual, median, bounds=None) -> list[dict]:
    """One row per target checkpoint; ``bounds`` = (lo90, hi90, lo50, hi50) or None."""
    actual = np.asarray(actual, dtype=float)
    median = np.asarray(median, dtype=float)
    params = targets["params"].to_numpy(float)
    tokens = targets["tokens"].to_numpy(float)
    runs = targets["run"].astype(str).to_numpy() if "run" in targets else [None] * len(targets)
    if "headline" in targets:
        headline = targets["headline"].astype(bool).to_numpy()
    else:
        headline = [base.get("headline")] * len(targets)
    rows = []
    for i in range(len(targets)):
        row = {
            "row_type": "target",
            **base,
            "target": runs[i],
            "headline": bool(headline[i]) if headline[i] is not None else None,
            "params": params[i],
            "tokens": tokens[i],
            "M": tokens[i] / params[i],
            "actual": actual[i],
            "median": median[i],
            "rel_error": median[i] / actual[i] - 1.0,
        }
        if bounds is not None:
            lo90, hi90, lo50, hi50 = (b[i] for b in bounds)
            row.update(
                lower=lo90,
                upper=hi90,
                lower50=lo50,
                upper50=hi50,
                inside90=bool(lo90 <= actual[i] <= hi90),
                inside50=bool(lo50 <= actual[i] <= hi50),
            )
        rows.append(row)
    return rows


def _posterior_rows(post, family: str, targets: pd.DataFrame, base: dict, *, seed=0) -> list:
    """bayescale predictions at the targets: kinds mean and new_run, or one MAP point."""
    from bayescale.predict import loss_draws

    n = targets["params"].to_numpy(float)
    d = targets["tokens"].to_numpy(float)
    actual = targets["actual"].to_numpy(float)
    base = {**base, "fit_method": post.config.method, "law": post.config.law}
    if post.config.method == "map":
        law = _map_law(post, family, n, d)
        return _target_rows({**base, "kind": "point"}, targets, actual, law)
    rows = []
    for kind in ("mean", "new_run"):
        draws = loss_draws(post, family, n, d, kind=kind, seed=seed)
        lo90, lo50, med, hi50, hi90 = np.quantile(draws, [0.05, 0.25, 0.5, 0.75, 0.95], axis=0)
        rows += _target_rows({**base, "kind": kind}, targets, actual, med, (lo90, hi90, lo50, hi50))
    return rows


def _map_law(post, family: str, params, tokens) -> np.ndarray:
    """The fitted law at a MAP point, without any sampled run or noise term."""
    from bayescale.predict import family_draws

    c = {k: float(v[0]) for k, v in family_draws(post, family).items() if np.ndim(v) == 1}
    log_mu = log_chinchilla_centered(
        np.log(params) - LOG_N_REF, np.log(tokens) - LOG_D_REF,
        c["log_E"], c["a"], c["b"], c["alpha"], c["beta"],
    )  # fmt: skip
    return c["scale"] * np.exp(np.asarray(log_mu))


def _point_rows(fit, targets: pd.DataFrame, base: dict) -> list[dict]:
    pred = fit.predict(targets["params"].to_numpy(float), targets["tokens"].to_numpy(float))
    return _target_rows({**base, "kind": "point"}, targets, targets["actual"], pred)


# ---------------------------------------------------------------------------- summaries

_CELL_KEYS = (
    "protocol",
    "family",
    "method",
    "kind",
    "fit_method",
    "law",
    "quantity",
    "n_models",
    "q",
    "fit_params",
    "subset",
)


def summarize(points: pd.DataFrame, by: Sequence[str] | None = None) -> pd.DataFrame:
    """ARE and interval coverage per cell of held-out targets.

    Parameters
    ----------
    points : pandas.DataFrame
        Rows of a protocol (only ``row_type == "target"`` rows are used).
    by : list of str, optional
        Grouping columns; default every cell-defining column present.

    Returns
    -------
    pandas.DataFrame
        ``n`` targets, ``are`` (mean absolute relative error, in percent),
        ``bias`` (mean signed relative error, percent), ``cover50`` and
        ``cover90`` (fraction of targets inside the intervals; NaN for point
        estimates) and ``width90`` (mean 90% interval width relative to the
        actual value, percent).
    """
    t = points[points["row_type"] == "target"].copy()
    if by is None:
        by = [c for c in _CELL_KEYS if c in t.columns and t[c].notna().any()]
    t["_abs"] = t["rel_error"].abs()
    t["_in50"] = pd.to_numeric(t["inside50"], errors="coerce")
    t["_in90"] = pd.to_numeric(t["inside90"], errors="coerce")
    t["_w90"] = (t["upper"] - t["lower"]) / t["actual"]
    keys = [t[c].astype(object).where(t[c].notna(), "") for c in by]
    g = t.groupby(keys, sort=False, dropna=False)
    out = pd.DataFrame(
        {
            "n": g.size(),
            "are": 100 * g["_abs"].mean(),
            "bias": 100 * g["rel_error"].mean(),
            "cover50": g["_in50"].mean(),
            "cover90": g["_in90"].mean(),
            "width90": 100 * g["_w90"].mean(),
        }
    ).reset_index()
    out.columns = list(by) + list(out.columns[len(by) :])
    return out


def calibration(points: pd.DataFrame, by: Sequence[str] = ("protocol", "method", "kind")):
    """Coverage of the 50% and 90% intervals pooled over targets.

    Only rows with intervals count. Adds an ``all`` row per method and kind
    pooling every protocol present.
    """
    t = points[(points["row_type"] == "target") & points["inside90"].notna()].copy()
    if t.empty:
        return pd.DataFrame(columns=[*by, "n", "cover50", "cover90"])
    t["_in50"] = t["inside50"].astype(float)
    t["_in90"] = t["inside90"].astype(float)
    by = list(by)

    def agg(frame, keys):
        g = frame.groupby(keys, sort=False)
        return pd.DataFrame(
            {"n": g.size(), "cover50": g["_in50"].mean(), "cover90": g["_in90"].mean()}
        ).reset_index()

    out = agg(t, by)
    if "protocol" in by and t["protocol"].nunique() > 1:
        rest = [c for c in by if c != "protocol"]
        pooled = agg(t, rest) if rest else agg(t.assign(_all=1), ["_all"]).drop(columns="_all")
        pooled.insert(0, "protocol", "all")
        out = pd.concat([out, pooled[out.columns]], ignore_index=True)
    return out


# ------------------------------------------------------------------------- Hitchhiker


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


def _sizes(frame: pd.DataFrame, min_tokens: float) -> np.ndarray:
    ok = _has_curve(frame, min_tokens)
    return np.unique(np.array([n for (_, n), v in ok.items() if v], dtype=float))


def hitchhiker_cells(frame: pd.DataFrame, *, q_values=Q_GRID, min_tokens=MIN_TOKENS):
    """All ``(n_models, q)`` cells of one family: 2 .. (#sizes - 1) models x q."""
    k_max = len(_sizes(frame, min_tokens)) - 1
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
    sizes = _sizes(frame, min_tokens)
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
    settings: FitSettings | None = None,
    grid_settings: FitSettings | None = None,
    bayes_grid: str = "subset",
    hier_folds: int | None = None,
    methods: Sequence[str] = ("bayescale-hier", "bayescale-family", "hitchhiker", "hoffmann"),
    quantities: Sequence[str] = ("loss", "hh_perf"),
    hoffmann_grid: np.ndarray | None = None,
    quick: bool = False,
    seed: int = 0,
) -> pd.DataFrame:
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
    settings : FitSettings, optional
        bayescale at the headline cell (all smaller models, q = 1); default
        NUTS (:meth:`FitSettings.quick` when ``quick``).
    grid_settings : FitSettings, optional
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
    pandas.DataFrame
        Columns :data:`COLUMNS`; fits and their diagnostics in ``.attrs["fits"]``.
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
    settings = settings or (FitSettings.quick(seed) if quick else FitSettings(seed=seed))
    grid_settings = grid_settings or FitSettings.map(seed)
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
        k_all = len(_sizes(frame, MIN_TOKENS)) - 1
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
            rows += _point_rows(fit, tgt, {**base, "method": "hitchhiker", "fit_method": "lsq"})
        if hoff:
            rows += _point_rows(hoff[i], tgt, {**base, "method": "hoffmann", "fit_method": "huber"})

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
            post = _fit(train, st, log, label=f"family {fam} k={k} q={q}", exponents="shared")
            rows += _posterior_rows(post, fam, target.assign(actual=target["loss"]), base)
    if "bayescale-hier" in methods:
        rows += _hitchhiker_hier(df, cells, bayes_cells, context, settings, grid_settings,
                                 hier_folds, log)  # fmt: skip
    out = _frame(rows)
    out.attrs["fits"] = log
    return out


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
    keep_cols = ["family", "run", "params", "tokens", "loss", "is_final"]
    subset = "leave-one-family-out" if folds is None else f"{folds} folds"
    rows = []
    for (spec, _fold), keys in sorted(groups.items(), key=lambda kv: (str(kv[0][0]), kv[0][1])):
        members = [fam for fam, _, _ in keys]
        others = df[df["family"].isin(set(context) - set(members))]
        parts = [others] + [cells[key][0] for key in keys]
        frame = pd.concat([p[[c for c in keep_cols if c in p]] for p in parts], ignore_index=True)
        st = settings if spec == ("all", 1.0) else grid_settings
        post = _fit(frame, st, log, label=f"hier n_models={spec[0]} q={spec[1]}: {members}")
        for key in keys:
            fam, k, q = key
            _, target, head = cells[key]
            base = {"protocol": "hitchhiker", "family": fam, "quantity": "loss", "n_models": k}
            base.update(q=q, headline=head, method="bayescale-hier", subset=subset)
            rows += _posterior_rows(post, fam, target.assign(actual=target["loss"]), base)
    return rows


# -------------------------------------------------------------------------- one model


def evaluate_one_model(
    df: pd.DataFrame | None = None,
    *,
    targets: dict | None = None,
    context: Sequence[str] | None = None,
    settings: FitSettings | None = None,
    quick: bool = False,
    seed: int = 0,
) -> pd.DataFrame:
    """One run of the target family plus every other family → its largest model.

    Parameters
    ----------
    df : pandas.DataFrame, optional
        Default ``load_dataset("hitchhiker")``.
    targets : dict, optional
        Family → sizes of the one run used in turn; default the paper's
        (:data:`ONE_MODEL_TARGETS`). ``{"OPT": "all"}`` uses every smaller size.
    context : list of str, optional
        Other families, complete; default :func:`context_families`.
    settings : FitSettings, optional
        Default NUTS (quick: :meth:`FitSettings.quick`).
    quick : bool
        Only OPT from 30B, a small context, short NUTS.
    seed : int

    Returns
    -------
    pandas.DataFrame
        Columns :data:`COLUMNS` (``fit_params`` = the size of the one run) and
        ``paper_are`` (percent, where the paper reports it).
    """
    from bayescale.datasets import load_dataset

    if df is None:
        df = load_dataset("hitchhiker")
    if targets is None:
        targets = {"OPT": (3.0e10,)} if quick else dict(ONE_MODEL_TARGETS)
    settings = settings or (FitSettings.quick(seed) if quick else FitSettings(seed=seed))
    if context is None:
        context = sorted(set(QUICK_CONTEXT) & set(df["family"])) if quick else None
    context = list(context) if context is not None else context_families(df)
    keep_cols = ["family", "run", "params", "tokens", "loss", "is_final"]
    rows, log = [], []
    for fam, sizes in targets.items():
        frame = df[df["family"] == fam]
        all_sizes = _sizes(frame, MIN_TOKENS)
        if len(all_sizes) < 2:
            raise ValueError(f"family {fam!r} needs curves at 2 or more sizes")
        if isinstance(sizes, str) and sizes == "all":
            sizes = tuple(all_sizes[:-1])
        _, target = hitchhiker_split(frame)
        others = df[df["family"].isin(set(context) - {fam})]
        for size in sizes:
            match = all_sizes[np.isclose(all_sizes, float(size), rtol=0.02)]
            if not len(match):
                raise ValueError(f"family {fam!r} has no size near {size:g}: {all_sizes}")
            one = frame[(frame["params"] == match[0]) & (frame["tokens"] > MIN_TOKENS)]
            fit_frame = pd.concat(
                [others[[c for c in keep_cols if c in others]], one.drop(columns=["is_final"])],
                ignore_index=True,
            )
            post = _fit(fit_frame, settings, log, label=f"one-model {fam} from {match[0]:.3g}")
            base = {"protocol": "one-model", "family": fam, "quantity": "loss"}
            base.update(method="bayescale-hier", fit_params=float(match[0]), headline=True)
            new = _frame(_posterior_rows(post, fam, target.assign(actual=target["loss"]), base))
            new["paper_are"] = _paper_one_model(fam, float(match[0]))
            rows.append(new)
    out = pd.concat(rows, ignore_index=True) if rows else _frame([])
    out.attrs["fits"] = log
    return out


def _paper_one_model(family: str, size: float) -> float:
    for (fam, n), are in PAPER_ONE_MODEL.items():
        if fam == family and np.isclose(n, size, rtol=0.02):
            return are
    return float("nan")


# ------------------------------------------------------------------------------ Gadre


def gadre_headline(df: pd.DataFrame) -> pd.Series:
    """The paper's headline targets: 1.4B at its largest M and 6.9B at M = 20."""
    is14 = df["size_label"] == "1.4B"
    m14 = df[is14].groupby("family")["M"].transform("max")
    big14 = pd.Series(False, index=df.index)
    big14[m14.index] = df.loc[m14.index, "M"] == m14
    return (big14 & is14) | ((df["size_label"] == "6.9B") & np.isclose(df["M"], 20))


def evaluate_gadre(
    df: pd.DataFrame | None = None,
    *,
    laws: Sequence[str] = ("overtrain", "chinchilla"),
    settings: FitSettings | None = None,
    methods: Sequence[str] = ("bayescale-hier", "bayescale-family", "gadre"),
    quick: bool = False,
    seed: int = 0,
) -> pd.DataFrame:
    """Gadre et al.'s protocol: fit 5 small runs per corpus, predict the rest.

    The three corpora are three families; ``bayescale-hier`` fits them in one
    hierarchical model, ``bayescale-family`` each alone, ``gadre`` is the
    paper's least squares in ``(C, M)``.

    Parameters
    ----------
    df : pandas.DataFrame, optional
        Default ``load_dataset("gadre")``; needs ``default_fit_loss``,
        ``size_label`` and ``M``.
    laws : sequence of {"overtrain", "chinchilla"}
        bayescale laws to try (``overtrain``: alpha = beta, Gadre's form).
    settings : FitSettings, optional
    methods : sequence of str
    quick : bool
        ``law="overtrain"``, the hierarchical fit and the baseline only, short
        NUTS.
    seed : int

    Returns
    -------
    pandas.DataFrame
        Columns :data:`COLUMNS`; ``headline`` marks 1.4B at the largest M and
        6.9B at M = 20.
    """
    from bayescale.datasets import load_dataset

    if df is None:
        df = load_dataset("gadre")
    if quick:
        laws = ("overtrain",)
        methods = [m for m in methods if m != "bayescale-family"]
    settings = settings or (FitSettings.quick(seed) if quick else FitSettings(seed=seed))
    df = df.assign(headline=gadre_headline(df))
    fit_mask = df["default_fit_loss"].astype(bool)
    train, test = df[fit_mask], df[~fit_mask].assign(actual=lambda t: t["loss"])
    cols = ["family", "run", "params", "tokens", "loss", "is_final"]
    rows, log = [], []
    for fam in sorted(df["family"].unique()):
        tr, te = train[train["family"] == fam], test[test["family"] == fam]
        if "gadre" in methods:
            fit = bl.fit_gadre(tr["params"], tr["tokens"], tr["loss"])
            base = {"protocol": "gadre", "family": fam, "quantity": "loss", "method": "gadre"}
            rows += _point_rows(fit, te, {**base, "fit_method": "nls", "law": "overtrain"})
        if "bayescale-family" in methods:
            for law in laws:
                post = _fit(tr[cols], settings, log, label=f"gadre {fam} {law}", law=law,
                            exponents="shared")  # fmt: skip
                base = {"protocol": "gadre", "family": fam, "quantity": "loss"}
                rows += _posterior_rows(post, fam, te, {**base, "method": "bayescale-family"})
    if "bayescale-hier" in methods:
        for law in laws:
            post = _fit(train[cols], settings, log, label=f"gadre hier {law}", law=law)
            for fam in post.families:
                te = test[test["family"] == fam]
                base = {"protocol": "gadre", "family": fam, "quantity": "loss"}
                rows += _posterior_rows(post, fam, te, {**base, "method": "bayescale-hier"})
    out = _frame(rows)
    out.attrs["fits"] = log
    return out


# ------------------------------------------------------------------------- Chinchilla


def chinchilla_outliers(frame: pd.DataFrame, n: int = 5) -> pd.Index:
    """Index of the ``n`` highest losses (largest models at the smallest budgets).

    Besiroglu et al. fit 240 of the 245 digitised points; dropping these five
    (of the real data) reproduces their coefficients (see ``benchmarks/baselines_real.py``).
    """
    return frame["loss"].nlargest(n).index


def _coef_draws(post, family: str) -> dict:
    from bayescale.predict import family_draws

    d = family_draws(post, family)
    E, A, B = (
        np.asarray(v)
        for v in centered_to_published(d["log_E"], d["a"], d["b"], d["alpha"], d["beta"])
    )
    return {"E": d["scale"] * E, "A": d["scale"] * A, "B": d["scale"] * B,
            "alpha": d["alpha"], "beta": d["beta"]}  # fmt: skip


def evaluate_chinchilla(
    df: pd.DataFrame | None = None,
    *,
    settings: FitSettings | None = None,
    holdout_flops: float = CHINCHILLA_HOLDOUT_FLOPS,
    hoffmann_grid: np.ndarray | None = None,
    quick: bool = False,
    seed: int = 0,
) -> pd.DataFrame:
    """Chinchilla points: coefficients beside Epoch's re-fit, and held-out budgets.

    Coefficient rows (``row_type="coef"``) compare the posterior of ``E, A,
    B, alpha, beta`` (raw scale; ``lower``/``upper`` 90%, ``lower95``/
    ``upper95`` 95%) with Epoch's estimate (``actual``) for the fit on all
    points and with the five highest losses dropped (245 and 240 on the real
    data), and give the
    Hoffmann baseline's point estimates. Target rows predict the points at
    budgets of ``holdout_flops`` and above from a fit on the others (of the
    reduced set), for bayescale and both baselines.

    Parameters
    ----------
    df : pandas.DataFrame, optional
        Default ``load_dataset("hitchhiker", families=["chinchilla"])``.
    settings : FitSettings, optional
    holdout_flops : float
    hoffmann_grid : array, optional
        Starts of the Hoffmann fit; default the published 4500-point grid.
    quick : bool
        Short NUTS, and the coefficient fit without the five points only.
    seed : int
    """
    from bayescale.datasets import load_dataset

    if df is None:
        df = load_dataset("hitchhiker", families=["chinchilla"])
    settings = settings or (FitSettings.quick(seed) if quick else FitSettings(seed=seed))
    df = df[df["family"] == "chinchilla"]
    fam = "chinchilla"
    drop = chinchilla_outliers(df)
    subsets = {f"{len(df)} points": df, f"{len(df) - len(drop)} points": df.drop(index=drop)}
    if quick:
        del subsets[f"{len(df)} points"]
    cols = ["family", "run", "params", "tokens", "loss", "is_final"]
    rows, log = [], []
    for subset, frame in subsets.items():
        post = _fit(frame[cols], settings, log, label=f"chinchilla {subset}", exponents="shared")
        draws = _coef_draws(post, fam)
        for name, v in draws.items():
            ref, ref_lo, ref_hi = EPOCH[name]
            row = {"protocol": "chinchilla", "row_type": "coef", "family": fam, "quantity": name,
                   "method": "bayescale-family", "fit_method": post.config.method,
                   "law": "chinchilla", "subset": subset, "actual": ref,
                   "ref_lower95": ref_lo, "ref_upper95": ref_hi}  # fmt: skip
            qs = np.quantile(v, [0.025, 0.05, 0.25, 0.5, 0.75, 0.95, 0.975])
            row.update(median=qs[3], rel_error=qs[3] / ref - 1.0)
            if post.config.method != "map":
                row.update(lower95=qs[0], lower=qs[1], lower50=qs[2], upper50=qs[4],
                           upper=qs[5], upper95=qs[6], inside90=bool(qs[1] <= ref <= qs[5]),
                           inside50=bool(qs[2] <= ref <= qs[4]))  # fmt: skip
                row["kind"] = "mean"
            else:
                row["kind"] = "point"
            rows.append(row)
        hoff = bl.fit_hoffmann(frame["params"], frame["tokens"], frame["loss"], grid=hoffmann_grid)
        for name in EPOCH:
            ref = EPOCH[name][0]
            est = float(getattr(hoff, name))
            rows.append({"protocol": "chinchilla", "row_type": "coef", "family": fam,
                         "quantity": name, "method": "hoffmann", "kind": "point",
                         "fit_method": "huber", "law": "chinchilla", "subset": subset,
                         "actual": ref, "median": est, "rel_error": est / ref - 1.0})  # fmt: skip

    # held-out: the largest budgets, predicted from the rest of the reduced set
    flops = 6.0 * df["params"] * df["tokens"]
    clean = df.drop(index=drop)
    held = clean[flops.loc[clean.index] >= holdout_flops].assign(actual=lambda t: t["loss"])
    train = clean[flops.loc[clean.index] < holdout_flops]
    subset = f"train C < {holdout_flops:.0e}, {len(clean)}-point set"
    base = {"protocol": "chinchilla", "family": fam, "quantity": "loss", "subset": subset,
            "headline": True}  # fmt: skip
    post = _fit(train[cols], settings, log, label="chinchilla held-out", exponents="shared")
    rows += _posterior_rows(post, fam, held, {**base, "method": "bayescale-family"})
    n, d, y = train["params"], train["tokens"], train["loss"]
    rows += _point_rows(bl.fit_hoffmann(n, d, y, grid=hoffmann_grid), held,
                        {**base, "method": "hoffmann", "fit_method": "huber"})  # fmt: skip
    rows += _point_rows(bl.fit_hitchhiker(n, d, y), held,
                        {**base, "method": "hitchhiker", "fit_method": "lsq"})  # fmt: skip
    out = _frame(rows)
    out.attrs["fits"] = log
    return out


# ---------------------------------------------------------------------------- dispatch


def evaluate(protocol: str, *, quick: bool = False, seed: int = 0, **kwargs) -> pd.DataFrame:
    """Run one protocol by name (``hitchhiker``, ``one-model``, ``gadre``, ``chinchilla``)."""
    funcs = {
        "hitchhiker": evaluate_hitchhiker,
        "one-model": evaluate_one_model,
        "gadre": evaluate_gadre,
        "chinchilla": evaluate_chinchilla,
    }
    if protocol not in funcs:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    return funcs[protocol](quick=quick, seed=seed, **kwargs)


def format_summary(points: pd.DataFrame) -> str:
    """Human-readable headline table and calibration of a protocol's rows."""
    t = points[points["row_type"] == "target"]
    head = t[t["headline"].astype(object).eq(True)]
    by = ["family", "method", "kind", "law", "quantity", "n_models", "fit_params", "subset"]
    by = [c for c in by if c in head.columns and head[c].notna().any()]
    lines = []
    if len(head):
        s = summarize(head, by=by)
        s = s.drop(columns=[c for c in ("bias",) if c in s])
        lines += [
            "Headline targets (ARE and width in %):",
            s.to_string(index=False, float_format="%.3g"),
        ]
    coef = points[points["row_type"] == "coef"]
    if len(coef):
        cols = ["quantity", "method", "subset", "actual", "median", "lower", "upper", "inside90"]
        lines += ["", "Coefficients (actual = published re-fit; 90% interval):",
                  coef[cols].to_string(index=False, float_format="%.4g")]  # fmt: skip
    cal = calibration(points)
    if len(cal):
        lines += [
            "",
            "Interval coverage (all targets):",
            cal.to_string(index=False, float_format="%.3g"),
        ]
    return "\n".join(lines)
