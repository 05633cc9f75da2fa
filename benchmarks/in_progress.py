"""Runs in progress: from the first 30% of each run's tokens, forecast its final loss.

Every run with a long curve is cut at ``--prefix`` (default 30%) of its final
tokens; one hierarchical model is fitted per group of families on the cut
table (nothing past the cut is seen), and each run's loss at its final
checkpoint is forecast with ``Posterior.predict(run=...)``. The baseline
fits ``L(D) = E + B / D**beta`` to each run's own prefix (least squares on
the loss, several starts), on the same checkpoints the fit keeps (past the
warm-up cut, thinned): from step 0, the warm-up's plateau near 15 nats
decides a three-parameter power law and its forecasts are 2-3 times the loss.
Metrics per family: median absolute relative error (ARE) of both, and the 90%
coverage of the forecast, one target per run.

Groups: the long-curve families of the Hitchhiker collection that the demo
uses (Pythia, OPT, GPT-3); the same without OPT and with the published
learning-rate schedules as ``lr`` (``_published_schedules.py``); and the
multi-power schedule curves. Gadre's runs are final losses only (no curve),
so they have nothing to continue.

Run: ``uv run python benchmarks/in_progress.py [--prefix 0.3] [--quick]
[--no-write]``. Writes the section ``in_progress`` of RESULTS.md and
``results/in_progress.json``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import optimize

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _published_schedules import with_lr  # noqa: E402
from _results import frame_to_markdown, machine_info, write_json, write_section  # noqa: E402

from bayescale import fit, load_dataset, set_host_device_count  # noqa: E402

SECTION = "in_progress"
GROUPS = {
    "hitchhiker": ("hitchhiker", ["pythia", "pythia-deduped", "OPT", "gpt3"]),
    "hitchhiker+lr": ("hitchhiker", ["pythia", "pythia-deduped", "gpt3"]),
    "multipower": ("multipower", None),
}
CI = 0.9
MIN_PREFIX_POINTS = 4


def cut_runs(df: pd.DataFrame, prefix: float):
    """The table cut at ``prefix`` of each run's tokens, and each run's final row."""
    end = df.groupby(["family", "run"])["tokens"].transform("max")
    seen = df[df["tokens"] <= prefix * end].copy()
    seen["is_final"] = False  # still training
    n_seen = seen.groupby(["family", "run"]).size()
    ok = n_seen[n_seen >= MIN_PREFIX_POINTS].index
    keyed = seen.set_index(["family", "run"])
    seen = keyed.loc[keyed.index.isin(ok)].reset_index()
    last = df.loc[df.groupby(["family", "run"])["tokens"].idxmax()]
    last = last.set_index(["family", "run"]).loc[ok].reset_index()
    return seen, last


def power_law_forecast(tokens, loss, target_tokens) -> float:
    """``E + B / D**beta`` fitted to one run's prefix, by least squares on the loss."""
    x = np.log(tokens / tokens[-1])
    best = None
    for beta0 in (0.1, 0.3, 0.6):
        for e_frac in (0.5, 0.8):
            e0 = e_frac * loss.min()
            b0 = max(loss[-1] - e0, 1e-3)

            def resid(p):
                e, log_b, beta = p
                return e + np.exp(log_b - beta * x) - loss

            try:
                res = optimize.least_squares(
                    resid,
                    [e0, np.log(b0), beta0],
                    bounds=([0.0, -20.0, 1e-3], [loss.min(), 20.0, 3.0]),
                )
            except ValueError:
                continue
            if best is None or res.cost < best.cost:
                best = res
    e, log_b, beta = best.x
    return float(e + np.exp(log_b - beta * np.log(target_tokens / tokens[-1])))


