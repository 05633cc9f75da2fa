"""Bundled real datasets: contents, documented counts, errors and consistency."""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bayescale import ScalingData, list_datasets, load_dataset
from bayescale.datasets import DatasetNameError, load_gadre, load_hitchhiker

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
DATA_DIR = ROOT / "bayescale" / "datasets" / "data"

CONTRACT_NAMES = ("hitchhiker", "gadre", "gadre_downstream")
ROWS = {
    "hitchhiker": 71578,
    "gadre": 104,
    "gadre_downstream": 4784,
    "pythia_evals": 195986,
    "multipower": 4162,
}
REQUIRED = ("family", "run", "params", "tokens", "loss")
GADRE_RUNS = {"overtrain-C4": 34, "overtrain-RedPajama": 35, "overtrain-RefinedWeb": 35}
HITCHHIKER_FAMILIES = sorted(load_hitchhiker()["family"].unique())


def test_list_datasets_describes_every_dataset():
    listing = list_datasets()
    assert list(listing.columns) == ["name", "description", "rows", "families", "runs", "citation"]
    assert set(CONTRACT_NAMES) <= set(listing["name"])
    for row in listing.itertuples():
        df = load_dataset(row.name)
        assert row.rows == len(df)
        assert row.families == df["family"].nunique()
        assert row.runs == len(df[["family", "run"]].drop_duplicates())
        assert row.description and row.citation


@pytest.mark.parametrize("name", list(list_datasets()["name"]))
def test_dataset_is_tidy_and_sane(name):
    df = load_dataset(name)
    assert set(REQUIRED) <= set(df.columns)
    assert pd.api.types.is_string_dtype(df["family"]) and pd.api.types.is_string_dtype(df["run"])
    for col in ("params", "tokens", "loss"):
        assert df[col].dtype == np.float64, col
        assert np.isfinite(df[col]).all(), col
    assert (df["params"] >= 1e4).all() and (df["tokens"] >= 1e4).all()
    assert (df["loss"] > 0).all()
    # a run has one size
    assert (df.groupby(["family", "run"])["params"].nunique() == 1).all()
    if name in ROWS:
        assert len(df) == ROWS[name]


def test_hitchhiker_contents():
    df = load_dataset("hitchhiker")
    assert len(HITCHHIKER_FAMILIES) == 32
    assert not any(f.startswith("overtrain-") for f in HITCHHIKER_FAMILIES)
    # 581 source runs; three Chinchilla points digitised twice are a second run each
    assert df["run"].nunique() == 584 and df["run"].str.endswith("#2").sum() == 3
    assert not df.duplicated(["family", "run", "tokens"]).any()
    # every source row except the 104 over-training ones is accounted for
    assert df["n_source_rows"].sum() == 74864 - 104
    assert set(df["seed"]) == {"0"}
    assert df["is_final"].dtype == bool
    assert (df.groupby(["family", "run"])["is_final"].sum() == 1).all()
    gpt3 = df[df["family"] == "gpt3"]
    assert len(gpt3) == 4011 and gpt3["n_source_rows"].sum() == 6506
    np.testing.assert_array_equal(df["flops"], 6.0 * df["params"] * df["tokens"])


@pytest.mark.parametrize("family", HITCHHIKER_FAMILIES)
def test_every_hitchhiker_family_builds_scaling_data(family):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the perplexity warning is expected for some
        data = ScalingData.from_frame(
            load_dataset("hitchhiker", families=[family]), min_tokens=None
        )
    assert data.families == (family,)
    assert data.n_obs > 0 and np.all(data.loss > 0)


def test_gadre_runs():
    df = load_dataset("gadre")
    assert df["run"].is_unique and len(df) == 104
    assert df.groupby("family").size().to_dict() == GADRE_RUNS
    assert df["is_final"].all()
    np.testing.assert_allclose(df["M"], df["tokens"] / df["params"], rtol=1e-12)
    assert set(df["M"]) == {5.0, 10.0, 20.0, 40.0, 80.0, 160.0, 320.0, 640.0}
    np.testing.assert_array_equal(df["flops"], 6.0 * df["params"] * df["tokens"])
    np.testing.assert_array_equal(df["loss"], df["loss_c4_val"])
    assert (df.groupby("family")["default_fit_loss"].sum() == 5).all()
    assert (df.groupby("family")["default_fit_err"].sum() == 6).all()
    assert (df["default_fit_err"] | ~df["default_fit_loss"]).all()
    for vs in ("c4_val", "openlm", "paloma_c4_en", "paloma_redpajama", "paloma_refinedweb"):
        assert (df[f"loss_{vs}_lo95"] <= df[f"loss_{vs}"]).all()
        assert (df[f"loss_{vs}"] <= df[f"loss_{vs}_hi95"]).all()
    for vs in ("paloma_code100", "paloma_ptb", "c4_german"):
        assert {f"loss_{vs}", f"loss_{vs}_lo95", f"loss_{vs}_hi95"} <= set(df.columns)
    data = ScalingData.from_frame(df)
    assert data.n_obs == 104  # final checkpoints survive the warm-up cut


