"""Self-contained uncertainty report of a fit: one HTML file, optionally Markdown.

The HTML file embeds its figures as base64 PNG and its style inline, so it
opens offline and can be attached to a design doc as is. The Markdown variant
carries the same text and tables, with the figures written as PNG files in a
folder beside it.

The report is assembled as a list of sections made of paragraphs, tables and
figures, then rendered to either format; both therefore say the same thing.
"""

from __future__ import annotations

import argparse
import base64
import datetime as _dt
import html
import inspect
import io
import re
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from bayescale import __version__, laws
from bayescale.model import COEFS, Priors
from bayescale.posterior_base import RHAT_MAX
from bayescale.predict import loss_draws

KINDS = ("mean", "new_run")
_SUFFIX = {"k": 1e3, "m": 1e6, "b": 1e9, "g": 1e9, "t": 1e12}


# -- targets -------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """A model to predict: family, raw parameter and token counts, optional actual loss."""

    family: str
    params: float
    tokens: float
    observed: float | None = None


def parse_count(text: str) -> float:
    """``"7e9"``, ``"7B"``, ``"300b"``, ``"1.5T"``, ``"125M"`` → raw count."""
    s = str(text).strip().replace("_", "")
    m = re.fullmatch(r"([0-9.]+(?:[eE][+-]?[0-9]+)?)\s*([kKmMbBgGtT]?)", s)
    if not m:
        raise ValueError(f"cannot read {text!r} as a count (examples: 7e9, 7B, 300B, 1.5T)")
    value = float(m.group(1)) * _SUFFIX.get(m.group(2).lower(), 1.0)
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"count must be finite and > 0, got {text!r}")
    return value


def parse_target(spec) -> Target:
    """A :class:`Target` from ``"FAMILY:N:D[:LOSS]"``, a tuple or a dict.

    ``N`` and ``D`` accept suffixes: ``"gpt3:175B:300B"``. The family name
    may itself contain colons; the counts are read from the right.
    """
    if isinstance(spec, Target):
        return spec
    if isinstance(spec, dict):
        return Target(
            str(spec["family"]),
            float(spec["params"]),
            float(spec["tokens"]),
            None if spec.get("observed") is None else float(spec["observed"]),
        )
    if isinstance(spec, (tuple, list)):
        if len(spec) not in (3, 4):
            raise ValueError(f"a target is (family, params, tokens[, observed]), got {spec!r}")
        obs = float(spec[3]) if len(spec) == 4 and spec[3] is not None else None
        return Target(str(spec[0]), parse_count(spec[1]), parse_count(spec[2]), obs)
    parts = str(spec).split(":")
    if len(parts) < 3:
        raise ValueError(
            f"target {spec!r} must look like FAMILY:N:D or FAMILY:N:D:LOSS (e.g. gpt3:175B:300B)"
        )
    # FAMILY:N:D:LOSS when the last three fields are all numbers
    if len(parts) >= 4:
        try:
            n, d, obs = (parse_count(p) for p in parts[-3:])
            return Target(":".join(parts[:-3]), n, d, obs)
        except ValueError:
            pass
    return Target(":".join(parts[:-2]), parse_count(parts[-2]), parse_count(parts[-1]))


# -- report content ------------------------------------------------------------------


@dataclass
class Table:
    """Preformatted table: string cells, a caption and an optional note."""

    frame: pd.DataFrame
    caption: str = ""
    note: str = ""


@dataclass
class Figure:
    """A rendered figure (PNG bytes) with a file stem and a caption."""

    name: str
    png: bytes
    caption: str = ""


@dataclass
class Section:
    title: str
    anchor: str
    items: list = field(default_factory=list)


@dataclass
class Status:
    """Overall pass/warn with one line per check."""

    status: str
    checks: list  # (name, "pass" | "warn" | "n/a", text)


def _fmt(v, digits: int = 4) -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "–"
    if isinstance(v, (int, np.integer)):
        return f"{int(v):,}"
    v = float(v)
    if v != 0 and (abs(v) >= 1e5 or abs(v) < 1e-3):
        return f"{v:.{digits - 1}e}"
    return f"{v:.{digits}g}"


def _count(v: float) -> str:
    for div, unit in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if v >= div:
            return f"{v / div:.3g}{unit}"
    return f"{v:.3g}"


def _span(values) -> str:
    lo, hi = _count(np.min(values)), _count(np.max(values))
    return lo if lo == hi else f"{lo}–{hi}"


def _interval(draws, prob, axis=0):
    return np.quantile(draws, [(1 - prob) / 2, (1 + prob) / 2], axis=axis)


def _summ(draws, prob) -> dict:
    draws = np.asarray(draws, dtype=float)
    lo, hi = _interval(draws, prob)
    return {"median": np.median(draws), "lo": lo, "hi": hi}


def _cell(draws, prob) -> str:
    s = _summ(draws, prob)
    return f"{_fmt(s['median'])} [{_fmt(s['lo'], 3)}, {_fmt(s['hi'], 3)}]"


def _is_point_estimate(post) -> bool:
    return post.config.method == "map" or post.n_draws < 2


# -- status ----------------------------------------------------------------------------


