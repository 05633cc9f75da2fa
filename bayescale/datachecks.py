"""Warnings about a loss table: what its data cannot pin, and what looks wrong.

Called by :meth:`bayescale.data.ScalingData.from_frame` on the cleaned table;
none of them changes the data.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

# a family whose checkpoints span less than a factor 2 in tokens cannot pin beta
MIN_LOG_TOKEN_SPAN = float(np.log(2.0))
# a run whose last kept loss is this far above its lowest has stopped following a law
RISE_TOLERANCE = 0.05


class IdentifiabilityWarning(UserWarning):
    """A family's data cannot pin part of its law (it is borrowed from the other families)."""


class FinalCheckpointWarning(UserWarning):
    """A run has several checkpoints marked as its final one."""


class LossScaleWarning(UserWarning):
    """The loss column looks like perplexity rather than nats."""


class RisingLossWarning(UserWarning):
    """A run's loss ends well above its own lowest value."""


def warn_several_finals(clean: pd.DataFrame, n_marked: np.ndarray) -> None:
    """Say when a run has more than one checkpoint marked final (``n_marked`` per row)."""
    several = n_marked > 1
    if not several.any():
        return
    hit = clean.loc[several, ["family", "run"]].assign(k=n_marked[several])
    hit = hit.drop_duplicates(["family", "run"])
    examples = ", ".join(
        f"'{run}' ({k})" for run, k in hit[["run", "k"]].head(3).itertuples(index=False)
    )
    warnings.warn(
        f"{len(hit)} run(s) have several checkpoints marked is_final: {examples}"
        f"{' ...' if len(hit) > 3 else ''}. They are read as checkpoints of one run, whose "
        "trajectory noise ties close checkpoints tightly; if they are repeated readings of "
        "one final loss, average them or give each its own run name",
        FinalCheckpointWarning,
        stacklevel=4,
    )


def warn_cut_runs(clean: pd.DataFrame, keep: np.ndarray) -> None:
    """Say, with counts, when the warm-up cut takes most of some runs' checkpoints."""
    per_run = (
        clean.assign(_cut=~keep).groupby(["family", "run"], sort=False)["_cut"].agg(["sum", "size"])
    )
    hit = per_run[(per_run["size"] > 2) & (per_run["sum"] > per_run["size"] / 2)]
    if hit.empty:
        return
    examples = ", ".join(
        f"'{run}' ({int(r['sum'])} of {int(r['size'])})" for (_, run), r in hit.head(3).iterrows()
    )
    fams = sorted({fam for fam, _ in hit.index})
    warnings.warn(
        f"the warm-up cut removed most checkpoints of {len(hit)} run(s): {examples}"
        f"{' ...' if len(hit) > 3 else ''} (families {fams}; {int(hit['sum'].sum())} checkpoints "
        "in all); lower `min_tokens` or `warmup_fraction` if the early checkpoints should count",
        IdentifiabilityWarning,
        stacklevel=4,
    )


def warn_weak_families(report: pd.DataFrame, run_family, run_params, spans) -> None:
    """Say when a family has a single checkpoint, its runs share one size, or its
    checkpoints span too few tokens (``spans``: log-token range per family)."""
    for i, row in report.iterrows():
        fam = row["family"]
        sizes = np.unique(run_params[run_family == i])
        if row["rows_in"] == 1:
            warnings.warn(
                f"family '{fam}' has a single checkpoint in the table; if that label is a "
                "typo it became a family of its own (fix it in the 'family' column)",
                IdentifiabilityWarning,
                stacklevel=3,
            )
        elif len(sizes) < 2:
            warnings.warn(
                f"family '{fam}' has runs at one size only ({sizes[0]:.3g} parameters): its "
                "size exponent and the split between the size and token terms come from the "
                "other families (pooled), not from its own data",
                IdentifiabilityWarning,
                stacklevel=3,
            )
        if row["rows_in"] > 1 and spans[i] < MIN_LOG_TOKEN_SPAN:
            warnings.warn(
                f"family '{fam}': its kept checkpoints span only a factor "
                f"{np.exp(spans[i]):.2g} in tokens, so its token exponent comes from the other "
                "families (pooled) and the prior, not from its own data (e.g. final losses all "
                "trained on the same number of tokens)",
                IdentifiabilityWarning,
                stacklevel=3,
            )


def warn_rising_runs(clean: pd.DataFrame) -> None:
    """Say which runs end well above their own lowest kept loss (``RISE_TOLERANCE``).

    Every law here falls with tokens; a rise at a run's end (a loss spike, a
    divergence, over-fitting on repeated data) is read as trajectory noise and
    run offset, which pulls the family's law and widens its noise scale.
    ``clean`` is sorted by tokens within each run, after the warm-up cut.
    """
    per_run = clean.groupby(["family", "run"], sort=False)["loss"].agg(["size", "min", "last"])
    rise = per_run["last"] / per_run["min"] - 1.0
    hit = rise[(per_run["size"] > 2) & (rise > RISE_TOLERANCE)].sort_values(ascending=False)
    if hit.empty:
        return
    examples = ", ".join(f"'{run}' (+{100 * r:.0f}%)" for (_, run), r in hit.head(3).items())
    fams = sorted({fam for fam, _ in hit.index})
    warnings.warn(
        f"{len(hit)} run(s) end more than {100 * RISE_TOLERANCE:.0f}% above their own lowest "
        f"loss: {examples}{' ...' if len(hit) > 3 else ''} (families {fams}). The law "
        "describes a loss that falls with tokens; a rise at the end (a loss spike, a "
        "divergence, over-fitting on repeated data) pulls the family's law and widens its "
        "noise. Drop those checkpoints or runs if they are not what you want to predict",
        RisingLossWarning,
        stacklevel=4,
    )


def warn_one_schedule(grids: dict) -> None:
    """Say which families anneal under one schedule only (``grids``: (family, run) -> Grid)."""
    from bayescale.schedules import one_schedule_families

    fams = one_schedule_families([fam for fam, _ in grids], list(grids.values()))
    if not fams:
        return
    warnings.warn(
        f"famil{'y' if len(fams) == 1 else 'ies'} {fams}: every run follows one learning-rate "
        "schedule, decaying through most of the run. Its token exponent and its annealing "
        "bonus both explain how the loss falls as the rate decays, so the data cannot tell "
        "them apart: forecasts under that schedule hold, but the constant-rate law (what "
        "`compute_optimal` and other schedules use) rests on the law's form and the priors. "
        "A run under a second schedule (constant rate, or a short WSD cooldown) separates them",
        IdentifiabilityWarning,
        stacklevel=4,
    )
