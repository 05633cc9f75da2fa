"""Tidy loss table → validated arrays (:class:`ScalingData`).

With :mod:`bayescale.tables` (which reads and checks the table), this is the only
place that sees pandas on the way in. It validates the table
once, applies the warm-up cut and log-spaced thinning (both counted, never
silent) and converts everything to integer indices and float arrays.
"""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pandas as pd

from bayescale.datachecks import (
    LossScaleWarning,
    warn_cut_runs,
    warn_one_schedule,
    warn_rising_runs,
    warn_several_finals,
    warn_weak_families,
)
from bayescale.options import did_you_mean
from bayescale.tables import DataError, validate_frame

DEFAULT_MIN_TOKENS = 1e10
DEFAULT_WARMUP_FRACTION = 0.1
DEFAULT_MAX_POINTS = 50
_PERPLEXITY_THRESHOLD = 15.0
_PERPLEXITY_MEDIAN = 7.0
#: The group of the families that share their ``group`` label with no other family.
LONE_GROUP = "(families alone in their group)"


def warmup_cut(final_tokens, min_tokens: float | None, fraction: float | None):
    """Tokens below which a run's intermediate checkpoints are warm-up.

    The cut is ``min(min_tokens, fraction * final_tokens)``: about 10B tokens
    for long runs (Choshen et al.) but never more than a ``fraction`` of a
    short run, so that small models keep their curves. ``min_tokens`` None
    (or NaN): no cut (``-inf``); ``fraction`` None: the absolute cut alone.
    """
    final_tokens = np.asarray(final_tokens, dtype=float)
    absolute = np.broadcast_to(
        np.asarray(np.nan if min_tokens is None else min_tokens, dtype=float), final_tokens.shape
    )
    cut = absolute if fraction is None else np.minimum(absolute, float(fraction) * final_tokens)
    return np.where(np.isnan(cut), -np.inf, cut)


