"""Experiment design: more small seeds, or one larger model? (DESIGN §5)

:func:`plan` is a preposterior analysis. For each candidate experiment (``k``
new runs of ``N`` parameters trained on ``D`` tokens) it

1. simulates what the experiment would show, from the posterior predictive:
   a posterior draw, a fresh seed effect per new run and whole OU
   trajectories at the family's usual checkpoint spacing
   (:func:`bayescale.model.simulate_log_loss`);
2. reweights the posterior draws by the likelihood of that outcome, with the
   model's own density (:func:`bayescale.model.innovations` and its
   Student-t); the unknown seed effects of the new runs are integrated out
   per draw by adaptive Gauss-Hermite quadrature;
3. reads off the posterior sd and interval width of the target prediction
   under the new weights, and averages over simulated outcomes.

When the new data would move the posterior further than the current draws
can represent (median effective sample size of the weights below
``min_ess``), the candidate is refitted instead: MAP + Laplace approximation
on the data augmented with simulated runs, for fewer simulated outcomes; the
Laplace ratio ``sd_after / sd_before`` scales the current posterior sd, so the
Laplace approximation's own bias cancels to first order. The ``method``
column says which was used.

Run effects. A new run's seed effect is ``Normal(0, sigma_seed)`` around the
population law. When the fit pins run effects to sum to zero within a family
(so that the fitted law is the family's *average run*), the target's law sits
an unknown ``delta ~ Normal(0, sigma_seed^2 / K_f)`` away from the fitted
one (``K_f`` multi-checkpoint runs in the family, :func:`law_runs`).
:func:`target_draws` carries that offset as an explicit latent per draw,
shared by the target and the new runs, so that new seeds can inform it: that
is where "more seeds" earns its keep.

How far to trust the ranking. ``plan`` values an experiment by what the
current posterior expects it to show, so its ranking is as good as that
posterior. On simulated worlds (``benchmarks/plan_validation.py``) the sd a
refit obtains after an experiment is on average 6-8% larger than predicted
(slightly optimistic), and following ``plan`` beats both "one large run" and
"all budget into small seeds" on average over targets near, past and below
the fitted sizes -- but per target it matches the better fixed choice rather
than beating it. It undervalues a large run when seed noise is far below
what the prior expects (the fit then cannot rule out larger seed noise and
discounts a single new run), and overvalues seeds when seed noise is above
the prior's range; if the fitted ``sigma_seed`` sits at either edge of its
prior, refit with ``Priors(seed_sd=...)`` set to the scatter your own seeds
show.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, replace

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pandas as pd
from jax.flatten_util import ravel_pytree

from bayescale import laws
from bayescale.model import ModelInputs, innovations, simulate_log_loss

FLOPS_PER_PARAM_TOKEN = 6.0
REFERENCE_TOKENS_PER_PARAM = 20.0
SEED_COUNTS = (1, 2, 4, 8)
METHODS = ("auto", "importance", "laplace")
RANK_BY = ("reduction", "per_flop")
_GH_NODES = 20
_FISHER_STEPS = 6


class OverBudgetWarning(UserWarning):
    """Some candidate experiments cost more than the budget and were dropped."""


class WarmupCutWarning(UserWarning):
    """Some candidate runs end before the fit's warm-up cut and were dropped."""


# -- candidates ----------------------------------------------------------------------
@dataclass(frozen=True)
class Candidate:
    """One experiment: ``n_runs`` new runs of ``params`` parameters on ``tokens`` tokens.

    Runs share the design (size, token count, checkpoints) and differ only in
    their seed. ``label`` is free text shown in the table. A plain dict with
    the same keys is accepted wherever a Candidate is.

    Attributes
    ----------
    params : float
        Parameters ``N`` of each run (raw count).
    tokens : float
        Tokens ``D`` each run is trained on (its final checkpoint).
    n_runs : int
        Number of runs (seeds), default 1.
    label : str
    """

    params: float
    tokens: float
    n_runs: int = 1
    label: str = ""

    @property
    def flops(self) -> float:
        """Training cost ``6 N D`` per run, times the number of runs."""
        return FLOPS_PER_PARAM_TOKEN * self.params * self.tokens * self.n_runs

    @classmethod
    def coerce(cls, obj) -> Candidate:
        """A validated Candidate from a Candidate or a dict (raises ValueError)."""
        if isinstance(obj, Candidate):
            cand = obj
        elif isinstance(obj, dict):
            unknown = set(obj) - {"params", "tokens", "n_runs", "label"}
            if unknown:
                raise ValueError(
                    f"unknown candidate key(s) {sorted(unknown)}; use params, tokens, n_runs, label"
                )
            cand = cls(**obj)
        else:
            raise TypeError(f"a candidate must be a Candidate or a dict, got {type(obj).__name__}")
        p, t, k = float(cand.params), float(cand.tokens), int(cand.n_runs)
        if not (math.isfinite(p) and math.isfinite(t)) or p <= 0 or t <= 0 or k < 1:
            raise ValueError(f"candidate needs params > 0, tokens > 0, n_runs >= 1: {cand}")
        if p < 1e4 or t < 1e4:
            raise ValueError(f"candidate {cand} looks like billions; pass raw counts (7e9, not 7)")
        return replace(cand, params=p, tokens=t, n_runs=k)


@dataclass(frozen=True)
class FamilyDesign:
    """How a family trains: sizes, tokens per parameter and checkpoint spacing.

    Attributes
    ----------
    sizes : ndarray
        Distinct model sizes of the family's runs.
    size_tokens : ndarray
        Median final token count of the runs at each size.
    tokens_per_param : float
        Median ``D / N`` of the family's runs (their final checkpoints).
    spacing : float
        Median log-token gap between consecutive kept checkpoints (``inf``
        when runs keep only their final checkpoint).
    first_tokens : float
        Earliest checkpoint a run keeps (the warm-up cut).
    max_points : int or None
        At most this many checkpoints per run (the fit's thinning).
    n_runs : int
    min_tokens : float
        The fit's warm-up cut (``nan`` when it keeps every checkpoint): a run
        trained on fewer tokens leaves nothing for the fit.
    """

    sizes: np.ndarray
    size_tokens: np.ndarray
    tokens_per_param: float
    spacing: float
    first_tokens: float
    max_points: int | None
    n_runs: int
    min_tokens: float = math.nan

    def usable(self, tokens: float) -> bool:
        """Whether a run trained on ``tokens`` keeps a checkpoint past the warm-up cut."""
        return not float(tokens) < self.min_tokens

    def checkpoints(self, tokens: float) -> np.ndarray:
        """Checkpoint token counts of a new run trained to ``tokens``, ascending."""
        tokens = float(tokens)
        if not math.isfinite(self.spacing) or tokens <= self.first_tokens:
            return np.array([tokens])
        span = math.log(tokens / self.first_tokens)
        step = self.spacing
        if self.max_points is not None and self.max_points > 1:
            step = max(step, span / (self.max_points - 1))
        n_back = int(math.floor(span / step + 1e-9))
        return tokens * np.exp(-step * np.arange(n_back, -1, -1))


def family_design(post, family: str) -> FamilyDesign:
    """Read a family's training habits off the fitted data."""
    data = post.data
    f = data.family_index(family)
    runs = np.flatnonzero(data.run_family == f)
    finals, firsts, gaps = [], [], []
    for r in runs:
        tok = np.sort(data.tokens[data.obs_run == r])
        finals.append(tok[-1])
        firsts.append(tok[0])
        if tok.size > 1:
            gaps.append(np.median(np.diff(np.log(tok))))
    finals = np.asarray(finals)
    params = data.run_params[runs]
    sizes = np.unique(params)
    size_tokens = np.array([np.median(finals[params == n]) for n in sizes])
    min_tokens = data.min_tokens
    first = float(min_tokens) if np.isfinite(min_tokens) else float(np.median(firsts))
    return FamilyDesign(
        sizes=sizes,
        size_tokens=size_tokens,
        tokens_per_param=float(np.median(finals / params)),
        spacing=float(np.median(gaps)) if gaps else math.inf,
        first_tokens=first,
        max_points=post.config.max_points_per_run,
        n_runs=int(runs.size),
        min_tokens=float(min_tokens) if np.isfinite(min_tokens) else math.nan,
    )


