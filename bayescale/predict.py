"""Posterior predictive queries: loss at (N, D), compute-optimal allocation.

Everything works on stacked posterior draws (shape ``(S, ...)``). A family
absent from the fit is drawn from the population distribution, including a
draw of its unknown loss scale.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from bayescale import laws
from bayescale.model import inputs_from_data, law_offset_runs

KINDS = ("mean", "new_run")
POINT_ESTIMATE_DRAWS = 1000


class UnseenFamilyWarning(UserWarning):
    """A query names a family that was not in the fit."""


def family_draws(post, family: str, *, seed: int = 0) -> dict:
    """Per-draw law coefficients of one family (relative scale) and its loss scale.

    Returns a dict of arrays of shape ``(S,)``: ``log_E``, ``a``, ``b``,
    ``alpha``, ``beta``, ``scale`` (the family's loss constant), ``sigma_seed``,
    ``sigma_obs`` (checkpoint noise scale) and ``law_sd``: the sd of the
    family's average run effect, which the fitted law absorbs (run effects sum
    to zero within a family), ``sigma_seed / sqrt(K)`` for ``K`` fitted runs.
    For a family not in the fit, coefficients come from the population
    distribution and the scale from the spread of the fitted families' scales.
    """
    rng = np.random.default_rng(seed)
    sigma_seed = post.draws("sigma_seed")
    s = sigma_seed.shape[0]
    if family in post.families:
        f = post.families.index(family)
        n_runs = int(law_offset_runs(inputs_from_data(post.data))[f])
        return {
            "log_E": post.draws("log_E")[:, f],
            "a": post.draws("a")[:, f],
            "b": post.draws("b")[:, f],
            "alpha": post.draws("alpha_f")[:, f],
            "beta": post.draws("beta_f")[:, f],
            "scale": np.full(s, post.data.family_scale[f]),
            "sigma_seed": sigma_seed,
            "sigma_obs": post.draws("sigma_obs")[:, f],
            "law_sd": sigma_seed / np.sqrt(n_runs) if n_runs else np.zeros(s),
        }
    warnings.warn(
        f"family {family!r} is not in the fit (fitted: {list(post.families)}); predicting "
        "from the population distribution, with the loss scale drawn from the fitted families'",
        UnseenFamilyWarning,
        stacklevel=3,
    )
    mu = post.draws("mu_theta")
    sd = post.draws("sigma_theta")
    chol = post.draws("L_omega")
    z = rng.standard_normal(mu.shape)
    theta = mu + np.einsum("sij,sj->si", sd[:, :, None] * chol, z)
    e_mu, e_kappa = post.draws("e_mu"), post.draws("e_kappa")
    e_frac = rng.beta(e_mu * e_kappa, (1.0 - e_mu) * e_kappa)
    # E's bound for a family never seen: the fitted families' typical bound
    log_e = np.log(e_frac) + float(np.mean(inputs_from_data(post.data).log_e_max))
    alpha = post.draws("alpha")
    beta = post.draws("beta")
    if post.config.exponents == "pooled":
        za = rng.standard_normal(s)
        alpha = alpha * np.exp(post.draws("tau_alpha") * za)
        if post.config.law == "overtrain":
            beta = alpha
        else:
            beta = beta * np.exp(post.draws("tau_beta") * rng.standard_normal(s))
    log_scales = np.log(post.data.family_scale)
    spread = log_scales.std(ddof=1) if len(log_scales) > 1 else 1.0
    scale = np.exp(rng.normal(log_scales.mean(), spread, size=s))
    return {
        "log_E": log_e,
        "a": theta[:, 0],
        "b": theta[:, 1],
        "alpha": alpha,
        "beta": beta,
        "scale": scale,
        "sigma_seed": sigma_seed,
        # checkpoint noise of an unseen family: a fitted family's, at random
        "sigma_obs": post.draws("sigma_obs")[np.arange(s), rng.integers(0, len(post.families), s)],
        "law_sd": np.zeros(s),
    }


def loss_draws(post, family, params, tokens, *, kind: str = "mean", seed: int = 0) -> np.ndarray:
    """Draws of the loss at each ``(params, tokens)`` pair: shape ``(S, P)``."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    params, tokens = np.broadcast_arrays(
        np.atleast_1d(np.asarray(params, dtype=float)),
        np.atleast_1d(np.asarray(tokens, dtype=float)),
    )
    if np.any(~np.isfinite(params) | (params <= 0)) or np.any(~np.isfinite(tokens) | (tokens <= 0)):
        raise ValueError("params and tokens must be finite and > 0 (raw counts)")
    if np.any(params < 1e4) or np.any(tokens < 1e4):
        raise ValueError(
            "params/tokens below 1e4 look like billions; pass raw counts (e.g. 7e9, not 7)"
        )
    d = family_draws(post, family, seed=seed)
    if post.n_draws == 1:
        # a point estimate: repeat it so that new_run noise still has a spread
        d = {k: np.repeat(v, POINT_ESTIMATE_DRAWS) for k, v in d.items()}
    log_n, log_mu = _log_law(d, params, tokens)
    col = {k: v[:, None] for k, v in d.items()}
    rng = np.random.default_rng([seed, 1])
    # one offset per draw, shared by all queried points: they describe one law
    # (or one new run), not independent ones
    if kind == "new_run":
        run_sd = np.sqrt(col["law_sd"] ** 2 + col["sigma_seed"] ** 2)
        log_mu = log_mu + run_sd * rng.standard_normal((log_mu.shape[0], 1))
        # plus the noise of evaluating one checkpoint
        log_mu = log_mu + col["sigma_obs"] * rng.standard_normal(log_mu.shape)
    else:
        log_mu = log_mu + col["law_sd"] * rng.standard_normal((log_mu.shape[0], 1))
    return col["scale"] * np.exp(log_mu)


