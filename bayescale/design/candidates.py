"""Candidate experiments for :func:`~bayescale.design.plan`: what could be trained next.

A :class:`Candidate` is ``n_runs`` new runs of one size on one token count;
:func:`default_candidates` builds the usual menu (more seeds at fitted sizes,
one larger run) from how the family trains (:func:`family_design`).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, replace

import numpy as np

from bayescale.data import warmup_cut
from bayescale.options import MIN_COUNT, format_count, parse_count

FLOPS_PER_PARAM_TOKEN = 6.0
REFERENCE_TOKENS_PER_PARAM = 20.0
SEED_COUNTS = (1, 2, 4, 8)


class OverBudgetWarning(UserWarning):
    """Some candidate experiments cost more than the budget and were dropped."""


class WarmupCutWarning(UserWarning):
    """Some candidate runs end before the fit's warm-up cut and were dropped."""


@dataclass(frozen=True)
class Candidate:
    """One experiment: ``n_runs`` new runs of ``params`` parameters on ``tokens`` tokens.

    Runs share the design (size, token count, checkpoints) and differ only in
    their seed. ``label`` is free text shown in the table. A plain dict with
    the same keys is accepted wherever a Candidate is.

    Attributes
    ----------
    params : float
        Parameters ``N`` of each run (raw count).
    tokens : float
        Tokens ``D`` each run is trained on (its final checkpoint).
    n_runs : int
        Number of runs (seeds), default 1.
    label : str
    """

    params: float
    tokens: float
    n_runs: int = 1
    label: str = ""

    @property
    def flops(self) -> float:
        """Training cost ``6 N D`` per run, times the number of runs."""
        return FLOPS_PER_PARAM_TOKEN * self.params * self.tokens * self.n_runs

    @classmethod
    def coerce(cls, obj) -> Candidate:
        """A validated Candidate from a Candidate or a dict (raises ValueError)."""
        if isinstance(obj, Candidate):
            cand = obj
        elif isinstance(obj, dict):
            unknown = set(obj) - {"params", "tokens", "n_runs", "label"}
            if unknown:
                raise ValueError(
                    f"unknown candidate key(s) {sorted(unknown)}; use params, tokens, n_runs, label"
                )
            cand = cls(**obj)
        else:
            raise TypeError(f"a candidate must be a Candidate or a dict, got {type(obj).__name__}")
        p, t, k = parse_count(cand.params), parse_count(cand.tokens), int(cand.n_runs)
        if not (math.isfinite(p) and math.isfinite(t)) or p <= 0 or t <= 0 or k < 1:
            raise ValueError(f"candidate needs params > 0, tokens > 0, n_runs >= 1: {cand}")
        if p < MIN_COUNT or t < MIN_COUNT:
            raise ValueError(f"candidate {cand} looks like billions; pass raw counts (7e9, not 7)")
        return replace(cand, params=p, tokens=t, n_runs=k)


