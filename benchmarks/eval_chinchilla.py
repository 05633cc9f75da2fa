"""Chinchilla reference: bayescale's posterior beside Epoch's re-fit of Hoffmann's data.

The ``chinchilla`` family of the Hitchhiker collection holds the 245 digitised
final losses (one run per size and budget). bayescale fits it alone, on all 245
points and on the 240 left after dropping the five highest losses (the largest
models at the smallest budgets; dropping them reproduces Epoch's point fit, see
``benchmarks/baselines_real.py``), and its posterior of E, A, B, alpha, beta is
set beside Epoch's estimate (E 1.82 [1.77, 1.87], alpha 0.348 [0.317, 0.373],
beta 0.366 [0.331, 0.415], 95%). Held-out check: the points at budgets of
1e21 FLOPs and above predicted from the others.

Run: ``uv run python benchmarks/eval_chinchilla.py [--quick]``.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _eval  # noqa: E402
from _results import frame_to_markdown, write_section  # noqa: E402

from bayescale import evaluate as ev  # noqa: E402

SECTION = "eval_chinchilla"


def coef_table(points):
    c = points[points["row_type"] == "coef"]
    cols = ["quantity", "method", "subset", "actual", "ref_lower95", "ref_upper95", "median",
            "lower95", "upper95", "lower", "upper", "inside90"]  # fmt: skip
    out = c[cols].rename(
        columns={
            "quantity": "coef",
            "actual": "Epoch",
            "ref_lower95": "Epoch lo95",
            "ref_upper95": "Epoch hi95",
            "lower": "lo90",
            "upper": "hi90",
            "lower95": "lo95",
            "upper95": "hi95",
            "inside90": "Epoch inside our 90%",
        }  # fmt: skip
    )
    return out.reset_index(drop=True)


def heldout_table(points):
    t = points[points["row_type"] == "target"]
    return ev.summarize(t, by=["method", "kind"])[
        ["method", "kind", "n", "are", "bias", "cover50", "cover90", "width90"]
    ]


def overlap_line(coefs) -> str:
    """Do our 95% intervals overlap Epoch's?"""
    parts = []
    for subset in coefs["subset"].unique():
        g = coefs[(coefs["subset"] == subset) & (coefs["method"] == "bayescale-family")]
        g = g.dropna(subset=["Epoch lo95"])
        words = []
        for _, r in g.iterrows():
            overlap = r["lo95"] <= r["Epoch hi95"] and r["Epoch lo95"] <= r["hi95"]
            words.append(f"{r['coef']} {'overlaps' if overlap else 'DISJOINT'}")
        parts.append(f"{subset}: our 95% interval vs Epoch's: " + ", ".join(words))
    return "; ".join(parts) + "."


def main(argv=None):
    args = _eval.parser(__doc__).parse_args(argv)
    _eval.quiet()
    timer = _eval.Timer()
    settings = ev.FitSettings.quick(args.seed) if args.quick else ev.FitSettings(seed=args.seed)
    points = ev.evaluate_chinchilla(settings=settings, quick=args.quick, seed=args.seed)
    if args.save:
        points.to_csv(args.save, index=False)
    coefs = coef_table(points)
    held = heldout_table(points)
    overlap = overlap_line(coefs)
    print(coefs.to_string(index=False, float_format="%.4g"))
    print(overlap)
    print(held.to_string(index=False, float_format="%.3g"))
    print(_eval.fit_log_line(points))
    if args.quick or args.no_write:
        return
    body = "\n\n".join(
        [
            _eval.header(
                "Chinchilla reference (`benchmarks/eval_chinchilla.py`)",
                timer,
                f"family `chinchilla` alone (its own exponents), NUTS {settings.num_chains} "
                f"chains x {settings.num_warmup}+{settings.num_samples}; Hoffmann baseline: "
                f"published 4500-start grid. Coefficients on the raw scale (E in nats).",
            ),
            "### Coefficients\n" + frame_to_markdown(coefs, ".4g") + "\n\n" + overlap,
            f"### Held out: budgets >= {ev.CHINCHILLA_HOLDOUT_FLOPS:.0e} FLOPs (ARE, %)\n"
            + frame_to_markdown(held, ".3g"),
            _eval.fit_log_line(points),
        ]
    )
    write_section(SECTION, body)


if __name__ == "__main__":
    main()
