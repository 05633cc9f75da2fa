"""The digitised Chinchilla points: coefficients beside Epoch's re-fit, held-out budgets."""

from __future__ import annotations

import numpy as np
import pandas as pd

from bayescale import baselines as bl
from bayescale import laws
from bayescale.evaluation.common import (
    Evaluation,
    fit_logged,
    point_rows,
    posterior_rows,
    result,
    settings_for,
)
from bayescale.evaluation.reference import CHINCHILLA_HOLDOUT_FLOPS, EPOCH
from bayescale.fitting import FitConfig


def chinchilla_outliers(frame: pd.DataFrame, n: int = 5) -> pd.Index:
    """Index of the ``n`` highest losses (largest models at the smallest budgets).

    Besiroglu et al. fit 240 of the 245 digitised points; dropping these five
    (of the real data) reproduces their coefficients (see ``benchmarks/baselines_real.py``).
    """
    return frame["loss"].nlargest(n).index


def _coef_draws(post, family: str) -> dict:
    """Posterior draws of the published coefficients (E, A, B in nats, alpha, beta)."""
    E, A, B, alpha, beta = (np.asarray(v) for v in laws.to_published(post.law(family)))
    return {"E": E, "A": A, "B": B, "alpha": alpha, "beta": beta}


def evaluate_chinchilla(
    df: pd.DataFrame | None = None,
    *,
    settings: FitConfig | None = None,
    holdout_flops: float = CHINCHILLA_HOLDOUT_FLOPS,
    hoffmann_grid: np.ndarray | None = None,
    quick: bool = False,
    seed: int = 0,
) -> Evaluation:
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
    settings : FitConfig, optional
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
    settings = settings_for(settings, quick, seed, "chinchilla")
    df = df[df["family"] == "chinchilla"]
    fam = "chinchilla"
    drop = chinchilla_outliers(df)
    subsets = {f"{len(df)} points": df, f"{len(df) - len(drop)} points": df.drop(index=drop)}
    if quick:
        del subsets[f"{len(df)} points"]
    cols = ["family", "run", "params", "tokens", "loss", "is_final"]
    rows, log = [], []
    for subset, frame in subsets.items():
        post = fit_logged(
            frame[cols], settings, log, label=f"chinchilla {subset}", exponents="shared"
        )
        draws = _coef_draws(post, fam)
        for name, v in draws.items():
            ref, ref_lo, ref_hi = EPOCH[name]
            row = {
                "protocol": "chinchilla",
                "row_type": "coef",
                "family": fam,
                "quantity": name,
                "method": "bayescale-family",
                "fit_method": post.config.method,
                "law": "chinchilla",
                "subset": subset,
                "actual": ref,
                "ref_lower95": ref_lo,
                "ref_upper95": ref_hi,
            }
            qs = np.quantile(v, [0.025, 0.05, 0.25, 0.5, 0.75, 0.95, 0.975])
            row.update(median=qs[3], rel_error=qs[3] / ref - 1.0)
            if post.config.method != "map":
                row.update(
                    lower95=qs[0],
                    lower=qs[1],
                    lower50=qs[2],
                    upper50=qs[4],
                    upper=qs[5],
                    upper95=qs[6],
                    inside90=bool(qs[1] <= ref <= qs[5]),
                    inside50=bool(qs[2] <= ref <= qs[4]),
                )
                row["kind"] = "mean"
            else:
                row["kind"] = "point"
            rows.append(row)
        hoff = bl.fit_hoffmann(frame["params"], frame["tokens"], frame["loss"], grid=hoffmann_grid)
        for name in EPOCH:
            ref = EPOCH[name][0]
            est = float(getattr(hoff, name))
            rows.append(
                {
                    "protocol": "chinchilla",
                    "row_type": "coef",
                    "family": fam,
                    "quantity": name,
                    "method": "hoffmann",
                    "kind": "point",
                    "fit_method": "huber",
                    "law": "chinchilla",
                    "subset": subset,
                    "actual": ref,
                    "median": est,
                    "rel_error": est / ref - 1.0,
                }
            )

    # held-out: the largest budgets, predicted from the rest of the reduced set
    flops = 6.0 * df["params"] * df["tokens"]
    clean = df.drop(index=drop)
    held = clean[flops.loc[clean.index] >= holdout_flops].assign(actual=lambda t: t["loss"])
    train = clean[flops.loc[clean.index] < holdout_flops]
    subset = f"train C < {holdout_flops:.0e}, {len(clean)}-point set"
    base = {
        "protocol": "chinchilla",
        "family": fam,
        "quantity": "loss",
        "subset": subset,
        "headline": True,
    }
    post = fit_logged(train[cols], settings, log, label="chinchilla held-out", exponents="shared")
    rows += posterior_rows(post, fam, held, {**base, "method": "bayescale-family"})
    n, d, y = train["params"], train["tokens"], train["loss"]
    rows += point_rows(
        bl.fit_hoffmann(n, d, y, grid=hoffmann_grid),
        held,
        {**base, "method": "hoffmann", "fit_method": "huber"},
    )
    rows += point_rows(
        bl.fit_hitchhiker(n, d, y), held, {**base, "method": "hitchhiker", "fit_method": "lsq"}
    )
    return result(rows, log)
