"""The over-training testbed of Gadre et al. (2024): final losses and downstream errors."""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

from bayescale.datasets._files import read_bundled

CITATION = "Gadre et al. 2024, arXiv:2403.08540 (ICLR 2025)"
VAL_SETS = (
    "c4_val",
    "openlm",
    "paloma_c4_en",
    "paloma_redpajama",
    "paloma_refinedweb",
    "paloma_code100",
    "paloma_ptb",
    "c4_german",
)

RUNS_NAME = "gadre"
RUNS_FILE = "gadre.parquet"
RUNS_DESCRIPTION = (
    "Over-training testbed: 104 runs (3 corpora, 0.011B-6.9B params, M = D/N from 5 to 640), "
    "final C4-eval loss, 8 validation losses with 95% intervals, average downstream errors"
)

DOWNSTREAM_NAME = "gadre_downstream"
DOWNSTREAM_FILE = "gadre_downstream.parquet"
DOWNSTREAM_DESCRIPTION = (
    "Over-training testbed, downstream: top-1 error of the 104 runs on 46 tasks "
    "(17-task subset flagged), with each run's C4-eval loss"
)


def load_gadre(*, families: str | Iterable[str] | None = None) -> pd.DataFrame:
    """Final losses of the 104 over-training runs of Gadre et al. (2024).

    One row per run (each run has only its final checkpoint). Three families,
    one per training corpus: ``overtrain-C4`` (34 runs), ``overtrain-RedPajama``
    (35) and ``overtrain-RefinedWeb`` (35). Each corpus has 4 small sizes
    (0.011B, 0.079B, 0.154B, 0.411B parameters) at token multipliers
    M = D/N in {5, 10, 20, 40, 80, 160, 320, 640} (C4 lacks 0.411B at M=640),
    plus 1.4B at M=20 and at the largest single-epoch M (C4 80, RedPajama 640,
    RefinedWeb 320) and 6.9B at M=20. All M are exact (D = M * N).

    Parameters
    ----------
    families : str or list of str, optional
        Keep only these families. An unknown name raises
        :class:`~bayescale.datasets.DatasetNameError` listing the valid ones.

    Returns
    -------
    pandas.DataFrame
        104 rows sorted by family, params, tokens. Columns:

        - ``family`` (str): ``overtrain-<corpus>``.
        - ``run`` (str): the paper's run name, ``<dataset_key>-<arch>-<M/20>``.
        - ``params`` (float64): N, total parameters including embeddings (as in
          the paper).
        - ``tokens`` (float64): D, training tokens (final checkpoint).
        - ``loss`` (float64): ``loss_c4_val``, the paper's default "C4 eval"
          next-token cross-entropy in nats.
        - ``is_final`` (bool): always True.
        - ``M`` (float64): token multiplier D/N.
        - ``flops`` (float64): C = 6 N D.
        - ``size_label`` (str): 0.011B ... 6.9B; ``arch`` (str): architecture key.
        - ``params_no_embed`` (float64): N without embedding parameters.
        - ``default_fit_loss`` (bool): the 5 runs per corpus the paper fits its
          loss law on (4 small sizes at M=20 + 0.011B at M=320, paper Table 1).
        - ``default_fit_err`` (bool): those 5 plus 1.4B at M=20, used for the
          loss-to-error law.
        - ``loss_<set>``, ``loss_<set>_lo95``, ``loss_<set>_hi95`` (float64):
          mean cross-entropy (nats/token) and its sequence-level 95% interval on
          8 evaluation sets: ``c4_val`` (C4 eval, the default), ``openlm``
          (OpenLM eval: arXiv + code + news), ``paloma_c4_en``,
          ``paloma_redpajama``, ``paloma_refinedweb``, ``paloma_code100``,
          ``paloma_ptb``, ``c4_german``.
        - ``err_avg17`` (float64): mean top-1 error over the paper's 17-task
          subset (its default downstream metric); ``err_avg46``: over all 46
          tasks. Error is plain 1 - accuracy, not chance-corrected (chance-level
          averages: 0.809 for the 17 tasks, 0.75 for the 46).
        - ``lr``, ``warmup``, ``wd``, ``lr_cooldown`` (float64): optimiser
          settings of the run (peak learning rate, warm-up steps, decoupled
          weight decay, final learning rate).

    Notes
    -----
    - Only final checkpoints: the training curves are on W&B and were not
      collected; there are no intermediate points, so there is nothing for a
      warm-up cut to remove (:meth:`~bayescale.ScalingData.from_frame` always
      keeps final checkpoints).
    - Small runs: most runs are far below 1e10 tokens (the smallest has 53M);
      the paper fits them anyway because each run finished its own schedule.
    - The families differ only in training data; all are evaluated on the same
      C4 eval set, so losses of RedPajama/RefinedWeb runs are out-of-domain.
    - No seed replicates (the ``seed`` field of the source is mostly empty).
    - The "overtrain-*" families of the ``"hitchhiker"`` dataset are the same
      runs with another loss (OpenLM eval); use this dataset for them.

    Source: mlfoundations/scaling @ a003c4913793ac2ae7ef87b28ecb562955d026d5 (MIT
    licence, see ``bayescale/datasets/data/LICENSES.md``), converted from its
    ``exp_data`` JSON files (``../shared/data/gadre``); data only.

    Cite: Gadre et al. (2024), "Language models scale reliably with
    over-training and on downstream tasks", ICLR 2025, arXiv:2403.08540.
    """
    return read_bundled(RUNS_FILE, families, RUNS_NAME)


