"""What a report says, as plain tables and sentences (usable from a notebook too).

Every function takes a fitted :class:`~bayescale.posterior.Posterior` and
returns a DataFrame or text; :mod:`bayescale.reporting.build` arranges them,
answer first.
"""

from __future__ import annotations

import inspect
import re
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from bayescale import centring, laws
from bayescale.inference import RHAT_MAX, convergence_advice
from bayescale.model import COEFS, GROUP_COEFS, Priors
from bayescale.options import KINDS, Target, format_count
from bayescale.queries import extrapolation, loss_draws, run_curve_draws


@dataclass
class Status:
    """Overall pass/warn with one ``(name, "pass" | "warn" | "n/a", text)`` line per check."""

    status: str
    checks: list
    advice: str = ""  # what to change when sampling went wrong (convergence_advice)


def fmt(v, digits: int = 4) -> str:
    """A number for a table: ``–`` for missing, thousands separators for counts."""
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "–"
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    if isinstance(v, (int, np.integer)):
        return f"{int(v):,}"
    v = float(v)
    if v != 0 and (abs(v) >= 1e5 or abs(v) < 1e-3):
        return f"{v:.{digits - 1}e}"
    return f"{v:.{digits}g}"


def span(values) -> str:
    lo, hi = format_count(np.min(values)), format_count(np.max(values))
    return lo if lo == hi else f"{lo}–{hi}"


def interval_of(draws, ci_prob, axis=0):
    return np.quantile(draws, [(1 - ci_prob) / 2, (1 + ci_prob) / 2], axis=axis)


def summ(draws, ci_prob) -> dict:
    draws = np.asarray(draws, dtype=float)
    lo, hi = interval_of(draws, ci_prob)
    return {"median": np.median(draws), "lo": lo, "hi": hi}


def cell(draws, ci_prob) -> str:
    s = summ(draws, ci_prob)
    return f"{fmt(s['median'])} [{fmt(s['lo'], 3)}, {fmt(s['hi'], 3)}]"


# -- the answer -----------------------------------------------------------------------------
def prediction_table(post, targets, ci_prob: float = 0.9, seed: int = 0) -> pd.DataFrame:
    """``mean`` and ``new_run`` predictions for each target, 50% and ``ci_prob`` intervals."""
    rows = []
    for t in targets:
        for kind in KINDS:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # unseen families are said in the report
                draws = loss_draws(post, t.family, t.params, t.tokens, kind=kind, seed=seed)[:, 0]
            lo50, hi50 = interval_of(draws, 0.5)
            lo, hi = interval_of(draws, ci_prob)
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
                "extrapolation": float(extrapolation(post, t.family, t.params, t.tokens)),
                "observed": t.observed,
            }
            if t.observed is not None:
                row["rel_error"] = (row["median"] - t.observed) / t.observed
                row["inside"] = bool(lo <= t.observed <= hi)
            rows.append(row)
    return pd.DataFrame(rows)


