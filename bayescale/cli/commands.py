"""What each ``bayescale`` command does (imports the heavy modules only when it runs).

Query commands take ``--json`` and then print machine-readable output on
stdout only; notes and warnings go to stderr, so pipes stay clean.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

from bayescale.options import format_count

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130


class BadInput(Exception):
    """A user error: exit code 2."""


def note(msg: str) -> None:
    print(msg, file=sys.stderr)


def emit_json(obj) -> None:
    def default(o):
        if hasattr(o, "item"):
            return o.item()
        if hasattr(o, "tolist"):
            return o.tolist()
        return str(o)

    json.dump(_clean(obj), sys.stdout, indent=2, default=default, allow_nan=False)
    sys.stdout.write("\n")


def _clean(obj):
    """NaN and infinities -> null, recursively (JSON has no NaN)."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if hasattr(obj, "item") and not isinstance(obj, (str, bytes)):
        try:
            obj = obj.item()
        except (ValueError, AttributeError):
            return obj
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def records(df) -> list:
    return _clean(df.to_dict(orient="records"))


def check_out(path, overwrite: bool) -> Path:
    """Validate an output path before any work starts (exit 2 when it is taken or invalid)."""
    from bayescale.fitfile import check_output

    try:
        return check_output(path, overwrite=overwrite)
    except (FileExistsError, FileNotFoundError, IsADirectoryError) as exc:
        raise BadInput(str(exc)) from None


def read_source(source: str, families=None):
    """DATA: a CSV/Parquet path, or the name of a bundled dataset."""
    from bayescale.datasets import DatasetNameError, list_datasets, load_dataset
    from bayescale.tables import DataError, read_table

    if Path(source).exists():
        try:
            return read_table(source)
        except DataError as exc:
            raise BadInput(str(exc)) from None
    names = list(list_datasets()["name"])
    if source in names:
        try:
            return load_dataset(source, families=families)
        except DatasetNameError as exc:
            raise BadInput(str(exc.args[0] if exc.args else exc)) from None
    raise BadInput(f"{source!r} is neither a file nor a bundled dataset; bundled datasets: {names}")


def load_fit(path: str):
    from bayescale.fitfile import FitFileError
    from bayescale.posterior import load

    try:
        return load(path)
    except FitFileError as exc:
        raise BadInput(str(exc)) from None


def diag_line(diag: dict) -> str:
    if diag.get("method") != "nuts":
        line = "diagnostics: n/a (MAP point estimate: intervals hold only run-to-run noise)"
    else:
        line = (
            f"diagnostics: {diag['status'].upper()}  max R-hat {diag['rhat_max']:.3f}, min bulk "
            f"ESS {diag['ess_bulk_min']:.0f}, divergences {diag['divergences']}, "
            f"{diag['draws']} draws per chain"
        )
    return "\n  ".join([line, *diag["problems"]])


def json_diag(diag: dict) -> dict:
    keep = ("status", "rhat_max", "ess_bulk_min", "ess_tail_min", "divergences", "draws")
    keep += ("problems",)
    return _clean({k: diag.get(k) for k in keep})


def _fit_warning(post) -> None:
    """The fit's sampling problems, once, on stderr, with advice in CLI terms."""
    from bayescale.convergence import convergence_advice

    diag = post.diagnostics()
    if diag.get("problems"):
        note(
            "WARNING: the fit has sampling problems: "
            + "; ".join(diag["problems"])
            + ". "
            + convergence_advice(diag, post.config, "cli")
        )


def _sampler(args) -> dict:
    return {
        "method": args.method,
        "seed": args.seed,
        "num_chains": args.chains,
        "num_warmup": args.warmup,
        "num_samples": args.samples,
        "extend": args.extend,
        "target_accept": args.target_accept,
        "retry": args.retry,
        "start": args.start,
    }


def _save(post, out, args, info: dict, summary=None) -> int:
    """Write the fit, then print its diagnostics (and a summary table) or JSON."""
    post.save(out, overwrite=args.overwrite)
    diag = post.diagnostics()
    if args.json:
        emit_json({"out": str(out), **info, "diagnostics": json_diag(diag)})
    else:
        print(f"wrote {out}")
        print(diag_line(diag))
        if summary is not None:
            print(summary(post).to_string())
    return EXIT_OK


# -- commands ------------------------------------------------------------------------
def cmd_datasets(args) -> int:
    from bayescale.datasets import list_datasets

    table = list_datasets()
    if args.json:
        emit_json(records(table))
        return EXIT_OK
    print(table.drop(columns=["citation"], errors="ignore").to_string(index=False))
    print("\nLoad one with bayescale.load_dataset(name); see its docstring for units and pitfalls.")
    return EXIT_OK


