"""The main job on bundled real data: hide the largest model of five families.

One hierarchical model is fitted to every bundled family (all runs except
the five hidden ones), then the final checkpoint of each hidden model is
predicted with a ``new_run`` interval and compared with what was measured.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from bayescale.options import format_count

TARGETS = ("pythia-deduped", "OPT", "gpt3", "t5-pile", "overtrain-RedPajama")
# ordinary scaling families that pool with the targets; left out: `lambda` (its
# x-axis is examples, not tokens), `datablations-contour-c4` (many epochs) and
# the single-run families (nothing to learn about N from one size)
CONTEXT = (
    "pythia",
    "OPT",
    "gpt3",
    "t5-pile",
    "olmo",
    "chinchilla",
    "GPT2-c4-1",
    "GPT2-oscar-1",
)
# 2000 draws per chain: at 500 the smallest bulk ESS was 120-270 (olmo's token
# exponent), where R-hat exceeds 1.01 by chance alone; sampling is the cheap part
# of this fit (~15 s per 500 draws against ~50 s of MAP search and warm-up)
SETTINGS = {
    "default": {"num_chains": 4, "num_warmup": 500, "num_samples": 2000, "max_points_per_run": 30},
    "quick": {"num_chains": 2, "num_warmup": 200, "num_samples": 200, "max_points_per_run": 15},
}


JSON_KEYS = ("family", "params", "tokens", "median", "lower", "upper", "actual", "are", "inside")


@dataclass(frozen=True)
class DemoResult:
    """Table of held-out predictions, the fit, and what it took."""

    table: pd.DataFrame
    posterior: object
    seconds: float
    settings: dict


def demo_frame() -> pd.DataFrame:
    """Bundled data used by the demo: Hitchhiker families plus the Gadre runs."""
    from bayescale.datasets import load_dataset

    hh_fams = [f for f in dict.fromkeys(CONTEXT + TARGETS) if not f.startswith("overtrain-")]
    hh = load_dataset("hitchhiker", families=hh_fams)
    gadre = load_dataset("gadre")
    cols = ["family", "run", "params", "tokens", "loss", "is_final"]
    return pd.concat([hh[cols], gadre[cols]], ignore_index=True)


def split_largest(df: pd.DataFrame, families=TARGETS):
    """Split off the largest model (all its runs) of each target family.

    The same size of a near-twin family (:func:`~bayescale.datasets.hitchhiker.near_twins`)
    leaves the training data too, without becoming a target.
    """
    from bayescale.datasets.hitchhiker import without_twins_at

    largest = df.groupby("family")["params"].max()
    hide = df["family"].isin(families) & (df["params"] == df["family"].map(largest))
    train = df[~hide]
    for fam in largest.index.intersection(list(families)):
        train = without_twins_at(train, fam, largest[fam])
    return train, df[hide]


def run_demo(
    *, quick: bool = False, seed: int = 0, progress_bar=None, check: bool = True
) -> DemoResult:
    """Fit on everything but the five hidden models and predict them.

    Parameters
    ----------
    quick : bool
        Fewer chains, samples and checkpoints per run (about a minute).
    seed : int
    progress_bar : bool, optional
        Default: shown when stderr is a terminal.
    check : bool
        Warn (``ConvergenceWarning``) about sampling problems; the command
        line reports them itself.
    """
    from bayescale.fitting import fit

    settings = dict(SETTINGS["quick" if quick else "default"])
    train, hidden = split_largest(demo_frame())
    start = time.perf_counter()
    post = fit(train, seed=seed, progress_bar=progress_bar, check=check, **settings)
    rows = []
    for fam in TARGETS:
        target = hidden[hidden["family"] == fam].sort_values("tokens").iloc[-1]
        pred = post.predict(fam, target["params"], target["tokens"], kind="new_run", ci_prob=0.9)
        p = pred.iloc[0]
        actual = float(target["loss"])
        rows.append(
            {
                "family": fam,
                "params": float(target["params"]),
                "tokens": float(target["tokens"]),
                "median": float(p["median"]),
                "lower": float(p["lower"]),
                "upper": float(p["upper"]),
                "actual": actual,
                "are": abs(float(p["median"]) - actual) / actual,
                "inside": bool(p["lower"] <= actual <= p["upper"]),
            }
        )
    seconds = time.perf_counter() - start
    return DemoResult(pd.DataFrame(rows), post, seconds, settings)


def _twin_note() -> str:
    from bayescale.datasets.hitchhiker import near_twins

    twins = {f: [t for t in near_twins(f) if t in CONTEXT] for f in TARGETS}
    return "; ".join(
        f"{', '.join(t)} hidden at the size of {f}'s largest model too: near-twin data"
        for f, t in twins.items()
        if t
    )


def format_table(result: DemoResult) -> str:
    """Human-readable demo table with a footer on coverage and diagnostics."""
    t = result.table
    lines = [
        "Held-out largest model per family (90% interval, new training run):",
        "(" + _twin_note() + ")",
        "",
        f"{'family':<21}{'N':>7}{'D':>7}{'median':>9}{'90% interval':>20}{'actual':>9}"
        f"{'ARE':>8}  inside",
    ]
    for r in t.itertuples(index=False):
        interval = f"[{r.lower:.4g}, {r.upper:.4g}]"
        lines.append(
            f"{r.family:<21}{format_count(r.params):>7}{format_count(r.tokens):>7}{r.median:>9.4g}"
            f"{interval:>20}{r.actual:>9.4g}{100 * r.are:>7.2f}%  {'yes' if r.inside else 'NO'}"
        )
    diag = result.posterior.diagnostics()
    lines += [
        "",
        f"{int(t['inside'].sum())} of {len(t)} actual losses inside their 90% intervals; "
        f"median ARE {100 * float(np.median(t['are'])):.2f}%.",
        f"Fit: {result.settings['num_chains']} chains x {diag['draws']} draws "
        f"on {result.posterior.data.n_obs} checkpoints of {result.posterior.data.n_runs} runs "
        f"in {result.posterior.data.n_families} families; {result.seconds:.0f} s.",
    ]
    if diag.get("problems"):
        lines.append("WARNING: " + "; ".join(diag["problems"]))
    else:
        lines.append(
            f"Diagnostics pass: max R-hat {diag['rhat_max']:.3f}, no divergences, "
            f"min bulk ESS {diag['ess_bulk_min']:.0f}."
        )
    return "\n".join(lines)
