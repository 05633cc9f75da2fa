"""Real scaling data bundled with the package (compressed Parquet, a few MB).

``list_datasets()`` shows what is available; ``load_dataset(name)`` returns a
tidy table (``family, run, params, tokens, loss`` + per-dataset columns) that
:meth:`bayescale.ScalingData.from_frame` accepts. Each dataset has its own
loader whose docstring gives units, every column, pitfalls, sources, licence
and the papers to cite. The files are rebuilt from the shared data folder by
``scripts/build_datasets.py``; licences are in ``data/LICENSES.md``.
"""

from __future__ import annotations

from bayescale.datasets._files import DatasetNameError
from bayescale.datasets.gadre import load_gadre, load_gadre_downstream
from bayescale.datasets.hitchhiker import load_hitchhiker
from bayescale.datasets.multipower import load_multipower
from bayescale.datasets.pythia import load_pythia_evals
from bayescale.datasets.registry import list_datasets, load_dataset

__all__ = [
    "DatasetNameError",
    "list_datasets",
    "load_dataset",
    "load_gadre",
    "load_gadre_downstream",
    "load_hitchhiker",
    "load_multipower",
    "load_pythia_evals",
]
