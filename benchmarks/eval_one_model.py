"""One-model transfer: one run of the target family plus every other family → its largest model.

The paper's setting (Hitchhiker's guide, §"one model"): OPT-175B from one of
6.7B / 13B / 30B, Pythia-12B from one of 1.4B / 2.8B / 6.9B, OLMo-7B from 1B.
The target family contributes that one run (checkpoints past 1e10 tokens);
every other family with curves at 2+ sizes contributes everything; the target
is the last 30% of the largest model's training. The paper borrowed the
exponents and A from a reference fit; bayescale pools them hierarchically.

Run: ``uv run python benchmarks/eval_one_model.py [--quick]`` (full: 7 hierarchical
NUTS fits; ``--quick``: OPT from 30B with a small context, RESULTS.md untouched).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _eval  # noqa: E402
from _results import frame_to_markdown, write_section  # noqa: E402

from bayescale import evaluate as ev  # noqa: E402
from bayescale.datasets import load_dataset  # noqa: E402

SECTION = "eval_one_model"


def table(points: pd.DataFrame) -> pd.DataFrame:
    s = ev.summarize(points, by=["family", "fit_params", "kind"])
    rows = []
    for (fam, size), g in s.groupby(["family", "fit_params"], sort=False):
        mean = g[g["kind"] == "mean"].iloc[0]
        new = g[g["kind"] == "new_run"].iloc[0]
        paper = ev._paper_one_model(fam, size)
        rows.append(
            {
                "family": fam,
                "one run": f"{size / 1e9:.3g}B",
                "targets": int(mean["n"]),
                "ARE %": mean["are"],
                "paper ARE %": paper,
                "ratio to paper": mean["are"] / paper if paper == paper else np.nan,
                "bias %": mean["bias"],
                "cover50 mean": mean["cover50"],
                "cover90 mean": mean["cover90"],
                "cover50 new_run": new["cover50"],
                "cover90 new_run": new["cover90"],
                "width90 new_run %": new["width90"],
            }
        )
    return pd.DataFrame(rows)


def verdict(t: pd.DataFrame) -> str:
    parts = []
    for fam in ("OPT", "pythia"):
        g = t[t["family"] == fam].dropna(subset=["paper ARE %"])
        if len(g):
            ok = bool((g["ARE %"] <= g["paper ARE %"] / 2).all())
            parts.append(
                f"{fam}: ARE {', '.join(f'{v:.2g}%' for v in g['ARE %'])} vs paper "
                f"{', '.join(f'{v:.3g}%' for v in g['paper ARE %'])} -> "
                f"{'MET' if ok else 'MISSED'} (at most half the paper's in every case)"
            )
    return "**Target** (ARE at most half the paper's for OPT and Pythia): " + "; ".join(parts)


def main(argv=None):
    args = _eval.parser(__doc__).parse_args(argv)
    _eval.quiet()
    timer = _eval.Timer()
    df = load_dataset("hitchhiker")
    settings = ev.FitSettings.quick(args.seed) if args.quick else ev.FitSettings(seed=args.seed)
    points = ev.evaluate_one_model(df, settings=settings, quick=args.quick, seed=args.seed)
    if args.save:
        points.to_csv(args.save, index=False)
    t = table(points)
    v = verdict(t)
    print(t.to_string(index=False, float_format="%.3g"))
    print(v)
    print(_eval.fit_log_line(points))
    if args.quick or args.no_write:
        return
    context = ev.context_families(df)
    body = "\n\n".join(
        [
            _eval.header(
                "One-model transfer (`benchmarks/eval_one_model.py`)",
                timer,
                f"one hierarchical fit per (family, one run): NUTS {settings.num_chains} chains "
                f"x {settings.num_warmup}+{settings.num_samples}, <= "
                f"{settings.max_points_per_run} log-spaced checkpoints per run, exponents "
                f"{settings.exponents}; context: {len(context)} families with curves at 2+ "
                f"sizes (all their runs), the target family's other runs hidden. ARE from the "
                f"posterior median of the law; coverage of the 50%/90% intervals of the law "
                f"(`mean`) and of one new run (`new_run`).",
            ),
            frame_to_markdown(t, floatfmt=".3g") + "\n\n" + v,
            _eval.fit_log_line(points),
        ]
    )
    write_section(SECTION, body)


if __name__ == "__main__":
    main()
