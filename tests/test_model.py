"""Contract tests over every law and exponent form of the NumPyro model."""

from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pandas as pd
import pytest
from numpyro import handlers

from bayescale import laws
from bayescale.data import ScalingData
from bayescale.model import family_law, log_likelihood, scaling_model
from bayescale.options import EXPONENT_FORMS, LAWS
from bayescale.seeds import RunEffects, centered_run_effects
from bayescale.simulate import simulate_frame
from bayescale.testing import synthetic_frame

FORMS = [(law, exp) for law in LAWS for exp in EXPONENT_FORMS]


@pytest.fixture(scope="module")
def data():
    frame, _ = simulate_frame(n_families=3, sizes=(1e8, 1e9), n_checkpoints=6, seed=1)
    # one family of single-checkpoint runs, as in the Gadre and Chinchilla data
    lone = frame[frame["family"] == "fam2"].groupby("run").tail(1)
    frame = frame[frame["family"] != "fam2"]
    return ScalingData.from_frame(pd.concat([frame, lone]), min_tokens=None)


def _trace(inputs, law, exponents, seed=0):
    model = handlers.seed(scaling_model, jax.random.PRNGKey(seed))
    return handlers.trace(model).get_trace(inputs, law=law, exponents=exponents)


@pytest.mark.parametrize("law,exponents", FORMS)
def test_sites_and_plates(data, law, exponents):
    inputs = data.inputs()
    tr = _trace(inputs, law, exponents)
    f, r, n = data.n_families, data.n_runs, data.n_obs
    assert tr["coords"]["value"].shape == (f, 3)
    assert tr["e_frac"]["value"].shape == (f,)
    # e_frac is E's share of the law at the reference sizes
    log_e, a, b = (np.asarray(tr[k]["value"]) for k in ("log_E", "a", "b"))
    np.testing.assert_allclose(
        tr["e_frac"]["value"], np.exp(log_e) / (np.exp(log_e) + np.exp(a) + np.exp(b)), rtol=1e-5
    )
    assert tr["u"]["value"].shape == (r,)
    assert tr["y"]["value"].shape == (n,) and tr["y"]["is_observed"]
    assert tr["alpha_f"]["value"].shape == (f,)
    assert tr["family"]["type"] == "plate" and tr["family"]["args"][0] == f
    assert tr["z_u"]["value"].shape == (r,)
    if law == "overtrain":
        np.testing.assert_allclose(tr["beta_f"]["value"], tr["alpha_f"]["value"])
    if exponents == "shared":
        assert np.ptp(np.asarray(tr["alpha_f"]["value"])) == 0


@pytest.mark.parametrize("law,exponents", FORMS)
def test_pointwise_log_likelihood_sums_to_the_density_the_model_conditions_on(data, law, exponents):
    inputs = data.inputs()
    tr = _trace(inputs, law, exponents, seed=3)
    sites = {k: v["value"] for k, v in tr.items() if v["type"] in ("sample", "deterministic")}
    site = tr["y"]
    want = float(site["fn"].log_prob(site["value"]))
    pointwise = np.asarray(log_likelihood(inputs, sites))
    assert pointwise.shape == (data.n_obs,)
    assert float(pointwise.sum()) == pytest.approx(want, rel=1e-5)
    # and the model's own joint density counts it once
    joint = numpyro.infer.util.log_density(
        scaling_model, (inputs,), {"law": law, "exponents": exponents}, sites
    )[0]
    without = numpyro.infer.util.log_density(
        scaling_model, (inputs,), {"law": law, "exponents": exponents, "observe": False}, sites
    )[0]
    assert float(joint - without) == pytest.approx(want, rel=1e-4)


def test_run_effects_sum_to_zero_within_families(data):
    inputs = data.inputs()
    z = jax.random.normal(jax.random.PRNGKey(0), (data.n_runs,))
    u = np.asarray(centered_run_effects(z, inputs))
    for f in range(data.n_families):
        assert abs(u[data.run_family == f].sum()) < 1e-5
    single = np.asarray(inputs.run_single)
    assert single.sum() == int((data.run_family == 2).sum()) > 0
    assert np.all(u[single] == 0)


