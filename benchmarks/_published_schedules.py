"""Published learning-rate schedules of bundled families, relative to their peak rate.

GPT-3 (Brown et al. 2020, appendix B): linear warm-up over 375M tokens, then
cosine decay to 10% of the peak over 260B tokens, then constant. Pythia
(Biderman et al. 2023): warm-up over 1% of its 143,000 steps of 2,097,152
tokens, cosine decay to 10% of the peak at the end. Used as the ``lr`` column
of those families in the benchmarks.
"""

from __future__ import annotations

import numpy as np


def gpt3_lr(tokens):
    warm, decay = 375e6, 260e9
    cos = 0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * np.clip(tokens / decay, 0, 1)))
    return np.where(tokens < warm, tokens / warm, cos)


def pythia_lr(tokens):
    total = 143_000 * 2_097_152
    warm = 0.01 * total
    cos = 0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * np.clip(tokens / total, 0, 1)))
    return np.where(tokens < warm, tokens / warm, cos)


SCHEDULES = {"gpt3": gpt3_lr, "pythia": pythia_lr, "pythia-deduped": pythia_lr}


def with_lr(df):
    """``df`` with an ``lr`` column for the families whose schedule is published."""
    lr = np.full(len(df), np.nan)
    for fam, fn in SCHEDULES.items():
        rows = (df["family"] == fam).to_numpy()
        lr[rows] = fn(df.loc[rows, "tokens"].to_numpy())
    return df.assign(lr=lr)
