"""Contract tests over every law and exponent form of the NumPyro model."""

import jax
import numpy as np
import numpyro
import pandas as pd
import pytest
from numpyro import handlers

from bayescale import laws
from bayescale.data import ScalingData
from bayescale.model import (
    family_law,
    law_mean,
    log_likelihood,
    run_offsets,
    scaling_model,
    trajectory,
)
from bayescale.offsets import marginal_log_likelihood
from bayescale.options import EXPONENT_FORMS, LAWS
from bayescale.simulate import simulate_frame

FORMS = [(law, exp) for law in LAWS for exp in EXPONENT_FORMS]


@pytest.fixture(scope="module")
def data():
    frame, _ = simulate_frame(n_families=3, sizes=(1e8, 3e8, 1e9), n_checkpoints=6, seed=1)
    # fam2: single-checkpoint runs at two sizes (as in the Gadre and Chinchilla data)
    # beside curves at a third; fam3: final losses only
    fam2 = frame["family"] == "fam2"
    lone = frame[fam2 & (frame["params"] < 5e8)].groupby("run").tail(1)
    finals = frame[frame["family"] == "fam1"].groupby("run").tail(1).assign(family="fam3")
    frame = pd.concat([frame[~fam2 | (frame["params"] > 5e8)], lone, finals])
    return ScalingData.from_frame(frame, min_tokens=None, families=["fam0", "fam1", "fam2", "fam3"])


def _trace(inputs, law, exponents, seed=0):
    model = handlers.seed(scaling_model, jax.random.PRNGKey(seed))
    return handlers.trace(model).get_trace(inputs, law=law, exponents=exponents)


@pytest.mark.parametrize("law,exponents", FORMS)
def test_sites_and_plates(data, law, exponents):
    inputs = data.inputs()
    tr = _trace(inputs, law, exponents)
    f = data.n_families
    assert tr["theta"]["value"].shape == (f, 2)
    assert tr["e_frac"]["value"].shape == (f,)
    # E is a fraction of the law's value at the family's centre
    v = {k: np.asarray(x["value"]) for k, x in tr.items()}
    law_ = family_law(v)
    at_centre = np.asarray(laws.log_loss(law_, inputs.center[:, 0], inputs.center[:, 1]))
    np.testing.assert_allclose(v["log_E"], at_centre + np.log(v["e_frac"]), rtol=1e-4, atol=1e-5)
    # no per-run or per-size latent: the offsets are integrated out
    latent = {k: s for k, s in tr.items() if s["type"] == "sample" and not s["is_observed"]}
    assert all(np.ndim(s["value"]) <= 2 for s in latent.values())
    assert not any(data.n_runs in np.shape(s["value"]) for s in latent.values())
    assert tr["y"]["is_observed"]
    assert tr["alpha_f"]["value"].shape == (f,)
    assert tr["family"]["type"] == "plate" and tr["family"]["args"][0] == f
    if law == "overtrain":
        np.testing.assert_allclose(tr["beta_f"]["value"], tr["alpha_f"]["value"])
    if exponents == "shared":
        assert np.ptp(np.asarray(tr["alpha_f"]["value"])) == 0


@pytest.mark.parametrize("law,exponents", FORMS)
def test_the_model_conditions_on_the_marginal_likelihood(data, law, exponents):
    inputs = data.inputs()
    tr = _trace(inputs, law, exponents, seed=3)
    sites = {k: v["value"] for k, v in tr.items() if v["type"] in ("sample", "deterministic")}
    want = float(
        marginal_log_likelihood(
            inputs, law_mean(inputs, family_law(sites)), sites["sigma_obs"], sites["ell"],
            sites["sigma_seed"], sites["gp_scale"], sites["gp_length"],
        )
    )  # fmt: skip
    kw = {"law": law, "exponents": exponents}
    joint = numpyro.infer.util.log_density(scaling_model, (inputs,), kw, sites)[0]
    without = numpyro.infer.util.log_density(
        scaling_model, (inputs,), {**kw, "observe": False}, sites
    )[0]
    assert float(joint - without) == pytest.approx(want, rel=1e-4)


