"""Laplace refits: the target's posterior after an experiment, where reweighting fails.

When new data would move the posterior further than the current draws can
represent, :func:`~bayescale.design.plan` refits instead: MAP + Laplace
approximation on the fitted data plus simulated runs, and the ratio
``sd_after / sd_before`` of the approximation scales the current posterior
sd, so that its own bias cancels to first order.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
from jax.flatten_util import ravel_pytree

from bayescale import laws
from bayescale.design.importance import outcome_key
from bayescale.design.runs import (
    one_draw,
    param_keys,
    run_arrays,
    run_inputs,
    run_inputs_from,
    run_log_marginal,
    simulate_run,
    stacked,
)
from bayescale.fitting import model_kwargs
from bayescale.model import ModelInputs, anneal_params, family_law, scaling_model, spread_scales
from bayescale.seeds import law_offset_runs

_NEWTON_STEPS = 60
_NEWTON_TOL = 1e-4
_DAMPING = (0.0, 0.1, 1.0, 10.0, 100.0, 1e3, 1e4)
_MAX_STEP = 2.0  # largest move of one unconstrained coordinate per step


def _latent_shapes(post, inputs: ModelInputs) -> dict:
    from numpyro import handlers

    tr = handlers.trace(handlers.seed(scaling_model, 0)).get_trace(
        **model_kwargs(inputs, post.config, observe=False)
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
# The discrepancy's scale and length are held likewise.
_GROUP_SCALES = (
    "sigma_theta",
    "tau_alpha",
    "tau_beta",
    "sigma_group",
    "sigma_seed",
    "sigma_delta",
    "ell_delta",
    "sigma_delta_d",
    "ell_delta_d",
)


class Laplace:
    """MAP + Laplace approximation of the posterior after adding new runs.

    The log posterior after the experiment is the fitted model's (on its own
    data) plus, for each new run, its likelihood with the seed effect
    integrated out (:func:`run_log_marginal`), plus the family offset
    ``delta`` when run effects are centred (module notes), plus, in fits with
    the size-level discrepancy, its values at the target and at the new runs'
    size (standard normal latents of their joint conditional given the
    family's fitted sizes, :meth:`_discrepancy`). This is the same
    posterior a refit on the augmented data targets, written so that every
    candidate (padded to ``k_pad`` runs of ``n_pad`` checkpoints) shares one
    compiled function.

    Group scales (``_GROUP_SCALES``) are held at their posterior median; every
    other latent is free. The mode is found by damped Newton steps from a
    warm start, with the Hessian's eigenvalues floored so that flat or
    slightly non-convex directions do not blow up. The target's variance is
    the delta method ``g' H^-1 g`` for its log. ``schedule`` (a
    :class:`~bayescale.schedules.Shape`, or ``None`` for a constant rate) is
    the target's and the new runs'.
    """

    def __init__(self, post, target, kind: str, n_pad: int, k_pad: int, schedule=None):
        from numpyro.infer.util import unconstrain_fn

        self.post, self.target, self.kind = post, target, kind
        self.schedule, self.keys = schedule, param_keys(post)
        self.f = post.data.family_index(target.family)
        self.model = scaling_model
        self.inputs0 = post.data.inputs()
        self.k_family = int(law_offset_runs(self.inputs0)[self.f])
        self.centred = self.k_family > 0
        self.terms = _discrepancy_terms(post, self.inputs0, self.f)
        self.n_extra = int(self.centred) + 2 * len(self.terms)
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
        kw = model_kwargs(self.inputs0, post.config)
        z = jax.vmap(lambda p: unconstrain_fn(scaling_model, (), kw, p))(latent)
        self.fixed = {k: jnp.median(z[k], axis=0) for k in _GROUP_SCALES if k in z}
        if n == 1:
            self.fixed = _map_scales(post, self.fixed)
        free = {k: v for k, v in z.items() if k not in self.fixed}
        flat = jax.vmap(lambda d: ravel_pytree(d)[0])(free)
        _, self.unravel = ravel_pytree({k: v[0] for k, v in free.items()})
        self.n_free = int(flat.shape[1])
        # compiled once: evaluated eagerly it re-traces the model at every call
        fit_potential = jax.jit(self._fit_potential)
        pot = jax.jit(jax.vmap(self._fit_potential))(flat)
        pot = np.where(np.isfinite(np.asarray(pot)), np.asarray(pot), np.inf)
        x_start = flat[int(np.argmin(pot))]
        x_start = jnp.concatenate([x_start, jnp.zeros(self.n_extra, x_start.dtype)])
        # one experiment at a time: compiling the Newton solver dominates its
        # cost, and a batch of another size would compile it again
        self._solve = jax.jit(self._solve_one)
        # "before": an experiment with no runs
        dummy, _ = run_inputs(self.f, post.data.n_families, 1e9, [1e11], self.n_pad, schedule)
        empty = (
            {k: jnp.asarray(v) for k, v in run_arrays(dummy).items()},
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
        # x0 + eps @ root.T draws from N(x0, H^-1), |eigenvalues| floored; one
        # decomposition serves every design's draws
        w, v = jnp.linalg.eigh(h0)
        w = jnp.maximum(jnp.abs(w), 1e-6 * jnp.max(jnp.abs(w)))
        self._root = v / jnp.sqrt(w)
        self.log_mu0, self.var0 = float(log_mu), float(var)

    # -- densities ---------------------------------------------------------------
    def _kwargs(self, observe):
        return model_kwargs(self.inputs0, self.post.config, observe=observe)

    def _fit_potential(self, x_free):
        from numpyro.infer.util import potential_energy

        return potential_energy(
            self.model, (), self._kwargs(True), {**self.unravel(x_free), **self.fixed}
        )

    def _split(self, x):
        """Free latents, the family offset and the discrepancy normals (terms, 2)."""
        delta = x[self.n_free] if self.centred else jnp.zeros(())
        e = x[self.n_free + int(self.centred) :].reshape(len(self.terms), 2)
        return x[: self.n_free], delta, e

    def _discrepancy(self, c, e, arrays=None, mask=None):
        """The discrepancy, relative to the family's fitted sizes, at the target and a new run.

        The target's value is drawn from its conditional given the fitted
        sizes (normal ``e[:, 0]``), the new run's from its conditional given
        those and the target (``e[:, 1]``): the two are jointly Gaussian as
        the prior says. The token-budget term applies to a new run only when
        it is a single final loss.
        """
        from bayescale.discrepancy import conditional, slot_values

        d_t, d_c = jnp.zeros(()), jnp.zeros(())
        for i, (term, slots, cols) in enumerate(self.terms):
            sigma = jnp.reshape(c[f"sigma_delta{term.suffix}"], (1,))
            ell = jnp.reshape(c[f"ell_delta{term.suffix}"], (1,))
            v = slot_values(slots, c[f"z_delta{term.suffix}"], sigma[0], ell[0])[cols]
            x_fit = slots.x[cols]
            x_t = math.log(self.target.params if term.axis == "params" else self.target.tokens)
            m, sd = conditional(x_fit, v[None], np.array([x_t]), sigma, ell, xp=jnp)
            v_t = m[0, 0] + sd[0, 0] * e[i, 0]
            d_t = d_t + v_t - jnp.mean(v)
            if arrays is None:
                continue
            at = int(np.searchsorted(x_fit, x_t))
            x_known, v_known = np.insert(x_fit, at, x_t), jnp.insert(v, at, v_t)
            if term.axis == "params":
                x_c, applies = arrays["log_n"][0], 1.0
            else:
                x_c = jnp.max(jnp.where(mask, arrays["log_d"], -jnp.inf))
                applies = (jnp.sum(mask) == 1).astype(v.dtype)
            m, sd = conditional(x_known, v_known[None], jnp.reshape(x_c, (1,)), sigma, ell, xp=jnp)
            d_c = d_c + applies * (m[0, 0] + sd[0, 0] * e[i, 1] - jnp.mean(v))
        return d_t, d_c

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
        x_free, delta, e = self._split(x)
        pot = self._fit_potential(x_free)
        c = self._constrained(x_free)
        draw = {k: c[k] for k in self.keys if k != "u"}
        if self.centred:
            sd = draw["sigma_seed"] / math.sqrt(self.k_family)
            pot = pot - dist.Normal(0.0, sd).log_prob(delta)
        pot = pot + 0.5 * jnp.sum(e**2)
        _, d_c = self._discrepancy(c, e, arrays, mask)
        inputs1 = run_inputs_from(arrays)
        ll = jax.vmap(lambda yr: run_log_marginal(inputs1, draw, delta + d_c, yr, mask))(y)
        return pot - jnp.sum(run_mask * ll)

    def _log_target(self, x):
        tgt, f = self.target, self.f
        x_free, delta, e = self._split(x)
        c = self._constrained(x_free)
        law = family_law(c).map(lambda v: v[f])
        log_mu = self._log_law(law, anneal_params(c), tgt.params, tgt.tokens)
        d_t, _ = self._discrepancy(c, e)
        return log_mu + delta + d_t, (c["sigma_seed"], c["sigma_obs"][f])

    def _log_law(self, law, anneal, params: float, tokens: float):
        """The family's log law at one point, under the planned schedule if there is one."""
        if self.schedule is None:
            return laws.log_loss(law, math.log(params), math.log(tokens))
        from bayescale.schedules import features, scheduled_log_loss

        feats = features(self.schedule.grid(tokens), [tokens])
        anneal = anneal.map(lambda v: v[self.f])
        return scheduled_log_loss(law, anneal, math.log(params), *(a[0] for a in feats))

    def _solve_one(self, x_init, arrays, mask, y, run_mask):
        x, h = _newton(lambda z: self._potential(z, arrays, mask, y, run_mask), x_init)
        (log_mu, (sigma_seed, sigma_obs)), g = jax.value_and_grad(self._log_target, has_aux=True)(x)
        var = g @ _floored_solve(h, g, 1e-6)
        if self.kind == "new_run":
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

    def sample_draws(self, key, n: int, arrays, mask):
        """Parameter draws from the approximation at the fitted data, and new runs' offsets.

        ``arrays``/``mask``: the new runs' padded design; their offset is the
        family offset plus, with the discrepancy, its value at their size.
        The same ``key`` gives the same draws for every design.
        """
        eps = jax.random.normal(key, (n, self.x0.shape[0]))
        xs = self.x0 + eps @ self._root.T

        def one(x):
            x_free, delta, e = self._split(x)
            c = self._constrained(x_free)
            _, d_c = self._discrepancy(c, e, arrays, mask)
            return {k: c[k] for k in self.keys}, delta + d_c

        return jax.vmap(one)(xs)


