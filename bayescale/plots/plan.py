"""What to train next: expected posterior sd of the target against the cost of each candidate."""

from __future__ import annotations

import pandas as pd

from bayescale.plots._style import (
    figure_of,
    new_figure,
    size_colors,
    size_label,
)

_PLAN_COLUMNS = ("params", "tokens", "n_runs", "flops", "current_sd", "expected_sd")
_PLAN_MARKERS = ("o", "s", "D")


def plot_plan(plan, ax=None):
    """Expected posterior sd of the target after each candidate, against its cost.

    One point per candidate of a :func:`bayescale.design.plan` table, coloured
    by model size (marker: token count; triangles: sizes the family has not
    trained yet); new seeds of one size and token count are joined in order of
    their number of runs (labelled), so diminishing returns show as a
    flattening line. The dashed line is the current sd, the dotted one the
    budget; error bars are ±2 Monte-Carlo standard errors; the recommended
    experiment is circled.

    Parameters
    ----------
    plan : Plan or pandas.DataFrame
        The result of :func:`bayescale.design.plan` (or its ``table``).
    ax : matplotlib.axes.Axes, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    table = getattr(plan, "table", plan)
    if not isinstance(table, pd.DataFrame):
        raise TypeError(f"plot_plan takes the Plan returned by plan(), got {type(plan).__name__}")
    missing = [c for c in _PLAN_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"not a plan table: missing columns {missing}")
    if table.empty:
        raise ValueError("the plan table has no candidates to plot")
    if ax is None:
        fig, grid = new_figure(1, 1, width=8.0, height=4.2)
        ax = grid[0, 0]
    else:
        fig = figure_of(ax)
    colors = size_colors(table["params"])
    mcse = table["expected_sd_mcse"] if "expected_sd_mcse" in table else 0.0 * table["flops"]
    for (n, d), g in table.groupby(["params", "tokens"], sort=True):
        g = g.sort_values("n_runs")
        color = colors[float(n)]
        # one size trained on different token counts: told apart by the marker
        token_rank = sorted(table.loc[table["params"] == n, "tokens"].unique()).index(d)
        if "new_size" in g:
            seeds = not bool(g["new_size"].iloc[0])
        else:  # a table built without the column: guess from the run counts
            seeds = len(g) > 1 or g["n_runs"].iloc[0] > 1
        marker = _PLAN_MARKERS[token_rank % len(_PLAN_MARKERS)] if seeds else "^"
        ax.errorbar(
            g["flops"],
            g["expected_sd"],
            yerr=2.0 * mcse.loc[g.index],
            color=color,
            marker=marker,
            ms=5,
            lw=1.2,
            capsize=2,
            label=f"{size_label(n)} on {size_label(d)} tokens",
        )
        if len(g) > 1:
            for _, r in g.iterrows():
                ax.annotate(
                    f"×{int(r['n_runs'])}",
                    (r["flops"], r["expected_sd"]),
                    textcoords="offset points",
                    xytext=(3, 3),
                    fontsize="x-small",
                    color=color,
                )
    ax.axhline(float(table["current_sd"].iloc[0]), color="0.3", ls="--", lw=1, label="sd now")
    budget = getattr(plan, "budget_flops", None)
    if budget:
        ax.axvline(float(budget), color="0.5", ls=":", lw=1, label="budget")
    if "recommended" in table and table["recommended"].any():
        rec = table[table["recommended"]].iloc[0]
        ax.plot(
            [rec["flops"]],
            [rec["expected_sd"]],
            "o",
            ms=14,
            mfc="none",
            mec="black",
            mew=1.5,
            label=f"recommended: {int(rec['n_runs'])} × {size_label(rec['params'])} "
            f"on {size_label(rec['tokens'])}",
        )
    ax.set_xscale("log")
    ax.set_xlabel("cost of the experiment (FLOPs, 6ND per run)")
    ax.set_ylabel("posterior sd of the target after it (nats)")
    tgt = getattr(plan, "target", None)
    if tgt is not None:
        ax.set_title(
            f"What to train next: {tgt.family} at {size_label(tgt.params)} params, "
            f"{size_label(tgt.tokens)} tokens ({plan.kind})",
            fontsize="medium",
        )
    ax.legend(fontsize="x-small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(True, which="major", alpha=0.3)
    return fig
