"""The quickstart notebook runs and shows its figures."""

import pytest
from notebook_runner import BUDGET_S, SAMPLES, execute, images, progress_shown, stdout


@pytest.mark.notebook
def test_quickstart_runs(tmp_path, monkeypatch):
    nb, outputs, elapsed = execute("01_quickstart.ipynb", tmp_path, monkeypatch)
    assert elapsed < BUDGET_S
    assert f"2 chains x {SAMPLES} draws" in stdout(outputs)
    assert len(images(outputs)) == 4
    # a person running the notebook sees the fit progress
    assert progress_shown(outputs)
    assert "held-out checkpoints inside the 90% interval" in stdout(outputs)
    report = tmp_path / "quickstart_report.html"
    assert report.exists() and "data:image/png;base64," in report.read_text()