def _discrepancy_terms(post, inputs, f: int) -> list:
    """The discrepancy terms family ``f`` has in this fit: ``(term, slots, family's columns)``."""
    from bayescale.discrepancy import fitted_terms

    pairs = fitted_terms(post.tree["posterior"], inputs)
    return [(t, s, s.family == f) for t, s in pairs if np.any(s.family == f)]


def _floored_solve(h, g, floor):
    """``H^-1 g`` with ``|eigenvalues|`` floored at ``floor * max``."""
    w, v = jnp.linalg.eigh(h)
    w = jnp.maximum(jnp.abs(w), floor * jnp.max(jnp.abs(w)) + 1e-12)
    return v @ ((v.T @ g) / w)


def _map_scales(post, fixed: dict) -> dict:
    """Group scales for a point-estimate fit: the spread of its own family values.

    A MAP pinches them towards zero; the spread of the fitted families'
    offsets and exponents is what they describe (:func:`spread_scales`;
    unconstrained values of positive sites are logs).
    """
    out = dict(fixed)
    n_fam = post.data.n_families
    names = ("a", "b", "alpha_f", "beta_f", "group_effect")
    values = {k: post.draws(k)[0] for k in names if k in post.tree["posterior"]}
    spread = spread_scales(values, n_fam)
    for name in ("sigma_theta", "tau_alpha", "tau_beta", "sigma_group"):
        if name in out:
            out[name] = jnp.log(jnp.asarray(spread[name]))
    if "sigma_seed" in out:
        # the scatter of the fitted run effects around their family averages: K runs
        # give K - 1 degrees of freedom (model.centered_run_effects)
        k = law_offset_runs(post.data.inputs())
        u = post.draws("u")[0]
        dof = float(np.sum(np.maximum(k - 1, 0)))
        scatter = float(np.sqrt(np.sum(u**2) / dof)) if dof else post.config.priors.seed_sd
        out["sigma_seed"] = jnp.log(jnp.asarray(max(scatter, 1e-3)))
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


