"""Family groups: the ``group`` column, the group level of the model, and what uses it."""

import warnings

import jax
import numpy as np
import pandas as pd
import pytest
from numpyro import handlers

from bayescale import testing
from bayescale.centring import centred_exponents, centred_groups, group_coords
from bayescale.data import ScalingData
from bayescale.model import GROUP_COEFS, Priors, scaling_model
from bayescale.options import EXPONENT_FORMS, LAWS
from bayescale.tables import DataError

FAMILIES = ("a1", "a2", "b1")


def grouped_frame():
    df = testing.synthetic_frame(families=FAMILIES, sizes=(1e8, 1e9), n_ckpt=4)
    return df.assign(group=df["family"].str[0])


@pytest.fixture(scope="module")
def data():
    return ScalingData.from_frame(grouped_frame(), min_tokens=None)


def test_group_column_labels_each_family(data):
    assert data.family_group == ("a", "a", "b")
    assert data.groups == ("a", "b")
    inputs = data.inputs()
    np.testing.assert_array_equal(inputs.family_group, [0, 0, 1])
    assert inputs.n_groups == 2
    assert "group" in data.to_frame().columns
    without = ScalingData.from_frame(grouped_frame().drop(columns="group"), min_tokens=None)
    assert without.family_group is None and without.inputs().family_group is None
    assert without.hash() != data.hash()


def test_a_family_in_two_groups_is_refused():
    df = grouped_frame()
    df.loc[df.index[0], "group"] = "b"
    with pytest.raises(DataError, match="family 'a1' several groups"):
        ScalingData.from_frame(df, min_tokens=None)


def test_missing_group_labels_are_refused():
    df = grouped_frame()
    df.loc[df.index[2], "group"] = None
    with pytest.raises(DataError, match="column 'group' has missing labels at rows \\[2\\]"):
        ScalingData.from_frame(df, min_tokens=None)


@pytest.mark.parametrize(
    "labels,why", [(["x", "x", "x"], "one group"), (["x", "y", "z"], "a group each")]
)
def test_a_column_that_groups_nothing_is_ignored_with_a_warning(labels, why):
    df = grouped_frame()
    df["group"] = df["family"].map(dict(zip(FAMILIES, labels, strict=True)))
    with pytest.warns(UserWarning, match=f"column 'group' is ignored.*{why}"):
        d = ScalingData.from_frame(df, min_tokens=None)
    assert d.family_group is None


def test_families_alone_in_their_group_form_one_group():
    from bayescale.data import LONE_GROUP

    fams = ("a1", "a2", "b1", "c1", "d1")
    df = testing.synthetic_frame(families=fams, sizes=(1e8, 1e9), n_ckpt=3)
    d = ScalingData.from_frame(df.assign(group=df["family"].str[0]), min_tokens=None)
    assert d.family_group == ("a", "a", LONE_GROUP, LONE_GROUP, LONE_GROUP)
    assert d.inputs().n_groups == 2


def _trace(inputs, law, exponents, seed=0):
    model = handlers.seed(scaling_model, jax.random.PRNGKey(seed))
    return handlers.trace(model).get_trace(inputs, law=law, exponents=exponents)


