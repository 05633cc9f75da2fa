"""``plan()``: more small seeds, or one larger model? A preposterior analysis.

For each candidate experiment (``k`` new runs of ``N`` parameters trained on
``D`` tokens) :func:`plan`

1. simulates what the experiment would show, from the posterior predictive
   (:mod:`bayescale.design.runs`);
2. reweights the posterior draws by the likelihood of that outcome
   (:mod:`bayescale.design.importance`), or refits by MAP + Laplace where the
   draws cannot represent the new posterior (:mod:`bayescale.design.laplace`);
3. reads off the posterior sd and interval width of the target prediction,
   averaged over simulated outcomes, and ranks the candidates.

How far to trust the ranking. ``plan`` values an experiment by what the
current posterior expects it to show, so its ranking is as good as that
posterior. On simulated worlds (``benchmarks/plan_validation.py``) the sd a
refit obtains after an experiment is on average 6-8% larger than predicted
(slightly optimistic), and following ``plan`` beats both "one large run" and
"all budget into small seeds" on average over targets near, past and below
the fitted sizes -- but per target it matches the better fixed choice rather
than beating it. It undervalues a large run when seed noise is far below
what the prior expects, and overvalues seeds when seed noise is above the
prior's range; if the fitted ``sigma_seed`` sits at either edge of its prior,
refit with ``Priors(seed_sd=...)`` set to the scatter your own seeds show.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import jax
import numpy as np
import pandas as pd

from bayescale import progress
from bayescale.design.candidates import (
    Candidate,
    default_candidates,
    describe,
    family_design,
    past_warmup,
    within_budget,
)
from bayescale.design.importance import (
    Setup,
    checked_target,
    draw_efficiency,
    draws_and_target,
    importance_groups,
    next_pow2,
)
from bayescale.design.laplace import Laplace, laplace_all
from bayescale.design.runs import target_draws
from bayescale.options import (
    DEFAULT_CI_PROB,
    KINDS,
    Target,
    check_choice,
    check_ci_prob,
    format_count,
)
from bayescale.queries import check_has_schedules
from bayescale.schedules import shape_of

METHODS = ("auto", "importance", "laplace")
RANK_BY = ("reduction", "per_flop")


@dataclass(frozen=True)
class Plan:
    """Ranked candidate experiments and what they are expected to teach.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per affordable candidate, best first (see :func:`plan`).
    target : Target
    kind : str
    budget_flops : float
    rank_by : str
    ci_prob : float
    dropped : tuple of str
        Candidates over the budget.
    notes : tuple of str
        What was dropped, ties within Monte-Carlo error, caveats.
    draws : int
        Posterior draws used.
    draw_efficiency : float
        Relative ESS of the target across the draws (see
        :func:`~bayescale.design.importance.draw_efficiency`).
    """

    table: pd.DataFrame
    target: Target
    kind: str
    budget_flops: float
    rank_by: str
    ci_prob: float
    dropped: tuple
    notes: tuple
    draws: int
    draw_efficiency: float

    @property
    def recommended(self) -> dict | None:
        """The recommended row as a dict, or None when nothing measurably helps."""
        rows = self.table[self.table["recommended"]]
        return None if rows.empty else rows.iloc[0].to_dict()

    def describe_target(self) -> str:
        t = self.target
        return (
            f"the {self.kind} loss of {t.family} at {format_count(t.params)} params, "
            f"{format_count(t.tokens)} tokens"
        )

    def recommendation(self) -> str:
        """One line: what to train, and how much it should shrink the target's sd."""
        rec, what = self.recommended, self.describe_target()
        if rec is None:
            return (
                f"no candidate measurably sharpens {what}; try other candidates or a larger budget"
            )
        line = (
            f"train {rec['experiment']} ({rec['flops']:.2g} FLOPs, "
            f"{100 * rec['budget_fraction']:.0f}% of the budget): expected sd of {what} "
            f"{rec['current_sd']:.4g} -> {rec['expected_sd']:.4g} ± "
            f"{rec['expected_sd_mcse']:.2g} nats ({rec['reduction_pct']:.0f}% lower; "
            f"{rec['method']})"
        )
        tied = int(self.table["tied_with_best"].sum())
        if tied > 1:
            line += (
                f"; {tied} candidates are within Monte-Carlo error of the largest reduction, "
                "this is the cheapest of them"
            )
        return line

    def format(self, max_rows: int | None = None) -> str:
        """The ranked table as fixed-width text (what ``bayescale plan`` prints)."""
        return format_plan(self, max_rows)

    def __str__(self) -> str:
        return self.format()

    def _repr_html_(self) -> str:
        import html

        return f"<p><b>{html.escape(self.recommendation())}</b></p>" + self.table.to_html(
            index=False, float_format=lambda v: f"{v:.4g}"
        )


