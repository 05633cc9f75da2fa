"""The sampler loop of :func:`bayescale.inference.run` and the convergence checks of its draws."""

from dataclasses import replace

import numpy as np
import pytest

from bayescale import convergence, inference
from bayescale.inference import InferenceConfig


def _normal_model():
    import numpyro
    import numpyro.distributions as dist

    numpyro.sample("x", dist.Normal(1.0, 2.0))
    numpyro.sample("z_helper", dist.Normal(0.0, 1.0))


def _run(monkeypatch, rhats, **config):
    """``run`` on a two-site normal model, with R-hat decisions read from ``rhats``."""
    seen = iter(rhats)
    calls = []

    def worst_rhat(samples, skip=()):
        calls.append((sorted(samples), samples["x"].shape, tuple(skip)))
        return next(seen)

    monkeypatch.setattr(inference, "_worst_rhat", worst_rhat)
    cfg = InferenceConfig(num_chains=2, num_warmup=100, num_samples=200, start="prior", **config)
    samples, stats, used = inference.run(
        _normal_model, {}, cfg, skip=("x_skip",), progress_bar=False
    )
    assert used == cfg  # no divergences: no retry, the settings as given
    return samples, stats, calls


@pytest.mark.parametrize(
    ("rhats", "extend", "draws"),
    [
        ([1.02, 1.005], 2, 400),  # one round settles it
        ([1.02, 1.03], 2, 600),  # unsettled: as many rounds as allowed
        ([1.02], 0, 200),  # extend=0 never asks
        ([1.2], 2, 200),  # chains apart: more draws would not help
        ([1.004], 2, 200),  # settled at once
    ],
)
def test_more_draws_only_while_rhat_is_unsettled(monkeypatch, rhats, extend, draws):
    samples, stats, calls = _run(monkeypatch, rhats, extend=extend)
    assert samples["x"].shape == (2, draws)
    assert {k: v.shape for k, v in stats.items()} == dict.fromkeys(stats, (2, draws))
    # asked once per finished round, on the draws so far, with the caller's skip list
    assert len(calls) == min(extend, len(rhats))
    for i, (names, shape, skip) in enumerate(calls):
        assert names == ["x", "z_helper"] and shape == (2, 200 * (i + 1)) and skip == ("x_skip",)


def test_extra_rounds_go_on_with_the_adapted_kernel(monkeypatch):
    samples, stats, _ = _run(monkeypatch, [1.02, 1.02], extend=2)
    # one step size per chain through every round: a new warm-up would adapt a new one
    assert np.all(stats["step_size"] == stats["step_size"][:, :1])
    # the rounds are new draws of the same posterior (Normal(1, 2)), not repeats
    x = samples["x"]
    assert not np.allclose(x[:, :200], x[:, 200:400])
    for part in (x[:, :200], x[:, 200:]):
        assert abs(part.mean() - 1.0) < 0.6 and 1.4 < part.std() < 2.6


def _funnel():
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as dist

    # Neal's funnel sampled centred: divergent transitions at any acceptance
    v = numpyro.sample("v", dist.Normal(0.0, 3.0))
    numpyro.sample("x", dist.Normal(0.0, jnp.exp(v / 2)).expand([4]))


@pytest.mark.parametrize(("retry", "accept"), [(0, 0.9), (1, 0.95), (2, 0.95)])
def test_divergences_call_for_a_warm_up_at_higher_acceptance(retry, accept):
    cfg = InferenceConfig(num_chains=2, num_warmup=150, num_samples=150, start="prior", extend=0)
    samples, stats, used = inference.run(_funnel, {}, replace(cfg, retry=retry), progress_bar=False)
    # divergent at 0.9; none at 0.95 in this short run, so a second retry is not taken
    assert stats["diverging"].any() == (retry == 0)
    assert used == replace(cfg, retry=retry, target_accept=accept)
    assert used.label().endswith("" if retry == 0 else f"accept {accept:g}")
    # the recorded settings repeat the kept draws: same starts, same key
    again, _, _ = inference.run(_funnel, {}, replace(used, retry=0), progress_bar=False)
    np.testing.assert_array_equal(again["v"], samples["v"])


def test_a_retry_raises_the_acceptance_then_doubles_the_warm_up():
    cfg = InferenceConfig(num_warmup=500)
    steps = [cfg]
    for _ in range(3):
        steps.append(inference.retried(steps[-1]))
    assert [(c.target_accept, c.num_warmup) for c in steps] == [
        (0.9, 500), (0.95, 500), (0.99, 500), (0.99, 1000),
    ]  # fmt: skip
    assert [c.label() for c in steps[2:]] == [
        "nuts 4x(500+500) accept 0.99", "nuts 4x(1000+500) accept 0.99",
    ]  # fmt: skip
    # nothing left to change: run() stops retrying
    no_warm_up = replace(cfg, target_accept=0.99, num_warmup=0)
    assert inference.retried(no_warm_up) == no_warm_up


