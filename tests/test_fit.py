"""Fitting: recovery on simulated data, diagnostics, config, save/load, predictions."""

import warnings

import numpy as np
import pandas as pd
import pytest

import bayescale as bs
from bayescale import testing
from bayescale.simulate import simulate_frame


@pytest.fixture(scope="module")
def small():
    frame, truth = simulate_frame(n_families=3, sizes=(1e8, 1e9, 1e10), n_checkpoints=8, seed=2)
    return frame, truth


@pytest.fixture(scope="module")
def map_post(small):
    return bs.fit(small[0], method="map", min_tokens=None, seed=0)


def test_map_fit_returns_a_labelled_tree(map_post):
    tree = map_post.tree
    post = tree["posterior"]
    assert post.sizes["chain"] == 1 and post.sizes["draw"] == 1
    assert list(post["log_E"].coords["family"].values) == ["fam0", "fam1", "fam2"]
    assert post["u"].dims[-1] == "run"
    assert {"constant_data", "observed_data", "data_report"} <= set(tree.children)
    diag = map_post.diagnostics()
    assert np.isnan(diag["rhat_max"]) and diag["divergences"] == 0
    # the simulated families share their exponents, and the point sits at zero spread there
    assert all(p.startswith("MAP spread tau_") for p in diag["problems"])
    assert diag["status"] == ("warn" if diag["problems"] else "n/a (point estimate)")
    assert map_post.is_point_estimate


def test_config_holds_everything_to_reproduce_the_fit(small):
    config = bs.FitConfig(method="map", families=("fam2", "fam0"), min_tokens=None,
                          min_tokens_by_family={"fam0": 2e10}, seed=3)  # fmt: skip
    post = bs.fit(small[0], config)
    assert post.families == ("fam2", "fam0")
    assert post.config == config
    again = bs.fit(small[0], post.config)
    np.testing.assert_array_equal(again.draws("alpha"), post.draws("alpha"))
    # keyword options override the config
    assert bs.fit(small[0], config, seed=4).config.seed == 4
    with pytest.raises(TypeError, match="unknown option"):
        bs.fit(small[0], config, num_chain=2)
    with pytest.raises(ValueError, match="method must be one of"):
        bs.FitConfig(method="hmc")
    with pytest.raises(ValueError, match="target_accept must be in"):
        bs.FitConfig(target_accept=1.5)
    with pytest.raises(ValueError, match=r"seed_centring must be in \[0, 1\]"):
        bs.FitConfig(seed_centring=1.5)
    with pytest.raises(ValueError, match=r"exponent_centring must be in \[0, 1\] or None"):
        bs.FitConfig(exponent_centring=-0.1)


def test_seed_coordinates_change_nothing_but_the_coordinates(small, map_post):
    """The MAP is searched non-centred; a partly centred fit stores its own z_u of the same u."""
    from bayescale.seeds import RunEffects

    post = bs.fit(small[0], method="map", min_tokens=None, seed=0, seed_centring=0.5)
    tree, ref = post.tree["posterior"], map_post.tree["posterior"]
    np.testing.assert_allclose(tree["u"].values, ref["u"].values, atol=1e-6)
    sigma = float(tree["sigma_seed"].values.squeeze())
    seeds = RunEffects(sigma, post.data.inputs(), w=0.5, anchor=post.config.priors.seed_sd)
    u = seeds.effects(np.asarray(tree["z_u"].values.squeeze()))
    np.testing.assert_allclose(u, tree["u"].values.squeeze(), atol=1e-6)
    assert not np.allclose(tree["z_u"].values, ref["z_u"].values)


def test_predict_table_and_kinds(map_post):
    mean = map_post.predict("fam0", [1e9, "30B"], "200B", kind="mean")
    new = map_post.predict("fam0", [1e9, 3e10], 2e11, kind="new_run")
    assert list(mean.columns) == [
        "family", "params", "tokens", "kind", "ci_prob", "median", "mean", "lower", "upper",
        "extrapolation", "point_estimate",
    ]  # fmt: skip
    assert mean["params"].tolist() == [1e9, 3e10] and mean["tokens"].iloc[0] == 2e11
    assert np.all(mean["lower"] <= mean["median"]) and np.all(mean["median"] <= mean["upper"])
    # a new run carries its own seed effect and evaluation noise
    assert np.all(new["upper"] - new["lower"] > mean["upper"] - mean["lower"])
    assert mean["median"].iloc[1] < mean["median"].iloc[0]  # bigger model, lower loss
    assert mean["point_estimate"].all()
    # 30B is three times the largest fitted size (10B)
    assert mean["extrapolation"].tolist() == pytest.approx([1.0, 3.0])


