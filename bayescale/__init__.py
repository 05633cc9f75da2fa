"""bayescale: hierarchical Bayesian scaling laws for language models.

Importing the package has no side effects: it changes no environment
variable, warning hook or JAX setting, and loads the heavy modules (JAX,
NumPyro, pandas) only when a public name is first used. For parallel NUTS
chains call :func:`set_host_device_count` at the top of a program.

Data flow::

    tidy DataFrame --ScalingData.from_frame--> arrays --fit--> Posterior (DataTree)
        --> predict / compute_optimal / plan --> write_report
"""

from __future__ import annotations

import importlib

from bayescale._version import __version__ as __version__

# public name -> module that defines it
_EXPORTS = {
    "ConvergenceWarning": "bayescale.convergence",
    "DataError": "bayescale.tables",
    "DownstreamConfig": "bayescale.downstream",
    "DownstreamFamilyWarning": "bayescale.downstream",
    "DownstreamPosterior": "bayescale.downstream",
    "DownstreamPriors": "bayescale.downstream",
    "FitConfig": "bayescale.fitting",
    "FinalCheckpointWarning": "bayescale.datachecks",
    "FitFileError": "bayescale.fitfile",
    "IdentifiabilityWarning": "bayescale.datachecks",
    "LawParams": "bayescale.laws",
    "LossScaleWarning": "bayescale.datachecks",
    "OutputExistsError": "bayescale.fitfile",
    "Posterior": "bayescale.posterior",
    "Priors": "bayescale.model",
    "RisingLossWarning": "bayescale.datachecks",
    "ScalingData": "bayescale.data",
    "SequentialChainsWarning": "bayescale.devices",
    "UnseenFamilyWarning": "bayescale.posterior",
    "compute_optimal": "bayescale.queries",
    "enable_compile_cache": "bayescale.devices",
    "fit": "bayescale.fitting",
    "fit_downstream": "bayescale.downstream",
    "list_datasets": "bayescale.datasets",
    "load": "bayescale.posterior",
    "load_dataset": "bayescale.datasets",
    "load_downstream": "bayescale.downstream",
    "parse_count": "bayescale.options",
    "plan": "bayescale.design",
    "predict": "bayescale.queries",
    "predict_downstream": "bayescale.downstream",
    "set_host_device_count": "bayescale.devices",
    "validate_frame": "bayescale.tables",
    "write_report": "bayescale.reporting",
}

__all__ = sorted([*_EXPORTS, "__version__"])


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'bayescale' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__():
    return __all__