def test_a_retry_whose_chains_disagree_more_is_not_kept(monkeypatch):
    cfg = InferenceConfig(num_chains=2, num_warmup=150, num_samples=150, start="prior", extend=0)
    first, _, _ = inference.run(_funnel, {}, replace(cfg, retry=0), progress_bar=False)
    # the first run's chains agree, the retry's do not
    monkeypatch.setattr(
        inference,
        "_worst_rhat",
        lambda samples, skip=(): 1.0 if np.array_equal(samples["v"], first["v"]) else 1.3,
    )
    samples, stats, used = inference.run(_funnel, {}, replace(cfg, retry=2), progress_bar=False)
    assert used == replace(cfg, retry=2) and stats["diverging"].any()
    np.testing.assert_array_equal(samples["v"], first["v"])


@pytest.mark.parametrize(
    ("first", "retry", "kept"),
    [
        ((5, 1.004), (0, 1.008), True),  # no divergences, chains still agree
        ((5, 1.004), (9, 1.004), False),  # diverges more at the same agreement
        ((5, 1.004), (0, 1.02), False),  # chains agree less (unsettled)
        ((5, 1.03), (9, 1.005), True),  # chains agree now, though it diverges more
        ((5, 1.03), (2, 1.045), True),  # unsettled both: fewer divergences
        ((2, 1.03), (5, 1.02), False),  # unsettled both: more divergences
        ((16, 1.10), (3, 1.30), True),  # apart both: fewer divergences
        ((3, 1.02), (0, 1.20), False),  # chains apart now
        ((3, 1.08), (3, 1.06), True),  # as many divergences, R-hat lower
        ((3, 1.06), (3, 1.08), False),
    ],
)
def test_a_retry_is_kept_unless_its_chains_agree_less_or_it_diverges_more(first, retry, kept):
    assert inference.keeps_retry(first, retry) == kept


@pytest.mark.parametrize(
    ("divergences", "accept"),
    [
        ({0.9: 5, 0.95: 9}, 0.9),
        ({0.9: 5, 0.95: 2, 0.99: 1}, 0.99),
        ({0.9: 5, 0.95: 2, 0.99: 4}, 0.95),
    ],
)
def test_run_keeps_the_draws_that_keeps_retry_prefers(monkeypatch, divergences, accept):
    def fake_nuts(model, model_kwargs, config, **_):
        div = np.zeros((2, 10), bool)
        div[0, : divergences[config.target_accept]] = True
        return {"x": np.full((2, 10), config.target_accept)}, {"diverging": div}

    monkeypatch.setattr(inference, "_nuts", fake_nuts)
    monkeypatch.setattr(inference, "_worst_rhat", lambda samples, skip=(): 1.004)
    cfg = InferenceConfig(num_chains=2, start="prior", retry=2)
    samples, stats, used = inference.run(_normal_model, {}, cfg, progress_bar=False)
    assert used == replace(cfg, target_accept=accept)
    assert np.all(samples["x"] == accept)
    assert stats["diverging"].sum() == divergences[accept]


def test_worst_rhat_is_the_reported_one():
    from arviz_base import from_dict

    rng = np.random.default_rng(1)
    x = rng.normal(size=(4, 300, 3))
    x[:2, :, 2] += 1.0
    # left out: z_* helpers and the skipped sites, whose chains disagree far more
    samples = {
        "beta_f": x,
        "z_u": x + [[[5]], [[0]], [[0]], [[0]]],
        "L_omega": rng.normal(size=(4, 300)) * [[1], [1], [9], [9]],
    }
    tree = from_dict(
        {"posterior": samples, "sample_stats": {"diverging": np.zeros((4, 300), bool)}}
    )
    diag = convergence.sampling_diagnostics(tree, "nuts", skip=("L_omega",))
    assert inference._worst_rhat(samples, skip=("L_omega",)) == pytest.approx(diag["rhat_max"])
    assert 1.05 < diag["rhat_max"] < 1.5 and diag["draws"] == 300


def test_extend_must_be_a_count():
    assert InferenceConfig(extend=0).extend == 0
    with pytest.raises(ValueError, match="extend must be a non-negative integer"):
        InferenceConfig(extend=-1)
    with pytest.raises(ValueError, match="num_samples must be a positive integer"):
        InferenceConfig(num_samples=0)


def test_the_band_where_more_draws_can_settle_rhat():
    from bayescale.convergence import RHAT_CHANCE, RHAT_MAX
    from bayescale.inference import draws_can_settle

    assert [draws_can_settle(r) for r in (1.0, RHAT_MAX, 1.011, RHAT_CHANCE, 1.051)] == [
        False, False, True, True, False,
    ]  # fmt: skip
    assert not draws_can_settle(float("nan"))


