"""The report's figures, rendered to PNG bytes."""

from __future__ import annotations

import io
import sys
import warnings

from bayescale.options import KINDS, format_count
from bayescale.reporting.render import Figure, slug


def png(fig, dpi: int = 100) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, facecolor="white")
    return buf.getvalue()


def _close(fig):
    # arviz-plots creates figures through pyplot; free them so reports don't leak
    if fig is None or "matplotlib.pyplot" not in sys.modules:
        return
    import matplotlib.pyplot as plt

    plt.close(fig)


def main_figure(post, targets, heldout, data, ci_prob, seed) -> Figure:
    """The target families' curves with every target's predicted interval marked."""
    from bayescale import plots

    fams = [t.family for t in targets if t.family in post.families]
    fams = list(dict.fromkeys(fams)) or list(post.families[:3])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fig = plots.plot_trajectories(
            post,
            fams,
            heldout=heldout,
            data=data,
            targets=targets,
            ci_prob=(0.5, ci_prob),
            seed=seed,
        )
    pct = round(100 * ci_prob)
    caption = (
        "Loss curves of the fitted runs (lines with dots) and each run's fitted curve (median, "
        f"50% and {pct}% bands)."
    )
    if targets:
        caption += (
            f" Black bar: the predicted loss of a new run at each target ({pct}% interval); "
            "orange cross: the measured loss, when known."
        )
    if heldout is not None:
        caption += " Diamonds: held-out checkpoints, with the `new_run` band of their size."
    return Figure("curves", png(fig), caption)


def evidence_figures(post, targets, frontier_flops, diagnostic_plots, ci_prob, seed) -> list:
    """Exponents, offsets, run effects, the compute-optimal frontier, predictive densities."""
    from bayescale import plots

    taken: set = {"curves"}
    figs = [
        Figure(
            "exponents",
            png(plots.plot_exponents(post)),
            "Posterior of the shared exponents (90% interval shaded)"
            + (" and of each family's exponents." if post.config.exponents == "pooled" else "."),
        ),
        Figure(
            "offsets",
            png(plots.plot_offsets(post)),
            "Family offsets on the relative scale, with the population mean and its 90% interval.",
        ),
        Figure(
            "seed_effects",
            png(plots.plot_seed_effects(post)),
            "Run effects by model size: a trend with size would show a misfit of the law.",
        ),
    ]
    fams = list(dict.fromkeys(t.family for t in targets if t.family in post.families))
    fams = fams or list(post.families[:1])
    if frontier_flops is None:
        c = 6.0 * post.data.run_params[post.data.obs_run] * post.data.tokens
        frontier_flops = (float(c.min()), float(c.max()) * 100.0)
    for fam in fams:
        figs.append(
            Figure(
                f"frontier-{slug(fam, taken)}",
                png(plots.plot_frontier(post, fam, frontier_flops, seed=seed)),
                f"{fam}: compute-optimal parameters N* and tokens D* by budget.",
            )
        )
    for t in targets:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # an unseen family is said in the table note
            fig = plots.plot_predictive(
                post,
                t.family,
                t.params,
                t.tokens,
                observed=t.observed,
                kind=KINDS,
                ci_prob=ci_prob,
                seed=seed,
            )
        figs.append(
            Figure(
                f"target-{slug(t.family, taken)}",
                png(fig),
                f"Predictive loss of {t.family} at N={format_count(t.params)}, "
                f"D={format_count(t.tokens)}.",
            )
        )
    if diagnostic_plots and not post.is_point_estimate:
        fig = None
        try:
            fig = plots.plot_diagnostics(post, "trace").get_viz("figure")
            # arviz-plots leaves titles and tick labels of stacked panels overlapping
            fig.set_layout_engine("constrained")
            figs.append(
                Figure(
                    "diagnostics-trace",
                    png(fig, dpi=70),
                    "Trace and marginal density per chain (arviz-plots): chains that agree "
                    "overlap.",
                )
            )
        except Exception as exc:  # noqa: BLE001 - a missing diagnostic plot is not fatal
            figs.append(Figure("diagnostics-trace", b"", f"trace plot failed: {exc}"))
        finally:
            _close(fig)
    return figs


def plan_figure(plan) -> list:
    """The candidates' expected sd against their cost."""
    from bayescale import plots

    return [
        Figure(
            "plan",
            png(plots.plot_plan(plan)),
            "Expected posterior sd of the target after each candidate experiment, against its "
            "cost; seeds of one size are joined in order of their number, the recommendation "
            "is circled.",
        )
    ]
