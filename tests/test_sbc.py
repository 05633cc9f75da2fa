"""Simulation-based calibration helpers: the prior draw, rank statistics and the summary."""

import jax
import numpy as np
import pandas as pd
import pytest

from bayescale.evaluation import sbc
from bayescale.fitting import FitConfig


def test_design_has_no_observations():
    inputs = sbc.design_inputs(sbc.Design(n_families=2, n_checkpoints=4))
    assert inputs.y is None
    assert inputs.log_d.shape == (2 * 3 * 2 * 4,)


def test_prior_draw_simulates_y_above_e():
    inputs = sbc.design_inputs(sbc.Design(n_checkpoints=4))
    draw = sbc.prior_draw(inputs, FitConfig(), jax.random.PRNGKey(0))
    assert draw["y"].shape == inputs.log_d.shape
    assert np.all(np.isfinite(draw["y"]))
    # the law lies above E everywhere; the noise around it is small
    fam = inputs.run_family[inputs.obs_run]
    assert np.mean(draw["y"] > draw["log_E"][fam]) > 0.95
    # a different key is a different world
    other = sbc.prior_draw(inputs, FitConfig(), jax.random.PRNGKey(1))
    assert not np.allclose(draw["y"], other["y"])


def test_a_replicate_records_ranks_and_the_settings_of_its_draws():
    inputs = sbc.design_inputs(sbc.Design(n_checkpoints=4))
    config = FitConfig(method="map", map_starts=1, target_accept=0.95)
    rec = sbc.replicate(0, inputs, config, n_ranks=9)
    assert rec["target_accept"] == 0.95 and rec["num_warmup"] == config.num_warmup
    # one MAP point: every truth ranks 0 or 9, no R-hat, no divergences
    ranks = [v for k, v in rec.items() if k.startswith("rank.")]
    assert len(ranks) == len(sbc.ranked(config)) and set(ranks) <= {0, 9}
    assert np.isnan(rec["rhat_max"]) and rec["divergences"] == 0


def test_uniformity_tells_uniform_ranks_from_a_biased_posterior():
    rng = np.random.default_rng(0)
    assert sbc.uniformity(rng.integers(0, 100, 400)) > 0.01
    # truths piling up at the top: posteriors that sit too low
    assert sbc.uniformity(rng.integers(80, 100, 400)) < 1e-6


def test_summary_counts_coverage_per_parameter():
    records = pd.DataFrame(
        {
            "rank.alpha": [10, 50, 90, 30],
            "in50.alpha": [False, True, False, True],
            "in90.alpha": [True, True, True, False],
        }
    )
    row = sbc.summarize(records).iloc[0]
    assert row["parameter"] == "alpha" and row["replicates"] == 4
    assert row["coverage50"] == pytest.approx(0.5)
    assert row["coverage90"] == pytest.approx(0.75)


def test_coverage_band_holds_the_nominal_rate():
    lo, hi = sbc.coverage_band(200, 0.9)
    assert lo < 0.9 < hi and hi - lo < 0.1


@pytest.mark.sbc
def test_twenty_prior_worlds_fitted_with_the_default_inference_are_covered():
    """Bounded simulation-based calibration (``benchmarks/sbc.py`` runs 200).

    Each parameter's coverage must lie in its 99.9% binomial band for 20
    checks; the share pooled over parameters, in the 95% band for 20 checks
    (a replicate's parameters share one fit, so the pooled share varies like
    that of between 20 and 160 independent checks: 20 is the safe side).
    """
    import warnings

    with warnings.catch_warnings():
        # the test process has two devices, so the default four chains run one after
        # another (a warning each fit); sampling problems are counted in the records
        warnings.simplefilter("ignore")
        records = sbc.run_sbc(20)
    n = len(records)
    assert n == 20
    # a chain frozen in place (as where E's share once rounded to 1 in float32, in
    # six of the first nine fits) is a defect; slow mixing shows in R-hat instead
    assert records["stuck_chains"].sum() == 0, records["stuck_chains"].tolist()
    # the draws kept: the default's, or one retry's after divergences
    assert set(records["target_accept"]) <= {0.9, 0.95}
    assert (records["num_warmup"] == FitConfig().num_warmup).all()
    for level in (90, 50):
        checks = records.filter(like=f"in{level}.")
        assert checks.shape[1] == len(sbc.ranked(FitConfig()))
        lo, hi = sbc.coverage_band(n, level / 100, prob=0.999)
        per_parameter = checks.mean()
        assert per_parameter.between(lo, hi).all(), per_parameter
        lo, hi = sbc.coverage_band(n, level / 100)
        assert lo <= checks.to_numpy().mean() <= hi, per_parameter
