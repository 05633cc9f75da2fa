"""What every protocol shares: fit settings, the fit log, prediction rows, the result."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from bayescale.evaluation.metrics import frame, target_rows
from bayescale.fitting import FitConfig

#: One INFO line per protocol fit (a protocol runs for up to hours);
#: ``benchmarks/protocols.py`` shows them on stderr.
log_fits = logging.getLogger("bayescale.evaluation")

#: Protocol defaults: NUTS 4 x (1500 + 1000), <= 50 checkpoints per run. Protocol fits
#: hold up to 26 families, whose dense mass matrix (5 per family) 500 warm-up steps
#: estimate poorly: one-model Pythia from 1.41B gave R-hat 1.35 / 1.09 / 1.03 (bulk ESS
#: 10 / 32 / 98) after 500 / 1000 / 1500 warm-up steps. 1000 draws, not 500: below
#: about 400 effective draws, chains that agree still show R-hat above 1.01
#: (``benchmarks/rhat_resolution.py``), and Gadre's fits had 260-430 at 500.
DEFAULT = FitConfig(num_warmup=1500, num_samples=1000, max_points_per_run=50)
#: Short chains and thinner curves for a sanity pass (``quick=True``).
QUICK = FitConfig(num_chains=2, num_warmup=150, num_samples=150, max_points_per_run=20)
#: The MAP point estimate (no intervals), for the cheap cells of a grid.
MAP = FitConfig(method="map", max_points_per_run=50)
#: The columns of a protocol's context families that reach its fits (``group``
#: when the table has one, so that a protocol can pool by family group).
FIT_COLUMNS = ("family", "run", "params", "tokens", "loss", "is_final", "group")


def fit_columns(frame_: pd.DataFrame) -> pd.DataFrame:
    """The :data:`FIT_COLUMNS` the table has, in that order."""
    return frame_[[c for c in FIT_COLUMNS if c in frame_]]


#: Where a protocol's default fits depart from :data:`DEFAULT`, and why.
#:
#: * ``gadre``: NUTS target acceptance 0.99. Five single-checkpoint runs per corpus
#:   leave the law mostly to its priors, whose funnels the default step size (0.9)
#:   diverges in: 456 divergences in the 8 fits, 36 at 0.95 (max R-hat 1.196 -> 1.040).
#:   Later model changes left 8 at 0.95, all in the hierarchical over-training fit at
#:   the smallest spread of the three corpora's ``b_f`` (a funnel of centred offsets);
#:   that fit had 1 at 0.98 and none at 0.99.
#: * ``hitchhiker``: target acceptance 0.95. Most target families are two fitted sizes
#:   of one run each, whose size exponent and E the priors share with the data; at 0.9
#:   the 24 one-family fits had 378 divergences in 10 fits (255 in GPT2-c4-3, 109 in
#:   lambda) and 13 above R-hat 1.01, at 0.95 29 in 7 and 9 (median 49 s per fit
#:   instead of 39).
PROTOCOL_SETTINGS = {
    "gadre": replace(DEFAULT, target_accept=0.99),
    "hitchhiker": replace(DEFAULT, target_accept=0.95),
}


def protocol_settings(protocol: str, quick: bool = False) -> FitConfig:
    """The fit settings ``protocol`` runs with when given none (``quick``: :data:`QUICK`)."""
    return QUICK if quick else PROTOCOL_SETTINGS.get(protocol, DEFAULT)


def settings_for(config: FitConfig | None, quick: bool, seed: int, protocol: str) -> FitConfig:
    """A protocol's fit settings: ``config``, else :func:`protocol_settings`; seeded."""
    return replace(config or protocol_settings(protocol, quick), seed=seed)


@dataclass(frozen=True)
class Evaluation:
    """The result of a protocol.

    Attributes
    ----------
    points : pandas.DataFrame
        One row per (target, method, kind), columns
        :data:`~bayescale.evaluation.metrics.COLUMNS` (and protocol extras).
    fits : pandas.DataFrame
        One row per bayescale fit: what it took and how it sampled.
    """

    points: pd.DataFrame
    fits: pd.DataFrame = field(default_factory=pd.DataFrame)

    def summary(self, by=None) -> pd.DataFrame:
        """:func:`~bayescale.evaluation.metrics.summarize` of the points."""
        from bayescale.evaluation.metrics import summarize

        return summarize(self.points, by)