@dataclass(frozen=True)
class ScalingData:
    """Validated arrays for the model.

    Observations are sorted by run then tokens, so the previous checkpoint of
    observation ``i`` within its run is ``i - 1`` whenever ``first[i]`` is
    False. Families keep the order of first appearance.

    Attributes
    ----------
    families : tuple of str
        Family labels (coordinate ``family``).
    family_scale : ndarray, shape (F,)
        Fixed per-family loss constant (median kept loss); the model works on
        ``loss / family_scale`` so families on different scales pool.
    runs : tuple of str
        Run labels (coordinate ``run``).
    run_family : ndarray of int, shape (R,)
    run_params : ndarray, shape (R,)
    run_seed : tuple of str
    obs_run : ndarray of int, shape (n,)
    tokens, loss : ndarray, shape (n,)
    first : ndarray of bool, shape (n,)
        True for the first kept checkpoint of each run.
    report : pandas.DataFrame
        Per family: rows in, rows cut by warm-up, rows thinned, rows kept.
    min_tokens : float
        The absolute bound of the warm-up cut (``nan``: none).
    warmup_fraction : float
        The relative bound of the warm-up cut (``nan``: none); see
        :func:`warmup_cut`.
    lr_ref : float
        The largest learning rate of the table (``nan``: no ``lr`` column).
        Each run's schedule is normalised by its own peak rate.
    run_planned : ndarray, shape (R,), optional
        Each run's planned total tokens (``planned_tokens`` column; ``nan``
        where not given); ``None`` without the column. A run whose plan lies
        past its last checkpoint is still training.
    family_group : tuple of str, optional
        Each family's group (``group`` column): families of one group (one
        lab's suite, one evaluation metric) share a group-level shift of the
        population law (see :mod:`bayescale.model`). ``None`` without the
        column, or when it would not group anything (:func:`family_groups`).
    grid_run, grid_tokens, grid_eta, grid_area : ndarray, shape (G,), optional
        Every logged row of every run's schedule (before the warm-up cut and
        thinning), runs in order: see :func:`bayescale.schedules.grid`. A
        run without a schedule has one row ``(1, 1, 1)``: a constant rate.
    """

    families: tuple
    family_scale: np.ndarray
    runs: tuple
    run_family: np.ndarray
    run_params: np.ndarray
    run_seed: tuple
    obs_run: np.ndarray
    tokens: np.ndarray
    loss: np.ndarray
    first: np.ndarray
    report: pd.DataFrame = field(compare=False, repr=False)
    min_tokens: float = DEFAULT_MIN_TOKENS
    warmup_fraction: float = DEFAULT_WARMUP_FRACTION
    lr_ref: float = float("nan")
    run_planned: np.ndarray | None = field(default=None, repr=False)
    family_group: tuple | None = field(default=None, repr=False)
    grid_run: np.ndarray | None = field(default=None, repr=False)
    grid_tokens: np.ndarray | None = field(default=None, repr=False)
    grid_eta: np.ndarray | None = field(default=None, repr=False)
    grid_area: np.ndarray | None = field(default=None, repr=False)

    @property
    def has_schedules(self) -> bool:
        return bool(np.isfinite(self.lr_ref))

    def schedule(self, run: int):
        """The :class:`~bayescale.schedules.Grid` of run ``run`` (``None`` without schedules)."""
        from bayescale.schedules import Grid

        if not self.has_schedules:
            return None
        rows = self.grid_run == run
        return Grid(self.grid_tokens[rows], self.grid_eta[rows], self.grid_area[rows])

    @property
    def groups(self) -> tuple:
        """Group labels in order of first appearance (empty without groups)."""
        return tuple(dict.fromkeys(self.family_group or ()))

    @property
    def n_families(self) -> int:
        return len(self.families)

    @property
    def n_runs(self) -> int:
        return len(self.runs)

    @property
    def n_obs(self) -> int:
        return int(self.loss.shape[0])

    @property
    def obs_family(self) -> np.ndarray:
        return self.run_family[self.obs_run]

    def hash(self) -> str:
        """SHA-256 of the arrays and labels the model sees."""
        h = hashlib.sha256()
        for arr in (self.family_scale, self.run_family, self.run_params, self.obs_run):
            h.update(np.ascontiguousarray(arr).tobytes())
        for arr in (self.tokens, self.loss):
            h.update(np.ascontiguousarray(arr, dtype=np.float64).tobytes())
        h.update("\x1f".join(self.families).encode())
        h.update("\x1f".join(self.runs).encode())
        if self.run_planned is not None:
            h.update(np.ascontiguousarray(self.run_planned, dtype=np.float64).tobytes())
        if self.family_group is not None:
            h.update(("group:" + "\x1f".join(self.family_group)).encode())
        if self.has_schedules:
            h.update(np.float64(self.lr_ref).tobytes())
            for arr in (self.grid_run, self.grid_tokens, self.grid_eta, self.grid_area):
                h.update(np.ascontiguousarray(arr, dtype=np.float64).tobytes())
        return h.hexdigest()[:16]

    def family_index(self, family: str) -> int:
        """Position of ``family``; a KeyError (with a suggestion) if it is not fitted."""
        try:
            return self.families.index(family)
        except ValueError:
            raise KeyError(
                f"family {family!r} is not in the data{did_you_mean(family, self.families)}; "
                f"fitted: {list(self.families)}"
            ) from None

    def inputs(self):
        """The arrays the model consumes (:class:`bayescale.model.ModelInputs`).

        Built once per data set (queries ask for them often, and with
        schedules they hold per-checkpoint matrices); treat them as read-only.
        """
        return self._inputs

    @cached_property
    def _inputs(self):
        from bayescale.model import ModelInputs
        from bayescale.seeds import single_seed_var

        y = np.log(self.loss / self.family_scale[self.obs_family])
        sched = {}
        if self.has_schedules:
            from bayescale.schedules import features

            rows = [np.flatnonzero(self.obs_run == r) for r in range(self.n_runs)]
            feats = [features(self.schedule(r), self.tokens[rows[r]]) for r in range(self.n_runs)]
            width = max(1, max(f[1].shape[1] for f in feats))
            log_area = np.empty(self.n_obs)
            # columns past a run's own rate changes are zero drops at eta = 1: they add nothing
            mats = np.zeros((3, self.n_obs, width))
            mats[1] = 1.0
            for r, (la, *m) in enumerate(feats):
                log_area[rows[r]] = la
                for j, arr in enumerate(m):
                    mats[j, rows[r], : arr.shape[1]] = arr
            sched = {"log_area": log_area, "anneal": tuple(mats)}
        inputs = ModelInputs(
            run_family=np.asarray(self.run_family, dtype=np.int32),
            log_n=np.log(self.run_params),
            obs_run=np.asarray(self.obs_run, dtype=np.int32),
            log_d=np.log(self.tokens),
            first=np.asarray(self.first, dtype=bool),
            y=y,
            n_families=self.n_families,
            run_single=np.bincount(self.obs_run, minlength=self.n_runs) == 1,
            **sched,
            **self._group_inputs(),
        )
        return inputs._replace(single_seed_var=single_seed_var(inputs))

    def _group_inputs(self) -> dict:
        if self.family_group is None:
            return {}
        code = {g: i for i, g in enumerate(self.groups)}
        return {
            "family_group": np.array([code[g] for g in self.family_group], dtype=np.int32),
            "n_groups": len(code),
        }

    def to_frame(self) -> pd.DataFrame:
        """The kept checkpoints as a tidy table."""
        frame = pd.DataFrame(
            {
                "family": np.asarray(self.families, dtype=object)[self.obs_family],
                "run": np.asarray(self.runs, dtype=object)[self.obs_run],
                "params": self.run_params[self.obs_run],
                "tokens": self.tokens,
                "loss": self.loss,
                "seed": np.asarray(self.run_seed, dtype=object)[self.obs_run],
            }
        )
        if self.family_group is not None:
            frame["group"] = np.asarray(self.family_group, dtype=object)[self.obs_family]
        return frame

    @classmethod
    def from_frame(
        cls,
        df: pd.DataFrame,
        *,
        families=None,
        min_tokens: float | None = DEFAULT_MIN_TOKENS,
        min_tokens_by_family: dict | None = None,
        warmup_fraction: float | None = DEFAULT_WARMUP_FRACTION,
        max_points_per_run: int | None = DEFAULT_MAX_POINTS,
    ) -> ScalingData:
        """Validate a tidy table and convert it to arrays.

        Parameters
        ----------
        df : pandas.DataFrame
            Tidy loss table (see :func:`validate_frame`). An ``is_final``
            column marks each run's last checkpoint; without it the largest
            ``tokens`` of each run is taken as final.
        families : list of str, optional
            Keep only these families (in this order).
        min_tokens : float or None
            Warm-up cut: intermediate checkpoints below this many tokens are
            dropped; a run's final checkpoint is always kept. ``None`` keeps all.
        min_tokens_by_family : dict, optional
            Per-family override of ``min_tokens``.
        warmup_fraction : float or None
            The cut of a run is at most this fraction of its final tokens
            (:func:`warmup_cut`), so short runs keep their curves. ``None``:
            ``min_tokens`` alone.
        max_points_per_run : int or None
            Thin dense curves to at most this many log-spaced checkpoints per
            run (the final one always kept) so that digitised curves with
            hundreds of points do not dominate. ``None`` keeps all.
        """
        clean = validate_frame(df)
        if families is not None:
            families = [str(f) for f in families]
            unknown = sorted(set(families) - set(clean["family"]))
            if unknown:
                raise DataError(
                    f"unknown famil{'y' if len(unknown) == 1 else 'ies'} {unknown}; "
                    f"the table has {sorted(clean['family'].unique())}"
                )
            clean = clean[clean["family"].isin(families)]
        clean = clean.sort_values(["family", "run", "tokens"], kind="stable")
        last = (
            clean.groupby(["family", "run"], sort=False)["tokens"].transform("max").to_numpy()
            == clean["tokens"].to_numpy()
        )
        final = last
        if "is_final" in clean.columns:
            marked = clean["is_final"].to_numpy(dtype=bool)  # parsed by validate_frame
            n_marked = (
                clean.assign(_f=marked)
                .groupby(["family", "run"], sort=False)["_f"]
                .transform("sum")
                .to_numpy()
            )
            warn_several_finals(clean, n_marked)
            # a run whose final checkpoint was removed upstream still needs one
            final = marked | (last & (n_marked == 0))
        clean = clean.assign(_final=final)
        grids, lr_ref = _schedule_grids(clean)

        absolute = np.full(len(clean), np.nan if min_tokens is None else float(min_tokens))
        for fam, thr in (min_tokens_by_family or {}).items():
            absolute[(clean["family"] == fam).to_numpy()] = np.nan if thr is None else thr
        run_end = clean.groupby(["family", "run"], sort=False)["tokens"].transform("max").to_numpy()
        if "planned_tokens" in clean.columns:
            # a run still training is cut relative to where it will end
            run_end = np.fmax(run_end, clean["planned_tokens"].to_numpy())
        thresholds = warmup_cut(run_end, absolute, warmup_fraction)
        keep_warm = (clean["tokens"].to_numpy() >= thresholds) | clean["_final"].to_numpy()
        n_in = clean.groupby("family", sort=False).size()
        cut = clean[~keep_warm].groupby("family", sort=False).size()
        warn_cut_runs(clean, keep_warm)
        clean = clean[keep_warm]
        if grids is None:
            warn_rising_runs(clean)
        else:
            warn_one_schedule(grids)

        if max_points_per_run is not None:
            keep = np.zeros(len(clean), dtype=bool)
            pos = 0
            for _, grp in clean.groupby(["family", "run"], sort=False):
                keep[pos : pos + len(grp)] = _thin_mask(
                    grp["tokens"].to_numpy(), grp["_final"].to_numpy(), max_points_per_run
                )
                pos += len(grp)
            thinned = clean[~keep].groupby("family", sort=False).size()
            clean = clean[keep]
        else:
            thinned = pd.Series(dtype=int)

        if families is None:
            order = list(dict.fromkeys(clean["family"]))
        else:
            order = [f for f in families if f in set(clean["family"])]
        fam_code = {f: i for i, f in enumerate(order)}
        clean = clean.assign(_fam=clean["family"].map(fam_code)).sort_values(
            ["_fam", "run", "tokens"], kind="stable"
        )
        big = clean["loss"].to_numpy() > _PERPLEXITY_THRESHOLD
        # trained language models reach a few nats; a family whose typical loss stays
        # above ~7 nats (perplexity ~1100) is far more likely perplexity than cross-entropy
        medians = clean.groupby("family", sort=False)["loss"].median()
        high = medians[medians > _PERPLEXITY_MEDIAN]
        if big.any() or len(high):
            fams = sorted(set(clean.loc[big, "family"]) | set(high.index))
            warnings.warn(
                f"column 'loss' has {int(big.sum())} kept value(s) above {_PERPLEXITY_THRESHOLD:g} "
                f"and {len(high)} famil{'y' if len(high) == 1 else 'ies'} with a median loss "
                f"above {_PERPLEXITY_MEDIAN:g} nats (families {fams}); this looks like "
                "perplexity. Pass log-perplexity (cross-entropy in nats) instead",
                LossScaleWarning,
                stacklevel=2,
            )
        run_keys = list(dict.fromkeys(zip(clean["family"], clean["run"], strict=True)))
        run_code = {k: i for i, k in enumerate(run_keys)}
        obs_run = np.array(
            [run_code[k] for k in zip(clean["family"], clean["run"], strict=True)], dtype=np.int32
        )
        first_rows = clean.groupby(["family", "run"], sort=False).head(1)
        run_family = np.array([fam_code[f] for f, _ in run_keys], dtype=np.int32)
        run_params = first_rows["params"].to_numpy(dtype=float)
        run_seed = tuple(first_rows["seed"].astype(str))
        # run labels must be unique; qualify with the family only where they clash
        bare = [r for _, r in run_keys]
        clash = {r for r in bare if bare.count(r) > 1}
        runs = tuple(f"{f}/{r}" if r in clash else r for f, r in run_keys)
        first = np.ones(len(obs_run), dtype=bool)
        first[1:] = obs_run[1:] != obs_run[:-1]
        loss = clean["loss"].to_numpy(dtype=float)
        scale = np.array([np.median(loss[run_family[obs_run] == i]) for i in range(len(order))])

        report = pd.DataFrame(
            {
                "family": order,
                "rows_in": [int(n_in.get(f, 0)) for f in order],
                "cut_warmup": [int(cut.get(f, 0)) for f in order],
                "thinned": [int(thinned.get(f, 0)) for f in order],
                "kept": [int((clean["family"] == f).sum()) for f in order],
                "runs": [int((run_family == i).sum()) for i in range(len(order))],
            }
        )
        if len(order) == 0 or len(loss) == 0:
            raise DataError("no checkpoints left after filtering; check `families`/`min_tokens`")
        fam_of_obs = run_family[obs_run]
        tokens_kept = clean["tokens"].to_numpy(dtype=float)
        spans = [float(np.ptp(np.log(tokens_kept[fam_of_obs == i]))) for i in range(len(order))]
        warn_weak_families(report, run_family, run_params, spans)
        sched = {}
        if "group" in clean.columns:
            sched["family_group"] = family_groups(clean, order)
        if "planned_tokens" in clean.columns:
            sched["run_planned"] = first_rows["planned_tokens"].to_numpy(dtype=float)
        if grids is not None:
            sched |= {
                "lr_ref": lr_ref,
                "grid_run": np.concatenate(
                    [
                        np.full(grids[k].tokens.size, i, dtype=np.int32)
                        for i, k in enumerate(run_keys)
                    ]
                ),
                **{
                    f"grid_{name}": np.concatenate([getattr(grids[k], name) for k in run_keys])
                    for name in ("tokens", "eta", "area")
                },
            }
        return cls(
            families=tuple(order),
            family_scale=scale,
            runs=runs,
            run_family=run_family,
            run_params=run_params,
            run_seed=run_seed,
            obs_run=obs_run,
            tokens=clean["tokens"].to_numpy(dtype=float),
            loss=loss,
            first=first,
            report=report,
            min_tokens=float("nan") if min_tokens is None else float(min_tokens),
            warmup_fraction=float("nan") if warmup_fraction is None else float(warmup_fraction),
            **sched,
        )


