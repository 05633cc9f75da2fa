"""Rebuild the datasets bundled in ``bayescale/datasets/data/`` from the shared data folder.

Usage::

    uv run python scripts/build_datasets.py [--source DIR] [--out DIR] [NAME ...]

``--source`` defaults to ``../shared/data`` beside the project root, ``--out`` to
``bayescale/datasets/data``.

Only data is converted (renamed columns, averaged duplicates, joined tables); the
output is zstd-compressed Parquet with a fixed row order and no pandas metadata,
so that rerunning the script on the same inputs gives byte-identical files.
The per-dataset transformations live in the ``build_*`` functions below; the
package only reads their output.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SOURCE = ROOT.parent / "shared" / "data"
DEFAULT_OUT = ROOT / "bayescale" / "datasets" / "data"
ZSTD_LEVEL = 19

# the over-training runs come from the "gadre" dataset with the paper's own C4-eval loss
HITCHHIKER_EXCLUDED = ("overtrain-C4", "overtrain-RedPajama", "overtrain-RefinedWeb")
GADRE_FAMILY = {
    "C4": "overtrain-C4",
    "RedPajama": "overtrain-RedPajama",
    "RefinedWeb": "overtrain-RefinedWeb",
}
GADRE_VAL_SETS = (
    "c4_val",
    "openlm",
    "paloma_c4_en",
    "paloma_redpajama",
    "paloma_refinedweb",
    "paloma_code100",
    "paloma_ptb",
    "c4_german",
)
# (suite, deduped, variant) -> family; names follow the "hitchhiker" Pythia families
PYTHIA_FAMILY = {
    ("pythia-v1", False, "standard"): "pythia",
    ("pythia-v1", True, "standard"): "pythia-deduped",
    ("pythia-v0", False, "standard"): "pythia-v0",
    ("pythia-v0", True, "standard"): "pythia-deduped-v0",
    ("pythia-v1", False, "bf16"): "pythia-bf16",
    ("pythia-v1", True, "baseline"): "pythia-deduped-baseline",
    ("pythia-v1", True, "intervention"): "pythia-deduped-intervention",
    ("pythia-v1", True, "intervention-long"): "pythia-deduped-intervention-long",
}


def _check_constant(df: pd.DataFrame, keys: list[str], cols: list[str]) -> None:
    """Fail loudly if a column we take 'first' of varies within a duplicate group."""
    n = df.groupby(keys, sort=False, dropna=False)[cols].nunique(dropna=False)
    bad = [c for c in cols if (n[c] > 1).any()]
    if bad:
        raise SystemExit(f"columns {bad} vary within duplicated {keys} groups; cannot average")


def _split_final_readings(df: pd.DataFrame) -> pd.DataFrame:
    """Give each extra final reading of a run its own run (``run#2``, ...).

    Three digitised Chinchilla runs carry two readings of their final loss,
    0.007-0.3% apart in tokens, both marked final. Kept as one run's two
    checkpoints, their read-off scatter becomes a jump that the trajectory noise
    ties almost perfectly (and NUTS diverges on); as two runs of one size and
    budget it is scatter between runs, which the model has a term for, and it
    is how the point fits read them.
    """
    k = df[df["is_final"]].groupby(["family", "run"], sort=False).cumcount()
    k = k.reindex(df.index, fill_value=0)
    return df.assign(run=df["run"].where(k == 0, df["run"] + "#" + (k + 1).astype(str)))


def build_hitchhiker(source: Path) -> pd.DataFrame:
    """Tidy ColPret losses, duplicates averaged, over-training families removed.

    ``loss_raw`` and ``flops`` are left out: the first is ``exp(loss)`` for the
    perplexity families and ``loss`` otherwise, the second is ``6 * params * tokens``
    in every row of the source, and together they would double the file.
    """
    raw = pd.read_parquet(source / "tidy" / "colpret_losses.parquet")
    raw = raw[~raw["family"].isin(HITCHHIKER_EXCLUDED)]
    df = pd.DataFrame(
        {
            "family": raw["family"].astype(str),
            "run": raw["model_name"].astype(str),
            "params": raw["num_params"].astype("float64"),
            "tokens": raw["tokens_seen"].astype("float64"),
            "loss": raw["loss_nats"].astype("float64"),
            "is_final": raw["is_final"].astype(bool),
            "step": raw["step"].astype("float64"),
            "loss_name": raw["loss_name"].astype(str),
            "hh_perf": raw["hh_perf"].astype("float64"),
            "data": raw["data"].astype(str),
            "epochs": raw["epochs"].astype("float64"),
            "arch": raw["arch"].astype(str),
            "source": raw["source"].astype(str),
            "source_file": raw["source_file"].astype(str),
            "seed": raw["seed"].astype(str),
        }
    )
    keys = ["family", "run", "tokens"]
    averaged = ["loss", "hh_perf"]
    firsts = [c for c in df.columns if c not in keys + averaged + ["is_final"]]
    _check_constant(df, keys, firsts)
    grouped = df.groupby(keys, sort=True)
    out = grouped[firsts].first()
    out["is_final"] = grouped["is_final"].any()
    for col in averaged:
        mean = grouped[col].mean()
        lo, hi = grouped[col].min(), grouped[col].max()
        # exact copies (the 4x-repeated `lambda` rows) keep their value bit for bit
        out[col] = mean.where(lo != hi, lo)
    out["n_source_rows"] = grouped.size().astype("int64")
    out = _split_final_readings(out.reset_index())
    cols = [
        "family",
        "run",
        "params",
        "tokens",
        "loss",
        "is_final",
        "step",
        "loss_name",
        "hh_perf",
        "data",
        "seed",
        "epochs",
        "arch",
        "source",
        "source_file",
        "n_source_rows",
    ]
    return out[cols].reset_index(drop=True)


def _gadre_runs(source: Path) -> pd.DataFrame:
    runs = pd.read_csv(source / "gadre" / "runs.csv")
    unknown = set(runs["train_dataset"]) - set(GADRE_FAMILY)
    if unknown:
        raise SystemExit(f"unexpected train_dataset values {sorted(unknown)} in runs.csv")
    return runs


def build_gadre(source: Path) -> pd.DataFrame:
    """One row per over-training run (final checkpoint), all validation losses."""
    runs = _gadre_runs(source)
    n = runs["N"].astype("float64")
    d = runs["D"].astype("float64")
    out = pd.DataFrame(
        {
            "family": runs["train_dataset"].map(GADRE_FAMILY),
            "run": runs["run"].astype(str),
            "params": n,
            "tokens": d,
            "loss": runs["loss_c4_val"].astype("float64"),
            "is_final": True,
            "M": runs["M"].astype("float64"),
            "flops": 6.0 * n * d,
            "size_label": runs["size_label"].astype(str),
            "arch": runs["arch"].astype(str),
            "params_no_embed": runs["N_no_embed"].astype("float64"),
            "default_fit_loss": runs["default_fit_loss"].astype(bool),
            "default_fit_err": runs["default_fit_err"].astype(bool),
        }
    )
    for vs in GADRE_VAL_SETS:
        for suffix in ("", "_lo95", "_hi95"):
            out[f"loss_{vs}{suffix}"] = runs[f"loss_{vs}{suffix}"].astype("float64")
    out["err_avg17"] = runs["err_avg17"].astype("float64")
    out["err_avg46"] = runs["err_avg46"].astype("float64")
    for col in ("lr", "warmup", "wd", "lr_cooldown"):
        out[col] = runs[col].astype("float64")
    return out.sort_values(["family", "params", "tokens"], kind="stable").reset_index(drop=True)


def build_gadre_downstream(source: Path) -> pd.DataFrame:
    """One row per (over-training run, downstream task)."""
    runs = _gadre_runs(source)
    long = pd.read_csv(source / "gadre" / "downstream_long.csv")
    if long["n_items"].isna().any():
        missing = sorted(long.loc[long["n_items"].isna(), "task"].unique())
        raise SystemExit(f"n_items missing for tasks {missing}; decide how to fill them")
    meta = runs.set_index("run")
    missing_runs = sorted(set(long["run"]) - set(meta.index))
    if missing_runs:
        raise SystemExit(f"downstream rows for runs absent from runs.csv: {missing_runs[:5]}")
    m = meta.loc[long["run"]]
    out = pd.DataFrame(
        {
            "family": long["train_dataset"].map(GADRE_FAMILY).to_numpy(),
            "run": long["run"].astype(str).to_numpy(),
            "params": long["N"].astype("float64").to_numpy(),
            "tokens": long["D"].astype("float64").to_numpy(),
            "M": long["M"].astype("float64").to_numpy(),
            "loss": m["loss_c4_val"].astype("float64").to_numpy(),
            "task": long["task"].astype(str).to_numpy(),
            "acc": long["acc"].astype("float64").to_numpy(),
            "err": long["err"].astype("float64").to_numpy(),
            "n_items": long["n_items"].astype("int64").to_numpy(),
            "in_subset17": long["in_subset17"].astype(bool).to_numpy(),
            "category": long["category"].astype(str).to_numpy(),
            "task_type": long["task_type"].astype(str).to_numpy(),
            "shots": long["shots"].astype("int64").to_numpy(),
            "chance_err": 1.0 - long["random_baseline_pct"].astype("float64").to_numpy() / 100.0,
            "default_fit_loss": m["default_fit_loss"].astype(bool).to_numpy(),
            "default_fit_err": m["default_fit_err"].astype(bool).to_numpy(),
        }
    )
    return out.sort_values(["family", "params", "tokens", "task"], kind="stable").reset_index(
        drop=True
    )


def build_pythia_evals(source: Path) -> pd.DataFrame:
    """Per-checkpoint lm-eval results of the Pythia suites, with the checkpoint's loss."""
    raw = pd.read_parquet(source / "pythia" / "pythia_evals_long.parquet")
    # BLOOM/OPT rows are final-only without token counts; step 0 is the initialisation
    raw = raw[raw["suite"].str.startswith("pythia") & (raw["tokens_seen"] > 0)]
    combos = zip(raw["suite"], raw["deduped"], raw["variant"], strict=True)
    fam = pd.Series([PYTHIA_FAMILY.get(k) for k in combos], index=raw.index, dtype=object)
    raw = raw[fam.notna()].assign(family=fam[fam.notna()])
    keys = ["family", "run_name", "tokens_seen", "num_fewshot", "task", "metric"]
    # some lm-eval result files were uploaded twice with identical numbers
    _check_constant(raw, keys, ["value", "stderr", "step", "num_params"])
    raw = raw.drop_duplicates(keys)
    lam = raw[
        (raw["task"] == "lambada_openai") & (raw["metric"] == "ppl") & (raw["num_fewshot"] == 0)
    ].set_index(["run_name", "tokens_seen"])["value"]
    loss = np.log(lam.reindex(pd.MultiIndex.from_frame(raw[["run_name", "tokens_seen"]])))
    raw = raw.assign(loss=loss.to_numpy())
    # batch-size ablations were only evaluated 5-shot: no 0-shot LAMBADA loss to attach
    raw = raw[raw["loss"].notna()]
    out = pd.DataFrame(
        {
            "family": raw["family"].astype(str),
            "run": raw["run_name"].astype(str),
            "params": raw["num_params"].astype("float64"),
            "tokens": raw["tokens_seen"].astype("float64"),
            "loss": raw["loss"].astype("float64"),
            "step": raw["step"].astype("float64"),
            "num_fewshot": raw["num_fewshot"].astype("int64"),
            "task": raw["task"].astype(str),
            "metric": raw["metric"].astype(str),
            "value": raw["value"].astype("float64"),
            "stderr": raw["stderr"].astype("float64"),
            "size_label": raw["size_label"].astype(str),
        }
    )
    order = ["family", "run", "tokens", "num_fewshot", "task", "metric"]
    return out.sort_values(order, kind="stable").reset_index(drop=True)


MULTIPOWER_TOKENS_PER_STEP = 2**19  # assumed (the source does not state it); see the loader
MULTIPOWER_SIZES = {"25": 25e6, "100": 100e6}


def build_multipower(source: Path) -> pd.DataFrame:
    """One row per logged step of the nine-schedule curves (25M and 100M)."""
    frames = []
    for folder, params in MULTIPOWER_SIZES.items():
        for path in sorted((source / "multipower" / f"csv_{folder}").glob("*.csv")):
            raw = pd.read_csv(path)
            if list(raw.columns) != ["step", "lr", "loss"]:
                raise SystemExit(f"unexpected columns {list(raw.columns)} in {path}")
            raw = raw.sort_values("step", kind="stable")
            step = raw["step"].astype("float64")
            frames.append(
                pd.DataFrame(
                    {
                        "family": "multipower",
                        "run": f"{folder}m-{path.stem}",
                        "params": params,
                        "tokens": step * MULTIPOWER_TOKENS_PER_STEP,
                        "loss": raw["loss"].astype("float64"),
                        "is_final": step == step.max(),
                        "step": step,
                        "lr": raw["lr"].astype("float64"),
                        "schedule": path.stem,
                        "size_label": f"{folder}m",
                    }
                )
            )
    out = pd.concat(frames, ignore_index=True)
    return out.sort_values(["family", "params", "run", "step"], kind="stable").reset_index(
        drop=True
    )


BUILDERS = {
    "hitchhiker": build_hitchhiker,
    "gadre": build_gadre,
    "gadre_downstream": build_gadre_downstream,
    "pythia_evals": build_pythia_evals,
    "multipower": build_multipower,
}


def write_parquet(df: pd.DataFrame, path: Path) -> None:
    """Deterministic zstd Parquet: one row group, no pandas metadata, no statistics."""
    table = pa.Table.from_pandas(df, preserve_index=False).replace_schema_metadata(None)
    pq.write_table(
        table,
        path,
        compression="zstd",
        compression_level=ZSTD_LEVEL,
        use_dictionary=True,
        write_statistics=False,
        row_group_size=max(len(df), 1),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="shared data folder")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder")
    parser.add_argument("names", nargs="*", help=f"datasets to build (default: {list(BUILDERS)})")
    args = parser.parse_args(argv)
    names = args.names or list(BUILDERS)
    unknown = sorted(set(names) - set(BUILDERS))
    if unknown:
        parser.error(f"unknown dataset(s) {unknown}; choose from {list(BUILDERS)}")
    if not args.source.is_dir():
        parser.error(f"source folder {args.source} does not exist")
    args.out.mkdir(parents=True, exist_ok=True)
    for name in names:
        df = BUILDERS[name](args.source)
        path = args.out / f"{name}.parquet"
        write_parquet(df, path)
        print(f"{name:18s} {len(df):7d} rows  {path.stat().st_size / 1024:8.1f} KiB  {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
