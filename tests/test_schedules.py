"""Learning-rate schedules: LR area and annealing bonus against brute-force references."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from bayescale.data import ScalingData
from bayescale.laws import D_REF
from bayescale.model import ModelInputs
from bayescale.schedules import AnnealParams, area_at, bonus, drops, features, grid, with_bonus
from bayescale.tables import DataError

STEP = 5e5


def _cosine(steps, peak=3e-4, final=3e-5, total=24000):
    return final + 0.5 * (peak - final) * (1 + np.cos(np.pi * np.minimum(steps, total) / total))


def test_area_is_the_integral_of_the_learning_rate():
    steps = np.arange(2000, 24001, 128.0)
    g = grid(steps * STEP, _cosine(steps), 3e-4)
    # brute force: the LR at every single step, a linear warm-up before the first row
    fine = np.arange(0, 24001, 1.0)
    lr = np.where(fine < steps[0], _cosine(steps[0]) * fine / steps[0], _cosine(fine))
    want = np.concatenate([[0.0], np.cumsum(0.5 * (lr[1:] + lr[:-1]))]) * STEP / 3e-4
    t = np.array([1000.0, 5000.0, 13000.0, 24000.0])
    np.testing.assert_allclose(area_at(g, t * STEP), want[t.astype(int)], rtol=2e-4)
    # past the last row the rate stays at its last value
    later = g.tokens[-1] + 1000 * STEP
    assert area_at(g, later) == pytest.approx(g.area[-1] + g.eta[-1] * 1000 * STEP)


def test_a_constant_rate_gives_the_tokens_and_no_bonus():
    t = np.geomspace(1e9, 1e11, 20)
    g = grid(t, np.full(t.size, 3e-4), 3e-4)
    log_area, drop, eta, after = features(g, t)
    np.testing.assert_allclose(np.exp(log_area), t - t[0] / 2, rtol=1e-12)
    assert not drop.any()
    p = AnnealParams(0.05, 1e3, 0.5, 0.5)
    np.testing.assert_array_equal(np.asarray(bonus(p, drop, eta, after)), 0.0)


def test_bonus_matches_a_loop_and_saturates_at_b_times_the_drop():
    steps = np.array([1000.0, 2000, 3000, 4000, 6000, 50000])
    lr = np.array([1.0, 1.0, 0.5, 0.5, 0.2, 0.2])
    g = grid(steps * STEP, lr, 1.0)
    t = np.array([2500.0, 3000, 5000, 50000]) * STEP
    _, drop, eta, after = features(g, t)
    p = AnnealParams(0.04, 1e5, 0.6, 0.4)
    got = np.asarray(bonus(p, drop, eta, after))
    for i, ti in enumerate(t):
        want = 0.0
        for k in range(1, steps.size):
            if steps[k] * STEP <= ti:
                s_k = area_at(g, ti) - g.area[k]
                x = p.C * g.eta[k] ** (-p.gamma) * s_k / D_REF
                want += p.B * (g.eta[k - 1] - g.eta[k]) * (1 - (1 + x) ** (-p.beta))
        assert got[i] == pytest.approx(want, rel=1e-6, abs=1e-12)
    assert got[0] == 0.0  # no drop yet
    assert got[-1] == pytest.approx(0.04 * 0.8, rel=0.05)  # long after both drops


def test_merged_drops_keep_the_bonus_of_a_long_schedule():
    steps = np.arange(2160, 72001, 128.0)
    g = grid(steps * STEP, _cosine(steps, total=72000), 3e-4)
    t = np.array([5000.0, 30000, 60000, 72000]) * STEP
    p = AnnealParams(0.05, 2e4, 0.4, 0.8)
    merged = np.asarray(bonus(p, *features(g, t)[1:]))
    d, e, a = drops(g, max_bins=10_000)
    assert d.size == steps.size - 1
    after = area_at(g, t)[:, None] - a[None, :]
    seen = after >= 0
    exact = np.asarray(
        bonus(p, np.where(seen, d, 0.0), np.broadcast_to(e, after.shape), np.where(seen, after, 0))
    )
    np.testing.assert_allclose(merged, exact, rtol=0.02, atol=5e-5)


def test_the_bonus_grows_with_size_as_n_to_the_kappa():
    from bayescale.laws import LOG_N_REF, LawParams
    from bayescale.schedules import scheduled_log_loss

    steps = np.arange(1000, 10001, 500.0)
    g = grid(steps * STEP, _cosine(steps, total=10000), 3e-4)
    feats = features(g, steps * STEP)
    law = LawParams(math.log(0.5), math.log(0.2), math.log(0.3), 0.3, 0.3)

    def bonus_at(log_n, kappa):
        p = AnnealParams(0.05, 1e4, 0.5, 0.5, kappa)
        with_ld = np.exp(np.asarray(scheduled_log_loss(law, p, log_n, *feats)))
        return np.exp(np.asarray(scheduled_log_loss(law, None, log_n, *feats))) - with_ld

    ref = bonus_at(LOG_N_REF, 0.0)
    assert ref[-1] > 0.01
    np.testing.assert_allclose(bonus_at(LOG_N_REF, 0.4), ref, rtol=1e-5)
    np.testing.assert_allclose(bonus_at(LOG_N_REF + math.log(4.0), 0.4), 4.0**0.4 * ref, rtol=1e-4)


def test_the_bonus_grows_with_size_only_where_a_family_anneals_at_two_sizes():
    import jax
    from numpyro import handlers

    from bayescale.model import bonus_sizes_vary, scaling_model

    def sites(frame):
        inputs = ScalingData.from_frame(frame, min_tokens=None).inputs()
        model = handlers.seed(scaling_model, jax.random.PRNGKey(0))
        return bonus_sizes_vary(inputs), handlers.trace(model).get_trace(inputs)

    vary, tr = sites(_frame())
    assert vary and np.shape(tr["anneal_kappa"]["value"]) == ()
    # the 1e8 runs at a constant rate: the bonus is seen at one size only
    one = _frame()
    one.loc[one["run"] == "1e+08-cosine", "lr"] = 3e-4
    vary, tr = sites(one)
    assert not vary and "anneal_kappa" not in tr
    assert not bonus_sizes_vary(ScalingData.from_frame(_frame(lr=False), min_tokens=None).inputs())


def test_with_bonus_is_log_of_the_difference_and_capped():
    assert float(with_bonus(math.log(2.0), 0.5)) == pytest.approx(math.log(1.5))
    assert float(with_bonus(math.log(2.0), 5.0)) == pytest.approx(math.log(1.0))


def _frame(lr=True):
    rows = []
    # measured losses scatter: noise-free curves make the posterior degenerate (the noise
    # scale shrinks to 0 while the OU drift follows the curve instead of the law)
    rng = np.random.default_rng(7)
    for n in (1e8, 3e8):
        for kind in ("constant", "cosine"):
            steps = np.arange(1000, 10001, 500.0)
            rate = np.full(steps.size, 3e-4) if kind == "constant" else _cosine(steps, total=10000)
            loss = 3.0 + 2.0 * (steps / 1000) ** -0.3 - 0.1 * (3e-4 - rate) / 3e-4
            loss = loss * np.exp(rng.normal(0.0, 0.002, steps.size))
            for s, r, v in zip(steps, rate, loss, strict=True):
                rows.append(("fam", f"{n:.0e}-{kind}", n, s * STEP, v, r))
    df = pd.DataFrame(rows, columns=["family", "run", "params", "tokens", "loss", "lr"])
    return df if lr else df.drop(columns="lr")


def test_data_with_and_without_schedules():
    plain = ScalingData.from_frame(_frame(lr=False), min_tokens=None)
    assert not plain.has_schedules and plain.inputs().anneal is None
    data = ScalingData.from_frame(_frame(), min_tokens=None)
    assert data.has_schedules and data.lr_ref == 3e-4
    inputs = data.inputs()
    assert isinstance(inputs, ModelInputs)
    # the cosine runs' 18 changes of rate (19 rows); the constant runs have none
    assert inputs.anneal[0].shape == (data.n_obs, 18)
    assert data.hash() != plain.hash()
    # a run without lr in a table with schedules runs on its tokens, with no bonus
    mixed = _frame()
    mixed.loc[mixed["run"] == "1e+08-constant", "lr"] = np.nan
    m = ScalingData.from_frame(mixed, min_tokens=None)
    r = m.runs.index("1e+08-constant")
    rows = m.obs_run == r
    np.testing.assert_allclose(np.exp(m.inputs().log_area[rows]), m.tokens[rows])
    assert not m.inputs().anneal[0][rows].any()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.assign(lr=d["lr"].where(d.index != 3, -1.0)), r"learning rates >= 0"),
        (lambda d: d.assign(lr=d["lr"].astype(object).where(d.index != 3, "fast")), r"'fast'"),
        (lambda d: d.assign(lr=d["lr"].where(d.index != 3)), r"missing for some checkpoints"),
        (lambda d: d.assign(lr=0.0), r"zero everywhere"),
    ],
)
def test_bad_learning_rates_are_refused(change, message):
    with pytest.raises(DataError, match=message):
        ScalingData.from_frame(change(_frame()), min_tokens=None)


def _posterior(data, s=50, anneal_kappa=None, anneal_b=0.3):
    import xarray as xr

    from bayescale.fitting import FitConfig
    from bayescale.posterior import Posterior

    r = data.n_runs
    rng = np.random.default_rng(0)
    draws = {
        "log_E": np.full((s, 1), math.log(0.8)),
        "a": np.full((s, 1), math.log(0.1)),
        "b": np.full((s, 1), math.log(0.1)),
        "alpha_f": np.full((s, 1), 0.3),
        "beta_f": np.full((s, 1), 0.3),
        "sigma_obs": np.full((s, 1), 0.002),
        "u": 0.001 * rng.standard_normal((s, r)),
        "sigma_seed": np.full(s, 0.01),
        "ell": np.full(s, 1.0),
        "nu": np.full(s, 10.0),
        "alpha": np.full(s, 0.3),
        "beta": np.full(s, 0.3),
        "anneal_B": np.full((s, 1), anneal_b),
        "anneal_C": np.full(s, 1e4),
        "anneal_beta": np.full(s, 0.5),
        "anneal_gamma": np.full(s, 0.5),
    }
    if anneal_kappa is not None:
        draws["anneal_kappa"] = np.full(s, anneal_kappa)
    post = Posterior.from_draws({k: v[None] for k, v in draws.items()}, data, FitConfig())
    post.tree["sample_stats"] = xr.DataTree(
        xr.Dataset({"diverging": (("chain", "draw"), np.zeros((1, s), dtype=bool))})
    )
    return post


def test_fit_files_keep_the_schedules_and_predictions_use_them(tmp_path):
    from bayescale import load

    data = ScalingData.from_frame(_frame(), min_tokens=None)
    post = _posterior(data)
    steps = np.arange(1000, 10001, 500.0)
    cosine = pd.DataFrame({"tokens": steps * STEP, "lr": _cosine(steps, total=10000)})
    constant = cosine.assign(lr=3e-4)
    end = [steps[-1] * STEP]
    cos = post.predict("fam", 3e8, end, schedule=cosine)["median"].iloc[0]
    const = post.predict("fam", 3e8, end, schedule=constant)["median"].iloc[0]
    plain = post.predict("fam", 3e8, end)["median"].iloc[0]
    # annealing: below the constant schedule at the end; a constant schedule is the plain
    # law, but for the warm-up assumed before its first row (half of 1000 of 10000 steps)
    assert cos < 0.99 * const and const == pytest.approx(plain, rel=5e-3) and const > plain
    path = tmp_path / "sched.nc"
    post.save(path)
    back = load(path)
    assert back.data.has_schedules and back.data.hash() == data.hash()
    again = back.predict("fam", 3e8, end, schedule=cosine)["median"].iloc[0]
    assert again == pytest.approx(cos, rel=1e-12)
    with pytest.raises(ValueError, match="columns 'tokens' and 'lr'"):
        post.predict("fam", 3e8, end, schedule={"step": [1]})
    # a fit where the bonus grows with size: predictions scale it by (N / 1e9)^kappa
    # (a small bonus, far from the cap of half the loss)
    none, flat = _posterior(data, anneal_b=0.0), _posterior(data, anneal_b=0.03)
    grown = _posterior(data, anneal_kappa=0.5, anneal_b=0.03)
    for n in (1e8, 3e8):
        c = [
            p.predict("fam", n, end, schedule=cosine)["median"].iloc[0] for p in (none, flat, grown)
        ]
        assert c[0] - c[1] > 0.01
        assert (c[0] - c[2]) / (c[0] - c[1]) == pytest.approx((n / 1e9) ** 0.5, rel=1e-3)
    plain_post = _posterior(ScalingData.from_frame(_frame(lr=False), min_tokens=None))
    with pytest.raises(ValueError, match="no learning-rate schedules"):
        plain_post.predict("fam", 3e8, end, schedule=cosine)


def test_a_fit_with_schedules_learns_the_annealing_bonus():
    from bayescale import fit

    post = fit(_frame(), method="map", map_starts=2, min_tokens=None, seed=0, progress_bar=False)
    assert "anneal_B" in post.tree["posterior"]
    # the simulated cosine runs sit up to 0.1 nats (about 2% of the loss) below constant ones
    assert float(post.draws("anneal_B")[0, 0]) > 0.005
    steps = np.arange(1000, 10001, 500.0)
    cosine = pd.DataFrame({"tokens": steps * STEP, "lr": _cosine(steps, total=10000)})
    pred = post.predict("fam", 3e8, steps * STEP, schedule=cosine)["median"].to_numpy()
    truth = _frame().query("run == '3e+08-cosine'")["loss"].to_numpy()
    # the simulated curves are not of the model's exact form: within 2%
    np.testing.assert_allclose(pred, truth, rtol=0.02)
    # the bonus itself: the cosine run ends below a constant-rate run of the same size by
    # about what the simulation says (0.09 nats); the family's level is a separate matter
    constant = post.predict("fam", 3e8, steps[-1] * STEP)["median"].iloc[0]
    want = _frame().query("run == '3e+08-constant'")["loss"].iloc[-1] - truth[-1]
    assert 0.5 * want < constant - pred[-1] < 1.5 * want


def test_the_warm_up_is_not_an_annealing_step():
    steps = np.array([10.0, 100, 1000, 2000, 3000, 4000])
    lr = np.array([0.01, 0.1, 1.0, 1.0, 0.5, 0.5])
    d, eta, _ = drops(grid(steps * STEP, lr, 1.0))
    np.testing.assert_allclose(d, [0.5])
    np.testing.assert_allclose(eta, [0.5])


def test_planning_says_candidates_are_constant_rate_runs():
    from bayescale.design.planning import schedule_notes

    post = _posterior(ScalingData.from_frame(_frame(), min_tokens=None))
    (note,) = schedule_notes(post)
    assert "constant-rate runs" in note and "annealing bonus" in note
    plain = _posterior(ScalingData.from_frame(_frame(lr=False), min_tokens=None))
    assert schedule_notes(plain) == []


def test_planned_runs_and_target_follow_the_schedule_stretched_over_them():
    from bayescale import plan
    from bayescale.design.runs import run_arrays, run_inputs, run_inputs_from, target_draws
    from bayescale.options import Target
    from bayescale.schedules import shape_of

    data = ScalingData.from_frame(_frame(), min_tokens=None)
    post = _posterior(data)
    steps = np.arange(1000, 10001, 500.0)
    table = {"fraction": steps / steps[-1], "lr": _cosine(steps, total=10000)}
    shape = shape_of(table)
    # stretched to the fitted cosine runs' length, a new run has exactly their inputs
    rows = data.obs_run == data.runs.index("3e+08-cosine")
    inputs1, _ = run_inputs(0, 1, 3e8, data.tokens[rows], schedule=shape)
    np.testing.assert_allclose(inputs1.log_area, data.inputs().log_area[rows])
    for new, fitted in zip(inputs1.anneal, data.inputs().anneal, strict=True):
        np.testing.assert_allclose(new, fitted[rows])
    # ... and keeps them through the arrays that batches of designs are stacked from
    back = run_inputs_from(run_arrays(inputs1))
    np.testing.assert_array_equal(back.log_area, inputs1.log_area)
    for new, kept in zip(inputs1.anneal, back.anneal, strict=True):
        np.testing.assert_array_equal(new, kept)
    # a target twice as long: the cosine over its whole length, as predict() with that table
    end = 2 * steps[-1] * STEP
    target = Target("fam", 3e8, end)
    idx = np.arange(post.n_draws)
    rng = np.random.default_rng(0)
    cos = np.median(target_draws(post, target, "mean", idx, 0.0, rng, shape))
    const = np.median(target_draws(post, target, "mean", idx, 0.0, rng))
    stretched = pd.DataFrame({"tokens": shape.fraction * end, "lr": table["lr"]})
    want = post.predict("fam", 3e8, end, schedule=stretched)["median"].iloc[0]
    assert cos == pytest.approx(want, rel=3e-3) and cos < 0.99 * const
    # plan() with the schedule: every candidate and the target anneal
    small = {"n_outcomes": 8, "max_draws": 50, "progress_bar": False}
    result = plan(post, target, 1e21, method="importance", schedule=table, **small)
    assert np.isfinite(result.table["expected_sd"]).all()
    assert any("stretched over each run's tokens" in n for n in result.notes)
    with pytest.raises(ValueError, match=r"'fraction' must lie in \(0, 1\]"):
        plan(post, target, 1e21, schedule={"fraction": [0.0, 1.0], "lr": [1.0, 0.1]}, **small)
    plain = _posterior(ScalingData.from_frame(_frame(lr=False), min_tokens=None))
    with pytest.raises(ValueError, match="no learning-rate schedules"):
        plan(plain, target, 1e21, schedule=table, **small)


def _flat_and_plain_plans(post, **kw):
    """Plans for one candidate with a constant-rate schedule and with none."""
    from bayescale import plan

    steps = np.arange(1000, 10001, 500.0)
    # a constant rate from the first token on (the warm-up before row one is negligible)
    flat = {"fraction": [1e-6, 1.0], "lr": [1.0, 1.0]}
    target = ("fam", 1e9, 2 * steps[-1] * STEP)
    cands = [{"params": 3e8, "tokens": 2e9, "n_runs": 2}]
    return [
        plan(post, target, 2e20, schedule=s, candidates=cands, progress_bar=False, **kw).table
        for s in (flat, None)
    ]


def test_a_constant_schedule_plans_as_no_schedule():
    """The schedule's plumbing (new runs, target, importance weights) against the plain path."""
    fake = _posterior(ScalingData.from_frame(_frame(), min_tokens=None))
    plans = _flat_and_plain_plans(fake, method="importance", n_outcomes=8)
    assert (plans[0]["method"] == "importance").all()
    for col in ("current_sd", "expected_sd"):
        assert plans[0][col].iloc[0] == pytest.approx(plans[1][col].iloc[0], rel=2e-3)


