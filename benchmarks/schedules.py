"""Learning-rate schedules on the multi-power curves (25M and 100M, nine schedules).

Two protocols, one fit each (NUTS, the law on the LR area with the annealing
bonus of ``bayescale.schedules``):

* ``schedules``: fit ``cosine_24000``, ``constant_24000`` and ``wsdcon_9`` of
  both sizes; predict the other six schedules' full curves (every logged step)
  as new runs given their schedule. Mean relative error per curve, and the
  90% interval's coverage of each curve's final loss. The source's own fit
  (per size) reports a mean relative error of 0.11% (25M) and 0.14% (100M).
* ``schedules_per_size``: the same with each size its own family, so that
  the token term is not shared across the two sizes.
* ``size``: fit every 25M curve and the 100M curves up to 30% of their steps
  (runs in progress); forecast each 100M run's final loss with
  ``predict(run=..., schedule=...)``.

Tokens assume 2^19 tokens per step (``load_multipower``). Run:
``uv run python benchmarks/schedules.py [--quick] [--no-write]``; writes the
section ``schedules`` of RESULTS.md and ``results/schedules.json``.
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import frame_to_markdown, machine_info, write_json, write_section  # noqa: E402

from bayescale import fit, load_dataset, set_host_device_count  # noqa: E402

SECTION = "schedules"
TRAIN = ("cosine_24000", "constant_24000", "wsdcon_9")
CI = 0.9
PREFIX = 0.3


def _fit(table, settings):
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        post = fit(table, progress_bar=False, **settings)
    diag = post.diagnostics()
    info = {
        "fit_s": time.perf_counter() - t0,
        "rhat_max": diag["rhat_max"],
        "divergences": diag["divergences"],
        "fitted_points": post.data.n_obs,
    }
    return post, info


def schedules_protocol(df, settings, per_size: bool = False):
    name = "schedules_per_size" if per_size else "schedules"
    if per_size:
        # each size its own family, as the source fits each size on its own
        df = df.assign(family="multipower-" + df["size_label"].astype(str))
    post, info = _fit(df[df["schedule"].isin(TRAIN)], settings)
    rows = []
    for run, g in df[~df["schedule"].isin(TRAIN)].groupby("run", sort=False):
        g = g.sort_values("tokens")
        pred = post.predict(
            str(g["family"].iloc[0]),
            float(g["params"].iloc[0]),
            g["tokens"].to_numpy(),
            kind="new_run",
            ci_prob=CI,
            schedule=g[["tokens", "lr"]],
        )
        actual = g["loss"].to_numpy()
        rel = np.abs(pred["median"].to_numpy() - actual) / actual
        lo, hi = float(pred["lower"].iloc[-1]), float(pred["upper"].iloc[-1])
        rows.append(
            {
                "protocol": name,
                "size": g["size_label"].iloc[0],
                "run": run,
                "mean_rel_err": float(rel.mean()),
                "max_rel_err": float(rel.max()),
                "end_actual": float(actual[-1]),
                "end_median": float(pred["median"].iloc[-1]),
                "end_lower": lo,
                "end_upper": hi,
                "end_covered": bool(lo <= actual[-1] <= hi),
            }
        )
    return rows, {"protocol": name, **info}


def size_protocol(df, settings):
    big = df["size_label"] == "100m"
    end = df.groupby("run")["tokens"].transform("max")
    seen = df[~big | (df["tokens"] <= PREFIX * end)].copy()
    seen.loc[big, "is_final"] = False
    post, info = _fit(seen, settings)
    rows = []
    for run, g in df[big].groupby("run", sort=False):
        g = g.sort_values("tokens")
        last = g.iloc[-1]
        pred = post.predict(
            run=run, tokens=float(last["tokens"]), ci_prob=CI, schedule=g[["tokens", "lr"]]
        )
        lo, hi = float(pred["lower"].iloc[0]), float(pred["upper"].iloc[0])
        med = float(pred["median"].iloc[0])
        rows.append(
            {
                "protocol": "size",
                "size": "100m",
                "run": run,
                "mean_rel_err": abs(med - last["loss"]) / last["loss"],
                "max_rel_err": abs(med - last["loss"]) / last["loss"],
                "end_actual": float(last["loss"]),
                "end_median": med,
                "end_lower": lo,
                "end_upper": hi,
                "end_covered": bool(lo <= last["loss"] <= hi),
            }
        )
    return rows, {"protocol": "size", **info}


def summarize(points: pd.DataFrame) -> pd.DataFrame:
    out = []
    for (protocol, size), g in points.groupby(["protocol", "size"], sort=False):
        out.append(
            {
                "protocol": protocol,
                "size": size,
                "curves": len(g),
                "mean rel. err %": 100 * g["mean_rel_err"].mean(),
                "worst curve %": 100 * g["mean_rel_err"].max(),
                "end cover90": g["end_covered"].mean(),
                "median end width %": 100
                * ((g["end_upper"] - g["end_lower"]) / g["end_actual"]).median(),
            }
        )
    return pd.DataFrame(out)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
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
    df = load_dataset("multipower")
    points, fits = [], []
    protocols = (
        schedules_protocol,
        lambda d, s: schedules_protocol(d, s, per_size=True),
        size_protocol,
    )
    for protocol in protocols:
        rows, info = protocol(df, settings)
        points += rows
        fits.append(info)
        print(info, flush=True)
    points = pd.DataFrame(points)
    table = summarize(points)
    text = frame_to_markdown(table, ".3g")
    print(text)
    print(frame_to_markdown(points, ".4g"))
    if args.no_write:
        return
    body = "\n\n".join(
        [
            "## Learning-rate schedules (`benchmarks/schedules.py`)",
            f"{machine_info()}; load average at start {load:.1f}.",
            "Multi-power curves (Luo et al. 2025; 2^19 tokens per step assumed). `schedules`: "
            f"one fit on {', '.join(TRAIN)} of both sizes; the other six schedules' full curves "
            "predicted as new runs given their schedule (mean relative error over every logged "
            "step; the source's own per-size fit: 0.11% / 0.14%). `schedules_per_size`: the "
            "same, with each size its own family (so the token term is not shared across "
            "sizes, as in the source's per-size fits). `size`: one fit on every 25M "
            f"curve and the 100M curves up to {PREFIX:.0%} of their steps; each 100M run's final "
            "loss forecast with `predict(run=..., schedule=...)`. Coverage: 90% intervals, one "
            f"target per curve. NUTS {settings['num_chains']} chains x {settings['num_warmup']}+"
            f"{settings['num_samples']}.",
            text,
            "Per curve:",
            frame_to_markdown(points, ".4g"),
            "Fits:",
            frame_to_markdown(pd.DataFrame(fits), ".3g"),
        ]
    )
    write_section(SECTION, body)
    write_json(
        SECTION,
        {
            "settings": settings,
            "fits": fits,
            "summary": table.to_dict(orient="records"),
            "points": points.to_dict(orient="records"),
        },
    )


if __name__ == "__main__":
    main()
