"""What every fitted model shares: draws, sampling diagnostics, netCDF files.

The loss-law :class:`~bayescale.fit.Posterior` and the
:class:`~bayescale.downstream.DownstreamPosterior` differ in their model and
queries, not in how their DataTrees are read, checked and stored.
"""

from __future__ import annotations

import warnings

import numpy as np
import xarray as xr

from bayescale import __version__

RHAT_MAX = 1.01


class ConvergenceWarning(UserWarning):
    """R-hat above 1.01, divergent transitions or low ESS."""


class FitFileError(ValueError):
    """A saved fit is unreadable or does not match this package/data."""


class PosteriorBase:
    """Mixin for frozen dataclasses with ``tree``, ``data`` and ``config`` fields.

    Subclasses set ``_WARN_PREFIX`` and ``_WARN_ADVICE`` (the visible warning)
    and ``_SKIP_VARS`` (variables left out of the diagnostics).
    """

    _WARN_PREFIX = "sampling problems: "
    _WARN_ADVICE = "Intervals may be unreliable: run longer or raise target_accept."
    _SKIP_VARS: tuple = ()

    def draws(self, name: str) -> np.ndarray:
        """Posterior draws of one variable, chains stacked: shape (S, ...)."""
        arr = np.asarray(self.tree["posterior"][name].values)
        return arr.reshape((-1,) + arr.shape[2:])

    @property
    def n_draws(self) -> int:
        post = self.tree["posterior"]
        return int(post.sizes["chain"] * post.sizes["draw"])

    @property
    def families(self) -> tuple:
        return self.data.families

    def diagnostics(self) -> dict:
        """R-hat (max), bulk/tail ESS (min), divergences, and a pass/warn status."""
        return sampling_diagnostics(self.tree, self.config.method, skip=self._SKIP_VARS)

    def check(self, warn: bool = True) -> dict:
        """Run :meth:`diagnostics` and warn visibly about any problem."""
        diag = self.diagnostics()
        if warn and diag["problems"]:
            warnings.warn(
                self._WARN_PREFIX + "; ".join(diag["problems"]) + ". " + self._WARN_ADVICE,
                ConvergenceWarning,
                stacklevel=3,
            )
        return diag

    def _write(self, path, config_attr: str) -> None:
        tree = self.tree.copy()
        tree.attrs = dict(tree.attrs) | {
            config_attr: self.config.to_json(),
            "bayescale_version": __version__,
            "bayescale_data_hash": self.data.hash(),
        }
        tree.to_netcdf(str(path), engine="h5netcdf")


def draws_tree(source, coords: dict, dims: dict) -> xr.DataTree:
    """DataTree of a NUTS run (with its log likelihood) or of a dict of draws.

    A dict holds arrays shaped (chain, draw, ...); ``dims`` entries for
    variables it lacks are dropped.
    """
    if isinstance(source, dict):
        from arviz_base import from_dict

        dims = {k: v for k, v in dims.items() if k in source}
        return from_dict({"posterior": source}, coords=coords, dims=dims)
    from arviz_base import from_numpyro

    return from_numpyro(source, log_likelihood=True, coords=coords, dims=dims)


def jittered_inits(z: dict, n_chains: int, key, scale: float = 0.1) -> dict:
    """Chain starts around one point (unconstrained), so that R-hat can see disagreement."""
    import jax
    import jax.numpy as jnp

    keys = jax.random.split(key, len(z))
    return {
        name: z[name][None] + scale * jax.random.normal(k, (n_chains,) + jnp.shape(z[name]))
        for k, name in zip(keys, sorted(z), strict=True)
    }


def sampling_diagnostics(tree: xr.DataTree, method: str, *, skip=()) -> dict:
    """Worst R-hat, smallest bulk and tail ESS, divergences, problems and status.

    Variables named ``z_*`` (non-centred helpers) and those in ``skip`` are left
    out; entries constant across draws (fixed by construction) give NaN and are
    ignored.
    """
    out = {"method": method, "divergences": 0, "rhat_max": float("nan")}
    out.update({"ess_bulk_min": float("nan"), "ess_tail_min": float("nan"), "problems": []})
    if method != "nuts":
        out["status"] = "n/a (point estimate)"
        return out
    from arviz_stats import ess, rhat

    names = [v for v in tree["posterior"].data_vars if not v.startswith("z_") and v not in skip]
    post = tree["posterior"].to_dataset()[names]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        rh = rhat(post)
        eb = ess(post, method="bulk")
        et = ess(post, method="tail")

    def finite(ds) -> dict:
        vals = {v: np.asarray(ds[v].values, dtype=float).ravel() for v in ds.data_vars}
        return {v: x[np.isfinite(x)] for v, x in vals.items() if np.isfinite(x).any()}

    def smallest(ds):
        return min((float(x.min()) for x in finite(ds).values()), default=float("nan"))

    worst = sorted(((float(x.max()), v) for v, x in finite(rh).items()), reverse=True)[:3]
    out["rhat_max"] = worst[0][0] if worst else float("nan")
    out["ess_bulk_min"] = smallest(eb)
    out["ess_tail_min"] = smallest(et)
    out["rhat_worst"] = {v: r for r, v in worst}
    out["divergences"] = int(np.sum(tree["sample_stats"]["diverging"].values))
    if out["rhat_max"] > RHAT_MAX:
        top = ", ".join(f"{v} {r:.3f}" for r, v in worst)
        out["problems"].append(f"R-hat {out['rhat_max']:.3f} > {RHAT_MAX} (worst: {top})")
    if out["divergences"]:
        out["problems"].append(f"{out['divergences']} divergent transitions")
    n_chains = tree["posterior"].sizes["chain"]
    if np.isfinite(out["ess_bulk_min"]) and out["ess_bulk_min"] < 100 * min(n_chains, 4) / 4:
        out["problems"].append(f"low bulk ESS ({out['ess_bulk_min']:.0f})")
    out["status"] = "warn" if out["problems"] else "pass"
    return out


def read_tree(path, config_attr: str, *, kind: str, other_attr: str, other: str) -> xr.DataTree:
    """Open a saved fit and check that it is the expected kind and version.

    ``kind`` names what was expected ("a loss-law fit"); ``other`` says what a
    file carrying ``other_attr`` instead is, and how to read it.
    """
    try:
        tree = xr.open_datatree(str(path), engine="h5netcdf").load()
    except (OSError, ValueError) as exc:
        raise FitFileError(f"cannot read fit file {path}: {exc}") from None
    attrs = tree.attrs
    if config_attr not in attrs:
        if other_attr in attrs:
            raise FitFileError(f"{path} is {other}, not {kind}")
        raise FitFileError(f"{path} is not a bayescale fit (no {config_attr!r} attribute)")
    version = attrs.get("bayescale_version", "?")
    if version != __version__:
        warnings.warn(
            f"{path} was written by bayescale {version}; this is {__version__}",
            UserWarning,
            stacklevel=3,
        )
    return tree


def check_data_hash(path, tree: xr.DataTree, stored, data=None) -> None:
    """Raise :class:`FitFileError` unless the stored (and given) data match the file's hash."""
    expected = tree.attrs.get("bayescale_data_hash")
    if stored.hash() != expected:
        raise FitFileError(f"{path}: stored data do not match the stored hash (file corrupted?)")
    if data is not None and data.hash() != expected:
        raise FitFileError(f"{path} was fitted to different data (hash {expected})")
