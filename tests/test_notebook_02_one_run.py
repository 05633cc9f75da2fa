"""The one-run transfer notebook runs and its comparison table is coherent."""

import json

import pytest
from notebook_runner import BUDGET_S, execute, images, stdout


@pytest.mark.notebook
def test_one_run_transfer_runs(tmp_path, monkeypatch):
    nb, outputs, elapsed = execute("02_new_family_from_one_run.ipynb", tmp_path, monkeypatch)
    assert elapsed < BUDGET_S
    assert len(images(outputs)) == 2
    line = next(ln for ln in stdout(outputs).splitlines() if ln.startswith("SUMMARY "))
    summary = json.loads(line.removeprefix("SUMMARY "))
    assert set(summary) == {"pooled_50", "pooled_90", "alone_50", "alone_90"}
    # how much pooling helps is measured in benchmarks/; here: the table is coherent
    for fit in ("pooled", "alone"):
        assert 0 < summary[f"{fit}_50"]["width"] < summary[f"{fit}_90"]["width"]
        assert summary[f"{fit}_50"]["rel_error"] == summary[f"{fit}_90"]["rel_error"]
