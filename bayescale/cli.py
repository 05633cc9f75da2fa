"""Command line: ``bayescale datasets|fit|predict|fit-downstream|demo|report|...``.

Exit codes: 0 ok, 1 the command failed, 2 bad input (unreadable or invalid
data, unknown family, bad option). Query commands take ``--json`` and then
print machine-readable output on stdout only; human notes and warnings go to
stderr so pipes stay clean.

Each command is a fresh process, and NumPyro's set-up runs hundreds of small
JAX operations eagerly, each compiled on first use (about 20 s per process).
The command therefore keeps compiled programs in a persistent cache,
``~/.cache/bayescale/xla`` (``$BAYESCALE_XLA_CACHE`` moves it, ``off``
disables it; an explicit ``$JAX_COMPILATION_CACHE_DIR`` wins).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import warnings
from pathlib import Path

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2
_SUFFIX = {"k": 1e3, "m": 1e6, "b": 1e9, "g": 1e9, "t": 1e12}


class BadInput(Exception):
    """Raised for user errors that should exit with code 2."""


def parse_count(text: str) -> float:
    """Parse a raw count such as ``7e9``, ``6.9B``, ``300B`` or ``1.4T``."""
    s = str(text).strip().replace("_", "").replace(",", "")
    mult = 1.0
    if s and s[-1].lower() in _SUFFIX:
        mult = _SUFFIX[s[-1].lower()]
        s = s[:-1]
    try:
        value = float(s) * mult
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a number (use raw counts like 7e9, or suffixes K/M/B/T: 6.9B)"
        ) from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive finite number")
    return value


def _prob(text: str) -> float:
    p = float(text)
    if not 0 < p < 1:
        raise argparse.ArgumentTypeError(f"--prob must be in (0, 1), got {text}")
    return p


def _emit_json(obj) -> None:
    def default(o):
        if hasattr(o, "item"):
            return o.item()
        if hasattr(o, "tolist"):
            return o.tolist()
        return str(o)

    json.dump(obj, sys.stdout, indent=2, default=default, allow_nan=False)
    sys.stdout.write("\n")


def _records(df) -> list:
    """DataFrame → list of JSON-safe dicts (NaN → None)."""
    out = []
    for rec in df.to_dict(orient="records"):
        clean = {}
        for k, v in rec.items():
            if hasattr(v, "item"):
                v = v.item()
            if isinstance(v, float) and not math.isfinite(v):
                v = None
            clean[str(k)] = v
        out.append(clean)
    return out


def _note(msg: str) -> None:
    print(msg, file=sys.stderr)


def _show_warning(message, category, filename, lineno, file=None, line=None):
    name = getattr(category, "__name__", "Warning")
    print(f"WARNING ({name}): {message}", file=sys.stderr)


def read_table(source: str, families=None):
    """Read DATA: a CSV/Parquet path, or the name of a bundled dataset."""
    import pandas as pd

    from bayescale.datasets import DatasetNameError, list_datasets, load_dataset

    path = Path(source)
    if path.exists():
        suffixes = "".join(path.suffixes).lower()
        try:
            if ".parquet" in suffixes or suffixes.endswith(".pq"):
                df = pd.read_parquet(path)
            else:
                df = pd.read_csv(path)
        except Exception as exc:  # noqa: BLE001 - any reader failure is bad input
            raise BadInput(f"cannot read {source}: {exc}") from None
        return df
    names = list(list_datasets()["name"])
    if source in names:
        try:
            return load_dataset(source, families=families)
        except DatasetNameError as exc:
            raise BadInput(str(exc.args[0] if exc.args else exc)) from None
    raise BadInput(f"{source!r} is neither a file nor a bundled dataset; bundled datasets: {names}")


# -- commands ------------------------------------------------------------------------
def cmd_datasets(args) -> int:
    from bayescale.datasets import list_datasets

    table = list_datasets()
    if args.json:
        _emit_json(_records(table))
        return EXIT_OK
    print(table.drop(columns=["citation"], errors="ignore").to_string(index=False))
    print("\nLoad one with bayescale.load_dataset(name); see its docstring for units and pitfalls.")
    return EXIT_OK


def cmd_fit(args) -> int:
    from bayescale.data import DataError, ScalingData
    from bayescale.fit import fit

    out = Path(args.out)
    if out.exists() and not args.overwrite:
        raise BadInput(f"{out} exists; pass --overwrite to replace it")
    if not out.parent.exists():
        raise BadInput(f"directory {out.parent} does not exist")
    df = read_table(args.data, families=args.families)
    try:
        data = ScalingData.from_frame(
            df,
            families=args.families,
            min_tokens=args.min_tokens,
            max_points_per_run=args.max_points or None,
        )
    except DataError as exc:
        raise BadInput(str(exc)) from None
    _note(_data_note(data))
    post = fit(
        data,
        law=args.law,
        exponents=args.exponents,
        min_tokens=args.min_tokens,
        **_sampler_kwargs(args),
    )
    info = {"families": list(data.families), "runs": data.n_runs, "checkpoints": data.n_obs}
    return _save_and_report(
        post, out, args, info, lambda p: p.summary(var_names=["alpha", "beta", "sigma_seed"])
    )


def _sampler_kwargs(args) -> dict:
    return {
        "method": args.method,
        "seed": args.seed,
        "num_chains": args.chains,
        "num_warmup": args.warmup,
        "num_samples": args.samples,
        "progress_bar": None if not args.json else False,
    }


def _save_and_report(post, out, args, info: dict, summary=None) -> int:
    """Write the fit, then print its diagnostics (and a summary table) or JSON."""
    post.save(out)
    diag = post.diagnostics()
    if args.json:
        _emit_json({"out": str(out), **info, "diagnostics": _json_diag(diag)})
    else:
        print(f"wrote {out}")
        print(_diag_line(diag))
        if summary is not None:
            print(summary(post).to_string())
    return EXIT_OK


def _data_note(data) -> str:
    rep = data.report
    return (
        f"data: {data.n_families} families, {data.n_runs} runs, {data.n_obs} checkpoints kept "
        f"of {int(rep['rows_in'].sum())} ({int(rep['cut_warmup'].sum())} cut by the warm-up "
        f"cut, {int(rep['thinned'].sum())} thinned)"
    )


def _json_diag(diag: dict) -> dict:
    keep = ("status", "rhat_max", "ess_bulk_min", "ess_tail_min", "divergences", "problems")
    out = {k: diag.get(k) for k in keep}
    # a point estimate has no R-hat or ESS: null, since JSON has no NaN
    return {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in out.items()}


def _diag_line(diag: dict) -> str:
    if diag.get("method") != "nuts":
        return "diagnostics: n/a (point estimate)"
    status = diag["status"].upper()
    line = (
        f"diagnostics: {status}  max R-hat {diag['rhat_max']:.3f}, min bulk ESS "
        f"{diag['ess_bulk_min']:.0f}, divergences {diag['divergences']}"
    )
    if diag["problems"]:
        line += "\n  " + "\n  ".join(diag["problems"])
    return line


def _load_fit(path: str):
    from bayescale.fit import load
    from bayescale.posterior_base import FitFileError

    if not Path(path).exists():
        raise BadInput(f"fit file {path} does not exist (create one with `bayescale fit`)")
    try:
        return load(path)
    except FitFileError as exc:
        raise BadInput(str(exc)) from None


def cmd_predict(args) -> int:
    post = _load_fit(args.fit)
    if args.family not in post.families:
        _note(
            f"note: family {args.family!r} is not in the fit {list(post.families)}; "
            "predicting from the population distribution"
        )
    table = post.predict(
        args.family, args.params, args.tokens, kind=args.kind, prob=args.prob, seed=args.seed
    )
    diag = post.diagnostics()
    if diag.get("problems"):
        _note("WARNING: the fit has sampling problems: " + "; ".join(diag["problems"]))
    down = None
    if args.downstream or args.downstream_fit:
        down = _downstream_table(post, args)
    if args.json:
        # without --downstream the output is unchanged: the list of loss rows
        loss_rows = _records(table)
        _emit_json(loss_rows if down is None else {"loss": loss_rows, "downstream": _records(down)})
    else:
        print(table.to_string(index=False))
        if down is not None:
            print(f"\ndownstream top-1 error ({args.kind}, {args.prob:.0%} interval):")
            print(down.drop(columns=["family", "params", "tokens", "prob"]).to_string(index=False))
    return EXIT_OK


def _task_list(text: str):
    items = [t.strip() for t in str(text).split(",") if t.strip()]
    if not items:
        raise argparse.ArgumentTypeError("--tasks needs avg17, avg46 or task names")
    return items


def _fit_downstream_frame(df, tasks=None):
    """The paper's error-law runs of the bundled Gadre table, or any run x task table."""
    if "default_fit_err" in df.columns:
        df = df[df["default_fit_err"].astype(bool)]
    return df if tasks is None else df[df["task"].isin(tasks)]


