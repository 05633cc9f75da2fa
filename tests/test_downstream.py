"""Per-task downstream model: recovery, chaining, item-count noise, errors, persistence."""

import warnings

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from bayescale import ConvergenceWarning, FitFileError, laws, testing
from bayescale import downstream as ds
from bayescale.tables import DataError

TRUE = {  # (eps, k, gamma, floor) of four tasks, two 4-way multiple choice, two generative
    "mc-easy": (0.74, 6.0, 1.0, 0.05),
    "mc-hard": (0.76, 30.0, 1.6, 0.04),
    "gen-a": (0.999, 80.0, 2.0, 0.06),
    "gen-b": (0.999, 4.0, 0.8, 0.05),
}
CHANCE = {"mc-easy": 0.75, "mc-hard": 0.75, "gen-a": 1.0, "gen-b": 1.0}


def simulated_frame(n_items=3000, n_runs=12, family="fam-a", seed=0, phi=3000.0):
    """Beta-binomial task scores of runs whose losses span 2-7 nats (ceiling to floor)."""
    rng = np.random.default_rng(seed)
    rows = []
    for r, loss in enumerate(np.linspace(2.0, 7.0, n_runs)):
        for task, (eps, k, gamma, floor) in TRUE.items():
            err = float(laws.downstream_error_saturating(loss, eps, k, gamma, floor))
            p_ok = rng.beta((1 - err) * phi, err * phi)
            rows.append(
                {
                    "family": family,
                    "run": f"{family}-r{r}",
                    "task": task,
                    "loss": loss,
                    "n_items": n_items,
                    "chance_err": CHANCE[task],
                    "correct": rng.binomial(n_items, p_ok),
                }
            )
    return pd.DataFrame(rows)


def synthetic_down(
    tasks=("small", "large"),
    n_items=(32, 10_000),
    families=("fam-a", "fam-b"),
    chains=2,
    draws=200,
    divergences=0,
    seed=0,
):
    """A DownstreamPosterior with draws tightly around one law shared by all tasks."""
    rng = np.random.default_rng(seed)
    t, f = len(tasks), len(families)
    data = ds.DownstreamData(
        tasks=tuple(tasks),
        chance_err=np.full(t, 0.75),
        n_items=np.asarray(n_items, dtype=np.int64),
        families=tuple(families),
        runs=("r0",),
        obs_task=np.zeros(1, dtype=np.int32),
        obs_run=np.zeros(1, dtype=np.int32),
        run_family=np.zeros(1, dtype=np.int32),
        run_loss=np.array([3.5]),
        correct=np.array([10]),
        loss_ref=3.5,
    )
    shape = (chains, draws)

    def around(value, sd, extra=(t,)):
        return value + sd * rng.standard_normal(shape + extra)

    eps, floor, gamma, midpoint = around(0.74, 0.005), around(0.05, 0.002), around(1.2, 0.02), 2.7
    samples = {
        "eps": eps,
        "floor": floor,
        "gamma": gamma,
        "midpoint": around(midpoint, 0.02),
        "k": (eps - floor) * np.exp(gamma * midpoint),
        "phi": around(400.0, 5.0),
        "shift": around(0.0, 0.01, (f,)),
        "tau_shift": np.abs(around(0.1, 0.01, ())),
    }
    tree = ds.DownstreamPosterior.from_draws(samples, data).tree
    diverging = np.zeros(shape, dtype=bool)
    diverging.ravel()[:divergences] = True
    tree["sample_stats"] = xr.DataTree(
        xr.Dataset(
            {"diverging": (("chain", "draw"), diverging)},
            coords={"chain": np.arange(chains), "draw": np.arange(draws)},
        )
    )
    return ds.DownstreamPosterior(tree=tree, data=data, config=ds.DownstreamConfig())


@pytest.fixture(scope="module")
def loss_post():
    return testing.posterior(draws=100)


def _width(df):
    return (df["upper"] - df["lower"]).to_numpy()


# -- recovery ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def recovered():
    frame = simulated_frame()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return ds.fit_downstream(
            frame, num_chains=2, num_warmup=200, num_samples=200, seed=1, progress_bar=False
        )


