"""Published point-estimate scaling-law fits, written from the papers' recipes.

These are the estimators bayescale is compared against on the same data and
protocols. None of them reports uncertainty.

* :func:`fit_hitchhiker` -- Choshen, Zhang & Andreas (2025), "A Hitchhiker's
  Guide to Scaling Law Estimation" (:mod:`~bayescale.baselines.least_squares`).
* :func:`fit_hoffmann` -- Hoffmann et al. (2022), Approach 3, as re-fitted by
  Besiroglu et al. (2024) (:mod:`~bayescale.baselines.hoffmann`). Besiroglu et
  al. fit 240 of the 245 digitised points; dropping the five highest losses
  (the largest models at the smallest budget) reproduces their coefficients.
* :func:`fit_gadre` / :func:`fit_gadre_downstream` -- Gadre et al. (2024).

Numbers on the real data are in ``benchmarks/RESULTS.md``
(``benchmarks/baselines_real.py``).
"""

from bayescale.baselines.common import ChinchillaFit, DownstreamFit, OvertrainFit
from bayescale.baselines.hoffmann import (
    fit_hoffmann,
    fit_hoffmann_many,
    fit_hoffmann_scipy,
    hoffmann_grid,
)
from bayescale.baselines.least_squares import (
    HITCHHIKER_INIT,
    fit_gadre,
    fit_gadre_downstream,
    fit_hitchhiker,
)

BASELINES = {"hitchhiker": fit_hitchhiker, "hoffmann": fit_hoffmann, "gadre": fit_gadre}

__all__ = [
    "BASELINES",
    "HITCHHIKER_INIT",
    "ChinchillaFit",
    "DownstreamFit",
    "OvertrainFit",
    "fit_gadre",
    "fit_gadre_downstream",
    "fit_hitchhiker",
    "fit_hoffmann",
    "fit_hoffmann_many",
    "fit_hoffmann_scipy",
    "hoffmann_grid",
]