def load_gadre_downstream(*, families: str | Iterable[str] | None = None) -> pd.DataFrame:
    """Downstream top-1 errors of the over-training runs, one row per (run, task).

    104 runs x 46 LLM-Foundry tasks = 4,784 rows, evaluated by Gadre et al.
    (2024) on the final checkpoint of each run of :func:`load_gadre`.

    Parameters
    ----------
    families : str or list of str, optional
        Keep only these families (``overtrain-C4``, ``overtrain-RedPajama``,
        ``overtrain-RefinedWeb``). An unknown name raises
        :class:`~bayescale.datasets.DatasetNameError` listing the valid ones.

    Returns
    -------
    pandas.DataFrame
        Sorted by family, params, tokens, task. Columns:

        - ``family``, ``run`` (str), ``params``, ``tokens``, ``M`` (float64):
          as in :func:`load_gadre`.
        - ``loss`` (float64): the run's C4-eval loss (nats), so that each row
          pairs a loss with an error.
        - ``task`` (str): LLM-Foundry task name.
        - ``acc`` (float64): top-1 accuracy; ``err`` (float64): 1 - acc.
        - ``n_items`` (int64): number of evaluation items of the task (32 to
          58,492); the binomial noise of ``err`` scales with it. Present for
          every task.
        - ``in_subset17`` (bool): task in the paper's 17-task subset.
        - ``category`` (str): e.g. "world knowledge", "commonsense reasoning".
        - ``task_type`` (str): "multiple choice", "language modeling" or
          "schema".
        - ``shots`` (int64): in-context examples.
        - ``chance_err`` (float64): error of random guessing, 1 - random
          baseline accuracy (1.0 for open-ended language-modelling tasks).
        - ``default_fit_loss``, ``default_fit_err`` (bool): as in
          :func:`load_gadre`.

    Notes
    -----
    - Errors are plain 1 - accuracy; many tasks sit at chance for the small
      models (compare ``err`` with ``chance_err``), which is why the paper
      averages over the 17-task subset, where the models rise above chance.
    - Small tasks are noisy: ``bigbench_novel_concepts`` and
      ``bigbench_repeat_copy_logic`` have 32 items, ``winogender_mc_*`` 60.
    - ``err_avg17`` of :func:`load_gadre` is the mean of ``err`` over the rows
      with ``in_subset17`` (to ~1e-10).

    Source: mlfoundations/scaling @ a003c4913793ac2ae7ef87b28ecb562955d026d5 (MIT
    licence, see ``bayescale/datasets/data/LICENSES.md``), converted from its
    ``exp_data`` JSON files (``../shared/data/gadre``); data only.

    Cite: Gadre et al. (2024), "Language models scale reliably with
    over-training and on downstream tasks", ICLR 2025, arXiv:2403.08540.
    """
    return read_bundled(DOWNSTREAM_FILE, families, DOWNSTREAM_NAME)