def test_sampling_stats_hold_each_chains_step_size(recovered):
    stats = recovered.tree["sample_stats"]
    step = np.asarray(stats["step_size"])
    assert step.shape == np.asarray(stats["diverging"]).shape
    # fixed after warm-up: one value per chain
    assert (step > 0).all() and (step == step[:, :1]).all()


@pytest.mark.heavy
def test_parallel_chains_sample_with_a_progress_bar():
    """64-bit sampling survives NumPyro's progress-bar callbacks, which run on other threads."""
    import jax

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        post = ds.fit_downstream(
            simulated_frame(n_runs=6),
            num_chains=2,
            num_warmup=20,
            num_samples=20,
            map_starts=1,
            seed=0,
            progress_bar=True,
        )
    assert post.n_draws == 40
    # the process's own setting is back
    assert not jax.config.jax_enable_x64


@pytest.mark.slow
def test_recovers_task_laws_on_simulated_scores(recovered):
    post = recovered
    assert post.tree["posterior"]["eps"].dims == ("chain", "draw", "task")
    assert post.tree["log_likelihood"]["correct"].dims == ("chain", "draw", "obs")
    # k is stated at the population's loss scale; one corpus sees it through its shift
    k_family = post.draws("k") * np.exp(post.draws("gamma") * post.draws("shift")[:, [0]])
    for name, col in (("eps", 0), ("k", 1), ("gamma", 2)):
        draws = k_family if name == "k" else post.draws(name)
        for j, task in enumerate(post.tasks):
            lo, hi = np.quantile(draws[:, j], [0.05, 0.95])
            assert lo <= TRUE[task][col] <= hi, (name, task, lo, TRUE[task][col], hi)
    # and the error curve itself, inside the data and a little beyond it
    for loss in (2.4, 3.0, 4.5):
        df = post.predict(loss, family="fam-a", tasks=list(post.tasks))
        for _, row in df.iterrows():
            want = float(laws.downstream_error_saturating(loss, *TRUE[row["task"]]))
            assert row["lower"] - 0.01 <= want <= row["upper"] + 0.01, (loss, row["task"])
    assert post.diagnostics()["rhat_max"] < 1.1


@pytest.mark.slow
def test_save_load_round_trip(recovered, tmp_path):
    path = tmp_path / "down.nc"
    recovered.save(path)
    back = ds.load_downstream(path, data=recovered.data)
    np.testing.assert_array_equal(back.draws("gamma"), recovered.draws("gamma"))
    assert back.data.hash() == recovered.data.hash()
    assert back.config == recovered.config
    pd.testing.assert_frame_equal(
        back.predict(3.0, family="fam-a", tasks="all"),
        recovered.predict(3.0, family="fam-a", tasks="all"),
    )
    other = ds.DownstreamData.from_frame(simulated_frame(seed=5))
    with pytest.raises(FitFileError, match="different data"):
        ds.load_downstream(path, data=other)


@pytest.mark.slow
def test_map_fit_is_one_draw_and_sensible():
    frame = simulated_frame(n_runs=8)
    post = ds.fit_downstream(frame, method="map", map_starts=2, seed=0)
    assert post.n_draws == 1
    assert post.diagnostics()["status"].startswith("n/a")
    got = post.predict(3.0, family="fam-a", tasks="mc-easy")["median"].iloc[0]
    want = float(laws.downstream_error_saturating(3.0, *TRUE["mc-easy"]))
    assert got == pytest.approx(want, abs=0.03)


# -- chaining and intervals --------------------------------------------------------------


def test_uncertain_loss_widens_the_interval():
    down = synthetic_down()
    rng = np.random.default_rng(0)
    fixed = down.predict(3.0, family="fam-a", tasks="large")
    uncertain = down.predict(3.0 + 0.1 * rng.standard_normal(1000), family="fam-a", tasks="large")
    assert _width(uncertain)[0] > 1.5 * _width(fixed)[0]
    assert uncertain["median"].iloc[0] == pytest.approx(fixed["median"].iloc[0], abs=0.01)


