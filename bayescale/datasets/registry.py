"""Names of the bundled datasets: listing and loading by name."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import pandas as pd

from bayescale.datasets import gadre, hitchhiker, multipower, pythia
from bayescale.datasets._files import DatasetNameError


@dataclass(frozen=True)
class _Entry:
    loader: Callable[..., pd.DataFrame]
    description: str
    citation: str


# the names are a contract: code elsewhere loads these datasets by name
_DATASETS: dict[str, _Entry] = {
    hitchhiker.NAME: _Entry(
        hitchhiker.load_hitchhiker, hitchhiker.DESCRIPTION, hitchhiker.CITATION
    ),
    gadre.RUNS_NAME: _Entry(gadre.load_gadre, gadre.RUNS_DESCRIPTION, gadre.CITATION),
    gadre.DOWNSTREAM_NAME: _Entry(
        gadre.load_gadre_downstream, gadre.DOWNSTREAM_DESCRIPTION, gadre.CITATION
    ),
    pythia.NAME: _Entry(pythia.load_pythia_evals, pythia.DESCRIPTION, pythia.CITATION),
    multipower.NAME: _Entry(
        multipower.load_multipower, multipower.DESCRIPTION, multipower.CITATION
    ),
}


def list_datasets() -> pd.DataFrame:
    """The datasets bundled with the package.

    Returns
    -------
    pandas.DataFrame
        One row per dataset: ``name``, ``description``, ``rows``,
        ``families`` (number of), ``runs`` (number of distinct runs) and
        ``citation`` (short; the loader's docstring has the full references).
    """
    rows = []
    for name, entry in _DATASETS.items():
        df = entry.loader()
        rows.append(
            {
                "name": name,
                "description": entry.description,
                "rows": len(df),
                "families": df["family"].nunique(),
                "runs": df[["family", "run"]].drop_duplicates().shape[0],
                "citation": entry.citation,
            }
        )
    return pd.DataFrame(rows)


def load_dataset(name: str, *, families: str | Iterable[str] | None = None) -> pd.DataFrame:
    """Load a bundled dataset as a tidy table.

    Parameters
    ----------
    name : str
        One of the names in :func:`list_datasets` (``"hitchhiker"``,
        ``"gadre"``, ``"gadre_downstream"``, ``"pythia_evals"``, ``"multipower"``).
    families : str or list of str, optional
        Keep only these families.

    Returns
    -------
    pandas.DataFrame
        A fresh copy with at least the columns ``family``, ``run``, ``params``
        (raw count), ``tokens`` (raw count at the checkpoint) and ``loss``
        (nats), plus the dataset's own columns; see the dataset's loader
        (e.g. :func:`~bayescale.datasets.load_hitchhiker`) for units and
        pitfalls.

    Raises
    ------
    DatasetNameError
        (a ``KeyError`` and a ``ValueError``) for an unknown dataset or family;
        the message lists the valid names.
    """
    try:
        entry = _DATASETS[name]
    except (KeyError, TypeError):
        raise DatasetNameError(
            f"unknown dataset {name!r}; available datasets: {list(_DATASETS)}"
        ) from None
    return entry.loader(families=families)