def family_groups(clean: pd.DataFrame, order: list) -> tuple | None:
    """Each family's label in the ``group`` column, or ``None`` when it groups nothing.

    A family belongs to one group (a :class:`DataError` otherwise). Groups
    matter only when there are two or more of them and one holds two or more
    families; else the column is ignored with a warning, because a single
    group is the population itself and one family per group is no grouping.
    Two or more families that each are alone in their group form one group,
    :data:`LONE_GROUP`: a lone family's group shift is told apart from its own
    offsets by the priors only, and that ridge kept chains from mixing (the
    demo's families grouped by metric, six of them alone: R-hat 1.13 and 513
    divergences; with the lone families as one group 1.03 and 10).
    """
    per_family = clean.groupby("family", sort=False)["group"].unique()
    mixed = {f: list(g) for f, g in per_family.items() if len(g) > 1}
    if mixed:
        fam, labels = next(iter(mixed.items()))
        raise DataError(
            f"column 'group' gives family '{fam}' several groups {sorted(labels)[:4]}; "
            "a family belongs to one group"
        )
    labels = tuple(str(per_family[f][0]) for f in order)
    sizes = pd.Series(labels).value_counts()
    if len(sizes) < 2 or sizes.max() < 2:
        warnings.warn(
            f"column 'group' is ignored: it puts the {len(labels)} families into "
            + ("one group" if len(sizes) < 2 else "a group each")
            + ", which is no grouping (the population already plays that part)",
            UserWarning,
            stacklevel=4,
        )
        return None
    lone = set(sizes.index[sizes == 1])
    if len(lone) >= 2:
        labels = tuple(LONE_GROUP if g in lone else g for g in labels)
    return labels


