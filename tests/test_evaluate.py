"""Evaluation protocols: splits, summaries, reduced runs and the CLI."""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import bayescale.evaluation as ev
from bayescale import cli, fitting, laws
from bayescale.data import ScalingData
from bayescale.evaluation import common
from bayescale.evaluation.reference import EPOCH
from bayescale.posterior import Posterior

LAW = {"E": 1.7, "A": 400.0, "B": 410.0, "alpha": 0.34, "beta": 0.28}
SHIFT = {"fam-a": 1.0, "fam-b": 1.1, "fam-c": 0.9}
SIZES = (1e8, 3e8, 1e9, 3e9)


def curves(families=("fam-a", "fam-b"), sizes=SIZES, n_ckpt=12, noise=0.002, seed=0):
    """Loss curves on one Chinchilla law (times a family factor), one run per size.

    Each run starts at 5e9 tokens (below the warm-up cut) and ends at 30 N.
    """
    rng = np.random.default_rng(seed)
    rows = []
    for fam in families:
        for n in sizes:
            tokens = np.geomspace(5e9, 30 * n * 10, n_ckpt)
            loss = SHIFT[fam] * np.asarray(laws.chinchilla(n, tokens, **LAW))
            loss = loss * np.exp(rng.normal(0.0, noise, n_ckpt))
            for i, (t, y) in enumerate(zip(tokens, loss, strict=True)):
                rows.append(
                    {
                        "family": fam,
                        "run": f"{fam}-{n:.0e}",
                        "params": n,
                        "tokens": t,
                        "loss": float(y),
                        "hh_perf": float(y) / np.log(2.0),
                        "is_final": i == n_ckpt - 1,
                    }
                )
    return pd.DataFrame(rows)


def fake_fit(frame, config=None, progress_bar=None, **kwargs):
    """A Posterior with draws scattered around the true law (no sampling), even for MAP cells."""
    from dataclasses import replace

    config = replace(config or fitting.FitConfig(), method="nuts")
    data = ScalingData.from_frame(frame, **config.data_options())
    rng = np.random.default_rng(0)
    chains, draws, nf = 2, 100, data.n_families
    law = laws.from_published(*LAW.values())
    rel = np.log([SHIFT.get(f, 1.0) for f in data.families]) - np.log(data.family_scale)

    def around(value, sd, shape=()):
        return value + sd * rng.standard_normal((chains, draws, *shape))

    samples = {
        "log_E": around(float(law.log_E) + rel, 0.01, (nf,)),
        "a": around(float(law.a) + rel, 0.05, (nf,)),
        "b": around(float(law.b) + rel, 0.05, (nf,)),
        "alpha_f": around(LAW["alpha"], 0.01, (nf,)),
        "beta_f": around(LAW["beta"], 0.01, (nf,)),
        "alpha": around(LAW["alpha"], 0.01),
        "beta": around(LAW["beta"], 0.01),
        "sigma_seed": np.abs(around(0.01, 0.002)),
        "sigma_obs": np.abs(around(0.005, 0.001, (nf,))),
        "ell": np.abs(around(0.5, 0.01)),
        "nu": np.abs(around(5.0, 0.1)),
    }
    post = Posterior.from_draws(samples, data, config)
    post.tree["sample_stats"] = xr.DataTree(
        xr.Dataset({"diverging": (("chain", "draw"), np.zeros((chains, draws), bool))})
    )
    return post


# ------------------------------------------------------------------------ splits


class FitCalls:
    """Stands in for ``fit``: records each call's frame and config, answers with ``fake_fit``."""

    def __init__(self):
        self.frames, self.configs = [], []

    def __call__(self, frame, config=None, **kwargs):
        self.frames.append(frame)
        self.configs.append(config)
        return fake_fit(frame, config, **kwargs)

    def clear(self):
        self.frames.clear()
        self.configs.clear()


@pytest.fixture
def fit_calls(monkeypatch):
    calls = FitCalls()
    monkeypatch.setattr(fitting, "fit", calls)
    return calls