def test_chaining_a_loss_posterior_carries_its_uncertainty(loss_post):
    down = synthetic_down()
    chained = ds.predict_downstream(
        loss_post, down, family="fam-a", params=[3e8, 7e9], tokens=[6e9, 1.4e11], tasks="large"
    )
    assert list(chained["params"]) == [3e8, 7e9]
    assert {"loss_median", "task", "median", "mean", "lower", "upper"} <= set(chained.columns)
    for j, row in chained.iterrows():
        fixed = down.predict(row["loss_median"], family="fam-a", tasks="large").iloc[0]
        assert _width(chained)[j] > _width(pd.DataFrame([fixed]))[0]
        assert row["median"] == pytest.approx(fixed["median"], abs=0.01)
    # bigger model, lower loss, lower error
    assert chained["loss_median"].iloc[1] < chained["loss_median"].iloc[0]
    assert chained["median"].iloc[1] < chained["median"].iloc[0]


def test_small_tasks_get_wider_new_run_intervals():
    down = synthetic_down()
    mean = down.predict(3.0, family="fam-a", tasks=["small", "large"], kind="mean")
    new = down.predict(3.0, family="fam-a", tasks=["small", "large"], kind="new_run")
    w_mean, w_new = _width(mean), _width(new)
    assert w_mean[0] == pytest.approx(w_mean[1], rel=0.3)  # same law, same uncertainty
    assert w_new[0] > 3 * w_new[1]  # 32 items scatter far more than 10k
    assert np.all(w_new > w_mean)
    # a 32-item score moves in steps of 1/32
    labels, draws = ds.error_draws(down, 3.0, family="fam-a", tasks="small", kind="new_run")
    np.testing.assert_allclose(np.round(draws[0] * 32), draws[0] * 32, atol=1e-9)


def test_task_averages_and_rows():
    tasks = ds.GADRE_TASKS_46
    down = synthetic_down(tasks=tasks, n_items=[500] * len(tasks), draws=50)
    df = down.predict([[2.5, 3.0]], family="fam-b", tasks=["avg17", "avg46", "boolq"])
    assert list(df["task"]) == ["avg17", "avg17", "avg46", "avg46", "boolq", "boolq"]
    assert list(df["n_tasks"]) == [17, 17, 46, 46, 1, 1]
    assert set(down.task_sets()) == {"avg17", "avg46", "all"}
    # the average is the mean of the per-task draws
    labels, draws = ds.error_draws(down, 3.0, family="fam-b", tasks=["avg17", *ds.GADRE_TASKS_17])
    np.testing.assert_allclose(draws[0], np.mean(draws[1:], axis=0), rtol=1e-10)