@dataclass(frozen=True)
class FamilyDesign:
    """How a family trains: sizes, tokens per parameter and checkpoint spacing.

    Attributes
    ----------
    sizes : ndarray
        Distinct model sizes of the family's runs.
    size_tokens : ndarray
        Median final token count of the runs at each size.
    tokens_per_param : float
        Median ``D / N`` of the family's runs (their final checkpoints).
    spacing : float
        Median log-token gap between consecutive kept checkpoints (``inf``
        when runs keep only their final checkpoint).
    first_tokens : float
        Earliest checkpoint a run keeps (the warm-up cut).
    max_points : int or None
        At most this many checkpoints per run (the fit's thinning).
    n_runs : int
    min_tokens : float
        The fit's absolute warm-up cut (``nan``: none).
    warmup_fraction : float
        The fit's relative warm-up cut (``nan``: none); see
        :func:`~bayescale.data.warmup_cut`.
    """

    sizes: np.ndarray
    size_tokens: np.ndarray
    tokens_per_param: float
    spacing: float
    first_tokens: float
    max_points: int | None
    n_runs: int
    min_tokens: float = math.nan
    warmup_fraction: float = math.nan

    def usable(self, tokens: float) -> bool:
        """Whether a run trained on ``tokens`` keeps a checkpoint past the warm-up cut."""
        # a relative cut always leaves the run's later checkpoints
        if not math.isfinite(self.min_tokens):
            return True
        return math.isfinite(self.warmup_fraction) or not float(tokens) < self.min_tokens

    def first_checkpoint(self, tokens: float) -> float:
        """Earliest checkpoint the fit keeps of a new run trained to ``tokens``."""
        if not math.isfinite(self.min_tokens):
            return self.first_tokens
        frac = self.warmup_fraction if math.isfinite(self.warmup_fraction) else None
        return float(warmup_cut(tokens, self.min_tokens, frac))

    def checkpoints(self, tokens: float) -> np.ndarray:
        """Checkpoint token counts of a new run trained to ``tokens``, ascending."""
        tokens = float(tokens)
        first = self.first_checkpoint(tokens)
        if not math.isfinite(self.spacing) or tokens <= first:
            return np.array([tokens])
        span = math.log(tokens / first)
        step = self.spacing
        if self.max_points is not None and self.max_points > 1:
            step = max(step, span / (self.max_points - 1))
        n_back = int(math.floor(span / step + 1e-9))
        return tokens * np.exp(-step * np.arange(n_back, -1, -1))


def family_design(post, family: str) -> FamilyDesign:
    """Read a family's training habits off the fitted data."""
    data = post.data
    f = data.family_index(family)
    runs = np.flatnonzero(data.run_family == f)
    finals, firsts, gaps = [], [], []
    for r in runs:
        tok = np.sort(data.tokens[data.obs_run == r])
        finals.append(tok[-1])
        firsts.append(tok[0])
        if tok.size > 1:
            gaps.append(np.median(np.diff(np.log(tok))))
    finals = np.asarray(finals)
    params = data.run_params[runs]
    sizes = np.unique(params)
    size_tokens = np.array([np.median(finals[params == n]) for n in sizes])
    min_tokens = data.min_tokens
    first = float(min_tokens) if np.isfinite(min_tokens) else float(np.median(firsts))
    return FamilyDesign(
        sizes=sizes,
        size_tokens=size_tokens,
        tokens_per_param=float(np.median(finals / params)),
        spacing=float(np.median(gaps)) if gaps else math.inf,
        first_tokens=first,
        max_points=post.config.max_points_per_run,
        n_runs=int(runs.size),
        min_tokens=float(min_tokens) if np.isfinite(min_tokens) else math.nan,
        warmup_fraction=float(data.warmup_fraction),
    )


def _round_count(x: float) -> float:
    """Two significant digits: sizes people would actually train."""
    return float(f"{x:.2g}")