def test_hitchhiker_split_follows_the_protocol():
    frame = curves(families=("fam-a",))
    train, target = ev.hitchhiker_split(frame, n_models=2, q=0.5)
    # the two largest of the smaller sizes, past the warm-up cut, first half of each run
    assert sorted(train["params"].unique()) == [3e8, 1e9]
    assert (train["tokens"] > 1e10).all()
    final = frame.groupby("run")["tokens"].max()
    assert (train["tokens"] <= 0.5 * final.loc[train["run"]].to_numpy() * (1 + 1e-9)).all()
    assert "is_final" not in train
    # target: the largest model, last 30% of its tokens
    big = frame[frame["params"] == 3e9]
    assert (target["params"] == 3e9).all()
    expected = big[big["tokens"] >= 0.7 * big["tokens"].max()]
    assert list(target.index) == list(expected.index)
    # all smaller models by default
    train_all, _ = ev.hitchhiker_split(frame)
    assert sorted(train_all["params"].unique()) == [1e8, 3e8, 1e9]
    # cells: 2..(#sizes - 1) models x q
    assert ev.hitchhiker_cells(frame, q_values=(0.5, 1.0)) == [
        (2, 0.5),
        (2, 1.0),
        (3, 0.5),
        (3, 1.0),
    ]


def test_families_need_curves_at_enough_sizes():
    frame = curves(families=("fam-a", "fam-b"))
    two = frame[(frame["family"] == "fam-b") & (frame["params"] >= 1e9)]
    # final-only points: many runs with one checkpoint each
    finals = pd.DataFrame(
        {
            "family": "finals",
            "run": [f"r{i}" for i in range(12)],
            "params": np.repeat([1e8, 3e8, 1e9], 4),
            "tokens": np.tile([2e10, 4e10, 8e10, 1.6e11], 3),
            "loss": 3.0,
        }
    )
    df = pd.concat([frame[frame["family"] == "fam-a"], two, finals], ignore_index=True)
    assert ev.hitchhiker_families(df) == ["fam-a"]
    assert ev.context_families(df) == ["fam-a", "fam-b"]
    with pytest.raises(ValueError, match="2 or more model sizes"):
        ev.hitchhiker_split(frame[(frame["family"] == "fam-a") & (frame["params"] == 1e8)])


# --------------------------------------------------------------------- summaries


def test_summarize_and_calibration_are_exact():
    rows = pd.DataFrame(
        {
            "protocol": ["p1", "p1", "p1", "p2"],
            "row_type": "target",
            "family": "f",
            "method": ["m", "m", "m", "m"],
            "kind": "new_run",
            "actual": [1.0, 2.0, 4.0, 1.0],
            "median": [1.1, 1.8, 4.0, 1.0],
            "lower": [0.9, 1.9, 3.0, 0.5],
            "upper": [1.2, 2.1, 5.0, 1.5],
            "rel_error": [0.1, -0.1, 0.0, 0.0],
            "inside50": [False, True, True, True],
            "inside90": [True, True, False, True],
        }
    )
    s = ev.summarize(rows, by=["protocol", "method"])
    p1 = s[s["protocol"] == "p1"].iloc[0]
    assert p1["n"] == 3
    assert p1["are"] == pytest.approx(100 * 0.2 / 3)
    assert p1["bias"] == pytest.approx(0.0)
    assert p1["cover90"] == pytest.approx(2 / 3)
    assert p1["width90"] == pytest.approx(100 * (0.3 + 0.1 + 0.5) / 3)
    cal = ev.calibration(rows)
    pooled = cal[cal["protocol"] == "all"].iloc[0]
    assert pooled["n"] == 4
    assert pooled["cover50"] == pytest.approx(0.75)
    assert pooled["cover90"] == pytest.approx(0.75)


def test_crps_matches_its_integral():
    # brute force: the integral of (F(z) - 1[z >= y])^2 over z, F the draws' empirical CDF
    from bayescale.evaluation.metrics import crps

    draws = np.random.default_rng(0).normal(size=(40, 2)) * [1.0, 3.0]
    actual = np.array([0.3, -2.0])
    z = np.linspace(-15.0, 15.0, 300_001)
    for j in range(2):
        cdf = np.searchsorted(np.sort(draws[:, j]), z, side="right") / draws.shape[0]
        integrand = (cdf - (z >= actual[j])) ** 2
        brute = np.sum(integrand) * (z[1] - z[0])
        assert crps(draws, actual)[j] == pytest.approx(brute, rel=1e-4)


