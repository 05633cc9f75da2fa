"""The Hitchhiker's-guide collection of published loss curves (ColPret)."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from bayescale.datasets._files import read_bundled

NAME = "hitchhiker"
FILE = "hitchhiker.parquet"
DESCRIPTION = (
    "Published loss curves collected for the Hitchhiker's guide to scaling-law estimation "
    "(ColPret): 32 families, ~580 runs, one row per checkpoint"
)
CITATION = "Choshen, Zhang & Andreas, ICML 2025 (arXiv:2410.11840) + per-family sources"

# families of one suite: one team, architecture, tokenizer and (nearly) one
# corpus, so a model of one says almost what the same size of another reaches
# (the four Pythia suites' 12B runs end within 2.3% of each other)
SUITES = (("pythia", "pythia-deduped", "pythia-v0", "pythia-deduped-v0", "pythia-bf16"),)


def near_twins(family: str) -> tuple[str, ...]:
    """The other families of ``family``'s suite (:data:`SUITES`); empty if it has none."""
    for suite in SUITES:
        if family in suite:
            return tuple(f for f in suite if f != family)
    return ()


def without_twins_at(df: pd.DataFrame, family: str, params: float) -> pd.DataFrame:
    """``df`` without the runs of ``family``'s near twins at ``params`` parameters (5%).

    A held-out model is predicted from other families, not looked up: the same
    size of a near twin would give its answer away.
    """
    twin = df["family"].isin(near_twins(family)) & np.isclose(df["params"], params, rtol=0.05)
    return df[~twin]


