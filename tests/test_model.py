"""Contract tests over every law and exponent form of the NumPyro model."""

import jax
import numpy as np
import numpyro
import pytest
from numpyro import handlers

from bayescale.data import ScalingData
from bayescale.model import (
    EXPONENT_FORMS,
    LAWS,
    centered_run_effects,
    inputs_from_data,
    log_likelihood,
    scaling_model,
    simulate_log_loss,
)
from bayescale.simulate import simulate_frame

FORMS = [(law, exp) for law in LAWS for exp in EXPONENT_FORMS]


@pytest.fixture(scope="module")
def data():
    frame, _ = simulate_frame(n_families=3, sizes=(1e8, 1e9), n_checkpoints=6, seed=1)
    # one family of single-checkpoint runs, as in the Gadre and Chinchilla data
    lone = frame[frame["family"] == "fam2"].groupby("run").tail(1)
    frame = frame[frame["family"] != "fam2"]
    import pandas as pd

    return ScalingData.from_frame(pd.concat([frame, lone]), min_tokens=None)


def _trace(inputs, law, exponents, seed=0):
    model = handlers.seed(scaling_model, jax.random.PRNGKey(seed))
    return handlers.trace(model).get_trace(inputs, law=law, exponents=exponents)


@pytest.mark.parametrize("law,exponents", FORMS)
def test_sites_and_plates(data, law, exponents):
    tr = _trace(inputs_from_data(data), law, exponents)
    f, r, n = data.n_families, data.n_runs, data.n_obs
    assert tr["theta"]["value"].shape == (f, 2)
    assert tr["e_frac"]["value"].shape == (f,)
    assert np.all(np.asarray(tr["log_E"]["value"]) < np.asarray(inputs_from_data(data).log_e_max))
    assert tr["u"]["value"].shape == (r,)
    assert tr["innovation"]["value"].shape == (n,)
    assert tr["alpha_f"]["value"].shape == (f,)
    assert tr["family"]["type"] == "plate" and tr["family"]["args"][0] == f
    assert tr["run"]["args"][0] == r and tr["obs"]["args"][0] == n
    if law == "overtrain":
        np.testing.assert_allclose(tr["beta_f"]["value"], tr["alpha_f"]["value"])


@pytest.mark.parametrize("law,exponents", FORMS)
def test_log_likelihood_is_the_density_the_model_conditions_on(data, law, exponents):
    inputs = inputs_from_data(data)
    tr = _trace(inputs, law, exponents, seed=3)
    params = {k: tr[k]["value"] for k in ("alpha_f", "beta_f", "sigma_obs", "u", "ell", "nu")}
    params.update(
        log_E=tr["log_E"]["value"],
        a=tr["a"]["value"],
        b=tr["b"]["value"],
        sigma_seed=tr["sigma_seed"]["value"],
    )
    site = tr["innovation"]
    want = float(site["fn"].log_prob(site["value"]).sum())
    assert float(log_likelihood(inputs, params)) == pytest.approx(want, rel=1e-5)


def test_run_effects_sum_to_zero_within_families(data):
    inputs = inputs_from_data(data)
    z = jax.random.normal(jax.random.PRNGKey(0), (data.n_runs,))
    u = np.asarray(centered_run_effects(z, inputs))
    for f in range(data.n_families):
        assert abs(u[data.run_family == f].sum()) < 1e-5
    single = np.asarray(inputs.run_single)
    assert single.sum() == int((data.run_family == 2).sum()) > 0
    assert np.all(u[single] == 0)


def test_simulation_follows_the_law_when_noise_is_off(data):
    inputs = inputs_from_data(data)
    f = data.n_families
    params = {
        "log_E": np.full(f, np.log(0.7)),
        "a": np.full(f, -2.0),
        "b": np.full(f, -2.0),
        "alpha_f": np.full(f, 0.34),
        "beta_f": np.full(f, 0.28),
        "sigma_obs": np.full(f, 1e-9),
        "u": np.zeros(data.n_runs),
        "ell": 0.5,
        "nu": 5.0,
    }
    y = simulate_log_loss(jax.random.PRNGKey(0), inputs, params, np.ones(f))
    n = data.run_params[data.obs_run]
    want = np.log(
        0.7 + np.exp(-2 - 0.34 * np.log(n / 1e9)) + np.exp(-2 - 0.28 * np.log(data.tokens / 1e11))
    )
    np.testing.assert_allclose(np.asarray(y), want, atol=1e-5)


def test_model_rejects_unknown_forms(data):
    with pytest.raises(ValueError, match="exponents must be one of"):
        _trace(inputs_from_data(data), "chinchilla", "free")
    with pytest.raises(ValueError, match="law must be one of"):
        _trace(inputs_from_data(data), "kaplan", "shared")


def test_numpyro_prior_sample_runs_without_observations(data):
    inputs = inputs_from_data(data)
    pred = numpyro.infer.Predictive(scaling_model, num_samples=3)
    out = pred(jax.random.PRNGKey(0), inputs, observe=False)
    assert out["alpha"].shape == (3,) and out["u"].shape == (3, data.n_runs)