def _with_spread(post, name, values):
    """``post`` with site ``name`` set to ``values``."""
    from dataclasses import replace

    import xarray as xr

    ds = post.tree["posterior"].to_dataset()
    ds[name] = ds[name].copy(data=np.asarray(values, dtype=ds[name].dtype).reshape(ds[name].shape))
    tree = post.tree.copy()
    tree["posterior"] = xr.DataTree(ds)
    return replace(post, tree=tree)


@pytest.fixture(scope="module")
def drawn():
    from bayescale import testing

    return testing.posterior(draws=20)


@pytest.fixture(scope="module")
def point(drawn):
    from bayescale import testing

    return testing.point_estimate(drawn)


def test_diagnostics_are_computed_once_and_handed_out_as_copies(monkeypatch, drawn):
    from dataclasses import replace

    from bayescale import inference

    post = replace(drawn)  # a fresh instance: nothing computed yet
    calls = []
    real = inference.sampling_diagnostics
    monkeypatch.setattr(
        inference, "sampling_diagnostics", lambda *a, **k: calls.append(1) or real(*a, **k)
    )
    first = post.diagnostics()
    first["problems"].append("changed by a caller")
    post.check(warn=False)
    assert post.diagnostics() == real(
        post.tree, post.config.method, skip=post._SKIP_VARS, spreads=post._spreads()
    )
    assert len(calls) == 1


def test_a_map_spread_at_zero_is_a_visible_problem(point):
    from bayescale.cli.commands import diag_line
    from bayescale.reporting import status

    prior = np.asarray(point.config.priors.offset_sd)
    fallen = _with_spread(point, "sigma_theta", [0.01 * prior[0], 0.5 * prior[1]])
    diag = fallen.diagnostics()
    assert diag["status"] == "warn"
    assert len(diag["problems"]) == 1 and diag["problems"][0].startswith(
        "MAP spread sigma_theta[a]"
    )
    assert 'method="nuts"' in convergence.convergence_advice(diag, fallen.config)
    assert "--method nuts" in convergence.convergence_advice(diag, fallen.config, "cli")
    assert "MAP spread sigma_theta[a]" in diag_line(diag)
    assert ("spreads", "warn") in [c[:2] for c in status(fallen).checks]
    with pytest.warns(convergence.ConvergenceWarning, match="MAP spread sigma_theta"):
        fallen.check()


def test_map_spreads_are_checked_only_where_they_can_fall(point, drawn):
    prior = np.asarray(point.config.priors.offset_sd)
    # just above the line: no problem
    kept = _with_spread(point, "sigma_theta", 1.01 * convergence.SPREAD_COLLAPSED * prior)
    assert kept.diagnostics()["problems"] == []
    assert kept.diagnostics()["status"] == "n/a (point estimate)"
    # one family: its spread is its prior's, with no neck to fall into
    from bayescale import testing

    one = testing.posterior(testing.synthetic_frame(families=("fam-a",)), draws=20)
    lone = _with_spread(testing.point_estimate(one), "sigma_theta", 1e-4 * prior)
    assert lone.diagnostics()["problems"] == []
    # sampled spreads are the posterior's, small or not: R-hat and ESS judge those
    shape = drawn.tree["posterior"]["sigma_theta"].shape
    sampled = _with_spread(drawn, "sigma_theta", np.full(shape, 1e-4))
    assert not any("MAP spread" in p for p in sampled.diagnostics()["problems"])


def _divergent_tree(samples, diverging):
    """A DataTree of ``samples`` (``v`` has entries ``x``, ``y``) and divergent draws."""
    from arviz_base import from_dict

    return from_dict(
        {"posterior": samples, "sample_stats": {"diverging": diverging}},
        coords={"entry": ["x", "y"]},
        dims={"v": ["entry"]},
    )


def test_divergences_name_where_their_draws_lie():
    rng = np.random.default_rng(3)
    tau = rng.gamma(2.0, 0.05, size=(4, 500))
    v = rng.normal(size=(4, 500, 2))
    # a funnel: the sampler diverges where the spread is small, and v[y] sits high there
    diverging = tau < np.quantile(tau, 0.03)
    v[..., 1] += 2.0 * diverging
    tree = _divergent_tree({"tau": tau, "v": v}, diverging)
    sites = dict(convergence.divergence_sites(tree["posterior"], diverging))
    assert sorted(sites) == ["tau", "v[y]"]
    assert sites["tau"] < -convergence.DIVERGENT_SHIFT and sites["v[y]"] > 1.0
    diag = convergence.sampling_diagnostics(tree, "nuts")
    assert diag["divergences"] == diverging.sum() and diag["divergence_sites"] == sites
    problem = [p for p in diag["problems"] if "divergent" in p][0]
    assert "their draws at" in problem and "low tau (" in problem and "high v[y] (" in problem


