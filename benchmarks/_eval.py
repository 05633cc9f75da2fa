"""Shared pieces of the evaluation benchmarks (``eval_*.py``): fit logs, coverage, headers."""

from __future__ import annotations

import argparse
import os
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from _results import frame_to_markdown, machine_info

from bayescale.evaluate import calibration


def parser(doc: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="reduced protocol; RESULTS.md untouched")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--save", type=Path, help="also write every prediction row to this CSV")
    p.add_argument("--no-write", action="store_true", help="do not touch RESULTS.md")
    return p


class Timer:
    """Wall time of the whole benchmark, and the load of the shared machine at start."""

    def __init__(self):
        self.start = time.perf_counter()
        self.load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.start


def header(title: str, timer: Timer, settings: str) -> str:
    return (
        f"## {title}\n\n{machine_info()}; load average at start {timer.load:.1f} "
        f"(shared machine); wall time {timer.seconds / 60:.1f} min.\n\nSettings: {settings}"
    )


def fit_log(points: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(points.attrs.get("fits", []))


def fit_log_line(points: pd.DataFrame) -> str:
    """One line on every bayescale fit of a run: how many, time, worst diagnostics."""
    log = fit_log(points)
    if log.empty:
        return "No bayescale fits."
    nuts = log[log["method"] != "map"]
    line = (
        f"{len(log)} bayescale fits ({len(nuts)} NUTS, {len(log) - len(nuts)} MAP), "
        f"{log['seconds'].sum() / 60:.1f} min in total"
    )
    if len(nuts):
        rhat = pd.to_numeric(nuts["rhat_max"], errors="coerce")
        ess = pd.to_numeric(nuts["ess_bulk_min"], errors="coerce")
        div = pd.to_numeric(nuts["divergences"], errors="coerce").fillna(0)
        line += (
            f"; NUTS: median {nuts['seconds'].median():.0f} s per fit, worst R-hat "
            f"{rhat.max():.3f} (median {rhat.median():.3f}), min bulk ESS {ess.min():.0f}, "
            f"{int(div.sum())} divergences in {int((div > 0).sum())} fits "
            f"({int((rhat > 1.01).sum())} fits with R-hat > 1.01)"
        )
    return line + "."


def coverage_markdown(points: pd.DataFrame) -> str:
    cal = calibration(points)
    if cal.empty:
        return "No interval predictions."
    return frame_to_markdown(cal, floatfmt=".3g")


def pick(summary: pd.DataFrame, **where) -> pd.DataFrame:
    out = summary
    for k, v in where.items():
        out = out[out[k] == v]
    return out


def quiet():
    """Sampling warnings are recorded in the fit log; keep the console readable."""
    warnings.filterwarnings("ignore", message="sampling problems")
    np.seterr(all="ignore")
