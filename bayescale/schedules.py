"""Learning-rate schedules in the law: LR area and the annealing bonus.

A run trained with a decaying learning rate sits below the law of a constant
schedule: it has moved less far (its summed learning rate is smaller) but it
gains from every drop of the rate. bayescale follows the multi-power law of
Luo et al. (2025), with the LR ``eta`` normalised by the run's own peak rate
(sizes are trained at their own tuned peaks; the law is about the schedule's
shape) and time measured in tokens::

    L(N, t) = E + A / N^alpha + B / S(t)^beta - LD(t)
    S(t)    = the area under eta up to t (tokens; equals t for a constant LR)
    LD(t)   = B_f (N / N_REF)^kappa sum_k (eta_{k-1} - eta_k) G(eta_k^-gamma S_k(t) C / D_REF)
    G(x)    = 1 - (1 + x)^-beta_LD

``S_k(t)`` is the area from the ``k``-th logged LR to ``t``: each drop of the
rate lowers the loss by up to ``B_f (N / N_REF)^kappa`` times its size, the
more so the more training follows it. Luo et al. fit the bonus per model
size; one family shares ``B_f`` across its sizes and ``kappa`` (shared by all
families) lets it grow or shrink with size. With a constant rate
``S(t) = t`` (up to the warm-up) and ``LD = 0``, so the law is the
Chinchilla law of a run without a schedule.

Before a run's first logged row the LR is taken to ramp linearly from 0
(warm-up); between rows it is interpolated linearly; past the last row it
stays at the last value.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np

from bayescale.laws import LOG_D_REF, LOG_N_REF, log_loss

# the normalised LR below which eta^-gamma is not evaluated (a rate of zero)
MIN_ETA = 1e-4
# the annealing bonus may not take more than this share of the law's loss
MAX_BONUS_SHARE = 0.5
# drops of the rate are merged into at most this many bins per run (equal shares of
# the total drop): the bonus costs O(bins) per checkpoint in every gradient
MAX_DROP_BINS = 64
# two runs follow one schedule when their normalised rates differ by less than this
SAME_SCHEDULE_TOL = 0.02
# a schedule "decays through the run" when its rate is below 95% of the peak for more
# than this share of the run's tokens (cosine: ~85%; a WSD cooldown: its last 10-20%)
DECAY_SHARE = 0.5


class AnnealParams(NamedTuple):
    """Annealing-bonus parameters (relative loss scale); fields broadcast like LawParams."""

    B: object
    C: object
    beta: object
    gamma: object
    # the bonus grows as (N / N_REF)^kappa across a family's sizes (0: the same for all)
    kappa: object = 0.0

    def map(self, fn) -> AnnealParams:
        return AnnealParams(*(fn(v) if jnp.ndim(v) else v for v in self))


class Grid(NamedTuple):
    """One run's logged schedule: tokens, normalised LR and LR area at each row."""

    tokens: np.ndarray
    eta: np.ndarray
    area: np.ndarray


def grid(tokens, lr, lr_ref: float) -> Grid:
    """The LR area at each logged row of one run (rows sorted by tokens)."""
    tokens = np.asarray(tokens, dtype=float)
    eta = np.asarray(lr, dtype=float) / float(lr_ref)
    # a linear warm-up from 0 before the first row, trapezoids between rows
    steps = 0.5 * (eta[1:] + eta[:-1]) * np.diff(tokens)
    area = 0.5 * tokens[0] * eta[0] + np.concatenate([[0.0], np.cumsum(steps)])
    return Grid(tokens, eta, area)


def area_at(g: Grid, tokens) -> np.ndarray:
    """LR area at any tokens (the LR held at its last value past the last row)."""
    t = np.asarray(tokens, dtype=float)
    inside = np.interp(t, g.tokens, g.area)
    past = g.area[-1] + g.eta[-1] * (t - g.tokens[-1])
    before = 0.5 * g.eta[0] * t**2 / g.tokens[0]
    return np.where(t > g.tokens[-1], past, np.where(t < g.tokens[0], before, inside))


