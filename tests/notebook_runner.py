"""Executing the example notebooks with few posterior draws (BAYESCALE_NB_SAMPLES).

Each notebook has a test module of its own, marked ``notebook``: they leave the
default run (about 7 minutes of fits on 2 cores together) for CI's second pass,
``pytest -m "sbc or heavy or notebook"``, or run alone with ``pytest -m notebook``.
"""

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


def read(name):
    return nbformat.read(NOTEBOOKS / name, as_version=4)


def execute(name, tmp_path, monkeypatch):
    monkeypatch.setenv("BAYESCALE_NB_SAMPLES", SAMPLES)
    monkeypatch.setenv("BAYESCALE_NB_CHAINS", "2")
    nb = read(name)
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


def images(outputs):
    return [o for o in outputs if "image/png" in o.get("data", {})]


def stdout(outputs):
    return "".join(o.get("text", "") for o in outputs if o.output_type == "stream")


def summary(outputs):
    line = next(ln for ln in stdout(outputs).splitlines() if ln.startswith("SUMMARY "))
    return json.loads(line.removeprefix("SUMMARY "))


def progress_shown(outputs) -> bool:
    """A progress bar was shown: a tqdm widget, or tqdm's text bar on stderr."""
    for o in outputs:
        if "application/vnd.jupyter.widget-view+json" in o.get("data", {}):
            return True
        if o.output_type == "stream" and o.get("name") == "stderr" and "%|" in o.get("text", ""):
            return True
    return False
