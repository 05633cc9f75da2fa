"""Reference numbers of the evaluation protocols: the papers' results and their settings.

Everything here is data taken from the publications (or their code) that the
protocols in :mod:`bayescale.evaluation` compare with; nothing is tuned on it.
"""

from __future__ import annotations

import numpy as np

MIN_TOKENS = 1e10  # the Hitchhiker warm-up cut (strict: tokens > 1e10)
TARGET_FRACTION = 0.3  # target = checkpoints in the last 30% of the largest run's tokens
Q_GRID = tuple(round(0.1 * i, 1) for i in range(1, 11))
BAYES_GRID_Q = (0.3, 0.6, 1.0)  # q of the cheap (MAP) bayescale grid; n_models in {2, all}
MIN_CELL_POINTS = 5  # the Chinchilla law has 5 parameters

# Hoffmann starts for the Hitchhiker grid: every other value of the published
# 4500-point grid in each coordinate (243 starts). On the grid cells checked in
# benchmarks/eval_hitchhiker.py it reaches the same optimum as the full grid.
HOFFMANN_EVAL_GRID = dict(
    a=(0.0, 10.0, 20.0),
    b=(0.0, 10.0, 20.0),
    e=(-1.0, 0.0, 1.0),
    alpha=(0.0, 1.0, 2.0),
    beta=(0.0, 1.0, 2.0),
)

# published numbers the protocols are compared with (percent ARE)
PAPER_HITCHHIKER = {"OPT": 7.4, "gpt3": 2.7, "t5-pile": 9.2}
ONE_MODEL_TARGETS = {
    "OPT": (6.7e9, 1.3e10, 3.0e10),
    "pythia": (1.414648e9, 2.775209e9, 6.857302e9),
    "olmo": (1.0e9,),
}
PAPER_ONE_MODEL = {
    ("OPT", 6.7e9): 32.5,
    ("OPT", 1.3e10): 24.9,
    ("OPT", 3.0e10): 15.0,
    ("pythia", 1.414648e9): 23.7,
    ("pythia", 2.775209e9): 11.7,
    ("pythia", 6.857302e9): 6.9,
    ("olmo", 1.0e9): 0.9,
}
PAPER_GADRE = {"1.4B": 0.71, "6.9B": 0.73, "grid": 0.88}  # RedPajama, percent
EPOCH = {  # Besiroglu et al. (2024): point estimate and 95% interval
    "E": (1.82, 1.77, 1.87),
    "A": (482.0, np.nan, np.nan),
    "B": (2085.0, np.nan, np.nan),
    "alpha": (0.348, 0.317, 0.373),
    "beta": (0.366, 0.331, 0.415),
}
CHINCHILLA_HOLDOUT_FLOPS = 1e21  # held-out: the points at the largest budgets
QUICK_CONTEXT = ("gpt3", "pythia", "olmo", "GPT2-c4-1")  # context of the --quick runs
