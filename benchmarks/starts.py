"""Chains started around the MAP or from prior draws: do they find the same posterior?

Every chain of a default fit starts near one MAP optimum, so R-hat compares
chains that began in one basin: a second mode that the MAP search never
reaches stays invisible. ``start="prior"`` starts each chain from its own
prior draw instead. This script fits the same data both ways and reports, per
fit, R-hat, divergences, each chain's mean log density and the widest spread
of one family's exponent across the chains' medians.

Fits: GPT-3 and Pythia as in ``finals_vs_curves.py`` (all checkpoints without
the schedule, with it, finals only) and the demo's fit.

Run: ``uv run python benchmarks/starts.py [--quick] [--no-write]``; writes the
section ``starts`` of RESULTS.md and its JSON.
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
from finals_vs_curves import FAMILIES, variants  # noqa: E402

from bayescale import fit, load_dataset, set_host_device_count  # noqa: E402
from bayescale.demo import SETTINGS as DEMO_SETTINGS  # noqa: E402
from bayescale.demo import demo_frame, split_largest  # noqa: E402

SECTION = "starts"


def chain_spread(post) -> dict:
    """Per-chain view of a fit: mean log density, and the exponent that differs most."""
    tree = post.tree
    lp = np.asarray(tree.sample_stats["lp"]).mean(axis=1)
    worst = {"spread": -1.0}
    for site in ("alpha_f", "beta_f"):
        da = tree.posterior[site]
        fams = [str(f) for f in np.asarray(da.coords[da.dims[-1]])]
        med = np.median(np.asarray(da), axis=1)  # (chain, family)
        for j, fam in enumerate(fams):
            spread = float(np.ptp(med[:, j]))
            if spread > worst["spread"]:
                worst = {"spread": spread, "site": f"{site}[{fam}]", "chains": med[:, j]}
    return {
        "lp_gap": float(lp.max() - lp.min()),
        "lp_by_chain": " / ".join(f"{v:.0f}" for v in lp),
        "widest": worst["site"],
        "medians_by_chain": " / ".join(f"{v:.2f}" for v in worst["chains"]),
        "spread": worst["spread"],
    }


def fits(quick: bool):
    """(label, table, settings) of every fit to compare."""
    base = (
        {"num_chains": 4, "num_warmup": 300, "num_samples": 300}
        if quick
        else {"num_chains": 4, "num_warmup": 500, "num_samples": 500}
    )
    for family, lr_fn in FAMILIES.items():
        df = load_dataset("hitchhiker", families=family)
        for name, table in variants(df, lr_fn).items():
            yield f"{family} {name}", table, base
    if not quick:
        train, _ = split_largest(demo_frame())
        yield "demo", train, dict(DEMO_SETTINGS["default"])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="4 chains x 300+300, no demo fit")
    p.add_argument("--prior-seeds", type=int, default=2, help="seeds of the prior-start fits")
    p.add_argument("--no-write", action="store_true", help="do not touch RESULTS.md")
    args = p.parse_args(argv)
    set_host_device_count()
    load = os.getloadavg()[0]
    rows = []
    for label, table, settings in fits(args.quick):
        runs = [("map", 0)] + [("prior", s) for s in range(args.prior_seeds)]
        for start, seed in runs:
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                post = fit(table, progress_bar=False, start=start, seed=seed, **settings)
            diag = post.diagnostics()
            rows.append(
                {
                    "fit": label,
                    "start": start,
                    "seed": seed,
                    "fit s": time.perf_counter() - t0,
                    "R-hat": diag["rhat_max"],
                    "divergences": diag["divergences"],
                    **chain_spread(post),
                }
            )
            print(rows[-1], flush=True)
    table = pd.DataFrame(rows)
    text = frame_to_markdown(table, ".3g")
    print(text)
    if args.no_write:
        return
    body = "\n\n".join(
        [
            "## Where chains start (`benchmarks/starts.py`)",
            f"{machine_info()}; load average at start {load:.1f}.",
            'Each fit twice over: chains started around the MAP (`start="map"`, the '
            'default) and each chain from its own prior draw (`start="prior"`, '
            f"{args.prior_seeds} seeds). GPT-3 and Pythia as in `finals_vs_curves`, 4 chains x "
            f"{'300+300' if args.quick else '500+500'}; the demo's fit with its own settings. "
            "`lp_by_chain`: each chain's mean log density; `widest`: the family exponent whose "
            "per-chain medians differ most, and those medians.",
            text,
        ]
    )
    write_section(SECTION, body)
    write_json(SECTION, {"quick": args.quick, "rows": table.to_dict(orient="records")})


if __name__ == "__main__":
    main()