def status(post) -> Status:
    """Pass/warn verdict from sampling diagnostics and PSIS-LOO Pareto k.

    Every condition :meth:`Posterior.check` raises a ``ConvergenceWarning``
    for appears here as a ``warn`` check.
    """
    checks = []
    diag = post.diagnostics()
    if _is_point_estimate(post):
        checks.append(
            (
                "method",
                "warn",
                "MAP point estimate: intervals show only the run-to-run noise, not "
                "uncertainty in the fitted law. Refit with NUTS for calibrated intervals.",
            )
        )
    else:
        # the verdicts are exactly the fit's own problems (those of its ConvergenceWarning),
        # so the report never disagrees with the warning; the numbers add context
        problems = list(diag.get("problems", []))

        def verdict(*keys):
            hits = [p for p in problems if any(k in p for k in keys)]
            for p in hits:
                problems.remove(p)
            return "warn" if hits else "pass"

        worst = ", ".join(f"{k} {v:.3f}" for k, v in diag.get("rhat_worst", {}).items())
        checks.append(
            (
                "R-hat",
                verdict("R-hat"),
                f"max R-hat {_fmt(diag['rhat_max'])} (threshold {RHAT_MAX}; worst: {worst})",
            )
        )
        n_chains = post.tree["posterior"].sizes["chain"]
        checks.append(
            (
                "ESS",
                verdict("ESS"),
                f"min bulk ESS {_fmt(diag['ess_bulk_min'])}, min tail ESS "
                f"{_fmt(diag['ess_tail_min'])} ({n_chains} chain{'s' if n_chains > 1 else ''})",
            )
        )
        ndiv = int(diag["divergences"])
        checks.append(
            (
                "divergences",
                verdict("divergent"),
                f"{ndiv} divergent transition{'s' if ndiv != 1 else ''} of {post.n_draws} draws",
            )
        )
        # anything else the fit warns about must show here too
        checks.extend(("sampling", "warn", p) for p in problems)
    checks.append(_loo_check(post))
    overall = "warn" if any(c[1] == "warn" for c in checks) else "pass"
    return Status(overall, checks)


def loo_pareto_k(post):
    """PSIS-LOO on the fit's ``log_likelihood`` group: ``(result, pareto_k array)``.

    Returns ``(None, None)`` when the fit has no pointwise log-likelihood
    (MAP fits).
    """
    if "log_likelihood" not in post.tree.children or _is_point_estimate(post):
        return None, None
    from arviz_stats import loo

    with warnings.catch_warnings():
        # the verdict is reported in the status banner instead
        warnings.simplefilter("ignore")
        res = loo(post.tree, pointwise=True)
    return res, np.asarray(res.pareto_k.values, dtype=float).ravel()


def _loo_check(post):
    try:
        res, k = loo_pareto_k(post)
    except Exception as exc:  # noqa: BLE001 - report, don't fail the whole report
        return ("LOO Pareto k", "warn", f"PSIS-LOO failed: {exc}")
    if res is None:
        return ("LOO Pareto k", "n/a", "no pointwise log-likelihood (point estimate)")
    # a k that could not be estimated is as bad as a large one
    bad = int(np.sum(~(k <= res.good_k)))
    very = int(np.sum(~(k <= 1)))
    unknown = int(np.sum(~np.isfinite(k)))
    text = (
        f"{bad} of {k.size} checkpoints have Pareto k > {res.good_k:.2f}"
        + (f" ({very} above 1" + (f", {unknown} not estimable" if unknown else "") + ")")
        * bool(very)
        + f"; elpd_loo {res.elpd:.1f} (SE {res.se:.1f}), p_loo {res.p:.1f}"
    )
    if bad:
        text += ". These checkpoints are influential: the LOO estimate is unreliable for them"
    return ("LOO Pareto k", "warn" if bad else "pass", text)


# -- tables --------------------------------------------------------------------------


def data_table(post) -> pd.DataFrame:
    """Per family: runs, size and token ranges, what the warm-up cut and thinning removed."""
    d = post.data
    rep = d.report.set_index("family")
    rows = []
    for f, fam in enumerate(d.families):
        runs = np.flatnonzero(d.run_family == f)
        obs = d.obs_family == f
        r = rep.loc[fam] if fam in rep.index else {}
        rows.append(
            {
                "family": fam,
                "runs": len(runs),
                "params": _span(d.run_params[runs]),
                "tokens (kept)": _span(d.tokens[obs]),
                "loss scale (nats)": _fmt(d.family_scale[f]),
                "rows in": _fmt(int(r.get("rows_in", 0))),
                "cut (warm-up)": _fmt(int(r.get("cut_warmup", 0))),
                "thinned": _fmt(int(r.get("thinned", 0))),
                "kept": _fmt(int(obs.sum())),
            }
        )
    return pd.DataFrame(rows)


def exponent_table(post, prob: float = 0.9) -> pd.DataFrame:
    """Shared exponents (and their family spread): median and equal-tailed interval."""
    names = [("alpha", "α (shared, params)"), ("beta", "β (shared, tokens)")]
    if post.config.law == "overtrain":
        names = [("alpha", "α = β (shared)")]
    if post.config.exponents == "pooled":
        names += [("tau_alpha", "τ_α (family spread of log α)")]
        if post.config.law != "overtrain":
            names += [("tau_beta", "τ_β (family spread of log β)")]
    present = set(post.tree["posterior"].data_vars)
    return pd.DataFrame(
        [
            {"parameter": label, **_summ(post.draws(name), prob)}
            for name, label in names
            if name in present
        ]
    )


def family_exponent_table(post, prob: float = 0.9) -> pd.DataFrame:
    """Per-family exponents ``α_f``, ``β_f``: ``median [lo, hi]`` strings."""
    af, bf = post.draws("alpha_f"), post.draws("beta_f")
    return pd.DataFrame(
        {
            "family": list(post.families),
            "α_f": [_cell(af[:, f], prob) for f in range(len(post.families))],
            "β_f": [_cell(bf[:, f], prob) for f in range(len(post.families))],
        }
    )