def test_target_scores_stay_finite_under_log_scale_t_noise():
    # Student-t noise on log loss: the loss itself has no mean, its CRPS no finite value
    from bayescale.evaluation.metrics import crps, target_rows

    rng = np.random.default_rng(1)
    log_draws = np.log(2.0) + 0.05 * rng.standard_t(0.7, size=(4000, 1))
    targets = pd.DataFrame({"params": [1e9], "tokens": [2e10], "run": ["r"]})
    (row,) = target_rows({}, targets, [2.0], [2.0], log_draws)
    assert 0.0 < row["crps"] < 0.1
    assert row["lower"] < 2.0 < row["upper"]
    # the same draws scored on the loss scale: the largest draws overflow or dominate
    with np.errstate(over="ignore", invalid="ignore"):
        loss_scale = crps(np.exp(log_draws), np.array([2.0]))[0] / 2.0
    assert not np.isfinite(loss_scale) or loss_scale > 100 * row["crps"]


# ----------------------------------------------------------------- protocol runs


def test_baselines_agree_on_an_easy_family():
    # near noise-free curves on the law itself; the default (243-start) Hoffmann grid
    pts = ev.evaluate_hitchhiker(
        curves(noise=0.0005), methods=("hitchhiker", "hoffmann"), q_values=(1.0,)
    ).points
    assert set(ev.JSON_KEYS) <= set(pts.columns)
    assert set(pts["method"]) == {"hitchhiker", "hoffmann"}
    assert set(pts["quantity"]) == {"loss", "hh_perf"}
    assert pts["lower"].isna().all() and pts["inside90"].isna().all()
    s = ev.summarize(pts[pts["headline"].astype(bool) & (pts["quantity"] == "loss")])
    assert len(s) == 4  # 2 families x 2 methods
    # both recover the law 3x beyond the largest training size, and agree
    assert s["are"].max() < 0.5
    per = s.pivot(index="family", columns="method", values="are")
    assert (per["hitchhiker"] - per["hoffmann"]).abs().max() < 0.2
    hh = ev.summarize(pts[pts["headline"].astype(bool) & (pts["quantity"] == "hh_perf")])
    assert hh["are"].max() < 0.5


def test_posterior_rows_have_intervals_and_coverage(monkeypatch):
    monkeypatch.setattr(fitting, "fit", fake_fit)
    df = curves(families=("fam-a", "fam-b", "fam-c"))
    pts = ev.evaluate_hitchhiker(
        df, families=["fam-a"], methods=("bayescale-family",), q_values=(1.0,), bayes_grid="full"
    ).points
    assert set(pts["kind"]) == {"mean", "new_run"}
    assert (pts["lower"] <= pts["median"]).all() and (pts["median"] <= pts["upper"]).all()
    assert (pts["lower"] <= pts["lower50"]).all() and (pts["upper50"] <= pts["upper"]).all()
    # the new-run interval adds the seed effect: never narrower than the mean's
    width = (pts["upper"] - pts["lower"]).groupby(pts["kind"]).mean()
    assert width["new_run"] > width["mean"]
    # scores that reward sharp, covering intervals; one final checkpoint per target run
    width_rel = (pts["upper"] - pts["lower"]) / pts["actual"]
    assert (pts["interval_score90"] >= width_rel - 1e-12).all()
    assert (pts["crps"] > 0).all()
    per_run = pts.groupby(["kind", "n_models", "target"])["final"]
    assert per_run.apply(lambda f: f.astype(bool).sum()).eq(1).all()

    one = ev.evaluate_one_model(df, targets={"fam-a": "all"}, context=["fam-b", "fam-c"])
    assert sorted(one.points["fit_params"].unique()) == [1e8, 3e8, 1e9]
    assert set(one.points["method"]) == {"bayescale-hier"} and "paper_are" in one.points
    s = one.summary()
    assert np.isfinite(s["are"]).all() and s["cover90"].between(0, 1).all()
    assert s["run_cover90"].between(0, 1).all() and (s["runs"] == 1).all()
    assert len(one.fits) == 3