def test_divergences_at_random_draws_name_no_site():
    rng = np.random.default_rng(4)
    diverging = np.zeros((4, 500), bool)
    diverging.ravel()[rng.choice(2000, size=20, replace=False)] = True
    # 302 entries unrelated to the divergences: a chance shift must not be named
    samples = {"v": rng.normal(size=(4, 500, 2)), "w": rng.normal(size=(4, 500, 300))}
    tree = _divergent_tree(samples, diverging)
    diag = convergence.sampling_diagnostics(tree, "nuts")
    assert diag["divergence_sites"] == {}
    assert "20 divergent transitions" in diag["problems"] and diag["status"] == "warn"
    assert convergence.divergence_sites(tree["posterior"], np.ones((4, 500), bool)) == []


def test_divergences_at_a_small_exponent_spread_advise_partly_centred_exponents():
    from bayescale.fitting import FitConfig

    diag = {"problems": ["40 divergent transitions, their draws at low tau_beta (-1.0 sd)"]}
    diag["divergence_sites"] = {"tau_beta": -1.0}
    advice = convergence.convergence_advice(diag, FitConfig())
    assert "exponent_centring=0.5" in advice and "small tau_beta" in advice
    assert "--exponent-centring 0.5" in convergence.convergence_advice(diag, FitConfig(), "cli")
    # not where the exponents already are partly centred, nor for a spread sitting high
    assert "centred" not in convergence.convergence_advice(diag, FitConfig(exponent_centring=0.5))
    diag["divergence_sites"] = {"tau_beta": 1.0, "sigma_theta[a]": -1.2}
    assert "centred" not in convergence.convergence_advice(diag, FitConfig())
    # the downstream fits' config has no such setting
    assert "centred" not in convergence.convergence_advice(
        {**diag, "divergence_sites": {"tau_alpha": -1.0}}, InferenceConfig()
    )


def _apart_tree(shift, lp_shift, chains_apart=(2,)):
    """Four chains of ``beta_f[fam]`` and a scalar; ``chains_apart`` shifted by ``shift``."""
    from arviz_base import from_dict

    rng = np.random.default_rng(5)
    beta = rng.normal(1.3, 0.05, size=(4, 400, 1))
    lp = rng.normal(300.0, 2.0, size=(4, 400))
    for c in chains_apart:
        beta[c] += shift
        lp[c] += lp_shift
    return from_dict(
        {
            "posterior": {"beta_f": beta, "nu": rng.normal(2.0, 0.1, size=(4, 400))},
            "sample_stats": {"diverging": np.zeros((4, 400), bool), "lp": lp},
        },
        coords={"family": ["GPT2-oscar-44"]},
        dims={"beta_f": ["family"]},
    )


def test_a_chain_in_a_lesser_mode_is_named_and_calls_for_another_seed():
    from bayescale.fitting import FitConfig

    diag = convergence.sampling_diagnostics(_apart_tree(-0.85, -5.0), "nuts")
    apart = diag["chain_apart"]
    assert apart["chain"] == 2 and apart["entry"] == "beta_f[GPT2-oscar-44]"
    assert apart["mean"] == pytest.approx(0.45, abs=0.01)
    assert apart["others_mean"] == pytest.approx(1.3, abs=0.01)
    assert apart["lp_gap"] == pytest.approx(-5.0, abs=0.3)
    problem = [p for p in diag["problems"] if "sits apart" in p][0]
    assert problem.startswith("chain 3 of 4 sits apart (beta_f[GPT2-oscar-44] 0.45")
    assert "5.0 lower: a lesser mode" in problem
    advice = convergence.convergence_advice(diag, FitConfig(seed=3))
    # a chain still on its way settles with a longer run; one held in a mode does not
    assert "run longer" in advice and "if chain 3 stays apart" in advice
    assert "another seed (now 3)" in advice and "data of GPT2-oscar-44" in advice
    assert "another --seed" in convergence.convergence_advice(diag, FitConfig(), "cli")
    higher = convergence.sampling_diagnostics(_apart_tree(-0.85, 5.0), "nuts")
    assert "5.0 higher: the others may have missed a better mode" in " ".join(higher["problems"])


def test_chains_split_two_and_two_name_no_chain_apart():
    from bayescale.fitting import FitConfig

    diag = convergence.sampling_diagnostics(_apart_tree(-0.85, -5.0, (0, 1)), "nuts")
    assert diag["rhat_max"] > convergence.RHAT_CHANCE and "chain_apart" not in diag
    advice = convergence.convergence_advice(diag, FitConfig())
    assert "run longer" in advice and "stays apart" not in advice
    # chains that agree: nothing to name
    assert "chain_apart" not in convergence.sampling_diagnostics(_apart_tree(0, 0), "nuts")