def headline(post, predictions: pd.DataFrame, stat: Status, ci_prob: float) -> list[str]:
    """One plain-words sentence per target: prediction, interval, distance, checks."""
    pct = round(100 * ci_prob)
    out = []
    for _, r in predictions[predictions["kind"] == "new_run"].iterrows():
        half = 100 * (r["upper"] - r["lower"]) / 2 / r["median"]
        ext = r["extrapolation"]
        where = (
            "inside the range of the fitted data"
            if ext <= 1.0001
            else f"{ext:.3g}× beyond the largest size or token count fitted"
        )
        fam = r["family"]
        unseen = "" if fam in post.families else " (a family not in the fit: from the population)"
        sentence = (
            f"A new {format_count(r['params'])}-parameter {fam} run trained on "
            f"{format_count(r['tokens'])} tokens{unseen} is predicted to reach a loss of "
            f"{r['median']:.4g} nats, with {pct}% probability between {r['lower']:.4g} and "
            f"{r['upper']:.4g} (±{half:.1f}%); the law itself (the average run) at "
        )
        mean = predictions[
            (predictions["kind"] == "mean")
            & (predictions["family"] == fam)
            & np.isclose(predictions["params"], r["params"])
            & np.isclose(predictions["tokens"], r["tokens"])
        ].iloc[0]
        sentence += f"{mean['lower']:.4g}–{mean['upper']:.4g}. This is {where}."
        if r.get("observed") is not None and np.isfinite(r.get("observed") or np.nan):
            sentence += (
                f" The measured loss, {r['observed']:.4g}, is "
                + ("inside" if r["inside"] else "outside")
                + f" the interval ({100 * r['rel_error']:+.2f}% from the median)."
            )
        out.append(sentence)
    if stat.status == "pass":
        out.append("Sampling diagnostics passed (R-hat, effective sample size, divergences).")
    else:
        problems = [f"{name}: {text}" for name, s, text in stat.checks if s == "warn"]
        out.append("Check before trusting the interval: " + "; ".join(problems) + ".")
        if stat.advice:
            out.append(stat.advice)
    return out


# -- checks ---------------------------------------------------------------------------------
def status(post) -> Status:
    """Pass/warn verdict from sampling diagnostics and PSIS-LOO Pareto k.

    Every condition :meth:`Posterior.check` raises a ``ConvergenceWarning``
    for appears here as a ``warn`` check.
    """
    checks = []
    diag = post.diagnostics()
    if post.is_point_estimate:
        checks.append(
            (
                "method",
                "warn",
                "MAP point estimate: intervals show only the run-to-run noise, not the "
                "uncertainty of the fitted law. Refit with NUTS for calibrated intervals.",
            )
        )
    else:
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
                f"max R-hat {fmt(diag['rhat_max'])} (threshold {RHAT_MAX}; worst: {worst})",
            )
        )
        n_chains = post.tree["posterior"].sizes["chain"]
        checks.append(
            (
                "ESS",
                verdict("ESS"),
                f"min bulk ESS {fmt(diag['ess_bulk_min'])}, min tail ESS "
                f"{fmt(diag['ess_tail_min'])} ({n_chains} chain{'s' if n_chains > 1 else ''})",
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
        checks.extend(("sampling", "warn", p) for p in problems)
    checks.append(_loo_check(post))
    overall = "warn" if any(c[1] == "warn" for c in checks) else "pass"
    advice = convergence_advice(diag, post.config) if diag.get("problems") else ""
    return Status(overall, checks, advice)


def loo_pareto_k(post):
    """PSIS-LOO on the fit's ``log_likelihood`` group: ``(result, pareto_k array)``.

    Returns ``(None, None)`` for fits without a pointwise log-likelihood (MAP).
    """
    if "log_likelihood" not in post.tree.children or post.is_point_estimate:
        return None, None
    from arviz_stats import loo

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the verdict is reported in the checks instead
        res = loo(post.tree, pointwise=True)
    return res, np.asarray(res.pareto_k.values, dtype=float).ravel()


def _loo_check(post):
    try:
        res, k = loo_pareto_k(post)
    except Exception as exc:  # noqa: BLE001 - report, don't fail the whole report
        return ("LOO Pareto k", "warn", f"PSIS-LOO failed: {exc}")
    if res is None:
        return ("LOO Pareto k", "n/a", "no pointwise log-likelihood (point estimate)")
    bad = int(np.sum(~(k <= res.good_k)))  # a k that could not be estimated counts as bad
    text = (
        f"{bad} of {k.size} checkpoints have Pareto k > {res.good_k:.2f}; "
        f"elpd_loo {res.elpd:.1f} (SE {res.se:.1f}), p_loo {res.p:.1f}"
    )
    if bad:
        text += " (these checkpoints are influential: the LOO estimate is unreliable for them)"
    return ("LOO Pareto k", "warn" if bad else "pass", text)


# -- evidence -------------------------------------------------------------------------------
def fit_quality_table(post) -> pd.DataFrame:
    """Per family: how far the fitted run curves sit from their own checkpoints.

    ``median |error|`` and ``worst |error|`` are relative errors (%) of the
    posterior-median curve of each run at its kept checkpoints; a family whose
    curves miss their points by more than a few percent is misfit by the law.
    """
    d = post.data
    rows = []
    for f, fam in enumerate(d.families):
        errors = []
        for r in np.flatnonzero(d.run_family == f):
            sel = d.obs_run == r
            curve = np.median(run_curve_draws(post, int(r), d.tokens[sel]), axis=0)
            errors.append(np.abs(curve / d.loss[sel] - 1.0))
        err = 100 * np.concatenate(errors)
        rows.append(
            {
                "family": fam,
                "runs": int((d.run_family == f).sum()),
                "checkpoints": int(err.size),
                "median |error| %": float(np.median(err)),
                "worst |error| %": float(np.max(err)),
            }
        )
    return pd.DataFrame(rows)


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
                **({"group": d.family_group[f]} if d.family_group is not None else {}),
                "runs": len(runs),
                "params": span(d.run_params[runs]),
                "tokens (kept)": span(d.tokens[obs]),
                "loss scale (nats)": fmt(d.family_scale[f]),
                "rows in": fmt(int(r.get("rows_in", 0))),
                "cut (warm-up)": fmt(int(r.get("cut_warmup", 0))),
                "thinned": fmt(int(r.get("thinned", 0))),
                "kept": fmt(int(obs.sum())),
            }
        )
    return pd.DataFrame(rows)


