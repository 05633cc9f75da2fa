"""Convergence checks of a fit: R-hat, ESS, divergences and where they sit, advice.

Sampling problems are never silent: :func:`sampling_diagnostics` lists them,
posteriors raise them as a visible :class:`ConvergenceWarning`, and
:func:`convergence_advice` names the setting to change.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

RHAT_MAX = 1.01
#: Bulk ESS below which R-hat cannot resolve ``RHAT_MAX``: chains drawn from one
#: distribution (4 x 500 draws) exceed 1.01 by chance with probability 0.78 at
#: ESS 200, 0.32 at 400 and 0.07 at 600 (``benchmarks/rhat_resolution.py``);
#: Vehtari et al. (2021) ask for 400.
ESS_RESOLVE = 400
#: Above this R-hat chains disagree whatever the ESS: warm up longer as well.
RHAT_CHANCE = 1.05
#: A chain whose mean log density lies this far below the other chains' sits in a
#: lesser mode: within one mode the mean of a few hundred draws varies by well
#: under one unit (the draws' own log density has sd about sqrt(d / 2)).
LP_GAP = 2.0
#: A MAP spread below this share of its prior mean has fallen into the hierarchy's
#: neck: under the Gamma(2) spread priors a share this small has prior mass 0.5%.
SPREAD_COLLAPSED = 0.05
#: Where divergent draws are located: an entry is named when their mean lies at
#: least this many posterior sd from the other draws' mean ...
DIVERGENT_SHIFT = 0.5
#: ... and that shift, times the square root of the number of divergent draws,
#: reaches this (a chance shift of one of a few hundred entries rarely does).
DIVERGENT_SHIFT_Z = 4.0


class ConvergenceWarning(UserWarning):
    """R-hat above 1.01, divergent transitions, low ESS, or a MAP spread at zero."""


def _finite(ds) -> dict:
    vals = {v: np.asarray(ds[v].values, dtype=float).ravel() for v in ds.data_vars}
    return {v: x[np.isfinite(x)] for v, x in vals.items() if np.isfinite(x).any()}


def rhat_summary(post) -> tuple[float, list]:
    """Worst finite R-hat of a posterior Dataset, and its three worst ``(rhat, entry)``."""
    rh = _rhat_of(post)
    worst = sorted(((float(x.max()), v) for v, x in _finite(rh).items()), reverse=True)[:3]
    worst = [(r, worst_entry(rh[v])) for r, v in worst]
    return (worst[0][0] if worst else float("nan")), worst


def sampling_diagnostics(tree, method: str, *, skip=(), spreads=None) -> dict:
    """Worst R-hat, smallest bulk and tail ESS, divergences, problems and status.

    Variables named ``z_*`` (non-centred helpers) and those in ``skip`` are left
    out; entries constant across draws (fixed by construction) give NaN and are
    ignored. A point estimate has none of these; its problems are the
    hierarchy's ``spreads`` (site -> prior mean) that fell to zero
    (:func:`collapsed_spreads`).
    """
    out = {"method": method, "divergences": 0, "rhat_max": float("nan")}
    out.update({"ess_bulk_min": float("nan"), "ess_tail_min": float("nan"), "problems": []})
    out["draws"] = int(tree["posterior"].sizes["draw"])
    if method != "nuts":
        out["problems"] = collapsed_spreads(tree["posterior"], spreads or {})
        out["status"] = "warn" if out["problems"] else "n/a (point estimate)"
        return out
    from arviz_stats import ess

    names = [v for v in tree["posterior"].data_vars if not v.startswith("z_") and v not in skip]
    post = tree["posterior"].to_dataset()[names]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        eb = ess(post, method="bulk")
        et = ess(post, method="tail")

    def smallest(ds):
        return min((float(x.min()) for x in _finite(ds).values()), default=float("nan"))

    out["rhat_max"], worst = rhat_summary(post)
    out["ess_bulk_min"] = smallest(eb)
    out["ess_tail_min"] = smallest(et)
    out["rhat_worst"] = {v: r for r, v in worst}
    diverging = np.asarray(tree["sample_stats"]["diverging"].values, dtype=bool)
    out["divergences"] = int(diverging.sum())
    if out["rhat_max"] > RHAT_MAX:
        top = ", ".join(f"{v} {r:.3f}" for r, v in worst)
        out["problems"].append(f"R-hat {out['rhat_max']:.3f} > {RHAT_MAX} (worst: {top})")
    if out["divergences"]:
        sites = divergence_sites(post, diverging)
        out["divergence_sites"] = dict(sites)
        where = ", ".join(f"{'high' if d > 0 else 'low'} {v} ({d:+.1f} sd)" for v, d in sites)
        out["problems"].append(
            f"{out['divergences']} divergent transitions"
            + (f", their draws at {where}" if where else "")
        )
    n_chains = tree["posterior"].sizes["chain"]
    apart = None
    if out["rhat_max"] > RHAT_CHANCE:
        apart = chain_apart(post, tree["sample_stats"], worst)
    if apart is not None:
        out["chain_apart"] = apart
        out["problems"].append(chain_apart_text(apart, n_chains))
    if np.isfinite(out["ess_bulk_min"]) and out["ess_bulk_min"] < 100 * min(n_chains, 4) / 4:
        out["problems"].append(f"low bulk ESS ({out['ess_bulk_min']:.0f})")
    out["status"] = "warn" if out["problems"] else "pass"
    return out


def chain_apart(post, stats, worst) -> dict | None:
    """The one chain that sits apart from the others, if leaving it out settles R-hat.

    ``worst`` is :func:`rhat_summary`'s list. The chain is the one whose removal
    brings the worst entry's R-hat to ``RHAT_CHANCE`` or below, and the others'
    worst R-hat too. Returned: ``chain`` (0-based), ``entry``, its mean in that
    chain and in the others, and ``lp_gap``, that chain's mean log density
    minus the others' (NaN without ``lp``).
    """
    if not worst or post.sizes["chain"] < 3:
        return None
    entry = worst[0][1]
    name = entry.split("[")[0]
    da = post[name]
    idx = worst_index(_rhat_of(da))
    x = np.asarray(da.values, dtype=float)[(slice(None), slice(None), *idx)]
    n_chains = x.shape[0]
    left_out = [_rhat_array(np.delete(x, c, axis=0)) for c in range(n_chains)]
    chain = int(np.argmin(left_out))
    if not left_out[chain] <= RHAT_CHANCE:
        return None
    others = [c for c in range(n_chains) if c != chain]
    if not rhat_summary(post.isel(chain=others))[0] <= RHAT_CHANCE:
        return None
    gap = float("nan")
    if "lp" in stats:
        lp = np.asarray(stats["lp"].values, dtype=float).mean(axis=1)
        gap = float(lp[chain] - lp[others].mean())
    return {
        "chain": chain,
        "entry": entry,
        "mean": float(x[chain].mean()),
        "others_mean": float(x[others].mean()),
        "lp_gap": gap,
    }


def chain_apart_text(apart: dict, n_chains: int) -> str:
    """One line on :func:`chain_apart`'s chain, for the problems list."""
    text = (
        f"chain {apart['chain'] + 1} of {n_chains} sits apart ({apart['entry']} "
        f"{apart['mean']:.3g} against {apart['others_mean']:.3g} in the others)"
    )
    gap = apart["lp_gap"]
    if gap < -LP_GAP:
        text += f", at a log density {-gap:.1f} lower: a lesser mode of the posterior"
    elif gap > LP_GAP:
        text += f", at a log density {gap:.1f} higher: the others may have missed a better mode"
    return text