def plan(
    posterior,
    target,
    budget_flops: float,
    *,
    candidates=None,
    kind: str = "mean",
    method: str = "auto",
    n_outcomes: int = 64,
    max_draws: int = 1000,
    min_ess: float = 50.0,
    n_refit_outcomes: int = 8,
    ci_prob: float = DEFAULT_CI_PROB,
    rank_by: str = "reduction",
    schedule=None,
    progress_bar=None,
    seed: int = 0,
) -> Plan:
    """Rank candidate experiments by how much they shrink a target's uncertainty.

    Parameters
    ----------
    posterior : Posterior
        A fit (NUTS draws; a MAP fit is planned with Laplace refits only).
    target : Target, dict, tuple or str
        The prediction to sharpen (a fitted family), e.g. ``"OPT:175B:300B"``.
    budget_flops : float or str
        Training budget (``1e21`` or ``"1e21"``); candidates costing more
        (``6 N D`` per run) are dropped, with an :class:`OverBudgetWarning`.
    candidates : list of Candidate or dict, optional
        Default: :func:`default_candidates`.
    kind : {"mean", "new_run"}
        Sharpen the family's law (default) or one new run at the target.
    method : {"auto", "importance", "laplace"}
        ``"auto"`` reweights draws and refits where the ESS collapses.
    n_outcomes : int
        Simulated outcomes per candidate (importance sampling).
    max_draws : int
        Posterior draws used (a fixed-seed subsample when there are more).
    min_ess : float
        Refit when the median effective sample size of the weights falls below
        this (Kish ESS times the draws' own relative ESS for the target).
    n_refit_outcomes : int
        Simulated outcomes per refitted candidate.
    ci_prob : float
        Interval probability for the widths.
    rank_by : {"reduction", "per_flop"}
        ``"reduction"`` (default): the best single use of the budget; the
        recommendation is the cheapest candidate whose expected reduction is
        within Monte-Carlo error of the largest. ``"per_flop"``: expected sd
        reduction per FLOP, which favours cheap experiments.
    schedule : pandas.DataFrame or dict, optional
        For a fit with learning-rate schedules: the schedule every new run and
        the target train with, as columns ``fraction`` (of the run's tokens, in
        (0, 1]) and ``lr``, stretched over each run's length; their losses
        then carry the annealing bonus and its uncertainty. Default: a
        constant rate.
    progress_bar : bool, optional
    seed : int

    Returns
    -------
    Plan
        ``plan.table`` has one row per affordable candidate, best first:
        ``rank``, ``experiment``, ``label``, ``n_runs``, ``params``,
        ``tokens``, ``tokens_per_param``, ``new_size``, ``n_checkpoints``,
        ``flops``, ``budget_fraction``, ``current_sd``, ``expected_sd``,
        ``expected_sd_mcse``, ``current_width``, ``expected_width``,
        ``reduction``, ``reduction_pct``, ``reduction_per_1e18_flops``,
        ``reduction_per_1e18_mcse``, ``ess``, ``method``, ``n_outcomes``,
        ``tied_with_best``, ``recommended``.
    """
    from bayescale.options import parse_count

    check_choice("method", method, METHODS)
    check_choice("rank_by", rank_by, RANK_BY)
    check_choice("kind", kind, KINDS)
    ci_prob = check_ci_prob(ci_prob)
    budget = parse_count(budget_flops)
    tgt = checked_target(posterior, target)
    shape = shape_of(schedule)
    if shape is not None:
        check_has_schedules(posterior)
    if candidates is None:
        cands = default_candidates(posterior, tgt.family, budget)
    else:
        cands = [Candidate.coerce(c) for c in candidates]
        if not cands:
            raise ValueError("candidates is empty")
    fam = family_design(posterior, tgt.family)
    cands, warmup_notes = past_warmup(cands, fam)
    affordable, dropped, notes = within_budget(cands, budget)
    notes = warmup_notes + notes
    if method == "importance" and posterior.n_draws <= 1:
        raise ValueError("method='importance' needs posterior draws; this fit has one (MAP)")
    show = progress.resolve(progress_bar)
    with progress.stage(f"plan: {len(affordable)} candidates", show):
        setup, current = _prepare(
            posterior,
            tgt,
            kind,
            affordable,
            max_draws,
            n_outcomes,
            n_refit_outcomes,
            ci_prob,
            seed,
            shape,
        )
        results = _evaluate(setup, affordable, method, min_ess, n_refit_outcomes, current)
    table = _rank(_table(affordable, results, budget, fam.sizes), rank_by)
    notes += _honesty_notes(table) + schedule_notes(posterior, shape)
    return Plan(
        table=table,
        target=tgt,
        kind=kind,
        budget_flops=budget,
        rank_by=rank_by,
        ci_prob=ci_prob,
        dropped=tuple(describe(c) for c in dropped),
        notes=tuple(notes),
        draws=int(setup.t_draws.size),
        draw_efficiency=current["efficiency"],
    )


