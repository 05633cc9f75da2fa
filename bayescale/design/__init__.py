"""Experiment design: more small seeds, or one larger model?

``candidates`` (what could be trained) -> ``runs`` (new runs under one
posterior draw) -> ``importance`` / ``laplace`` (the posterior after an
experiment) -> ``planning`` (:func:`plan`, ranking, the recommendation).
"""

from bayescale.design.candidates import (
    Candidate,
    FamilyDesign,
    OverBudgetWarning,
    WarmupCutWarning,
    default_candidates,
    describe,
    family_design,
)
from bayescale.design.importance import importance_update, outcome_log_weights
from bayescale.design.planning import Plan, format_plan, plan
from bayescale.design.runs import new_runs_frame

__all__ = [
    "Candidate",
    "FamilyDesign",
    "OverBudgetWarning",
    "Plan",
    "WarmupCutWarning",
    "default_candidates",
    "describe",
    "family_design",
    "format_plan",
    "importance_update",
    "new_runs_frame",
    "outcome_log_weights",
    "plan",
]