def test_predict_rejects_billions_and_bad_kind(map_post):
    with pytest.raises(ValueError, match="look like billions"):
        map_post.predict("fam0", 7, 2e11)
    with pytest.raises(ValueError, match="kind must be one of"):
        map_post.predict("fam0", 7e9, 2e11, kind="median")
    with pytest.raises(ValueError, match=r"ci_prob must be in \(0, 1\)"):
        map_post.predict("fam0", 7e9, 2e11, ci_prob=90)
    with pytest.raises(ValueError, match="not a count"):
        map_post.predict("fam0", "7 billion", 2e11)


def test_unseen_family_uses_the_population_and_suggests_a_name(map_post):
    with pytest.warns(bs.UnseenFamilyWarning, match="not in the fit"):
        out = map_post.predict("brand-new", 1e9, 1e11)
    assert np.isfinite(out[["median", "lower", "upper"]].to_numpy()).all()
    with pytest.warns(bs.UnseenFamilyWarning):
        assert map_post.law("brand-new").log_E.dtype == np.float64
    with pytest.warns(bs.UnseenFamilyWarning, match="did you mean 'fam0'"):
        map_post.predict("FAM0", 1e9, 1e11)


def test_compute_optimal_spends_the_budget(map_post):
    out = map_post.compute_optimal([1e21, 1e23], family="fam1")
    np.testing.assert_allclose(6 * out["params_opt"] * out["tokens_opt"], [1e21, 1e23], rtol=1e-3)
    assert out["params_opt"].iloc[1] > out["params_opt"].iloc[0]


def test_save_load_round_trip(tmp_path, map_post, small):
    path = tmp_path / "fit.nc"
    map_post.save(path)
    back = bs.load(path)
    assert back.config == map_post.config
    pd.testing.assert_frame_equal(
        back.predict("fam2", 3e9, 1e11, kind="new_run", seed=4),
        map_post.predict("fam2", 3e9, 1e11, kind="new_run", seed=4),
    )
    assert back.data.hash() == map_post.data.hash()
    other = bs.ScalingData.from_frame(small[0].iloc[:-3], min_tokens=None)
    with pytest.raises(bs.FitFileError, match="fitted to different data"):
        bs.load(path, data=other)
    with pytest.raises(bs.OutputExistsError, match="overwrite"):
        map_post.save(path)
    map_post.save(path, overwrite=True)


def test_load_rejects_foreign_files(tmp_path):
    bad = tmp_path / "x.nc"
    bad.write_text("not netcdf")
    with pytest.raises(bs.FitFileError, match="cannot read fit file"):
        bs.load(bad)


def test_short_repr_names_the_fit(map_post):
    text = repr(map_post)
    assert len(text) < 300
    assert "3 families" in text and "MAP point estimate" in text


def test_sampling_problems_warn_visibly_in_python_terms():
    """R-hat above 1.01 and divergences each raise a ConvergenceWarning naming them."""
    post = testing.posterior(chain_shift=0.05, divergences=3, draws=100)
    with pytest.warns(bs.ConvergenceWarning, match="sampling problems") as record:
        diag = post.check(warn=True)
    message = str(record[0].message)
    assert "R-hat" in message and "3 divergent transitions" in message
    # the advice names options that exist, as a Python caller names them
    assert "target_accept" in message and "num_warmup" in message
    assert "--" not in message
    fields = set(bs.FitConfig.__dataclass_fields__)
    assert {"target_accept", "num_warmup", "num_samples"} <= fields
    assert diag["status"] == "warn"
    # i.i.d. draws: R-hat's chance excursions shrink with the draws, 1.011 at 250 a chain
    clean = testing.posterior(draws=1000)
    with warnings.catch_warnings():
        warnings.simplefilter("error", bs.ConvergenceWarning)
        assert clean.check(warn=True)["status"] == "pass"


