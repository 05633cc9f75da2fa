"""Files bayescale writes: atomic, never overwritten unasked, fits checked on reading.

* :func:`atomic_write` writes to a temporary file in the target folder and
  renames it into place, so an interrupted or failed write leaves the previous
  file (or nothing) at the path, never half a file. Without ``overwrite`` an
  existing file is refused, checked again at the moment of the rename.
* A fit file (netCDF of an ArviZ DataTree) carries a SHA-256 of every group it
  holds and of its config, the package version and a format number.
  :func:`read_tree` refuses, with :class:`FitFileError`, any file that is
  unreadable, truncated, altered, missing a group or variable, written by a
  newer format, or not a bayescale fit.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import threading
from pathlib import Path

import numpy as np

from bayescale._version import __version__

FORMAT_VERSION = 2
_CHECKSUM_ATTR = "bayescale_checksum"
_FORMAT_ATTR = "bayescale_format"


class FitFileError(ValueError):
    """A saved fit is unreadable, altered, or does not match this package or data."""


class OutputExistsError(FileExistsError):
    """An output file exists and ``overwrite`` was not given."""


class WriteCancelled(RuntimeError):
    """The process was interrupted: files being written are not put in place."""


_cancelled = threading.Event()


def cancel_writes() -> None:
    """Stop every write in progress from reaching its final path (after Ctrl-C)."""
    _cancelled.set()


def check_output(path, *, overwrite: bool = False) -> Path:
    """Validate an output path before any work: its folder exists, and it is free.

    Raises
    ------
    OutputExistsError
        The file exists and ``overwrite`` is False.
    FileNotFoundError, IsADirectoryError
        The folder does not exist, or the path is a folder.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a directory; give a file name")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"directory {path.parent} does not exist")
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path} exists; pass overwrite=True (--overwrite) to replace it")
    return path


def atomic_write(path, write, *, overwrite: bool = False) -> Path:
    """Call ``write(tmp_path)``, then move the temporary file to ``path``.

    The temporary file sits in the same folder (a rename there is atomic) and
    is removed if ``write`` fails or is interrupted. Without ``overwrite`` the
    final step refuses an existing ``path`` even if it appeared meanwhile
    (another process writing the same output).
    """
    path = check_output(path, overwrite=overwrite)
    tmp = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    try:
        write(tmp)
        if _cancelled.is_set():
            raise WriteCancelled(f"interrupted: {path} was not written")
        if overwrite:
            os.replace(tmp, path)
        else:
            try:
                # link fails if the name exists: no window between check and rename
                os.link(tmp, path)
            except FileExistsError:
                raise OutputExistsError(
                    f"{path} appeared while writing; pass overwrite=True to replace it"
                ) from None
            except OSError:
                if path.exists():
                    raise OutputExistsError(f"{path} exists") from None
                os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_text(path, text: str, *, overwrite: bool = False) -> Path:
    """Write a text file atomically (UTF-8)."""
    return atomic_write(
        path, lambda p: Path(p).write_text(text, encoding="utf-8"), overwrite=overwrite
    )


def write_bytes(path, data: bytes, *, overwrite: bool = False) -> Path:
    """Write a binary file atomically."""
    return atomic_write(path, lambda p: Path(p).write_bytes(data), overwrite=overwrite)


# -- fit files ----------------------------------------------------------------------------
def tree_checksum(tree, attrs: dict) -> str:
    """SHA-256 over every group's variables (names, dims, dtypes, values) and ``attrs``."""
    h = hashlib.sha256()
    for group in sorted(tree.children):
        ds = tree[group].to_dataset()
        h.update(f"\x1egroup {group}".encode())
        for name in sorted(list(ds.data_vars) + [c for c in ds.coords]):
            var = ds[name]
            values = np.asarray(var.values)
            # text is hashed as text: netCDF gives fixed-width strings back as objects
            text = values.dtype.kind in "OUS"
            kind = "text" if text else values.dtype.str
            h.update(f"\x1f{name}:{var.dims}:{kind}:{values.shape}".encode())
            if text:
                h.update("\x1f".join(map(str, values.ravel())).encode())
            else:
                h.update(np.ascontiguousarray(values).tobytes())
        for key in sorted(ds.attrs):
            value = ds.attrs[key]
            value = value.tolist() if hasattr(value, "tolist") else value  # numpy -> Python
            h.update(f"\x1fattr {key}={value!r}".encode())
    for key in sorted(attrs):
        h.update(f"\x1etop {key}={attrs[key]}".encode())
    return h.hexdigest()