def exponent_table(post, ci_prob: float = 0.9) -> pd.DataFrame:
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
            {"parameter": label, **summ(post.draws(name), ci_prob)}
            for name, label in names
            if name in present
        ]
    )


def family_law_table(post, ci_prob: float = 0.9) -> pd.DataFrame:
    """Per family: the law in its published form (E, A, B in nats), exponents and noise."""
    rows = []
    sig = post.draws("sigma_obs")
    for f, fam in enumerate(post.families):
        E, A, B, alpha, beta = (np.asarray(v) for v in laws.to_published(post.law(fam)))
        rows.append(
            {
                "family": fam,
                "E (nats)": cell(E, ci_prob),
                "A": cell(A, ci_prob),
                "B": cell(B, ci_prob),
                "α_f": cell(alpha, ci_prob),
                "β_f": cell(beta, ci_prob),
                "σ_obs": cell(sig[:, f], ci_prob),
            }
        )
    return pd.DataFrame(rows)


def noise_table(post, ci_prob: float = 0.9) -> pd.DataFrame:
    """Population-level and noise parameters."""
    meaning = {
        "sigma_seed": "run-to-run (seed) scatter of log loss",
        "ell": "OU correlation length of checkpoint noise (log tokens)",
        "nu": "Student-t degrees of freedom of checkpoint noise",
        "e_mu": "population mean of E as a fraction of the family's smallest loss",
        "anneal_kappa": "growth of the annealing bonus with model size, ∝ (N/1e9)^κ",
        "sigma_delta": "size-level discrepancy: how far a family's sizes depart from its law",
        "ell_delta": "correlation length of the discrepancy (log parameters)",
        "sigma_delta_d": "token-budget discrepancy of grid families (final losses)",
        "ell_delta_d": "correlation length of the token-budget discrepancy (log tokens)",
    }
    present = set(post.tree["posterior"].data_vars)
    rows = [
        {"parameter": k, "meaning": v, "estimate": cell(post.draws(k), ci_prob)}
        for k, v in meaning.items()
        if k in present
    ]
    mu, sd = post.draws("mu_theta"), post.draws("sigma_theta")
    for j, c in enumerate(COEFS):
        rows.append(
            {
                "parameter": f"mu_theta[{c}]",
                "meaning": f"population mean of {c}",
                "estimate": cell(mu[:, j], ci_prob),
            }
        )
        rows.append(
            {
                "parameter": f"sigma_theta[{c}]",
                "meaning": f"family spread of {c}",
                "estimate": cell(sd[:, j], ci_prob),
            }
        )
    if "sigma_group" in present:
        sg = post.draws("sigma_group")
        for j, c in enumerate(GROUP_COEFS):
            rows.append(
                {
                    "parameter": f"sigma_group[{c}]",
                    "meaning": f"group spread of the population mean of {c}",
                    "estimate": cell(sg[:, j], ci_prob),
                }
            )
    return pd.DataFrame(rows)


