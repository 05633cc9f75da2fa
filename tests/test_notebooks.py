"""Execute the example notebooks with few posterior draws (BAYESCALE_NB_SAMPLES)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
SAMPLES = "60"
# each notebook takes well under 3 minutes on an idle 2-core machine; the limit
# leaves room for a busy one
BUDGET_S = 300


def _read(name):
    return nbformat.read(NOTEBOOKS / name, as_version=4)


def test_notebooks_are_stored_without_outputs():
    names = sorted(p.name for p in NOTEBOOKS.glob("*.ipynb"))
    assert names == ["01_quickstart.ipynb", "02_new_family_from_one_run.ipynb"]
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