@pytest.mark.parametrize("law", LAWS)
@pytest.mark.parametrize("exponents", EXPONENT_FORMS)
def test_families_are_drawn_around_their_groups_shift(data, law, exponents):
    tr = _trace(data.inputs(), law, exponents)
    g = data.inputs().family_group
    effect = np.asarray(tr["group_effect"]["value"])
    assert effect.shape == (2, len(GROUP_COEFS))
    assert tr["group"]["type"] == "plate" and tr["group"]["args"][0] == 2
    sigma = np.asarray(tr["sigma_group"]["value"])
    np.testing.assert_allclose(effect, sigma * np.asarray(tr["z_group"]["value"]))  # groups of < 3
    # the offsets' prior mean, the population mean integrated out (bayescale.pooling)
    offsets = tr["coords"]["fn"].offsets
    np.testing.assert_allclose(offsets.loc, Priors().ab_loc + effect[g, :2], rtol=1e-6)
    if exponents == "pooled":
        by_exponent = centred_exponents(data.inputs())
        pairs = [("alpha", 2)] + ([("beta", 3)] if law == "chinchilla" else [])
        for name, col in pairs:
            centred = by_exponent[:, col - 2] if law == "chinchilla" else by_exponent.any(axis=1)
            loc = np.log(float(tr[name]["value"])) + effect[g, col]
            z, tau = tr[f"z_{name}"]["value"], tr[f"tau_{name}"]["value"]
            expected = np.where(centred, z, loc + tau * z)
            np.testing.assert_allclose(np.log(tr[f"{name}_f"]["value"]), expected, rtol=1e-5)
            np.testing.assert_allclose(
                tr[f"z_{name}"]["fn"].loc, np.where(centred, loc, 0.0), rtol=1e-6, atol=1e-7
            )


def test_groups_of_three_or_more_families_are_sampled_centred():
    df = testing.synthetic_frame(families=("a1", "a2", "a3", "b1"), sizes=(1e8, 1e9), n_ckpt=4)
    d = ScalingData.from_frame(df.assign(group=df["family"].str[0]), min_tokens=None)
    inputs = d.inputs()
    centred = centred_groups(inputs)
    np.testing.assert_array_equal(centred, [True, False])
    tr = _trace(inputs, "chinchilla", "pooled", seed=3)
    z = np.asarray(tr["z_group"]["value"])
    sigma = np.asarray(tr["sigma_group"]["value"])
    effect = np.asarray(tr["group_effect"]["value"])
    np.testing.assert_allclose(effect[0], z[0])
    np.testing.assert_allclose(effect[1], sigma * z[1], rtol=1e-6)
    # the centred shift is drawn with the group scale, the standardised one with 1
    scale = np.broadcast_to(tr["z_group"]["fn"].base_dist.scale, z.shape)
    np.testing.assert_allclose(scale, [sigma, np.ones(len(GROUP_COEFS))], rtol=1e-6)
    # chain starts map shifts back to these coordinates
    np.testing.assert_allclose(group_coords(effect, sigma, centred), z, rtol=1e-5, atol=1e-7)