def offset_table(post, prob: float = 0.9) -> pd.DataFrame:
    """Per family: the law in its published form (E, A, B in nats) and the offsets.

    ``E = s_f exp(log_E)``, ``A = s_f exp(a + α_f log 1e9)``, ``B = s_f exp(b +
    β_f log 1e11)``, so ``L = E + A / N^α + B / D^β`` in nats.
    """
    log_e, a, b = post.draws("log_E"), post.draws("a"), post.draws("b")
    af, bf = post.draws("alpha_f"), post.draws("beta_f")
    sig = post.draws("sigma_obs")
    rows = []
    for f, fam in enumerate(post.families):
        s = post.data.family_scale[f]
        rows.append(
            {
                "family": fam,
                "E (nats)": _cell(s * np.exp(log_e[:, f]), prob),
                "A": _cell(s * np.exp(a[:, f] + af[:, f] * laws.LOG_N_REF), prob),
                "B": _cell(s * np.exp(b[:, f] + bf[:, f] * laws.LOG_D_REF), prob),
                "σ_obs": _cell(sig[:, f], prob),
                "log_E": _cell(log_e[:, f], prob),
                "a": _cell(a[:, f], prob),
                "b": _cell(b[:, f], prob),
            }
        )
    return pd.DataFrame(rows)


def noise_table(post, prob: float = 0.9) -> pd.DataFrame:
    """Population-level and noise parameters."""
    meaning = {
        "sigma_seed": "run-to-run (seed) scatter of log loss",
        "ell": "OU correlation length of checkpoint noise (log tokens)",
        "nu": "Student-t degrees of freedom of checkpoint noise",
    }
    present = set(post.tree["posterior"].data_vars)
    rows = [
        {"parameter": k, "meaning": v, "estimate": _cell(post.draws(k), prob)}
        for k, v in meaning.items()
        if k in present
    ]
    mu = post.draws("mu_theta")
    sd = post.draws("sigma_theta")
    for j, c in enumerate(COEFS):
        rows.append(
            {"parameter": f"mu_theta[{c}]", "meaning": f"population mean of {c}",
             "estimate": _cell(mu[:, j], prob)}
        )  # fmt: skip
        rows.append(
            {"parameter": f"sigma_theta[{c}]", "meaning": f"family spread of {c}",
             "estimate": _cell(sd[:, j], prob)}
        )  # fmt: skip
    if "e_mu" in present:
        rows.append(
            {"parameter": "e_mu", "meaning": "population mean of E as a fraction of the "
             "family's smallest loss", "estimate": _cell(post.draws("e_mu"), prob)}
        )  # fmt: skip
    return pd.DataFrame(rows)


def prediction_table(post, targets, prob: float = 0.9, seed: int = 0) -> pd.DataFrame:
    """``mean`` and ``new_run`` predictions for each target, 50% and ``prob`` intervals."""
    rows = []
    for t in targets:
        for kind in KINDS:
            draws = loss_draws(post, t.family, t.params, t.tokens, kind=kind, seed=seed)[:, 0]
            lo50, hi50 = _interval(draws, 0.5)
            lo, hi = _interval(draws, prob)
            row = {
                "family": t.family,
                "params": t.params,
                "tokens": t.tokens,
                "kind": kind,
                "median": float(np.median(draws)),
                "mean": float(draws.mean()),
                "lower50": float(lo50),
                "upper50": float(hi50),
                "lower": float(lo),
                "upper": float(hi),
                "observed": t.observed,
            }
            if t.observed is not None:
                row["rel_error"] = (row["median"] - t.observed) / t.observed
                row["inside"] = bool(lo <= t.observed <= hi)
            rows.append(row)
    return pd.DataFrame(rows)


def _format_predictions(df: pd.DataFrame, prob: float) -> pd.DataFrame:
    pct = round(100 * prob)
    out = pd.DataFrame(
        {
            "family": df["family"],
            "N": [_count(v) for v in df["params"]],
            "D": [_count(v) for v in df["tokens"]],
            "kind": df["kind"],
            "median": [_fmt(v) for v in df["median"]],
            "mean": [_fmt(v) for v in df["mean"]],
            "50% interval": [
                f"[{_fmt(a)}, {_fmt(b)}]" for a, b in zip(df["lower50"], df["upper50"], strict=True)
            ],
            f"{pct}% interval": [
                f"[{_fmt(a)}, {_fmt(b)}]" for a, b in zip(df["lower"], df["upper"], strict=True)
            ],
        }
    )
    if "observed" in df and df["observed"].notna().any():
        out["observed"] = [_fmt(v) if pd.notna(v) else "–" for v in df["observed"]]
        out["error"] = [f"{100 * v:+.2f}%" if pd.notna(v) else "–" for v in df["rel_error"]]
        out[f"in {pct}%"] = [
            ("yes" if v else "no") if pd.notna(o) else "–"
            for v, o in zip(df["inside"], df["observed"], strict=True)
        ]
    return out


def _format_summ(df: pd.DataFrame, prob: float) -> pd.DataFrame:
    pct = round(100 * prob)
    return pd.DataFrame(
        {
            "parameter": df["parameter"],
            "median": [_fmt(v) for v in df["median"]],
            f"{pct}% interval": [
                f"[{_fmt(a)}, {_fmt(b)}]" for a, b in zip(df["lo"], df["hi"], strict=True)
            ],
        }
    )


def priors_table(priors: Priors) -> pd.DataFrame:
    """Prior settings with their meaning, read from the :class:`Priors` docstring."""
    doc = inspect.getdoc(Priors) or ""
    meaning = {}
    m = re.search(r"Attributes\n-+\n(.*)", doc, flags=re.S)
    if m:
        current = None
        for line in m.group(1).splitlines():
            if line and not line[0].isspace() and " : " in line:
                current = tuple(n.strip() for n in line.split(" : ")[0].split(","))
                meaning[current] = []
            elif current is not None and line.strip():
                meaning[current].append(line.strip())
    values = priors.to_dict()
    rows, seen = [], set()
    for names, text in meaning.items():
        names = [n for n in names if n in values]
        if not names:
            continue
        seen.update(names)
        rows.append(
            {
                "setting": ", ".join(names),
                "value": ", ".join(_prior_value(values[n]) for n in names),
                "meaning": " ".join(text).replace("``", "`"),
            }
        )
    for name in values:
        if name not in seen:
            rows.append({"setting": name, "value": _prior_value(values[name]), "meaning": ""})
    return pd.DataFrame(rows)