def drops(g: Grid, max_bins: int = MAX_DROP_BINS):
    """The rate's changes as (drop, eta, area) columns, at most ``max_bins`` of them.

    Rows where the rate does not change, and the warm-up before the peak,
    are left out. Beyond ``max_bins``
    changes, consecutive ones are merged into bins holding equal shares of
    the total change plus the LR area: a bin's drop is their sum, its eta and
    area their drop-weighted means.
    """
    d = g.eta[:-1] - g.eta[1:]
    # the warm-up's rise is not an annealing step: count changes from the peak on
    d[: int(np.argmax(g.eta))] = 0.0
    keep = np.flatnonzero(d != 0)
    d, eta, area = d[keep], g.eta[1:][keep], g.area[1:][keep]
    if d.size <= max_bins:
        return d, eta, area
    # bins hold equal shares of (drop + area): fine where the rate falls fast, and no bin
    # longer than 2 / max_bins of the run, so that a bin is seldom split by a checkpoint
    w = np.abs(d)
    span = np.diff(np.concatenate([[g.area[0]], area]))
    share = np.cumsum(w / w.sum() + span / span.sum()) / 2
    bins = np.minimum((share * max_bins - 1e-12).astype(int), max_bins - 1)
    total = np.bincount(bins, weights=d, minlength=max_bins)
    weight = np.bincount(bins, weights=w, minlength=max_bins)
    used = weight > 0
    eta_b = np.bincount(bins, weights=w * eta, minlength=max_bins)[used] / weight[used]
    area_b = np.bincount(bins, weights=w * area, minlength=max_bins)[used] / weight[used]
    return total[used], eta_b, area_b


def features(g: Grid, tokens, width: int | None = None):
    """Per query point: log LR area and the (drop, eta, area-after) columns of ``LD``.

    Returns ``log_area`` (P,) and three (P, K) arrays, ``K = width`` (padded
    with zero drops) or the number of columns of :func:`drops`.
    """
    t = np.asarray(tokens, dtype=float)
    area = area_at(g, t)
    d, e, a = drops(g)
    k = d.size
    width = k if width is None else int(width)
    drop = np.zeros(width)
    drop[:k] = d
    eta = np.ones(width)
    eta[:k] = np.maximum(e, MIN_ETA)
    grid_area = np.full(width, np.inf)
    grid_area[:k] = a
    after = area[:, None] - grid_area[None, :]
    seen = after >= 0
    return (
        np.log(area),
        np.where(seen, drop[None, :], 0.0),
        np.broadcast_to(eta, after.shape).copy(),
        np.where(seen, after, 0.0),
    )


def bonus(p: AnnealParams, drop, eta, after):
    """The annealing bonus ``LD`` (relative loss scale), summed over the last axis."""
    x = p.C * eta ** (-p.gamma) * after * math.exp(-LOG_D_REF)
    g = 1.0 - (1.0 + x) ** (-p.beta)
    return p.B * jnp.sum(drop * g, axis=-1)


def with_bonus(log_mu, ld):
    """``log(mu - LD)`` from ``log mu`` (relative scale), the bonus capped at half of mu."""
    share = jnp.clip(ld * jnp.exp(-log_mu), -MAX_BONUS_SHARE, MAX_BONUS_SHARE)
    return log_mu + jnp.log1p(-share)


def scheduled_log_loss(law, anneal, log_params, log_area, drop, eta, after):
    """The law on the LR area minus the annealing bonus, in log nats: the one evaluation.

    The model (per checkpoint) and the queries (per draw and query point) both
    call it; ``anneal`` None leaves the bonus out. Arguments broadcast as in
    :func:`bayescale.laws.log_loss` and :func:`bonus`.
    """
    log_mu = log_loss(law, log_params, log_area)
    if anneal is None:
        return log_mu
    rel = law.log_scale
    size = jnp.exp(anneal.kappa * (log_params - LOG_N_REF))
    anneal = anneal._replace(B=anneal.B * size)
    return rel + with_bonus(log_mu - rel, bonus(anneal, drop, eta, after))