@pytest.mark.heavy
def test_a_fit_with_groups_starts_and_samples_both_kinds_of_group():
    from bayescale import fit

    df = testing.synthetic_frame(families=("a1", "a2", "a3", "b1"), sizes=(1e8, 1e9), n_ckpt=4)
    df["group"] = df["family"].str[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        post = fit(df, num_chains=2, num_warmup=30, num_samples=20, progress_bar=False)
    z, sigma = post.draws("z_group"), post.draws("sigma_group")
    effect = post.draws("group_effect")
    assert effect.shape == (40, 2, len(GROUP_COEFS)) and np.isfinite(effect).all()
    np.testing.assert_allclose(effect[:, 0], z[:, 0], rtol=1e-5)
    np.testing.assert_allclose(effect[:, 1], sigma * z[:, 1], rtol=1e-5)


def test_no_group_sites_without_groups():
    d = ScalingData.from_frame(grouped_frame().drop(columns="group"), min_tokens=None)
    tr = _trace(d.inputs(), "chinchilla", "pooled")
    assert not {"sigma_group", "z_group", "group_effect", "group"} & set(tr)


def _hand_posterior(data, sigma_group, k=None):
    """A posterior with every family law at the population mean and given group spread."""
    from bayescale.model import GROUP_COEFS

    s, f, k = 400, data.n_families, k or len(GROUP_COEFS)
    ones = np.ones((1, s))
    draws = {
        "alpha": 0.3 * ones,
        "beta": 0.3 * ones,
        "tau_alpha": 0.05 * ones,
        "tau_beta": 0.05 * ones,
        "mu_theta": np.full((1, s, 2), np.log(0.2)),
        "sigma_theta": np.full((1, s, 2), 0.1),
        "L_omega": np.broadcast_to(np.eye(2), (1, s, 2, 2)).copy(),
        "e_mu": 0.6 * ones,
        "e_kappa": 10.0 * ones,
        "e_frac": np.full((1, s, f), 0.6),
        "log_E": np.full((1, s, f), -0.5),
        "a": np.full((1, s, f), np.log(0.2)),
        "b": np.full((1, s, f), np.log(0.2)),
        "alpha_f": np.full((1, s, f), 0.3),
        "beta_f": np.full((1, s, f), 0.3),
        "sigma_obs": np.full((1, s, f), 0.01),
        "sigma_seed": 0.01 * ones,
        "ell": 0.5 * ones,
        "nu": 5.0 * ones,
        "u": np.zeros((1, s, data.n_runs)),
        "sigma_group": np.full((1, s, k), sigma_group),
        "z_group": np.zeros((1, s, 2, k)),
        "group_effect": np.zeros((1, s, 2, k)),
    }
    from bayescale.posterior import Posterior

    return Posterior.from_draws(draws, data)


def test_an_unseen_family_is_drawn_from_a_new_group(data):
    """Its coefficient spread is the family spread plus the group spread, in quadrature."""
    sds = []
    for sigma_group in (1e-6, 0.3):
        post = _hand_posterior(data, sigma_group)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            law = post.law("new-family", seed=1)
        sds.append(np.std(np.asarray(law.a)))
    assert sds[0] == pytest.approx(0.1, rel=0.15)
    assert sds[1] == pytest.approx(np.hypot(0.1, 0.3), rel=0.15)


def test_an_unseen_familys_e_share_is_drawn_around_a_new_groups_mean(data):
    """A new group's shift moves the mean of E's share (e_mu 0.6, e_kappa 10) on its log-odds."""
    rng = np.random.default_rng(2)
    iqrs = []
    for sigma_group in (1e-6, 1.0):
        post = _hand_posterior(data, sigma_group)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            law = post.law("new-family", seed=1)
        log_odds = np.asarray(law.log_E) - np.logaddexp(np.asarray(law.a), np.asarray(law.b))
        # brute-force reference: the share drawn as the model states it
        shift = sigma_group * rng.standard_normal(50_000)
        mean = 1.0 / (1.0 + np.exp(-(np.log(0.6 / 0.4) + shift)))
        share = rng.beta(10.0 * mean, 10.0 * (1.0 - mean))
        ref = np.log(share) - np.log1p(-share)
        # interquartile ranges: the log-odds of a Beta with a small shape have long tails
        iqr = np.subtract(*np.percentile(log_odds, [75, 25]))
        assert iqr == pytest.approx(np.subtract(*np.percentile(ref, [75, 25])), rel=0.12)
        iqrs.append(iqr)
    assert iqrs[1] > 1.5 * iqrs[0]


def test_a_grouped_fit_from_before_groups_shifted_e_is_refused(data, tmp_path, monkeypatch):
    from bayescale import posterior
    from bayescale.fitfile import FitFileError

    with monkeypatch.context() as m:
        m.setattr(posterior, "GROUP_COEFS", posterior.GROUP_COEFS[:4])
        old = _hand_posterior(data, 0.2, k=4)
        old.save(tmp_path / "old.nc")
    with pytest.raises(
        FitFileError, match=r"group_coef are \['a', 'b', 'log_alpha', 'log_beta'\]; this version's"
    ):
        posterior.load(tmp_path / "old.nc")


def test_groups_survive_save_and_load(data, tmp_path):
    from bayescale.posterior import load

    post = _hand_posterior(data, 0.2)
    path = tmp_path / "fit.nc"
    post.save(path)
    back = load(path)
    assert back.data.family_group == data.family_group
    assert back.data.hash() == data.hash()
    assert back.tree["posterior"]["group_effect"].dims[-2:] == ("group", "group_coef")
    assert list(back.tree["posterior"].coords["group"].values) == ["a", "b"]


@pytest.mark.heavy
def test_a_one_run_family_borrows_its_size_slope_from_its_group():
    """Group ``steep`` has a much larger size term than group ``flat``: a family of
    ``steep`` seen at one size is predicted with the steep slope when the groups are
    given, and with the population's average slope without them."""
    from bayescale import fit

    rng = np.random.default_rng(0)
    rows = []
    specs = {"s1": 3.0, "s2": 3.3, "s3": 2.7, "f1": 0.3, "f2": 0.33, "f3": 0.27, "new": 3.0}
    for fam, big_a in specs.items():
        sizes = (1e9,) if fam == "new" else (1e8, 3e8, 1e9, 3e9)
        for n in sizes:
            tokens = np.geomspace(1e10, 1e11, 5)
            loss = 1.7 + big_a * (n / 1e9) ** -0.34 * 0.1 + 400 * tokens**-0.28
            loss = loss * np.exp(rng.normal(0, 0.002, tokens.size))
            rows += [
                {"family": fam, "run": f"{fam}-{n:.0e}", "params": n, "tokens": t, "loss": v}
                for t, v in zip(tokens, loss, strict=True)
            ]
    df = pd.DataFrame(rows)
    # "new" belongs with the steep families
    df["group"] = np.where(df["family"].str.startswith("f"), "flat", "steep")
    truth = 1.7 + 3.0 * 30.0**-0.34 * 0.1 + 400 * 1e11**-0.28
    errs = {}
    for name, frame in {"groups": df, "none": df.drop(columns="group")}.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            post = fit(frame, num_warmup=300, num_samples=200, seed=0, progress_bar=False)
        pred = post.predict("new", 3e10, 1e11)
        errs[name] = float(pred["median"].iloc[0] / truth - 1)
        if name == "groups":
            q = pred[["lower", "upper"]].iloc[0]
            assert q["lower"] <= truth <= q["upper"]
    assert abs(errs["groups"]) < 0.5 * abs(errs["none"])


def test_new_runs_of_a_planned_experiment_join_their_familys_group(data):
    """A refit on the data plus an experiment's runs keeps every family in its group."""
    from bayescale.design import family_design, new_runs_frame

    post = _hand_posterior(data, 0.2)
    cand = {"params": 2e9, "tokens": 4e10, "n_runs": 2}
    n_ckpt = family_design(post, "b1").checkpoints(4e10).size
    rows = new_runs_frame(post, "b1", cand, np.full((2, n_ckpt), 3.0))
    assert set(rows["group"]) == {"b"}
    both = ScalingData.from_frame(
        pd.concat([data.to_frame(), rows], ignore_index=True), min_tokens=None
    )
    assert both.family_group == data.family_group


def test_spread_priors_are_the_models_gamma2_spreads(data):
    """The MAP spread check reads prior means from ``spread_priors``: they must be the model's."""
    import jax
    import numpyro.distributions as dist
    from numpyro import handlers

    from bayescale.model import Priors, scaling_model, spread_priors

    priors = Priors(offset_sd=(0.4, 0.7), exponent_spread=0.2, group_spread=(0.5, 0.6, 0.1, 0.3))
    model = handlers.seed(scaling_model, jax.random.PRNGKey(0))
    tr = handlers.trace(model).get_trace(data.inputs(), priors=priors)
    spreads = spread_priors(priors)
    assert set(spreads) <= set(tr)
    for name, mean in spreads.items():
        fn = tr[name]["fn"]
        base = fn.base_dist if isinstance(fn, dist.Independent) else fn
        assert isinstance(base, dist.Gamma), name
        np.testing.assert_allclose(base.concentration, 2.0)
        np.testing.assert_allclose(base.mean, np.broadcast_to(mean, np.shape(base.mean)))