def _prepare(
    post, tgt, kind, affordable, max_draws, n_outcomes, n_refit_outcomes, ci_prob, seed, shape
):
    """Draws, target values, simulated-outcome bookkeeping and the current uncertainty."""
    designs = [(c.params, c.tokens) for c in affordable]
    idx, params, t_draws, run_delta = draws_and_target(
        post, tgt, kind, max_draws, seed, designs, shape
    )
    if idx.size == post.n_draws:
        efficiency = draw_efficiency(post, t_draws)
    else:
        every = np.arange(post.n_draws)
        rng = np.random.default_rng([seed, 9])
        d_all = post.level_offsets(tgt.family, [tgt.params], [tgt.tokens], rng, every)[:, 0]
        t_all = target_draws(post, tgt, kind, every, d_all, rng, shape)
        efficiency = draw_efficiency(post, t_all)
    rng = np.random.default_rng([seed, 8])
    n_out = int(min(n_outcomes, idx.size))
    gen = np.sort(rng.choice(idx.size, n_out, replace=False)) if idx.size > 1 else np.zeros(1, int)
    setup = Setup(
        post=post,
        target=tgt,
        kind=kind,
        f=post.data.family_index(tgt.family),
        params=params,
        run_delta=run_delta,
        t_draws=t_draws,
        gen=gen,
        base_key=jax.random.PRNGKey(seed),
        z_seed=rng.standard_normal(
            (max(n_out, n_refit_outcomes), max(c.n_runs for c in affordable))
        ),
        ci_prob=ci_prob,
        schedule=shape,
    )
    current = {"sd": float("nan"), "width": float("nan"), "efficiency": efficiency}
    if idx.size > 1:
        lo, hi = np.quantile(t_draws, [(1 - ci_prob) / 2, (1 + ci_prob) / 2])
        current.update(sd=float(np.std(t_draws)), width=float(hi - lo))
    return setup, current


def _evaluate(setup: Setup, affordable, method, min_ess, n_refit_outcomes, current) -> dict:
    """Expected posterior sd etc. of every candidate (importance sampling or Laplace)."""
    post = setup.post
    design = family_design(post, setup.target.family)
    groups: dict = {}
    for c in affordable:
        groups.setdefault((c.params, c.tokens), []).append(c)
    checkpoints = {key: design.checkpoints(key[1]) for key in groups}
    results, refit = {}, {}
    if method != "laplace" and post.n_draws > 1:
        stats = importance_groups(setup, groups, checkpoints)
        for key, group in groups.items():
            for c in group:
                ess = float(np.median(stats[c]["ess"])) * current["efficiency"]
                if method == "auto" and ess < min_ess:
                    refit.setdefault(key, []).append(c)
                else:
                    results[c] = _row_from_is(stats[c], ess, current)
    else:
        refit = dict(groups)
    if refit:
        n_pad = next_pow2(max(ck.size for ck in checkpoints.values()))
        k_pad = max(c.n_runs for group in refit.values() for c in group)
        laplace = Laplace(post, setup.target, setup.kind, n_pad, k_pad, setup.schedule)
        for c, r in laplace_all(setup, refit, checkpoints, n_refit_outcomes, laplace).items():
            results[c] = _row_from_laplace(r, current, setup.ci_prob)
    for key, group in groups.items():
        for c in group:
            results[c]["n_checkpoints"] = int(checkpoints[key].size)
    return results


