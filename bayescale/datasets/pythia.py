"""Per-checkpoint lm-eval results of the Pythia suites."""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

from bayescale.datasets._files import read_bundled

NAME = "pythia_evals"
FILE = "pythia_evals.parquet"
DESCRIPTION = (
    "Pythia evaluation results per checkpoint (lm-eval: LAMBADA, PIQA, ARC, MMLU, BLiMP, ...; "
    "0- and 5-shot), one row per (checkpoint, few-shot, task, metric), with the LAMBADA loss"
)
CITATION = "Biderman et al. 2023, ICML (arXiv:2304.01373)"


def load_pythia_evals(*, families: str | Iterable[str] | None = None) -> pd.DataFrame:
    """Downstream evaluations of the Pythia checkpoints, one row per result.

    The lm-evaluation-harness results that EleutherAI published for the
    Pythia suites, for every evaluated checkpoint: 195,986 rows, 8 families,
    40 runs. Each row carries the loss of its checkpoint (0-shot LAMBADA
    log-perplexity, the loss of the Pythia families of
    :func:`~bayescale.datasets.load_hitchhiker`, equal to it where both
    exist), so that any task can be related to the loss.

    Parameters
    ----------
    families : str or list of str, optional
        Keep only these families. An unknown name raises
        :class:`~bayescale.datasets.DatasetNameError` listing the valid ones.

    Returns
    -------
    pandas.DataFrame
        Sorted by family, run, tokens, num_fewshot, task, metric. Columns:

        - ``family`` (str): ``pythia`` (v1, standard Pile), ``pythia-deduped``
          (v1, deduplicated Pile), ``pythia-v0``, ``pythia-deduped-v0`` (the
          original runs, kept as "v0" after the suite was retrained),
          ``pythia-bf16`` (one 1B run in bfloat16), and
          ``pythia-deduped-baseline``, ``pythia-deduped-intervention``,
          ``pythia-deduped-intervention-long`` (continuations of deduplicated
          models from a late checkpoint, >= 2.4e11 tokens, for the paper's
          gender-pronoun intervention study).
        - ``run`` (str): e.g. ``pythia-v1/pythia-410m-deduped``.
        - ``params`` (float64): total parameters including embeddings (the
          "410m" model has 405M).
        - ``tokens`` (float64): tokens seen, ``step`` times the tokens per step
          (2,097,152 = 1024 sequences of 2048 tokens; 4,194,304 for the v0
          160M, 410M and 1.4B runs).
        - ``loss`` (float64): ``ln`` of the 0-shot LAMBADA perplexity of the same
          checkpoint, in nats; the same value on every row of a checkpoint.
        - ``step`` (float64): optimizer step.
        - ``num_fewshot`` (int64): 0 or 5 in-context examples (5-shot results
          exist for a subset of tasks, and not for the intervention families).
        - ``task`` (str): lm-eval task, e.g. ``lambada_openai``, ``piqa``,
          ``arc_easy``, ``hendrycksTest-<subject>`` (MMLU), ``blimp_<phenomenon>``,
          ``crows_pairs_<language>_<bias>``, ``wikitext``.
        - ``metric`` (str): ``acc``, ``acc_norm`` (accuracy in [0, 1]), ``ppl``
          (LAMBADA perplexity), ``bits_per_byte``, ``byte_perplexity``,
          ``word_perplexity`` (WikiText), ``likelihood_difference``,
          ``pct_stereotype`` (CrowS-Pairs).
        - ``value`` (float64): the metric; ``stderr`` (float64): its standard
          error as reported (NaN for the WikiText metrics).
        - ``size_label`` (str): nominal size, ``70m`` ... ``12b``.

    Notes
    -----
    - **The loss is LAMBADA perplexity, not a training or validation loss**:
      it measures one benchmark and is very large early in training (``loss``
      up to 20 nats at the first checkpoints; drop them or expect the
      perplexity warning of :meth:`~bayescale.ScalingData.from_frame`).
    - Checkpoints before ~1e10 tokens sit far off any power law (warm-up).
    - Accuracies near chance carry little signal; MMLU in particular stays
      near chance (0.25) for every Pythia size (at most 0.31 averaged over
      its subjects, 5-shot, 12B).
    - Left out: the initial checkpoint (step 0, no tokens seen), the BLOOM and
      OPT final-only results of the same repository (no token counts), the
      batch-size ablation runs (evaluated 5-shot only, so no 0-shot LAMBADA
      loss) and ``pythia-410m-deduped/baseline`` (no LAMBADA result);
      result files uploaded twice with identical numbers are merged.
    - Runs of one family differ only in size; no seed replicates.

    Source: EleutherAI/pythia @ a19eecb807ec2c79a39ebf18108816e6ffffc1d5
    (``evals/``, Apache-2.0, see ``bayescale/datasets/data/LICENSES.md``),
    converted to a table; data only.

    Cite: Biderman et al. (2023), "Pythia: A Suite for Analyzing Large Language
    Models Across Training and Scaling", ICML 2023, arXiv:2304.01373; and Gao
    et al., "A framework for few-shot language model evaluation" (the
    lm-evaluation-harness) for the evaluation code.
    """
    return read_bundled(FILE, families, NAME)