def _log_law(d: dict, params, tokens):
    log_n = np.log(params)[None, :] - laws.LOG_N_REF
    log_d = np.log(tokens)[None, :] - laws.LOG_D_REF
    col = {k: v[:, None] for k, v in d.items()}
    log_mu = laws.log_chinchilla_centered(
        log_n, log_d, col["log_E"], col["a"], col["b"], col["alpha"], col["beta"]
    )
    return log_n, np.asarray(log_mu)


def run_draws(post, run: int, tokens) -> np.ndarray:
    """Draws of a fitted run's trajectory, the law times ``exp(u_run)``: shape (S, P).

    This is the curve the likelihood centres that run's checkpoints on.
    """
    tokens = np.atleast_1d(np.asarray(tokens, dtype=float))
    family = post.families[int(post.data.run_family[run])]
    d = family_draws(post, family)
    params = np.full(tokens.shape, float(post.data.run_params[run]))
    _, log_mu = _log_law(d, params, tokens)
    return d["scale"][:, None] * np.exp(log_mu + post.draws("u")[:, run][:, None])


def _interval(draws: np.ndarray, prob: float):
    lo, med, hi = np.quantile(draws, [(1 - prob) / 2, 0.5, (1 + prob) / 2], axis=0)
    return med, lo, hi


def _check_prob(prob: float) -> float:
    prob = float(prob)
    if not 0 < prob < 1:
        raise ValueError(f"prob must be in (0, 1), got {prob}")
    return prob


def predict(
    post,
    family: str,
    params,
    tokens,
    *,
    kind: str = "mean",
    prob: float = 0.9,
    return_draws: bool = False,
    seed: int = 0,
) -> pd.DataFrame:
    """Predicted loss with an equal-tailed interval.

    Parameters
    ----------
    post : Posterior
    family : str
        Fitted family, or a new one (predicted from the population).
    params, tokens : float or array
        Raw parameter and token counts; broadcast against each other.
    kind : {"mean", "new_run"}
        ``"mean"``: the family's law (its average run). ``"new_run"``: what one
        fresh training run will measure: the law plus a new seed effect
        ``u ~ Normal(0, sigma_seed)`` and the noise of one evaluation
        (Normal with the family's checkpoint-noise scale ``sigma_obs``).
    prob : float
        Interval probability (default 0.9).
    return_draws : bool
        Add a ``draws`` column holding each row's posterior draws.
    seed : int

    Returns
    -------
    pandas.DataFrame
        Columns: family, params, tokens, kind, prob, median, mean, lower, upper.
    """
    prob = _check_prob(prob)
    draws = loss_draws(post, family, params, tokens, kind=kind, seed=seed)
    p, t = np.broadcast_arrays(np.atleast_1d(params), np.atleast_1d(tokens))
    med, lo, hi = _interval(draws, prob)
    out = pd.DataFrame(
        {
            "family": family,
            "params": p.astype(float),
            "tokens": t.astype(float),
            "kind": kind,
            "prob": prob,
            "median": med,
            "mean": draws.mean(axis=0),
            "lower": lo,
            "upper": hi,
        }
    )
    if return_draws:
        out["draws"] = list(draws.T)
    return out


