"""Simulation-based calibration of the model with its default inference.

Draws every parameter from the prior, simulates a small data set (2 families
x 3 sizes x 2 seeds x 8 checkpoints), fits it with the default inference
(`bayescale.fitting.sample_inputs`: MAP, chain starts, NUTS 4 x 500+500) and
ranks the truth among 99 thinned draws, for alpha, beta, the seed scale,
log E, a, b and the noise scale of family 0, and the OU length. Prints and
writes, per parameter, 50%/90% coverage with its binomial band and a
chi-square uniformity p-value of the ranks, plus divergences and R-hat of
every fit and the fits with a frozen chain. Writes the section ``sbc`` of
RESULTS.md, ``results/sbc.json`` and the rank histograms
``results/sbc_ranks.png``.

Replicates are saved as they finish (``results/sbc_replicates.csv``), and
``--resume`` continues from them, so a long run can be split.

``--exponent-centring W`` fits every replicate with
``FitConfig(exponent_centring=W)`` (the pooled exponents partly centred,
:func:`bayescale.centring.partly_centred`) and writes the section
``sbc_exponent_centring``: the same prior, other sampling coordinates.

``--discrepancy`` calibrates the model with the size-level discrepancy
(``FitConfig(discrepancy=True)``), ranking its scale ``sigma_delta`` too; it
writes the section ``sbc_discrepancy`` and files named after it.

Run: ``uv run python benchmarks/sbc.py [--n 200] [--resume] [--no-write] [--discrepancy]``.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import frame_to_markdown, machine_info, write_json, write_section  # noqa: E402

from bayescale import enable_compile_cache, set_host_device_count  # noqa: E402
from bayescale.fitfile import atomic_write  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def _save(records: pd.DataFrame, path: Path) -> None:
    atomic_write(path, lambda tmp: records.to_csv(tmp, index=False), overwrite=True)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=200, help="replicates in total")
    p.add_argument("--resume", action="store_true", help="continue from the saved replicates")
    p.add_argument(
        "--overwrite", action="store_true", help="start over, discarding the saved replicates"
    )
    p.add_argument("--no-write", action="store_true", help="do not touch RESULTS.md")
    p.add_argument(
        "--discrepancy", action="store_true", help="the model with the size-level discrepancy"
    )
    p.add_argument(
        "--exponent-centring",
        type=float,
        help="fit with FitConfig(exponent_centring=W) (section sbc_exponent_centring)",
    )
    args = p.parse_args(argv)
    section = "sbc_discrepancy" if args.discrepancy else "sbc"
    if args.exponent_centring is not None:
        section += "_exponent_centring"
    partial = RESULTS / f"{section}_replicates.csv"
    if partial.exists() and not (args.resume or args.overwrite):
        p.error(
            f"{partial} holds {len(pd.read_csv(partial))} saved replicates: pass --resume to "
            "continue them or --overwrite to start over"
        )
    set_host_device_count(4)
    # every replicate clears JAX's in-memory caches (memory), so the many small set-up
    # ops are reloaded from disk instead of recompiled: about a third of a replicate
    enable_compile_cache()
    from bayescale.evaluation.sbc import (
        Design,
        coverage_band,
        design_inputs,
        replicates,
        summarize,
    )
    from bayescale.fitting import FitConfig

    config = FitConfig(discrepancy=args.discrepancy, exponent_centring=args.exponent_centring)
    inputs = design_inputs(Design())
    done = pd.read_csv(partial) if args.resume and partial.exists() else pd.DataFrame()
    rows = done.to_dict(orient="records")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for rec in replicates(range(len(rows), args.n), inputs, config):
            rows.append(rec)
            _save(pd.DataFrame(rows), partial)
            print(
                f"replicate {rec['replicate']}: {rec['seconds']:.0f} s, "
                f"{rec['divergences']} divergences, R-hat {rec['rhat_max']:.3f}",
                flush=True,
            )
    records = pd.DataFrame(rows)
    table = summarize(records)
    n = len(records)
    lo90, hi90 = coverage_band(n, 0.9)
    lo50, hi50 = coverage_band(n, 0.5)
    fits = {
        "replicates": n,
        "fits_with_divergences": int((records["divergences"] > 0).sum()),
        "median_divergences": float(records["divergences"].median()),
        "fits_rhat_above_1.01": int((records["rhat_max"] > 1.01).sum()),
        "median_seconds_per_fit": float(records["seconds"].median()),
    }
    if "target_accept" in records:  # replicates saved before the retry have none
        fits["fits_warmed_up_again"] = int((records["target_accept"] > config.target_accept).sum())
    # replicates saved before the frozen-chain check have no such column
    if "stuck_chains" in records:
        checked = records["stuck_chains"].dropna()
        fits["fits_checked_for_stuck_chains"] = int(checked.size)
        fits["fits_with_stuck_chains"] = int((checked > 0).sum())
    text = frame_to_markdown(table, ".3g")
    print(text)
    print(fits)
    if args.no_write:
        return
    w = args.exponent_centring
    flags = " --discrepancy" if args.discrepancy else ""
    flags += f" --exponent-centring {w:g}" if w is not None else ""
    partly = (
        f", every family's pooled exponents partly centred (weight {w:g})" if w is not None else ""
    )
    body = "\n\n".join(
        [
            f"## Simulation-based calibration (`benchmarks/sbc.py{flags}`)",
            f"{machine_info()}. {n} data sets drawn from the prior"
            + (" of the model with the size-level discrepancy" if args.discrepancy else "")
            + " (2 families x 3 sizes x "
            "2 seeds x 8 checkpoints, loss constants fixed at 1), each fitted with the default "
            f"inference (NUTS 4 x 500+500){partly}. Coverage of the 50% and 90% equal-tailed "
            "intervals; "
            f"with exact intervals it falls in {lo50:.2f}-{hi50:.2f} (50%) and {lo90:.2f}-"
            f"{hi90:.2f} (90%) 95% of the time. 'uniformity_p': chi-square test over 10 bins "
            "of the truth's rank among 99 thinned draws.",
            text,
            ", ".join(f"{k}: {v:.4g}" for k, v in fits.items()),
        ]
    )
    from bayescale.plots import plot_sbc_ranks

    figure = RESULTS / f"{section}_ranks.png"
    fig = plot_sbc_ranks(records)
    atomic_write(figure, lambda path: fig.savefig(path, format="png", dpi=110), overwrite=True)
    body += f"\n\nRank histograms: `results/{figure.name}`."
    write_section(section, body)
    write_json(
        section,
        {**fits, "summary": table.to_dict(orient="records"), "band90": [lo90, hi90]},
    )


if __name__ == "__main__":
    main()