def test_gadre_downstream_matches_runs():
    runs = load_dataset("gadre").set_index("run")
    df = load_dataset("gadre_downstream")
    assert df["task"].nunique() == 46
    assert df.loc[df["in_subset17"], "task"].nunique() == 17
    assert df.groupby("run").size().eq(46).all() and df["run"].nunique() == 104
    assert df["n_items"].dtype == np.int64 and (df["n_items"] >= 32).all()
    assert df["in_subset17"].dtype == bool and df["shots"].dtype == np.int64
    np.testing.assert_allclose(df["err"], 1.0 - df["acc"], atol=1e-9)
    assert df["chance_err"].between(0, 1).all()
    np.testing.assert_array_equal(df["loss"], runs.loc[df["run"], "loss_c4_val"])
    avg17 = df[df["in_subset17"]].groupby("run")["err"].mean()
    np.testing.assert_allclose(avg17, runs.loc[avg17.index, "err_avg17"], rtol=0, atol=1e-9)
    avg46 = df.groupby("run")["err"].mean()
    np.testing.assert_allclose(avg46, runs.loc[avg46.index, "err_avg46"], rtol=0, atol=1e-9)


def test_the_metric_tells_apart_losses_of_one_name_on_different_text():
    df = load_dataset("hitchhiker").drop_duplicates("family").set_index("family")
    metric = df["metric"]
    assert metric["GPT2-c4-1"] == metric["datablations-contour-c4"] == "validation loss (c4)"
    assert metric["GPT2-oscar-1"] == "validation loss (oscar)"
    assert metric["pythia"] == metric["pythia-deduped"] == df.loc["pythia", "loss_name"]
    assert metric["K2(single)"] != metric["llm360Mamba(single)"]
    # one metric per family
    per_family = load_dataset("hitchhiker").groupby("family")["metric"].nunique()
    assert (per_family == 1).all()


def test_pythia_evals_share_the_hitchhiker_loss():
    ev = load_dataset("pythia_evals")
    assert ev["family"].nunique() == 8 and ev["run"].nunique() == 40
    assert not ev.duplicated(["run", "tokens", "num_fewshot", "task", "metric"]).any()
    assert set(ev["num_fewshot"]) == {0, 5}
    lam = ev[(ev["task"] == "lambada_openai") & (ev["metric"] == "ppl") & (ev["num_fewshot"] == 0)]
    np.testing.assert_allclose(lam["loss"], np.log(lam["value"]), rtol=1e-15)
    assert (ev.groupby(["run", "tokens"])["loss"].nunique() == 1).all()
    hh = load_dataset("hitchhiker", families=["pythia", "pythia-deduped", "pythia-v0"])
    both = hh.merge(ev.drop_duplicates(["run", "tokens"]), on=["family", "run", "tokens"])
    assert len(both) == len(hh)
    np.testing.assert_array_equal(both["loss_x"], both["loss_y"])


def test_multipower_schedules():
    df = load_dataset("multipower")
    runs = df.groupby("run")
    assert runs.ngroups == 18 and set(df["params"]) == {25e6, 100e6}
    assert (runs["is_final"].sum() == 1).all()
    assert (df.loc[df["is_final"], "step"] == runs["step"].transform("max")[df["is_final"]]).all()
    # the constant schedules hold the peak; the cosine ones end near 3e-5
    assert np.allclose(df.loc[df["schedule"].str.startswith("constant"), "lr"], 3e-4)
    cos_end = df[df["is_final"] & df["schedule"].str.startswith("cosine")]["lr"]
    assert np.allclose(cos_end, 3e-5, rtol=0.01)
    # annealing lowers the loss against the constant schedule at the same step
    end = df[df["is_final"]].set_index("run")["loss"]
    assert end["100m-cosine_24000"] < end["100m-constant_24000"] * 0.99
    data = ScalingData.from_frame(df)
    assert data.n_runs == 18


def test_families_filter_and_copies():
    one = load_dataset("gadre", families="overtrain-C4")
    assert set(one["family"]) == {"overtrain-C4"} and len(one) == 34
    assert one.index.equals(pd.RangeIndex(34))
    two = load_gadre(families=["overtrain-RedPajama", "overtrain-C4"])
    assert len(two) == 69
    one["loss"] = -1.0  # the cache must not see this
    assert (load_dataset("gadre", families="overtrain-C4")["loss"] > 0).all()


def test_unknown_names_list_the_valid_ones():
    with pytest.raises(KeyError) as err:
        load_dataset("chinchilla")
    for name in CONTRACT_NAMES:
        assert name in str(err.value)
    assert "'chinchilla'" in str(err.value)
    with pytest.raises(ValueError, match="available datasets"):
        load_dataset("nope")
    with pytest.raises(DatasetNameError, match=r"unknown family \['C4'\].*overtrain-RedPajama"):
        load_dataset("gadre", families=["C4"])
    with pytest.raises(ValueError, match="valid families: .*gpt3"):
        load_dataset("hitchhiker", families=["gpt3", "GPT-4"])


def test_bundle_is_small_and_licensed():
    files = sorted(DATA_DIR.glob("*.parquet"))
    assert {f.stem for f in files} >= set(CONTRACT_NAMES)
    assert sum(f.stat().st_size for f in files) < 8e6
    licences = (DATA_DIR / "LICENSES.md").read_text()
    for repo in ("IBM/ColPret", "mlfoundations/scaling", "EleutherAI/pythia", "MultiPowerLaw"):
        assert repo in licences


@pytest.mark.skipif(not SHARED.is_dir(), reason="needs the shared data folder")
def test_bundled_files_match_a_fresh_build():
    spec = importlib.util.spec_from_file_location(
        "build_datasets", ROOT / "scripts" / "build_datasets.py"
    )
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    for name in list_datasets()["name"]:
        fresh = build.BUILDERS[name](SHARED)
        bundled = load_dataset(name)[list(fresh.columns)]
        pd.testing.assert_frame_equal(bundled, fresh, check_exact=True)
