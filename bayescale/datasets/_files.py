"""Reading the bundled Parquet files (cached) and filtering them by family."""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache
from importlib import resources

import pandas as pd
import pyarrow.parquet as pq


class DatasetNameError(KeyError, ValueError):
    """Unknown dataset or family name; the message lists the valid ones.

    It is both a ``KeyError`` (a name lookup failed) and a ``ValueError``
    (a bad argument), so either ``except`` clause catches it.
    """

    def __str__(self) -> str:
        # KeyError would print the repr of the message, quotes included
        return str(self.args[0]) if self.args else ""


@lru_cache(maxsize=8)
def _read(filename: str) -> pd.DataFrame:
    with resources.files(__package__).joinpath("data", filename).open("rb") as fh:
        return pq.read_table(fh).to_pandas()


def read_bundled(filename: str, families: str | Iterable[str] | None, dataset: str) -> pd.DataFrame:
    """A fresh copy of a bundled table, optionally restricted to some families.

    Parameters
    ----------
    filename : str
        File name inside ``bayescale/datasets/data``.
    families : str or iterable of str or None
        Families to keep (rows keep the file's order); ``None`` keeps all.
    dataset : str
        Dataset name, used in error messages.

    Raises
    ------
    DatasetNameError
        If a requested family is not in the dataset; the message lists the
        valid families.
    """
    df = _read(filename)
    if families is not None:
        wanted = [families] if isinstance(families, str) else [str(f) for f in families]
        valid = sorted(df["family"].unique())
        unknown = [f for f in wanted if f not in set(valid)]
        if unknown:
            raise DatasetNameError(
                f"unknown famil{'y' if len(unknown) == 1 else 'ies'} {unknown} in dataset "
                f"'{dataset}'; valid families: {valid}"
            )
        df = df[df["family"].isin(wanted)].reset_index(drop=True)
    # the cached frame must never be handed out: callers may modify what they get
    return df.copy(deep=True)