def _round_count(x: float) -> float:
    """Two significant digits: sizes people would actually train."""
    return float(f"{x:.2g}")


def default_candidates(
    post,
    family: str,
    budget_flops: float,
    *,
    seed_counts=SEED_COUNTS,
    n_larger: int = 4,
    max_new_runs: int = 16,
) -> list[Candidate]:
    """The default menu: more seeds at existing sizes, or one larger run.

    - ``k`` new seeds (``seed_counts``, plus as many as the budget buys, up to
      ``max_new_runs``) at each existing size of the family, trained on that
      size's usual token count and on 20 tokens per parameter;
    - one run at each of ``n_larger`` sizes between twice the largest existing
      size and the largest the budget affords, at the family's usual tokens
      per parameter and at 20.

    Candidates may exceed the budget; :func:`plan` drops those. Token counts
    below the fit's warm-up cut (``min_tokens``) are left out: the fit would
    discard every checkpoint of such a run.
    """
    design = family_design(post, family)
    out: list[Candidate] = []
    token_rules = {"usual": design.tokens_per_param, "20 tok/param": REFERENCE_TOKENS_PER_PARAM}
    for n, d_usual in zip(design.sizes, design.size_tokens, strict=True):
        token_options = [("usual tokens", float(d_usual))]
        d20 = REFERENCE_TOKENS_PER_PARAM * n
        if abs(math.log(d20 / d_usual)) > math.log(1.25):
            token_options.append(("20 tok/param", _round_count(d20)))
        for tok_label, d in token_options:
            if not design.usable(d):
                continue
            per_run = FLOPS_PER_PARAM_TOKEN * n * d
            fill = int(min(budget_flops // per_run, max_new_runs))
            counts = sorted(set(seed_counts) | ({fill} if fill > max(seed_counts) else set()))
            for k in counts:
                out.append(
                    Candidate(
                        float(n), d, int(k), f"{k} new seed{'s' if k > 1 else ''}, {tok_label}"
                    )
                )
    largest = float(design.sizes.max())
    for tok_label, tpp in token_rules.items():
        n_max = math.sqrt(budget_flops / (FLOPS_PER_PARAM_TOKEN * tpp))
        if n_max < 1.25 * largest:
            continue
        lo = min(2.0 * largest, n_max)
        sizes = np.geomspace(lo, n_max, n_larger) if n_max > lo * 1.01 else np.array([n_max])
        for n in sizes:
            # round down so the largest size stays inside the budget
            n_r = _round_count(n)
            if n_r > n:
                n_r = float(f"{n * 0.95:.2g}")
            if not design.usable(tpp * n_r):
                continue
            out.append(Candidate(n_r, tpp * n_r, 1, f"1 larger run, {tok_label}"))
    seen, unique = set(), []
    for c in out:
        key = (c.params, c.tokens, c.n_runs)
        if key not in seen:
            seen.add(key)
            unique.append(c)
    return unique


def describe(c: Candidate) -> str:
    """Human-readable one-liner: ``4 runs x 1e8 params on 2e10 tokens``."""
    runs = f"{c.n_runs} run{'s' if c.n_runs > 1 else ''}"
    return f"{runs} x {c.params:.3g} params on {c.tokens:.3g} tokens"


# -- posterior draws and the target ---------------------------------------------------
_PARAM_KEYS = ("log_E", "a", "b", "alpha_f", "beta_f", "sigma_obs", "u", "ell", "nu", "sigma_seed")


def _draw_params(post, idx: np.ndarray) -> dict:
    return {k: jnp.asarray(post.draws(k)[idx]) for k in _PARAM_KEYS}


def run_effects_centred(post) -> bool:
    """Whether the fit pins run effects to sum to zero within each family."""
    u = post.draws("u")
    fam = np.asarray(post.data.run_family)
    sums = np.stack([u[:, fam == f].sum(axis=1) for f in range(post.data.n_families)], axis=1)
    return bool(np.max(np.abs(sums)) < 1e-5 * max(1.0, float(np.max(np.abs(u)))))


def law_runs(post, f: int) -> int:
    """Number of runs of family ``f`` whose average the fitted law describes.

    With centred run effects these are the family's multi-checkpoint runs
    (:func:`bayescale.model.law_offset_runs`); otherwise 0 (the law is the
    population's).
    """
    if not run_effects_centred(post):
        return 0
    from bayescale import model

    offset_runs = getattr(model, "law_offset_runs", None)
    if offset_runs is None:
        return int(np.sum(post.data.run_family == f))
    return int(offset_runs(model.inputs_from_data(post.data))[f])


def _family_offset(post, f: int, sigma_seed: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Offset ``delta`` of the population law from the fitted law of family ``f``."""
    k = law_runs(post, f)
    if k == 0:
        return np.zeros_like(sigma_seed)
    return sigma_seed * z / math.sqrt(k)


@dataclass(frozen=True)
class Target:
    """The prediction whose uncertainty :func:`plan` tries to shrink."""

    family: str
    params: float
    tokens: float
    kind: str = "mean"

    @classmethod
    def coerce(cls, obj, post, kind: str | None = None) -> Target:
        if isinstance(obj, Target):
            t = obj
        elif isinstance(obj, dict):
            missing = {"family", "params", "tokens"} - set(obj)
            if missing:
                raise ValueError(
                    f"target is missing {sorted(missing)}; "
                    "pass target=dict(family=..., params=..., tokens=...)"
                )
            t = cls(**obj)
        else:
            raise TypeError("target must be a dict(family=..., params=..., tokens=...)")
        if kind is not None:
            t = replace(t, kind=kind)
        if t.kind not in ("mean", "new_run"):
            raise ValueError(f"target kind must be 'mean' or 'new_run', got {t.kind!r}")
        if t.family not in post.families:
            raise ValueError(
                f"target family {t.family!r} is not in the fit (fitted: {list(post.families)}); "
                "new runs can only be planned for a fitted family"
            )
        p, d = float(t.params), float(t.tokens)
        if not (math.isfinite(p) and math.isfinite(d)) or p <= 0 or d <= 0:
            raise ValueError(f"target params and tokens must be finite and > 0, got {p}, {d}")
        if p < 1e4 or d < 1e4:
            raise ValueError(
                "target params/tokens below 1e4 look like billions; pass raw counts (7e9, not 7)"
            )
        return replace(t, params=p, tokens=d)


def target_draws(post, target: Target, params: dict, latent: np.ndarray) -> np.ndarray:
    """Loss at the target for each draw (nats), shape (S,).

    ``latent`` holds three standard normals per draw: the family offset
    ``delta`` (see the module notes) and, for ``kind="new_run"``, the target
    run's own seed effect and the noise of its one evaluation (as in
    :func:`bayescale.predict.loss_draws`).
    """
    f = post.data.family_index(target.family)
    log_mu = laws.log_chinchilla_centered(
        laws.center_log_params(target.params),
        laws.center_log_tokens(target.tokens),
        params["log_E"][:, f],
        params["a"][:, f],
        params["b"][:, f],
        params["alpha_f"][:, f],
        params["beta_f"][:, f],
    )
    sigma_seed = np.asarray(params["sigma_seed"])
    log_mu = np.asarray(log_mu) + _family_offset(post, f, sigma_seed, latent[:, 0])
    if target.kind == "new_run":
        sigma_obs = np.asarray(params["sigma_obs"])[:, f]
        log_mu = log_mu + sigma_seed * latent[:, 1] + sigma_obs * latent[:, 2]
    return post.data.family_scale[f] * np.exp(log_mu)


# -- model inputs for new runs -----------------------------------------------------------
def run_inputs(f: int, n_families: int, params: float, tokens, n_pad: int | None = None):
    """:class:`ModelInputs` of one new run of family ``f`` (``y`` zero), and its mask.

    With ``n_pad`` the run is padded to that many checkpoints (log-spaced past
    the last one) so that runs of different lengths share compiled code; the
    mask is False on the padding.
    """
    tokens = np.asarray(tokens, dtype=float)
    n = tokens.size
    n_pad = n if n_pad is None else int(n_pad)
    if n_pad < n:
        raise ValueError(f"n_pad={n_pad} is shorter than the run ({n} checkpoints)")
    tokens = np.concatenate([tokens, tokens[-1] * np.exp(0.1 * np.arange(1, n_pad - n + 1))])
    log_t = np.log(tokens)
    dlog = np.zeros(n_pad)
    dlog[1:] = np.diff(log_t)
    first = np.zeros(n_pad, dtype=bool)
    first[0] = True
    inputs = ModelInputs(
        run_family=np.array([f], dtype=np.int32),
        log_n=np.array([math.log(params) - laws.LOG_N_REF]),
        obs_run=np.zeros(n_pad, dtype=np.int32),
        log_d=log_t - laws.LOG_D_REF,
        dlog_prev=dlog,
        first=first,
        y=np.zeros(n_pad),
        n_families=int(n_families),
    )
    return inputs, np.arange(n_pad) < n


# the arrays of ModelInputs that describe a run (traced under jit; n_families is static)
_RUN_FIELDS = ("run_family", "log_n", "obs_run", "log_d", "dlog_prev", "first", "y")


def _run_inputs_from(arrays: dict) -> ModelInputs:
    """Rebuild run inputs from their arrays (``n_families`` is unused by the likelihood)."""
    return ModelInputs(**arrays, n_families=0)


def _one_draw(params: dict, i) -> dict:
    return {k: v[i] for k, v in params.items()}


def simulate_run(key, inputs1: ModelInputs, draw: dict, delta, z):
    """Relative log loss of one new run under one draw, seed effect ``delta + sigma_seed z``."""
    u = jnp.reshape(delta + draw["sigma_seed"] * z, (1,))
    return simulate_log_loss(key, inputs1, dict(draw, u=u), jnp.ones(draw["log_E"].shape[0]))


def run_log_marginal(
    inputs1: ModelInputs, draw: dict, delta, y, mask=None, n_nodes: int = _GH_NODES
):
    """``log ∫ p(y | draw, u = delta + v) Normal(v; 0, sigma_seed) dv`` for one run.

    The innovations are linear in the run effect, ``w(v) = w(0) - v c``, so
    two calls of :func:`bayescale.model.innovations` give the whole integrand;
    it is centred and scaled by a few Fisher-scoring steps (Student-t
    information) and integrated with ``n_nodes``-point Gauss-Hermite.
    ``mask`` (bool, per checkpoint) drops padding.
    """
    inp = inputs1._replace(y=y)
    w0, scale = innovations(inp, dict(draw, u=jnp.reshape(delta, (1,))))
    w1, _ = innovations(inp, dict(draw, u=jnp.reshape(delta + 1.0, (1,))))
    c = w0 - w1
    keep = jnp.ones_like(w0) if mask is None else jnp.asarray(mask, dtype=w0.dtype)
    nu, sig = draw["nu"], draw["sigma_seed"]
    noise = dist.StudentT(nu, 0.0, scale)
    prior = dist.Normal(0.0, sig)

    def log_f(v):
        return jnp.sum(keep * noise.log_prob(w0 - v * c)) + prior.log_prob(v)

    prec = keep * c**2 / scale**2
    info = jnp.sum(prec * (nu + 1.0) / (nu + 3.0)) + 1.0 / sig**2
    v = jnp.sum(keep * c * w0 / scale**2) / (jnp.sum(prec) + 1.0 / sig**2)
    grad = jax.grad(log_f)
    v = jax.lax.fori_loop(0, _FISHER_STEPS, lambda _, v: v + grad(v) / info, v)
    # the nodes only place the quadrature: derivatives flow through the integrand
    v = jax.lax.stop_gradient(v)
    h = jax.lax.stop_gradient(jnp.sqrt(2.0 / info))
    x, wq = np.polynomial.hermite.hermgauss(n_nodes)
    vals = jax.vmap(log_f)(v + h * x)
    return jax.scipy.special.logsumexp(vals + x**2 + np.log(wq)) + jnp.log(h)


# -- importance sampling ------------------------------------------------------------------
@dataclass(frozen=True)
class _Setup:
    post: object
    target: Target
    f: int
    params: dict  # (S, ...) jnp arrays
    delta: np.ndarray  # (S,)
    t_draws: np.ndarray  # (S,)
    gen: np.ndarray  # (M,) generating draw per outcome
    base_key: jax.Array
    z_seed: np.ndarray  # (M, max_runs) standard normals for the new seed effects
    prob: float


def _weighted_stats(t, order, logw, prob):
    """Weighted sd, interval width and Kish ESS of the target draws ``t`` under ``logw``."""
    w = jax.nn.softmax(logw)
    mean = jnp.sum(w * t)
    var = jnp.sum(w * (t - mean) ** 2)
    ws, ts = w[order], t[order]
    cdf = jnp.cumsum(ws) - 0.5 * ws
    lo, hi = jnp.interp(jnp.array([(1 - prob) / 2, (1 + prob) / 2]), cdf, ts)
    return jnp.sqrt(var), hi - lo, 1.0 / jnp.sum(w**2)


def _outcome_key(base_key, m, r):
    return jax.random.fold_in(jax.random.fold_in(base_key, m), r)


@jax.jit
def _items_log_marginals(designs, masks, items, z, params, delta, base_key):
    """Log marginal likelihood of simulated new runs under every draw: (items, S).

    ``designs`` stacks padded single-run inputs (G designs); item ``i`` is run
    ``r`` of outcome ``m`` of design ``g``, simulated from draw ``j``, with
    seed normal ``z[i]``.
    """

    def per_item(args):
        (g, m, r, j), zi = args
        inputs1 = _run_inputs_from({k: a[g] for k, a in designs.items()})
        mask = masks[g]
        y = simulate_run(_outcome_key(base_key, m, r), inputs1, _one_draw(params, j), delta[j], zi)
        return jax.vmap(lambda draw, d: run_log_marginal(inputs1, draw, d, y, mask))(params, delta)

    return jax.lax.map(per_item, (tuple(items.T), z))


def _next_pow2(n: int) -> int:
    return 1 << max(int(n) - 1, 0).bit_length()


def _importance_groups(setup: _Setup, groups: dict, checkpoints: dict) -> dict:
    """Expected posterior sd etc. of every candidate, by importance sampling.

    Candidates sharing a run design share their simulated runs (run ``r`` of
    outcome ``m`` is the same draw of noise everywhere), so ``k`` seeds reuse
    the first ``k`` runs of the largest ``k``, and comparisons between
    candidates carry common random numbers.
    """
    post = setup.post
    n_out = setup.gen.shape[0]
    # one padded length for all designs: one compilation, which costs more than the padding
    n_pad = _next_pow2(max(ck.size for ck in checkpoints.values()))
    by_pad = {n_pad: list(groups)}
    order = jnp.asarray(np.argsort(setup.t_draws))
    t = jnp.asarray(setup.t_draws)
    gen = jnp.asarray(setup.gen)
    stats_fn = jax.jit(jax.vmap(lambda lw: _weighted_stats(t, order, lw, setup.prob)))
    out = {}
    for n_pad, keys in by_pad.items():
        built = [
            run_inputs(setup.f, post.data.n_families, k[0], checkpoints[k], n_pad) for k in keys
        ]
        designs = {k: jnp.asarray(np.stack([getattr(b[0], k) for b in built])) for k in _RUN_FIELDS}
        masks = jnp.asarray(np.stack([b[1] for b in built]))
        items, span = [], {}
        for g, key in enumerate(keys):
            k_max = max(c.n_runs for c in groups[key])
            span[key] = (len(items), k_max)
            items += [(g, m, r, setup.gen[m]) for m in range(n_out) for r in range(k_max)]
        items = np.asarray(items, dtype=np.int32)
        z = jnp.asarray(setup.z_seed[items[:, 1], items[:, 2]])
        ll = _items_log_marginals(
            designs,
            masks,
            jnp.asarray(items),
            z,
            setup.params,
            jnp.asarray(setup.delta),
            setup.base_key,
        )
        for key in keys:
            start, k_max = span[key]
            cum = jnp.cumsum(ll[start : start + n_out * k_max].reshape(n_out, k_max, -1), axis=1)
            for c in groups[key]:
                logw = cum[:, c.n_runs - 1, :]
                # the draw that generated an outcome is left out: it would explain it perfectly
                logw = logw.at[jnp.arange(n_out), gen].set(-jnp.inf)
                sd, width, ess = stats_fn(logw)
                out[c] = {"sd": np.asarray(sd), "width": np.asarray(width), "ess": np.asarray(ess)}
    return out


# -- Laplace refits -----------------------------------------------------------------------
_NEWTON_STEPS = 60
_NEWTON_TOL = 1e-4
_DAMPING = (0.0, 0.1, 1.0, 10.0, 100.0, 1e3, 1e4)
_MAX_STEP = 2.0  # largest move of one unconstrained coordinate per step


def _model_kwargs(post, inputs: ModelInputs, observe: bool = True) -> dict:
    c = post.config
    return {
        "inputs": inputs,
        "exponents": c.exponents,
        "law": c.law,
        "priors": c.priors,
        "observe": observe,
    }


def _latent_shapes(post, inputs: ModelInputs) -> dict:
    from numpyro import handlers

    from bayescale.model import scaling_model

    tr = handlers.trace(handlers.seed(scaling_model, 0)).get_trace(
        **_model_kwargs(post, inputs, observe=False)
    )
    return {
        k: tuple(np.shape(v["value"]))
        for k, v in tr.items()
        if v["type"] == "sample" and not v.get("is_observed", False)
    }


# Scales of hierarchies. For centred ones the joint density grows without bound
# as they shrink (a funnel), so a MAP collapses them; for the non-centred seed
# effects the joint mode inflates sigma_seed (several times its posterior
# median in tests), which would inflate the family offset's variance. The
# Laplace approximation is conditional on them, held at their posterior median.
_GROUP_SCALES = ("sigma_theta", "tau_alpha", "tau_beta", "sigma_seed")


class _Laplace:
    """MAP + Laplace approximation of the posterior after adding new runs.

    The log posterior after the experiment is the fitted model's (on its own
    data) plus, for each new run, its likelihood with the seed effect
    integrated out (:func:`run_log_marginal`), plus the family offset
    ``delta`` when run effects are centred (module notes). This is the same
    posterior a refit on the augmented data targets, written so that every
    candidate (padded to ``k_pad`` runs of ``n_pad`` checkpoints) shares one
    compiled function.

    Group scales (``_GROUP_SCALES``) are held at their posterior median; every
    other latent is free. The mode is found by damped Newton steps from a
    warm start, with the Hessian's eigenvalues floored so that flat or
    slightly non-convex directions do not blow up. The target's variance is
    the delta method ``g' H^-1 g`` for its log.
    """

    def __init__(self, post, target: Target, n_pad: int, k_pad: int):
        from numpyro.infer.util import unconstrain_fn

        from bayescale.model import inputs_from_data, scaling_model

        self.post, self.target = post, target
        self.f = post.data.family_index(target.family)
        self.model = scaling_model
        self.inputs0 = inputs_from_data(post.data)
        self.k_family = law_runs(post, self.f)
        self.centred = self.k_family > 0
        self.n_pad, self.k_pad = int(n_pad), int(k_pad)
        shapes = _latent_shapes(post, self.inputs0)
        tree = post.tree["posterior"]
        missing = [k for k in shapes if k not in tree]
        if missing:
            raise ValueError(
                f"the fit has no draws of latent site(s) {missing}: it was made with another "
                "version of the model; refit it"
            )
        n = post.n_draws
        pick = np.unique(np.linspace(0, n - 1, min(n, 32)).round().astype(int))
        latent = {
            k: jnp.asarray(np.asarray(tree[k].values).reshape((n,) + shapes[k])[pick])
            for k in shapes
        }
        kw = _model_kwargs(post, self.inputs0)
        z = jax.vmap(lambda p: unconstrain_fn(scaling_model, (), kw, p))(latent)
        self.fixed = {k: jnp.median(z[k], axis=0) for k in _GROUP_SCALES if k in z}
        if n == 1:
            self.fixed = _spread_scales(post, self.fixed)
        free = {k: v for k, v in z.items() if k not in self.fixed}
        flat = jax.vmap(lambda d: ravel_pytree(d)[0])(free)
        _, self.unravel = ravel_pytree({k: v[0] for k, v in free.items()})
        self.n_free = int(flat.shape[1])
        # compiled once: evaluated eagerly it re-traces the model at every call
        fit_potential = jax.jit(self._fit_potential)
        pot = jax.jit(jax.vmap(self._fit_potential))(flat)
        pot = np.where(np.isfinite(np.asarray(pot)), np.asarray(pot), np.inf)
        x_start = flat[int(np.argmin(pot))]
        if self.centred:
            x_start = jnp.concatenate([x_start, jnp.zeros(1)])
        # one experiment at a time: compiling the Newton solver dominates its
        # cost, and a batch of another size would compile it again
        self._solve = jax.jit(self._solve_one)
        # "before": an experiment with no runs
        dummy, _ = run_inputs(self.f, post.data.n_families, 1e9, [1e11], self.n_pad)
        empty = (
            {k: jnp.asarray(getattr(dummy, k)) for k in _RUN_FIELDS},
            jnp.zeros(self.n_pad, bool),
            jnp.zeros((self.k_pad, self.n_pad)),
            jnp.zeros(self.k_pad),
        )
        # a posterior draw can be far from the mode: restart until it stops moving
        x0, pot0 = x_start, float(fit_potential(x_start[: self.n_free]))
        for _ in range(6):
            x0, h0, log_mu, var = self._solve(x0, *empty)
            pot = float(fit_potential(x0[: self.n_free]))
            if abs(pot - pot0) < 1e-3 * max(1.0, abs(pot)) * 1e-2:
                break
            pot0 = pot
        self.x0, self.h0 = x0, h0
        self.log_mu0, self.var0 = float(log_mu), float(var)

    # -- densities ---------------------------------------------------------------
    def _kwargs(self, observe):
        return _model_kwargs(self.post, self.inputs0, observe=observe)

    def _fit_potential(self, x_free):
        from numpyro.infer.util import potential_energy

        return potential_energy(
            self.model, (), self._kwargs(True), {**self.unravel(x_free), **self.fixed}
        )

    def _split(self, x):
        delta = x[self.n_free] if self.centred else jnp.zeros(())
        return x[: self.n_free], delta

    def _constrained(self, x_free) -> dict:
        from numpyro.infer.util import constrain_fn

        return constrain_fn(
            self.model,
            (),
            self._kwargs(False),
            {**self.unravel(x_free), **self.fixed},
            return_deterministic=True,
        )

    def _potential(self, x, arrays, mask, y, run_mask):
        x_free, delta = self._split(x)
        pot = self._fit_potential(x_free)
        c = self._constrained(x_free)
        draw = {k: c[k] for k in _PARAM_KEYS if k != "u"}
        if self.centred:
            sd = draw["sigma_seed"] / math.sqrt(self.k_family)
            pot = pot - dist.Normal(0.0, sd).log_prob(delta)
        inputs1 = _run_inputs_from(arrays)
        ll = jax.vmap(lambda yr: run_log_marginal(inputs1, draw, delta, yr, mask))(y)
        return pot - jnp.sum(run_mask * ll)

    def _log_target(self, x):
        tgt, f = self.target, self.f
        x_free, delta = self._split(x)
        c = self._constrained(x_free)
        log_mu = laws.log_chinchilla_centered(
            laws.center_log_params(tgt.params),
            laws.center_log_tokens(tgt.tokens),
            c["log_E"][f],
            c["a"][f],
            c["b"][f],
            c["alpha_f"][f],
            c["beta_f"][f],
        )
        return log_mu + delta, (c["sigma_seed"], c["sigma_obs"][f])

    def _solve_one(self, x_init, arrays, mask, y, run_mask):
        x, h = _newton(lambda z: self._potential(z, arrays, mask, y, run_mask), x_init)
        (log_mu, (sigma_seed, sigma_obs)), g = jax.value_and_grad(self._log_target, has_aux=True)(x)
        var = g @ _floored_solve(h, g, 1e-6)
        if self.target.kind == "new_run":
            var = var + sigma_seed**2 + sigma_obs**2
        return x, h, log_mu, var

    # -- queries -----------------------------------------------------------------
    def after(self, arrays, mask, y, run_mask):
        """Log target and its Laplace variance after each experiment in a batch.

        ``arrays``/``mask`` are stacked padded run designs (B, n_pad), ``y``
        the simulated relative log losses (B, k_pad, n_pad) and ``run_mask``
        (B, k_pad) marks the runs each experiment has.
        """
        out = [
            self._solve(self.x0, {k: a[i] for k, a in arrays.items()}, mask[i], y[i], run_mask[i])
            for i in range(y.shape[0])
        ]
        return np.array([float(o[2]) for o in out]), np.array([float(o[3]) for o in out])

    def sample_draws(self, key, n: int):
        """Parameter draws (and family offsets) from the approximation at the fitted data."""
        eps = jax.random.normal(key, (n, self.x0.shape[0]))
        w, v = jnp.linalg.eigh(self.h0)
        w = jnp.maximum(jnp.abs(w), 1e-6 * jnp.max(jnp.abs(w)))
        xs = self.x0 + (eps / jnp.sqrt(w)) @ v.T

        def one(x):
            x_free, delta = self._split(x)
            c = self._constrained(x_free)
            return {k: c[k] for k in _PARAM_KEYS}, delta

        return jax.vmap(one)(xs)


def _floored_solve(h, g, floor):
    """``H^-1 g`` with ``|eigenvalues|`` floored at ``floor * max``."""
    w, v = jnp.linalg.eigh(h)
    w = jnp.maximum(jnp.abs(w), floor * jnp.max(jnp.abs(w)) + 1e-12)
    return v @ ((v.T @ g) / w)


def _spread_scales(post, fixed: dict) -> dict:
    """Group scales for a point-estimate fit: the spread of its own family values.

    A MAP pinches them towards zero; the spread of the fitted families'
    offsets and exponents is what they describe (unconstrained values of
    positive sites are logs).
    """
    out = dict(fixed)
    n_fam = post.data.n_families
    if "sigma_theta" in out:
        theta = np.stack([post.draws(k)[0] for k in ("a", "b")], axis=-1)
        spread = theta.std(axis=0) if n_fam > 1 else np.full(2, 0.3)
        out["sigma_theta"] = jnp.log(jnp.asarray(np.maximum(spread, 0.1)))
    for tau, site in (("tau_alpha", "alpha_f"), ("tau_beta", "beta_f")):
        if tau in out:
            spread = float(np.log(post.draws(site)[0]).std()) if n_fam > 1 else 0.1
            out[tau] = jnp.log(jnp.asarray(max(spread, 0.05)))
    if "sigma_seed" in out:
        # the scatter of the fitted run effects in families with several runs
        counts = np.bincount(post.data.run_family, minlength=n_fam)
        u = post.draws("u")[0][counts[post.data.run_family] > 1]
        u = u[u != 0]  # runs whose effect the law absorbs
        spread = float(np.sqrt(np.mean(u**2))) if u.size else post.config.priors.seed_sd
        out["sigma_seed"] = jnp.log(jnp.asarray(max(spread, 1e-3)))
    return out


def _newton(potential, x):
    """Damped Newton minimisation; returns the mode and the Hessian there.

    Each step tries several Levenberg-Marquardt dampings ``(|H| + mu I)^-1 g``
    (one eigendecomposition serves them all), capped in length, and keeps the
    one that lowers the potential most: safe across saddles, negative
    curvature from the Student-t likelihood and nearly flat directions. It
    stops when a step gains less than ``_NEWTON_TOL`` (float32 resolution of
    the log density) or after ``_NEWTON_STEPS``.
    """
    grad_fn = jax.grad(potential)
    hess_fn = jax.hessian(potential)
    damping = jnp.asarray(_DAMPING)

    def body(carry):
        i, x, _, _ = carry
        h = hess_fn(x)
        w, v = jnp.linalg.eigh(h)
        gv = v.T @ grad_fn(x)
        w = jnp.abs(w)

        def candidate(mu):
            step = -(v @ (gv / (w + mu + 1e-8)))
            return x + step * jnp.minimum(1.0, _MAX_STEP / jnp.max(jnp.abs(step)))

        xs = jax.vmap(candidate)(damping)
        vals = jax.vmap(potential)(xs)
        vals = jnp.where(jnp.isfinite(vals), vals, jnp.inf)
        best = jnp.argmin(vals)
        now = potential(x)
        gain = now - vals[best]
        return i + 1, jnp.where(gain > 0, xs[best], x), h, gain.astype(x.dtype)

    def keep_going(carry):
        i, _, _, gain = carry
        return (i < _NEWTON_STEPS) & (gain > _NEWTON_TOL)

    # the Hessian returned is the last iterate's; at convergence the last step
    # is negligible, and one Hessian in the graph halves the compile time
    h0 = jnp.zeros((x.shape[0], x.shape[0]), x.dtype)
    start = (jnp.asarray(0), x, h0, jnp.asarray(jnp.inf, x.dtype))
    _, x, h, _ = jax.lax.while_loop(keep_going, body, start)
    return x, h


def _laplace_all(setup: _Setup, refit: dict, checkpoints: dict, n_outcomes: int, laplace):
    """Laplace sd ratios (after / before) for every refitted candidate and outcome."""
    post = setup.post
    m = int(min(n_outcomes, setup.z_seed.shape[0]))
    if post.n_draws > 1:
        params, delta = setup.params, jnp.asarray(setup.delta)
        gen = setup.gen[np.arange(m) % setup.gen.shape[0]]
    else:
        params, delta = laplace.sample_draws(jax.random.fold_in(setup.base_key, 99), m)
        gen = np.arange(m)
    batch = []  # (candidate, outcome)
    arrays, masks, ys, run_masks = [], [], [], []
    for key, group in refit.items():
        new1, mask = run_inputs(
            setup.f, post.data.n_families, key[0], checkpoints[key], laplace.n_pad
        )
        y = np.stack(
            [
                np.stack(
                    [
                        np.asarray(
                            simulate_run(
                                _outcome_key(setup.base_key, mi, r),
                                new1,
                                _one_draw(params, gen[mi]),
                                delta[gen[mi]],
                                setup.z_seed[mi, r],
                            )
                        )
                        for r in range(laplace.k_pad)
                    ]
                )
                for mi in range(m)
            ]
        )  # (m, k_pad, n_pad)
        for c in group:
            for mi in range(m):
                batch.append((c, mi))
                arrays.append({k: getattr(new1, k) for k in _RUN_FIELDS})
                masks.append(mask)
                ys.append(y[mi])
                run_masks.append(np.arange(laplace.k_pad) < c.n_runs)
    stacked = {k: jnp.asarray(np.stack([a[k] for a in arrays])) for k in _RUN_FIELDS}
    _, var = laplace.after(
        stacked,
        jnp.asarray(np.stack(masks)),
        jnp.asarray(np.stack(ys)),
        jnp.asarray(np.stack(run_masks), dtype=float),
    )
    ratio = np.sqrt(var / laplace.var0)
    out: dict = {}
    for (c, _), r in zip(batch, ratio, strict=True):
        out.setdefault(c, []).append(r)
    scale = post.data.family_scale[setup.f]
    laplace_sd = math.exp(laplace.log_mu0) * scale * math.sqrt(laplace.var0)
    return {c: {"ratio": np.asarray(r), "laplace_sd": laplace_sd} for c, r in out.items()}


# -- one observed outcome ------------------------------------------------------------------
def _draws_and_target(post, tgt: Target, max_draws: int, seed: int):
    """Posterior draws used (a fixed subsample), their target values and family offsets."""
    rng = np.random.default_rng([seed, 7])
    s_all = post.n_draws
    if s_all > max_draws:
        idx = np.sort(rng.choice(s_all, max_draws, replace=False))
    else:
        idx = np.arange(s_all)
    params = _draw_params(post, idx)
    latent = rng.standard_normal((idx.size, 3))
    t_draws = target_draws(post, tgt, params, latent)
    f = post.data.family_index(tgt.family)
    delta = _family_offset(post, f, np.asarray(params["sigma_seed"]), latent[:, 0])
    return idx, params, t_draws, delta


def draw_efficiency(post, t_draws: np.ndarray) -> float:
    """Relative effective sample size of the target's sd across the posterior draws.

    Weights on autocorrelated draws are worth fewer independent ones; the
    Kish ESS of the weights is multiplied by this (at most 1).
    """
    from arviz_stats.base import array_stats

    post_ds = post.tree["posterior"]
    chains, draws = int(post_ds.sizes["chain"]), int(post_ds.sizes["draw"])
    if t_draws.size != chains * draws or draws < 8:
        return 1.0
    rel = float(array_stats.ess(t_draws.reshape(chains, draws), method="sd", relative=True))
    return float(np.clip(rel, 0.0, 1.0)) if np.isfinite(rel) else 1.0


def new_runs_frame(post, family: str, candidate, loss, *, prefix: str = "new") -> pd.DataFrame:
    """Tidy rows (DESIGN §2) for the runs of an experiment, to append to the data.

    ``loss`` has shape ``(n_runs, n_checkpoints)`` at the checkpoints
    :meth:`FamilyDesign.checkpoints` gives for the candidate's token count.
    """
    cand = Candidate.coerce(candidate)
    ckpt = family_design(post, family).checkpoints(cand.tokens)
    loss = np.asarray(loss, dtype=float).reshape(cand.n_runs, ckpt.size)
    names = [f"{prefix}-{cand.params:.2g}-{r}" for r in range(cand.n_runs)]
    rows = {
        "family": np.repeat(family, loss.size),
        "run": np.repeat(names, ckpt.size),
        "params": np.full(loss.size, cand.params),
        "tokens": np.tile(ckpt, cand.n_runs),
        "loss": loss.ravel(),
        "seed": np.repeat([f"{prefix}{r}" for r in range(cand.n_runs)], ckpt.size),
    }
    return pd.DataFrame(rows)


def importance_update(
    post, target, candidate, loss, *, max_draws: int = 1000, prob: float = 0.9, seed: int = 0
) -> dict:
    """The target's posterior after observing an experiment, by reweighting the draws.

    Parameters
    ----------
    post : Posterior
    target : dict
        ``dict(family=..., params=..., tokens=...)`` (optionally ``kind``).
    candidate : Candidate or dict
        The experiment that was run.
    loss : array, shape (n_runs, n_checkpoints)
        Its losses (nats) at the checkpoints of :meth:`FamilyDesign.checkpoints`.
    max_draws, prob, seed
        As in :func:`plan` (same seed, same draws).

    Returns
    -------
    dict
        ``current_sd``, ``sd``, ``mean``, ``width`` (of the ``prob`` interval),
        ``ess`` and the normalised ``weights`` of the draws.
    """
    tgt = Target.coerce(target, post)
    cand = Candidate.coerce(candidate)
    t_draws, logw = outcome_log_weights(post, tgt, cand, loss, max_draws=max_draws, seed=seed)
    logw = logw[0]
    t = jnp.asarray(t_draws)
    sd, width, ess = _weighted_stats(t, jnp.argsort(t), logw, prob)
    w = np.asarray(jax.nn.softmax(logw))
    return {
        "current_sd": float(np.std(t_draws)),
        "sd": float(sd),
        "mean": float(np.sum(w * t_draws)),
        "width": float(width),
        "ess": float(ess),
        "weights": w,
    }


def outcome_log_weights(post, target: Target, candidate: Candidate, loss, *, max_draws, seed):
    """Log importance weights of the draws after each of several observed outcomes.

    ``loss`` holds one or more outcomes of ``candidate``, shape
    ``([n_outcomes,] n_runs, n_checkpoints)``; one compiled function serves
    them all. Returns the draws' target values (S,) and the log weights
    (n_outcomes, S), unnormalised.
    """
    f = post.data.family_index(target.family)
    ckpt = family_design(post, target.family).checkpoints(candidate.tokens)
    y = np.log(np.asarray(loss, dtype=float).reshape(-1, candidate.n_runs, ckpt.size))
    y = jnp.asarray(y - np.log(post.data.family_scale[f]))
    _, params, t_draws, delta = _draws_and_target(post, target, max_draws, seed)
    inputs1, _ = run_inputs(f, post.data.n_families, candidate.params, ckpt)

    @jax.jit
    def log_w(params, delta, ys):
        def one(y):
            def per_draw(draw, d):
                return jax.vmap(lambda yr: run_log_marginal(inputs1, draw, d, yr))(y).sum()

            return jax.vmap(per_draw)(params, delta)

        return jax.lax.map(one, ys)

    return t_draws, log_w(params, jnp.asarray(delta), y)


# -- plan ---------------------------------------------------------------------------------
def plan(
    posterior,
    target,
    budget_flops: float,
    *,
    candidates=None,
    kind: str | None = None,
    method: str = "auto",
    n_outcomes: int = 64,
    max_draws: int = 1000,
    min_ess: float = 50.0,
    n_refit_outcomes: int = 8,
    prob: float = 0.9,
    rank_by: str = "reduction",
    seed: int = 0,
) -> pd.DataFrame:
    """Rank candidate experiments by how much they shrink a target's uncertainty.

    Parameters
    ----------
    posterior : Posterior
        A fit (NUTS draws; a MAP fit is planned with Laplace refits only).
    target : dict
        ``dict(family=..., params=N, tokens=D)``, optionally ``kind``: the
        prediction to sharpen (a fitted family).
    budget_flops : float
        Training budget; candidates costing more (``6 N D`` per run) are
        dropped, with an :class:`OverBudgetWarning` and a note in
        ``table.attrs["dropped"]``.
    candidates : list of Candidate or dict, optional
        Default: :func:`default_candidates`.
    kind : {"mean", "new_run"}, optional
        Overrides ``target["kind"]`` (default ``"mean"``: the law itself).
    method : {"auto", "importance", "laplace"}
        ``"auto"`` reweights draws and refits where the ESS collapses.
    n_outcomes : int
        Simulated outcomes per candidate (importance sampling).
    max_draws : int
        Posterior draws used (a fixed-seed subsample when there are more).
    min_ess : float
        Refit when the median effective sample size of the weights falls below
        this (Kish ESS times the draws' own relative ESS for the target, see
        :func:`draw_efficiency`).
    n_refit_outcomes : int
        Simulated outcomes per refitted candidate.
    prob : float
        Interval probability for the widths.
    rank_by : {"reduction", "per_flop"}
        ``"reduction"`` (default): the best single use of the budget; the
        recommendation is the cheapest candidate whose expected reduction is
        within Monte-Carlo error of the largest. ``"per_flop"``: expected sd
        reduction per FLOP, which favours cheap experiments (a greedy,
        re-plan-after-each-run strategy).
    seed : int

    Returns
    -------
    pandas.DataFrame
        One row per affordable candidate, best first: ``rank``,
        ``experiment``, ``label``, ``n_runs``, ``params``, ``tokens``,
        ``tokens_per_param``, ``new_size`` (no fitted run of the family has
        this size), ``n_checkpoints``, ``flops``,
        ``budget_fraction``, ``current_sd``, ``expected_sd``,
        ``expected_sd_mcse``, ``current_width``, ``expected_width``,
        ``reduction``, ``reduction_pct``, ``reduction_per_1e18_flops``,
        ``reduction_per_1e18_mcse``, ``ess``, ``method`` ("importance" or
        "laplace"), ``n_outcomes``, ``recommended``. ``attrs`` holds
        ``target``, ``budget_flops``, ``rank_by``, ``dropped`` (over-budget
        candidates), ``recommendation`` (the recommended row as a dict, or
        None), ``notes``, ``draws`` and ``draw_efficiency``.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if rank_by not in RANK_BY:
        raise ValueError(f"rank_by must be one of {RANK_BY}, got {rank_by!r}")
    if not 0 < prob < 1:
        raise ValueError(f"prob must be in (0, 1), got {prob}")
    budget = float(budget_flops)
    if not math.isfinite(budget) or budget <= 0:
        raise ValueError(f"budget_flops must be a positive number of FLOPs, got {budget_flops}")
    tgt = Target.coerce(target, posterior, kind)
    if candidates is None:
        cands = default_candidates(posterior, tgt.family, budget)
    else:
        cands = [Candidate.coerce(c) for c in candidates]
        if not cands:
            raise ValueError("candidates is empty")
    fam = family_design(posterior, tgt.family)
    cands, warmup_notes = _past_warmup(cands, fam)
    affordable, dropped, notes = _within_budget(cands, budget)
    notes = warmup_notes + notes
    if method == "importance" and posterior.n_draws <= 1:
        raise ValueError("method='importance' needs posterior draws; this fit has one (MAP)")

    setup, current = _prepare(
        posterior, tgt, affordable, max_draws, n_outcomes, n_refit_outcomes, prob, seed
    )
    results = _evaluate(setup, affordable, method, min_ess, n_refit_outcomes, current)
    table = _table(affordable, results, budget, fam.sizes)
    table, rec = _rank(table, rank_by)
    if rec is None:
        notes.append(
            "no candidate reduces the target's sd by more than twice its Monte-Carlo error"
        )
    table.attrs.update(
        {
            "target": {
                "family": tgt.family,
                "params": tgt.params,
                "tokens": tgt.tokens,
                "kind": tgt.kind,
            },
            "budget_flops": budget,
            "rank_by": rank_by,
            "prob": prob,
            "dropped": [describe(c) for c in dropped],
            "recommendation": rec,
            "notes": notes,
            "draws": int(setup.t_draws.size),
            "draw_efficiency": current["efficiency"],
        }
    )
    return table


def _past_warmup(cands: list, design: FamilyDesign):
    """Drop runs that end before the warm-up cut: the fit would discard all their data."""
    kept = [c for c in cands if design.usable(c.tokens)]
    if len(kept) == len(cands):
        return cands, []
    short = min((c for c in cands if c not in kept), key=lambda c: c.tokens)
    msg = (
        f"{len(cands) - len(kept)} candidate(s) train on fewer tokens than the fit's warm-up "
        f"cut (min_tokens = {design.min_tokens:.3g}) and were dropped: the fit discards every "
        f"checkpoint before it (e.g. {describe(short)})"
    )
    if not kept:
        raise ValueError(msg.replace(" and were dropped", "; no candidate is left"))
    warnings.warn(msg, WarmupCutWarning, stacklevel=3)
    return kept, [msg]


def _within_budget(cands: list, budget: float):
    affordable = [c for c in cands if c.flops <= budget * (1 + 1e-9)]
    dropped = [c for c in cands if c not in affordable]
    notes = []
    if dropped:
        cheapest = min(dropped, key=lambda c: c.flops)
        msg = (
            f"{len(dropped)} candidate(s) cost more than the budget of {budget:.3g} FLOPs and "
            f"were dropped (cheapest dropped: {describe(cheapest)}, {cheapest.flops:.3g} FLOPs)"
        )
        notes.append(msg)
        warnings.warn(msg, OverBudgetWarning, stacklevel=3)
    if not affordable:
        cheapest = min(cands, key=lambda c: c.flops)
        raise ValueError(
            f"no candidate experiment fits the budget of {budget:.3g} FLOPs; the cheapest "
            f"({describe(cheapest)}) costs {cheapest.flops:.3g} FLOPs (6 N D per run)"
        )
    return affordable, dropped, notes


def _prepare(post, tgt, affordable, max_draws, n_outcomes, n_refit_outcomes, prob, seed):
    """Draws, target values, simulated-outcome bookkeeping and the current uncertainty."""
    idx, params, t_draws, delta = _draws_and_target(post, tgt, max_draws, seed)
    if idx.size == post.n_draws:
        efficiency = draw_efficiency(post, t_draws)
    else:
        every = _draw_params(post, np.arange(post.n_draws))
        latent = np.random.default_rng([seed, 9]).standard_normal((post.n_draws, 3))
        efficiency = draw_efficiency(post, target_draws(post, tgt, every, latent))
    rng = np.random.default_rng([seed, 8])
    n_out = int(min(n_outcomes, idx.size))
    gen = np.sort(rng.choice(idx.size, n_out, replace=False)) if idx.size > 1 else np.zeros(1, int)
    setup = _Setup(
        post=post,
        target=tgt,
        f=post.data.family_index(tgt.family),
        params=params,
        delta=delta,
        t_draws=t_draws,
        gen=gen,
        base_key=jax.random.PRNGKey(seed),
        z_seed=rng.standard_normal(
            (max(n_out, n_refit_outcomes), max(c.n_runs for c in affordable))
        ),
        prob=prob,
    )
    current = {"sd": float("nan"), "width": float("nan"), "efficiency": efficiency}
    if idx.size > 1:
        lo, hi = np.quantile(t_draws, [(1 - prob) / 2, (1 + prob) / 2])
        current.update(sd=float(np.std(t_draws)), width=float(hi - lo))
    return setup, current


def _evaluate(setup: _Setup, affordable, method, min_ess, n_refit_outcomes, current) -> dict:
    """Expected posterior sd etc. of every candidate (importance sampling or Laplace)."""
    post = setup.post
    design = family_design(post, setup.target.family)
    groups: dict = {}
    for c in affordable:
        groups.setdefault((c.params, c.tokens), []).append(c)
    checkpoints = {key: design.checkpoints(key[1]) for key in groups}
    results, refit = {}, {}
    if method != "laplace" and post.n_draws > 1:
        stats = _importance_groups(setup, groups, checkpoints)
        for key, group in groups.items():
            for c in group:
                ess = float(np.median(stats[c]["ess"])) * current["efficiency"]
                if method == "auto" and ess < min_ess:
                    refit.setdefault(key, []).append(c)
                else:
                    results[c] = _row_from_is(stats[c], ess, current)
    else:
        refit = dict(groups)
    if refit:
        n_pad = _next_pow2(max(ck.size for ck in checkpoints.values()))
        k_pad = max(c.n_runs for group in refit.values() for c in group)
        laplace = _Laplace(post, setup.target, n_pad, k_pad)
        for c, r in _laplace_all(setup, refit, checkpoints, n_refit_outcomes, laplace).items():
            results[c] = _row_from_laplace(r, current, setup.prob)
    for key, group in groups.items():
        for c in group:
            results[c]["n_checkpoints"] = int(checkpoints[key].size)
    return results


def _table(affordable, results: dict, budget: float, sizes: np.ndarray) -> pd.DataFrame:
    rows = []
    for c in affordable:
        r = results[c]
        red = r["current_sd"] - r["expected_sd"]
        rows.append(
            {
                "experiment": describe(c),
                "label": c.label,
                "n_runs": c.n_runs,
                "params": c.params,
                "tokens": c.tokens,
                "tokens_per_param": c.tokens / c.params,
                "new_size": not bool(np.any(np.isclose(c.params, sizes, rtol=1e-6))),
                "n_checkpoints": r["n_checkpoints"],
                "flops": c.flops,
                "budget_fraction": c.flops / budget,
                "current_sd": r["current_sd"],
                "expected_sd": r["expected_sd"],
                "expected_sd_mcse": r["expected_sd_mcse"],
                "current_width": r["current_width"],
                "expected_width": r["expected_width"],
                "reduction": red,
                "reduction_pct": 100.0 * red / r["current_sd"],
                "reduction_per_1e18_flops": red / (c.flops / 1e18),
                "reduction_per_1e18_mcse": r["expected_sd_mcse"] / (c.flops / 1e18),
                "ess": r["ess"],
                "method": r["method"],
                "n_outcomes": r["n_outcomes"],
            }
        )
    return pd.DataFrame(rows)


def _rank(table: pd.DataFrame, rank_by: str):
    """Sort, number and mark the recommended row; returns (table, recommended row or None)."""
    key = "reduction_per_1e18_flops" if rank_by == "per_flop" else "reduction"
    table = table.sort_values([key, "flops"], ascending=[False, True], kind="stable")
    table = table.reset_index(drop=True)
    table.insert(0, "rank", np.arange(1, len(table) + 1))
    table["recommended"] = False
    mcse = table["expected_sd_mcse"].fillna(0.0)
    # only experiments whose reduction is clearly above zero qualify
    clear = (table["reduction"] > 2.0 * mcse).to_numpy()
    if not clear.any():
        return table, None
    best = int(np.flatnonzero(clear)[0])
    if rank_by == "reduction":
        # the cheapest experiment within Monte-Carlo error of the largest reduction
        gap = table.loc[best, "reduction"] - table["reduction"]
        tied = clear & (gap <= 2.0 * np.sqrt(mcse[best] ** 2 + mcse**2)).to_numpy()
        best = int(table.loc[tied, "flops"].idxmin())
    table.loc[best, "recommended"] = True
    return table, table.loc[best].to_dict()


def _row_from_is(s: dict, ess: float, current: dict) -> dict:
    m = s["sd"].size
    return {
        "current_sd": current["sd"],
        "current_width": current["width"],
        "expected_sd": float(np.mean(s["sd"])),
        "expected_sd_mcse": float(np.std(s["sd"], ddof=1) / math.sqrt(m)) if m > 1 else np.nan,
        "expected_width": float(np.mean(s["width"])),
        "ess": ess,
        "method": "importance",
        "n_outcomes": m,
    }


def _row_from_laplace(r: dict, current: dict, prob: float) -> dict:
    current_sd, current_width = current["sd"], current["width"]
    if not math.isfinite(current_sd):
        # a point-estimate fit: the Laplace approximation is the current posterior
        current_sd = r["laplace_sd"]
        z = float(jax.scipy.stats.norm.ppf((1 + prob) / 2))
        current_width = 2 * z * current_sd
    ratio = r["ratio"]
    m = ratio.size
    return {
        "current_sd": current_sd,
        "current_width": current_width,
        "expected_sd": current_sd * float(np.mean(ratio)),
        "expected_sd_mcse": current_sd * float(np.std(ratio, ddof=1)) / math.sqrt(m)
        if m > 1
        else np.nan,
        "expected_width": current_width * float(np.mean(ratio)),
        "ess": np.nan,
        "method": "laplace",
        "n_outcomes": m,
    }


def recommendation(table: pd.DataFrame) -> str:
    """One line: what to train, and how much it should shrink the target's sd."""
    rec = table.attrs.get("recommendation")
    tgt = table.attrs.get("target", {})
    what = (
        f"the {tgt.get('kind', 'mean')} loss of {tgt.get('family')} at "
        f"{tgt.get('params', float('nan')):.3g} params, {tgt.get('tokens', float('nan')):.3g} "
        "tokens"
    )
    if rec is None:
        return f"no candidate measurably sharpens {what}; try other candidates or a larger budget"
    line = (
        f"train {rec['experiment']} ({rec['flops']:.3g} FLOPs, "
        f"{100 * rec['budget_fraction']:.0f}% of the budget): expected sd of {what} "
        f"{rec['current_sd']:.4g} -> {rec['expected_sd']:.4g} ± {rec['expected_sd_mcse']:.2g} nats "
        f"({rec['reduction_pct']:.0f}% lower; {rec['method']})"
    )
    if rec["rank"] > 1:
        line += "; within Monte-Carlo error of the largest reduction, at lower cost"
    return line


def format_plan(table: pd.DataFrame, max_rows: int | None = None) -> str:
    """The ranked table as fixed-width text (what ``bayescale plan`` prints)."""
    shown = table if max_rows is None else table.head(max_rows)
    out = pd.DataFrame(
        {
            "rank": shown["rank"],
            "experiment": shown["experiment"],
            "flops": shown["flops"].map(lambda v: f"{v:.2g}"),
            "budget": shown["budget_fraction"].map(lambda v: f"{100 * v:.0f}%"),
            "sd now": shown["current_sd"].map(lambda v: f"{v:.4g}"),
            "sd after": [
                f"{a:.4g} ± {m:.1g}"
                for a, m in zip(shown["expected_sd"], shown["expected_sd_mcse"], strict=True)
            ],
            "width after": shown["expected_width"].map(lambda v: f"{v:.4g}"),
            "reduction": shown["reduction_pct"].map(lambda v: f"{v:.1f}%"),
            "per 1e18 FLOPs": shown["reduction_per_1e18_flops"].map(lambda v: f"{v:.3g}"),
            "method": shown["method"],
            "": np.where(shown["recommended"], "<-", ""),
        }
    )
    tgt = table.attrs.get("target", {})
    prob = table.attrs.get("prob", 0.9)
    head = (
        f"target: {tgt.get('kind', 'mean')} loss of {tgt.get('family')} at "
        f"{tgt.get('params', float('nan')):.3g} params, {tgt.get('tokens', float('nan')):.3g} "
        f"tokens; budget {table.attrs.get('budget_flops', float('nan')):.3g} FLOPs; sd in nats, "
        f"width of the {prob:.0%} interval; ranked by "
        + ("sd reduction per FLOP" if table.attrs.get("rank_by") == "per_flop" else "sd reduction")
    )
    lines = [head, out.to_string(index=False)]
    if max_rows is not None and len(table) > max_rows:
        lines.append(f"... {len(table) - max_rows} more candidate(s)")
    lines += [f"note: {n}" for n in table.attrs.get("notes", [])]
    return "\n".join(lines)