def _table(affordable, results: dict, budget: float, sizes: np.ndarray) -> pd.DataFrame:
    rows = []
    for c in affordable:
        r = results[c]
        red = r["current_sd"] - r["expected_sd"]
        rows.append(
            {
                "experiment": describe(c),
                "label": c.label,
                "n_runs": c.n_runs,
                "params": c.params,
                "tokens": c.tokens,
                "tokens_per_param": c.tokens / c.params,
                "new_size": not bool(np.any(np.isclose(c.params, sizes, rtol=1e-6))),
                "n_checkpoints": r["n_checkpoints"],
                "flops": c.flops,
                "budget_fraction": c.flops / budget,
                "current_sd": r["current_sd"],
                "expected_sd": r["expected_sd"],
                "expected_sd_mcse": r["expected_sd_mcse"],
                "current_width": r["current_width"],
                "expected_width": r["expected_width"],
                "reduction": red,
                "reduction_pct": 100.0 * red / r["current_sd"],
                "reduction_per_1e18_flops": red / (c.flops / 1e18),
                "reduction_per_1e18_mcse": r["expected_sd_mcse"] / (c.flops / 1e18),
                "ess": r["ess"],
                "method": r["method"],
                "n_outcomes": r["n_outcomes"],
            }
        )
    return pd.DataFrame(rows)


def _rank(table: pd.DataFrame, rank_by: str) -> pd.DataFrame:
    """Sort, number, mark the candidates tied with the best and the recommended one.

    Only experiments whose reduction is clearly above zero (more than twice
    its Monte-Carlo error) qualify. With ``rank_by="reduction"`` the
    recommendation is the cheapest of those within Monte-Carlo error of the
    largest reduction.
    """
    key = "reduction_per_1e18_flops" if rank_by == "per_flop" else "reduction"
    table = table.sort_values([key, "flops"], ascending=[False, True], kind="stable")
    table = table.reset_index(drop=True)
    table.insert(0, "rank", np.arange(1, len(table) + 1))
    table["tied_with_best"] = False
    table["recommended"] = False
    mcse = table["expected_sd_mcse"].fillna(0.0)
    clear = (table["reduction"] > 2.0 * mcse).to_numpy()
    if not clear.any():
        return table
    best = int(np.flatnonzero(clear)[0])
    if rank_by == "reduction":
        gap = table.loc[best, "reduction"] - table["reduction"]
        tied = clear & (gap <= 2.0 * np.sqrt(mcse[best] ** 2 + mcse**2)).to_numpy()
        table["tied_with_best"] = tied
        best = int(table.loc[tied, "flops"].idxmin())
    else:
        table.loc[best, "tied_with_best"] = True
    table.loc[best, "recommended"] = True
    return table


def schedule_notes(posterior, shape=None) -> list[str]:
    """Which schedule the planned runs follow, for a fit that reads learning-rate schedules."""
    if not posterior.data.has_schedules:
        return []
    if shape is not None:
        return [
            "candidate runs and the target follow the given learning-rate schedule, "
            "stretched over each run's tokens: their losses carry its annealing bonus"
        ]
    return [
        "this fit reads learning-rate schedules, but candidate runs and the target are "
        "planned as constant-rate runs (no schedule= given): their losses carry no "
        "annealing bonus, and the uncertainty of the bonus is not part of the ranking"
    ]


