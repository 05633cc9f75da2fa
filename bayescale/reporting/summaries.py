"""What a report says, as plain tables and sentences (usable from a notebook too).

Every function takes a fitted :class:`~bayescale.posterior.Posterior` and
returns a DataFrame or text; :mod:`bayescale.reporting.build` arranges them,
answer first.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from bayescale import laws
from bayescale.convergence import RHAT_MAX, convergence_advice
from bayescale.model import COEFS, GROUP_COEFS
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
        checks += [("spreads", "warn", problem) for problem in diag["problems"]]
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
        "e_mu": "population mean of E's share of the law at 1e9 params, 1e11 tokens",
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