def run_group(name: str, prefix: float, settings: dict) -> tuple[list[dict], dict]:
    dataset, families = GROUPS[name]
    df = load_dataset(dataset, families=families)
    if name.endswith("+lr"):
        df = with_lr(df)
    seen, last = cut_runs(df, prefix)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        post = fit(seen, progress_bar=False, **settings)
    wall = time.perf_counter() - t0
    diag = post.diagnostics()
    rows = []
    for r in last.itertuples(index=False):
        label = r.run if r.run in post.data.runs else f"{r.family}/{r.run}"
        # the planned learning-rate schedule is known in advance (not an outcome)
        full = df[(df["family"] == r.family) & (df["run"] == r.run)]
        sched = full[["tokens", "lr"]] if post.data.has_schedules else None
        pred = post.predict(run=label, tokens=r.tokens, ci_prob=CI, schedule=sched)
        prefix_rows = seen[(seen["family"] == r.family) & (seen["run"] == r.run)]
        kept = post.data.obs_run == post.data.runs.index(label)
        base = power_law_forecast(post.data.tokens[kept], post.data.loss[kept], r.tokens)
        lo, hi = float(pred["lower"].iloc[0]), float(pred["upper"].iloc[0])
        rows.append(
            {
                "group": name,
                "family": r.family,
                "run": r.run,
                "params": r.params,
                "prefix_tokens": float(prefix_rows["tokens"].max()),
                "final_tokens": r.tokens,
                "actual": r.loss,
                "median": float(pred["median"].iloc[0]),
                "lower": lo,
                "upper": hi,
                "covered": bool(lo <= r.loss <= hi),
                "are": abs(float(pred["median"].iloc[0]) - r.loss) / r.loss,
                "baseline": base,
                "baseline_are": abs(base - r.loss) / r.loss,
            }
        )
    info = {
        "group": name,
        "fit_s": wall,
        "rhat_max": diag["rhat_max"],
        "divergences": diag["divergences"],
        "runs": len(rows),
        "fitted_points": post.data.n_obs,
    }
    print(
        f"{name}: {len(rows)} runs, fit {wall:.0f} s, R-hat {diag['rhat_max']:.3f}, "
        f"{diag['divergences']} divergences",
        flush=True,
    )
    return rows, info


def summarize(points: pd.DataFrame) -> pd.DataFrame:
    out = []
    for (group, fam), g in points.groupby(["group", "family"], sort=False):
        out.append(
            {
                "group": group,
                "family": fam,
                "runs": len(g),
                "median ARE % (bayescale)": 100 * g["are"].median(),
                "median ARE % (per-run power law)": 100 * g["baseline_are"].median(),
                "cover90": g["covered"].mean(),
                "median width %": 100 * ((g["upper"] - g["lower"]) / g["actual"]).median(),
            }
        )
    return pd.DataFrame(out)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--prefix", type=float, default=0.3, help="share of each run's tokens seen")
    p.add_argument("--groups", nargs="+", default=list(GROUPS), choices=list(GROUPS))
    p.add_argument("--chains", type=int, default=4, help="NUTS chains per fit")
    p.add_argument("--quick", action="store_true", help="2 chains x 300+300")
    p.add_argument("--no-write", action="store_true", help="do not touch RESULTS.md")
    args = p.parse_args(argv)
    set_host_device_count()
    if args.quick:
        settings = {"num_chains": 2, "num_warmup": 300, "num_samples": 300}
    else:
        settings = {"num_chains": args.chains, "num_warmup": 500, "num_samples": 500}
    load = os.getloadavg()[0]
    points, fits = [], []
    for name in args.groups:
        rows, info = run_group(name, args.prefix, settings)
        points += rows
        fits.append(info)
    points = pd.DataFrame(points)
    table = summarize(points)
    fit_table = pd.DataFrame(fits)
    text = frame_to_markdown(table, ".3g")
    print(text)
    print(frame_to_markdown(fit_table, ".3g"))
    if args.no_write:
        return
    body = "\n\n".join(
        [
            "## Runs in progress (`benchmarks/in_progress.py`)",
            f"{machine_info()}; load average at start {load:.1f}.",
            f"Each run is cut at {args.prefix:.0%} of its final tokens (runs with fewer than "
            f"{MIN_PREFIX_POINTS} checkpoints left are skipped); one fit per group on the cut "
            f"table (NUTS {settings['num_chains']} chains x {settings['num_warmup']}+"
            f"{settings['num_samples']}, defaults otherwise); each run's final loss is "
            "forecast with `predict(run=...)` (90% interval). Baseline: `E + B / D^beta` "
            "fitted to the run's own prefix, on the checkpoints the fit keeps (past the "
            "warm-up cut). Multi-power tokens assume 2^19 tokens per step "
            "(see `load_multipower`). In `multipower` and `hitchhiker+lr` (GPT-3 and Pythia "
            "with their published schedules) the `lr` column is an input (the law runs on the "
            "LR area with the annealing bonus, `bayescale.schedules`) and the forecast is given "
            "each run's planned schedule.",
            text,
            "Fits:",
            frame_to_markdown(fit_table, ".3g"),
        ]
    )
    write_section(SECTION, body)
    write_json(
        SECTION,
        {
            "prefix": args.prefix,
            "settings": settings,
            "fits": fits,
            "summary": table.to_dict(orient="records"),
            "points": points.to_dict(orient="records"),
        },
    )


if __name__ == "__main__":
    main()