def _downstream_table(post, args):
    from bayescale.downstream import (
        GADRE_TASKS_17,
        TASK_SETS,
        fit_downstream,
        load_downstream,
        predict_downstream,
    )
    from bayescale.posterior_base import FitFileError

    if args.downstream_fit:
        if not Path(args.downstream_fit).exists():
            raise BadInput(f"downstream fit {args.downstream_fit} does not exist")
        try:
            down = load_downstream(args.downstream_fit)
        except FitFileError as exc:
            raise BadInput(str(exc)) from None
    else:
        names = set()
        for t in args.tasks:
            names |= set(TASK_SETS.get(t, (t,)))
        tasks = GADRE_TASKS_17 if names <= set(GADRE_TASKS_17) else None
        _note(
            "fitting the downstream model on the bundled Gadre et al. error-law set (C4-eval "
            f"loss; {'17' if tasks else '46'} tasks, 6 runs per corpus) with quick settings "
            "(4 chains x 300 draws, a few minutes). Save a full fit with `bayescale "
            "fit-downstream gadre_downstream --out DOWN.nc` and pass --downstream-fit DOWN.nc. "
            "The law only applies to losses on the eval set it was fitted on (C4 eval here)."
        )
        frame = _fit_downstream_frame(read_table("gadre_downstream"), tasks)
        down = fit_downstream(frame, num_warmup=300, num_samples=300, seed=args.seed)
    return predict_downstream(
        post,
        down,
        family=args.family,
        params=args.params,
        tokens=args.tokens,
        tasks=args.tasks,
        kind=args.kind,
        prob=args.prob,
        seed=args.seed,
    )