def test_advice_asks_for_more_draws_when_the_ess_cannot_resolve_rhat():
    """Below ~400 effective draws agreeing chains show R-hat > 1.01: draw more, not warm up."""
    from bayescale.convergence import convergence_advice

    config = bs.FitConfig()  # 500 draws per chain
    problems = ["R-hat 1.027 > 1.01 (worst: beta_f[olmo] 1.027)"]
    short = {"problems": problems, "rhat_max": 1.027, "ess_bulk_min": 163.0}
    advice = convergence_advice(short, config)
    # 500 draws gave ESS 163: 400 effective draws take 500 * 400 / 163 = 1227
    assert "num_samples=1300" in advice and "num_warmup" not in advice
    assert "--samples=1300" in convergence_advice(short, config, "cli")
    # chains far apart, or disagreeing although the ESS is ample: warm up longer too
    for diag in (
        {"rhat_max": 1.2, "ess_bulk_min": 163.0},
        {"rhat_max": 1.02, "ess_bulk_min": 900.0},
    ):
        advice = convergence_advice({"problems": problems, **diag}, config)
        assert "num_warmup=1000" in advice and "num_samples=1000" in advice


@pytest.mark.parametrize(
    ("accept", "tip"),
    [
        (0.9, "raise target_accept (now 0.9, try 0.95)"),
        (0.95, "raise target_accept (now 0.95, try 0.99)"),
        (0.99, "warm up longer (num_warmup=1000; target_accept is already 0.99)"),
    ],
)
def test_advice_on_divergences_names_a_change_not_yet_made(accept, tip):
    from bayescale.convergence import convergence_advice

    diag = {"problems": ["3 divergent transitions"]}
    advice = convergence_advice(diag, bs.FitConfig(target_accept=accept))
    assert tip in advice
    # nothing asks for the acceptance a fit already has
    assert f"try {accept:g})" not in advice


def test_advice_at_the_highest_acceptance_asks_for_a_longer_warm_up_once():
    from bayescale.convergence import convergence_advice

    diag = {"problems": ["3 divergent transitions"]}
    cli = convergence_advice(diag, bs.FitConfig(target_accept=0.99), "cli")
    assert "--warmup=1000; --target-accept is already 0.99" in cli
    # chains apart too: the longer warm-up is asked for once, with more draws
    both = {"problems": ["R-hat 1.2 > 1.01", "3 divergent transitions"], "rhat_max": 1.2}
    advice = convergence_advice(both, bs.FitConfig(target_accept=0.99))
    assert advice.count("num_warmup=1000") == 1 and "draw more (num_samples=1000)" in advice
    assert "num_warmup=1000, num_samples=1000" in convergence_advice(both, bs.FitConfig())


def test_the_warning_names_the_family_whose_chains_disagree():
    from arviz_base import from_dict

    from bayescale.convergence import sampling_diagnostics, worst_entry

    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 200, 3))
    x[2:, :, 1] += 1.0  # two chains sit apart, for the middle family only
    groups = {
        "posterior": {"beta_f": x, "alpha": rng.normal(size=(4, 200))},
        "sample_stats": {"diverging": np.zeros((4, 200), bool)},
    }
    tree = from_dict(
        groups, coords={"family": ["fam-a", "fam-b", "fam-c"]}, dims={"beta_f": ["family"]}
    )
    diag = sampling_diagnostics(tree, "nuts")
    assert next(iter(diag["rhat_worst"])) == "beta_f[fam-b]"
    # an entry whose R-hat is not finite does not take the label of the worst finite one
    rh = tree["posterior"]["beta_f"].isel(chain=0, draw=0).copy(data=[np.inf, 1.2, 1.1])
    assert worst_entry(rh) == "beta_f[fam-b]"
    assert "worst: beta_f[fam-b] " in diag["problems"][0]


def test_sequential_chains_are_announced():
    import jax

    from bayescale.devices import SequentialChainsWarning, chain_method

    have = jax.local_device_count()
    assert chain_method(have) == "parallel"
    with pytest.warns(SequentialChainsWarning, match="set_host_device_count"):
        assert chain_method(have + 1) == "sequential"