def test_unseen_family_warns_and_widens():
    down = synthetic_down()
    seen = down.predict(3.0, family="fam-a", tasks="large")
    with pytest.warns(ds.DownstreamFamilyWarning, match="eval set"):
        unseen = down.predict(3.0, family="my-corpus", tasks="large")
    assert _width(unseen)[0] > _width(seen)[0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        down.predict(3.0, tasks="large")  # family=None: the population, on purpose


# -- errors -----------------------------------------------------------------------------


def test_bad_queries_give_clear_errors(loss_post):
    down = synthetic_down()
    with pytest.raises(ValueError, match="unknown task 'mmlu'"):
        down.predict(3.0, tasks="mmlu")
    with pytest.raises(ValueError, match="'avg17' needs task"):
        down.predict(3.0, tasks="avg17")
    with pytest.raises(ValueError, match="tasks is empty"):
        down.predict(3.0, tasks=[])
    with pytest.raises(ValueError, match="kind must be"):
        down.predict(3.0, tasks="small", kind="seed")
    with pytest.raises(ValueError, match="loss must be finite and > 0"):
        down.predict(-1.0, tasks="small")
    with pytest.raises(ValueError, match="got shape"):
        down.predict(np.ones((2, 2, 2)), tasks="small")
    with pytest.raises(ValueError, match="ci_prob must be"):
        down.predict(3.0, tasks="small", ci_prob=90)
    with pytest.raises(ValueError, match="params and tokens"):
        ds.predict_downstream(
            loss_post, down, family="fam-a", params=[1e8, 1e9], tokens=[1e10, 1e11, 1e12]
        )


def test_bad_tables_give_clear_errors():
    good = simulated_frame(n_runs=3)
    with pytest.raises(DataError, match=r"missing column\(s\) \['n_items'\]"):
        ds.DownstreamData.from_frame(good.drop(columns="n_items"))
    with pytest.raises(DataError, match="one of correct/acc/err"):
        ds.DownstreamData.from_frame(good.drop(columns="correct"))
    bad = good.drop(columns="correct").assign(acc=1.5)
    with pytest.raises(DataError, match="'acc' must be a fraction"):
        ds.DownstreamData.from_frame(bad)
    bad = good.copy()
    bad.loc[0, "n_items"] = 5000
    with pytest.raises(DataError, match="'n_items' must be constant within each task"):
        ds.DownstreamData.from_frame(bad)
    bad = good.copy()
    bad.loc[0, "loss"] = 9.0
    with pytest.raises(DataError, match="'loss' must be constant within each run"):
        ds.DownstreamData.from_frame(bad)
    with pytest.raises(DataError, match="duplicated"):
        ds.DownstreamData.from_frame(pd.concat([good, good.iloc[:1]]))
    with pytest.raises(DataError, match="not in the table"):
        ds.DownstreamData.from_frame(good, tasks=["nope"])
    # acc and err agree with counts
    acc = good.assign(acc=good["correct"] / good["n_items"]).drop(columns="correct")
    np.testing.assert_array_equal(
        ds.DownstreamData.from_frame(acc).correct, ds.DownstreamData.from_frame(good).correct
    )


def test_diagnostics_warn_and_files_are_checked(tmp_path, loss_post):
    down = synthetic_down(divergences=3)
    with pytest.warns(ConvergenceWarning, match="3 divergent"):
        down.check()
    path = tmp_path / "down.nc"
    down.save(path)
    assert ds.load_downstream(path).data.hash() == down.data.hash()
    loss_path = tmp_path / "loss.nc"
    loss_post.save(loss_path)
    with pytest.raises(FitFileError, match="another kind"):
        ds.load_downstream(loss_path)
    with pytest.raises(FitFileError, match="does not exist"):
        ds.load_downstream(tmp_path / "missing.nc")


# -- command line -------------------------------------------------------------------------


def test_cli_predict_downstream_json(tmp_path, capsys, loss_post):
    import json

    from bayescale import cli

    loss_path, down_path = tmp_path / "loss.nc", tmp_path / "down.nc"
    loss_post.save(loss_path)
    synthetic_down().save(down_path)
    base = ["predict", str(loss_path), "--target", "fam-a:1B:20B"]
    assert cli.main(base + ["--json"]) == 0
    plain = json.loads(capsys.readouterr().out)
    assert isinstance(plain, list) and plain[0]["family"] == "fam-a"  # unchanged without it
    args = ["--downstream", "--downstream-fit", str(down_path), "--tasks", "small,large"]
    assert cli.main(base + args + ["--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["loss"] == plain
    assert [r["task"] for r in out["downstream"]] == ["small", "large"]
    assert all(r["lower"] < r["median"] < r["upper"] for r in out["downstream"])
    assert cli.main(base + args) == 0
    assert "downstream top-1 error" in capsys.readouterr().out
    assert cli.main(base + ["--downstream-fit", str(tmp_path / "none.nc")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert cli.main(base + ["--downstream-fit", str(loss_path)]) == 2
    assert "another kind" in capsys.readouterr().err
    assert cli.main(base + ["--downstream-fit", str(down_path), "--tasks", "mmlu"]) == 2
    assert "unknown task 'mmlu'" in capsys.readouterr().err


def test_cli_fit_downstream_writes_a_loadable_fit(tmp_path, capsys):
    import json

    from bayescale.cli import main

    out = tmp_path / "down.nc"
    argv = ["fit-downstream", "gadre_downstream", "--out", str(out), "--tasks", "avg17"]
    code = main(argv + ["--method", "map", "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    info = json.loads(captured.out)
    assert info["out"] == str(out) and len(info["tasks"]) == 17
    assert info["diagnostics"]["status"].startswith("n/a")
    assert ds.load_downstream(out).tasks == tuple(info["tasks"])
    # a second run does not overwrite silently
    assert main(argv + ["--method", "map"]) == 2
    assert "exists" in capsys.readouterr().err
