"""Assembling the report, answer first, and writing it (atomically).

Order: a headline paragraph (the prediction and its interval in plain words,
how far it extrapolates, whether the checks passed), one figure with the
target marked on its family's curves, the predictions table, the checks; then
the evidence, collapsed where long: fit quality per family, estimates,
figures, data, model and priors, and what-to-train-next or downstream
sections when asked for.
"""

from __future__ import annotations

import datetime as _dt
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from bayescale import fitfile
from bayescale._version import __version__
from bayescale.options import DEFAULT_CI_PROB, KINDS, Target, check_ci_prob, format_count
from bayescale.reporting import figures, method, summaries
from bayescale.reporting.render import (
    Report,
    Section,
    Table,
    figures_of,
    render_html,
    render_markdown,
)


def _strings(df: pd.DataFrame) -> pd.DataFrame:
    out = pd.DataFrame(index=range(len(df)))
    for col in df.columns:
        out[str(col)] = [
            summaries.fmt(v)
            if isinstance(v, (float, int, np.floating, np.integer)) and not isinstance(v, bool)
            else ("–" if v is None else str(v))
            for v in df[col].tolist()
        ]
    return out


def _readable(df: pd.DataFrame) -> pd.DataFrame:
    """Model sizes as 7B/300B."""
    out = df.copy()
    for col in ("params", "tokens", "flops"):
        if col in out and pd.api.types.is_numeric_dtype(out[col]):
            out[col] = [format_count(v) if col != "flops" else f"{v:.2g}" for v in out[col]]
    return out.rename(columns={"params": "N", "tokens": "D"})


def _prediction_display(df: pd.DataFrame, ci_prob: float) -> pd.DataFrame:
    pct = round(100 * ci_prob)
    f = summaries.fmt
    out = pd.DataFrame(
        {
            "family": df["family"],
            "N": [format_count(v) for v in df["params"]],
            "D": [format_count(v) for v in df["tokens"]],
            "kind": df["kind"],
            "median": [f(v) for v in df["median"]],
            "50% interval": [f"[{f(a)}, {f(b)}]" for a, b in zip(df["lower50"], df["upper50"])],  # noqa: B905
            f"{pct}% interval": [f"[{f(a)}, {f(b)}]" for a, b in zip(df["lower"], df["upper"])],  # noqa: B905
            "beyond data": [f"{v:.3g}×" if v > 1.0001 else "inside" for v in df["extrapolation"]],
        }
    )
    if "observed" in df and df["observed"].notna().any():
        out["measured"] = [f(v) if pd.notna(v) else "–" for v in df["observed"]]
        out["error"] = [f"{100 * v:+.2f}%" if pd.notna(v) else "–" for v in df["rel_error"]]
        out[f"in {pct}%"] = [
            ("yes" if v else "no") if pd.notna(o) else "–"
            for v, o in zip(df["inside"], df["observed"], strict=True)
        ]
    return out


def _summ_display(df: pd.DataFrame, ci_prob: float) -> pd.DataFrame:
    f = summaries.fmt
    return pd.DataFrame(
        {
            "parameter": df["parameter"],
            "median": [f(v) for v in df["median"]],
            f"{round(100 * ci_prob)}% interval": [
                f"[{f(a)}, {f(b)}]" for a, b in zip(df["lo"], df["hi"], strict=True)
            ],
        }
    )


def _downstream_frame(downstream, post, targets) -> pd.DataFrame | None:
    """Downstream error at each target: a table, a downstream fit, or {"posterior": fit, ...}."""
    if downstream is None or isinstance(downstream, pd.DataFrame):
        return downstream
    from bayescale.downstream import predict_downstream

    kwargs = dict(downstream) if isinstance(downstream, dict) else {"posterior": downstream}
    down_post = kwargs.pop("posterior", None)
    if down_post is None:
        raise ValueError("downstream: a dict needs the downstream fit under 'posterior'")
    if not targets:
        return None
    frames = [
        predict_downstream(
            post, down_post, family=t.family, params=t.params, tokens=t.tokens, kind=k, **kwargs
        )
        for t in targets
        for k in KINDS
    ]
    return pd.concat(frames, ignore_index=True)


def _plan_result(plan, post, targets):
    """A Plan, or keyword arguments of :func:`bayescale.design.plan` (target: the first one)."""
    if plan is None or hasattr(plan, "table"):
        return plan
    if isinstance(plan, dict):
        from bayescale.design import plan as run_plan

        kwargs = dict(plan)
        if "target" not in kwargs and targets:
            kwargs["target"] = targets[0]
        return run_plan(post, **kwargs)
    raise TypeError(f"plan: expected a Plan or a dict of plan() arguments, got {type(plan)}")


