"""The papers' evaluation protocols: bayescale beside the published estimators.

One protocol per call (``hitchhiker``, ``one-model``, ``gadre``,
``chinchilla``; see :mod:`bayescale.evaluation`). Prints the headline table,
the coverage per checkpoint and per held-out run, the interval score and the
CRPS, and the R-hat / ESS / divergences of every bayescale fit; writes the
section ``eval_<protocol>`` of RESULTS.md and ``results/eval_<protocol>.json``.

Run: ``uv run python benchmarks/protocols.py PROTOCOL [--quick] [--no-write]
[--hier-folds K] [--group-by COLUMN]``
(``--quick`` never writes).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import frame_to_markdown, machine_info, write_json, write_section  # noqa: E402

from bayescale import evaluation as ev  # noqa: E402
from bayescale import set_host_device_count  # noqa: E402
from bayescale.evaluation import reference as ref  # noqa: E402
from bayescale.fitfile import atomic_write  # noqa: E402

PAPER = {
    "hitchhiker": "Choshen et al. (2025), ARE of their fit at the headline cell: "
    + ", ".join(f"{k} {v}%" for k, v in ref.PAPER_HITCHHIKER.items()),
    "one-model": "Choshen et al. (2025), one-model ARE: "
    + ", ".join(f"{f} from {n / 1e9:.3g}B {v}%" for (f, n), v in ref.PAPER_ONE_MODEL.items()),
    "gadre": "Gadre et al. (2024), RedPajama ARE: "
    + ", ".join(f"{k} {v}%" for k, v in ref.PAPER_GADRE.items()),
    "chinchilla": "Besiroglu et al. (2024) re-fit of Hoffmann et al.: "
    + ", ".join(f"{k} {v[0]:.4g}" for k, v in ref.EPOCH.items()),
}


def method_summary(points: pd.DataFrame) -> pd.DataFrame:
    """Per method and quantity: ARE per family (over its headline targets), then its
    median and macro-average over families; bayescale's ``mean`` kind, the point fits'."""
    t = ev.headline_targets(points)
    t = t[t["kind"].isin(["mean", "point"])]
    if t.empty:
        return pd.DataFrame()
    fam = ev.summarize(t, by=["method", "quantity", "family"])
    out = fam.groupby(["method", "quantity"], sort=True)["are"].agg(["size", "median", "mean"])
    return out.rename(
        columns={"size": "families", "median": "median_are", "mean": "macro_are"}
    ).reset_index()


def fit_line(fits: pd.DataFrame) -> str:
    """One line on every bayescale fit: count, time, worst diagnostics."""
    if fits.empty:
        return "No bayescale fits."
    nuts = fits[fits["method"] != "map"]
    line = (
        f"{len(fits)} bayescale fits ({len(nuts)} NUTS, {len(fits) - len(nuts)} MAP), "
        f"{fits['seconds'].sum() / 60:.1f} min in total"
    )
    if len(nuts):
        rhat = pd.to_numeric(nuts["rhat_max"], errors="coerce")
        ess = pd.to_numeric(nuts["ess_bulk_min"], errors="coerce")
        div = pd.to_numeric(nuts["divergences"], errors="coerce").fillna(0)
        line += (
            f"; NUTS: median {nuts['seconds'].median():.0f} s per fit, R-hat max "
            f"{rhat.max():.3f} (median {rhat.median():.3f}; {int((rhat > 1.01).sum())} of "
            f"{len(nuts)} fits above 1.01), min bulk ESS {ess.min():.0f}, "
            f"{int(div.sum())} divergences in {int((div > 0).sum())} fits"
        )
        if "draws" in nuts:
            # fits whose R-hat lay in (1.01, 1.05] drew on past num_samples
            more = pd.to_numeric(nuts["draws"], errors="coerce") > nuts["num_samples"]
            line += f", {int(more.sum())} of {len(nuts)} drew on past num_samples"
        if "warmed_up_again" in nuts:
            again = nuts["warmed_up_again"].fillna(False).astype(bool)
            line += f", {int(again.sum())} kept a second warm-up after divergences"
        if "chain_apart" in nuts:
            apart = nuts["chain_apart"].fillna("").astype(str) != ""
            line += f", {int(apart.sum())} with one chain apart"
    return line + "."


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("protocol", choices=ev.PROTOCOLS)
    p.add_argument("--quick", action="store_true", help="reduced protocol; never writes")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-write", action="store_true", help="do not touch RESULTS.md / results/")
    p.add_argument(
        "--save",
        type=Path,
        help="write every prediction row to this CSV (default results/last_PROTOCOL.csv, "
        "unless --quick or --no-write)",
    )
    p.add_argument(
        "--hier-folds",
        type=int,
        help="hitchhiker: split the target families into this many folds for the "
        "hierarchical fits (default: one fit per target family, about 24 NUTS fits of "
        "26 families; 2 folds is v0.1's protocol and takes a fraction of the time)",
    )
    p.add_argument(
        "--family-fits",
        action="store_true",
        help="hitchhiker: only bayescale's one-family fits at the headline cell (the "
        "protocol's slowest part is everything else); written to its own section, "
        "eval_hitchhiker_family_fits",
    )
    p.add_argument(
        "--group-by",
        help="one-model: this column of the data becomes the families' group (e.g. "
        "metric: the loss and the text it is measured on); written to its own section, "
        "eval_one_model_by_COLUMN",
    )
    p.add_argument(
        "--discrepancy",
        action="store_true",
        help="fit with the size-level discrepancy (FitConfig(discrepancy=True)); written "
        "to its own section, eval_PROTOCOL_discrepancy",
    )
    p.add_argument(
        "--seed-centring",
        type=float,
        help="fit with FitConfig(seed_centring=W): the seed effects' sampling coordinates "
        "(0 non-centred, 1 centred); written to its own section, eval_PROTOCOL_seed_centring",
    )
    p.add_argument(
        "--exponent-centring",
        type=float,
        help="fit with FitConfig(exponent_centring=W): every family's pooled exponents "
        "partly centred with weight W; written to its own section, "
        "eval_PROTOCOL_exponent_centring",
    )
    args = p.parse_args(argv)
    extra = {}
    # FitConfig changes: each one named in the section and its flags
    changes = {"discrepancy": True} if args.discrepancy else {}
    for name in ("seed_centring", "exponent_centring"):
        if getattr(args, name) is not None:
            changes[name] = getattr(args, name)
    if changes:
        extra["settings"] = replace(ev.default_settings(args.protocol, args.quick), **changes)
    if args.hier_folds is not None:
        if args.protocol != "hitchhiker":
            p.error("--hier-folds applies to the hitchhiker protocol only")
        extra["hier_folds"] = args.hier_folds
    if args.family_fits:
        if args.protocol != "hitchhiker":
            p.error("--family-fits applies to the hitchhiker protocol only")
        extra.update(methods=("bayescale-family",), bayes_grid="headline", quantities=("loss",))
    if args.group_by is not None:
        if args.protocol != "one-model":
            p.error("--group-by applies to the one-model protocol only")
        extra["group_by"] = args.group_by
    set_host_device_count()  # as the CLI does: chains in parallel
    # one line per fit on stderr: the longest protocol takes hours
    logging.basicConfig(format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("bayescale.evaluation").setLevel(logging.INFO)
    warnings.filterwarnings("ignore", message=".*sampling problems.*")
    np.seterr(all="ignore")
    load = os.getloadavg()[0]
    start = time.perf_counter()
    result = ev.evaluate(args.protocol, quick=args.quick, seed=args.seed, **extra)
    wall = time.perf_counter() - start
    # what sets this run's section (and saved rows) apart from the protocol's own
    variant = "".join(f"_{k}" for k in changes) + ("_family_fits" if args.family_fits else "")
    # every row on disk before anything is formatted: a protocol takes up to an hour
    saved = args.save
    if saved is None and not (args.quick or args.no_write):
        saved = Path(__file__).resolve().parent / "results" / f"last_{args.protocol}{variant}.csv"
    if saved is not None:
        atomic_write(saved, lambda path: result.points.to_csv(path, index=False), overwrite=True)
    head = ev.headline_summary(result.points, fallback=True)
    cal = ev.calibration(result.points)
    line = fit_line(result.fits)
    print(ev.format_summary(result))
    print(line)
    print(f"wall time {wall / 60:.1f} min")
    if args.quick or args.no_write:
        return
    name = f"eval_{args.protocol.replace('-', '_')}"
    if args.group_by:
        name += f"_by_{args.group_by}"
    name += variant
    flags = "".join(f" --{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k in extra)
    for k, v in changes.items():
        flags += f" --{k.replace('_', '-')}" + ("" if v is True else f" {v:g}")
    flags += " --family-fits" if args.family_fits else ""
    grouped = f"families grouped by `{args.group_by}`" if args.group_by else "no family groups"
    body = "\n\n".join(
        [
            f"## Protocol `{args.protocol}` (`benchmarks/protocols.py {args.protocol}{flags}`)",
            f"{machine_info()}; load average at start {load:.1f}; wall time "
            f"{wall / 60:.1f} min; seed {args.seed}"
            + (f"; hierarchical fits in {args.hier_folds} folds" if args.hier_folds else "")
            + f"; {grouped}.",
            "Headline targets (ARE, bias, width and interval score in % of the actual value; CRPS "
            "of the log loss x 100, which is about % for small errors; `run_cover*` counts each "
            "held-out run once, at its last checkpoint):",
            frame_to_markdown(head, floatfmt=".3g"),
            "ARE over families (headline cells, %):",
            frame_to_markdown(method_summary(result.points), floatfmt=".3g"),
            "Coverage over every target with an interval:",
            frame_to_markdown(cal, floatfmt=".3g"),
            f"Published: {PAPER[args.protocol]}.",
            "Fits: " + line,
        ]
    )
    write_section(name, body)
    coef = result.points[result.points["row_type"] == "coef"]
    write_json(
        name,
        {
            "protocol": args.protocol,
            "seed": args.seed,
            "seed_centring": 0.0 if args.seed_centring is None else args.seed_centring,
            "exponent_centring": args.exponent_centring,
            "wall_seconds": wall,
            "headline": head,
            "methods": method_summary(result.points),
            "calibration": cal,
            "coefficients": coef.dropna(axis=1, how="all"),
            "fits": result.fits,
        },
    )


if __name__ == "__main__":
    main()