def test_chinchilla_protocol_structure(monkeypatch):
    monkeypatch.setattr(fitting, "fit", fake_fit)
    rng = np.random.default_rng(1)
    n = np.repeat([1e8, 4e8, 1.6e9, 6.4e9], 10)
    d = np.tile(np.geomspace(2e9, 1.5e11, 10), 4)
    loss = np.asarray(laws.chinchilla(n, d, **LAW)) * np.exp(rng.normal(0, 0.005, n.size))
    df = pd.DataFrame({"family": "chinchilla", "run": [f"r{i}" for i in range(n.size)],
                       "params": n, "tokens": d, "loss": loss, "is_final": True})  # fmt: skip
    # the SciPy twin of the Hoffmann fit: no JAX compilation for three small fits
    from bayescale import baselines as bl

    grid = bl.hoffmann_grid(a=(5, 10), b=(5, 10), e=(0.5,), alpha=(0.5,), beta=(0.5,))
    monkeypatch.setattr(bl, "fit_hoffmann", bl.fit_hoffmann_scipy)
    pts = ev.evaluate_chinchilla(df, holdout_flops=1e21, hoffmann_grid=grid).points
    coef = pts[pts["row_type"] == "coef"]
    assert set(coef["quantity"]) == set(EPOCH)
    assert set(coef["subset"]) == {"40 points", "35 points"}
    alpha = coef[(coef["quantity"] == "alpha") & (coef["method"] == "bayescale-family")]
    assert alpha["median"].to_numpy() == pytest.approx(LAW["alpha"], abs=0.01)
    held = pts[pts["row_type"] == "target"]
    flops = 6 * held["params"] * held["tokens"]
    assert len(held) and (flops >= 1e21).all()
    assert set(held["method"]) == {"bayescale-family", "hoffmann", "hitchhiker"}
    assert ev.summarize(held)["are"].lt(5).all()


def test_hierarchical_fits_hide_the_targets(monkeypatch):
    monkeypatch.setattr(fitting, "fit", fake_fit)
    df = curves(families=("fam-a", "fam-b", "fam-c"))
    kwargs = dict(
        families=["fam-a", "fam-b"],
        context=["fam-a", "fam-b", "fam-c"],
        methods=("bayescale-hier",),
        q_values=(0.5, 1.0),
    )
    # leave one family out: one fit per target, the other two families complete
    result = ev.evaluate_hitchhiker(df, bayes_grid="headline", **kwargs)
    loo, fits = result.points, result.fits.to_dict("records")
    assert len(fits) == 2 and all(f["families"] == 3 for f in fits)
    train, _ = ev.hitchhiker_split(df[df["family"] == "fam-a"])
    complete = ScalingData.from_frame(df[df["family"] != "fam-a"], max_points_per_run=50)
    assert fits[0]["checkpoints"] == complete.n_obs + len(train)
    assert loo["subset"].eq("leave-one-family-out").all()
    assert set(loo["n_models"]) == {3} and set(loo["q"]) == {1.0}
    # one fold: both targets reduced in one fit; the subset grid adds MAP cells
    result = ev.evaluate_hitchhiker(df, bayes_grid="subset", hier_folds=1, **kwargs)
    fold, fits = result.points, result.fits.to_dict("records")
    # cells {2, 3 (= all)} x q {0.6 (none: not on the q axis), 1.0}: two specs, one fold each
    assert sorted(f["method"] for f in fits) == ["map", ev.protocol_settings("hitchhiker").label()]
    cells = fold.groupby(["family", "n_models", "q"]).size()
    assert sorted(cells.index) == [("fam-a", 2, 1.0), ("fam-a", 3, 1.0),
                                   ("fam-b", 2, 1.0), ("fam-b", 3, 1.0)]  # fmt: skip
    assert fold["subset"].eq("1 folds").all()


def test_hierarchical_fits_hide_the_target_size_of_near_twin_families(fit_calls):
    twins = {"fam-a": "pythia", "fam-b": "pythia-deduped", "fam-c": "fam-c"}
    df = curves(families=("fam-a", "fam-b", "fam-c")).replace({"family": twins})
    ev.evaluate_hitchhiker(
        df,
        families=["pythia"],
        context=["pythia", "pythia-deduped", "fam-c"],
        methods=("bayescale-hier",),
        q_values=(1.0,),
        bayes_grid="headline",
    )
    sizes = fit_calls.frames[0].groupby("family")["params"].unique()
    largest = max(SIZES)
    assert largest not in sizes["pythia"]
    assert sorted(sizes["pythia-deduped"]) == [n for n in sorted(SIZES) if n != largest]
    assert sorted(sizes["fam-c"]) == sorted(SIZES)