def laplace_all(setup, refit: dict, checkpoints: dict, n_outcomes: int, laplace):
    """Laplace sd ratios (after / before) for every refitted candidate and outcome."""
    post = setup.post
    m = int(min(n_outcomes, setup.z_seed.shape[0]))
    gen = setup.gen[np.arange(m) % setup.gen.shape[0]] if post.n_draws > 1 else np.arange(m)
    batch = []  # (candidate, outcome)
    arrays, masks, ys, run_masks = [], [], [], []
    for key, group in refit.items():
        new1, mask = run_inputs(
            setup.f, post.data.n_families, key[0], checkpoints[key], laplace.n_pad, setup.schedule
        )
        design = run_arrays(new1)
        if post.n_draws > 1:
            params, delta = setup.params, jnp.asarray(setup.run_delta[key])
        else:
            params, delta = laplace.sample_draws(
                jax.random.fold_in(setup.base_key, 99),
                m,
                {k: jnp.asarray(v) for k, v in design.items()},
                jnp.asarray(mask),
            )
        y = np.stack(
            [
                np.stack(
                    [
                        np.asarray(
                            simulate_run(
                                outcome_key(setup.base_key, mi, r),
                                new1,
                                one_draw(params, gen[mi]),
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
                arrays.append(design)
                masks.append(mask)
                ys.append(y[mi])
                run_masks.append(np.arange(laplace.k_pad) < c.n_runs)
    _, var = laplace.after(
        stacked(arrays),
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