def decaying_share(g: Grid) -> float:
    """The share of a run's tokens (from its peak on) at which the rate is below 95% of it."""
    if g.tokens.size < 2:
        return 0.0
    top = g.eta.max()
    # the first row at the peak (rounding can put a later row a hair above it)
    peak = int(np.argmax(g.eta >= 0.999 * top))
    t = np.linspace(g.tokens[peak], g.tokens[-1], 512)
    return float(np.mean(np.interp(t, g.tokens, g.eta) < 0.95 * top))


def one_schedule_families(run_family, grids) -> list:
    """Families whose runs all follow one schedule that decays through most of the run.

    For such a family the token term ``B / S^beta`` and the annealing bonus
    both explain how the loss falls as the rate decays, and only the law's
    form and the priors tell them apart; a second schedule (a constant-rate or
    WSD run) separates them. Rates are compared on the tokens the runs share.

    Parameters
    ----------
    run_family : sequence
        Each run's family label.
    grids : sequence of Grid
        Each run's schedule (a one-row grid: a run without ``lr``, at a constant rate).
    """
    by_family: dict = {}
    for fam, g in zip(run_family, grids, strict=True):
        by_family.setdefault(fam, []).append(g)
    hit = []
    for fam, gs in by_family.items():
        if any(decaying_share(g) <= DECAY_SHARE for g in gs):
            continue
        end = min(g.tokens[-1] for g in gs)
        t = np.unique(np.concatenate([g.tokens[g.tokens <= end] for g in gs]))
        etas = np.array([np.interp(t, g.tokens, g.eta) for g in gs])
        if np.ptp(etas, axis=0).max() < SAME_SCHEDULE_TOL:
            hit.append(fam)
    return hit


class Shape(NamedTuple):
    """A schedule's shape: the normalised rate at fractions of a run's tokens.

    Planned runs of any length follow it, stretched (:meth:`grid`): a cosine
    to 10% of the peak over the run, a WSD cooldown over its last fifth.
    """

    fraction: np.ndarray
    eta: np.ndarray

    def grid(self, tokens: float) -> Grid:
        """The schedule of a run trained on ``tokens`` tokens."""
        return grid(self.fraction * float(tokens), self.eta, 1.0)

    @property
    def width(self) -> int:
        """Columns of the bonus's features: the same for every length (at least 1)."""
        return max(1, drops(self.grid(1.0))[0].size)


def shape_of(schedule) -> Shape | None:
    """A :class:`Shape` from a table with ``fraction`` (of the run, in (0, 1]) and ``lr``.

    ``None`` stays ``None`` (a constant rate); a Shape passes through.
    """
    if schedule is None or isinstance(schedule, Shape):
        return schedule
    try:
        frac = np.asarray(schedule["fraction"], dtype=float)
        lr = np.asarray(schedule["lr"], dtype=float)
    except (KeyError, TypeError, ValueError):
        raise ValueError(
            "schedule must be a table with columns 'fraction' (of the run's tokens, 0 < f <= 1) "
            "and 'lr' (the learning rate there), e.g. a cosine from its peak to 10% of it"
        ) from None
    if frac.size == 0 or frac.shape != lr.shape:
        raise ValueError("schedule needs 'fraction' and 'lr' of the same, non-zero length")
    if not (np.all(np.isfinite(frac)) and np.all((frac > 0) & (frac <= 1))):
        raise ValueError("schedule 'fraction' must lie in (0, 1]: the share of the run's tokens")
    if not np.all(np.isfinite(lr)) or np.any(lr < 0) or not np.any(lr > 0):
        raise ValueError("schedule 'lr' must be finite, >= 0 and positive somewhere")
    order = np.argsort(frac, kind="stable")
    return Shape(frac[order], lr[order] / lr.max())