def _honesty_notes(table: pd.DataFrame) -> list[str]:
    """Say when the pick is within noise of others, and what negative reductions mean."""
    notes = []
    if not table["recommended"].any():
        notes.append(
            "no candidate reduces the target's sd by more than twice its Monte-Carlo error"
        )
    tied = table[table["tied_with_best"]]
    if len(tied) > 1:
        names = "; ".join(tied["experiment"].head(5))
        notes.append(
            f"{len(tied)} candidates are within Monte-Carlo error of the largest expected "
            f"reduction ({names}); the cheapest of them is recommended"
        )
    negative = table[table["reduction"] < 0]
    if len(negative):
        noise = negative["reduction"] >= -2.0 * negative["expected_sd_mcse"].fillna(0.0)
        beyond = negative[~noise]
        # exact updating cannot raise the expected sd (law of total variance, then
        # Jensen): what is beyond Monte-Carlo error is the approximations' error
        notes.append(
            f"{len(negative)} candidate(s) show a negative expected reduction: "
            + (
                "all within Monte-Carlo error of zero (such an experiment is not expected to "
                "sharpen the target)"
                if noise.all()
                else f"{len(beyond)} beyond Monte-Carlo error, by up to "
                f"{-beyond['reduction_pct'].min():.1f}% of the current sd; an experiment "
                "cannot raise the expected sd, so this is the error of the "
                + (
                    "Laplace refits"
                    if (beyond["method"] == "laplace").all()
                    else "approximations (few effective draws, or Laplace refits)"
                )
                + ", and smaller reductions are uncertain by as much"
            )
        )
    return notes


def _row_from_is(s: dict, ess: float, current: dict) -> dict:
    m = s["sd"].size
    return {
        "current_sd": current["sd"],
        "current_width": current["width"],
        "expected_sd": float(np.mean(s["sd"])),
        "expected_sd_mcse": float(np.std(s["sd"], ddof=1) / math.sqrt(m)) if m > 1 else np.nan,
        "expected_width": float(np.mean(s["width"])),
        "ess": ess,
        "method": "importance",
        "n_outcomes": m,
    }


def _row_from_laplace(r: dict, current: dict, ci_prob: float) -> dict:
    current_sd, current_width = current["sd"], current["width"]
    if not math.isfinite(current_sd):
        # a point-estimate fit: the Laplace approximation is the current posterior
        current_sd = r["laplace_sd"]
        z = float(jax.scipy.stats.norm.ppf((1 + ci_prob) / 2))
        current_width = 2 * z * current_sd
    ratio = r["ratio"]
    m = ratio.size
    mcse = current_sd * float(np.std(ratio, ddof=1)) / math.sqrt(m) if m > 1 else np.nan
    return {
        "current_sd": current_sd,
        "current_width": current_width,
        "expected_sd": current_sd * float(np.mean(ratio)),
        "expected_sd_mcse": mcse,
        "expected_width": current_width * float(np.mean(ratio)),
        "ess": np.nan,
        "method": "laplace",
        "n_outcomes": m,
    }


def format_plan(result: Plan, max_rows: int | None = None) -> str:
    """The ranked table as fixed-width text (what ``bayescale plan`` prints)."""
    table = result.table
    shown = table if max_rows is None else table.head(max_rows)
    out = pd.DataFrame(
        {
            "rank": shown["rank"],
            "experiment": shown["experiment"],
            "FLOPs": shown["flops"].map(lambda v: f"{v:.2g}"),
            "budget": shown["budget_fraction"].map(lambda v: f"{100 * v:.0f}%"),
            "sd now": shown["current_sd"].map(lambda v: f"{v:.3g}"),
            "sd after": [
                f"{a:.3g} ± {m:.1g}"
                for a, m in zip(shown["expected_sd"], shown["expected_sd_mcse"], strict=True)
            ],
            "width after": shown["expected_width"].map(lambda v: f"{v:.3g}"),
            "reduction": shown["reduction_pct"].map(lambda v: f"{v:.1f}%"),
            "per 1e18 FLOPs": shown["reduction_per_1e18_flops"].map(lambda v: f"{v:.3g}"),
            "method": shown["method"],
            "": np.where(shown["recommended"], "<-", np.where(shown["tied_with_best"], "~", "")),
        }
    )
    head = (
        f"target: {result.describe_target()}; budget {result.budget_flops:.3g} FLOPs; sd in "
        f"nats, width of the {result.ci_prob:.0%} interval; ranked by "
        + ("sd reduction per FLOP" if result.rank_by == "per_flop" else "sd reduction")
        + "; ~ = within Monte-Carlo error of the best"
    )
    lines = [head, out.to_string(index=False)]
    if max_rows is not None and len(table) > max_rows:
        lines.append(f"... {len(table) - max_rows} more candidate(s)")
    lines += [f"note: {n}" for n in result.notes]
    return "\n".join(lines)
