"""Speed: a full hierarchical NUTS fit, and the vmapped Hoffmann grid against a SciPy loop.

(a) ``bayescale.fit`` with its default settings (4 chains x 500 + 500 draws) on
    every bundled demo family (``bayescale.demo.demo_frame()``): wall time
    (compilation and the MAP initialisation included) and bulk ESS per second
    of the shared exponents alpha and beta.
(b) The Hoffmann baseline over the whole Hitchhiker grid (every family with
    curves at 3+ sizes, every (n_models, q) cell, loss in nats, the 243-start
    grid of ``bayescale.evaluate``): one vmapped JAX pass
    (``fit_hoffmann_many``, cells grouped by length) against the same fits one
    after another with SciPy's L-BFGS-B (``fit_hoffmann_scipy``). The SciPy loop
    over the whole grid would take hours, so it runs on a seeded random subset
    of cells and its total is extrapolated in proportion to the points fitted.

Run: ``uv run python benchmarks/speed.py [--quick] [--scipy-cells K]``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _eval  # noqa: E402
from _results import frame_to_markdown, write_section  # noqa: E402

from bayescale import baselines as bl  # noqa: E402
from bayescale import evaluate as ev  # noqa: E402
from bayescale.datasets import load_dataset  # noqa: E402
from bayescale.demo import SETTINGS, demo_frame  # noqa: E402
from bayescale.fit import fit  # noqa: E402

SECTION = "speed"


def full_fit(quick: bool, seed: int) -> tuple[pd.DataFrame, str]:
    from arviz_stats import ess

    frame = demo_frame()
    kwargs = dict(SETTINGS["quick"]) if quick else {}
    start = time.perf_counter()
    post = fit(frame, seed=seed, progress_bar=False, **kwargs)
    seconds = time.perf_counter() - start
    diag = post.diagnostics()
    posterior = post.tree["posterior"].to_dataset()[["alpha", "beta"]]
    bulk = ess(posterior, method="bulk")
    tail = ess(posterior, method="tail")
    rows = []
    for name in ("alpha", "beta"):
        b = float(bulk[name].values)
        rows.append(
            {
                "parameter": name,
                "bulk ESS": b,
                "tail ESS": float(tail[name].values),
                "bulk ESS / s": b / seconds,
            }
        )
    cfg = post.config
    note = (
        f"{post.data.n_families} families, {post.data.n_runs} runs, {post.data.n_obs} "
        f"checkpoints; {cfg.num_chains} chains x {cfg.num_warmup}+{cfg.num_samples}, "
        f"exponents {cfg.exponents}, <= {cfg.max_points_per_run} checkpoints per run. Wall "
        f"time {seconds:.0f} s ({seconds / 60:.1f} min; target < 3 min: "
        f"{'MET' if seconds < 180 else 'MISSED'}). Diagnostics: {diag['status']}, max R-hat "
        f"{diag['rhat_max']:.3f}, {diag['divergences']} divergences, min bulk ESS "
        f"{diag['ess_bulk_min']:.0f}."
    )
    return pd.DataFrame(rows), note


def grid_tasks(quick: bool):
    df = load_dataset("hitchhiker")
    families = ["OPT", "t5-pile"] if quick else ev.hitchhiker_families(df)
    tasks, labels = [], []
    for fam in families:
        frame = df[df["family"] == fam]
        for k, q in ev.hitchhiker_cells(frame):
            train, target = ev.hitchhiker_split(frame, n_models=k, q=q)
            if ev._valid_cell(train) and len(target):
                tasks.append((train["params"].to_numpy(), train["tokens"].to_numpy(),
                              train["loss"].to_numpy()))  # fmt: skip
                labels.append(f"{fam} k={k} q={q}")
    return tasks, labels


def hoffmann_speed(quick: bool, n_scipy: int, seed: int):
    tasks, labels = grid_tasks(quick)
    grid = bl.hoffmann_grid(**ev.HOFFMANN_EVAL_GRID)
    start = time.perf_counter()
    jax_fits = ev._hoffmann_batches(tasks, grid)
    t_first = time.perf_counter() - start
    start = time.perf_counter()
    jax_fits = ev._hoffmann_batches(tasks, grid)
    t_jax = time.perf_counter() - start
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(len(tasks), size=min(n_scipy, len(tasks)), replace=False))
    start = time.perf_counter()
    sp = [bl.fit_hoffmann_scipy(*tasks[i], grid=grid) for i in pick]
    t_sub = time.perf_counter() - start
    points = np.array([len(t[0]) for t in tasks], dtype=float)
    t_sp = t_sub * points.sum() / points[pick].sum()
    pairs = zip(pick, sp, strict=True)
    gaps = np.array([(jax_fits[i].loss - s.loss) / abs(s.loss) for i, s in pairs])
    rows = [
        {"implementation": "JAX vmapped, first call (compile + run)", "cells": len(tasks),
         "seconds": t_first},
        {"implementation": "JAX vmapped, second call", "cells": len(tasks), "seconds": t_jax},
        {"implementation": f"SciPy loop, {len(pick)} random cells (measured)",
         "cells": len(pick), "seconds": t_sub},
        {"implementation": "SciPy loop, whole grid (extrapolated by points)",
         "cells": len(tasks), "seconds": t_sp},
    ]  # fmt: skip
    note = (
        f"{len(tasks)} grid cells ({int(points.sum())} points in all, {grid.shape[0]} starts "
        f"each). SciPy on {len(pick)} cells drawn at random (seed {seed}; "
        f"{int(points[pick].sum())} points), extrapolated in proportion to points. Speed-up "
        f"of the vmapped fit: {t_sp / t_first:.1f}x including compilation, {t_sp / t_jax:.1f}x "
        f"compiled (target >= 10x: {'MET' if t_sp / t_first >= 10 else 'MISSED'}). Same "
        f"optimum: the JAX objective is at most {gaps.max():+.1e} (relative) above SciPy's "
        f"on the measured cells (median {np.median(gaps):+.1e}; negative = JAX lower)."
    )
    return pd.DataFrame(rows), note


def main(argv=None):
    p = _eval.parser(__doc__)
    p.add_argument("--scipy-cells", type=int, default=30, help="random grid cells for SciPy")
    p.add_argument("--skip-fit", action="store_true", help="only the Hoffmann grid")
    args = p.parse_args(argv)
    _eval.quiet()
    timer = _eval.Timer()
    parts = []
    if not args.skip_fit:
        ess_table, fit_note = full_fit(args.quick, args.seed)
        print(ess_table.to_string(index=False, float_format="%.3g"))
        print(fit_note)
        parts.append(
            "### (a) Full hierarchical NUTS fit, bundled demo families, default settings\n"
            + frame_to_markdown(ess_table, ".3g")
            + "\n\n"
            + fit_note
        )
    n_scipy = 4 if args.quick else args.scipy_cells
    hof_table, hof_note = hoffmann_speed(args.quick, n_scipy, args.seed)
    print(hof_table.to_string(index=False, float_format="%.3g"))
    print(hof_note)
    parts.append(
        "### (b) Hoffmann baseline over the Hitchhiker grid: vmapped JAX vs SciPy loop\n"
        + frame_to_markdown(hof_table, ".3g")
        + "\n\n"
        + hof_note
    )
    if args.quick or args.no_write:
        return
    body = "\n\n".join(
        [_eval.header("Speed (`benchmarks/speed.py`)", timer, "see each part."), *parts]
    )
    write_section(SECTION, body)


if __name__ == "__main__":
    main()
