"""Shared helpers for benchmark scripts: machine info and RESULTS.md sections.

Each benchmark owns one section of ``benchmarks/RESULTS.md``, delimited by
``<!-- BEGIN name -->`` / ``<!-- END name -->``; rerunning a script replaces
only its own section, so the file can be regenerated piece by piece.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import platform
import re
from importlib import metadata
from pathlib import Path

from bayescale.fitfile import write_text

RESULTS = Path(__file__).with_name("RESULTS.md")
RESULTS_DIR = Path(__file__).with_name("results")
_EARLIER = "## Earlier model (v0.1"
_HEADER = (
    "# Benchmark results\n\n"
    "Every section is written by the script named in it; rerun that script "
    "(`uv run python benchmarks/<name>.py`) to regenerate it.\n"
)


def machine_info() -> str:
    """One line with date, machine and package versions."""
    versions = []
    for pkg in ("bayescale", "jax", "numpyro", "arviz", "numpy", "scipy"):
        try:
            versions.append(f"{pkg} {metadata.version(pkg)}")
        except metadata.PackageNotFoundError:
            pass
    cpu = platform.processor() or platform.machine()
    return (
        f"{_dt.datetime.now().strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} CPU cores ({cpu}), "
        f"Python {platform.python_version()}; " + ", ".join(versions)
    )


def frame_to_markdown(df, floatfmt: str = ".4g") -> str:
    """A pandas DataFrame as a GitHub Markdown table (no extra dependency)."""
    cols = [str(c) for c in df.columns]

    def fmt(v):
        if isinstance(v, float):
            return "" if v != v else format(v, floatfmt)
        return str(v)

    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in df.itertuples(index=False):
        lines.append("| " + " | ".join(fmt(v) for v in row) + " |")
    return "\n".join(lines)


def write_section(name: str, body: str, path: Path = RESULTS) -> None:
    """Replace (or append) the section ``name`` of RESULTS.md with ``body``."""
    text = path.read_text() if path.exists() else _HEADER
    block = f"<!-- BEGIN {name} -->\n{body.strip()}\n<!-- END {name} -->"
    pattern = re.compile(
        rf"<!-- BEGIN {re.escape(name)} -->.*?<!-- END {re.escape(name)} -->", re.DOTALL
    )
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text)
    elif _EARLIER in text:
        # new sections go above the kept v0.1 numbers
        head, tail = text.split(_EARLIER, 1)
        text = head.rstrip() + "\n\n" + block + "\n\n" + _EARLIER + tail
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    write_text(path, text, overwrite=True)  # each script owns and replaces its section


def _clean(value):
    """JSON-safe copy: NaN -> None, numpy scalars -> Python, frames -> records."""
    if hasattr(value, "to_dict") and hasattr(value, "columns"):
        return _clean(value.to_dict(orient="records"))
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, str):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(name: str, payload: dict, directory: Path = RESULTS_DIR) -> Path:
    """Write ``results/<name>.json``: the machine-readable twin of a RESULTS.md section."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.json"
    body = {"name": name, "machine": machine_info(), **_clean(payload)}
    write_text(path, json.dumps(body, indent=1, sort_keys=False) + "\n", overwrite=True)
    return path
