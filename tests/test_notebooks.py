"""Execute the example notebooks with few posterior draws (BAYESCALE_NB_SAMPLES)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
SAMPLES = "40"
# each notebook takes well under 3 minutes on an idle 2-core machine; the limit
# leaves room for a busy one
BUDGET_S = 300


def _read(name):
    return nbformat.read(NOTEBOOKS / name, as_version=4)


def test_notebooks_are_stored_without_outputs():
    names = sorted(p.name for p in NOTEBOOKS.glob("*.ipynb"))
    assert names == [
        "01_quickstart.ipynb",
        "02_new_family_from_one_run.ipynb",
        "03_seeds_or_large_model.ipynb",
        "04_overtraining_and_downstream.ipynb",
    ]
    for name in names:
        nb = _read(name)
        nbformat.validate(nb)
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, name
        assert nb.metadata.kernelspec.name == "python3"


def _execute(name, tmp_path, monkeypatch):
    monkeypatch.setenv("BAYESCALE_NB_SAMPLES", SAMPLES)
    monkeypatch.setenv("BAYESCALE_NB_CHAINS", "2")
    nb = _read(name)
    client = nbclient.NotebookClient(
        nb,
        timeout=BUDGET_S,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    start = time.monotonic()
    client.execute()
    elapsed = time.monotonic() - start
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    errors = [o for o in outputs if o.output_type == "error"]
    assert not errors, errors[0].get("evalue")
    return nb, outputs, elapsed


def _images(outputs):
    return [o for o in outputs if "image/png" in o.get("data", {})]


def _stdout(outputs):
    return "".join(o.get("text", "") for o in outputs if o.output_type == "stream")


def _summary(outputs):
    line = next(ln for ln in _stdout(outputs).splitlines() if ln.startswith("SUMMARY "))
    return json.loads(line.removeprefix("SUMMARY "))


@pytest.mark.slow
def test_quickstart_runs(tmp_path, monkeypatch):
    nb, outputs, elapsed = _execute("01_quickstart.ipynb", tmp_path, monkeypatch)
    assert elapsed < BUDGET_S
    assert f"2 chains x {SAMPLES} draws" in _stdout(outputs)
    assert len(_images(outputs)) == 4
    assert "held-out checkpoints inside the 90% interval" in _stdout(outputs)
    report = tmp_path / "quickstart_report.html"
    assert report.exists() and "data:image/png;base64," in report.read_text()


@pytest.mark.slow
def test_one_run_transfer_runs(tmp_path, monkeypatch):
    nb, outputs, elapsed = _execute("02_new_family_from_one_run.ipynb", tmp_path, monkeypatch)
    assert elapsed < BUDGET_S
    assert len(_images(outputs)) == 2
    line = next(ln for ln in _stdout(outputs).splitlines() if ln.startswith("SUMMARY "))
    summary = json.loads(line.removeprefix("SUMMARY "))
    assert set(summary) == {"pooled_50", "pooled_90", "alone_50", "alone_90"}
    # how much pooling helps is measured in benchmarks/; here: the table is coherent
    for fit in ("pooled", "alone"):
        assert 0 < summary[f"{fit}_50"]["width"] < summary[f"{fit}_90"]["width"]
        assert summary[f"{fit}_50"]["rel_error"] == summary[f"{fit}_90"]["rel_error"]


@pytest.mark.slow
def test_seeds_or_large_model_runs(tmp_path, monkeypatch):
    nb, outputs, elapsed = _execute("03_seeds_or_large_model.ipynb", tmp_path, monkeypatch)
    assert elapsed < BUDGET_S
    assert len(_images(outputs)) == 1
    assert "train 1 run x" in _stdout(outputs)  # design.recommendation's line
    summary = _summary(outputs)
    assert set(summary) == {"target", "budget_flops", "prediction", "recommended", "rows"}
    target, budget, rows = summary["target"], summary["budget_flops"], summary["rows"]
    assert target["family"] == "pythia" and target["kind"] == "mean"
    # the target is larger than every fitted Pythia model (2.8B)
    assert target["params"] > 1e10 and target["tokens"] == 3e11
    p = summary["prediction"]
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
    assert rec["experiment"] == summary["recommended"]
    assert rec["reduction"] > 2 * rec["expected_sd_mcse"]
    # what the notebook's text reads off the plot: a larger model comes out on top
    assert rows[0]["label"] == rec["label"] == "larger model"


@pytest.mark.slow
def test_overtraining_and_downstream_runs(tmp_path, monkeypatch):
    nb, outputs, elapsed = _execute("04_overtraining_and_downstream.ipynb", tmp_path, monkeypatch)
    assert elapsed < BUDGET_S
    assert len(_images(outputs)) == 2
    summary = _summary(outputs)
    assert set(summary) == {"targets", "heldout"}
    targets = {t["target"]: t for t in summary["targets"]}
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
    heldout = summary["heldout"]
    assert heldout["runs"] == 86  # 104 runs minus 6 per corpus in the error-law fit
    for name in ("loss", "error"):
        assert 0 <= heldout[name]["coverage"] <= 1
        assert 0 <= heldout[name]["mean_abs_rel_error"] < 0.1
