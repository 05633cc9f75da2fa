"""Compute-optimal allocation from whole curves, from curves with their schedule, from finals.

GPT-3 and Pythia trained one long cosine run per size: their intermediate
checkpoints are not the final losses of shorter runs (the rate has not decayed
yet). Three fits per family:

* ``curves``: every checkpoint, no schedule (the model as without an ``lr`` column);
* ``curves+lr``: every checkpoint with the published schedule as an ``lr``
  column (``bayescale.schedules``: the law on the LR area, annealing bonus);
* ``finals``: each run's final loss only.

Schedules from the papers: GPT-3 (Brown et al. 2020) warms up over 375M
tokens, then decays by cosine to 10% of the peak over 260B tokens and stays
there; Pythia (Biderman et al. 2023) warms up over 1% of its 143,000 steps and
decays by cosine to 10% of the peak at the end. Both families trained every
size on about 300B tokens, so final losses alone cannot tell the token
exponent from the prior: their answer is mostly the prior's.

Run: ``uv run python benchmarks/finals_vs_curves.py [--quick] [--no-write]``;
writes the section ``finals_vs_curves`` of RESULTS.md and its JSON.
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
from _published_schedules import gpt3_lr, pythia_lr  # noqa: E402
from _results import frame_to_markdown, machine_info, write_json, write_section  # noqa: E402

from bayescale import fit, load_dataset, set_host_device_count  # noqa: E402

SECTION = "finals_vs_curves"
FLOPS = (1e22, 1e24)


FAMILIES = {"gpt3": gpt3_lr, "pythia-deduped": pythia_lr}


def variants(df: pd.DataFrame, lr_fn):
    finals = df.loc[df.groupby("run")["tokens"].idxmax()]
    return {
        "curves": df,
        "curves+lr": df.assign(lr=lr_fn(df["tokens"].to_numpy())),
        "finals": finals,
    }


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
    rows = []
    for family, lr_fn in FAMILIES.items():
        df = load_dataset("hitchhiker", families=family)
        for name, table in variants(df, lr_fn).items():
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                post = fit(table, progress_bar=False, **settings)
            wall = time.perf_counter() - t0
            diag = post.diagnostics()
            opt = post.compute_optimal(list(FLOPS), family=family)
            beta = post.draws("beta_f")[:, 0]
            alpha = post.draws("alpha_f")[:, 0]
            for _, o in opt.iterrows():
                rows.append(
                    {
                        "family": family,
                        "fit": name,
                        "flops": o["flops"],
                        "tokens/param": o["tokens_per_param"],
                        "tokens/param 5%": o["tokens_per_param_lower"],
                        "tokens/param 95%": o["tokens_per_param_upper"],
                        "alpha": float(np.median(alpha)),
                        "beta": float(np.median(beta)),
                        "fit s": wall,
                        "R-hat": diag["rhat_max"],
                        "divergences": diag["divergences"],
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
            "## Compute-optimal from curves, curves with schedule, and finals "
            "(`benchmarks/finals_vs_curves.py`)",
            f"{machine_info()}; load average at start {load:.1f}.",
            "Tokens per parameter at the compute-optimal allocation (median and 90% interval) "
            "and the family's exponents, from three fits per family: all checkpoints without "
            "the schedule, all checkpoints with the published LR schedule as `lr`, and final "
            f"losses only. NUTS {settings['num_chains']} chains x {settings['num_warmup']}+"
            f"{settings['num_samples']}. Every size of both families trained on about 300B "
            "tokens, so the finals cannot pin the token exponent (prior-driven).",
            text,
        ]
    )
    write_section(SECTION, body)
    write_json(SECTION, {"settings": settings, "rows": table.to_dict(orient="records")})


if __name__ == "__main__":
    main()
