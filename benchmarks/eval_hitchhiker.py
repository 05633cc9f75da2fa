"""Hitchhiker's-guide protocol: bayescale beside the published estimators on every family.

For each family with loss curves at 3 or more sizes: fit the smaller models
(checkpoints past 1e10 tokens, the first q of each run), predict the checkpoints
in the last 30% of the largest model's training; mean absolute relative error
(ARE). The baselines (Hitchhiker least squares, Hoffmann Huber/L-BFGS) run the
whole grid (number of models x q) on the loss in nats and on the paper's own
quantity (``hh_perf``). bayescale runs the headline cell (all smaller models,
q = 1) with NUTS, per family and hierarchically, and a subset of the grid
(n_models in {2, all}, q in {0.3, 0.6, 1}) with MAP.

Run: ``uv run python benchmarks/eval_hitchhiker.py [--quick] [--hier-folds K]``
(full run: hours on 2 shared cores; ``--quick``: OPT and t5-pile, short chains,
RESULTS.md untouched).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _eval  # noqa: E402
from _results import frame_to_markdown, write_section  # noqa: E402

from bayescale import baselines as bl  # noqa: E402
from bayescale import evaluate as ev  # noqa: E402
from bayescale.datasets import load_dataset  # noqa: E402

SECTION = "eval_hitchhiker"


def headline_table(points: pd.DataFrame) -> pd.DataFrame:
    """One row per family: ARE (%) of every method at the headline cell, coverage."""
    head = points[points["headline"].astype(object).eq(True)]
    s = ev.summarize(head)
    rows = []
    for fam in sorted(head["family"].unique()):
        f = s[s["family"] == fam]
        row = {"family": fam, "n_models": int(f["n_models"].max()), "targets": int(f["n"].max())}

        def are(method, kind, quantity="loss", frame=f):
            g = _eval.pick(frame, method=method, kind=kind, quantity=quantity)
            return float(g["are"].iloc[0]) if len(g) else np.nan

        for method in ("bayescale-hier", "bayescale-family"):
            kind = "mean" if len(_eval.pick(f, method=method, kind="mean")) else "point"
            row[f"{method} ARE"] = are(method, kind)
        for method in ("hitchhiker", "hoffmann"):
            row[f"{method} ARE"] = are(method, "point")
        for method in ("hitchhiker", "hoffmann"):
            row[f"{method} ARE (hh_perf)"] = are(method, "point", "hh_perf")
        row["paper ARE (hh_perf)"] = ev.PAPER_HITCHHIKER.get(fam, np.nan)
        for kind in ("mean", "new_run"):
            g = _eval.pick(f, method="bayescale-hier", kind=kind)
            row[f"hier cover90 {kind}"] = float(g["cover90"].iloc[0]) if len(g) else np.nan
        g = _eval.pick(f, method="bayescale-hier", kind="new_run")
        row["hier width90 new_run"] = float(g["width90"].iloc[0]) if len(g) else np.nan
        rows.append(row)
    return pd.DataFrame(rows)


def targets_verdict(table: pd.DataFrame) -> str:
    both = table.dropna(subset=["bayescale-hier ARE", "hitchhiker ARE"])
    if both.empty:
        return "Targets: no family has both bayescale-hier and hitchhiker results."
    wins = int((both["bayescale-hier ARE"] < both["hitchhiker ARE"]).sum())
    hier, hh = both["bayescale-hier ARE"].mean(), both["hitchhiker ARE"].mean()
    fam = both["bayescale-family ARE"].mean()
    hoff = both["hoffmann ARE"].mean()
    return (
        f"**Targets** (headline cell, loss in nats): bayescale-hier beats the hitchhiker "
        f"baseline on {wins} of {len(both)} families ({100 * wins / len(both):.0f}%; target "
        f">= 80%): {'MET' if wins >= 0.8 * len(both) else 'MISSED'}. Macro-average ARE: "
        f"bayescale-hier {hier:.2f}%, bayescale-family {fam:.2f}%, hitchhiker {hh:.2f}%, "
        f"hoffmann {hoff:.2f}% (target: hier <= {hh / 2:.2f}%, half of hitchhiker's): "
        f"{'MET' if hier <= hh / 2 else 'MISSED'}. Median ARE: hier "
        f"{both['bayescale-hier ARE'].median():.2f}%, hitchhiker "
        f"{both['hitchhiker ARE'].median():.2f}%."
    )


def grid_tables(points: pd.DataFrame):
    """Mean and median ARE over families, per method and grid position."""
    t = points[points["kind"].isin(["point", "mean"])].copy()
    s = ev.summarize(t)
    k_all = s.groupby("family")["n_models"].transform("max")
    s["models"] = np.where(s["n_models"] == k_all, "all", s["n_models"].astype(int).astype(str))
    s["label"] = s["method"] + " (" + s["fit_method"] + ", " + s["quantity"] + ")"
    # the full grid, baselines: ARE by q, averaged over families and n_models
    base = s[s["method"].isin(["hitchhiker", "hoffmann"])]
    full = base.pivot_table(index="q", columns="label", values="are", aggfunc="median")
    counts = base.groupby("q")["family"].nunique().rename("families")
    full = pd.concat([counts, full], axis=1).reset_index()
    # the cells where bayescale ran too (MAP grid and NUTS headline), every method
    bay = s[s["method"].str.startswith("bayescale")]
    cells = set(zip(bay["family"], bay["n_models"], bay["q"], strict=True))
    same = s[[c in cells for c in zip(s["family"], s["n_models"], s["q"], strict=True)]]
    same = same[same["quantity"] == "loss"]
    sub = same.pivot_table(index=["models", "q"], columns="label", values="are", aggfunc="mean")
    sub_med = same.pivot_table(index=["models", "q"], columns="label", values="are",
                               aggfunc="median")  # fmt: skip
    return full, sub.reset_index(), sub_med.reset_index()


def hoffmann_grid_check(df: pd.DataFrame, families) -> tuple[pd.DataFrame, str]:
    """The 243-start Hoffmann grid against the published 4500-start one, headline cells."""
    tasks, targets = [], []
    for fam in families:
        train, target = ev.hitchhiker_split(df[df["family"] == fam])
        tasks.append((train["params"], train["tokens"], train["loss"]))
        targets.append(target)
    small = ev._hoffmann_batches(tasks, bl.hoffmann_grid(**ev.HOFFMANN_EVAL_GRID))
    full = ev._hoffmann_batches(tasks, bl.hoffmann_grid())
    rows = []
    for fam, t, s, f in zip(families, targets, small, full, strict=True):
        pred = f.predict(t["params"], t["tokens"])
        rows.append(
            {
                "family": fam,
                "hoffmann ARE (4500 starts)": 100 * np.mean(np.abs(pred / t["loss"] - 1)),
                "objective gap": (s.loss - f.loss) / abs(f.loss),
            }
        )
    out = pd.DataFrame(rows)
    gap = out["objective gap"]
    note = (
        f"Hoffmann start grid: on the {len(out)} headline cells the 243-start optimum is "
        f"within a relative {gap.max():.1e} of the 4500-start one (Huber objective; "
        f"{int((gap.abs() > 1e-6).sum())} cells differ by more than 1e-6; negative = the "
        f"small grid found a lower point). The objective is flat and multi-modal on few "
        f"sizes: distant parameter sets fit almost equally well, and the optimiser's path "
        f"(even the float summation order of a padded batch) decides which one is reported."
    )
    return out.drop(columns="objective gap"), note


def main(argv=None):
    p = _eval.parser(__doc__)
    p.add_argument("--hier-folds", type=int, default=None,
                   help="hierarchical fits: K folds of target families (default: one fit "
                        "per family, every other family complete)")  # fmt: skip
    p.add_argument("--bayes-grid", default="subset", choices=("headline", "subset", "full"))
    args = p.parse_args(argv)
    _eval.quiet()
    timer = _eval.Timer()
    df = load_dataset("hitchhiker")
    settings = ev.FitSettings.quick(args.seed) if args.quick else ev.FitSettings(seed=args.seed)
    points = ev.evaluate_hitchhiker(
        df,
        settings=settings,
        bayes_grid=args.bayes_grid,
        hier_folds=args.hier_folds,
        quick=args.quick,
        seed=args.seed,
    )
    if args.save:
        points.to_csv(args.save, index=False)
    table = headline_table(points)
    verdict = targets_verdict(table)
    full, sub, sub_med = grid_tables(points)
    families = sorted(points["family"].unique())
    check = ""
    if not args.quick:
        full_grid, check = hoffmann_grid_check(df, families)
        table = table.merge(full_grid, on="family", how="left")
    cal = _eval.coverage_markdown(points)
    print(table.to_string(index=False, float_format="%.3g"))
    print(verdict)
    print(full.to_string(index=False, float_format="%.3g"))
    print(sub.to_string(index=False, float_format="%.3g"))
    print(cal)
    print(_eval.fit_log_line(points))
    print(check)
    if args.quick or args.no_write:
        return
    folds = "one fit per target family" if args.hier_folds is None else f"{args.hier_folds} folds"
    body = "\n\n".join(
        [
            _eval.header(
                "Hitchhiker's-guide protocol (`benchmarks/eval_hitchhiker.py`)",
                timer,
                f"bayescale headline cell: NUTS {settings.num_chains} chains x "
                f"{settings.num_warmup}+{settings.num_samples}, <= {settings.max_points_per_run} "
                f"log-spaced checkpoints per run, exponents pooled (hierarchical) / own "
                f"(per family); hierarchical: {folds}, context = every family with curves at "
                f"2+ sizes ({len(ev.context_families(df))} families). bayescale grid: MAP on "
                f"n_models in {{2, all}} x q in {ev.BAYES_GRID_Q}. Baselines: every cell; "
                f"Hoffmann from {len(bl.hoffmann_grid(**ev.HOFFMANN_EVAL_GRID))} starts. "
                f"Target = checkpoints at or past 70% of the largest model's final tokens "
                f"(and past 1e10); training = checkpoints past 1e10 tokens and at or below q "
                f"times each run's final tokens.",
            ),
            "### Headline cell: all smaller models, q = 1 (ARE in %)\n"
            "bayescale ARE from the posterior median of the law (`mean`); coverage of the "
            "90% intervals for the law (`mean`) and for one new run (`new_run`, adds the run "
            "effect and checkpoint noise). Paper ARE: the authors' code on the families that "
            "survive (DESIGN §6), on their own quantity.\n\n"
            + frame_to_markdown(table, floatfmt=".3g")
            + "\n\n"
            + verdict,
            "### Baselines over the whole grid: median ARE (%) over families and n_models\n"
            + frame_to_markdown(full, floatfmt=".3g"),
            "### Every method on the cells bayescale ran (loss): mean ARE (%) over families\n"
            "bayescale off the headline cell is a MAP fit (no intervals).\n\n"
            + frame_to_markdown(sub, floatfmt=".3g")
            + "\n\nMedian over families:\n\n"
            + frame_to_markdown(sub_med, floatfmt=".3g"),
            "### Interval coverage (bayescale, NUTS cells)\n" + cal,
            _eval.fit_log_line(points) + (f"\n\n{check}" if check else ""),
        ]
    )
    write_section(SECTION, body)


if __name__ == "__main__":
    main()