def test_pointwise_log_likelihood_sums_to_the_conditional_density(data):
    inputs = data.inputs()
    tr = _trace(inputs, "chinchilla", "pooled", seed=4)
    sites = {k: v["value"] for k, v in tr.items() if v["type"] in ("sample", "deterministic")}
    w, u = run_offsets(inputs, sites, jax.random.PRNGKey(0))
    assert w.shape == inputs.inducing.shape[:2] and u.shape == (data.n_runs,)
    sites = {**sites, "u": u}
    pointwise = np.asarray(log_likelihood(inputs, sites))
    assert pointwise.shape == (data.n_obs,)
    traj = trajectory(inputs, family_law(sites), u, sites["sigma_obs"], sites["ell"])
    assert float(pointwise.sum()) == pytest.approx(float(traj.log_prob(inputs.y)), rel=1e-5)


def test_coefficients_sampled_at_the_family_centre_map_to_the_shared_ones(data):
    """a_f = a_f(centre) + alpha_f (log N_centre - log 1e9): the same law, two coordinates."""
    inputs = data.inputs()
    tr = _trace(inputs, "chinchilla", "pooled", seed=5)
    v = {k: np.asarray(x["value"]) for k, x in tr.items()}
    f = 0
    cn, cd = inputs.center[f]
    law = family_law(v).map(lambda x: x[f])
    at_centre = laws.LawParams(
        law.log_E,
        law.a - law.alpha * (cn - laws.LOG_N_REF),
        law.b - law.beta * (cd - laws.LOG_D_REF),
        law.alpha,
        law.beta,
    )
    # the centre-coordinate law: terms a_c - alpha (log N - cn)
    log_n, log_d = cn + 0.7, cd - 0.4
    direct = np.logaddexp(
        np.logaddexp(law.log_E, at_centre.a - law.alpha * 0.7), at_centre.b + law.beta * 0.4
    )
    assert float(laws.log_loss(law, log_n, log_d)) == pytest.approx(float(direct), rel=1e-5)
    # the family with two sizes only is sampled non-centred
    assert list(inputs.noncentred) == [False, False, False, False]


def test_only_families_of_final_losses_have_runs_without_a_seed_effect(data):
    inputs = data.inputs()
    single = np.bincount(inputs.obs_run, minlength=data.n_runs) == 1
    fam = data.run_family
    assert single[fam == 2].sum() == 4 and single[fam == 3].all()
    assert list(inputs.final_only) == [False, False, False, True]
    # single checkpoints beside curves still carry a seed effect; final losses only do not
    np.testing.assert_array_equal(inputs.seeded, fam != 3)


def test_simulation_follows_the_law_when_noise_is_off(data):
    inputs = data.inputs()
    f = data.n_families
    law = laws.LawParams(*(np.full(f, v) for v in (np.log(0.7), -2.0, -2.0, 0.34, 0.28)))
    traj = trajectory(inputs, law, np.zeros(data.n_runs), np.full(f, 1e-9), 0.5)
    y = traj.sample(jax.random.PRNGKey(0))
    n = data.run_params[data.obs_run]
    want = np.log(
        0.7 + np.exp(-2 - 0.34 * np.log(n / 1e9)) + np.exp(-2 - 0.28 * np.log(data.tokens / 1e11))
    )
    np.testing.assert_allclose(np.asarray(y), want, atol=1e-5)


def test_model_rejects_unknown_forms(data):
    with pytest.raises(ValueError, match="exponents must be one of"):
        _trace(data.inputs(), "chinchilla", "free")
    with pytest.raises(ValueError, match="law must be one of"):
        _trace(data.inputs(), "kaplan", "shared")


def test_numpyro_prior_sample_runs_without_observations(data):
    pred = numpyro.infer.Predictive(scaling_model, num_samples=3)
    out = pred(jax.random.PRNGKey(0), data.inputs(), observe=False)
    assert out["alpha"].shape == (3,) and out["log_E"].shape == (3, data.n_families)
