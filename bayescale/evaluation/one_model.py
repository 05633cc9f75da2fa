"""One-model transfer: one run of the target family plus every other family -> its largest model.

The Hitchhiker's guide borrows the exponent and ``A`` from a reference fit;
bayescale pools every other family in one hierarchical fit instead.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from bayescale.datasets.hitchhiker import without_twins_at
from bayescale.evaluation.common import (
    Evaluation,
    fit_columns,
    fit_logged,
    posterior_rows,
    result,
    settings_for,
)
from bayescale.evaluation.hitchhiker import context_families, family_sizes, hitchhiker_split
from bayescale.evaluation.reference import (
    MIN_TOKENS,
    ONE_MODEL_TARGETS,
    PAPER_ONE_MODEL,
    QUICK_CONTEXT,
)
from bayescale.fitting import FitConfig
from bayescale.tables import grouped_by


def evaluate_one_model(
    df: pd.DataFrame | None = None,
    *,
    targets: dict | None = None,
    context: Sequence[str] | None = None,
    settings: FitConfig | None = None,
    group_by: str | None = None,
    quick: bool = False,
    seed: int = 0,
) -> Evaluation:
    """One run of the target family plus every other family → its largest model.

    Parameters
    ----------
    df : pandas.DataFrame, optional
        Default ``load_dataset("hitchhiker")``.
    targets : dict, optional
        Family → sizes of the one run used in turn; default the paper's
        (:data:`ONE_MODEL_TARGETS`). ``{"OPT": "all"}`` uses every smaller size.
    context : list of str, optional
        Other families, complete but for the target size of the target's near
        twins (:func:`~bayescale.datasets.hitchhiker.without_twins_at`: Pythia's
        12B is hidden in all four Pythia suites); default :func:`context_families`.
    settings : FitConfig, optional
        Default NUTS (quick: :data:`~bayescale.evaluation.common.QUICK`).
    group_by : str, optional
        Column of ``df`` whose values become the families' ``group`` (see
        :class:`~bayescale.data.ScalingData`). ``"source"`` groups them by the
        collection they come from: families of one collection share their lab
        and their measured quantity (the four Pythia suites report LAMBADA
        perplexity, whose log-log slope in size at the largest sizes is -0.09
        to -0.16, against -0.035 to -0.10 for the other collections' losses).
        Default: no groups (a ``group`` column already in ``df`` is kept).
    quick : bool
        Only OPT from 30B, a small context, short NUTS.
    seed : int

    Returns
    -------
    Evaluation
        ``points`` with columns :data:`COLUMNS` (``fit_params`` = the size of
        the one run) and ``paper_are`` (percent, where the paper reports it).
    """
    from bayescale.datasets import load_dataset

    if df is None:
        df = load_dataset("hitchhiker")
    if group_by is not None:
        df = grouped_by(df, group_by)
    if targets is None:
        targets = {"OPT": (3.0e10,)} if quick else dict(ONE_MODEL_TARGETS)
    settings = settings_for(settings, quick, seed, "one-model")
    if context is None:
        context = sorted(set(QUICK_CONTEXT) & set(df["family"])) if quick else None
    context = list(context) if context is not None else context_families(df)
    rows, log = [], []
    for fam, sizes in targets.items():
        fam_df = df[df["family"] == fam]
        all_sizes = family_sizes(fam_df, MIN_TOKENS)
        if len(all_sizes) < 2:
            raise ValueError(f"family {fam!r} needs curves at 2 or more sizes")
        if isinstance(sizes, str) and sizes == "all":
            sizes = tuple(all_sizes[:-1])
        _, target = hitchhiker_split(fam_df)
        others = df[df["family"].isin(set(context) - {fam})]
        others = without_twins_at(others, fam, float(target["params"].max()))
        for size in sizes:
            match = all_sizes[np.isclose(all_sizes, float(size), rtol=0.02)]
            if not len(match):
                raise ValueError(f"family {fam!r} has no size near {size:g}: {all_sizes}")
            one = fam_df[(fam_df["params"] == match[0]) & (fam_df["tokens"] > MIN_TOKENS)]
            fit_frame = pd.concat(
                [fit_columns(others), one.drop(columns=["is_final"])],
                ignore_index=True,
            )
            post = fit_logged(
                fit_frame, settings, log, label=f"one-model {fam} from {match[0]:.3g}"
            )
            base = {"protocol": "one-model", "family": fam, "quantity": "loss"}
            base.update(method="bayescale-hier", fit_params=float(match[0]), headline=True)
            new = posterior_rows(post, fam, target.assign(actual=target["loss"]), base)
            rows += [r | {"paper_are": _paper_one_model(fam, float(match[0]))} for r in new]
    return result(rows, log)


def _paper_one_model(family: str, size: float) -> float:
    for (fam, n), are in PAPER_ONE_MODEL.items():
        if fam == family and np.isclose(n, size, rtol=0.02):
            return are
    return float("nan")
