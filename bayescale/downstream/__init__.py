"""Downstream task error from validation loss: a hierarchical per-task law.

``data`` (run x task scores) -> ``model`` (NumPyro) -> ``posterior``
(fit, save, load) -> ``queries`` (error at a loss, or chained on a loss fit).
"""

from bayescale.downstream.data import GADRE_TASKS_17, GADRE_TASKS_46, TASK_SETS, DownstreamData
from bayescale.downstream.model import DownstreamPriors
from bayescale.downstream.posterior import (
    DownstreamConfig,
    DownstreamPosterior,
    fit_downstream,
    load_downstream,
)
from bayescale.downstream.queries import (
    DownstreamFamilyWarning,
    error_draws,
    predict_downstream,
    predict_error,
)

__all__ = [
    "GADRE_TASKS_17",
    "GADRE_TASKS_46",
    "TASK_SETS",
    "DownstreamConfig",
    "DownstreamData",
    "DownstreamFamilyWarning",
    "DownstreamPosterior",
    "DownstreamPriors",
    "error_draws",
    "fit_downstream",
    "load_downstream",
    "predict_downstream",
    "predict_error",
]