def compute_optimal(post, flops, *, family: str, prob: float = 0.9, seed: int = 0) -> pd.DataFrame:
    """Compute-optimal N*, D*, tokens per parameter and loss at FLOP budgets ``C = 6ND``.

    Returns
    -------
    pandas.DataFrame
        One row per budget: ``flops`` and, for ``params_opt``, ``tokens_opt``,
        ``tokens_per_param`` and ``loss_opt``, the median and interval bounds
        (``*_lower``, ``*_upper``).
    """
    prob = _check_prob(prob)
    flops = np.atleast_1d(np.asarray(flops, dtype=float))
    if np.any(~np.isfinite(flops) | (flops <= 0)):
        raise ValueError("flops must be finite and > 0")
    d = family_draws(post, family, seed=seed)
    col = {k: v[:, None] for k, v in d.items()}
    big_a = np.exp(col["a"] + col["alpha"] * laws.LOG_N_REF)
    big_b = np.exp(col["b"] + col["beta"] * laws.LOG_D_REF)
    n_opt, d_opt = (
        np.asarray(x)
        for x in laws.compute_optimal(flops[None, :], big_a, big_b, col["alpha"], col["beta"])
    )
    loss = col["scale"] * (
        np.exp(col["log_E"]) + big_a * n_opt ** (-col["alpha"]) + big_b * d_opt ** (-col["beta"])
    )
    out = {"family": family, "flops": flops, "prob": prob}
    for name, arr in (
        ("params_opt", n_opt),
        ("tokens_opt", d_opt),
        ("tokens_per_param", d_opt / n_opt),
        ("loss_opt", loss),
    ):
        med, lo, hi = _interval(arr, prob)
        out[name] = med
        out[f"{name}_lower"] = lo
        out[f"{name}_upper"] = hi
    return pd.DataFrame(out)


def optimal_tok_per_param(post, family, *, prob: float = 0.9, seed: int = 0) -> pd.DataFrame:
    """Loss-optimal tokens per parameter ``M* = (b / a)^(1 / (2 eta))`` with an interval.

    With ``alpha = beta`` the law in ``(C, M = D/N)`` coordinates (Gadre et al.)
    is ``E + (a M^eta + b M^-eta) C^-eta``, ``eta = alpha / 2``, and its
    minimiser in ``M`` at fixed compute does not depend on the budget. Only
    fits with tied exponents (``bayescale.fit(..., law="overtrain")``) have
    this property; for others use :func:`compute_optimal`, whose ratio
    ``D*/N*`` changes with the budget.

    Parameters
    ----------
    post : Posterior
        A fit with ``law="overtrain"``.
    family : str or list of str
        One row per family; an unseen family is drawn from the population.
    prob : float
    seed : int

    Returns
    -------
    pandas.DataFrame
        Columns: family, prob, median, mean, lower, upper (of M*) and
        ``eta_median``.
    """
    prob = _check_prob(prob)
    if post.config.law != "overtrain":
        raise ValueError(
            f"M* is budget-independent only when alpha = beta; this fit has law="
            f"{post.config.law!r}. Refit with law='overtrain', or use compute_optimal(post, "
            "flops, family=...) for tokens per parameter at a given budget."
        )
    rows = []
    for fam in [family] if isinstance(family, str) else list(family):
        d = family_draws(post, fam, seed=seed)
        big_a = np.exp(d["a"] + d["alpha"] * laws.LOG_N_REF)
        big_b = np.exp(d["b"] + d["beta"] * laws.LOG_D_REF)
        _, a, b, eta = laws.overtrain_from_chinchilla(np.exp(d["log_E"]), big_a, big_b, d["alpha"])
        m_star = np.asarray(laws.optimal_tok_per_param(a, b, eta), dtype=float)
        med, lo, hi = _interval(m_star, prob)
        rows.append(
            {
                "family": fam,
                "prob": prob,
                "median": med,
                "mean": m_star.mean(),
                "lower": lo,
                "upper": hi,
                "eta_median": float(np.median(eta)),
            }
        )
    return pd.DataFrame(rows)