def cmd_fit_downstream(args) -> int:
    from bayescale.data import DataError
    from bayescale.downstream import GADRE_TASKS_17, TASK_SETS, DownstreamData, fit_downstream

    out = Path(args.out)
    if out.exists() and not args.overwrite:
        raise BadInput(f"{out} exists; pass --overwrite to replace it")
    if not out.parent.exists():
        raise BadInput(f"directory {out.parent} does not exist")
    tasks = None
    if args.tasks:
        tasks = [n for t in args.tasks for n in TASK_SETS.get(t, (t,))]
    df = read_table(args.data)
    frame = df if args.all_runs else _fit_downstream_frame(df)
    try:
        data = DownstreamData.from_frame(frame, tasks=tasks)
    except DataError as exc:
        raise BadInput(str(exc)) from None
    _note(
        f"data: {len(data.families)} families, {len(data.runs)} runs, {len(data.tasks)} tasks "
        f"({'all 17 of avg17' if set(GADRE_TASKS_17) <= set(data.tasks) else 'no full avg17'})"
    )
    post = fit_downstream(data, **_sampler_kwargs(args))
    info = {"families": list(data.families), "runs": len(data.runs), "tasks": list(data.tasks)}
    return _save_and_report(post, out, args, info)


def cmd_plan(args) -> int:
    from bayescale.design import format_plan, plan, recommendation

    post = _load_fit(args.fit)
    if args.family not in post.families:
        raise BadInput(
            f"family {args.family!r} is not in the fit {list(post.families)}; "
            "plan experiments for a fitted family"
        )
    table = plan(
        post,
        dict(family=args.family, params=args.target_params, tokens=args.target_tokens),
        args.budget,
        kind=args.kind,
        method=args.method,
        n_outcomes=args.outcomes,
        rank_by=args.rank_by,
        prob=args.prob,
        seed=args.seed,
    )
    diag = post.diagnostics()
    if diag.get("problems"):
        _note("WARNING: the fit has sampling problems: " + "; ".join(diag["problems"]))
    line = recommendation(table)
    if args.plot:
        from bayescale.plots import plot_plan

        plot_plan(table).savefig(args.plot, dpi=120, facecolor="white")
        _note(f"wrote {args.plot}")
    if args.json:
        attrs = table.attrs
        _emit_json(
            {
                "target": attrs["target"],
                "budget_flops": attrs["budget_flops"],
                "rank_by": attrs["rank_by"],
                "recommendation": line,
                "recommended": _records(table[table["recommended"]]),
                "dropped_over_budget": attrs["dropped"],
                "notes": attrs["notes"],
                "candidates": _records(table),
            }
        )
    else:
        print(format_plan(table, max_rows=args.top))
        print(f"\nrecommendation: {line}")
    return EXIT_OK


