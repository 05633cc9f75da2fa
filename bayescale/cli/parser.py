"""The ``bayescale`` argument parser: standard library only, so ``--help`` answers at once.

One grammar everywhere: a target is ``FAMILY:N:D`` (``--target gpt3:175B:300B``),
counts take suffixes (``7B``, ``1.4T``), intervals are ``--ci-prob``, and every
flag shows its default.
"""

from __future__ import annotations

import argparse

from bayescale._version import __version__
from bayescale.options import (
    DEFAULT_CI_PROB,
    EXPONENT_FORMS,
    KINDS,
    LAWS,
    METHODS,
    STARTS,
    Target,
    check_ci_prob,
    parse_count,
)

PROTOCOLS = ("hitchhiker", "one-model", "gadre", "chinchilla")


def _count(text: str) -> float:
    try:
        return parse_count(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _ci_prob(text: str) -> float:
    try:
        return check_ci_prob(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _target(text: str) -> Target:
    try:
        return Target.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _names(text: str) -> list[str]:
    items = [x.strip() for x in str(text).split(",") if x.strip()]
    if not items:
        raise argparse.ArgumentTypeError("give one or more comma-separated names")
    return items


class _Formatter(argparse.ArgumentDefaultsHelpFormatter):
    """Defaults shown on every flag (``%(default)s``), except flags with none."""


def _sampler_options(p, *, target_accept: float = 0.9):
    g = p.add_argument_group("sampler")
    g.add_argument(
        "--method",
        default="nuts",
        choices=METHODS,
        help="nuts: full posterior; map: point estimate (no parameter uncertainty)",
    )
    g.add_argument("--chains", type=int, default=4, help="NUTS chains (run in parallel)")
    g.add_argument("--warmup", type=int, default=500, help="NUTS warm-up steps per chain")
    g.add_argument("--samples", type=int, default=500, help="NUTS draws kept per chain")
    g.add_argument(
        "--extend",
        type=int,
        default=2,
        help="rounds of --samples more draws per chain, each taken while R-hat lies between "
        "1.01 and 1.05 (0: never)",
    )
    g.add_argument(
        "--target-accept",
        type=float,
        default=target_accept,
        help="NUTS target acceptance; raise it when a fit reports divergences",
    )
    g.add_argument(
        "--retry",
        type=int,
        default=1,
        help="fresh warm-ups while the draws have divergent transitions, at a higher target "
        "acceptance (0.95, then 0.99) or at 0.99 with twice --warmup (0: never)",
    )
    g.add_argument(
        "--start",
        default="map",
        choices=STARTS,
        help="where chains start: map: around the MAP; prior: each from its own prior draw, "
        "to look for separate modes (on fits of many families a chain can stall)",
    )
    g.add_argument("--seed", type=int, default=0, help="seed of everything random")


def _output(p, what: str):
    p.add_argument("--out", required=True, metavar=what, help="file to write")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bayescale",
        description="Hierarchical Bayesian scaling laws for language models. Exit codes: 0 ok, "
        "1 failed, 2 bad input, 130 interrupted.",
        formatter_class=_Formatter,
    )
    parser.add_argument("--version", action="version", version=f"bayescale {__version__}")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(name, help_):
        return sub.add_parser(name, help=help_, description=help_, formatter_class=_Formatter)

    p = add("datasets", "list the bundled real datasets")
    p.add_argument("--json", action="store_true", help="print JSON")

    p = add("fit", "fit the hierarchical law to a loss table and save it (netCDF)")
    p.add_argument("data", metavar="DATA", help="CSV/Parquet path or bundled dataset name")
    _output(p, "FIT.nc")
    p.add_argument("--families", type=_names, help="comma-separated families to fit (default: all)")
    p.add_argument(
        "--group-by",
        metavar="COLUMN",
        help="this column of the table becomes the families' group (e.g. metric of the "
        "hitchhiker table): a group shifts the pooled means, so a family borrows first from "
        "its own group (default: the table's group column, if any)",
    )
    p.add_argument(
        "--law",
        default="chinchilla",
        choices=LAWS,
        help="chinchilla: E + A/N^a + B/D^b; overtrain: the same with a = b",
    )
    p.add_argument(
        "--exponents",
        default="pooled",
        choices=EXPONENT_FORMS,
        help="pooled: each family its own exponents around shared ones; shared: one pair",
    )
    p.add_argument(
        "--discrepancy",
        action="store_true",
        help="model how each family's sizes depart from its law apart from the seed "
        "scatter (predictions far from the fitted sizes get wider intervals)",
    )
    p.add_argument(
        "--seed-centring",
        type=float,
        default=0.0,
        metavar="W",
        help="sampling coordinates of the seed effects, 0 (non-centred) to 1 (centred): "
        "the same model, other geometry for the sampler (docs/model-notes.md: what 0.5 changed)",
    )
    p.add_argument(
        "--exponent-centring",
        type=float,
        default=None,
        metavar="W",
        help="sampling coordinates of every family's pooled exponents, 0 (non-centred) to "
        "1 (centred); default: centred where a family's data pin them",
    )
    p.add_argument(
        "--min-tokens",
        type=_count,
        default=1e10,
        help="warm-up cut: drop intermediate checkpoints below this many tokens",
    )
    p.add_argument(
        "--warmup-fraction",
        type=float,
        default=0.1,
        help="but at most this fraction of a run's final tokens (0: the absolute cut alone)",
    )
    p.add_argument(
        "--max-points", type=int, default=50, help="log-spaced checkpoints kept per run (0 = all)"
    )
    _sampler_options(p)
    p.add_argument("--json", action="store_true", help="print a JSON summary")

    p = add("predict", "predict the loss of a model from a saved fit")
    p.add_argument("fit", metavar="FIT.nc")
    p.add_argument(
        "--target",
        type=_target,
        action="append",
        metavar="FAMILY:N:D",
        help="model to predict, e.g. OPT:175B:300B (repeatable)",
    )
    p.add_argument(
        "--run",
        metavar="NAME",
        help="a fitted run still in progress: forecast it at the --tokens given "
        "(default: its planned_tokens, where it will end)",
    )
    p.add_argument(
        "--tokens",
        type=_names,
        metavar="D[,D...]",
        help="with --run: later token counts to forecast at, e.g. 200B,300B",
    )
    p.add_argument(
        "--schedule",
        metavar="FILE.csv",
        help="fits with learning-rate schedules: the predicted run's schedule, columns "
        "tokens,lr (default: a constant rate; with --run, the run's own)",
    )
    p.add_argument(
        "--kind",
        default="new_run",
        choices=KINDS,
        help="new_run: one new training run; mean: the family's law",
    )
    p.add_argument("--ci-prob", type=_ci_prob, default=DEFAULT_CI_PROB, help="interval probability")
    p.add_argument(
        "--downstream",
        action="store_true",
        help="also predict downstream top-1 error, chaining the loss posterior",
    )
    p.add_argument(
        "--tasks",
        type=_names,
        default=["avg17"],
        help="downstream tasks: avg17, avg46, all or task names, comma-separated",
    )
    p.add_argument(
        "--downstream-fit",
        metavar="DOWN.nc",
        help="saved downstream fit (default: fit one on the bundled Gadre data)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the predictive draws")
    p.add_argument("--json", action="store_true", help="print JSON")

    p = add("fit-downstream", "fit the per-task loss-to-error law and save it (netCDF)")
    p.add_argument(
        "data",
        metavar="DATA",
        help="run x task table (CSV/Parquet) or gadre_downstream (its error-law runs)",
    )
    _output(p, "DOWN.nc")
    p.add_argument("--tasks", type=_names, help="avg17, avg46 or task names (default: all)")
    p.add_argument(
        "--all-runs", action="store_true", help="use every run, not only the paper's error-law runs"
    )
    _sampler_options(p, target_accept=0.95)
    p.add_argument("--json", action="store_true", help="print a JSON summary")

    p = add("plan", "rank next experiments (more seeds or a larger model) by what they teach")
    p.add_argument("fit", metavar="FIT.nc")
    p.add_argument(
        "--target",
        required=True,
        type=_target,
        metavar="FAMILY:N:D",
        help="the prediction to sharpen, e.g. OPT:175B:300B",
    )
    p.add_argument("--budget", required=True, type=_count, help="training FLOPs, e.g. 1e21")
    p.add_argument("--kind", default="mean", choices=KINDS, help="sharpen the law or one new run")
    p.add_argument(
        "--method",
        default="auto",
        choices=("auto", "importance", "laplace"),
        help="auto: reweight draws, refit where that fails",
    )
    p.add_argument(
        "--rank-by",
        default="reduction",
        choices=("reduction", "per_flop"),
        help="largest sd reduction within the budget, or reduction per FLOP",
    )
    p.add_argument(
        "--schedule",
        metavar="FILE.csv",
        help="fits with learning-rate schedules: the schedule new runs and the target train "
        "with, columns fraction (of the run's tokens) and lr (default: a constant rate)",
    )
    p.add_argument("--outcomes", type=int, default=64, help="simulated outcomes per candidate")
    p.add_argument("--ci-prob", type=_ci_prob, default=DEFAULT_CI_PROB, help="interval probability")
    p.add_argument("--top", type=int, default=None, help="print only the best TOP rows")
    p.add_argument("--plot", metavar="FILE.png", help="also draw expected sd against cost")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --plot file")
    p.add_argument("--seed", type=int, default=0, help="seed of the simulated outcomes")
    p.add_argument("--json", action="store_true", help="print JSON")

    p = add("demo", "hide the largest model of five real families and predict it")
    p.add_argument("--quick", action="store_true", help="fewer draws (about a minute)")
    p.add_argument("--seed", type=int, default=0, help="seed of the fit")
    p.add_argument("--json", action="store_true", help="print JSON")

    p = add("evaluate", "run a published evaluation protocol on the bundled data")
    p.add_argument("--protocol", required=True, choices=PROTOCOLS, help="which protocol")
    p.add_argument("--quick", action="store_true", help="reduced protocol, short chains")
    p.add_argument("--warmup", type=int, help="NUTS warm-up steps (default: the protocol's)")
    p.add_argument("--samples", type=int, help="NUTS draws per chain (default: the protocol's)")
    p.add_argument("--target-accept", type=float, help="NUTS target acceptance")
    p.add_argument("--seed", type=int, default=0, help="seed of the fits")
    p.add_argument("--json", action="store_true", help="print one JSON object per target row")

    p = add("report", "write a self-contained HTML (and Markdown) report of a fit")
    p.add_argument("fit", metavar="FIT.nc", help="fit file written by `bayescale fit`")
    _output(p, "REPORT.html")
    p.add_argument(
        "--markdown",
        metavar="REPORT.md",
        help="also write a Markdown report (PNGs in a folder beside it)",
    )
    p.add_argument(
        "--target",
        type=_target,
        action="append",
        default=[],
        metavar="FAMILY:N:D",
        help="model to predict, e.g. gpt3:175B:300B (repeatable; FAMILY:N:D:LOSS "
        "adds the measured loss)",
    )
    p.add_argument(
        "--heldout",
        metavar="TABLE",
        help="tidy CSV/Parquet of held-out checkpoints to draw and compare",
    )
    p.add_argument(
        "--downstream",
        metavar="DOWN.nc",
        help="downstream fit file: adds the predicted task error at each target",
    )
    p.add_argument("--tasks", default="avg17", help="downstream tasks: avg17, avg46, all or a task")
    p.add_argument("--title", help="report title")
    p.add_argument("--ci-prob", type=_ci_prob, default=DEFAULT_CI_PROB, help="interval probability")
    p.add_argument("--no-diagnostic-plots", action="store_true", help="skip the trace figure")
    p.add_argument("--seed", type=int, default=0, help="seed of the predictive draws")
    return parser
