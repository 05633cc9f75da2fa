"""The report's method section: how the model was set up for this fit, in sentences.

:func:`model_description` says what each part of the model does for this
data (law, pooling, run effects, noise, schedules, discrepancy);
:func:`priors_table` lists the prior settings with their meaning.
"""

from __future__ import annotations

import inspect
import re

import numpy as np
import pandas as pd

from bayescale import centring
from bayescale.model import Priors
from bayescale.options import format_count
from bayescale.reporting.summaries import fmt


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
        exps += " " + exponent_form_note(post.data, c.law, c.exponent_centring)
    if c.method == "nuts":
        start = (
            "each chain started from its own prior draw"
            if c.start == "prior"
            else "started around a MAP estimate"
        )
        draws = int(post.tree["posterior"].sizes["draw"])
        more = (
            f" ({c.num_samples} draws, then more while R-hat was between 1.01 and 1.05)"
            if draws > c.num_samples
            else ""
        )
        method = (
            f"Sampled with NUTS: {c.num_chains} chains × {draws} draws{more} after "
            f"{c.num_warmup} warm-up steps (target acceptance {c.target_accept}, maximum tree "
            f"depth {c.max_tree_depth}), {start}, seed {c.seed}."
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
            "rate." + one_schedule_note(post.data)
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


def exponent_form_note(data, law: str, weight=None) -> str:
    """Which families' pooled exponents were sampled as themselves (centred), and why.

    With a ``weight`` (``FitConfig.exponent_centring``) every family's were
    sampled partly centred instead.
    """
    if weight is not None:
        return (
            f"Every family's pooled exponents were sampled partly centred (weight {weight:g}: "
            "0 is their standardised departure from the shared value, 1 the exponent itself); "
            "the law is the same either way."
        )
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


def one_schedule_note(data) -> str:
    """A sentence naming the families whose runs all anneal under one schedule (or "")."""
    from bayescale.schedules import one_schedule_families

    labels = [data.families[f] for f in data.run_family]
    fams = one_schedule_families(labels, [data.schedule(r) for r in range(data.n_runs)])
    if not fams:
        return ""
    return (
        f" In {', '.join(fams)} every run follows one schedule that decays through most of "
        "the run, so the token exponent and the annealing bonus are not told apart by the "
        "data: forecasts under that schedule hold, but the constant-rate law behind the "
        "compute-optimal allocation rests on the law's form and the priors."
    )


def group_note(data) -> str:
    """How the fit's family groups (``group`` column) enter the pooling, if there are any."""
    if data.family_group is None:
        return ""
    return (
        f" The families form {len(data.groups)} groups (`group` column): each group shifts "
        "the population means of a, b, the exponents and E's share by its own learned "
        "amount, so a family borrows first from the families of its group."
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