def cmd_fit(args) -> int:
    from bayescale.data import ScalingData
    from bayescale.tables import DataError, grouped_by

    out = check_out(args.out, args.overwrite)
    data_options = {
        "families": args.families,
        "min_tokens": args.min_tokens,
        "warmup_fraction": args.warmup_fraction or None,
        "max_points_per_run": args.max_points or None,
    }
    # the table is checked before JAX loads: a bad table is refused at once
    df = read_source(args.data, families=args.families)
    try:
        if args.group_by is not None:
            df = grouped_by(df, args.group_by)
        data = ScalingData.from_frame(df, **data_options)
    except DataError as exc:
        raise BadInput(str(exc)) from None
    from bayescale.convergence import ConvergenceWarning  # noqa: F401 - shown via the hook
    from bayescale.fitting import FitConfig, fit

    try:
        config = FitConfig(
            law=args.law,
            exponents=args.exponents,
            discrepancy=args.discrepancy,
            seed_centring=args.seed_centring,
            exponent_centring=args.exponent_centring,
            **data_options,
            **_sampler(args),
        )
    except ValueError as exc:
        raise BadInput(str(exc)) from None
    rep = data.report
    note(
        f"data: {data.n_families} families, {data.n_runs} runs, {data.n_obs} checkpoints kept "
        f"of {int(rep['rows_in'].sum())} ({int(rep['cut_warmup'].sum())} cut by the warm-up "
        f"cut, {int(rep['thinned'].sum())} thinned)"
    )
    post = fit(data, config, progress_bar=None if not args.quiet else False, check=False)
    _fit_warning(post)
    info = {"families": list(data.families), "runs": data.n_runs, "checkpoints": data.n_obs}
    return _save(
        post, out, args, info, lambda p: p.summary(var_names=["alpha", "beta", "sigma_seed"])
    )


def cmd_predict(args) -> int:
    import pandas as pd

    if (args.run is None) == (args.target is None):
        raise BadInput("give either --target FAMILY:N:D or --run NAME [--tokens D[,D...]]")
    post = load_fit(args.fit)
    schedule = schedule_table(args.schedule, ("tokens", "lr"))
    if args.run is not None:
        return _predict_run(post, args, schedule)
    tables = []
    for t in args.target:
        if t.family not in post.families:
            from bayescale.options import did_you_mean

            note(
                f"note: family {t.family!r} is not in the fit"
                f"{did_you_mean(t.family, post.families)}; predicting it from the population "
                f"of {len(post.families)} fitted families"
            )
        tables.append(
            post.predict(
                t.family,
                t.params,
                t.tokens,
                kind=args.kind,
                ci_prob=args.ci_prob,
                seed=args.seed,
                schedule=schedule,
            )
        )
    table = pd.concat(tables, ignore_index=True)
    _fit_warning(post)
    down = _downstream_table(post, args) if (args.downstream or args.downstream_fit) else None
    if args.json:
        rows = records(table)
        emit_json(rows if down is None else {"loss": rows, "downstream": records(down)})
        return EXIT_OK
    print(format_predictions(table))
    if down is not None:
        print(f"\ndownstream top-1 error ({args.kind}, {args.ci_prob:.0%} interval):")
        print(down.drop(columns=["family", "params", "tokens", "ci_prob"]).to_string(index=False))
    return EXIT_OK


def _predict_run(post, args, schedule) -> int:
    try:
        table = post.predict(
            run=args.run,
            tokens=args.tokens or None,
            ci_prob=args.ci_prob,
            seed=args.seed,
            schedule=schedule,
        )
    except ValueError as exc:
        raise BadInput(str(exc)) from None
    _fit_warning(post)
    if args.json:
        emit_json(records(table))
        return EXIT_OK
    fitted = table["tokens"].iloc[0] / table["extrapolation"].iloc[0]
    print(f"run {args.run}, fitted up to {format_count(fitted)} tokens; forecast:")
    print(format_predictions(table))
    return EXIT_OK


def schedule_table(path, columns: tuple):
    """The ``--schedule`` CSV as a DataFrame with ``columns`` (None without the option)."""
    import pandas as pd

    if path is None:
        return None
    try:
        table = pd.read_csv(path)
    except (OSError, ValueError) as exc:
        raise BadInput(f"--schedule {path}: cannot read it as CSV ({exc})") from None
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise BadInput(
            f"--schedule {path}: needs columns {', '.join(columns)}; missing {missing} "
            f"(it has {list(table.columns)})"
        )
    return table[list(columns)]


