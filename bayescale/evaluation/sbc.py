"""Simulation-based calibration (Talts et al. 2018) of the model and its default inference.

Each replicate draws every parameter from the prior, simulates a small data
set from the model, fits it with the default inference
(:func:`bayescale.fitting.sample_inputs`) and records where the true value
falls among the posterior draws. If model and inference are right, these
ranks are uniform, and a 90% interval holds the truth in 90% of replicates.

No part of the prior depends on the data: the replicates' losses are
simulated on the relative scale (each family's loss constant is 1), so the
prior the data are drawn from is exactly the one the fit uses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

#: Scalar parameters whose ranks are recorded, with the index of their family if any
#: (``sigma_delta`` only for the model with the discrepancy: :func:`ranked`).
PARAMETERS = (
    ("alpha", None),
    ("beta", None),
    ("sigma_seed", None),
    ("sigma_delta", None),
    ("log_E", 0),
    ("a", 0),
    ("b", 0),
    ("sigma_obs", 0),
    ("ell", None),
)


def ranked(config) -> tuple:
    """The :data:`PARAMETERS` of the model ``config`` fits."""
    return tuple(p for p in PARAMETERS if config.discrepancy or p[0] != "sigma_delta")


@dataclass(frozen=True)
class Design:
    """The shape of a simulated data set: families, sizes, seeds and checkpoints."""

    n_families: int = 2
    sizes: tuple = (1e8, 3e8, 1e9)
    seeds_per_size: int = 2
    n_checkpoints: int = 8
    tokens: tuple = (1e10, 1e11)


def design_inputs(design: Design = Design()):  # noqa: B008 - frozen
    """Model arrays of the design, without observations (each replicate simulates its own)."""
    from bayescale.data import ScalingData
    from bayescale.simulate import simulate_frame

    frame, _ = simulate_frame(
        n_families=design.n_families,
        sizes=design.sizes,
        seeds_per_size=design.seeds_per_size,
        n_checkpoints=design.n_checkpoints,
        tokens_range=design.tokens,
        seed=0,
    )
    data = ScalingData.from_frame(frame, min_tokens=None, max_points_per_run=None)
    inputs = data.inputs()
    return inputs._replace(y=None)


def prior_draw(inputs, config, key) -> dict:
    """One draw of every site from the prior, ``y`` included."""
    from numpyro.infer import Predictive

    from bayescale.fitting import model_kwargs
    from bayescale.model import scaling_model

    kwargs = model_kwargs(inputs, config)
    out = Predictive(scaling_model, num_samples=1)(key, **kwargs)
    return {k: np.asarray(v)[0] for k, v in out.items()}


def replicate(i: int, inputs, config, *, n_ranks: int = 99) -> dict:
    """Simulate replicate ``i`` from the prior, fit it, and rank the truth.

    Returns one flat record: per parameter its rank among ``n_ranks`` thinned
    draws (0 to ``n_ranks``) and whether its 50% and 90% intervals hold the
    truth, plus the fit's divergences, worst split R-hat and ``stuck_chains``:
    the chains that never left a ranked parameter's value (a frozen sampler,
    which slow mixing, however slow, does not produce), and the target
    acceptance and warm-up of the draws kept.
    """
    import jax
    from numpyro.diagnostics import split_gelman_rubin

    from bayescale.fitting import sample_inputs

    truth = prior_draw(inputs, config, jax.random.PRNGKey(10_000 + i))
    fit_inputs = inputs._replace(y=truth["y"])
    samples, stats, used = sample_inputs(fit_inputs, config, progress_bar=False)
    # as used: a retry after divergences raises the acceptance (or doubles the warm-up)
    record = {"replicate": i, "target_accept": used.target_accept, "num_warmup": used.num_warmup}
    rhats = []
    stuck = []
    for name, j in ranked(config):
        draws = np.asarray(samples[name])
        draws = draws if j is None else draws[..., j]
        true = float(truth[name] if j is None else truth[name][j])
        label = name if j is None else f"{name}[{j}]"
        flat = draws.reshape(-1)
        thin = flat[np.linspace(0, flat.size - 1, n_ranks).round().astype(int)]
        record[f"rank.{label}"] = int(np.sum(thin < true))
        for level in (0.5, 0.9):
            lo, hi = np.quantile(flat, [(1 - level) / 2, (1 + level) / 2])
            record[f"in{round(100 * level)}.{label}"] = bool(lo <= true <= hi)
        record[f"true.{label}"] = true
        if draws.ndim == 2 and draws.shape[0] > 1:
            rhats.append(float(split_gelman_rubin(draws)))
        if draws.ndim == 2:
            stuck.append(np.ptp(draws, axis=1) == 0)
    record["rhat_max"] = max(rhats) if rhats else math.nan
    record["stuck_chains"] = int(np.any(stuck, axis=0).sum()) if stuck else 0
    record["divergences"] = int(np.sum(stats["diverging"])) if stats is not None else 0
    return record


def replicates(indices, inputs, config, *, n_ranks: int = 99):
    """Yield :func:`replicate` records for ``indices``, each with its ``seconds``.

    Every replicate compiles its own model; JAX's caches are cleared after
    each, or one process running many replicates runs out of memory.
    """
    import time

    import jax

    for i in indices:
        start = time.perf_counter()
        rec = replicate(i, inputs, config, n_ranks=n_ranks)
        rec["seconds"] = time.perf_counter() - start
        jax.clear_caches()
        yield rec


def run_sbc(n: int, config=None, design: Design = Design(), *, n_ranks: int = 99, report=None):  # noqa: B008
    """``n`` replicates; a DataFrame with one row per replicate (see :func:`replicate`)."""
    from bayescale.fitting import FitConfig

    config = config or FitConfig()
    rows = []
    for rec in replicates(range(int(n)), design_inputs(design), config, n_ranks=n_ranks):
        rows.append(rec)
        if report is not None:
            report(rec)
    return pd.DataFrame(rows)


def rank_counts(ranks, n_ranks: int = 99, bins: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Histogram of ranks in ``0..n_ranks``: ``(counts, edges)``, equal bins of whole ranks."""
    edges = np.linspace(0, n_ranks + 1, bins + 1)
    counts, _ = np.histogram(np.asarray(ranks), bins=edges)
    return counts, edges


def uniformity(ranks, n_ranks: int = 99, bins: int = 10) -> float:
    """Chi-square test p-value that ranks in ``0..n_ranks`` are uniform (``bins`` bins)."""
    from scipy import stats

    counts, _ = rank_counts(ranks, n_ranks, bins)
    return float(stats.chisquare(counts).pvalue)


def summarize(records: pd.DataFrame, n_ranks: int = 99) -> pd.DataFrame:
    """Per parameter: replicates, 50% and 90% coverage, and the uniformity p-value."""
    rows = []
    for col in records.columns:
        if not col.startswith("rank."):
            continue
        label = col[len("rank.") :]
        rows.append(
            {
                "parameter": label,
                "replicates": int(records[col].notna().sum()),
                "coverage50": float(records[f"in50.{label}"].mean()),
                "coverage90": float(records[f"in90.{label}"].mean()),
                "uniformity_p": uniformity(records[col].dropna(), n_ranks),
            }
        )
    return pd.DataFrame(rows)


def coverage_band(n: int, p: float, prob: float = 0.95) -> tuple[float, float]:
    """Central ``prob`` binomial band of the coverage fraction of ``n`` checks at rate ``p``."""
    from scipy import stats

    lo, hi = stats.binom.interval(prob, n, p)
    return lo / n, hi / n