def build_report(
    post,
    *,
    targets=(),
    heldout=None,
    data=None,
    title=None,
    ci_prob: float = DEFAULT_CI_PROB,
    frontier_flops=None,
    diagnostic_plots: bool = True,
    downstream=None,
    plan=None,
    seed: int = 0,
) -> Report:
    """Everything the report shows (see :func:`write_report` for the arguments)."""
    ci_prob = check_ci_prob(ci_prob)
    targets = [summaries.attach_observed(Target.parse(t), heldout) for t in (targets or ())]
    stat = summaries.status(post)
    pct = round(100 * ci_prob)
    answer, headline = [], []
    if targets:
        pred = summaries.prediction_table(post, targets, ci_prob, seed)
        headline = summaries.headline(post, pred, stat, ci_prob)
        unseen = sorted({t.family for t in targets} - set(post.families))
        note = (
            "`new_run`: what one new training run would measure (seed effect and evaluation "
            "noise included); `mean`: the family's law. `beyond data`: how many times larger "
            "than the largest fitted size or token count."
        )
        if unseen:
            note += f" Not in the fit, predicted from the population: {', '.join(unseen)}."
        if post.is_point_estimate:
            note += " MAP point estimate: the intervals omit the uncertainty of the law."
        answer.append(Table(_prediction_display(pred, ci_prob), "Predicted loss (nats)", note))
    else:
        headline = [
            f"Fit of {post.data.n_families} families ({post.data.n_runs} runs). No target was "
            "given: pass targets=['FAMILY:N:D'] (--target) for a prediction."
        ]
        headline += summaries.headline(post, pd.DataFrame(columns=["kind"]), stat, ci_prob)
    main = figures.main_figure(post, targets, heldout, data, ci_prob, seed)

    sections = []
    for frame_, title_, anchor, caption in (
        (
            _downstream_frame(downstream, post, targets),
            "Downstream predictions",
            "downstream",
            "Predicted task error (a fraction) at each target",
        ),
    ):
        if frame_ is not None:
            sections.append(Section(title_, anchor, [Table(_strings(_readable(frame_)), caption)]))
    result = _plan_result(plan, post, targets)
    if result is not None:
        sec = Section("What to train next", "plan", [result.recommendation()])
        cols = [
            "rank",
            "experiment",
            "flops",
            "budget_fraction",
            "current_sd",
            "expected_sd",
            "expected_sd_mcse",
            "reduction_pct",
            "method",
            "tied_with_best",
            "recommended",
        ]
        shown = result.table[[c for c in cols if c in result.table]]
        sec.items.append(Table(_strings(_readable(shown)), "Candidate experiments, best first"))
        sec.items += list(result.notes)
        sec.items += figures.plan_figure(result)
        sections.append(sec)

    quality = summaries.fit_quality_table(post)
    sections.append(
        Section(
            "Fit quality per family",
            "quality",
            [
                Table(
                    _strings(quality),
                    "How far each family's fitted run curves sit from their own checkpoints",
                    "Relative error of the posterior-median curve of each run at its kept "
                    "checkpoints; a few percent or more means the law misfits that family.",
                )
            ],
        )
    )
    est = Section("Estimates", "estimates", collapsed=True)
    est.items.append(
        Table(
            _summ_display(summaries.exponent_table(post, ci_prob), ci_prob),
            f"Shared exponents: posterior median and {pct}% equal-tailed interval",
        )
    )
    est.items.append(
        Table(
            summaries.family_law_table(post, ci_prob),
            f"Per-family law in its published form (nats): median [{pct}% interval]",
            "L = E + A/N^α_f + B/D^β_f with N in parameters and D in tokens; σ_obs is the "
            "checkpoint noise scale of log loss.",
        )
    )
    est.items.append(
        Table(
            summaries.noise_table(post, ci_prob),
            f"Population and noise parameters: median [{pct}% interval]",
        )
    )
    sections.append(est)
    figs = Section("More figures", "figures", collapsed=True)
    figs.items += figures.evidence_figures(
        post, targets, frontier_flops, diagnostic_plots, ci_prob, seed
    )
    sections.append(figs)
    d = post.data
    data_sec = Section("Data", "data", collapsed=True)
    data_sec.items.append(
        f"{d.n_families} famil{'y' if d.n_families == 1 else 'ies'}, {d.n_runs} runs, "
        f"{d.n_obs:,} checkpoints kept for the fit ({int(d.report['rows_in'].sum()):,} in the "
        f"input table; {int(d.report['cut_warmup'].sum()):,} removed by the warm-up cut, "
        f"{int(d.report['thinned'].sum()):,} by thinning)."
    )
    data_sec.items.append(Table(_strings(summaries.data_table(post)), "Families in the fit"))
    sections.append(data_sec)
    model = Section("Model and priors", "model", collapsed=True)
    model.items += method.model_description(post)
    model.items.append(
        Table(
            _strings(method.priors_table(post.config.priors)),
            "Prior settings (relative scale: loss divided by the family constant)",
        )
    )
    sections.append(model)

    if title is None:
        fams = ", ".join(post.families[:4])
        more = f" and {len(post.families) - 4} more" if len(post.families) > 4 else ""
        title = f"Scaling-law report: {fams}{more}"
    when = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    subtitle = (
        f"bayescale {__version__} · {post.config.law} law, {post.config.exponents} exponents, "
        f"{post.config.label()} · data hash `{post.data.hash()}` · {when}"
    )
    return Report(" ".join(str(title).split()), subtitle, headline, stat, main, answer, sections)