def _prior_value(v) -> str:
    if isinstance(v, (list, tuple)):
        return "(" + ", ".join(_fmt(x, 3) for x in v) + ")"
    return _fmt(v, 3)


def model_description(post) -> list:
    """The fitted model in plain words, as a list of paragraphs."""
    c = post.config
    law = (
        "the Chinchilla law L = E + A/N^α + B/D^β"
        if c.law == "chinchilla"
        else "the over-training law of Gadre et al. (the Chinchilla law with α = β), "
        "L(C, M) = E + (a·M^η + b·M^−η)·C^−η with η = α/2"
    )
    exps = (
        "Exponents are partially pooled: each family has its own α_f, β_f, drawn around "
        "shared α, β with a learned spread τ (log scale)."
        if c.exponents == "pooled"
        else "All families share one pair of exponents α, β."
    )
    if c.method == "nuts":
        method = (
            f"Sampled with NUTS: {c.num_chains} chains × {c.num_samples} draws after "
            f"{c.num_warmup} warm-up steps (target acceptance {c.target_accept}, maximum tree "
            f"depth {c.max_tree_depth}), started from a MAP estimate, seed {c.seed}."
        )
    else:
        method = (
            f"Fitted as a MAP point estimate (best of {c.map_starts} L-BFGS starts, seed "
            f"{c.seed}); there are no posterior draws."
        )
    cut = (
        "no warm-up cut"
        if c.min_tokens is None
        else f"intermediate checkpoints below {_count(c.min_tokens)} tokens were dropped "
        "(warm-up), each run's final checkpoint kept"
    )
    thin = (
        "all checkpoints kept"
        if c.max_points_per_run is None
        else f"dense curves thinned to at most {c.max_points_per_run} log-spaced "
        "checkpoints per run"
    )
    return [
        f"Each family's mean loss follows {law}. Losses are divided by a fixed per-family "
        "constant (the median kept loss) so that families measured on different scales can "
        "be pooled; the coefficients are fitted on log scale, centred at N = 1e9 parameters "
        "and D = 1e11 tokens.",
        exps + " The family offsets (log E, a, b) are partially pooled around population "
        "means with an LKJ prior on their correlation: a family with one run borrows "
        "strength from the others, a family with many runs mostly speaks for itself.",
        "Each run has its own offset u_r ~ Normal(0, σ_seed) (seed-level noise). The "
        "checkpoints of a run deviate from its curve by an Ornstein–Uhlenbeck process in "
        "log-token time with Student-t innovations, so that hundreds of correlated "
        "checkpoints do not count as independent evidence.",
        "Predictions come in two kinds: `mean` is the law itself; `new_run` adds a fresh run "
        "offset, i.e. what one new training run would reach.",
        f"Data preparation: {cut}; {thin}. " + method,
    ]


# -- figures -------------------------------------------------------------------------


def _png(fig, dpi: int = 100) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, facecolor="white")
    return buf.getvalue()


