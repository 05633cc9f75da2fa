"""Reading and checking a tidy loss table: the only place that judges user input.

:func:`read_table` reads CSV (plain or gzipped) or Parquet by content;
:func:`validate_frame` refuses a bad table with a :class:`DataError` that names
the column, the rows (and file lines) and the fix.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

REQUIRED = ("family", "run", "params", "tokens", "loss")
_BILLIONS_THRESHOLD = 1e4


class DataError(ValueError):
    """Bad input table: the message names the column, the rows and the fix."""


def _rows(index, first_line: int | None = None, limit: int = 8) -> str:
    """``rows [3, 18]`` (data rows, from 0), with the file lines when read from a file."""
    idx = list(index)
    shown = ", ".join(str(i) for i in idx[:limit])
    more = f" … (+{len(idx) - limit} more)" if len(idx) > limit else ""
    text = f"rows [{shown}{more}]"
    if first_line is not None and all(isinstance(i, (int, np.integer)) for i in idx[:limit]):
        lines = ", ".join(str(int(i) + first_line) for i in idx[:limit])
        text += f" (file line{'s' if len(idx) > 1 else ''} {lines}{' …' if more else ''})"
    return text


def validate_frame(df: pd.DataFrame) -> pd.DataFrame:
    """Check a tidy loss table and return a clean copy.

    Parameters
    ----------
    df : pandas.DataFrame
        One row per evaluated checkpoint with at least the columns
        ``family``, ``run``, ``params`` (raw count), ``tokens`` (raw count)
        and ``loss`` (nats).

    Returns
    -------
    pandas.DataFrame
        A copy with string labels, float sizes and a default ``seed``.

    Raises
    ------
    DataError
        On a missing column, NaN/inf, non-positive or billions-scaled sizes,
        non-positive loss, duplicated ``(run, tokens)``, a run whose
        ``params`` changes, or an ``is_final`` that is not a true/false flag.
        The message names the column, the rows and the fix.
    """
    if not isinstance(df, pd.DataFrame):
        raise DataError(f"expected a pandas DataFrame, got {type(df).__name__}")
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        hint = ""
        header = ",".join(str(c) for c in df.columns)
        for sep, name in ((";", "semicolons"), ("\t", "tabs"), ("|", "bars")):
            if df.shape[1] == 1 and sep in header:
                hint = (
                    f"; its one column {header[:60]!r} is separated by {name}: read the file "
                    "with pandas.read_csv(path, sep=..., decimal=',')"
                )
        raise DataError(
            f"missing required column(s) {missing}; the table needs {list(REQUIRED)} "
            "(one row per checkpoint: family, run, params = raw parameter count, "
            f"tokens = raw tokens seen, loss in nats){hint}"
        )
    if len(df) == 0:
        raise DataError("the table has no rows")
    line = df.attrs.get("first_line")
    out = df.copy()
    out = out.reset_index(drop=True)
    for col in ("family", "run"):
        bad = out.index[out[col].isna()]
        if len(bad):
            raise DataError(f"column '{col}' has missing labels at {_rows(bad, line)}; label them")
        out[col] = out[col].astype(str)
    for col in ("params", "tokens", "loss"):
        try:
            values = pd.to_numeric(out[col], errors="raise").astype(float)
        except (ValueError, TypeError) as exc:
            comma = out[col].astype(str).str.fullmatch(r"-?\d+,\d+").any()
            hint = "; it has decimal commas: use decimal points (or decimal=',')" if comma else ""
            raise DataError(f"column '{col}' must be numeric ({exc}){hint}") from None
        bad = out.index[~np.isfinite(values.to_numpy())]
        if len(bad):
            raise DataError(
                f"column '{col}' has NaN or infinite values at {_rows(bad, line)}; "
                "drop those checkpoints or fill in the value"
            )
        bad = out.index[values.to_numpy() <= 0]
        if len(bad):
            raise DataError(
                f"column '{col}' must be > 0 but is non-positive at {_rows(bad, line)}; "
                + ("loss is in nats (cross-entropy)" if col == "loss" else "use raw counts")
            )
        out[col] = values
    for col, unit in (("params", "parameters"), ("tokens", "tokens")):
        bad = out.index[out[col].to_numpy() < _BILLIONS_THRESHOLD]
        if len(bad):
            raise DataError(
                f"column '{col}' has values below 1e4 at {_rows(bad, line)} "
                f"(e.g. {out.loc[bad[0], col]:g}); it looks like {unit} given in billions or "
                f"millions; pass raw counts (multiply by 1e9 for billions)"
            )
    dup = out.duplicated(subset=["family", "run", "tokens"], keep=False)
    if dup.any():
        bad = out.index[dup]
        raise DataError(
            f"duplicated (run, tokens) pairs at {_rows(bad, line)} "
            f"(first: family '{out.loc[bad[0], 'family']}', run '{out.loc[bad[0], 'run']}', "
            f"tokens {out.loc[bad[0], 'tokens']:g}); "
            "keep one evaluation per checkpoint (e.g. average them)"
        )
    nunique = out.groupby(["family", "run"], sort=False)["params"].nunique()
    changing = nunique[nunique > 1]
    if len(changing):
        fam, run = changing.index[0]
        bad = out.index[(out["family"] == fam) & (out["run"] == run)]
        raise DataError(
            f"column 'params' changes within run '{run}' (family '{fam}') at {_rows(bad, line)}; "
            "a run has one model size: split it into separate runs or fix the value"
        )
    if "is_final" in out.columns:
        out["is_final"] = _flags(out["is_final"], line)
    if "lr" in out.columns:
        out["lr"] = _learning_rates(out, line)
    if "planned_tokens" in out.columns:
        out["planned_tokens"] = _planned_tokens(out, line)
    if "group" in out.columns:
        bad = out.index[out["group"].isna()]
        if len(bad):
            raise DataError(
                f"column 'group' has missing labels at {_rows(bad, line)}; give every family "
                "its group (or drop the column)"
            )
        out["group"] = out["group"].astype(str)
    if "seed" not in out.columns:
        out["seed"] = "0"
    out["seed"] = out["seed"].astype(str)
    return out


def _planned_tokens(out: pd.DataFrame, line: int | None = None) -> pd.Series:
    """The optional ``planned_tokens`` column: one total per run (or none), >= its tokens."""
    planned = pd.to_numeric(out["planned_tokens"], errors="coerce")
    # a given cell that is not a number coerces to NaN, which is not > 0 either; a plan
    # without end (inf) has no final loss to forecast
    bad = out.index[out["planned_tokens"].notna() & ~((planned > 0) & np.isfinite(planned))]
    if len(bad):
        value = out.loc[bad[0], "planned_tokens"]
        value = repr(value) if isinstance(value, str) else f"{float(value):g}"
        raise DataError(
            "column 'planned_tokens' must hold the run's planned total tokens (a finite raw "
            f"count > 0, or empty) but has {value} at {_rows(bad, line)}"
        )
    keys = [out["family"], out["run"]]
    # "first" skips empty cells: a run differs from its first total where a value or an
    # empty cell does not match it
    first = planned.groupby(keys).transform("first")
    differs = (planned != first) & ~(planned.isna() & first.isna())
    bad = out.index[differs.groupby(keys).transform("any")]
    if len(bad):
        raise DataError(
            f"column 'planned_tokens' changes within run '{out.loc[bad[0], 'run']}' (family "
            f"'{out.loc[bad[0], 'family']}') at {_rows(bad, line)}; a run has one planned "
            "total: repeat it on every checkpoint (or leave it empty on all)"
        )
    bad = out.index[planned < out["tokens"] * (1 - 1e-9)]
    if len(bad):
        raise DataError(
            f"column 'planned_tokens' is below the run's logged tokens at {_rows(bad, line)} "
            f"(run '{out.loc[bad[0], 'run']}': planned {planned.loc[bad[0]]:g}, logged "
            f"{out.loc[bad[0], 'tokens']:g}); the plan must reach at least the last checkpoint"
        )
    return planned.astype(float)


_TRUE = {"true", "1", "yes", "y", "t"}
_FALSE = {"false", "0", "no", "n", "f", ""}


def _learning_rates(out: pd.DataFrame, line: int | None = None) -> pd.Series:
    """The optional ``lr`` column: numbers >= 0, given for all rows of a run or for none."""
    lr = pd.to_numeric(out["lr"], errors="coerce")
    bad = out.index[(lr.isna() & out["lr"].notna()) | (lr < 0) | np.isinf(lr)]
    if len(bad):
        raise DataError(
            f"column 'lr' must hold learning rates >= 0 (or be empty for runs without a "
            f"schedule) but has {out.loc[bad[0], 'lr']!r} at {_rows(bad, line)}"
        )
    some = lr.isna().groupby([out["family"], out["run"]]).transform("any")
    every = lr.isna().groupby([out["family"], out["run"]]).transform("all")
    bad = out.index[some & ~every]
    if len(bad):
        raise DataError(
            f"column 'lr' is missing for some checkpoints of run '{out.loc[bad[0], 'run']}' "
            f"(family '{out.loc[bad[0], 'family']}') at {_rows(bad, line)}; give it at every "
            "checkpoint of a run or at none"
        )
    if lr.notna().any() and not (lr > 0).any():
        raise DataError("column 'lr' is zero everywhere; drop it for runs without a schedule")
    return lr.astype(float)


def _flags(col: pd.Series, line: int | None = None) -> pd.Series:
    """``is_final`` as booleans, read strictly: ``astype(bool)`` would make "no" true."""
    if col.dtype == bool:
        return col
    text = col.map(lambda v: "" if pd.isna(v) else str(v).strip().lower())
    text = text.replace({"1.0": "1", "0.0": "0"})
    bad = col.index[~text.isin(_TRUE | _FALSE)]
    if len(bad):
        raise DataError(
            f"column 'is_final' must be true/false (or 1/0, yes/no) but has "
            f"{col.loc[bad[0]]!r} at {_rows(bad, line)}"
        )
    return text.isin(_TRUE)


def grouped_by(df: pd.DataFrame, column: str) -> pd.DataFrame:
    """``df`` with its ``column`` as the families' ``group`` (e.g. ``"metric"``).

    Raises
    ------
    DataError
        If ``column`` is not a column of ``df``; the message lists them.
    """
    if column not in df:
        raise DataError(
            f"{column!r} is not a column of the table to group families by; "
            f"columns: {', '.join(map(str, df.columns))}"
        )
    return df.assign(group=df[column])


def read_table(source) -> pd.DataFrame:
    """Read a tidy table from a CSV (plain or gzipped) or Parquet file.

    The format is read from the file's first bytes, not its name. A file that
    is not comma-separated (``;`` or tabs, decimal commas) is refused with a
    hint. The frame remembers that its rows start on line 2 of the file, so
    validation messages name the file lines as well as the rows.
    """
    path = Path(source)
    if not path.is_file():
        raise DataError(f"{source} is not a file")
    with path.open("rb") as fh:
        head = fh.read(4096)
    try:
        if head.startswith(b"PAR1"):
            return pd.read_parquet(path)
        compression = "gzip" if head.startswith(b"\x1f\x8b") else None
        df = pd.read_csv(path, compression=compression)
    except UnicodeDecodeError:
        raise DataError(
            f"cannot read {source}: it is neither UTF-8 text (CSV) nor a Parquet or gzip file"
        ) from None
    except Exception as exc:  # noqa: BLE001 - any reader failure is bad input
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"cannot read {source} as a table: {first}") from None
    if df.shape[1] == 1:
        header = str(df.columns[0])
        for sep, name in ((";", "semicolons"), ("\t", "tabs"), ("|", "bars")):
            if sep in header:
                raise DataError(
                    f"{source} has one column; its header is separated by {name} "
                    f"({header[:60]!r}). bayescale reads comma-separated CSV: save it with "
                    "commas, or read it with pandas.read_csv(path, sep=..., decimal=',') and "
                    "pass the DataFrame"
                )
    df.attrs["first_line"] = 2  # line 1 is the header
    return df
