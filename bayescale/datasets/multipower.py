"""Loss curves of one model family under nine learning-rate schedules."""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

from bayescale.datasets._files import read_bundled

NAME = "multipower"
FILE = "multipower.parquet"
TOKENS_PER_STEP = 2**19
DESCRIPTION = (
    "Training-loss curves of 25M and 100M models under nine learning-rate schedules "
    "(constant, cosine, WSD, two-stage), with the learning rate at every logged step"
)
CITATION = "Luo et al. 2025, ICLR (arXiv:2503.12811)"


def load_multipower(*, families: str | Iterable[str] | None = None) -> pd.DataFrame:
    """Loss curves under nine learning-rate schedules, one row per logged step.

    Decoder-only models of about 25M and 100M parameters, one run per (size,
    schedule), no seed replicates: 4,162 rows, 1 family, 18 runs. Every
    schedule warms up for 2,160 steps to a peak learning rate of 3e-4; the
    curves start there.

    Parameters
    ----------
    families : str or list of str, optional
        Keep only these families (there is one, ``multipower``).

    Returns
    -------
    pandas.DataFrame
        Sorted by params, run, step. Columns:

        - ``family`` (str): ``multipower``.
        - ``run`` (str): ``<size>-<schedule>``, e.g. ``100m-cosine_24000``.
        - ``params`` (float64): the nominal size, 25e6 or 100e6.
        - ``tokens`` (float64): ``step * 2**19``. **Assumed**: the source
          does not state the tokens per step; 2**19 (about 0.5M) is a common
          batch for models of this size. Fits within this dataset do not
          depend on it (it rescales the data term), but token counts and
          compute-optimal answers read off it do; rescale from ``step``.
        - ``loss`` (float64): training loss in nats, logged every 128 steps.
        - ``is_final`` (bool): the last logged step of the run (all runs
          ran to their end).
        - ``step`` (float64): optimizer step.
        - ``lr`` (float64): the learning rate at that step.
        - ``schedule`` (str): ``constant_24000``, ``constant_72000`` (constant
          LR, 24k / 72k steps); ``cosine_24000``, ``cosine_72000`` (cosine
          decay to 3e-5); ``wsd_20000_24000``, ``wsdld_20000_24000``
          (warm-up, stable, then decay from step 20k to 24k, two decay
          shapes); ``wsdcon_3``, ``wsdcon_9``, ``wsdcon_18`` (3e-4 for 8k
          steps, then constant 3e-5 / 9e-5 / 1.8e-4).
        - ``size_label`` (str): ``25m`` or ``100m``.

    Notes
    -----
    - The annealing phase of cosine and WSD schedules lowers the loss by
      several percent against a constant schedule at the same step: the
      intermediate checkpoints of an annealed run are not the final losses
      of shorter runs.
    - The last value of a curve is a single noisy reading.
    - The source's own method (fit ``cosine_24000``, ``constant_24000`` and
      ``wsdcon_9``, predict the other six) reports a mean relative error of
      0.11% (25M) and 0.14% (100M), worst 0.41% / 0.58%.

    Source: thu-yao-01-luo/MultiPowerLaw @ 8da9f19
    (``loss_curve_repo/csv_{25,100}/``, MIT, see
    ``bayescale/datasets/data/LICENSES.md``), converted to a table; data only.

    Cite: Luo et al. (2025), "A Multi-Power Law for Loss Curve Prediction
    Across Learning Rate Schedules", ICLR 2025, arXiv:2503.12811.
    """
    return read_bundled(FILE, families, NAME)
