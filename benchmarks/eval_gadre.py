"""Gadre et al.'s over-training protocol: 5 small runs per corpus → every other run.

Fit on the paper's 5 runs per corpus (4 sizes at M = 20 + 0.011B at M = 320),
predict the C4-eval loss of every other run. bayescale fits the 3 corpora as
families of one hierarchical model (``bayescale-hier``) and each alone
(``bayescale-family``), with ``law="overtrain"`` (alpha = beta, Gadre's form)
and ``"chinchilla"``; the paper's least squares in (C, M) is ``gadre``.
Headline targets: 1.4B at its largest M and 6.9B at M = 20 (paper, RedPajama:
0.71% and 0.73%); grid: mean relative error over the other runs with M >= 10
(paper: 0.88%).

Run: ``uv run python benchmarks/eval_gadre.py [--quick]`` (full: 8 small NUTS fits;
``--quick``: overtrain law, hierarchical fit only, short chains, RESULTS.md
untouched).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _eval  # noqa: E402
from _results import frame_to_markdown, write_section  # noqa: E402

from bayescale import evaluate as ev  # noqa: E402

SECTION = "eval_gadre"


def _point_kind(points: pd.DataFrame) -> pd.DataFrame:
    """One prediction per (method, law, target): the law's median for bayescale."""
    return points[points["kind"].isin(["mean", "point"])]


def headline_table(points: pd.DataFrame) -> pd.DataFrame:
    t = _point_kind(points)
    t = t[t["headline"].astype(bool)].copy()
    t["target"] = t["params"].map(lambda n: "1.4B" if n < 5e9 else "6.9B") + t["M"].map(
        lambda m: f" M={m:g}"
    )
    t["rel err %"] = 100 * t["rel_error"].abs()
    wide = t.pivot_table(index=["family", "target"], columns=["method", "law"], values="rel err %")
    wide.columns = [f"{m} ({law})" for m, law in wide.columns]
    wide = wide.reset_index()
    wide.insert(2, "paper %", [
        ev.PAPER_GADRE[tg.split()[0]] if fam.endswith("RedPajama") else float("nan")
        for fam, tg in zip(wide["family"], wide["target"], strict=True)
    ])  # fmt: skip
    return wide


def grid_table(points: pd.DataFrame) -> pd.DataFrame:
    t = _point_kind(points)
    t = t[t["M"] >= 10]
    s = ev.summarize(t, by=["family", "method", "law"])
    wide = s.pivot_table(index="family", columns=["method", "law"], values="are")
    wide.columns = [f"{m} ({law})" for m, law in wide.columns]
    wide.loc["mean over corpora"] = wide.mean()
    wide = wide.reset_index()
    wide.insert(1, "paper %", [ev.PAPER_GADRE["grid"] if f.endswith("RedPajama") else None
                               for f in wide["family"]])  # fmt: skip
    return wide


def coverage_table(points: pd.DataFrame) -> pd.DataFrame:
    t = points[points["inside90"].notna()]
    if t.empty:
        return pd.DataFrame()
    s = ev.summarize(t, by=["method", "law", "kind"])
    return s[["method", "law", "kind", "n", "cover50", "cover90", "width90"]]


def verdict(head: pd.DataFrame, grid: pd.DataFrame) -> str:
    rpj = head[head["family"].str.endswith("RedPajama")]
    g = grid[grid["family"].str.endswith("RedPajama")]
    parts = []
    for col in [c for c in head.columns if c.startswith("bayescale")]:
        h = rpj[col].to_numpy()
        ok = all(v <= ev.PAPER_GADRE[tg.split()[0]] for v, tg in zip(h, rpj["target"],
                                                                       strict=True))  # fmt: skip
        gm = float(g[col].iloc[0]) if col in g else float("nan")
        parts.append(
            f"{col}: RedPajama headline {', '.join(f'{v:.2f}%' for v in h)}, grid {gm:.2f}%"
            f" -> {'MET' if ok and gm <= ev.PAPER_GADRE['grid'] else 'MISSED'}"
        )
    return "**Target** (RedPajama: 1.4B <= 0.71%, 6.9B <= 0.73%, grid mean <= 0.88%): " + "; ".join(
        parts
    )


def main(argv=None):
    args = _eval.parser(__doc__).parse_args(argv)
    _eval.quiet()
    timer = _eval.Timer()
    settings = ev.FitSettings.quick(args.seed) if args.quick else ev.FitSettings(seed=args.seed)
    points = ev.evaluate_gadre(settings=settings, quick=args.quick, seed=args.seed)
    if args.save:
        points.to_csv(args.save, index=False)
    head = headline_table(points)
    grid = grid_table(points)
    cov = coverage_table(points)
    v = verdict(head, grid)
    for frame in (head, grid, cov):
        print(frame.to_string(index=False, float_format="%.3g"))
    print(v)
    print(_eval.fit_log_line(points))
    if args.quick or args.no_write:
        return
    body = "\n\n".join(
        [
            _eval.header(
                "Gadre et al. over-training protocol (`benchmarks/eval_gadre.py`)",
                timer,
                f"NUTS {settings.num_chains} chains x {settings.num_warmup}+"
                f"{settings.num_samples}; hierarchical: exponents {settings.exponents}; per "
                f"corpus: the corpus's own exponents. Relative error of the C4-eval loss; "
                f"bayescale's point prediction is the posterior median of the law.",
            ),
            "### Headline targets (relative error, %)\n" + frame_to_markdown(head, ".3g"),
            "### Mean relative error over the other runs with M >= 10 (%)\n"
            + frame_to_markdown(grid, ".3g")
            + "\n\n"
            + v,
            "### Interval coverage (all non-fitted runs)\n"
            + (frame_to_markdown(cov, ".3g") if len(cov) else "none"),
            _eval.fit_log_line(points),
        ]
    )
    write_section(SECTION, body)


if __name__ == "__main__":
    main()
