"""Prediction rows and their scores: error, coverage, interval score, CRPS.

Every protocol produces one row per (target checkpoint, method, prediction
kind) with the columns :data:`COLUMNS`. Checkpoints of one run are
correlated, so coverage is reported per target *run* (its last target
checkpoint, ``final``) as well as per checkpoint; the interval score and the
CRPS reward sharp intervals as well as covering ones, so calibration cannot
be bought with absurdly wide intervals.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

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
    "final",  # the last target checkpoint of its run (coverage per run)
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
    "interval_score90",  # relative to the actual value
    "crps",  # of the log value (about relative to the actual value)
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


def interval_score(lower, upper, actual, alpha: float = 0.1):
    """Gneiting and Raftery's interval score of a central ``1 - alpha`` interval (lower is better).

    Width plus ``2 / alpha`` times the distance by which the truth falls outside.
    """
    lower, upper, actual = (np.asarray(x, dtype=float) for x in (lower, upper, actual))
    below = np.maximum(lower - actual, 0.0)
    above = np.maximum(actual - upper, 0.0)
    return (upper - lower) + (2.0 / alpha) * (below + above)


def crps(draws, actual):
    """Continuous ranked probability score of sample forecasts, per column (lower is better).

    ``E|X - y| - E|X - X'| / 2``, exactly for the empirical distribution of
    ``draws`` (shape (S, P)); the second term from the sorted draws.

    The protocols score the log loss: the model's noise is Student-t on the log
    scale, and ``E exp(T)`` is infinite for every Student-t ``T``, so a
    ``new_run`` forecast of the loss itself has no mean and no finite CRPS (its
    sample estimate grows with the draws' largest value: up to 1e67 times the
    loss in Gadre's one-family fits). On the log scale it is finite, and for
    errors of a few percent it equals the loss-scale CRPS relative to the
    actual value.
    """
    x = np.sort(np.asarray(draws, dtype=float), axis=0)
    y = np.asarray(actual, dtype=float)
    s = x.shape[0]
    term1 = np.mean(np.abs(x - y[None, :]), axis=0)
    weights = (2.0 * np.arange(1, s + 1) - s - 1.0)[:, None]
    term2 = np.sum(weights * x, axis=0) / (s * s)
    return term1 - term2


def frame(rows: list[dict]) -> pd.DataFrame:
    """Rows -> frame with every column of :data:`COLUMNS`, in that order."""
    df = pd.DataFrame(rows)
    for col in COLUMNS:
        if col not in df.columns:
            df[col] = np.nan
    extra = [c for c in df.columns if c not in COLUMNS]
    df = df[list(COLUMNS) + extra]
    for col in ("inside50", "inside90", "final"):
        df[col] = df[col].astype(object).where(df[col].notna(), None)
    return df


def target_rows(base: dict, targets: pd.DataFrame, actual, median, log_draws=None) -> list[dict]:
    """One row per target checkpoint; with ``log_draws``, intervals and scores too.

    ``log_draws`` (S, P) are draws of the log value; the CRPS is scored on that
    scale (:func:`crps`).
    """
    actual = np.asarray(actual, dtype=float)
    median = np.asarray(median, dtype=float)
    params = targets["params"].to_numpy(float)
    tokens = targets["tokens"].to_numpy(float)
    runs = targets["run"].astype(str).to_numpy() if "run" in targets else np.full(len(targets), "")
    # the last target checkpoint of each run stands for the run
    last = pd.Series(tokens).groupby(runs).transform("max").to_numpy() == tokens
    if "headline" in targets:
        headline = targets["headline"].astype(bool).to_numpy()
    else:
        headline = [base.get("headline")] * len(targets)
    if log_draws is not None:
        levels = [0.05, 0.25, 0.75, 0.95]
        lo90, lo50, hi50, hi90 = np.exp(np.quantile(log_draws, levels, axis=0))
        score = interval_score(lo90, hi90, actual) / actual
        crps_log = crps(log_draws, np.log(actual))
    rows = []
    for i in range(len(targets)):
        row = {
            "row_type": "target",
            **base,
            "target": runs[i] or None,
            "final": bool(last[i]),
            "headline": bool(headline[i]) if headline[i] is not None else None,
            "params": params[i],
            "tokens": tokens[i],
            "M": tokens[i] / params[i],
            "actual": actual[i],
            "median": median[i],
            "rel_error": median[i] / actual[i] - 1.0,
        }
        if log_draws is not None:
            row.update(
                lower=lo90[i],
                upper=hi90[i],
                lower50=lo50[i],
                upper50=hi50[i],
                inside90=bool(lo90[i] <= actual[i] <= hi90[i]),
                inside50=bool(lo50[i] <= actual[i] <= hi50[i]),
                interval_score90=score[i],
                crps=crps_log[i],
            )
        rows.append(row)
    return rows


def _with_score_columns(t: pd.DataFrame) -> pd.DataFrame:
    """A copy with the per-run and score columns (NaN where a table lacks them)."""
    t = t.copy()
    for col in ("final", "interval_score90", "crps", "upper", "lower", "inside50", "inside90"):
        if col not in t.columns:
            t[col] = np.nan
    return t


def summarize(points: pd.DataFrame, by: Sequence[str] | None = None) -> pd.DataFrame:
    """Error, coverage and scores per cell of held-out targets.

    Parameters
    ----------
    points : pandas.DataFrame
        Rows of a protocol (only ``row_type == "target"`` rows are used).
    by : list of str, optional
        Grouping columns; default every cell-defining column present.

    Returns
    -------
    pandas.DataFrame
        ``n`` target checkpoints and ``runs`` target runs; ``are`` (mean
        absolute relative error, %), ``bias`` (mean signed relative error, %),
        ``cover50``/``cover90`` (fraction of checkpoints inside the
        intervals), ``run_cover50``/``run_cover90`` (the same over each target
        run's last checkpoint), ``width90`` (mean 90% width relative to the
        actual value, %), ``interval_score90`` (mean, relative to the actual
        value, %) and ``crps`` (mean, of the log value, x 100). Interval
        columns are NaN for point estimates.
    """
    t = _with_score_columns(points[points["row_type"] == "target"])
    if by is None:
        by = [c for c in _CELL_KEYS if c in t.columns and t[c].notna().any()]
    t["_abs"] = t["rel_error"].abs()
    t["_in50"] = pd.to_numeric(t["inside50"], errors="coerce")
    t["_in90"] = pd.to_numeric(t["inside90"], errors="coerce")
    final = t["final"].astype(object).eq(True)
    t["_run50"] = t["_in50"].where(final)
    t["_run90"] = t["_in90"].where(final)
    t["_final"] = final.astype(float)
    t["_w90"] = (t["upper"] - t["lower"]) / t["actual"]
    keys = [t[c].astype(object).where(t[c].notna(), "") for c in by]
    g = t.groupby(keys, sort=False, dropna=False)
    out = pd.DataFrame(
        {
            "n": g.size(),
            "runs": g["_final"].sum().astype(int),
            "are": 100 * g["_abs"].mean(),
            "bias": 100 * g["rel_error"].mean(),
            "cover50": g["_in50"].mean(),
            "cover90": g["_in90"].mean(),
            "run_cover50": g["_run50"].mean(),
            "run_cover90": g["_run90"].mean(),
            "width90": 100 * g["_w90"].mean(),
            "interval_score90": 100 * g["interval_score90"].mean(),
            "crps": 100 * g["crps"].mean(),
        }
    ).reset_index()
    out.columns = list(by) + list(out.columns[len(by) :])
    return out


def calibration(points: pd.DataFrame, by: Sequence[str] = ("protocol", "method", "kind")):
    """Coverage of the 50% and 90% intervals, per checkpoint and per target run.

    Only rows with intervals count. Adds an ``all`` row per method and kind
    pooling every protocol present.
    """
    cols = [*by, "n", "runs", "cover50", "cover90", "run_cover50", "run_cover90"]
    t = _with_score_columns(points[(points["row_type"] == "target") & points["inside90"].notna()])
    if t.empty:
        return pd.DataFrame(columns=cols)
    t["_in50"] = t["inside50"].astype(float)
    t["_in90"] = t["inside90"].astype(float)
    final = t["final"].astype(object).eq(True)
    t["_run50"] = t["_in50"].where(final)
    t["_run90"] = t["_in90"].where(final)
    t["_final"] = final.astype(float)
    by = list(by)

    def agg(frame_, keys):
        g = frame_.groupby(keys, sort=False)
        return pd.DataFrame(
            {
                "n": g.size(),
                "runs": g["_final"].sum().astype(int),
                "cover50": g["_in50"].mean(),
                "cover90": g["_in90"].mean(),
                "run_cover50": g["_run50"].mean(),
                "run_cover90": g["_run90"].mean(),
            }
        ).reset_index()

    out = agg(t, by)
    if "protocol" in by and t["protocol"].nunique() > 1:
        rest = [c for c in by if c != "protocol"]
        pooled = agg(t, rest) if rest else agg(t.assign(_all=1), ["_all"]).drop(columns="_all")
        pooled.insert(0, "protocol", "all")
        out = pd.concat([out, pooled[out.columns]], ignore_index=True)
    return out