def _figures(post, targets, heldout, data, prob, frontier_flops, diagnostic_plots, seed):
    from bayescale import plots

    figs = []
    fams = list(post.families)
    cap = (
        "Observed loss curves (lines with dots) and the fitted curve of each run (median, "
        "50% and 90% bands)."
    )
    if heldout is not None:
        cap += " Held-out checkpoints are diamonds, with the `new_run` band of their size."
    figs.append(
        Figure(
            "trajectories",
            _png(plots.plot_trajectories(post, heldout=heldout, data=data, seed=seed)),
            cap,
        )
    )
    figs.append(
        Figure(
            "exponents",
            _png(plots.plot_exponents(post)),
            "Posterior of the shared exponents (90% interval shaded)"
            + (" and of each family's exponents." if post.config.exponents == "pooled" else "."),
        )
    )
    figs.append(
        Figure(
            "offsets",
            _png(plots.plot_offsets(post)),
            "Family offsets on the relative scale, with the population mean and its 90% interval.",
        )
    )
    figs.append(
        Figure(
            "seed_effects",
            _png(plots.plot_seed_effects(post)),
            "Run effects u_r by model size: systematic trends would show a misfit of the law.",
        )
    )
    frontier_fams = list(dict.fromkeys(t.family for t in targets if t.family in fams)) or fams[:1]
    if frontier_flops is None:
        c = 6.0 * post.data.run_params[post.data.obs_run] * post.data.tokens
        frontier_flops = (float(c.min()), float(c.max()) * 100.0)
    for fam in frontier_fams:
        figs.append(
            Figure(
                f"frontier_{_slug(fam)}",
                _png(plots.plot_frontier(post, fam, frontier_flops, seed=seed)),
                f"{fam}: compute-optimal parameters N* and tokens D* by budget.",
            )
        )
    for i, t in enumerate(targets):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # an unseen family is flagged in the table note
            fig = plots.plot_predictive(
                post,
                t.family,
                t.params,
                t.tokens,
                observed=t.observed,
                kind=KINDS,
                prob=prob,
                seed=seed,
            )
        figs.append(
            Figure(
                f"target{i + 1}_{_slug(t.family)}",
                _png(fig),
                f"Predictive loss of {t.family} at N={_count(t.params)}, D={_count(t.tokens)}.",
            )
        )
    if diagnostic_plots and not _is_point_estimate(post):
        n_vars = len(plots.diagnostic_vars(post))
        for kind, text, size in (
            ("trace", "Trace and marginal density per chain (arviz-plots).", None),
            (
                "rank",
                "Rank ECDF of each chain minus the uniform one: curves inside the envelope mean "
                "the chains sample the same distribution (arviz-plots).",
                (12.0, 3.0 * -(-n_vars // 4)),
            ),
        ):
            fig = None
            kwargs = {"figure_kwargs": {"figsize": size}} if size else {}
            try:
                fig = plots.plot_diagnostics(post, kind, **kwargs).get_viz("figure")
                # arviz-plots leaves titles and tick labels of stacked panels overlapping
                fig.set_layout_engine("constrained")
                figs.append(Figure(f"diagnostics_{kind}", _png(fig, dpi=70), text))
            except Exception as exc:  # noqa: BLE001 - a missing diagnostic plot is not fatal
                figs.append(Figure(f"diagnostics_{kind}", b"", f"{kind} plot failed: {exc}"))
            finally:
                _close_pyplot(fig)
    return figs


def _close_pyplot(fig):
    # arviz-plots creates figures through pyplot; free them so reports don't leak
    if fig is None or "matplotlib.pyplot" not in sys.modules:
        return
    import matplotlib.pyplot as plt

    plt.close(fig)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower() or "x"


# -- optional sections (features that may not exist in this version) --------------------------


def _feature(module: str, attr: str):
    """``bayescale.<module>.<attr>`` if this version has it, else None."""
    import importlib

    try:
        return getattr(importlib.import_module(f"bayescale.{module}"), attr)
    except (ImportError, AttributeError):
        return None


def _unavailable(label: str) -> tuple:
    return None, f"{label} is not available in this version of bayescale."


def _plan_frame(plan, post, targets):
    """``plan``: a table, ``f(post, targets)``, or keyword arguments for ``design.plan``."""
    if plan is None:
        return None, None
    if isinstance(plan, pd.DataFrame):
        return plan, None
    if callable(plan):
        return _as_frame(plan(post, targets)), None
    if isinstance(plan, dict):
        func = _feature("design", "plan")
        if func is None:
            return _unavailable("Experiment planning (bayescale.design.plan)")
        return _as_frame(func(post, **plan)), None
    raise TypeError(f"plan: expected a DataFrame, a callable or a dict, got {type(plan)}")


def _downstream_frame(downstream, post, targets):
    """Downstream error at each target, both kinds.

    ``downstream``: a table, ``f(post, targets)``, a downstream posterior
    (``bayescale.downstream.fit_downstream``), or a dict with key
    ``"posterior"`` plus keyword arguments for ``predict_downstream`` (e.g.
    ``tasks="avg46"``).
    """
    if downstream is None:
        return None, None
    if isinstance(downstream, pd.DataFrame):
        return downstream, None
    if callable(downstream) and not hasattr(downstream, "tree"):
        return _as_frame(downstream(post, targets)), None
    kwargs = dict(downstream) if isinstance(downstream, dict) else {"posterior": downstream}
    down_post = kwargs.pop("posterior", None)
    if down_post is None:
        raise ValueError("downstream: a dict needs the downstream fit under 'posterior'")
    func = _feature("downstream", "predict_downstream")
    if func is None:
        return _unavailable("Downstream prediction (bayescale.downstream)")
    if not targets:
        return None, "Downstream errors are predicted at the targets: pass targets= to see them."
    frames = [
        func(post, down_post, family=t.family, params=t.params, tokens=t.tokens, kind=k, **kwargs)
        for t in targets
        for k in KINDS
    ]
    return pd.concat(frames, ignore_index=True), None


def _as_frame(obj) -> pd.DataFrame:
    if isinstance(obj, pd.DataFrame):
        return obj
    for name in ("to_frame", "table", "frame"):
        got = getattr(obj, name, None)
        got = got() if callable(got) else got
        if isinstance(got, pd.DataFrame):
            return got
    raise TypeError(f"expected a DataFrame (or an object with .to_frame()), got {type(obj)}")


def _readable(df: pd.DataFrame) -> pd.DataFrame:
    """Model sizes as 7B/300B and no constant bookkeeping columns."""
    out = df.copy()
    for col in ("params", "tokens"):
        if col in out and pd.api.types.is_numeric_dtype(out[col]):
            out[col] = [_count(v) for v in out[col]]
    return out.rename(columns={"params": "N", "tokens": "D"})


def _frame_to_strings(df: pd.DataFrame) -> pd.DataFrame:
    out = pd.DataFrame(index=range(len(df)))
    for col in df.columns:
        vals = df[col].tolist()
        out[str(col)] = [
            _fmt(v) if isinstance(v, (float, int, np.floating, np.integer)) else str(v)
            for v in vals
        ]
    return out


# -- assembling ------------------------------------------------------------------------


def build_sections(
    post,
    *,
    targets=(),
    heldout=None,
    data=None,
    prob: float = 0.9,
    frontier_flops=None,
    diagnostic_plots: bool = True,
    downstream=None,
    plan=None,
    seed: int = 0,
):
    """Status and the report's sections (title, anchor, items) in order."""
    targets = [parse_target(t) for t in (targets or ())]
    if heldout is not None:
        targets = [_attach_observed(t, heldout) for t in targets]
    stat = status(post)
    sections = []

    d = post.data
    overview = Section("Data", "data")
    overview.items.append(
        f"{d.n_families} famil{'y' if d.n_families == 1 else 'ies'}, {d.n_runs} runs, "
        f"{d.n_obs:,} checkpoints kept for the fit "
        f"({int(d.report['rows_in'].sum()):,} in the input table; "
        f"{int(d.report['cut_warmup'].sum()):,} removed by the warm-up cut, "
        f"{int(d.report['thinned'].sum()):,} by thinning)."
    )
    overview.items.append(Table(_frame_to_strings(data_table(post)), "Families in the fit"))
    sections.append(overview)

    model = Section("Model and priors", "model")
    model.items.extend(model_description(post))
    model.items.append(
        Table(
            _frame_to_strings(priors_table(post.config.priors)),
            "Prior settings (relative scale: loss divided by the family constant)",
        )
    )
    sections.append(model)

    pct = round(100 * prob)
    est = Section("Estimates", "estimates")
    est.items.append(
        Table(
            _format_summ(exponent_table(post, prob), prob),
            f"Shared exponents: posterior median and {pct}% equal-tailed interval",
        )
    )
    if post.config.exponents == "pooled":
        est.items.append(
            Table(
                family_exponent_table(post, prob),
                f"Family exponents (partially pooled): median [{pct}% interval]",
            )
        )
    offsets = offset_table(post, prob)
    est.items.append(
        Table(
            offsets[["family", "E (nats)", "A", "B", "σ_obs"]],
            f"Per-family law in its published form (nats): median [{pct}% interval]",
            "L = E + A/N^α_f + B/D^β_f with N in parameters and D in tokens; σ_obs is the "
            "checkpoint noise scale of log loss.",
        )
    )
    est.items.append(
        Table(
            offsets[["family", "log_E", "a", "b"]],
            f"Family offsets as fitted: median [{pct}% interval]",
            "On the relative scale (loss divided by the family's loss scale), logs centred at "
            "N = 1e9, D = 1e11: a and b are the log reducible terms of a 1e9-parameter model "
            "and of 1e11 tokens.",
        )
    )
    est.items.append(
        Table(noise_table(post, prob), f"Population and noise parameters: median [{pct}% interval]")
    )
    sections.append(est)

    if targets:
        pred = Section("Predictions", "predictions")
        table = prediction_table(post, targets, prob, seed)
        unseen = sorted({t.family for t in targets} - set(post.families))
        note = (
            "`mean`: the fitted law; `new_run`: one new training run (law plus a fresh run offset)."
        )
        if unseen:
            note += (
                f" Not in the fit, predicted from the population of families: {', '.join(unseen)}."
            )
        pred.items.append(Table(_format_predictions(table, prob), "Predicted loss (nats)", note))
        sections.append(pred)

    figs = Section("Figures", "figures")
    figs.items.extend(
        _figures(post, targets, heldout, data, prob, frontier_flops, diagnostic_plots, seed)
    )
    sections.append(figs)

    for (frame, note), title, anchor, caption, figures in (
        (
            _downstream_frame(downstream, post, targets),
            "Downstream predictions",
            "downstream",
            "Predicted task error (a fraction) at each target",
            None,
        ),
        (
            _plan_frame(plan, post, targets),
            "What to train next",
            "plan",
            "Candidate experiments",
            _plan_figure,
        ),
    ):
        if frame is None and note is None:
            continue
        sec = Section(title, anchor)
        if frame is not None:
            sec.items.append(Table(_frame_to_strings(_readable(frame)), caption))
            if figures is not None:
                sec.items.extend(figures(frame))
        else:
            sec.items.append(note)
        sections.append(sec)
    return stat, sections


def _plan_figure(frame: pd.DataFrame) -> list:
    """The candidates' expected sd against their cost, when the table has what it needs."""
    from bayescale import plots

    try:
        fig = plots.plot_plan(frame)
    except (TypeError, ValueError):
        return []
    return [
        Figure(
            "plan",
            _png(fig),
            "Expected posterior sd of the target after each candidate experiment, against its "
            "cost; seeds of one size are joined in order of their number, the recommendation "
            "is circled.",
        )
    ]


def _attach_observed(t: Target, heldout: pd.DataFrame) -> Target:
    if t.observed is not None:
        return t
    hit = heldout[
        (heldout["family"].astype(str) == t.family)
        & np.isclose(heldout["params"].to_numpy(float), t.params, rtol=1e-6)
        & np.isclose(heldout["tokens"].to_numpy(float), t.tokens, rtol=1e-6)
    ]
    if len(hit):
        return Target(t.family, t.params, t.tokens, float(hit["loss"].mean()))
    return t


# -- rendering -------------------------------------------------------------------------

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;
 margin:0 auto;max-width:1150px;padding:1.2em 1.5em;color:#1b1b1b;line-height:1.45}
h1{font-size:1.6em;margin:.2em 0}
h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
.meta{color:#555;font-size:.9em}
.banner{border-radius:6px;padding:.8em 1.1em;margin:1em 0;border:2px solid}
.banner.pass{background:#e8f5ee;border-color:#009E73}
.banner.warn{background:#fdf1e4;border-color:#D55E00}
.banner h2{border:0;margin:0 0 .3em 0;font-size:1.25em}
.banner ul{margin:.2em 0;padding-left:1.2em}
.tag{display:inline-block;min-width:3.2em;text-align:center;font-weight:600;border-radius:3px;
 padding:0 .35em;margin-right:.4em;font-size:.85em}
.tag.pass{background:#009E73;color:#fff}.tag.warn{background:#D55E00;color:#fff}
.tag.na{background:#999;color:#fff}
table{border-collapse:collapse;margin:.4em 0 1.2em 0;font-size:.88em}
caption{text-align:left;font-weight:600;padding:.3em 0}
th,td{border:1px solid #ccc;padding:.25em .55em;text-align:left;vertical-align:top}
th{background:#f1f3f5}tr:nth-child(even) td{background:#fafafa}
td.num{font-variant-numeric:tabular-nums;white-space:nowrap}
.note{color:#444;font-size:.85em;margin-top:-.9em;margin-bottom:1.2em}
figure{margin:1em 0 1.6em 0}figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{color:#444;font-size:.9em}
nav a{margin-right:1em}
.scroll{overflow-x:auto}
code{background:#f3f3f3;padding:0 .2em;border-radius:3px}
"""


def _inline(text: str) -> str:
    """Escape and render `code` spans."""
    parts = str(text).split("`")
    return "".join(
        f"<code>{html.escape(p)}</code>" if i % 2 else html.escape(p) for i, p in enumerate(parts)
    )


_NUM = r"[-+]?[0-9.,]+(?:e[-+]?[0-9]+)?%?"


def _is_num(s: str) -> bool:
    """Numbers, intervals and "median [lo, hi]" cells: kept on one line."""
    pattern = rf"{_NUM}|–|(?:{_NUM} )?\[{_NUM}, {_NUM}\]|\({_NUM}(?:, {_NUM})*\)"
    return bool(re.fullmatch(pattern, s.strip()))


def _html_table(t: Table) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in t.frame.columns)
    body = []
    for row in t.frame.itertuples(index=False):
        cells = "".join(
            f'<td class="num">{html.escape(str(v))}</td>'
            if _is_num(str(v))
            else f"<td>{_inline(str(v))}</td>"
            for v in row
        )
        body.append(f"<tr>{cells}</tr>")
    out = (
        f'<div class="scroll"><table><caption>{_inline(t.caption)}</caption>'
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>"
    )
    if t.note:
        out += f'<p class="note">{_inline(t.note)}</p>'
    return out


def _status_html(stat: Status) -> str:
    title = (
        "PASS: sampling diagnostics look fine"
        if stat.status == "pass"
        else "WARNING: read the checks below before trusting the intervals"
    )
    items = "".join(
        f'<li><span class="tag {"na" if s == "n/a" else s}">{html.escape(s.upper())}</span>'
        f"<b>{html.escape(name)}</b>: {_inline(text)}</li>"
        for name, s, text in stat.checks
    )
    return (
        f'<section class="banner {stat.status}" id="status" data-status="{stat.status}">'
        f"<h2>{html.escape(title)}</h2><ul>{items}</ul></section>"
    )


def render_html(stat: Status, sections: list, *, title: str, subtitle: str) -> str:
    """The report as one self-contained HTML document."""
    nav = "".join(f'<a href="#{s.anchor}">{html.escape(s.title)}</a>' for s in sections)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1><p class='meta'>{_inline(subtitle)}</p>",
        _status_html(stat),
        f"<nav>{nav}</nav>",
    ]
    for sec in sections:
        parts.append(f'<section id="{sec.anchor}"><h2>{html.escape(sec.title)}</h2>')
        for item in sec.items:
            if isinstance(item, Table):
                parts.append(_html_table(item))
            elif isinstance(item, Figure):
                if item.png:
                    b64 = base64.b64encode(item.png).decode("ascii")
                    parts.append(
                        f'<figure id="fig-{item.name}"><img alt="{html.escape(item.caption)}" '
                        f'src="data:image/png;base64,{b64}">'
                        f"<figcaption>{_inline(item.caption)}</figcaption></figure>"
                    )
                else:
                    parts.append(f'<p class="note">{_inline(item.caption)}</p>')
            else:
                parts.append(f"<p>{_inline(item)}</p>")
        parts.append("</section>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _md_cell(v) -> str:
    return str(v).replace("|", "\\|").replace("\n", " ")


def _md_table(t: Table) -> str:
    cols = [_md_cell(c) for c in t.frame.columns]
    lines = [f"**{t.caption}**", "", "| " + " | ".join(cols) + " |"]
    lines.append("| " + " | ".join("---" for _ in cols) + " |")
    for row in t.frame.itertuples(index=False):
        lines.append("| " + " | ".join(_md_cell(v) for v in row) + " |")
    if t.note:
        lines += ["", f"_{t.note}_"]
    return "\n".join(lines)


def render_markdown(
    stat: Status, sections: list, path: Path, *, title: str, subtitle: str
) -> list[Path]:
    """Write the Markdown report and its PNGs (in ``<stem>_files/``); return the PNG paths."""
    fig_dir = path.parent / f"{path.stem}_files"
    written = []
    icon = {"pass": "PASS", "warn": "WARN", "n/a": "n/a"}
    lines = [f"# {title}", "", subtitle, ""]
    lines.append(
        "> **Status: "
        + ("PASS** — sampling diagnostics look fine" if stat.status == "pass" else "WARNING**")
    )
    lines.append(">")
    for name, s, text in stat.checks:
        lines.append(f"> - **{icon.get(s, s)}** {name}: {text}")
    lines.append("")
    for sec in sections:
        lines += [f"## {sec.title}", ""]
        for item in sec.items:
            if isinstance(item, Table):
                lines += [_md_table(item), ""]
            elif isinstance(item, Figure):
                if item.png:
                    fig_dir.mkdir(parents=True, exist_ok=True)
                    fpath = fig_dir / f"{item.name}.png"
                    fpath.write_bytes(item.png)
                    written.append(fpath)
                    lines += [
                        f"![{item.caption}]({fig_dir.name}/{fpath.name})",
                        "",
                        item.caption,
                        "",
                    ]
                else:
                    lines += [f"_{item.caption}_", ""]
            else:
                lines += [str(item), ""]
    path.write_text("\n".join(lines), encoding="utf-8")
    return written


def write_report(
    post,
    path,
    *,
    markdown=None,
    targets=None,
    heldout=None,
    data=None,
    title=None,
    prob: float = 0.9,
    frontier_flops=None,
    diagnostic_plots: bool = True,
    downstream=None,
    plan=None,
    seed: int = 0,
):
    """Write a self-contained HTML uncertainty report of a fit.

    Parameters
    ----------
    post : Posterior
    path : str or path-like
        The HTML file to write (figures embedded; no external files).
    markdown : str or path-like, optional
        Also write a Markdown report with the same tables; its PNGs go to a
        folder ``<stem>_files`` beside it.
    targets : list, optional
        Models to predict: ``"FAMILY:N:D"`` strings (``"gpt3:175B:300B"``),
        ``(family, params, tokens[, observed])`` tuples or :class:`Target` s.
    heldout : pandas.DataFrame, optional
        Tidy table of checkpoints not used in the fit: drawn in the trajectory
        figure, and used as the observed value of a target at the same
        ``(family, params, tokens)``.
    data : pandas.DataFrame, optional
        Raw tidy table to draw instead of the kept checkpoints.
    title : str, optional
    prob : float
        Interval probability of the tables (default 0.9; 50% is also shown
        for predictions).
    frontier_flops : (float, float), optional
        Budget range of the compute-optimal figure (default: from the data to
        100× its largest run).
    diagnostic_plots : bool
        Add arviz-plots trace and rank figures (sampled fits only).
    downstream : optional
        Downstream task error at each target (both kinds): a downstream fit
        (``bayescale.downstream.fit_downstream``), or ``{"posterior": fit,
        **kwargs}`` with keyword arguments for ``predict_downstream`` such as
        ``tasks="avg46"``; or a ready table, or ``f(post, targets)``.
    plan : optional
        The "what to train next" table: keyword arguments for
        ``bayescale.design.plan(post, ...)``, a ready table, or
        ``f(post, targets)``. Sections whose feature this version lacks say so.
    seed : int

    Returns
    -------
    Status
        The pass/warn verdict shown at the top of the report.
    """
    path = Path(path)
    stat, sections = build_sections(
        post,
        targets=targets,
        heldout=heldout,
        data=data,
        prob=prob,
        frontier_flops=frontier_flops,
        diagnostic_plots=diagnostic_plots,
        downstream=downstream,
        plan=plan,
        seed=seed,
    )
    title = title or f"Scaling-law report: {', '.join(post.families[:4])}" + (
        f" and {len(post.families) - 4} more" if len(post.families) > 4 else ""
    )
    when = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    subtitle = (
        f"bayescale {__version__} · {post.config.law} law, {post.config.exponents} exponents, "
        f"{post.config.method} · data hash `{post.data.hash()}` · generated {when}"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(stat, sections, title=title, subtitle=subtitle), encoding="utf-8")
    if markdown is not None:
        md = Path(markdown)
        md.parent.mkdir(parents=True, exist_ok=True)
        render_markdown(stat, sections, md, title=title, subtitle=subtitle)
    return stat


report = write_report


# -- command line ----------------------------------------------------------------------


def add_report_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Arguments of ``bayescale report`` (shared by the CLI and ``python -m``)."""
    parser.add_argument("fit", help="fit file written by Posterior.save / `bayescale fit`")
    parser.add_argument("--out", required=True, help="HTML file to write")
    parser.add_argument("--markdown", help="also write a Markdown report (PNGs beside it)")
    parser.add_argument(
        "--target",
        action="extend",
        nargs="+",
        default=[],
        metavar="FAMILY:N:D",
        help="models to predict, e.g. gpt3:175B:300B OPT:175B:180B (FAMILY:N:D:LOSS adds the "
        "actual loss)",
    )
    parser.add_argument(
        "--heldout", help="tidy CSV/Parquet of held-out checkpoints to draw and compare"
    )
    parser.add_argument(
        "--downstream",
        metavar="DOWN.nc",
        help="downstream fit file: adds the predicted task error at each --target",
    )
    parser.add_argument(
        "--tasks", default="avg17", help="downstream tasks: avg17, avg46, all or a task name"
    )
    parser.add_argument("--title", help="report title")
    parser.add_argument("--prob", type=float, default=0.9, help="interval probability (0.9)")
    parser.add_argument(
        "--no-diagnostic-plots", action="store_true", help="skip the trace and rank figures"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of predictive draws")
    return parser


def _read_table(path: str) -> pd.DataFrame:
    p = Path(path)
    if p.suffix == ".parquet":
        return pd.read_parquet(p)
    return pd.read_csv(p)


def main_report(args) -> int:
    """Run ``bayescale report``: 0 written (pass or warn), 1 failed, 2 bad input."""
    from bayescale.fit import load
    from bayescale.posterior_base import FitFileError

    try:
        if not 0 < args.prob < 1:
            raise ValueError(f"--prob must be in (0, 1), got {args.prob}")
        targets = [parse_target(t) for t in args.target]
        heldout = _read_table(args.heldout) if args.heldout else None
        if not Path(args.fit).exists():
            raise ValueError(
                f"fit file {args.fit} does not exist (create one with `bayescale fit`)"
            )
        post = load(args.fit)
        downstream = None
        if getattr(args, "downstream", None):
            load_down = _feature("downstream", "load_downstream")
            if load_down is None:
                raise ValueError("--downstream needs bayescale.downstream, not in this version")
            downstream = {"posterior": load_down(args.downstream), "tasks": args.tasks}
    except (FitFileError, ValueError, OSError) as exc:
        print(f"bayescale report: error: {exc}", file=sys.stderr)
        return 2
    try:
        stat = write_report(
            post,
            args.out,
            markdown=args.markdown,
            targets=targets,
            heldout=heldout,
            title=args.title,
            prob=args.prob,
            diagnostic_plots=not args.no_diagnostic_plots,
            downstream=downstream,
            seed=args.seed,
        )
    except (KeyError, ValueError) as exc:
        print(f"bayescale report: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - one clear line instead of a traceback
        print(f"bayescale report: failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {args.out}" + (f" and {args.markdown}" if args.markdown else ""))
    print(f"status: {stat.status.upper()}")
    for name, s, text in stat.checks:
        if s == "warn":
            print(f"  warn: {name}: {text}", file=sys.stderr)
    return 0


def main(argv=None) -> int:
    parser = add_report_arguments(
        argparse.ArgumentParser(
            prog="bayescale report", description="Write an uncertainty report of a fit."
        )
    )
    return main_report(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
