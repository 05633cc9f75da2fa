"""bayescale: hierarchical Bayesian scaling laws for language models.

Importing the package lets JAX see several CPU "devices" so that NUTS chains
run in parallel; this must happen before JAX initialises its backend, and is
skipped when the user already configured ``XLA_FLAGS`` or started JAX.
"""

from __future__ import annotations

import os
import sys

__version__ = "0.1.0"


def _enable_parallel_chains(n: int = 4) -> None:
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_force_host_platform_device_count" in flags or "jax" in sys.modules:
        return
    os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={n}".strip()


_enable_parallel_chains()

from bayescale.data import DataError, LossScaleWarning, ScalingData, validate_frame  # noqa: E402
from bayescale.datasets import list_datasets, load_dataset  # noqa: E402
from bayescale.design import plan  # noqa: E402
from bayescale.downstream import (  # noqa: E402
    DownstreamFamilyWarning,
    DownstreamPosterior,
    DownstreamPriors,
    fit_downstream,
    load_downstream,
    predict_downstream,
)
from bayescale.fit import FitConfig, Posterior, fit, load  # noqa: E402
from bayescale.model import Priors  # noqa: E402
from bayescale.posterior_base import ConvergenceWarning, FitFileError  # noqa: E402
from bayescale.predict import UnseenFamilyWarning, compute_optimal, predict  # noqa: E402
from bayescale.report import report, write_report  # noqa: E402

__all__ = [
    "ConvergenceWarning",
    "DataError",
    "DownstreamFamilyWarning",
    "DownstreamPosterior",
    "DownstreamPriors",
    "FitConfig",
    "FitFileError",
    "LossScaleWarning",
    "Posterior",
    "Priors",
    "ScalingData",
    "UnseenFamilyWarning",
    "__version__",
    "compute_optimal",
    "fit",
    "fit_downstream",
    "list_datasets",
    "load",
    "load_dataset",
    "load_downstream",
    "plan",
    "predict",
    "predict_downstream",
    "report",
    "validate_frame",
    "write_report",
]
