"""Importing the package stays light: no matplotlib until a plot is drawn."""

import subprocess
import sys


def test_import_does_not_pull_matplotlib():
    code = (
        "import sys, bayescale, bayescale.plots, bayescale.report; "
        "[bayescale.load_dataset(n) for n in bayescale.list_datasets()['name']]; "
        "print(sorted(m for m in sys.modules if m.startswith('matplotlib')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_public_api_is_exported():
    import bayescale

    for name in bayescale.__all__:
        assert hasattr(bayescale, name), name
