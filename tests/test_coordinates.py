"""Family coordinates centred on the data: an exact change of variables of the prior."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.infer import MCMC, NUTS
from scipy import stats

from bayescale.coordinates import COORDS, FamilyCoords, family_centres, from_law, to_law
from bayescale.pooling import PooledOffsets

LOG_E_MAX = np.log(np.array([0.8, 1.3]))
CENTRE = np.array([[-1.5, 0.4], [2.0, -1.0]])
ALPHA, BETA = np.array([0.3, 0.45]), np.array([0.25, 0.35])


def _coords():
    # the first family's law value below its E bound, the second's above it
    return jnp.array([[-0.5, 0.3, 1.0], [0.2, -1.2, -0.4]])


def test_the_map_round_trips():
    c = _coords()
    e_frac, theta, _ = to_law(c, LOG_E_MAX, CENTRE, ALPHA, BETA)
    assert np.all((e_frac > 0) & (e_frac < 1))
    np.testing.assert_allclose(
        from_law(e_frac, theta, LOG_E_MAX, CENTRE, ALPHA, BETA), c, atol=1e-5
    )


def test_level_is_the_law_at_the_centre():
    e_frac, theta, _ = to_law(_coords(), LOG_E_MAX, CENTRE, ALPHA, BETA)
    law = (
        e_frac * np.exp(LOG_E_MAX)
        + np.exp(theta[:, 0] - ALPHA * CENTRE[:, 0])
        + np.exp(theta[:, 1] - BETA * CENTRE[:, 1])
    )
    np.testing.assert_allclose(np.log(law), _coords()[:, 0], rtol=1e-5)


@pytest.mark.parametrize("f", [0, 1])
def test_log_jacobian_against_autodiff(f):
    def one(v):
        e_frac, theta, _ = to_law(
            v[None], LOG_E_MAX[f : f + 1], CENTRE[f : f + 1], ALPHA[f], BETA[f]
        )
        return jnp.concatenate([e_frac, theta[0]])

    v = _coords()[f]
    want = np.linalg.slogdet(np.asarray(jax.jacfwd(one)(v), dtype=float))[1]
    got = to_law(v[None], LOG_E_MAX[f : f + 1], CENTRE[f : f + 1], ALPHA[f], BETA[f])[2]
    np.testing.assert_allclose(float(got[0]), want, rtol=1e-4)


def _prior():
    offsets = PooledOffsets(np.array([-1.6, -1.6]), np.zeros((2, 2)), 1.5, 0.6 * np.eye(2))
    return FamilyCoords(dist.Beta(3.0, 2.0), offsets, LOG_E_MAX, CENTRE, ALPHA, BETA)


def test_density_is_the_priors_times_the_jacobian():
    d, c = _prior(), _coords()
    e_frac, theta, log_jac = to_law(c, LOG_E_MAX, CENTRE, ALPHA, BETA)
    want = d.e_prior.log_prob(e_frac).sum() + d.offsets.log_prob(theta) + log_jac.sum()
    np.testing.assert_allclose(float(d.log_prob(c)), float(want), rtol=1e-6)
    assert d.event_shape == (2, len(COORDS))


def _reference_e_term(c, f):
    """Float64 brute force: E's Beta log density plus the log Jacobian of family ``f``."""
    level, e_logit = float(c[f, 0]), float(c[f, 1])
    share = 1.0 / (1.0 + np.exp(-e_logit))
    total, e_max = np.exp(level), np.exp(LOG_E_MAX[f])
    cap = min(total, e_max)
    e_frac = cap * share / e_max
    rest = total - cap * share
    if total < e_max:
        log_jac = np.log(e_frac)
    else:
        log_jac = np.log(share) + np.log1p(-share) + level - np.log(rest)
    return stats.beta(3, 2).logpdf(e_frac) + log_jac


@pytest.mark.parametrize("e_logit", [4.0, 12.0, 25.0])
def test_density_stays_finite_and_exact_where_e_presses_on_its_bound(e_logit):
    """Near the bound ``sigmoid(e_logit)`` rounds to 1 in float32; the density must not."""
    d = _prior()
    # the second family's law value above its E bound: there e_frac -> 1
    c = _coords().at[:, 1].set(e_logit).at[1, 0].set(0.5)
    _, theta, _ = to_law(c, LOG_E_MAX, CENTRE, ALPHA, BETA)
    want = float(d.offsets.log_prob(theta)) + sum(_reference_e_term(c, f) for f in range(2))
    np.testing.assert_allclose(float(d.log_prob(c)), want, rtol=1e-5)
    grad = jax.grad(lambda v: d.log_prob(v))(c)
    assert np.all(np.isfinite(np.asarray(grad)))
    # the Beta(3, 2) tail times the Jacobian s (1 - s): d/d(e_logit) of 3 log s + 2 log(1 - s)
    if e_logit > 20:
        np.testing.assert_allclose(float(grad[1, 1]), -2.0, atol=1e-3)


def test_nuts_on_the_coordinates_draws_the_prior_on_e_and_the_offsets():
    """Sampling the density (NUTS) and mapping back gives Beta and PooledOffsets draws."""
    d = _prior()

    def model():
        numpyro.sample("c", d)

    mcmc = MCMC(NUTS(model), num_warmup=500, num_samples=2000, progress_bar=False)
    mcmc.run(jax.random.PRNGKey(0))
    e_frac, theta, _ = to_law(mcmc.get_samples()["c"], LOG_E_MAX, CENTRE, ALPHA, BETA)
    direct = d.offsets.sample(jax.random.PRNGKey(1), (2000,))
    for f in range(2):
        # thinned: NUTS draws are correlated, KS assumes independent ones
        assert stats.kstest(np.asarray(e_frac[::2, f]), stats.beta(3, 2).cdf).pvalue > 0.001
        for k in range(2):
            got, ref = np.asarray(theta[::2, f, k]), np.asarray(direct[:, f, k])
            assert stats.ks_2samp(got, ref).pvalue > 0.001, (f, k)
    # and the distribution's own sampler inverts the map
    c = d.sample(jax.random.PRNGKey(2), (2000,))
    e2, _, _ = to_law(c, LOG_E_MAX, CENTRE, ALPHA, BETA)
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
