"""The over-training and downstream notebook runs and its predictions are sensible."""

import pytest
from notebook_runner import BUDGET_S, execute, images, summary


@pytest.mark.notebook
def test_overtraining_and_downstream_runs(tmp_path, monkeypatch):
    nb, outputs, elapsed = execute("04_overtraining_and_downstream.ipynb", tmp_path, monkeypatch)
    assert elapsed < BUDGET_S
    assert len(images(outputs)) == 2
    result = summary(outputs)
    assert set(result) == {"targets", "heldout"}
    targets = {t["target"]: t for t in result["targets"]}
    # 6.9B at M=20, and 1.4B at the largest M of each corpus
    assert set(targets) == {
        "C4 1.4B M=80",
        "C4 6.9B M=20",
        "RedPajama 1.4B M=640",
        "RedPajama 6.9B M=20",
        "RefinedWeb 1.4B M=320",
        "RefinedWeb 6.9B M=20",
    }
    inside = {"loss": 0, "error": 0}
    for t in targets.values():
        loss, err = t["loss"], t["error"]
        assert 2.0 < loss["lower"] < loss["median"] < loss["upper"] < 3.0
        assert 0 < err["lower"] < err["median"] < err["upper"] < 1
        # loose accuracy checks: the paper's point fits are within a few percent
        assert loss["median"] == pytest.approx(loss["observed"], rel=0.1)
        assert err["median"] == pytest.approx(err["observed"], abs=0.1)
        for name, pred in (("loss", loss), ("error", err)):
            inside[name] += pred["lower"] <= pred["observed"] <= pred["upper"]
    assert inside["loss"] >= 3 and inside["error"] >= 3
    heldout = result["heldout"]
    assert heldout["runs"] == 86  # 104 runs minus 6 per corpus in the error-law fit
    for name in ("loss", "error"):
        assert 0 <= heldout[name]["coverage"] <= 1
        assert 0 <= heldout[name]["mean_abs_rel_error"] < 0.1