def test_run_effects_have_the_covariance_of_seeds_around_their_average(data):
    """u = A z; A A^T must be I - J/K per family, so sigma_seed is the population spread."""
    inputs = data.inputs()
    a = np.asarray(jax.jacobian(lambda z: centered_run_effects(z, inputs))(np.zeros(data.n_runs)))
    cov = a @ a.T
    for f in range(2):
        runs = np.flatnonzero(data.run_family == f)
        k = runs.size
        assert k >= 2
        np.testing.assert_allclose(cov[np.ix_(runs, runs)], np.eye(k) - 1.0 / k, atol=1e-6)


@pytest.mark.parametrize("w", [0.0, 0.5, 1.0])
def test_seed_coordinates_have_the_density_of_their_linear_map(data, w):
    """z_u = A x, x standard normal: log_prob is N(0, A A^T), and u is the same for every w."""
    inputs = data.inputs()
    sigma, anchor = 0.05, 0.03
    seeds = RunEffects(sigma, inputs, w=w, anchor=anchor)
    r = data.n_runs
    a = np.asarray(jax.jacobian(seeds.from_standard)(np.zeros(r)))
    # the single-checkpoint family's runs are all Normal(0, anchor**w) directions
    mvn = numpyro.distributions.MultivariateNormal(np.zeros(r), a @ a.T)
    x = np.asarray(jax.random.normal(jax.random.PRNGKey(1), (4, r)))
    np.testing.assert_allclose(seeds.log_prob(x), mvn.log_prob(x), rtol=1e-5)
    z = seeds.from_standard(x)
    np.testing.assert_allclose(seeds.effects(z), sigma * centered_run_effects(x, inputs), atol=1e-6)
    draws = seeds.sample(jax.random.PRNGKey(2), (3,))
    assert draws.shape == (3, r)
    if w == 0.0:
        # bit for bit: non-centred fits start and move exactly as before the option
        np.testing.assert_array_equal(z, x)


def test_with_the_discrepancy_only_runs_of_one_size_are_replicates(data):
    """by_size: u sums to zero per (family, size), covariance I - J/k there; a lone run has 0."""
    # drop one seed of fam0's larger size: that run is alone at its size
    inputs = data.inputs()
    run_family, log_n = np.asarray(inputs.run_family), np.asarray(inputs.log_n)
    lone = np.flatnonzero((run_family == 0) & (log_n == log_n[run_family == 0].max()))[0]
    keep = np.ones(data.n_runs, bool)
    keep[lone] = False
    obs_keep = keep[np.asarray(inputs.obs_run)]
    remap = np.cumsum(keep) - 1
    sub = inputs._replace(
        run_family=run_family[keep],
        log_n=log_n[keep],
        run_single=np.asarray(inputs.run_single)[keep],
        obs_run=remap[np.asarray(inputs.obs_run)[obs_keep]],
    )
    n = int(keep.sum())
    jac = jax.jacobian(lambda z: centered_run_effects(z, sub, by_size=True))(np.zeros(n))
    cov = np.asarray(jac) @ np.asarray(jac).T
    multi = ~np.asarray(sub.run_single)
    for f in range(data.n_families):
        for x in np.unique(sub.log_n[sub.run_family == f]):
            runs = np.flatnonzero((sub.run_family == f) & (sub.log_n == x) & multi)
            k = runs.size
            want = np.eye(k) - 1.0 / k if k > 1 else np.zeros((k, k))
            np.testing.assert_allclose(cov[np.ix_(runs, runs)], want, atol=1e-6)
    # the run left alone at fam0's larger size has no seed effect of its own
    alone = np.flatnonzero((sub.run_family == 0) & (sub.log_n == log_n[lone]))
    assert alone.size == 1 and np.all(cov[alone[0]] == 0)
    # and runs of different sizes are independent
    f0 = np.flatnonzero(sub.run_family == 0)
    assert np.all(cov[np.ix_(f0, f0)][sub.log_n[f0][:, None] != sub.log_n[f0][None, :]] == 0)