def format_predictions(table) -> str:
    """A prediction table for people: counts as 175B, losses to 4 digits."""
    import pandas as pd

    pct = round(100 * float(table["ci_prob"].iloc[0]))
    out = pd.DataFrame(
        {
            "family": table["family"],
            "N": [format_count(v) for v in table["params"]],
            "D": [format_count(v) for v in table["tokens"]],
            "kind": table["kind"],
            "median": [f"{v:.4g}" for v in table["median"]],
            f"{pct}% interval": [
                f"[{lo:.4g}, {hi:.4g}]"
                for lo, hi in zip(table["lower"], table["upper"], strict=True)
            ],
            "beyond data": [
                f"{v:.3g}x" if v > 1.0001 else "inside" for v in table["extrapolation"]
            ],
        }
    )
    text = out.to_string(index=False)
    if bool(table["point_estimate"].any()):
        text += (
            "\n(MAP point estimate: intervals hold only run-to-run noise, "
            "not the law's uncertainty)"
        )
    far = table["extrapolation"] > 10
    if far.any():
        text += (
            f"\nnote: {int(far.sum())} prediction(s) lie more than 10x beyond the fitted sizes or "
            "tokens; the interval assumes the law holds that far"
        )
    return text


def _downstream_table(post, args):
    from bayescale.downstream import (
        GADRE_TASKS_17,
        TASK_SETS,
        fit_downstream,
        load_downstream,
        predict_downstream,
    )
    from bayescale.fitfile import FitFileError

    if args.downstream_fit:
        try:
            down = load_downstream(args.downstream_fit)
        except FitFileError as exc:
            raise BadInput(str(exc)) from None
    else:
        names = set()
        for t in args.tasks:
            names |= set(TASK_SETS.get(t, (t,)))
        tasks = GADRE_TASKS_17 if names <= set(GADRE_TASKS_17) else None
        note(
            "fitting the downstream model on the bundled Gadre et al. error-law set (C4-eval "
            f"loss; {'17' if tasks else '46'} tasks, 6 runs per corpus) with quick settings "
            "(4 chains x 300 draws, a few minutes). Save a full fit with `bayescale "
            "fit-downstream gadre_downstream --out DOWN.nc` and pass --downstream-fit DOWN.nc. "
            "The law only applies to losses on the eval set it was fitted on (C4 eval here)."
        )
        frame = fit_downstream_frame(read_source("gadre_downstream"), tasks)
        down = fit_downstream(
            frame,
            num_warmup=300,
            num_samples=300,
            seed=args.seed,
            progress_bar=None if not args.quiet else False,
        )
    return __import__("pandas").concat(
        [
            predict_downstream(
                post,
                down,
                family=t.family,
                params=t.params,
                tokens=t.tokens,
                tasks=args.tasks,
                kind=args.kind,
                ci_prob=args.ci_prob,
                seed=args.seed,
            )
            for t in args.target
        ],
        ignore_index=True,
    )


def fit_downstream_frame(df, tasks=None):
    """The paper's error-law runs of the bundled Gadre table, or any run x task table."""
    if "default_fit_err" in df.columns:
        df = df[df["default_fit_err"].astype(bool)]
    return df if tasks is None else df[df["task"].isin(tasks)]


def cmd_fit_downstream(args) -> int:
    from bayescale.downstream import (
        GADRE_TASKS_17,
        TASK_SETS,
        DownstreamConfig,
        DownstreamData,
        fit_downstream,
    )
    from bayescale.tables import DataError

    out = check_out(args.out, args.overwrite)
    tasks = [n for t in args.tasks for n in TASK_SETS.get(t, (t,))] if args.tasks else None
    df = read_source(args.data)
    frame = df if args.all_runs else fit_downstream_frame(df)
    try:
        data = DownstreamData.from_frame(frame, tasks=tasks)
    except DataError as exc:
        raise BadInput(str(exc)) from None
    note(
        f"data: {len(data.families)} families, {len(data.runs)} runs, {len(data.tasks)} tasks "
        f"({'all 17 of avg17' if set(GADRE_TASKS_17) <= set(data.tasks) else 'no full avg17'})"
    )
    post = fit_downstream(
        data, DownstreamConfig(**_sampler(args)), progress_bar=None if not args.quiet else False
    )
    info = {"families": list(data.families), "runs": len(data.runs), "tasks": list(data.tasks)}
    return _save(post, out, args, info)


