"""The notebooks are stored stripped of outputs, valid, on the python3 kernel."""

from notebook_runner import NOTEBOOKS, nbformat, read


def test_notebooks_are_stored_without_outputs():
    names = sorted(p.name for p in NOTEBOOKS.glob("*.ipynb"))
    assert names == [
        "01_quickstart.ipynb",
        "02_new_family_from_one_run.ipynb",
        "03_seeds_or_large_model.ipynb",
        "04_overtraining_and_downstream.ipynb",
    ]
    for name in names:
        nb = read(name)
        nbformat.validate(nb)
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, name
        assert nb.metadata.kernelspec.name == "python3"
