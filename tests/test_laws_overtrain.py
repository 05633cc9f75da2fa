"""Exact checks of the (C, M) over-training law, M* and the downstream laws."""

import jax
import numpy as np
import pytest

from bayescale import laws

RNG = np.random.default_rng(1)
SIZES = 30


def _random_chinchilla(rng, n):
    return dict(
        E=rng.uniform(1.0, 2.5, n),
        A=10 ** rng.uniform(1.5, 3.5, n),
        B=10 ** rng.uniform(1.5, 3.5, n),
        alpha=rng.uniform(0.15, 0.6, n),
    )


def test_overtrain_equals_chinchilla_with_equal_exponents():
    p = _random_chinchilla(RNG, SIZES)
    n = 10 ** RNG.uniform(7, 11, SIZES)
    m = 10 ** RNG.uniform(0, 3, SIZES)
    d = m * n
    want = laws.chinchilla(n, d, p["E"], p["A"], p["B"], p["alpha"], p["alpha"])
    law = laws.from_published(p["E"], p["A"], p["B"], p["alpha"], p["alpha"])
    E, a, b, eta = laws.to_overtrain(law)
    got = laws.overtrain(6.0 * n * d, m, E, a, b, eta)
    np.testing.assert_allclose(got, want, rtol=2e-5)
    np.testing.assert_allclose(eta, p["alpha"] / 2, rtol=1e-6)


def test_overtrain_mapping_by_hand():
    # alpha = 0.5: a = A * 6^0.25, b = B * 6^0.25, eta = 0.25
    E, a, b, eta = laws.to_overtrain(laws.from_published(1.7, 400.0, 900.0, 0.5, 0.5))
    assert (float(E), float(eta)) == pytest.approx((1.7, 0.25), rel=1e-6)
    assert float(a) == pytest.approx(400.0 * 6**0.25, rel=1e-6)
    assert float(b) == pytest.approx(900.0 * 6**0.25, rel=1e-6)


@pytest.mark.parametrize("seed", range(5))
def test_m_star_minimises_loss_at_fixed_compute(seed):
    rng = np.random.default_rng(seed)
    p = {k: float(v[0]) for k, v in _random_chinchilla(rng, 1).items()}
    law = laws.from_published(p["E"], p["A"], p["B"], p["alpha"], p["alpha"])
    # float64 from here: the loss is flat around its minimum
    E, a, b, eta = (float(v) for v in laws.to_overtrain(law))
    m_star = float(laws.optimal_tok_per_param(a, b, eta))
    flops = 10 ** rng.uniform(18, 24)
    grid = np.geomspace(m_star / 50, m_star * 50, 20001)
    loss = np.asarray(laws.overtrain(flops, grid, E, a, b, eta), dtype=float)
    assert grid[np.argmin(loss)] == pytest.approx(m_star, rel=2e-3)
    # dL/dlog M vanishes at M*
    grad = jax.grad(lambda lm: laws.overtrain(flops, jax.numpy.exp(lm), E, a, b, eta))
    assert abs(float(grad(np.log(m_star)))) < 1e-5


def test_m_star_agrees_with_compute_optimal_when_exponents_are_equal():
    A, B, alpha = 410.0, 2085.0, 0.34
    law = laws.from_published(1.8, A, B, alpha, alpha)
    E, a, b, eta = laws.to_overtrain(law)
    m_star = float(laws.optimal_tok_per_param(a, b, eta))
    for flops in (1e20, 1e23):
        n_opt, d_opt = laws.compute_optimal(flops, law)
        assert float(d_opt / n_opt) == pytest.approx(m_star, rel=1e-4)
    assert m_star == pytest.approx((B / A) ** (1 / alpha), rel=1e-5)


def test_downstream_error_by_hand_and_limits():
    got = laws.downstream_error(3.0, 0.85, 2.0, 0.7)
    assert float(got) == pytest.approx(0.85 - 2.0 * np.exp(-2.1), rel=1e-6)
    assert float(laws.downstream_error(1e3, 0.85, 2.0, 0.7)) == pytest.approx(0.85)


def test_saturating_downstream_law_matches_gadre_near_the_ceiling():
    eps, k, gamma = 0.8, 3.0, 1.2
    loss = np.linspace(3.5, 6.0, 50)
    sat = np.asarray(laws.downstream_error_saturating(loss, eps, k, gamma), dtype=float)
    lin = np.asarray(laws.downstream_error(loss, eps, k, gamma), dtype=float)
    drop = k * np.exp(-gamma * loss)
    # eps / (1 + x) - (eps - eps x) = eps x^2 / (1 + x), with x = drop / eps: second order
    np.testing.assert_allclose(sat - lin, drop**2 / (eps + drop), rtol=1e-3, atol=3e-7)
    assert np.all(sat - lin <= 1.1 * drop**2 / eps)
    # never leaves (0, eps), even far below the data, where Gadre's form turns negative
    low = np.asarray(laws.downstream_error_saturating(np.linspace(0.0, 3.0, 50), eps, k, gamma))
    assert np.all((low > 0) & (low < eps))
    assert float(laws.downstream_error(0.0, eps, k, gamma)) < 0


@pytest.fixture(scope="module")
def posteriors():
    from bayescale import testing

    return testing.posterior(draws=100), testing.posterior(law="overtrain", draws=100)


def test_posterior_m_star_is_the_compute_optimal_ratio(posteriors):
    from bayescale.queries import compute_optimal, optimal_tok_per_param

    chinchilla_post, post = posteriors
    df = optimal_tok_per_param(post, ["fam-a", "fam-b"], ci_prob=0.8)
    assert list(df["family"]) == ["fam-a", "fam-b"]
    assert np.all((df["lower"] < df["median"]) & (df["median"] < df["upper"]))
    # by hand from the draws: M* = (B / A)^(1 / alpha) per draw
    alpha = post.draws("alpha_f")[:, 0]
    np.testing.assert_allclose(post.draws("beta_f")[:, 0], alpha)
    big_a = np.exp(post.draws("a")[:, 0] + alpha * laws.LOG_N_REF)
    big_b = np.exp(post.draws("b")[:, 0] + alpha * laws.LOG_D_REF)
    m = (big_b / big_a) ** (1 / alpha)
    assert df["median"].iloc[0] == pytest.approx(np.median(m), rel=1e-4)
    assert df["lower"].iloc[0] == pytest.approx(np.quantile(m, 0.1), rel=1e-4)
    # with alpha = beta the compute-optimal D*/N* is the same at every budget
    for flops in (1e20, 1e24):
        co = compute_optimal(post, flops, family="fam-a")
        assert co["tokens_per_param"].iloc[0] == pytest.approx(df["median"].iloc[0], rel=1e-3)
    with pytest.raises(ValueError, match="law='overtrain'"):
        optimal_tok_per_param(chinchilla_post, "fam-a")