@pytest.mark.heavy
def test_a_constant_schedule_plans_as_no_schedule_by_laplace():
    from bayescale import fit

    post = fit(_frame(), method="map", map_starts=2, min_tokens=None, seed=0, progress_bar=False)
    plans = _flat_and_plain_plans(post, n_refit_outcomes=2)
    assert (plans[0]["method"] == "laplace").all()
    for col in ("current_sd", "expected_sd"):
        assert plans[0][col].iloc[0] == pytest.approx(plans[1][col].iloc[0], rel=2e-3)


def test_one_decaying_schedule_per_family_is_named():
    from bayescale.datachecks import IdentifiabilityWarning
    from bayescale.schedules import decaying_share, one_schedule_families

    steps = np.arange(1000, 10001, 500.0)

    def g(rate):
        return grid(steps * STEP, rate, rate.max())

    cosine, constant = g(_cosine(steps, total=10000)), g(np.full(steps.size, 3e-4))
    longer = g(_cosine(steps, total=30000))
    wsd = g(np.where(steps < 8500, 3e-4, 3e-5 + 2.7e-4 * (10000 - steps) / 1500))
    assert decaying_share(cosine) > 0.8 and decaying_share(constant) == 0.0
    assert 0.1 < decaying_share(wsd) < 0.3
    fams = ["cos", "cos", "mixed", "mixed", "wsd", "horizons", "horizons", "lone"]
    runs = [cosine, cosine, cosine, constant, wsd, cosine, longer, cosine]
    # cosine runs with another schedule, or with another horizon, separate the two terms
    assert one_schedule_families(fams, runs) == ["cos", "lone"]
    only_cosine = _frame().query("run.str.endswith('cosine')")
    with pytest.warns(IdentifiabilityWarning, match=r"\['fam'\]: every run follows one"):
        data = ScalingData.from_frame(only_cosine, min_tokens=None)
    # the report's method section says it too, and only then
    from bayescale.reporting.method import model_description

    assert "In fam every run follows one schedule" in " ".join(model_description(_posterior(data)))
    both = _posterior(ScalingData.from_frame(_frame(), min_tokens=None))
    assert "every run follows one schedule" not in " ".join(model_description(both))


