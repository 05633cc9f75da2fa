"""Large tables: validation, thinning and fit time, peak memory, held-out coverage.

For each table size (10^4, 10^5, 10^6 rows by default) several worlds are
simulated from the model (4 families x 4 sizes x 2 seeds, dense log-spaced
checkpoints). In each world the second seed of every family's largest size is
held out; the rest is validated, thinned and fitted with the default settings,
and the 90% ``new_run`` interval at the held-out run's final checkpoint is
checked against the loss that run measured. Coverage is counted per held-out
run, and should stay near 0.9 whatever the number of rows: the default thinning
and the OU trajectory noise make dense checkpoints count for what they are.

Each table size runs in its own process so that its peak memory (max RSS) is
its own. Writes the section ``scale`` of RESULTS.md and ``results/scale.json``.

Run: ``uv run python benchmarks/scale.py [--rows 1e4 1e5 1e6] [--worlds 10]
[--chains 4]
[--quick] [--no-write]``.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import sys
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import frame_to_markdown, machine_info, write_json, write_section  # noqa: E402

SECTION = "scale"
SIZES = (1e8, 3e8, 1e9, 3e9)
N_FAMILIES = 4
SEEDS = 2
CI = 0.9


def _world(rows: int, seed: int):
    from bayescale.simulate import simulate_frame

    n_runs = N_FAMILIES * len(SIZES) * SEEDS
    frame, _ = simulate_frame(
        n_families=N_FAMILIES,
        sizes=SIZES,
        seeds_per_size=SEEDS,
        n_checkpoints=max(2, round(rows / n_runs)),
        seed=seed,
    )
    held = (frame["params"] == max(SIZES)) & (frame["seed"] == str(SEEDS - 1))
    return frame.loc[~held].reset_index(drop=True), frame.loc[held]


def _one_size(rows: int, worlds: int, settings: dict) -> dict:
    """Every world of one table size, in a fresh process."""
    from bayescale import set_host_device_count

    set_host_device_count(min(os.cpu_count() or 1, settings["num_chains"]))
    from bayescale import fit
    from bayescale.data import ScalingData
    from bayescale.evaluation.metrics import interval_score
    from bayescale.tables import validate_frame

    out = []
    for w in range(worlds):
        train, held = _world(rows, seed=1000 + w)
        t0 = time.perf_counter()
        validate_frame(train)
        t_validate = time.perf_counter() - t0
        t0 = time.perf_counter()
        data = ScalingData.from_frame(train)
        t_thin = time.perf_counter() - t0
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            post = fit(data, progress_bar=False, seed=w, **settings)
        t_fit = time.perf_counter() - t0
        diag = post.diagnostics()
        for fam, run in held.groupby("family"):
            last = run.loc[run["tokens"].idxmax()]
            pred = post.predict(fam, last["params"], last["tokens"], kind="new_run", ci_prob=CI)
            lo, hi = float(pred["lower"].iloc[0]), float(pred["upper"].iloc[0])
            actual = float(last["loss"])
            out.append(
                {
                    "rows": len(train) + len(held),
                    "world": w,
                    "family": fam,
                    "n_obs_fitted": data.n_obs,
                    "validate_s": t_validate,
                    "thin_s": t_thin,
                    "fit_s": t_fit,
                    "actual": actual,
                    "median": float(pred["median"].iloc[0]),
                    "lower": lo,
                    "upper": hi,
                    "covered": bool(lo <= actual <= hi),
                    "rel_width": (hi - lo) / actual,
                    "interval_score": float(interval_score(lo, hi, actual, 1 - CI)),
                    "max_rhat": diag["rhat_max"],
                    "divergences": diag["divergences"],
                }
            )
        print(
            f"rows {rows:.0e} world {w}: fit {t_fit:.0f} s, R-hat {diag['rhat_max']:.3f}, "
            f"{diag['divergences']} divergences",
            flush=True,
        )
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    for r in out:
        r["peak_rss_mb"] = peak_mb
    return {"rows": rows, "points": out}


def _band(n: int, p: float = CI) -> tuple[float, float]:
    """Central 95% range of the coverage of n independent held-out runs."""
    from scipy.stats import binom

    return binom.ppf(0.025, n, p) / n, binom.ppf(0.975, n, p) / n


def summarize(points: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for n_rows, g in points.groupby("rows"):
        per_world = g.groupby("world").first()
        lo, hi = _band(len(g))
        rows.append(
            {
                "rows": int(n_rows),
                "fitted points": int(per_world["n_obs_fitted"].median()),
                "validate s": per_world["validate_s"].median(),
                "thin s": per_world["thin_s"].median(),
                "fit s": per_world["fit_s"].median(),
                "peak RSS MB": g["peak_rss_mb"].max(),
                "held-out runs": len(g),
                "cover90": g["covered"].mean(),
                "95% band": f"{lo:.2f}-{hi:.2f}",
                "inside band": bool(lo <= g["covered"].mean() <= hi),
                "median width %": 100 * g["rel_width"].median(),
                "median ARE %": 100 * ((g["median"] - g["actual"]).abs() / g["actual"]).median(),
                "max R-hat": per_world["max_rhat"].max(),
                "divergences": int(per_world["divergences"].sum()),
            }
        )
    return pd.DataFrame(rows)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=float, nargs="+", default=[1e4, 1e5, 1e6])
    p.add_argument("--worlds", type=int, default=10, help="simulated worlds per table size")
    p.add_argument("--chains", type=int, default=4, help="NUTS chains per fit")
    p.add_argument("--quick", action="store_true", help="2 chains x 300+300, 2 worlds")
    p.add_argument("--no-write", action="store_true", help="do not touch RESULTS.md")
    args = p.parse_args(argv)
    if args.quick:
        settings = {"num_chains": 2, "num_warmup": 300, "num_samples": 300}
        args.worlds = min(args.worlds, 2)
    else:
        settings = {"num_chains": args.chains, "num_warmup": 500, "num_samples": 500}
    load = os.getloadavg()[0]
    ctx = mp.get_context("spawn")  # a fresh process per size: its own JAX and its own peak
    results = []
    for rows in sorted(int(r) for r in args.rows):
        with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
            results.append(pool.submit(_one_size, rows, args.worlds, settings).result())
    points = pd.DataFrame([pt for r in results for pt in r["points"]])
    table = summarize(points)
    text = frame_to_markdown(table, ".3g")
    print(text)
    if args.no_write:
        return
    body = "\n\n".join(
        [
            "## Large tables (`benchmarks/scale.py`)",
            f"{machine_info()}; load average at start {load:.1f}.",
            f"Simulated worlds ({N_FAMILIES} families x {len(SIZES)} sizes x {SEEDS} seeds, "
            f"dense log-spaced checkpoints), {args.worlds} worlds per table size; the second "
            "seed of each family's largest size is held out (one held-out run per family and "
            f"world). Fits: NUTS {settings['num_chains']} chains x {settings['num_warmup']}+"
            f"{settings['num_samples']}, default warm-up cut and thinning. 'cover90': share of "
            "held-out runs whose measured final loss lies inside the 90% `new_run` interval; "
            "'95% band': where that share falls 95% of the time if the intervals are exact "
            "(binomial). Timings are medians per world; peak RSS is the whole process.",
            text,
        ]
    )
    write_section(SECTION, body)
    write_json(
        SECTION,
        {
            "settings": settings,
            "worlds": args.worlds,
            "summary": table.to_dict(orient="records"),
            "points": points.to_dict(orient="records"),
        },
    )


if __name__ == "__main__":
    main()
