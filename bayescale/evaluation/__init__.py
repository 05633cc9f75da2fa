"""The evaluation protocols of the papers, bayescale beside the published estimators.

Each protocol runs bayescale and the point-estimate baselines of
:mod:`bayescale.baselines` on the papers' own data splits and returns an
:class:`Evaluation`: one row per (target checkpoint, method, prediction kind)
and one row per bayescale fit.

* :func:`evaluate_hitchhiker` -- Choshen et al.: fit the smaller models of a
  family, predict the last 30% of the largest model's training.
* :func:`evaluate_one_model` -- one run of the target family plus every other
  family, predict the family's largest model.
* :func:`evaluate_gadre` -- Gadre et al.: fit the 5 small runs per corpus,
  predict every other over-training run.
* :func:`evaluate_chinchilla` -- the digitised Chinchilla points: coefficients
  beside Epoch's re-fit, and held-out prediction of the largest budgets.

:func:`~bayescale.evaluation.metrics.summarize` turns rows into error,
coverage (per checkpoint and per target run), interval score and CRPS.
bayescale rows come in two kinds, ``mean`` (the law) and ``new_run`` (one new
training run); point estimates (baselines, MAP fits) have kind ``point``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bayescale.evaluation.chinchilla import chinchilla_outliers, evaluate_chinchilla
from bayescale.evaluation.common import DEFAULT, MAP, QUICK, Evaluation, protocol_settings
from bayescale.evaluation.gadre import evaluate_gadre, gadre_headline
from bayescale.evaluation.hitchhiker import (
    context_families,
    evaluate_hitchhiker,
    hitchhiker_cells,
    hitchhiker_families,
    hitchhiker_split,
)
from bayescale.evaluation.metrics import (
    COLUMNS,
    JSON_KEYS,
    calibration,
    crps,
    interval_score,
    summarize,
)
from bayescale.evaluation.one_model import evaluate_one_model
from bayescale.options import check_choice

if TYPE_CHECKING:
    import pandas as pd

PROTOCOLS = ("hitchhiker", "one-model", "gadre", "chinchilla")

__all__ = [
    "COLUMNS",
    "DEFAULT",
    "JSON_KEYS",
    "MAP",
    "PROTOCOLS",
    "QUICK",
    "Evaluation",
    "calibration",
    "chinchilla_outliers",
    "context_families",
    "crps",
    "default_settings",
    "evaluate",
    "evaluate_chinchilla",
    "evaluate_gadre",
    "evaluate_hitchhiker",
    "evaluate_one_model",
    "format_summary",
    "gadre_headline",
    "headline_summary",
    "headline_targets",
    "hitchhiker_cells",
    "hitchhiker_families",
    "hitchhiker_split",
    "interval_score",
    "summarize",
    "text_table",
]


def evaluate(protocol: str, *, quick: bool = False, seed: int = 0, **kwargs) -> Evaluation:
    """Run one protocol by name (``hitchhiker``, ``one-model``, ``gadre``, ``chinchilla``)."""
    funcs = {
        "hitchhiker": evaluate_hitchhiker,
        "one-model": evaluate_one_model,
        "gadre": evaluate_gadre,
        "chinchilla": evaluate_chinchilla,
    }
    check_choice("protocol", protocol, PROTOCOLS)
    return funcs[protocol](quick=quick, seed=seed, **kwargs)


def default_settings(protocol: str, quick: bool = False):
    """The fit settings a protocol runs with when given none (``--quick``: :data:`QUICK`)."""
    check_choice("protocol", protocol, PROTOCOLS)
    return protocol_settings(protocol, quick)


def headline_targets(points):
    """The target rows a protocol marks as headline."""
    t = points[points["row_type"] == "target"]
    return t[t["headline"].astype(object).eq(True)]


def headline_summary(points, *, fallback: bool = False):
    """:func:`summarize` of the headline targets, one row per cell.

    With ``fallback``, every target counts when a protocol marks none as headline.
    """
    head = headline_targets(points)
    if fallback and head.empty:
        head = points[points["row_type"] == "target"]
    if head.empty:
        return head.iloc[:, :0]  # no cells
    by = ["family", "method", "kind", "law", "quantity", "n_models", "fit_params", "subset"]
    return summarize(head, by=[c for c in by if c in head.columns and head[c].notna().any()])


def text_table(frame: pd.DataFrame, digits: int) -> str:
    """``frame`` as plain text, numbers to ``digits`` significant digits.

    Columns of mixed type (numbers and missing cells, as ``n_models``) are
    object columns, which pandas formats with a callable only.
    """

    def fmt(v):
        return f"{v:.{digits}g}" if isinstance(v, float) else str(v)

    return frame.to_string(index=False, float_format=fmt)


def format_summary(result: Evaluation) -> str:
    """Human-readable headline table and calibration of a protocol's rows."""
    points = result.points
    s = headline_summary(points)
    lines = []
    if len(s):
        s = s.drop(columns=[c for c in ("bias",) if c in s])
        lines += [
            "Headline targets (ARE, width and interval score in % of the actual value; CRPS of "
            "the log value x 100, about % for small errors):",
            text_table(s, 3),
        ]
    coef = points[points["row_type"] == "coef"]
    if len(coef):
        cols = ["quantity", "method", "subset", "actual", "median", "lower", "upper", "inside90"]
        lines += [
            "",
            "Coefficients (actual = published re-fit; 90% interval):",
            text_table(coef[cols], 4),
        ]
    cal = calibration(points)
    if len(cal):
        lines += [
            "",
            "Interval coverage (per checkpoint; run_ = per target run):",
            text_table(cal, 3),
        ]
    return "\n".join(lines)