def _rhat_of(da):
    """ArviZ's R-hat of a DataArray or Dataset, quiet about constant entries."""
    from arviz_stats import rhat

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return rhat(da)


def _rhat_array(x: np.ndarray) -> float:
    """R-hat of one entry's draws shaped (chain, draw)."""
    import xarray as xr

    return float(_rhat_of(xr.DataArray(x, dims=("chain", "draw"))))


def divergence_sites(post, diverging, top: int = 3) -> list:
    """Sites whose divergent draws lie apart from the others: ``[(entry, shift), ...]``.

    ``shift`` is the divergent draws' mean minus the other draws' mean, in
    posterior sd, for each site's most shifted entry (the entries of one
    site tend to move together); a site is named when it reaches
    :data:`DIVERGENT_SHIFT` and :data:`DIVERGENT_SHIFT_Z` (see there), the
    ``top`` largest first. A funnel shows as its spread far below its usual
    values (``tau_beta`` at -1 sd): the site to reparameterise or to pin
    with data.
    """
    mask = np.asarray(diverging, dtype=bool).reshape(-1)
    n_div = int(mask.sum())
    if n_div == 0 or n_div == mask.size:
        return []
    found = []
    for name in post.data_vars:
        arr = np.asarray(post[name].values, dtype=float)
        flat = arr.reshape(mask.size, -1)
        sd = flat.std(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            shift = (flat[mask].mean(axis=0) - flat[~mask].mean(axis=0)) / sd
        size = np.where(np.isfinite(shift) & (sd > 0), np.abs(shift), 0.0)
        k = int(np.argmax(size))
        d = float(shift[k])
        if size[k] >= DIVERGENT_SHIFT and size[k] * math.sqrt(n_div) >= DIVERGENT_SHIFT_Z:
            index = tuple(int(i) for i in np.unravel_index(k, arr.shape[2:]))
            found.append((entry_name(post[name].isel(chain=0, draw=0), index), d))
    return sorted(found, key=lambda e: -abs(e[1]))[:top]


def collapsed_spreads(post, spreads: dict) -> list:
    """Problems for spreads of a point estimate below ``SPREAD_COLLAPSED`` of their prior mean.

    The density of a hierarchy grows without bound as a spread shrinks with its
    members' offsets, so a MAP can settle at a spread of about zero and pool
    those members completely, whether or not the data call for it.
    """
    out = []
    for name, prior_mean in spreads.items():
        if name not in post:
            continue
        point = post[name].isel(chain=0, draw=0)
        arr = np.asarray(point.values, dtype=float)
        share = arr / np.broadcast_to(np.asarray(prior_mean, dtype=float), arr.shape)
        for index in np.ndindex(arr.shape):
            if not share[index] < SPREAD_COLLAPSED:
                continue
            out.append(
                f"MAP spread {entry_name(point, index)} is {arr[index]:.2g}, under "
                f"{SPREAD_COLLAPSED:.0%} of its prior mean: complete pooling, which a MAP of "
                "a hierarchy falls into whether or not the data call for it"
            )
    return out


def worst_index(values) -> tuple:
    """Position of the largest finite entry of an array (``()`` for a scalar)."""
    arr = np.asarray(getattr(values, "values", values), dtype=float)
    # the same entries the reported maximum is taken over: an infinite R-hat
    # (a constant entry) must not lend its label to the largest finite one
    arr = np.where(np.isfinite(arr), arr, -np.inf)
    return tuple(int(i) for i in np.unravel_index(np.argmax(arr), arr.shape))


def worst_entry(values) -> str:
    """``name[label, ...]`` of the largest finite entry of a labelled array.

    The name alone for a scalar. A warning that says ``beta_f[olmo]`` tells
    the user which family to look at; ``beta_f`` alone does not.
    """
    return entry_name(values, worst_index(values))


def entry_name(values, index: tuple) -> str:
    """``name[label, ...]`` of the entry at ``index`` of a labelled array (scalar: ``name``)."""
    if np.ndim(values.values) == 0:
        return str(values.name)
    labels = [
        str(values[dim].values[i]) if dim in values.coords else str(i)
        for dim, i in zip(values.dims, index, strict=True)
    ]
    return f"{values.name}[{', '.join(labels)}]"


def _label_of(entry: str) -> str:
    """`` of LABEL`` for ``name[LABEL, ...]`` (its family or run); empty for a scalar."""
    return f" of {entry.split('[', 1)[1].split(',')[0].rstrip(']')}" if "[" in entry else ""


def raised_accept(target_accept: float) -> float:
    """The NUTS target acceptance to try after divergent transitions: 0.95, then 0.99."""
    return round(min(0.99, max(0.95, target_accept + 0.05)), 2)


def convergence_advice(diag: dict, config, style: str = "python") -> str:
    """What to change, named as the caller names it (Python keywords or CLI flags).

    ``config`` is the fit's :class:`~bayescale.inference.InferenceConfig`.
    """
    warm, samples, accept, nuts, partly, seed = {
        "python": (
            "num_warmup",
            "num_samples",
            "target_accept",
            'method="nuts"',
            "exponent_centring=0.5",
            "seed",
        ),
        "cli": (
            "--warmup",
            "--samples",
            "--target-accept",
            "--method nuts",
            "--exponent-centring 0.5",
            "--seed",
        ),
    }[style]
    tips = []
    longer_warm_up = False
    if any(p.startswith("MAP spread") for p in diag.get("problems", [])):
        tips.append(
            f"sample the spreads with NUTS ({nuts}), whose intervals take the families' "
            "partial pooling into account"
        )
    if any("divergent" in p for p in diag.get("problems", [])):
        higher = raised_accept(config.target_accept)
        if higher > config.target_accept:
            tips.append(f"raise {accept} (now {config.target_accept:g}, try {higher:g})")
        else:
            # at the highest acceptance offered, more adaptation is what is left
            longer_warm_up = True
            tips.append(
                f"warm up longer ({warm}={2 * config.num_warmup}; {accept} is already "
                f"{config.target_accept:g})"
            )
        funnel = [
            v
            for v, d in diag.get("divergence_sites", {}).items()
            if v.startswith(("tau_alpha", "tau_beta")) and d < 0
        ]
        if funnel and getattr(config, "exponent_centring", 0.0) is None:
            # measured on small simulated fits: a third of the divergences (docs/model-notes.md)
            tips.append(
                f"sample the exponents partly centred ({partly}): the divergent draws sit at "
                f"a small {funnel[0]}, a funnel of exponents the data pin only loosely"
            )
    if any(("R-hat" in p) or ("ESS" in p) for p in diag.get("problems", [])):
        ess = diag.get("ess_bulk_min", float("nan"))
        rhat = diag.get("rhat_max", float("nan"))
        if np.isfinite(ess) and 0 < ess < ESS_RESOLVE and not rhat > RHAT_CHANCE:
            # chains that agree still show R-hat > 1.01 at this ESS
            # (benchmarks/rhat_resolution.py); more draws, not more warm-up
            drawn = diag.get("draws", config.num_samples)
            more = int(math.ceil(drawn * ESS_RESOLVE / ess / 100.0) * 100)
            tips.append(
                f"draw more ({samples}={more}): the smallest bulk ESS is {ess:.0f}, and "
                f"below about {ESS_RESOLVE} effective draws chains that agree still "
                f"show R-hat above {RHAT_MAX}"
            )
        elif longer_warm_up:
            tips.append(f"draw more ({samples}={2 * config.num_samples})")
        else:
            tips.append(
                f"run longer ({warm}={2 * config.num_warmup}, {samples}={2 * config.num_samples})"
            )
    apart = diag.get("chain_apart")
    if apart is not None:
        # a chain held in another mode stays there, however long it runs
        tips.append(
            f"if chain {apart['chain'] + 1} stays apart, it sits in another mode: refit with "
            f"another {seed} (now {config.seed}) to see whether chains land there again, and "
            f"look at the data{_label_of(apart['entry'])}: a law that fits them poorly can "
            "leave several modes"
        )
    return "Intervals may be unreliable: " + (" and ".join(tips) or "refit") + "."