def priors_table(priors: Priors) -> pd.DataFrame:
    """Prior settings with their meaning, read from the :class:`Priors` docstring."""
    doc = inspect.getdoc(type(priors)) or ""
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
        return "(" + ", ".join(fmt(x, 3) for x in v) + ")"
    return fmt(v, 3)


def model_description(post) -> list[str]:
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
    if c.exponents == "pooled":
        exps += " " + exponent_form_note(post.data, c.law)
    if c.method == "nuts":
        method = (
            f"Sampled with NUTS: {c.num_chains} chains × {c.num_samples} draws after "
            f"{c.num_warmup} warm-up steps (target acceptance {c.target_accept}, maximum tree "
            f"depth {c.max_tree_depth}), started around a MAP estimate, seed {c.seed}."
        )
    else:
        method = (
            f"Fitted as a MAP point estimate (best of {c.map_starts} L-BFGS starts, seed "
            f"{c.seed}); there are no posterior draws."
        )
    frac = getattr(c, "warmup_fraction", None)
    if c.min_tokens is None:
        cut = "no warm-up cut"
    else:
        bound = f"{format_count(c.min_tokens)} tokens"
        if frac is not None:
            bound += f" or {frac:.0%} of the run's final tokens (whichever is smaller)"
        cut = (
            f"intermediate checkpoints below {bound} were dropped (warm-up), each run's "
            "final checkpoint kept"
        )
    thin = (
        "all checkpoints kept"
        if c.max_points_per_run is None
        else f"dense curves thinned to at most {c.max_points_per_run} log-spaced "
        "checkpoints per run"
    )
    if post.data.has_schedules:
        sched = (
            "Learning-rate schedules were given (`lr` column): D in the law is the area under "
            "each run's rate relative to its peak (the tokens, for a constant rate), and every "
            "drop of the rate lowers the loss by an annealing bonus that grows as training "
            "follows it (the multi-power law of Luo et al., 2025; where a family anneals at "
            "several sizes, the bonus also scales with size), so intermediate checkpoints "
            "of an annealed run are read as such. Runs without an `lr` are taken at a constant "
            "rate."
        )
    else:
        sched = (
            "No learning-rate schedule was given: every kept checkpoint is read as the final "
            "loss of a run trained to that many tokens at a constant rate. For runs whose rate "
            "decays (cosine, WSD) the early checkpoints sit above such runs' ends, which "
            "steepens the token exponent; pass an `lr` column to separate the two."
        )
    return [
        f"Each family's mean loss follows {law}. Losses are divided by a fixed per-family "
        "constant (the median kept loss) so that families measured on different scales can "
        "be pooled.",
        exps + " The family offsets are partially pooled around population means with an "
        "LKJ prior on their correlation: a family with one run borrows strength from the "
        "others, a family with many runs mostly speaks for itself." + group_note(post.data),
        "Each run has its own offset (seed-level noise); its scale is the spread of runs "
        "around the family's law, which a new run gets. "
        + replicate_note(post.data, _has_discrepancy(post))
        + " The "
        "checkpoints of a run deviate from its curve by an Ornstein–Uhlenbeck process in "
        "log-token time with Student-t innovations, so that hundreds of correlated "
        "checkpoints do not count as independent evidence." + discrepancy_note(post),
        sched,
        "Predictions come in two kinds: `mean` is the law itself"
        + (" plus the discrepancy at the queried size" if _has_discrepancy(post) else "")
        + "; `new_run` adds a fresh run's seed effect and evaluation noise, i.e. what one "
        "new training run would reach.",
        f"Data preparation: {cut}; {thin}. " + method,
    ]