def write_report(
    post,
    path,
    *,
    markdown=None,
    overwrite: bool = False,
    targets=(),
    heldout=None,
    data=None,
    title=None,
    ci_prob: float = DEFAULT_CI_PROB,
    frontier_flops=None,
    diagnostic_plots: bool = True,
    downstream=None,
    plan=None,
    seed: int = 0,
):
    """Write a self-contained HTML report of a fit, answer first.

    Parameters
    ----------
    post : Posterior
    path : str or path-like
        The HTML file to write (figures embedded; no external files).
    markdown : str or path-like, optional
        Also write a Markdown report with the same content; its PNGs go to a
        folder ``<stem>_files`` beside it.
    overwrite : bool
        Replace existing output files (otherwise an existing file is refused).
    targets : list, optional
        Models to predict: :class:`~bayescale.options.Target` s,
        ``"FAMILY:N:D"`` strings (``"gpt3:175B:300B"``) or
        ``(family, params, tokens[, observed])`` tuples.
    heldout : pandas.DataFrame, optional
        Tidy table of checkpoints not used in the fit: drawn in the figures,
        and used as the measured loss of a target at the same point.
    data : pandas.DataFrame, optional
        Raw tidy table to draw instead of the kept checkpoints.
    title : str, optional
    ci_prob : float
        Interval probability (default 0.9; 50% is also shown for predictions).
    frontier_flops : (float, float), optional
        Budget range of the compute-optimal figure.
    diagnostic_plots : bool
        Add the arviz-plots trace figure (sampled fits only).
    downstream : optional
        Downstream task error at each target: a downstream fit, a dict
        ``{"posterior": fit, **predict_downstream kwargs}``, or a ready table.
    plan : optional
        What to train next: a :class:`~bayescale.design.Plan`, or a dict of
        :func:`bayescale.design.plan` arguments (``target`` defaults to the
        first target).
    seed : int

    Returns
    -------
    Status
        The pass/warn verdict of the checks shown in the report.
    """
    path = fitfile.check_output(path, overwrite=overwrite)
    md = fitfile.check_output(markdown, overwrite=overwrite) if markdown is not None else None
    if md is not None and md.resolve() == path.resolve():
        raise ValueError("markdown must be another file than the HTML report")
    report = build_report(
        post,
        targets=targets,
        heldout=heldout,
        data=data,
        title=title,
        ci_prob=ci_prob,
        frontier_flops=frontier_flops,
        diagnostic_plots=diagnostic_plots,
        downstream=downstream,
        plan=plan,
        seed=seed,
    )
    fitfile.write_text(path, render_html(report), overwrite=overwrite)
    if md is not None:
        write_markdown(report, md, overwrite=overwrite)
    return report.status


def write_markdown(report: Report, path: Path, *, overwrite: bool = False) -> Path:
    """The Markdown file and its ``<stem>_files`` folder of PNGs, each put in place whole."""
    folder = path.parent / f"{path.stem}_files"
    if folder.exists() and not overwrite:
        raise fitfile.OutputExistsError(f"{folder} exists; pass overwrite=True to replace it")
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.stem}_files.", dir=path.parent))
    try:
        for fig in figures_of(report):
            (tmp / f"{fig.name}.png").write_bytes(fig.png)
        fitfile.write_text(path, render_markdown(report, folder.name), overwrite=overwrite)
        if folder.exists():
            old = folder.with_name(f".{folder.name}.old.{os.getpid()}")
            folder.rename(old)
            tmp.rename(folder)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(folder)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return path
