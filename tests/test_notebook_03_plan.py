"""The seeds-or-larger-model notebook runs and its plan table is coherent."""

import pytest
from notebook_runner import BUDGET_S, execute, images, stdout, summary


@pytest.mark.notebook
def test_seeds_or_large_model_runs(tmp_path, monkeypatch):
    nb, outputs, elapsed = execute("03_seeds_or_large_model.ipynb", tmp_path, monkeypatch)
    assert elapsed < BUDGET_S
    assert len(images(outputs)) == 1
    assert "train 1 run x" in stdout(outputs)  # design.recommendation's line
    result = summary(outputs)
    assert set(result) == {"target", "budget_flops", "prediction", "recommended", "rows"}
    target, budget, rows = result["target"], result["budget_flops"], result["rows"]
    assert target["family"] == "pythia" and target["kind"] == "mean"
    # the target is larger than every fitted Pythia model (2.8B)
    assert target["params"] > 1e10 and target["tokens"] == 3e11
    p = result["prediction"]
    assert 0 < p["lower"] < p["median"] < p["upper"]
    # every candidate of the menu is affordable, ranked by sd reduction
    assert len(rows) == 12
    assert [r["rank"] for r in rows] == list(range(1, len(rows) + 1))
    reductions = [r["reduction"] for r in rows]
    assert reductions == sorted(reductions, reverse=True)
    assert {r["label"] for r in rows} == {"more seeds", "larger model"}
    current = rows[0]["current_sd"]
    for r in rows:
        assert r["flops"] == pytest.approx(6 * r["params"] * r["tokens"] * r["n_runs"])
        assert 0 < r["flops"] <= budget
        assert r["current_sd"] == current > 0
        assert r["expected_sd"] > 0 and r["expected_sd_mcse"] > 0
        assert r["reduction"] == pytest.approx(current - r["expected_sd"])
        assert r["method"] in {"importance", "laplace"}
    recommended = [r for r in rows if r["recommended"]]
    assert len(recommended) == 1
    rec = recommended[0]
    assert rec["experiment"] == result["recommended"]
    assert rec["reduction"] > 2 * rec["expected_sd_mcse"]
    # what the notebook's text reads off the plot: a larger model comes out on top
    assert rows[0]["label"] == rec["label"] == "larger model"