def _has_discrepancy(post) -> bool:
    return "sigma_delta" in post.tree["posterior"]


def discrepancy_note(post) -> str:
    """How the size-level discrepancy enters, if the fit has one."""
    if not _has_discrepancy(post):
        return ""
    return (
        " Apart from the seed effects, each family's sizes depart from its power law by a "
        "size-level discrepancy: a Gaussian process in log N (exponential kernel, scale "
        "σ_δ and length ℓ_δ shared by all families) that runs of one size share. A "
        "prediction near a fitted size inherits that size's departure; one far from every "
        "fitted size carries up to σ_δ of new uncertainty."
        + (
            " Families whose final losses span several token budgets at one size (isoFLOP "
            "or over-training grids) have a second process of the same kind in log D."
            if "sigma_delta_d" in post.tree["posterior"]
            else ""
        )
    )


def exponent_form_note(data, law: str) -> str:
    """Which families' pooled exponents were sampled as themselves (centred), and why."""
    centred = centring.centred_exponents(data.inputs(), law)
    names = ("α_f",) if law == "overtrain" else ("α_f", "β_f")

    def listed(col):
        fams = [f for f, c in zip(data.families, col, strict=True) if c]
        if len(fams) == len(data.families):
            return "every family"
        return ", ".join(fams) if fams else "no family"

    which = "; ".join(f"{n}: {listed(centred[:, i])}" for i, n in enumerate(names))
    return (
        "Where a family's own data pin an exponent "
        f"({centring.CENTRED_EXPONENT_CHECKPOINTS} or more checkpoints, and "
        f"{centring.CENTRED_EXPONENT_SIZES} or more sizes for α_f, a factor of "
        f"{centring.CENTRED_EXPONENT_TOKEN_SPAN:g} or more in tokens for β_f) it is sampled "
        "as itself, elsewhere as its standardised departure from the shared value, which "
        f"avoids a funnel; the law is the same either way. Sampled as itself: {which}."
    )


def group_note(data) -> str:
    """How the fit's family groups (``group`` column) enter the pooling, if there are any."""
    if data.family_group is None:
        return ""
    return (
        f" The families form {len(data.groups)} groups (`group` column): each group shifts "
        "the population means of a, b and the exponents by its own learned amount, so a "
        "family borrows first from the families of its group."
    )


def replicate_note(data, discrepancy: bool = False) -> str:
    """Whether any family has replicate runs (two runs of one size), which pin seed scatter."""
    from bayescale.seeds import seed_groups

    n_rep = int(np.sum(seed_groups(data.inputs(), by_size=True)[1] > 1))
    if n_rep:
        return (
            f"{n_rep} (family, size) pair(s) have replicate runs, which measure seed scatter "
            "directly."
        )
    if discrepancy:
        return (
            "No family has two runs of one size, so the data say nothing of seed scatter "
            "apart from how each size departs from the family's law (the discrepancy's): "
            "this scale is its prior's (half-normal, sd 0.03 in log loss)."
        )
    return (
        "No family has two runs of one size, so this scale also absorbs how each size "
        "departs from the family's power law, not seed scatter alone; its prior "
        "(half-normal, sd 0.03 in log loss) carries what the data cannot separate."
    )


def attach_observed(t: Target, heldout: pd.DataFrame | None) -> Target:
    """The target with the held-out loss at the same (family, params, tokens), if any."""
    if t.observed is not None or heldout is None:
        return t
    hit = heldout[
        (heldout["family"].astype(str) == t.family)
        & np.isclose(heldout["params"].to_numpy(float), t.params, rtol=1e-6)
        & np.isclose(heldout["tokens"].to_numpy(float), t.tokens, rtol=1e-6)
    ]
    if len(hit):
        return Target(t.family, t.params, t.tokens, float(hit["loss"].mean()))
    return t