def cmd_plan(args) -> int:
    from bayescale.design import plan

    if args.plot:
        check_out(args.plot, args.overwrite)
    post = load_fit(args.fit)
    if args.target.family not in post.families:
        from bayescale.options import did_you_mean

        raise BadInput(
            f"family {args.target.family!r} is not in the fit"
            f"{did_you_mean(args.target.family, post.families)}; fitted: {list(post.families)}. "
            "Experiments can only be planned for a fitted family"
        )
    result = plan(
        post,
        args.target,
        args.budget,
        kind=args.kind,
        method=args.method,
        n_outcomes=args.outcomes,
        rank_by=args.rank_by,
        ci_prob=args.ci_prob,
        schedule=schedule_table(args.schedule, ("fraction", "lr")),
        seed=args.seed,
        progress_bar=None if not args.quiet else False,
    )
    _fit_warning(post)
    if args.plot:
        from bayescale.fitfile import atomic_write
        from bayescale.plots import plot_plan

        fig = plot_plan(result)
        atomic_write(
            args.plot,
            lambda p: fig.savefig(p, format="png", dpi=120, facecolor="white"),
            overwrite=args.overwrite,
        )
        note(f"wrote {args.plot}")
    if args.json:
        t = result.target
        emit_json(
            {
                "target": {
                    "family": t.family,
                    "params": t.params,
                    "tokens": t.tokens,
                    "kind": result.kind,
                },
                "budget_flops": result.budget_flops,
                "rank_by": result.rank_by,
                "recommendation": result.recommendation(),
                "recommended": records(result.table[result.table["recommended"]]),
                "dropped_over_budget": list(result.dropped),
                "notes": list(result.notes),
                "candidates": records(result.table),
            }
        )
    else:
        print(result.format(max_rows=args.top))
        print(f"\nrecommendation: {result.recommendation()}")
    return EXIT_OK


def cmd_demo(args) -> int:
    from bayescale.demo import JSON_KEYS, format_table, run_demo

    # the demo has no sampler flags: its problems are reported once below, without
    # advice naming options it does not take
    result = run_demo(
        quick=args.quick,
        seed=args.seed,
        progress_bar=None if not (args.json or args.quiet) else False,
        check=False,
    )
    if args.json:
        problems = result.posterior.diagnostics().get("problems")
        if problems:
            note("WARNING: the fit has sampling problems: " + "; ".join(problems))
        emit_json(records(result.table[list(JSON_KEYS)]))
        return EXIT_OK
    print(format_table(result))
    return EXIT_OK


def cmd_evaluate(args) -> int:
    from dataclasses import replace

    from bayescale.evaluation import default_settings, evaluate, format_summary

    settings = None
    overrides = {
        k: v
        for k, v in (
            ("num_warmup", args.warmup),
            ("num_samples", args.samples),
            ("target_accept", args.target_accept),
        )
        if v is not None
    }
    if overrides:
        settings = replace(default_settings(args.protocol, args.quick), **overrides)
    result = evaluate(args.protocol, quick=args.quick, seed=args.seed, settings=settings)
    if args.json:
        emit_json(records(result.points))
        return EXIT_OK
    print(format_summary(result))
    return EXIT_OK


def cmd_report(args) -> int:
    from bayescale.reporting import write_report

    out = check_out(args.out, args.overwrite)
    if args.markdown:
        check_out(args.markdown, args.overwrite)
    if Path(args.fit).resolve() in {out.resolve()} | (
        {Path(args.markdown).resolve()} if args.markdown else set()
    ):
        raise BadInput(f"the report would overwrite its own fit file {args.fit}")
    heldout = read_source(args.heldout) if args.heldout else None
    post = load_fit(args.fit)
    downstream = None
    if args.downstream:
        from bayescale.downstream import load_downstream
        from bayescale.fitfile import FitFileError

        try:
            downstream = {"posterior": load_downstream(args.downstream), "tasks": args.tasks}
        except FitFileError as exc:
            raise BadInput(str(exc)) from None
    stat = write_report(
        post,
        out,
        markdown=args.markdown,
        overwrite=args.overwrite,
        targets=args.target,
        heldout=heldout,
        title=args.title,
        ci_prob=args.ci_prob,
        diagnostic_plots=not args.no_diagnostic_plots,
        downstream=downstream,
        seed=args.seed,
    )
    print(f"wrote {out}" + (f" and {args.markdown}" if args.markdown else ""))
    print(f"checks: {stat.status.upper()}")
    for name, s, text in stat.checks:
        if s == "warn":
            note(f"  warn: {name}: {text}")
    return EXIT_OK


COMMANDS = {
    "datasets": cmd_datasets,
    "fit": cmd_fit,
    "predict": cmd_predict,
    "fit-downstream": cmd_fit_downstream,
    "plan": cmd_plan,
    "demo": cmd_demo,
    "evaluate": cmd_evaluate,
    "report": cmd_report,
}