@pytest.mark.heavy
def test_recovery_on_simulated_families():
    """6 families x 4 sizes x 2 seeds x 20 checkpoints: truth inside the 90% intervals.

    Checkpoints span 1e9-1e12 tokens. Exponents are shared (the simulation
    has no family spread).
    """
    frame, truth = simulate_frame(
        n_families=6,
        sizes=(1e7, 1e8, 1e9, 1e10),
        seeds_per_size=2,
        n_checkpoints=20,
        tokens_range=(1e9, 1e12),
        sigma_seed=0.02,
        seed=2,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error", bs.ConvergenceWarning)
        warnings.simplefilter("ignore", bs.SequentialChainsWarning)
        post = bs.fit(
            frame,
            exponents="shared",
            min_tokens=None,
            num_chains=2,
            num_warmup=500,
            num_samples=1000,
            target_accept=0.98,
            progress_bar=False,
        )
    summ = post.summary(var_names=["alpha", "beta", "sigma_seed"], ci_prob=0.9, round_to="none")
    for name in ("alpha", "beta", "sigma_seed"):
        lo, hi = summ.loc[name, "eti90_lb"], summ.loc[name, "eti90_ub"]
        assert lo <= getattr(truth, name) <= hi, (name, lo, hi)
    diag = post.diagnostics()
    assert diag["rhat_max"] < 1.01 and diag["divergences"] == 0


@pytest.mark.heavy
def test_one_chain_fits():
    frame, _ = simulate_frame(n_families=2, sizes=(1e8, 1e9), n_checkpoints=4, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bs.ConvergenceWarning)
        post = bs.fit(frame, num_chains=1, num_warmup=30, num_samples=20, progress_bar=False)
    assert post.tree["posterior"].sizes["chain"] == 1
    assert post.draws("alpha").shape == (20,)


@pytest.mark.parametrize("r", [0.99999, -0.99999, 0.3])
def test_chains_start_inside_a_saturated_offset_correlation(small, r):
    import jax
    import jax.numpy as jnp

    from bayescale.data import ScalingData
    from bayescale.fitting import CORR_START, chain_start, model_kwargs
    from bayescale.model import scaling_model
    from bayescale.optim import map_search

    config = bs.FitConfig(min_tokens=None)
    inputs = ScalingData.from_frame(small[0], **config.data_options()).inputs()
    kwargs = {**model_kwargs(inputs, config), "seed_centring": 0.0}
    z, _, info = map_search(scaling_model, kwargs, n_starts=1, key=jax.random.PRNGKey(0))
    z = {**z, "L_omega": jnp.atleast_1d(jnp.arctanh(r))}
    start = chain_start(z, info.postprocess_fn(z), inputs=inputs, config=config)
    corr = float(info.postprocess_fn(start)["L_omega"][1, 0])
    np.testing.assert_allclose(corr, np.clip(r, -CORR_START, CORR_START), rtol=1e-5)


def test_prior_starts_are_distinct_finite_draws(small):
    import jax
    from numpyro.infer.util import potential_energy

    from bayescale.data import ScalingData
    from bayescale.fitting import model_kwargs
    from bayescale.inference import prior_starts
    from bayescale.model import scaling_model

    config = bs.FitConfig(min_tokens=None)
    inputs = ScalingData.from_frame(small[0], **config.data_options()).inputs()
    kwargs = model_kwargs(inputs, config)
    starts = prior_starts(scaling_model, kwargs, 3, jax.random.PRNGKey(0))
    assert all(np.shape(v)[0] == 3 for v in starts.values())
    # no two chains share a start, and each has a finite density
    flat = np.concatenate([np.reshape(v, (3, -1)) for v in starts.values()], axis=1)
    assert np.min(np.abs(flat[:, None] - flat[None])[~np.eye(3, dtype=bool)].max(-1)) > 0.1
    for c in range(3):
        z = {k: v[c] for k, v in starts.items()}
        assert np.isfinite(float(potential_energy(scaling_model, (), kwargs, z)))


def test_prior_start_skips_the_map_search(small, monkeypatch):
    import bayescale.optim

    def no_search(*args, **kwargs):
        raise AssertionError("the MAP search ran")

    monkeypatch.setattr(bayescale.optim, "map_search", no_search)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        post = bs.fit(small[0], min_tokens=None, start="prior", num_chains=2,
                      num_warmup=20, num_samples=10, progress_bar=False)  # fmt: skip
    assert post.config.start == "prior"
    assert post.tree["posterior"].sizes["chain"] == 2
    assert "lp" in post.tree["sample_stats"]
    with pytest.raises(ValueError, match="start must be one of"):
        bs.FitConfig(start="random")