def test_protocol_fits_keep_family_groups_and_log_each_fit(fit_calls, caplog):
    groups = {"fam-a": "g1", "fam-b": "g1", "fam-c": "g2"}
    df = curves(families=("fam-a", "fam-b", "fam-c"))
    df["group"] = df["family"].map(groups)
    context = ["fam-a", "fam-b", "fam-c"]
    with caplog.at_level(logging.INFO, logger="bayescale.evaluation"):
        ev.evaluate_hitchhiker(
            df, families=["fam-a"], context=context, methods=("bayescale-hier",),
            q_values=(1.0,), bayes_grid="headline",
        )  # fmt: skip
        ev.evaluate_one_model(df, targets={"fam-a": (1e9,)}, context=context)
    assert len(fit_calls.frames) == 2
    for frame in fit_calls.frames:
        # the target family's own rows keep their group, as the context's do
        assert frame.groupby("family")["group"].first().to_dict() == groups
    # one-model can group by another column, e.g. the source collection
    fit_calls.clear()
    by_source = df.drop(columns="group").assign(source=df["group"])
    one = {"targets": {"fam-a": (1e9,)}, "context": context}
    ev.evaluate_one_model(by_source, group_by="source", **one)
    ev.evaluate_one_model(by_source, **one)
    assert fit_calls.frames[0].groupby("family")["group"].first().to_dict() == groups
    assert "group" not in fit_calls.frames[1]
    with pytest.raises(ValueError, match="'lab' is not a column of the table"):
        ev.evaluate_one_model(by_source, group_by="lab", **one)
    lines = [r.getMessage() for r in caplog.records if r.name == "bayescale.evaluation"]
    assert [line.split("]")[0] for line in lines] == ["[fit 1", "[fit 1"]
    assert lines[0].startswith("[fit 1] hier n_models=all q=1.0") and "R-hat" in lines[0]
    assert lines[1].startswith("[fit 1] one-model fam-a from 1e+09")


def test_one_model_hides_the_target_size_of_near_twin_families(fit_calls):
    twins = {"fam-a": "pythia", "fam-b": "pythia-deduped", "fam-c": "fam-c"}
    df = curves(families=("fam-a", "fam-b", "fam-c")).replace({"family": twins})
    largest = max(SIZES)
    ev.evaluate_one_model(df, targets={"pythia": (1e9,)}, context=["pythia-deduped", "fam-c"])
    sizes = fit_calls.frames[0].groupby("family")["params"].unique()
    assert sorted(sizes["pythia"]) == [1e9]
    # the twin suite keeps every size but the target's; other families keep all
    assert sorted(sizes["pythia-deduped"]) == [n for n in sorted(SIZES) if n != largest]
    assert sorted(sizes["fam-c"]) == sorted(SIZES)


def test_protocols_fit_with_their_own_default_settings(fit_calls):
    """Each protocol fits with ``default_settings`` unless given settings; the CLI too."""
    one = {"laws": ("overtrain",), "methods": ("bayescale-hier",)}
    ev.evaluate_gadre(**one)
    ev.evaluate_gadre(settings=ev.DEFAULT, **one)
    gadre = ev.default_settings("gadre")
    assert [c.target_accept for c in fit_calls.configs] == [
        gadre.target_accept,
        ev.DEFAULT.target_accept,
    ]
    assert gadre.target_accept > ev.DEFAULT.target_accept
    assert fit_calls.configs[0].num_warmup == ev.DEFAULT.num_warmup
    fit_calls.clear()
    df = curves(families=("fam-a", "fam-b", "fam-c"))
    ev.evaluate_hitchhiker(
        df, families=["fam-a"], methods=("bayescale-family",), q_values=(1.0,),
        bayes_grid="headline", seed=3,
    )  # fmt: skip
    ev.evaluate_one_model(df, targets={"fam-a": (1e9,)}, context=["fam-b", "fam-c"], seed=3)
    assert [(c.target_accept, c.num_warmup, c.seed) for c in fit_calls.configs] == [
        (ev.default_settings("hitchhiker").target_accept, ev.DEFAULT.num_warmup, 3),
        (ev.DEFAULT.target_accept, ev.DEFAULT.num_warmup, 3),
    ]
    assert ev.default_settings("hitchhiker").target_accept == 0.95
    # sampler options from the command line change only themselves
    fit_calls.clear()
    assert cli.main(["evaluate", "--protocol", "gadre", "--samples", "700", "--json"]) == 0
    assert fit_calls.configs and {(c.target_accept, c.num_samples) for c in fit_calls.configs} == {
        (0.99, 700)
    }
    assert ev.default_settings("gadre", quick=True) == ev.QUICK