def test_cli_predict_and_plan_read_a_schedule_file(tmp_path, capsys):
    import json

    from bayescale.cli import main

    post = _posterior(ScalingData.from_frame(_frame(), min_tokens=None))
    fit_path = tmp_path / "sched.nc"
    post.save(fit_path)
    steps = np.arange(1000, 10001, 500.0)
    cosine = pd.DataFrame({"tokens": steps * STEP, "lr": _cosine(steps, total=10000)})
    cosine.to_csv(tmp_path / "cos.csv", index=False)
    end = steps[-1] * STEP
    args = ["predict", str(fit_path), "--target", f"fam:300M:{end:.0f}", "--kind", "mean", "--json"]
    assert main([*args, "--schedule", str(tmp_path / "cos.csv")]) == 0
    got = json.loads(capsys.readouterr().out)[0]["median"]
    want = post.predict("fam", 3e8, end, schedule=cosine)["median"].iloc[0]
    assert got == pytest.approx(want, rel=1e-9)
    # plan: the shape as fractions of each run
    shape = pd.DataFrame({"fraction": steps / steps[-1], "lr": cosine["lr"]})
    shape.to_csv(tmp_path / "shape.csv", index=False)
    plan_args = ["plan", str(fit_path), "--target", "fam:1B:10B", "--budget", "1e20"]
    plan_args += ["--method", "importance", "--outcomes", "8", "--json"]
    assert main([*plan_args, "--schedule", str(tmp_path / "shape.csv")]) == 0
    out = json.loads(capsys.readouterr().out)
    assert any("stretched over each run's tokens" in n for n in out["notes"])
    # a file without the columns the command needs is named, with what it has
    assert main([*plan_args, "--schedule", str(tmp_path / "cos.csv")]) == 2
    assert "needs columns fraction, lr; missing ['fraction']" in capsys.readouterr().err