def test_single_checkpoint_runs_carry_the_seed_variance_around_the_fitted_law():
    from bayescale.seeds import single_seed_var

    # family 0: two multi-checkpoint runs and one lone point; family 1: lone points only
    runs = SimpleNamespace(
        run_family=np.array([0, 0, 0, 1, 1]),
        run_single=np.array([False, False, True, True, True]),
        n_families=2,
    )
    c = single_seed_var(runs)
    np.testing.assert_allclose(c[[2, 3, 4]], [1.5, 1.0, 1.0])


def test_simulation_follows_the_law_when_noise_is_off(data):
    from bayescale.model import trajectory

    inputs = data.inputs()
    f = data.n_families
    law = laws.LawParams(*(np.full(f, v) for v in (np.log(0.7), -2.0, -2.0, 0.34, 0.28)))
    traj = trajectory(inputs, law, np.zeros(data.n_runs), np.full(f, 1e-9), 0.0, 0.5, 5.0)
    y = traj.sample(jax.random.PRNGKey(0))
    n = data.run_params[data.obs_run]
    want = np.log(
        0.7 + np.exp(-2 - 0.34 * np.log(n / 1e9)) + np.exp(-2 - 0.28 * np.log(data.tokens / 1e11))
    )
    np.testing.assert_allclose(np.asarray(y), want, atol=1e-5)


def test_family_law_reads_the_model_sites(data):
    tr = _trace(data.inputs(), "chinchilla", "pooled")
    sites = {k: v["value"] for k, v in tr.items()}
    law = family_law(sites)
    np.testing.assert_allclose(law.alpha, sites["alpha_f"])
    np.testing.assert_allclose(law.a, sites["a"])


def test_model_rejects_unknown_forms(data):
    with pytest.raises(ValueError, match="exponents must be one of"):
        _trace(data.inputs(), "chinchilla", "free")
    with pytest.raises(ValueError, match="law must be one of"):
        _trace(data.inputs(), "kaplan", "shared")


def test_numpyro_prior_sample_runs_without_observations(data):
    pred = numpyro.infer.Predictive(scaling_model, num_samples=3)
    out = pred(jax.random.PRNGKey(0), data.inputs(), observe=False)
    assert out["alpha"].shape == (3,) and out["u"].shape == (3, data.n_runs)


def test_exponents_are_centred_where_a_family_pins_them_and_the_law_is_the_same():
    from numpyro.infer import Predictive

    from bayescale.centring import centred_exponents

    wide = synthetic_frame(families=("wide",), sizes=(1e8, 3e8, 1e9), n_ckpt=8)
    one_size = synthetic_frame(families=("one-size",), sizes=(1e9,), n_ckpt=30)
    few = synthetic_frame(families=("few",), sizes=(1e8, 3e8, 1e9, 3e9), n_ckpt=2)
    # final losses of 24 sizes, all at one token count
    budget = synthetic_frame(families=("one-budget",), sizes=np.geomspace(1e8, 1e9, 24), n_ckpt=1)
    budget["run"] = [f"b{i}" for i in range(len(budget))]
    frames = [wide, one_size, few, budget]
    with pytest.warns(UserWarning, match="'one-size' has runs at one size only"):
        data = ScalingData.from_frame(pd.concat(frames), min_tokens=None)
    inputs = data.inputs()
    centred = centred_exponents(inputs)
    # (alpha_f, beta_f): sizes pin the first, a range of tokens the second
    assert {f: tuple(c) for f, c in zip(data.families, centred.tolist(), strict=True)} == {
        "wide": (True, True),  # 3 sizes, 24 checkpoints over a factor 20 in tokens
        "one-size": (False, True),  # 30 checkpoints of one curve
        "few": (False, False),  # 8 checkpoints
        "one-budget": (True, False),
    }
    # the over-training law's one exponent is pinned by either kind of spread
    np.testing.assert_array_equal(
        centred_exponents(inputs, "overtrain"), np.repeat(centred.any(axis=1)[:, None], 2, axis=1)
    )
    # both forms, and every family partly centred, draw log alpha_f ~ Normal(log alpha, tau_alpha)
    for weight in (None, 0.5):
        draws = Predictive(scaling_model, num_samples=4000)(
            jax.random.PRNGKey(0), inputs, exponents="pooled", exponent_centring=weight,
            observe=False,
        )  # fmt: skip
        for site, mean, tau in (("alpha_f", "alpha", "tau_alpha"), ("beta_f", "beta", "tau_beta")):
            z = (np.log(draws[site]) - np.log(draws[mean])[:, None]) / draws[tau][:, None]
            np.testing.assert_allclose(z.mean(axis=0), 0.0, atol=0.06)
            np.testing.assert_allclose(z.std(axis=0), 1.0, atol=0.05)
        assert draws["z_alpha"].shape == (4000, 4)


