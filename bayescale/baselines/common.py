"""Point-estimate results of the published recipes and the input checks they share."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import optimize

from bayescale import laws
from bayescale.options import MIN_COUNT as _MIN_COUNT

# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class ChinchillaFit:
    """Point estimate of ``L = E + A / N**alpha + B / D**beta``.

    ``loss`` is the fit's objective at the optimum (half the sum of squared
    residuals for the Hitchhiker fit, the Huber sum -- or mean -- for
    Hoffmann's); ``success`` is the optimiser's convergence flag for the kept
    start; ``method`` names the estimator.
    """

    E: float
    A: float
    B: float
    alpha: float
    beta: float
    loss: float
    success: bool
    method: str

    def predict(self, params, tokens) -> np.ndarray:
        """Loss in nats at raw parameter and token counts (broadcasting)."""
        n = np.asarray(params, dtype=float)
        d = np.asarray(tokens, dtype=float)
        return np.asarray(laws.chinchilla(n, d, self.E, self.A, self.B, self.alpha, self.beta))

    def compute_optimal(self, flops) -> tuple[np.ndarray, np.ndarray]:
        """Compute-optimal ``(N*, D*)`` at budget ``C = 6 N D``."""
        import jax

        c = np.asarray(flops, dtype=float)
        # a point estimate in float64, as the fit itself
        with jax.enable_x64(True):
            law = laws.from_published(self.E, self.A, self.B, self.alpha, self.beta)
            n_opt, d_opt = laws.compute_optimal(c, law)
            return np.asarray(n_opt), np.asarray(d_opt)


@dataclass(frozen=True)
class OvertrainFit:
    """Point estimate of Gadre et al.'s ``L(C, M) = E + (a M**eta + b M**-eta) C**-eta``."""

    E: float
    a: float
    b: float
    eta: float
    loss: float = float("nan")
    success: bool = True
    method: str = "gadre"

    def predict(self, params, tokens) -> np.ndarray:
        """Loss at raw counts, with ``C = 6 N D`` and ``M = D / N``."""
        n = np.asarray(params, dtype=float)
        d = np.asarray(tokens, dtype=float)
        return np.asarray(laws.overtrain(6.0 * n * d, d / n, self.E, self.a, self.b, self.eta))

    @property
    def M_star(self) -> float:
        """Loss-optimal token multiplier ``(b / a)**(1 / (2 eta))``."""
        return float(laws.optimal_tok_per_param(self.a, self.b, self.eta))


@dataclass(frozen=True)
class DownstreamFit:
    """Point estimate of Gadre et al.'s ``Err(L) = eps - k exp(-gamma L)``."""

    eps: float
    k: float
    gamma: float
    loss: float = float("nan")
    success: bool = True
    method: str = "gadre-downstream"

    def predict(self, loss) -> np.ndarray:
        """Average top-1 error at validation loss ``loss`` (nats)."""
        return downstream_np(np.asarray(loss, dtype=float), self.eps, self.k, self.gamma)


# ------------------------------------------------------------------------ validation


def vector(name: str, x, *, positive: bool = True) -> np.ndarray:
    try:
        arr = np.asarray(x, dtype=float)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be numeric ({exc})") from None
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array, got shape {arr.shape}")
    bad = np.flatnonzero(~np.isfinite(arr))
    if bad.size:
        raise ValueError(
            f"{name} has {bad.size} NaN or infinite value(s) at positions {bad[:8].tolist()}"
        )
    if positive:
        bad = np.flatnonzero(arr <= 0)
        if bad.size:
            raise ValueError(
                f"{name} must be > 0 but has {bad.size} non-positive value(s) at positions "
                f"{bad[:8].tolist()} (e.g. {arr[bad[0]]:g})"
            )
    return arr


def same_length(arrays: dict) -> int:
    lengths = {k: v.shape[0] for k, v in arrays.items()}
    if len(set(lengths.values())) > 1:
        desc = ", ".join(f"{k}: {n}" for k, n in lengths.items())
        raise ValueError(f"mismatched lengths ({desc}); pass one value per point")
    return next(iter(lengths.values()))


def check_points(n: int, n_min: int, what: str) -> None:
    if n < n_min:
        raise ValueError(f"too few points: {what} needs at least {n_min}, got {n}")


def check_sizes(params, tokens, loss, *, n_min: int, what: str):
    n = vector("params", params)
    d = vector("tokens", tokens)
    y = vector("loss", loss)
    check_points(same_length({"params": n, "tokens": d, "loss": y}), n_min, what)
    for name, arr in (("params", n), ("tokens", d)):
        small = np.flatnonzero(arr < _MIN_COUNT)
        if small.size:
            raise ValueError(
                f"{name} has values below 1e4 at positions {small[:8].tolist()} "
                f"(e.g. {arr[small[0]]:g}); pass raw counts, not billions or millions"
            )
    return n, d, y


def grid_array(grid, default: np.ndarray, width: int, names: str) -> np.ndarray:
    g = default if grid is None else np.asarray(grid, dtype=float)
    if g.ndim != 2 or g.shape[1] != width or g.shape[0] == 0:
        raise ValueError(f"grid must have shape (n_starts, {width}) with columns {names}")
    if not np.all(np.isfinite(g)):
        raise ValueError("grid has NaN or infinite starting values")
    return g


def downstream_np(loss, eps, k, gamma):
    # numpy twin of laws.downstream_error: float64 and no JAX dispatch inside SciPy loops
    return eps - k * np.exp(-gamma * loss)


def multistart_lsq(residuals, jacobian, starts, lower):
    """Run ``least_squares`` (TRF) from every start; keep the lowest cost."""
    best = None
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        for x0 in starts:
            try:
                res = optimize.least_squares(
                    residuals, x0, jac=jacobian, bounds=(lower, np.inf), method="trf"
                )
            except ValueError:  # non-finite residuals at this start
                continue
            if np.isfinite(res.cost) and (best is None or res.cost < best.cost):
                best = res
    if best is None:
        raise RuntimeError("no start of the grid gave a finite fit")
    return best