def _schedule_grids(clean: pd.DataFrame):
    """Each run's LR schedule from all its rows (before any cut), or ``(None, nan)``."""
    from bayescale.schedules import Grid, grid

    if "lr" not in clean.columns or clean["lr"].isna().all():
        return None, float("nan")
    lr_ref = float(clean["lr"].max())
    constant = Grid(np.ones(1), np.ones(1), np.ones(1))
    grids = {}
    for key, g in clean.groupby(["family", "run"], sort=False):
        lr = g["lr"].to_numpy()
        # each run's rate relative to its own peak: sizes are trained at their own tuned
        # peak rates, and the law is about the schedule's shape, not the rate's scale
        grids[key] = constant if np.isnan(lr).all() else grid(g["tokens"].to_numpy(), lr, lr.max())
    return grids, lr_ref


def _thin_mask(tokens: np.ndarray, final: np.ndarray, max_points: int) -> np.ndarray:
    """Keep at most ``max_points`` checkpoints, nearest to a log-spaced grid."""
    n = len(tokens)
    if n <= max_points:
        return np.ones(n, dtype=bool)
    logt = np.log(tokens)
    grid = np.linspace(logt[0], logt[-1], max_points)
    idx = np.unique(np.abs(logt[None, :] - grid[:, None]).argmin(axis=1))
    keep = np.zeros(n, dtype=bool)
    keep[idx] = True
    keep |= final.astype(bool)
    return keep
