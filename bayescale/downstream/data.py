"""Downstream task scores: validated arrays (:class:`DownstreamData`) and the paper's task sets.

One observation per run x task: the run's eval loss, the task's number of
items and chance error, and its score as a count of correct items.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

from bayescale.tables import DataError

GADRE_TASKS_17 = (
    "arc_easy",
    "bigbench_cs_algorithms",
    "bigbench_dyck_languages",
    "bigbench_novel_concepts",
    "bigbench_operators",
    "bigbench_qa_wikidata",
    "boolq",
    "commonsense_qa",
    "copa",
    "coqa",
    "hellaswag",
    "hellaswag_zeroshot",
    "lambada_openai",
    "piqa",
    "pubmed_qa_labeled",
    "squad",
    "winograd",
)
GADRE_TASKS_46 = tuple(
    sorted(
        GADRE_TASKS_17
        + (
            "agi_eval_lsat_ar",
            "agi_eval_lsat_lr",
            "agi_eval_lsat_rc",
            "agi_eval_sat_en",
            "arc_challenge",
            "bbq",
            "bigbench_conceptual_combinations",
            "bigbench_conlang_translation",
            "bigbench_elementary_math_qa",
            "bigbench_language_identification",
            "bigbench_logical_deduction",
            "bigbench_misconceptions",
            "bigbench_repeat_copy_logic",
            "bigbench_strange_stories",
            "bigbench_strategy_qa",
            "bigbench_understanding_fables",
            "enterprise_pii_classification",
            "jeopardy",
            "logi_qa",
            "math_qa",
            "mmlu",
            "mmlu_zeroshot",
            "openbook_qa",
            "simple_arithmetic_nospaces",
            "simple_arithmetic_withspaces",
            "siqa",
            "winogender_mc_female",
            "winogender_mc_male",
            "winogrande",
        )
    )
)
#: The paper's task averages: "avg17" (its default metric) and "avg46".
TASK_SETS = {"avg17": GADRE_TASKS_17, "avg46": GADRE_TASKS_46}
REQUIRED = ("family", "run", "task", "loss", "n_items", "chance_err")


@dataclass(frozen=True)
class DownstreamData:
    """Validated arrays for the downstream model (one observation per run x task)."""

    tasks: tuple
    chance_err: np.ndarray  # (T,)
    n_items: np.ndarray  # (T,) int
    families: tuple
    runs: tuple
    obs_task: np.ndarray  # (n,) int
    obs_run: np.ndarray  # (n,) int
    run_family: np.ndarray  # (R,) int
    run_loss: np.ndarray  # (R,)
    correct: np.ndarray  # (n,) int
    loss_ref: float

    @property
    def n_obs(self) -> int:
        return int(self.obs_task.shape[0])

    @property
    def obs_family(self) -> np.ndarray:
        return self.run_family[self.obs_run]

    @property
    def obs_loss(self) -> np.ndarray:
        return self.run_loss[self.obs_run]

    def hash(self) -> str:
        """SHA-256 of the arrays and labels the model sees."""
        h = hashlib.sha256()
        for arr in (self.obs_task, self.obs_run, self.run_family, self.correct, self.n_items):
            h.update(np.ascontiguousarray(arr, dtype=np.int64).tobytes())
        for arr in (self.chance_err, self.run_loss):
            h.update(np.ascontiguousarray(arr, dtype=np.float64).tobytes())
        for labels in (self.tasks, self.families, self.runs):
            h.update("\x1f".join(labels).encode())
        return h.hexdigest()[:16]

    def inputs(self):
        """The arrays the model consumes (:class:`bayescale.downstream.model.DownstreamInputs`)."""
        from bayescale.downstream.model import DownstreamInputs, logit_chance

        return DownstreamInputs(
            obs_task=np.asarray(self.obs_task, dtype=np.int32),
            obs_family=np.asarray(self.obs_family, dtype=np.int32),
            loss=np.asarray(self.obs_loss, dtype=float),
            n_items=np.asarray(self.n_items[self.obs_task], dtype=np.int64),
            correct=np.asarray(self.correct, dtype=np.int64),
            logit_chance=logit_chance(self.chance_err),
            loss_ref=float(self.loss_ref),
            n_families=len(self.families),
        )

    @classmethod
    def from_frame(cls, df: pd.DataFrame, *, tasks=None, families=None) -> DownstreamData:
        """Validate a run x task table.

        Parameters
        ----------
        df : pandas.DataFrame
            One row per (run, task) with ``family``, ``run``, ``task``,
            ``loss`` (the run's eval loss, nats), ``n_items``, ``chance_err``
            (1 - random-guess accuracy) and the score as ``correct`` (count),
            ``acc`` or ``err`` (fractions; ``correct = round(acc * n_items)``).
        tasks, families : list of str, optional
            Keep only these.
        """
        if not isinstance(df, pd.DataFrame):
            raise DataError(f"expected a pandas DataFrame, got {type(df).__name__}")
        missing = [c for c in REQUIRED if c not in df.columns]
        score = next((c for c in ("correct", "acc", "err") if c in df.columns), None)
        if missing or score is None:
            need = missing + ([] if score else ["one of correct/acc/err"])
            raise DataError(
                f"missing column(s) {need}; the downstream table needs one row per run x task "
                f"with {list(REQUIRED)} and the score as correct (count), acc or err (fractions)"
            )
        out = df.reset_index(drop=True).copy()
        if tasks is not None:
            tasks = [tasks] if isinstance(tasks, str) else list(tasks)
            unknown = sorted(set(tasks) - set(out["task"].astype(str)))
            if unknown:
                raise DataError(f"task(s) {unknown} are not in the table")
            out = out[out["task"].astype(str).isin(tasks)]
        if families is not None:
            families = [families] if isinstance(families, str) else list(families)
            out = out[out["family"].astype(str).isin(families)]
        if len(out) == 0:
            raise DataError("no rows left to fit (check the tasks/families filters)")
        for col in ("family", "run", "task"):
            out[col] = out[col].astype(str)
        for col in ("loss", "n_items", "chance_err", score):
            vals = pd.to_numeric(out[col], errors="coerce")
            bad = out.index[~np.isfinite(vals.to_numpy(dtype=float))]
            if len(bad):
                raise DataError(f"column '{col}' is missing or not numeric at rows {list(bad[:8])}")
            out[col] = vals
        checks = (
            ("loss", out["loss"] <= 0, "must be > 0 (eval loss in nats)"),
            (
                "n_items",
                (out["n_items"] < 1) | (out["n_items"] != np.round(out["n_items"])),
                "must be a positive whole number of items",
            ),
            ("chance_err", (out["chance_err"] <= 0) | (out["chance_err"] > 1), "must be in (0, 1]"),
        )
        if score in ("acc", "err"):
            bad_score = (out[score] < 0) | (out[score] > 1)
            checks += ((score, bad_score, "must be a fraction in [0, 1]"),)
        else:
            bad_score = (out[score] < 0) | (out[score] > out["n_items"])
            checks += ((score, bad_score, "must be a count in [0, n_items]"),)
        for col, mask, what in checks:
            if mask.any():
                raise DataError(f"column '{col}' {what}; bad rows {list(out.index[mask][:8])}")
        dup = out.duplicated(["run", "task"], keep=False)
        if dup.any():
            raise DataError(f"duplicated (run, task) pairs at rows {list(out.index[dup][:8])}")
        for key, cols in (("task", ("n_items", "chance_err")), ("run", ("loss", "family"))):
            for col in cols:
                varies = out.groupby(key)[col].nunique() > 1
                if varies.any():
                    raise DataError(
                        f"column '{col}' must be constant within each {key}; it varies for "
                        f"{list(varies.index[varies][:5])}"
                    )
        n = out["n_items"].to_numpy(dtype=np.int64)
        if score == "correct":
            correct = out["correct"].to_numpy(dtype=float).round().astype(np.int64)
        else:
            acc = out[score].to_numpy(dtype=float)
            acc = acc if score == "acc" else 1.0 - acc
            correct = np.round(acc * n).astype(np.int64)
        task_names = tuple(sorted(out["task"].unique()))
        meta = out.drop_duplicates("task").set_index("task").loc[list(task_names)]
        run_names = tuple(sorted(out["run"].unique()))
        run_meta = out.drop_duplicates("run").set_index("run").loc[list(run_names)]
        fam_names = tuple(sorted(out["family"].unique()))
        t_idx = {t: i for i, t in enumerate(task_names)}
        r_idx = {r: i for i, r in enumerate(run_names)}
        f_idx = {f: i for i, f in enumerate(fam_names)}
        run_loss = run_meta["loss"].to_numpy(dtype=float)
        return cls(
            tasks=task_names,
            chance_err=meta["chance_err"].to_numpy(dtype=float),
            n_items=meta["n_items"].to_numpy(dtype=np.int64),
            families=fam_names,
            runs=run_names,
            obs_task=out["task"].map(t_idx).to_numpy(dtype=np.int32),
            obs_run=out["run"].map(r_idx).to_numpy(dtype=np.int32),
            run_family=run_meta["family"].map(f_idx).to_numpy(dtype=np.int32),
            run_loss=run_loss,
            correct=correct,
            loss_ref=float(np.median(run_loss)),
        )