@pytest.mark.slow
def test_cli_evaluate_gadre_quick_json(monkeypatch, capsys):
    # the CLI's --quick path, with a MAP fit instead of short chains to stay fast
    monkeypatch.setattr(common, "QUICK", common.MAP)
    assert cli.main(["evaluate", "--protocol", "gadre", "--quick", "--json"]) == 0
    records = json.loads(capsys.readouterr().out)
    assert records and all(set(ev.JSON_KEYS) <= set(r) for r in records)
    assert {r["method"] for r in records} == {"bayescale-hier", "gadre"}
    assert {r["protocol"] for r in records} == {"gadre"}
    heads = [r for r in records if r["headline"]]
    assert len(heads) == 2 * 3 * 2  # 1.4B and 6.9B, 3 corpora, 2 methods
    assert all(r["M"] == pytest.approx(r["tokens"] / r["params"]) for r in records)
    assert all(abs(r["rel_error"]) < 0.5 for r in records)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="protocol must be one of"):
        ev.evaluate("nope")
    with pytest.raises(ValueError, match="bayes_grid"):
        ev.evaluate_hitchhiker(curves(), bayes_grid="some")
    with pytest.raises(ValueError, match="unknown methods"):
        ev.evaluate_hitchhiker(curves(), methods=("bayescale",))
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["evaluate", "--protocol", "nope"])


def test_text_tables_format_mixed_columns():
    # one-model rows: n_models is a number on some rows, missing on others (object column)
    frame = pd.DataFrame(
        {
            "family": ["OPT", "pythia"],
            "n_models": pd.Series([2.0, None], dtype=object),
            "are": [1.23456, 0.000123456],
        }
    )
    text = ev.text_table(frame, 3)
    assert "1.23" in text and "0.000123" in text and "1.2346" not in text
    assert "OPT" in text and "None" in text


def test_protocol_fits_release_their_compiled_code(monkeypatch):
    """Each fit compiles its own model; a protocol's process that kept them all ran out
    of memory maps, so every logged fit clears JAX's caches after it."""
    import jax

    from bayescale.simulate import simulate_frame

    cleared = []
    monkeypatch.setattr(jax, "clear_caches", lambda: cleared.append(1))
    frame, _ = simulate_frame(n_families=2, sizes=(1e8, 1e9), n_checkpoints=4, seed=0)
    log = []
    for i in range(2):
        common.fit_logged(frame, ev.MAP, log, label=f"fit {i}", map_starts=1, min_tokens=None)
    assert len(cleared) == 2 and [r["fit"] for r in log] == ["fit 0", "fit 1"]
    assert [r["warmed_up_again"] for r in log] == [False, False]


def test_fit_records_say_when_the_kept_draws_had_a_second_warm_up(monkeypatch):
    from dataclasses import replace

    import bayescale.fitting
    from bayescale.simulate import simulate_frame

    real_fit = bayescale.fitting.fit

    def fit_with_retry(frame, config, **kwargs):
        post = real_fit(frame, config, **kwargs)
        return replace(post, config=replace(post.config, target_accept=0.95))

    monkeypatch.setattr(bayescale.fitting, "fit", fit_with_retry)
    frame, _ = simulate_frame(n_families=2, sizes=(1e8, 1e9), n_checkpoints=4, seed=0)
    log = []
    common.fit_logged(frame, ev.MAP, log, label="fit", map_starts=1, min_tokens=None)
    assert log[0]["warmed_up_again"] and log[0]["target_accept"] == 0.95


def test_fit_records_say_which_chain_sits_apart():
    apart = {"chain": 2, "entry": "beta_f[f]", "mean": 0.456, "others_mean": 1.31, "lp_gap": -5.4}
    text = common._apart_text(apart)
    assert text == "chain 3 apart at beta_f[f] 0.456 (others 1.31), log density -5.4"
    assert common._apart_text(None) == ""