def default_candidates(
    post,
    family: str,
    budget_flops: float,
    *,
    seed_counts=SEED_COUNTS,
    n_larger: int = 4,
    max_new_runs: int = 16,
) -> list[Candidate]:
    """The default menu: more seeds at existing sizes, or one larger run.

    - ``k`` new seeds (``seed_counts``, plus as many as the budget buys, up to
      ``max_new_runs``) at each existing size of the family, trained on that
      size's usual token count and on 20 tokens per parameter;
    - one run at each of ``n_larger`` sizes between twice the largest existing
      size and the largest the budget affords, at the family's usual tokens
      per parameter and at 20.

    Candidates may exceed the budget; :func:`plan` drops those. Token counts
    below the fit's warm-up cut (``min_tokens``) are left out: the fit would
    discard every checkpoint of such a run.
    """
    design = family_design(post, family)
    out: list[Candidate] = []
    token_rules = {"usual": design.tokens_per_param, "20 tok/param": REFERENCE_TOKENS_PER_PARAM}
    for n, d_usual in zip(design.sizes, design.size_tokens, strict=True):
        token_options = [("usual tokens", float(d_usual))]
        d20 = REFERENCE_TOKENS_PER_PARAM * n
        if abs(math.log(d20 / d_usual)) > math.log(1.25):
            token_options.append(("20 tok/param", _round_count(d20)))
        for tok_label, d in token_options:
            if not design.usable(d):
                continue
            per_run = FLOPS_PER_PARAM_TOKEN * n * d
            fill = int(min(budget_flops // per_run, max_new_runs))
            counts = sorted(set(seed_counts) | ({fill} if fill > max(seed_counts) else set()))
            for k in counts:
                out.append(
                    Candidate(
                        float(n), d, int(k), f"{k} new seed{'s' if k > 1 else ''}, {tok_label}"
                    )
                )
    largest = float(design.sizes.max())
    for tok_label, tpp in token_rules.items():
        n_max = math.sqrt(budget_flops / (FLOPS_PER_PARAM_TOKEN * tpp))
        if n_max < 1.25 * largest:
            continue
        lo = min(2.0 * largest, n_max)
        sizes = np.geomspace(lo, n_max, n_larger) if n_max > lo * 1.01 else np.array([n_max])
        for n in sizes:
            # round down so the largest size stays inside the budget
            n_r = _round_count(n)
            if n_r > n:
                n_r = float(f"{n * 0.95:.2g}")
            if not design.usable(tpp * n_r):
                continue
            out.append(Candidate(n_r, tpp * n_r, 1, f"1 larger run, {tok_label}"))
    seen, unique = set(), []
    for c in out:
        key = (c.params, c.tokens, c.n_runs)
        if key not in seen:
            seen.add(key)
            unique.append(c)
    return unique


def describe(c: Candidate) -> str:
    """Human-readable one-liner: ``4 runs x 100M params on 20B tokens``."""
    runs = f"{c.n_runs} run{'s' if c.n_runs > 1 else ''}"
    return f"{runs} x {format_count(c.params)} params on {format_count(c.tokens)} tokens"


def past_warmup(cands: list, design: FamilyDesign):
    """Drop runs that end before the warm-up cut: the fit would discard all their data."""
    kept = [c for c in cands if design.usable(c.tokens)]
    if len(kept) == len(cands):
        return cands, []
    short = min((c for c in cands if c not in kept), key=lambda c: c.tokens)
    msg = (
        f"{len(cands) - len(kept)} candidate(s) train on fewer tokens than the fit's warm-up "
        f"cut (min_tokens = {design.min_tokens:.3g}) and were dropped: the fit discards every "
        f"checkpoint before it (e.g. {describe(short)})"
    )
    if not kept:
        raise ValueError(msg.replace(" and were dropped", "; no candidate is left"))
    warnings.warn(msg, WarmupCutWarning, stacklevel=3)
    return kept, [msg]


def within_budget(cands: list, budget: float):
    affordable = [c for c in cands if c.flops <= budget * (1 + 1e-9)]
    dropped = [c for c in cands if c not in affordable]
    notes = []
    if dropped:
        cheapest = min(dropped, key=lambda c: c.flops)
        msg = (
            f"{len(dropped)} candidate(s) cost more than the budget of {budget:.3g} FLOPs and "
            f"were dropped (cheapest dropped: {describe(cheapest)}, {cheapest.flops:.3g} FLOPs)"
        )
        notes.append(msg)
        warnings.warn(msg, OverBudgetWarning, stacklevel=3)
    if not affordable:
        cheapest = min(cands, key=lambda c: c.flops)
        raise ValueError(
            f"no candidate experiment fits the budget of {budget:.3g} FLOPs; the cheapest "
            f"({describe(cheapest)}) costs {cheapest.flops:.3g} FLOPs (6 N D per run)"
        )
    return affordable, dropped, notes
