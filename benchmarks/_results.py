"""Shared helpers for benchmark scripts: machine info and RESULTS.md sections.

Each benchmark owns one section of ``benchmarks/RESULTS.md``, delimited by
``<!-- BEGIN name -->`` / ``<!-- END name -->``; rerunning a script replaces
only its own section, so the file can be regenerated piece by piece.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import re
from importlib import metadata
from pathlib import Path

RESULTS = Path(__file__).with_name("RESULTS.md")
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
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)