def load_hitchhiker(*, families: str | Iterable[str] | None = None) -> pd.DataFrame:
    """Loss curves of the Hitchhiker's-guide collection, one row per checkpoint.

    The collection of pre-training loss curves assembled by Choshen, Zhang &
    Andreas for "A Hitchhiker's Guide to Scaling Law Estimation" (ICML 2025),
    in uniform units. 71,578 rows, 32 families, 584 runs. The three Gadre et al.
    over-training families of the collection are left out: load them from
    :func:`~bayescale.datasets.load_gadre`, which carries the paper's own loss.

    Parameters
    ----------
    families : str or list of str, optional
        Keep only these families. An unknown name raises
        :class:`~bayescale.datasets.DatasetNameError` listing the valid ones.

    Returns
    -------
    pandas.DataFrame
        Sorted by family, run, tokens. Columns:

        - ``family`` (str): the scaling family a law is fitted within (runs sharing
          architecture, data and recipe).
        - ``run`` (str): the training run (the collection's ``model_name``); unique
          across families.
        - ``params`` (float64): parameter count, raw.
        - ``tokens`` (float64): tokens seen at the checkpoint, raw (see ``lambda``
          below for the one exception).
        - ``loss`` (float64): the family's loss in nats: cross-entropy as reported,
          or the natural log of the perplexity for perplexity families.
        - ``is_final`` (bool): last checkpoint of the run.
        - ``step`` (float64): optimizer step, NaN where the source has none.
        - ``loss_name`` (str): what the loss is, in words.
        - ``hh_perf`` (float64): the number the paper's own code fitted (log2
          perplexity for the Pythia families, raw perplexity for OPT, the loss
          otherwise); only for comparison with the paper.
        - ``data`` (str): training corpus.
        - ``seed`` (str): always ``"0"``; no family has seed replicates.
        - ``epochs`` (float64): passes over the unique data (NaN where unknown).
        - ``arch`` (str): ``dec``, ``enc-dec`` or ``ssm``.
        - ``source`` (str), ``source_file`` (str): where the rows came from in the
          collection.
        - ``n_source_rows`` (int64): how many source rows were averaged into this
          row (1 for almost all).
        - ``flops`` (float64): ``6 * params * tokens``, as in the source table.
        - ``metric`` (str): what the loss measures and on which text
          (:func:`metric_of`), e.g. ``"validation loss (oscar)"``; families of
          one metric can be given one ``group``.

    Notes
    -----
    Pitfalls (read before fitting):

    - **The loss is not the same quantity across families.** Pythia's is the
      0-shot LAMBADA perplexity of lm-eval; OPT's an average of validation
      perplexities (Xia et al.); T5-Pile's a span-denoising validation
      perplexity close to 1 (ln-ppl 0.03-0.08 nats); GPT-3's and Chinchilla's
      are digitised from figures; OLMo's is mC4-en validation cross-entropy;
      K2, Mamba and RedPajama report training loss. Families are comparable
      only through a model that gives each family its own offsets.
    - **Perplexity families converted**: for ``OPT``, ``t5-pile`` and the five
      Pythia families, ``loss = ln(perplexity)``; the raw perplexity is
      ``exp(loss)``. Early Pythia checkpoints have LAMBADA perplexities in the
      millions (``loss`` up to 20), which trips the perplexity warning of
      :meth:`bayescale.ScalingData.from_frame` unless the warm-up is cut.
    - **Duplicates averaged**: the digitised GPT-3 curves have several points
      at the same token count (1,669 such groups, 6,506 source rows become
      4,011; the final point of ``gpt3-175b`` is one of them) and every
      ``lambda`` point appears four times in the source table (identical
      copies, kept bit for bit). Rows sharing (family, run, tokens) are merged:
      ``loss`` and ``hh_perf`` are averaged, ``is_final`` is true if any copy
      was final, and ``n_source_rows`` counts the copies.
    - **Digitised curves** (``gpt3``, ``chinchilla``, ``redPajama``) carry
      read-off noise and outliers; GPT-3 has ~500 points per run against 26 for
      Pythia: thin them (``max_points_per_run``) or model the trajectory noise,
      or dense runs dominate the fit.
    - ``chinchilla`` holds final losses only: one run per (N, FLOP budget),
      ``tokens = FLOPs / (6 N)``. Three of its points were digitised twice, at
      token counts 0.007-0.3% apart; the second reading is its own run
      (``<run>#2``), a repeat of the first, so no run has two final points.
    - ``lambda`` (Alabdulmohsin et al.) counts **seen examples, not tokens**:
      its ``tokens`` column is the number of examples.
    - **Single-run families** ``K2(single)``, ``llm360Mamba(single)`` and
      ``olmo-7b-twin(single)`` are not scaling families; ``llm360Mamba(single)``
      is a per-step training loss, extremely noisy (0.1 to 1.3 nats after
      warm-up, 21.8 at step 4). ``datablations-contour-c4`` holds final points
      of 229 runs trained for 1 to 9,000 epochs of repeated data.
    - ``GPT2-<corpus>-<k>`` families (datablations): three sizes (2.8B, 4.2B,
      8.7B) trained on ``<corpus>`` data repeated for ``k`` epochs.
    - **Warm-up**: checkpoints before ~1e10 tokens sit far off any power law
      (high learning rate, warm-up); the paper drops them, and so does
      :meth:`~bayescale.ScalingData.from_frame` by default (``min_tokens``).
    - **No seed replicates**: seed-level noise is identified only through its
      prior and the scatter between runs.

    Sources: IBM/ColPret @ 16f23bbe054277ddc4afd07a972dd7cfbe3f48c3 (MIT),
    tidied in ``../shared/data/tidy/colpret_losses``; the Pythia families were
    rebuilt from EleutherAI/pythia @ a19eecb807ec2c79a39ebf18108816e6ffffc1d5
    (Apache-2.0) because ColPret's Pythia table is not in its snapshot.
    Licences: ``bayescale/datasets/data/LICENSES.md``.

    Cite the collection, Choshen, Zhang & Andreas (2025), "A Hitchhiker's
    Guide to Scaling Law Estimation", ICML 2025, arXiv:2410.11840, and the
    source of every family you use:

    - ``GPT2-*``, ``datablations-contour-c4``: Muennighoff et al. (2023),
      "Scaling Data-Constrained Language Models", NeurIPS 2023, arXiv:2305.16264.
    - ``pythia``, ``pythia-deduped``, ``pythia-v0``, ``pythia-deduped-v0``,
      ``pythia-bf16``: Biderman et al. (2023), "Pythia: A Suite for Analyzing
      Large Language Models Across Training and Scaling", ICML 2023,
      arXiv:2304.01373.
    - ``chinchilla``: Hoffmann et al. (2022), "Training Compute-Optimal Large
      Language Models", arXiv:2203.15556.
    - ``gpt3``: Brown et al. (2020), "Language Models are Few-Shot Learners",
      arXiv:2005.14165.
    - ``OPT``: Zhang et al. (2022), "OPT: Open Pre-trained Transformer Language
      Models", arXiv:2205.01068; curves from Xia et al. (2023), "Training
      Trajectories of Language Models Across Scales", ACL 2023, arXiv:2212.09803.
    - ``olmo``, ``olmo-7b-twin(single)``: Groeneveld et al. (2024), "OLMo:
      Accelerating the Science of Language Models", arXiv:2402.00838.
    - ``lambda``: Alabdulmohsin, Neyshabur & Zhai (2022), "Revisiting Neural
      Scaling Laws in Language and Vision", NeurIPS 2022, arXiv:2209.06640.
    - ``K2(single)``, ``llm360Mamba(single)``: LLM360, Liu et al. (2023),
      "LLM360: Towards Fully Transparent Open-Source LLMs", arXiv:2312.06550.
    - ``t5-pile``: EleutherAI Pile-T5 (Sutawika, Komatsuzaki & Raffel, 2024,
      blog post and ``EleutherAI/pile-t5-*`` checkpoints).
    - ``redPajama``: Together AI (2023), RedPajama-INCITE release blog post
      (training loss read off its figure).

    Examples
    --------
    >>> from bayescale import ScalingData, load_dataset
    >>> df = load_dataset("hitchhiker", families=["gpt3"])
    >>> data = ScalingData.from_frame(df)  # warm-up cut and thinning by default
    """
    df = read_bundled(FILE, families, NAME)
    df["flops"] = 6.0 * df["params"] * df["tokens"]
    df["metric"] = metric_of(df)
    return df


# losses measured on the training corpus itself (its training stream or its own
# held-out split), by ``loss_name``; the others name their evaluation set
_ON_OWN_CORPUS = {
    "final training loss (digitised)": "training loss",
    "training lm loss": "training loss",
    "training loss": "training loss",
    "training loss (digitised)": "training loss",
    "final validation loss": "validation loss",
    "validation loss": "validation loss",
    "validation loss (digitised)": "validation loss",
    "val_loss (x = 'Seen Examples')": "validation loss",
}


def metric_of(df: pd.DataFrame) -> pd.Series:
    """What each row's loss measures and on which text: the quantity to group families by.

    ``loss_name`` where it names its evaluation set (LAMBADA, mC4-en, ...);
    otherwise the kind of loss with the training corpus it is measured on,
    e.g. ``"validation loss (c4)"``: a C4 loss and an OSCAR loss are two
    quantities though both are called "validation loss".
    """
    kind = df["loss_name"].map(_ON_OWN_CORPUS)
    return kind.where(kind.isna(), kind + " (" + df["data"] + ")").fillna(df["loss_name"])
