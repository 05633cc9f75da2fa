"""Progress bars for long work (MAP search, sampling, plan, evaluate).

Bars come from ``tqdm.auto``: widgets in Jupyter, text in a terminal. By
default they show when someone is watching: stderr is a terminal or the code
runs in a Jupyter kernel; ``progress_bar=False`` (``--quiet``) silences them,
``True`` forces them.
"""

from __future__ import annotations

import contextlib
import os
import sys


def interactive() -> bool:
    """Whether a person is likely watching: a terminal on stderr, or a Jupyter kernel."""
    if os.environ.get("BAYESCALE_PROGRESS", "").lower() in ("0", "off", "false", "no"):
        return False
    if "ipykernel" in sys.modules:
        return True
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def resolve(progress_bar) -> bool:
    """``None`` means :func:`interactive`; otherwise the given flag."""
    return interactive() if progress_bar is None else bool(progress_bar)


def bar(iterable=None, *, total=None, desc: str = "", show: bool = True, unit: str = "it"):
    """A ``tqdm.auto`` bar over ``iterable`` (or a manual one with ``total``), or a no-op."""
    if not show:
        return _Quiet(iterable)
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, unit=unit, leave=False, dynamic_ncols=True)


class _Quiet:
    """What :func:`bar` returns when silent: iterates, updates and closes as tqdm does."""

    def __init__(self, iterable):
        self._it = iterable

    def __iter__(self):
        return iter(self._it if self._it is not None else ())

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def update(self, n=1):
        pass

    def set_description(self, desc=None, refresh=True):
        pass

    def set_postfix_str(self, s="", refresh=True):
        pass

    def close(self):
        pass


@contextlib.contextmanager
def stage(desc: str, show: bool):
    """A one-step bar naming a stage that has no inner progress (e.g. compilation)."""
    with bar(total=1, desc=desc, show=show) as b:
        yield b
        b.update(1)