def cmd_demo(args) -> int:
    from bayescale.demo import format_table, run_demo

    result = run_demo(
        quick=args.quick, seed=args.seed, progress_bar=None if not args.json else False
    )
    if args.json:
        _emit_json(_records(result.table[list(result.JSON_KEYS)]))
        return EXIT_OK
    print(format_table(result))
    return EXIT_OK


def cmd_evaluate(args) -> int:
    from bayescale.evaluate import evaluate, format_summary

    points = evaluate(args.protocol, quick=args.quick, seed=args.seed)
    if args.json:
        _emit_json(_records(points))
        return EXIT_OK
    print(format_summary(points))
    return EXIT_OK


# -- parser --------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    from bayescale import __version__

    parser = argparse.ArgumentParser(
        prog="bayescale",
        description="Hierarchical Bayesian scaling laws for language models.",
    )
    parser.add_argument("--version", action="version", version=f"bayescale {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("datasets", help="list the bundled real datasets")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_datasets)

    p = sub.add_parser("fit", help="fit the hierarchical law and save it (netCDF)")
    p.add_argument("data", metavar="DATA", help="CSV/Parquet path or bundled dataset name")
    p.add_argument("--out", required=True, metavar="FIT.nc", help="output file")
    p.add_argument("--law", default="chinchilla", choices=("chinchilla", "overtrain"))
    p.add_argument("--exponents", default="pooled", choices=("pooled", "shared"))
    p.add_argument("--method", default="nuts", choices=("nuts", "map"))
    p.add_argument(
        "--families", type=lambda s: [x for x in s.split(",") if x], help="comma-separated list"
    )
    p.add_argument("--min-tokens", type=parse_count, default=1e10, help="warm-up cut (1e10)")
    p.add_argument(
        "--max-points", type=int, default=50, help="log-spaced checkpoints kept per run (0 = all)"
    )
    p.add_argument("--chains", type=int, default=4)
    p.add_argument("--warmup", type=int, default=500)
    p.add_argument("--samples", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    p.set_defaults(func=cmd_fit)

    p = sub.add_parser("predict", help="predict the loss of a model from a saved fit")
    p.add_argument("fit", metavar="FIT.nc")
    p.add_argument("--family", required=True)
    p.add_argument("--params", required=True, type=parse_count, help="N, e.g. 7e9 or 7B")
    p.add_argument("--tokens", required=True, type=parse_count, help="D, e.g. 1.4e12 or 1.4T")
    p.add_argument("--kind", default="mean", choices=("mean", "new_run"))
    p.add_argument("--prob", default=0.9, type=_prob)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument(
        "--downstream",
        action="store_true",
        help="also predict downstream top-1 error, chaining the loss posterior",
    )
    p.add_argument(
        "--tasks",
        type=_task_list,
        default=["avg17"],
        help="avg17 (default), avg46, all or task names, comma-separated",
    )
    p.add_argument(
        "--downstream-fit",
        metavar="DOWN.nc",
        help="saved downstream fit (default: fit one on the bundled Gadre data, quick settings)",
    )
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser(
        "fit-downstream", help="fit the per-task loss-to-error law and save it (netCDF)"
    )
    p.add_argument(
        "data",
        metavar="DATA",
        help="run x task table (CSV/Parquet) or gadre_downstream (its error-law runs)",
    )
    p.add_argument("--out", required=True, metavar="DOWN.nc", help="output file")
    p.add_argument("--tasks", type=_task_list, help="avg17, avg46 or task names (default: all)")
    p.add_argument(
        "--all-runs", action="store_true", help="use every run, not only default_fit_err ones"
    )
    p.add_argument("--method", default="nuts", choices=("nuts", "map"))
    p.add_argument("--chains", type=int, default=4)
    p.add_argument("--warmup", type=int, default=500)
    p.add_argument("--samples", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    p.set_defaults(func=cmd_fit_downstream)

    p = sub.add_parser(
        "plan", help="rank next experiments (more seeds or a larger model) by what they teach"
    )
    p.add_argument("fit", metavar="FIT.nc")
    p.add_argument("--family", required=True, help="family of the target model")
    p.add_argument("--target-params", required=True, type=parse_count, help="target N, e.g. 7B")
    p.add_argument("--target-tokens", required=True, type=parse_count, help="target D, e.g. 1.4T")
    p.add_argument("--budget", required=True, type=parse_count, help="training FLOPs, e.g. 1e21")
    p.add_argument("--kind", default="mean", choices=("mean", "new_run"))
    p.add_argument("--method", default="auto", choices=("auto", "importance", "laplace"))
    p.add_argument(
        "--rank-by",
        default="reduction",
        choices=("reduction", "per_flop"),
        help="largest sd reduction within the budget (default), or reduction per FLOP",
    )
    p.add_argument("--outcomes", type=int, default=64, help="simulated outcomes per candidate")
    p.add_argument("--prob", default=0.9, type=_prob)
    p.add_argument("--top", type=int, default=None, help="print only the best TOP rows")
    p.add_argument(
        "--plot", metavar="FILE.png", help="also draw expected sd against cost (plots.plot_plan)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_plan)

    p = sub.add_parser("demo", help="hide the largest model of five real families and predict it")
    p.add_argument("--quick", action="store_true", help="fewer samples (about a minute)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("evaluate", help="run a published evaluation protocol (DESIGN §6)")
    p.add_argument(
        "--protocol", required=True, choices=("hitchhiker", "one-model", "gadre", "chinchilla")
    )
    p.add_argument("--quick", action="store_true", help="reduced protocol, short chains")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print one JSON object per target row")
    p.set_defaults(func=cmd_evaluate)

    from bayescale.report import add_report_arguments, main_report

    p = sub.add_parser("report", help="write a self-contained HTML (and Markdown) report of a fit")
    add_report_arguments(p)
    p.set_defaults(func=main_report)
    return parser


def enable_compile_cache(environ=None) -> str | None:
    """Point JAX's persistent compilation cache at bayescale's cache directory.

    Returns the directory used, or ``None`` when disabled or set by the user.
    """
    import os

    env = os.environ if environ is None else environ
    where = env.get("BAYESCALE_XLA_CACHE", "")
    if where.lower() == "off" or env.get("JAX_COMPILATION_CACHE_DIR"):
        return None
    if not where:
        base = env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        where = str(Path(base) / "bayescale" / "xla")
    import jax

    jax.config.update("jax_compilation_cache_dir", where)
    # the eager set-up ops compile in milliseconds each but add up to seconds
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    return where


def main(argv=None) -> int:
    """Entry point of the ``bayescale`` command."""
    parser = build_parser()
    args = parser.parse_args(argv)
    warnings.showwarning = _show_warning
    enable_compile_cache()
    from bayescale.data import DataError

    try:
        return int(args.func(args) or EXIT_OK)
    except BadInput as exc:
        _note(f"error: {exc}")
        return EXIT_BAD_INPUT
    except (DataError, KeyError, ValueError) as exc:
        _note(f"error: {exc}")
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        _note("interrupted")
        return EXIT_FAILED
    except Exception as exc:  # noqa: BLE001 - the CLI reports, the traceback is noise
        _note(f"failed: {type(exc).__name__}: {exc}")
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
