"""Family coordinates centred on the data: an exact change of variables of the prior."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.infer import MCMC, NUTS
from scipy import stats
from scipy.special import expit

from bayescale.coordinates import (
    COORDS,
    FamilyCoords,
    beta_log_odds,
    e_share_logs,
    family_centres,
    from_law,
    to_law,
)
from bayescale.pooling import PooledOffsets

CENTRE = np.array([[-1.5, 0.4], [2.0, -1.0]])
ALPHA, BETA = np.array([0.3, 0.45]), np.array([0.25, 0.35])


def _coords():
    return jnp.array([[-0.5, 0.3, 1.0], [0.2, -1.2, -0.4]])


def _share(c):
    log_e, theta = to_law(c, CENTRE, ALPHA, BETA)
    return np.exp(e_share_logs(log_e, theta)[0]), theta


def test_the_map_round_trips():
    c = _coords()
    e_frac, theta = _share(c)
    assert np.all((e_frac > 0) & (e_frac < 1))
    np.testing.assert_allclose(from_law(e_frac, theta, CENTRE, ALPHA, BETA), c, atol=1e-5)


def test_level_is_the_law_at_the_centre_and_e_frac_its_share_at_the_reference():
    log_e, theta = to_law(_coords(), CENTRE, ALPHA, BETA)
    e = np.exp(log_e)
    law = e + np.exp(theta[:, 0] - ALPHA * CENTRE[:, 0]) + np.exp(theta[:, 1] - BETA * CENTRE[:, 1])
    np.testing.assert_allclose(np.log(law), _coords()[:, 0], rtol=1e-5)
    at_reference = e + np.exp(theta[:, 0]) + np.exp(theta[:, 1])
    np.testing.assert_allclose(_share(_coords())[0], e / at_reference, rtol=1e-5)


@pytest.mark.parametrize("f", [0, 1])
def test_log_jacobian_against_autodiff(f):
    """The density's E term is Beta(c1, c0) of the share times |d(share, a, b) / d coords|."""

    def share_and_theta(v):
        log_e, theta = to_law(v[None], CENTRE[f : f + 1], ALPHA[f], BETA[f])
        return jnp.concatenate([jnp.exp(e_share_logs(log_e, theta)[0]), theta[0]])

    v = _coords()[f]
    log_jac = np.linalg.slogdet(np.asarray(jax.jacfwd(share_and_theta)(v), dtype=float))[1]
    e_frac = float(share_and_theta(v)[0])
    np.testing.assert_allclose(log_jac, np.log(e_frac) + np.log1p(-e_frac), rtol=1e-4)


def _prior():
    offsets = PooledOffsets(np.array([-1.6, -1.6]), np.zeros((2, 2)), 1.5, 0.6 * np.eye(2))
    return FamilyCoords(dist.Beta(3.0, 2.0), offsets, CENTRE, ALPHA, BETA)


@pytest.mark.parametrize("column", [1, 2])
@pytest.mark.parametrize("logit", [0.3, 12.0, 25.0, -25.0])
def test_density_is_the_priors_times_the_jacobian_and_stays_finite_at_the_edges(logit, column):
    """Float64 brute force; at |logit| > 17 a share rounds to 0 or 1 in float32."""
    d = _prior()
    c = _coords().at[:, column].set(logit)
    log_e, theta = to_law(c, CENTRE, ALPHA, BETA)
    want = float(d.offsets.log_prob(theta))
    for f in range(2):
        e, rest = np.exp(float(log_e[f])), np.exp(np.asarray(theta[f], dtype=float)).sum()
        share = e / (e + rest)
        jac = np.log(e) - np.log(e + rest) + np.log(rest) - np.log(e + rest)
        if 0 < share < 1:
            want += stats.beta(3, 2).logpdf(share) + jac
        else:
            want += 3 * (np.log(e) - np.logaddexp(np.log(e), np.log(rest)))
            want += 2 * (np.log(rest) - np.logaddexp(np.log(e), np.log(rest)))
            want -= float(jax.scipy.special.betaln(3.0, 2.0))
    np.testing.assert_allclose(float(d.log_prob(c)), want, rtol=1e-5)
    assert d.event_shape == (2, len(COORDS))
    grad = jax.grad(lambda v: d.log_prob(v))(c)
    assert np.all(np.isfinite(np.asarray(grad)))


def test_nuts_on_the_coordinates_draws_the_prior_on_e_and_the_offsets():
    """Sampling the density (NUTS) and mapping back gives Beta and PooledOffsets draws."""
    d = _prior()

    def model():
        numpyro.sample("c", d)

    mcmc = MCMC(NUTS(model), num_warmup=500, num_samples=2000, progress_bar=False)
    mcmc.run(jax.random.PRNGKey(0))
    e_frac, theta = _share(mcmc.get_samples()["c"])
    direct = d.offsets.sample(jax.random.PRNGKey(1), (2000,))
    for f in range(2):
        # thinned: NUTS draws are correlated, KS assumes independent ones
        assert stats.kstest(np.asarray(e_frac[::2, f]), stats.beta(3, 2).cdf).pvalue > 0.001
        for k in range(2):
            got, ref = np.asarray(theta[::2, f, k]), np.asarray(direct[:, f, k])
            assert stats.ks_2samp(got, ref).pvalue > 0.001, (f, k)
    # and the distribution's own sampler inverts the map
    e2, _ = _share(d.sample(jax.random.PRNGKey(2), (2000,)))
    assert stats.kstest(np.asarray(e2[:, 0]), stats.beta(3, 2).cdf).pvalue > 0.001


def test_centres_are_each_familys_mean_log_size_and_tokens():
    class Inputs:
        n_families = 2
        run_family = np.array([0, 0, 1])
        log_n = np.log(np.array([1e8, 1e10, 1e9]))
        obs_run = np.array([0, 0, 1, 2])
        log_d = np.log(np.array([1e10, 1e12, 1e11, 1e13]))
        log_area = None

    np.testing.assert_allclose(
        family_centres(Inputs()), [[0.0, 0.0], [0.0, np.log(100.0)]], atol=1e-9
    )


@pytest.mark.parametrize("c1, c0", [(3.0, 2.0), (0.495, 0.005), (0.02, 0.6)])
def test_beta_log_odds_follow_the_beta_and_stay_finite_where_beta_draws_round(c1, c0):
    # at the small shapes numpy's own Beta draws are exactly 1 (or 0) most of the time
    x = beta_log_odds(np.random.default_rng(0), np.full(4000, c1), np.full(4000, c0))
    assert np.isfinite(x).all()
    # P(log odds <= x) = P(p <= expit(x)) = P(1 - p >= expit(-x)); each form is exact on
    # the side where its argument does not round to 1
    u = np.where(x < 0, stats.beta.cdf(expit(x), c1, c0), stats.beta.sf(expit(-x), c0, c1))
    assert stats.kstest(u, "uniform").pvalue > 1e-3