def write_tree(tree, path, attrs: dict, *, overwrite: bool = False) -> Path:
    """Save a fit's DataTree with ``attrs`` (strings), a checksum and the format number."""
    tree = tree.copy()
    attrs = {str(k): str(v) for k, v in attrs.items()}
    attrs |= {"bayescale_version": __version__, _FORMAT_ATTR: str(FORMAT_VERSION)}
    tree.attrs = attrs | {_CHECKSUM_ATTR: tree_checksum(tree, attrs)}
    return atomic_write(
        path, lambda p: tree.to_netcdf(str(p), engine="h5netcdf"), overwrite=overwrite
    )


def read_tree(path, *, config_attr: str, kind: str, groups=(), variables=None):
    """Open a fit file and verify it; every failure is a :class:`FitFileError`.

    Parameters
    ----------
    path : str or path-like
    config_attr : str
        The attribute holding the config JSON of the expected kind of fit.
    kind : str
        What was expected, for messages ("a loss-law fit").
    groups : sequence of str
        Groups the file must have.
    variables : dict, optional
        ``{group: [names]}`` that must be present.
    """
    import xarray as xr

    path = Path(path)
    if not path.exists():
        raise FitFileError(f"fit file {path} does not exist")
    try:
        tree = xr.open_datatree(str(path), engine="h5netcdf").load()
    except Exception as exc:  # noqa: BLE001 - any reader failure means a broken file
        raise FitFileError(
            f"cannot read fit file {path}: not a readable netCDF file "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
        ) from None
    attrs = dict(tree.attrs)
    if config_attr not in attrs:
        if any(k.startswith("bayescale_") and k.endswith("config") for k in attrs):
            other = next(k for k in attrs if k.endswith("config"))
            raise FitFileError(f"{path} is a bayescale fit of another kind ({other}), not {kind}")
        raise FitFileError(f"{path} is not a bayescale fit (no {config_attr!r} attribute)")
    try:
        fmt = int(attrs.get(_FORMAT_ATTR, "0"))
    except ValueError:
        raise FitFileError(
            f"{path}: unreadable format number {attrs.get(_FORMAT_ATTR)!r}"
        ) from None
    if fmt > FORMAT_VERSION:
        raise FitFileError(
            f"{path} was written by a newer bayescale ({attrs.get('bayescale_version', '?')}, "
            f"format {fmt}); this is {__version__} (format {FORMAT_VERSION}): upgrade bayescale"
        )
    if fmt < FORMAT_VERSION:
        raise FitFileError(
            f"{path} was written by bayescale {attrs.get('bayescale_version', '?')} (format "
            f"{fmt}), whose model differs from this version's: refit the data"
        )
    stored = attrs.pop(_CHECKSUM_ATTR, None)
    missing = [g for g in groups if g not in tree.children]
    if missing:
        raise FitFileError(f"{path} lacks group(s) {missing}: the file is incomplete or altered")
    for group, names in (variables or {}).items():
        gone = [v for v in names if v not in tree[group].to_dataset().variables]
        if gone:
            raise FitFileError(f"{path}: group {group!r} lacks {gone}: the file was altered")
    try:
        actual = tree_checksum(tree, attrs)
    except Exception as exc:  # noqa: BLE001 - undecodable contents are corruption too
        raise FitFileError(f"{path}: contents cannot be decoded ({exc})") from None
    if stored != actual:
        raise FitFileError(
            f"{path}: checksum mismatch, the file was altered or corrupted after it was "
            "written (refit, or restore it from a copy)"
        )
    return tree


def load_config_json(path, text: str) -> dict:
    """Parse a stored config, mapping failures to :class:`FitFileError`."""
    try:
        out = json.loads(text)
    except (TypeError, ValueError) as exc:
        raise FitFileError(f"{path}: stored config is not valid JSON ({exc})") from None
    if not isinstance(out, dict):
        raise FitFileError(f"{path}: stored config is not a JSON object")
    return out