@pytest.mark.parametrize("weight", [0.0, 0.5, 1.0])
def test_partly_centred_coordinates_hold_the_value_between_its_two_forms(weight):
    from bayescale.centring import partly_centred

    loc, scale = jnp.array([0.3, -1.0]), jnp.array([0.2, 0.05])
    with handlers.trace() as tr, handlers.seed(rng_seed=1):
        value = partly_centred("z", loc, scale, np.array([False, True]), weight=weight)
    z = tr["z"]["value"]
    # weight 1: the value itself; 0: its standardised departure; the per-entry mask is unused
    expected = weight * loc + (value - loc) / scale ** (1.0 - weight)
    np.testing.assert_allclose(z, expected, rtol=1e-5, atol=1e-6)
    # the site's density is the value's, less the log Jacobian of the map
    site_lp = tr["z"]["fn"].log_prob(z)
    value_lp = dist.Normal(loc, scale).log_prob(value) + (1.0 - weight) * jnp.log(scale)
    np.testing.assert_allclose(site_lp, value_lp, rtol=1e-5)


@pytest.mark.parametrize("law", ["chinchilla", "overtrain"])
def test_a_lone_family_draws_its_exponent_first_and_the_law_is_the_same(law):
    from numpyro.infer import Predictive

    wide = synthetic_frame(families=("wide",), sizes=(1e8, 3e8, 1e9), n_ckpt=8)
    few = synthetic_frame(families=("few",), sizes=(1e8, 3e8, 1e9, 3e9), n_ckpt=2)
    for frame, lone in ((wide, True), (few, False)):
        inputs = ScalingData.from_frame(frame, min_tokens=None).inputs()
        sites = handlers.trace(handlers.seed(scaling_model, 0)).get_trace(
            inputs, law=law, observe=False
        )
        # pinned by its data: the population exponent integrated out (site w_alpha), no funnel
        assert (sites["alpha"]["type"] == "deterministic") is lone
        assert ("w_alpha" in sites) is lone
        draws = Predictive(scaling_model, num_samples=8000)(
            jax.random.PRNGKey(1), inputs, law=law, observe=False
        )
        # either way log alpha ~ Normal(log 0.3, 0.5) and log alpha_f ~ Normal(log alpha, tau)
        log_alpha = np.log(draws["alpha"])
        np.testing.assert_allclose(
            [log_alpha.mean(), log_alpha.std()], [np.log(0.3), 0.5], atol=0.02
        )
        z = (np.log(draws["alpha_f"][:, 0]) - log_alpha) / draws["tau_alpha"]
        np.testing.assert_allclose([z.mean(), z.std()], [0.0, 1.0], atol=0.04)
        if law == "overtrain":
            np.testing.assert_array_equal(draws["beta_f"], draws["alpha_f"])
