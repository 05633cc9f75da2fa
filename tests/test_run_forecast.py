"""Forecasting a run in progress: the OU continuation against its exact Gaussian law.

The posterior is built by hand (every draw the same), so that with near-Gaussian
innovations the forecast of the log loss at later tokens has a known mean and
covariance: ``law + u + sigma * rho^k z_last`` and ``sigma^2 (1 - rho^2k)``-type
terms of the OU process started at the run's last fitted deviation.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from bayescale import laws
from bayescale.data import ScalingData
from bayescale.fitting import FitConfig
from bayescale.posterior import Posterior
from bayescale.queries import continue_run_draws

LAW = laws.LawParams(math.log(0.7), math.log(0.12), math.log(0.12), 0.34, 0.28)
TOKENS = np.geomspace(1e10, 4e10, 6)
S = 20000
SIGMA, ELL, U = 0.02, 0.8, 0.015


def _posterior(nu: float = 1e6, planned=None) -> tuple[Posterior, ScalingData]:
    rows = []
    for n, run in ((1e8, "small"), (3e8, "live")):
        for i, t in enumerate(TOKENS):
            loss = 2.5 * float(laws.loss(LAW, n, t)) * math.exp(0.03 if run == "live" else 0.0)
            rows.append(("fam", run, n, t, loss * (1 + 0.001 * i)))
    df = pd.DataFrame(rows, columns=["family", "run", "params", "tokens", "loss"])
    if planned is not None:
        df["planned_tokens"] = df["run"].map(planned)
    data = ScalingData.from_frame(df, min_tokens=None, max_points_per_run=None)
    rel = math.log(data.family_scale[0])
    live = data.runs.index("live")
    u = np.zeros((S, data.n_runs))
    u[:, live] = U
    samples = {
        "log_E": np.full((S, 1), LAW.log_E + math.log(2.5) - rel),
        "a": np.full((S, 1), LAW.a + math.log(2.5) - rel),
        "b": np.full((S, 1), LAW.b + math.log(2.5) - rel),
        "alpha_f": np.full((S, 1), LAW.alpha),
        "beta_f": np.full((S, 1), LAW.beta),
        "sigma_obs": np.full((S, 1), SIGMA),
        "u": u,
        "sigma_seed": np.full(S, 0.02),
        "ell": np.full(S, ELL),
        "nu": np.full(S, nu),
        "alpha": np.full(S, LAW.alpha),
        "beta": np.full(S, LAW.beta),
    }
    samples = {k: v[None] for k, v in samples.items()}
    config = FitConfig(exponents="shared", min_tokens=None, max_points_per_run=None)
    post = Posterior.from_draws(samples, data, config)
    post.tree["sample_stats"] = xr.DataTree(
        xr.Dataset({"diverging": (("chain", "draw"), np.zeros((1, S), dtype=bool))})
    )
    return post, data


def test_continuation_matches_the_conditional_ou_law():
    post, data = _posterior()
    query = np.array([8e10, 5e10])  # unsorted on purpose
    d = np.log(continue_run_draws(post, "live", query, seed=1))
    n, last = 3e8, TOKENS[-1]
    mu = np.log(2.5) + np.asarray(laws.log_loss(LAW, math.log(n), np.log(query))) + U
    mu_last = np.log(2.5) + float(laws.log_loss(LAW, math.log(n), math.log(last))) + U
    z_last = (np.log(data.loss[data.obs_run == data.runs.index("live")][-1]) - mu_last) / SIGMA
    rho = np.exp(-np.log(query / last) / ELL)
    np.testing.assert_allclose(d.mean(axis=0), mu + SIGMA * rho * z_last, atol=4e-4)
    # OU covariance from the last checkpoint: sigma^2 (exp(-|ti-tj|/l) - rho_i rho_j)
    lag = np.abs(np.log(query[:, None] / query[None, :]))
    cov = SIGMA**2 * (np.exp(-lag / ELL) - rho[:, None] * rho[None, :])
    np.testing.assert_allclose(np.cov(d.T), cov, rtol=0.05, atol=2e-7)


def test_forecast_widens_with_distance_and_starts_from_the_run():
    post, _ = _posterior(nu=5.0)
    table = post.predict(run="live", tokens=[4.4e10, 1e11, 1e12])
    assert list(table["kind"].unique()) == ["run"] and (table["run"] == "live").all()
    width = (table["upper"] - table["lower"]).to_numpy()
    rel = width / table["median"].to_numpy()
    # the OU deviation forgets the run's state and settles at its stationary spread
    assert rel[1] > 1.5 * rel[0] and rel[2] > 0.98 * rel[1]
    # near the last checkpoint the forecast sits on the run, not on the family law
    fam = post.predict("fam", 3e8, 4.4e10)
    assert (
        table["median"].iloc[0] > fam["upper"].iloc[0]
        or width[0] < (fam["upper"] - fam["lower"]).iloc[0]
    )
    assert table["extrapolation"].iloc[-1] == pytest.approx(1e12 / TOKENS[-1])


def test_bad_run_queries_say_what_to_do():
    post, _ = _posterior()
    with pytest.raises(ValueError, match=r"run 'liv' is not in the fit.*live"):
        post.predict(run="liv", tokens=1e11)
    with pytest.raises(ValueError, match="forecast later tokens"):
        post.predict(run="live", tokens=1e10)
    with pytest.raises(TypeError, match="give only tokens"):
        post.predict("fam", 3e8, run="live")
    with pytest.raises(TypeError, match="needs family, params and tokens"):
        post.predict("fam", 3e8)


def test_cli_forecasts_a_run(tmp_path, capsys):
    import json

    from bayescale.cli import main

    post, _ = _posterior(nu=5.0)
    path = tmp_path / "fit.nc"
    post.save(path)
    assert main(["predict", str(path), "--run", "live", "--tokens", "60B,100B", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["tokens"] for r in rows] == [6e10, 1e11] and rows[0]["kind"] == "run"
    assert main(["predict", str(path), "--run", "live", "--tokens", "100B"]) == 0
    assert "fitted up to 40B tokens" in capsys.readouterr().out
    assert main(["predict", str(path), "--run", "live"]) == 2
    assert "has no planned total" in capsys.readouterr().err
    assert main(["predict", str(path), "--run", "nope", "--tokens", "1T"]) == 2
    assert "not in the fit" in capsys.readouterr().err


def test_a_planned_total_is_where_the_forecast_goes_by_default(tmp_path, capsys):
    from bayescale.cli import main
    from bayescale.posterior import load

    post, data = _posterior(nu=5.0, planned={"small": 4e10, "live": 2e11})
    np.testing.assert_allclose(
        data.run_planned[[data.runs.index(r) for r in ("small", "live")]], [4e10, 2e11]
    )
    by_default = post.predict(run="live", seed=3)
    assert by_default["tokens"].tolist() == [2e11]
    same = post.predict(run="live", tokens=2e11, seed=3)
    assert by_default["median"].iloc[0] == pytest.approx(same["median"].iloc[0], rel=1e-12)
    with pytest.raises(ValueError, match="reached its planned"):
        post.predict(run="small")
    path = tmp_path / "fit.nc"
    post.save(path)
    back = load(path)
    np.testing.assert_array_equal(back.data.run_planned, data.run_planned)
    assert back.data.hash() == data.hash()
    assert main(["predict", str(path), "--run", "live"]) == 0
    assert "200B" in capsys.readouterr().out


def test_planned_tokens_are_checked():
    from bayescale.tables import DataError, validate_frame

    base = pd.DataFrame(
        {
            "family": "f",
            "run": ["a", "a", "b"],
            "params": 1e8,
            "tokens": [1e10, 2e10, 1e10],
            "loss": [3.0, 2.9, 3.1],
        }
    )
    ok = validate_frame(base.assign(planned_tokens=[5e10, 5e10, np.nan]))
    assert ok["planned_tokens"].iloc[0] == 5e10 and np.isnan(ok["planned_tokens"].iloc[2])
    with pytest.raises(DataError, match="changes within run 'a'"):
        validate_frame(base.assign(planned_tokens=[5e10, 6e10, np.nan]))
    with pytest.raises(DataError, match="below the run's logged tokens"):
        validate_frame(base.assign(planned_tokens=[1.5e10, 1.5e10, np.nan]))
    with pytest.raises(DataError, match="planned total tokens"):
        validate_frame(base.assign(planned_tokens=["lots", "lots", np.nan]))
    with pytest.raises(DataError, match=r"finite raw count .* has inf at rows \[0, 1\]"):
        validate_frame(base.assign(planned_tokens=[np.inf, np.inf, np.nan]))


def test_the_warm_up_cut_of_a_run_in_progress_is_relative_to_its_plan():
    tokens = np.geomspace(1e8, 2e9, 10)
    df = pd.DataFrame(
        {
            "family": "f",
            "run": "r",
            "params": 1e8,
            "tokens": tokens,
            "loss": 3.0 - 0.1 * np.arange(10),
        }
    )
    from bayescale.datachecks import IdentifiabilityWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IdentifiabilityWarning)
        kept = ScalingData.from_frame(df, max_points_per_run=None).n_obs
    assert kept == 7  # cut at 10% of the last checkpoint, 2e8
    # planned to run 1e11 tokens: 10% of it is 1e10, past every logged checkpoint but the last
    with pytest.warns(IdentifiabilityWarning, match=r"'r' \(9 of 10\)"):
        planned = ScalingData.from_frame(df.assign(planned_tokens=1e11), max_points_per_run=None)
    assert planned.n_obs == 1