def fit_logged(frame_, config: FitConfig, log: list, *, label: str, **overrides):
    """Fit bayescale and record what the fit took and how it sampled.

    JAX's caches are cleared after the fit: every fit compiles its own model,
    and a protocol's process that kept them all ran out of memory maps after
    17 one-family fits (each fit adds thousands; the limit is about 65,000).
    """
    import jax

    from bayescale.fitting import fit

    config = replace(config, **overrides)
    start = time.perf_counter()
    post = fit(frame_, config, progress_bar=False)
    jax.clear_caches()
    diag = post.diagnostics()
    rec = {
        "fit": label,
        "method": config.label(),
        # as used: a retry after divergent transitions raises the acceptance or,
        # at 0.99, doubles the warm-up
        "target_accept": post.config.target_accept,
        "num_warmup": post.config.num_warmup,
        "warmed_up_again": _settings(post.config) != _settings(config),
        "law": config.law,
        "exponents": config.exponents,
        "families": post.data.n_families,
        "runs": post.data.n_runs,
        "checkpoints": post.data.n_obs,
        "seconds": time.perf_counter() - start,
        "rhat_max": diag.get("rhat_max"),
        "rhat_worst": next(iter(diag.get("rhat_worst", {})), ""),
        "ess_bulk_min": diag.get("ess_bulk_min"),
        "divergences": diag.get("divergences"),
        "divergence_sites": ", ".join(
            f"{v} {d:+.1f} sd" for v, d in diag.get("divergence_sites", {}).items()
        ),
        "draws": diag.get("draws"),
        "num_samples": config.num_samples,
        "chain_apart": _apart_text(diag.get("chain_apart")),
    }
    log.append(rec)
    line = f"[fit {len(log)}] {label}: {rec['seconds']:.0f} s"
    if config.method == "nuts":
        line += f", R-hat {rec['rhat_max']:.3f} ({rec['rhat_worst']}), "
        line += f"{rec['divergences']} divergences"
        line += f" (at {rec['divergence_sites']})" if rec["divergence_sites"] else ""
        line += f"; {rec['chain_apart']}" if rec["chain_apart"] else ""
    log_fits.info(line)
    return post


def _settings(config: FitConfig) -> tuple:
    """The warm-up settings a retry after divergences changes."""
    return config.target_accept, config.num_warmup


def _apart_text(apart: dict | None) -> str:
    """A fit record's short account of a chain apart (empty when none is)."""
    if not apart:
        return ""
    return (
        f"chain {apart['chain'] + 1} apart at {apart['entry']} {apart['mean']:.3g} "
        f"(others {apart['others_mean']:.3g}), log density {apart['lp_gap']:+.1f}"
    )


def posterior_rows(post, family: str, targets: pd.DataFrame, base: dict, *, seed=0) -> list:
    """bayescale predictions at the targets: kinds mean and new_run, or one MAP point."""
    from bayescale import laws
    from bayescale.queries import log_loss_draws

    n = targets["params"].to_numpy(float)
    d = targets["tokens"].to_numpy(float)
    actual = targets["actual"].to_numpy(float)
    base = {**base, "fit_method": post.config.method, "law": post.config.law}
    if post.is_point_estimate:
        law = post.law(family).map(lambda v: float(np.asarray(v)[0]))
        point = np.exp(np.asarray(laws.log_loss(law, np.log(n), np.log(d))))
        return target_rows({**base, "kind": "point"}, targets, actual, point)
    rows = []
    for kind in ("mean", "new_run"):
        log_draws = log_loss_draws(post, family, n, d, kind=kind, seed=seed)
        med = np.exp(np.median(log_draws, axis=0))
        rows += target_rows({**base, "kind": kind}, targets, actual, med, log_draws)
    return rows


def point_rows(fit, targets: pd.DataFrame, base: dict) -> list[dict]:
    """Rows of a point-estimate baseline (``fit.predict(params, tokens)``)."""
    pred = fit.predict(targets["params"].to_numpy(float), targets["tokens"].to_numpy(float))
    return target_rows({**base, "kind": "point"}, targets, targets["actual"], pred)


def result(rows: list, log: list) -> Evaluation:
    return Evaluation(frame(rows), pd.DataFrame(log))
