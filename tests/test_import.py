"""Importing the package stays light: no matplotlib until a plot is drawn."""

import subprocess
import sys


def test_import_does_not_pull_matplotlib():
    code = (
        "import sys, bayescale; bayescale.load_dataset('gadre'); print('matplotlib' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_public_api_is_exported():
    import bayescale

    for name in bayescale.__all__:
        assert hasattr(bayescale, name), name
