"""The vocabulary shared by the Python API and the command line.

Pure Python (no NumPy, no JAX), so that ``bayescale --help`` and argument
errors answer at once: the names of laws, exponent forms, prediction kinds,
the interval probability default, and the one grammar for counts such as
``175B`` or ``1.4T``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

LAWS = ("chinchilla", "overtrain")
EXPONENT_FORMS = ("pooled", "shared")
METHODS = ("nuts", "map")
#: where NUTS chains start (:class:`bayescale.inference.InferenceConfig`)
STARTS = ("map", "prior")
#: ``mean``: the family's law at the query; ``new_run``: what one fresh training run measures.
KINDS = ("mean", "new_run")
#: Interval probability of every query, summary, plan and report (named as in ArviZ).
DEFAULT_CI_PROB = 0.9

_SUFFIX = {"": 1.0, "k": 1e3, "m": 1e6, "b": 1e9, "g": 1e9, "t": 1e12}
_COUNT = re.compile(r"([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([kKmMbBgGtT]?)")
# below this a count of parameters or tokens is almost surely given in billions or millions
MIN_COUNT = 1e4


def parse_count(value) -> float:
    """A raw count from ``7e9``, ``6.9B``, ``300B``, ``1.4T``, ``125M`` or a number.

    Raises
    ------
    ValueError
        If the text is not a count, or the count is not finite and positive.
    """
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        count = float(value)
    else:
        text = str(value).strip().replace("_", "").replace(",", "")
        m = _COUNT.fullmatch(text)
        if not m:
            raise ValueError(
                f"{value!r} is not a count (use raw counts like 7e9, or suffixes K/M/B/T: 6.9B)"
            )
        count = float(m.group(1)) * _SUFFIX[m.group(2).lower()]
    if not math.isfinite(count) or count <= 0:
        raise ValueError(f"{value!r} must be a positive finite count")
    return count


def format_count(value: float) -> str:
    """``1.75e11`` -> ``175B``; ``3e11`` -> ``300B``; three significant digits."""
    v = float(value)
    if not math.isfinite(v):
        return str(v)
    for div, unit in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if abs(v) >= div:
            return f"{v / div:.3g}{unit}"
    return f"{v:.3g}"


def check_ci_prob(ci_prob) -> float:
    """``ci_prob`` as a float in (0, 1), or a ValueError naming it."""
    try:
        p = float(ci_prob)
    except (TypeError, ValueError):
        raise ValueError(f"ci_prob must be a number in (0, 1), got {ci_prob!r}") from None
    if not 0 < p < 1:
        raise ValueError(f"ci_prob must be in (0, 1), got {ci_prob!r} (e.g. 0.9 for 90%)")
    return p


def check_choice(name: str, value, choices) -> str:
    """``value`` if it is one of ``choices``, else a ValueError listing them."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}")
    return value


def did_you_mean(name: str, known) -> str:
    """`` (did you mean 'OPT'?)`` when ``name`` is close to one of ``known``, else ``""``."""
    import difflib

    known = [str(k) for k in known]
    lower = {k.lower(): k for k in known}
    if name.lower() in lower:
        return f" (did you mean {lower[name.lower()]!r}?)"
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


@dataclass(frozen=True)
class Target:
    """A model to predict: family, parameter and token counts, optionally its measured loss.

    Everywhere a target is taken (``plan``, ``write_report``, the command
    line), it can be given as a :class:`Target`, a dict with these keys, a
    tuple ``(family, params, tokens[, observed])`` or the text
    ``"FAMILY:N:D[:LOSS]"`` with counts such as ``175B`` (``"gpt3:175B:300B"``).
    """

    family: str
    params: float
    tokens: float
    observed: float | None = None

    def __post_init__(self):
        object.__setattr__(self, "family", str(self.family))
        for name in ("params", "tokens"):
            value = parse_count(getattr(self, name))
            if value < MIN_COUNT:
                raise ValueError(
                    f"target {name} {value:g} is below 1e4 and looks like billions; "
                    "pass raw counts (7e9 or '7B', not 7)"
                )
            object.__setattr__(self, name, value)
        if self.observed is not None:
            object.__setattr__(self, "observed", float(self.observed))

    @classmethod
    def parse(cls, spec) -> Target:
        """A :class:`Target` from any of the accepted forms (see the class docstring)."""
        if isinstance(spec, Target):
            return spec
        if isinstance(spec, dict):
            missing = {"family", "params", "tokens"} - set(spec)
            unknown = set(spec) - {"family", "params", "tokens", "observed"}
            if missing or unknown:
                raise ValueError(
                    f"a target dict needs family, params, tokens (and optionally observed); "
                    f"got {sorted(spec)}"
                )
            return cls(**spec)
        if isinstance(spec, (tuple, list)):
            if len(spec) not in (3, 4):
                raise ValueError(f"a target is (family, params, tokens[, observed]), got {spec!r}")
            return cls(*spec)
        parts = str(spec).split(":")
        if len(parts) < 3:
            raise ValueError(
                f"target {spec!r} must look like FAMILY:N:D or FAMILY:N:D:LOSS "
                "(e.g. gpt3:175B:300B)"
            )
        # FAMILY:N:D:LOSS when the last three fields are all numbers; a family name may hold ':'
        if len(parts) >= 4:
            try:
                n, d, obs = parts[-3:]
                return cls(":".join(parts[:-3]), parse_count(n), parse_count(d), float(obs))
            except ValueError:
                pass
        return cls(":".join(parts[:-2]), parts[-2], parts[-1])

    def __str__(self) -> str:
        base = f"{self.family}:{format_count(self.params)}:{format_count(self.tokens)}"
        return base if self.observed is None else f"{base}:{self.observed:g}"
