"""Gadre et al.'s over-training protocol: fit the 5 small runs per corpus, predict the rest.

The three corpora are three families; ``bayescale-hier`` fits them in one
hierarchical model, ``bayescale-family`` each alone, ``gadre`` is the
paper's least squares in ``(C, M)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from bayescale import baselines as bl
from bayescale.evaluation.common import (
    Evaluation,
    fit_logged,
    point_rows,
    posterior_rows,
    result,
    settings_for,
)
from bayescale.fitting import FitConfig


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
    settings: FitConfig | None = None,
    methods: Sequence[str] = ("bayescale-hier", "bayescale-family", "gadre"),
    quick: bool = False,
    seed: int = 0,
) -> Evaluation:
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
    settings : FitConfig, optional
        Default: :func:`~bayescale.evaluation.common.protocol_settings`.
    methods : sequence of str
    quick : bool
        ``law="overtrain"``, the hierarchical fit and the baseline only, short
        NUTS.
    seed : int

    Returns
    -------
    Evaluation
        ``points`` with columns :data:`COLUMNS`; ``headline`` marks 1.4B at the largest M and
        6.9B at M = 20.
    """
    from bayescale.datasets import load_dataset

    if df is None:
        df = load_dataset("gadre")
    if quick:
        laws = ("overtrain",)
        methods = [m for m in methods if m != "bayescale-family"]
    settings = settings_for(settings, quick, seed, "gadre")
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
            rows += point_rows(fit, te, {**base, "fit_method": "nls", "law": "overtrain"})
        if "bayescale-family" in methods:
            for law in laws:
                post = fit_logged(
                    tr[cols], settings, log, label=f"gadre {fam} {law}", law=law, exponents="shared"
                )
                base = {"protocol": "gadre", "family": fam, "quantity": "loss"}
                rows += posterior_rows(post, fam, te, {**base, "method": "bayescale-family"})
    if "bayescale-hier" in methods:
        for law in laws:
            post = fit_logged(train[cols], settings, log, label=f"gadre hier {law}", law=law)
            for fam in post.families:
                te = test[test["family"] == fam]
                base = {"protocol": "gadre", "family": fam, "quantity": "loss"}
                rows += posterior_rows(post, fam, te, {**base, "method": "bayescale-hier"})
    return result(rows, log)
