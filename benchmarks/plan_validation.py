"""Validate ``bayescale.design.plan`` on simulated worlds with known truth.

For each seed-noise level ``sigma_seed`` and each simulated world
(``bayescale.simulate.simulate_frame``: 3 families, sizes 1e8/2e8/4e8, two
seeds per size, 8 checkpoints from 1e10 to 1e11 tokens) this script

1. fits the model (NUTS, ``exponents="shared"``, 2 chains x 300 warm-up +
   300 draws: short, so that the whole study fits on 2 cores);
2. plans the next experiment for a target of ``fam0`` with a budget of
   4.8e20 FLOPs, ranking the default candidates plus the two fixed
   alternatives by the sd reduction they buy (``rank_by="reduction"``):
   - "one large run": one run at the largest affordable size (2e9 params at
     20 tokens per parameter);
   - "small seeds": the whole budget in new seeds of the smallest size (8 runs
     of 1e8 params on 1e11 tokens);
3. runs plan's recommendation and both alternatives in the *true* world (the
   world's law, fresh seed effects and OU noise), refits on the augmented data
   with the same NUTS settings, and records the target's posterior sd and the
   error of its posterior mean against the true law;
4. runs each strategy 32 more times in the true world and refits each outcome
   by reweighting the draws, so that the error comparison is not decided by one draw
   of the new runs' seed effects.

The default target is the mean law at 8e8 parameters and 1e11 tokens (the
next doubling past the largest fitted size); ``--near`` targets the largest
fitted size itself (4e8) and ``--small`` the smallest (1e8, the size of a
team's ablation runs), each in its own section. It reports (a) realised /
predicted posterior sd, (b) the realised target error of each strategy,
paired by world, and (c) which kind of experiment plan recommends at each
seed-noise level. Once all three targets are in the cache, a last section
sets (b) side by side and pooled. Results of each world are cached
(``--cache``, keyed by the settings) so that an interrupted run resumes.
``--quick`` runs two noise levels with one world each.

    uv run python benchmarks/plan_validation.py [--quick | --near | --small]
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _results import frame_to_markdown, machine_info, write_section  # noqa: E402

import bayescale  # noqa: E402
from bayescale import design  # noqa: E402
from bayescale.cli import enable_compile_cache  # noqa: E402
from bayescale.model import simulate_log_loss  # noqa: E402
from bayescale.simulate import simulate_frame, true_loss  # noqa: E402

WORLD = dict(
    n_families=3,
    sizes=(1e8, 2e8, 4e8),
    seeds_per_size=2,
    n_checkpoints=8,
    tokens_range=(1e10, 1e11),
    sigma_obs=0.01,
)
FIT = dict(exponents="shared", num_chains=2, num_warmup=300, num_samples=300)
FAMILY = "fam0"
# far: 2x the largest fitted size; near: the mean law at the largest fitted size
# (a family's loss there free of its two runs' seed luck), where a larger model
# says little and seeds should win
TARGETS = {
    "far": {"family": FAMILY, "params": 8e8, "tokens": 1e11},
    "near": {"family": FAMILY, "params": 4e8, "tokens": 1e11},
    "small": {"family": FAMILY, "params": 1e8, "tokens": 1e11},
}
BUDGET = 4.8e20
LARGE = design.Candidate(2e9, 4e10, 1, "one large run")
SEEDS = design.Candidate(1e8, 1e11, 8, "small seeds")
MC_OUTCOMES = 32  # true-world outcomes per strategy and world, for the averaged errors
MC_ESTIMATOR = "importance+sd"
# more worlds where plan's choice starts to differ from one large run; every
# target asks its question of the same worlds (a world's seed is fixed by its place)
WORLDS = {"sigmas": (0.005, 0.02, 0.05, 0.1), "worlds": (6, 6, 6, 16)}
MODES = {
    "quick": {"target": "far", "sigmas": (0.005, 0.04), "worlds": (1, 1)},
    "full": {"target": "far", **WORLDS},
    "near": {"target": "near", **WORLDS},
    "small": {"target": "small", **WORLDS},
}
HEADINGS = {
    "near": " --near`, target at the largest fitted size)",
    "small": " --small`, target at the smallest fitted size)",
}
SECTIONS = {
    "quick": "plan_validation",
    "full": "plan_validation",
    "near": "plan_validation_near",
    "small": "plan_validation_small",
}


def settings_key(target: dict) -> str:
    """Fingerprint of everything a cached world depends on."""
    cfg = {"world": WORLD, "fit": FIT, "target": target, "budget": BUDGET}
    cfg["alternatives"] = [(c.params, c.tokens, c.n_runs) for c in (LARGE, SEEDS)]
    return json.dumps(cfg, sort_keys=True, default=str)


def _fit(frame, seed):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return bayescale.fit(frame, seed=seed, progress_bar=False, **FIT)


def _true_outcome(post, truth, cand, key, sigma_seed):
    """Losses of the candidate's runs in the true world: shape (n_runs, n_checkpoints)."""
    fi = int(FAMILY[3:])
    ckpt = design.family_design(post, FAMILY).checkpoints(cand.tokens)
    inputs, _ = design.run_inputs(0, 1, cand.params, ckpt)
    params = {
        "log_E": truth.log_E[[fi]],
        "a": truth.a[[fi]],
        "b": truth.b[[fi]],
        "alpha_f": truth.alpha_f[[fi]],
        "beta_f": truth.beta_f[[fi]],
        "sigma_obs": truth.sigma_obs[[fi]],
        "ell": truth.ell,
        "nu": truth.nu,
    }
    rows = []
    for r in range(cand.n_runs):
        k_u, k_noise = jax.random.split(jax.random.fold_in(key, r))
        u = sigma_seed * np.asarray(jax.random.normal(k_u, (1,)))
        y = simulate_log_loss(k_noise, inputs, dict(params, u=u), np.ones(1))
        rows.append(np.exp(np.asarray(y)) * truth.scale[fi])
    return np.stack(rows)


def _target_stats(post, target, seed=0):
    tgt = design.Target.coerce(target, post)
    _, _, t, _ = design._draws_and_target(post, tgt, 10**6, seed)
    return float(np.mean(t)), float(np.std(t))


def _truth_target(truth, target) -> float:
    return float(true_loss(truth, int(FAMILY[3:]), target["params"], target["tokens"]))


def _plan(post, target, seed):
    """Plan's table over the default candidates plus both alternatives, and its pick."""
    cands = design.default_candidates(post, FAMILY, BUDGET)
    keys = {(c.params, c.tokens, c.n_runs) for c in cands}
    cands += [c for c in (LARGE, SEEDS) if (c.params, c.tokens, c.n_runs) not in keys]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = design.plan(post, target, BUDGET, candidates=cands, rank_by="reduction", seed=seed)
    rec = table.attrs["recommendation"]
    return table, design.Candidate(rec["params"], rec["tokens"], int(rec["n_runs"]), "plan")


def _outcome_key(seed: int, r: int):
    # outcome 0 is the one the NUTS refit sees; the others are fresh
    base = jax.random.PRNGKey(seed + 1000)
    return base if r == 0 else jax.random.fold_in(jax.random.PRNGKey(seed + 5000), r)


def outcome_errors(post, truth, target, strategies: dict, sigma: float, seed: int) -> dict:
    """Target error after each strategy over many true-world outcomes.

    One NUTS refit per outcome would take hours per world, so each outcome
    updates the fit by reweighting its draws (``design.outcome_log_weights``,
    as in ``design.importance_update``): the estimate is the
    weighted posterior mean. Outcome 0 is the one the NUTS refit saw, to check
    the estimate against it.
    """
    tgt = design.Target.coerce(target, post)
    truth_target = _truth_target(truth, target)
    by_key = {}
    for c in strategies.values():
        key = (c.params, c.tokens, c.n_runs)
        if key in by_key:
            continue
        losses = [
            _true_outcome(post, truth, c, _outcome_key(seed, r), sigma)
            for r in range(MC_OUTCOMES + 1)
        ]
        t_draws, logw = design.outcome_log_weights(
            post, tgt, c, np.stack(losses), max_draws=1000, seed=seed
        )
        w = jax.nn.softmax(logw, axis=1)
        t = jnp.asarray(t_draws)
        est = np.asarray(w @ t)
        sd = np.sqrt(np.asarray(jnp.sum(w * (t[None, :] - est[:, None]) ** 2, axis=1)))
        ess = 1.0 / np.asarray(jnp.sum(w**2, axis=1))
        by_key[key] = {
            "mean_outcome0": float(est[0]),
            "error_pct": (100 * np.abs(est[1:] - truth_target) / truth_target).tolist(),
            # the posterior sd each outcome leaves, to set against the error it leaves
            "sd_pct": (100 * sd[1:] / truth_target).tolist(),
            "ess_median": float(np.median(ess[1:])),
        }
    out = {name: by_key[(c.params, c.tokens, c.n_runs)] for name, c in strategies.items()}
    return {"estimator": MC_ESTIMATOR, "strategies": out}


def mc_world(target, sigma: float, world: int, seed: int, cached: dict) -> dict:
    """Outcome-averaged errors for a world already in the cache (refits it, re-plans)."""
    frame, truth = simulate_frame(sigma_seed=sigma, seed=seed, **WORLD)
    post = _fit(frame, seed)
    _, rec_cand = _plan(post, target, seed)
    strategies = {"plan": rec_cand, "one large run": LARGE, "small seeds": SEEDS}
    out = outcome_errors(post, truth, target, strategies, sigma, seed)
    # the fit and plan are deterministic for a seed: the pick must be the cached one
    out["same_pick"] = design.describe(rec_cand) == cached["flip"]["recommended"]
    return out


def run_world(target, sigma: float, world: int, seed: int) -> dict:
    t0 = time.perf_counter()
    frame, truth = simulate_frame(sigma_seed=sigma, seed=seed, **WORLD)
    post = _fit(frame, seed)
    diag = post.diagnostics()
    truth_target = _truth_target(truth, target)
    t_fit = time.perf_counter() - t0

    t1 = time.perf_counter()
    table, rec_cand = _plan(post, target, seed)
    t_plan = time.perf_counter() - t1
    rec = table.attrs["recommendation"]

    def row_of(c):
        m = table[
            np.isclose(table["params"], c.params)
            & np.isclose(table["tokens"], c.tokens)
            & (table["n_runs"] == c.n_runs)
        ]
        return m.iloc[0]

    # the same strategies by importance sampling alone, whatever their ESS
    fixed = [rec_cand, LARGE, SEEDS]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table_is = design.plan(
            post, target, BUDGET, candidates=fixed, method="importance", seed=seed
        )

    def is_row(c):
        m = table_is[
            np.isclose(table_is["params"], c.params)
            & np.isclose(table_is["tokens"], c.tokens)
            & (table_is["n_runs"] == c.n_runs)
        ]
        return m.iloc[0]

    mean0, sd0 = _target_stats(post, target)
    strategies = {"plan": rec_cand, "one large run": LARGE, "small seeds": SEEDS}
    done: dict = {}
    out = []
    for name, c in strategies.items():
        key = (c.params, c.tokens, c.n_runs)
        if key not in done:
            loss = _true_outcome(post, truth, c, _outcome_key(seed, 0), sigma)
            upd = design.importance_update(post, target, c, loss, seed=seed)
            new = design.new_runs_frame(post, FAMILY, c, loss)
            post2 = _fit(pd.concat([frame, new], ignore_index=True), seed + 1)
            mean1, sd1 = _target_stats(post2, target)
            done[key] = {
                "realised_sd": sd1,
                "realised_mean": mean1,
                "is_sd_actual": upd["sd"],
                "is_mean_actual": upd["mean"],
                "is_ess_actual": upd["ess"],
                "refit_rhat": post2.diagnostics()["rhat_max"],
            }
        r = row_of(c)
        out.append(
            {
                "sigma_seed": sigma,
                "world": world,
                "strategy": name,
                "experiment": design.describe(c),
                "kind": "larger model" if c.params > max(WORLD["sizes"]) else "more seeds",
                "flops": c.flops,
                "truth": truth_target,
                "current_sd": sd0,
                "current_error_pct": 100 * abs(mean0 - truth_target) / truth_target,
                "predicted_sd": float(r["expected_sd"]),
                "predicted_mcse": float(r["expected_sd_mcse"]),
                "method": r["method"],
                "ess": float(r["ess"]),
                "predicted_sd_is": float(is_row(c)["expected_sd"]),
                "ess_is": float(is_row(c)["ess"]),
                **done[key],
                "error_pct": 100 * abs(done[key]["realised_mean"] - truth_target) / truth_target,
            }
        )
    large, seeds = row_of(LARGE), row_of(SEEDS)
    t2 = time.perf_counter()
    mc = outcome_errors(post, truth, target, strategies, sigma, seed)
    mc["same_pick"] = True
    mc["seconds"] = time.perf_counter() - t2
    return {
        "rows": out,
        "mc": mc,
        "flip": {
            "sigma_seed": sigma,
            "world": world,
            "recommended": rec["experiment"],
            "recommended_kind": "larger model"
            if rec["params"] > max(WORLD["sizes"])
            else "more seeds",
            "sd_now": sd0,
            "sd_after_one_large": float(large["expected_sd"]),
            "sd_after_small_seeds": float(seeds["expected_sd"]),
            "sigma_seed_fitted": float(np.median(post.draws("sigma_seed"))),
        },
        "fit": {
            "rhat_max": diag["rhat_max"],
            "divergences": diag["divergences"],
            "fit_seconds": t_fit,
            "plan_seconds": t_plan,
            "plan_rows": len(table),
            "laplace_rows": int((table["method"] == "laplace").sum()),
            "draw_efficiency": table.attrs["draw_efficiency"],
        },
    }


def _load_cache(path: Path, target: dict) -> dict:
    out = {}
    if path.exists():
        for line in path.read_text().splitlines():
            rec = json.loads(line)
            if rec.get("settings") != settings_key(target):
                continue
            key = (rec["mode"], rec["sigma"], rec["world"])
            if "result" in rec:
                out[key] = {**out.get(key, {}), **rec["result"]}
            elif rec.get("mc_outcomes") == MC_OUTCOMES:
                # averaged errors added later to a world run before they existed
                out[key] = {**out.get(key, {}), "mc": rec["mc"]}
    for res in out.values():
        if res.get("mc", {}).get("estimator") != MC_ESTIMATOR:
            res.pop("mc", None)
    return out


def _worlds(mode: str) -> list:
    """A mode's worlds as ((mode, sigma, world), seed); a world's seed is fixed by its place."""
    cfg = MODES[mode]
    return [
        ((mode, sigma, w), 100 * i + w)
        for i, sigma in enumerate(cfg["sigmas"])
        for w in range(cfg["worlds"][i])
    ]


def _record_key(target: dict, mode: str, sigma, world) -> dict:
    """What a cache line is about: the settings, the mode and the world."""
    return {
        "settings": settings_key(target),
        "mode": mode,
        "sigma": float(sigma),
        "world": int(world),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="two noise levels, one world each")
    parser.add_argument(
        "--near", action="store_true", help="target the largest fitted size (own section)"
    )
    parser.add_argument(
        "--cache",
        type=Path,
        default=Path(tempfile.gettempdir()) / "bayescale_plan_validation.jsonl",
        help="per-world results, reused when rerun",
    )
    parser.add_argument(
        "--small", action="store_true", help="target the smallest fitted size (own section)"
    )
    parser.add_argument("--no-write", action="store_true", help="do not touch RESULTS.md")
    parser.add_argument("--one-world", nargs=4, help=argparse.SUPPRESS)
    parser.add_argument("--mc-world", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    enable_compile_cache()
    if args.mc_world:
        mode, sigma, w, seed = args.mc_world
        target = TARGETS[MODES[mode]["target"]]
        cached = _load_cache(args.cache, target)[(mode, float(sigma), int(w))]
        t0 = time.perf_counter()
        mc = mc_world(target, float(sigma), int(w), int(seed), cached)
        mc["seconds"] = time.perf_counter() - t0
        rec = _record_key(target, mode, sigma, w)
        rec["mc_outcomes"] = MC_OUTCOMES
        with args.cache.open("a") as fh:
            fh.write(json.dumps({**rec, "mc": mc}, default=float) + "\n")
        return 0
    if args.one_world:
        mode, sigma, w, seed = args.one_world
        target = TARGETS[MODES[mode]["target"]]
        res = run_world(target, float(sigma), int(w), seed=int(seed))
        rec = _record_key(target, mode, sigma, w)
        with args.cache.open("a") as fh:
            fh.write(json.dumps({**rec, "result": res}, default=float) + "\n")
        return 0
    mode = "quick" if args.quick else "near" if args.near else "small" if args.small else "full"
    cfg = MODES[mode]
    target = TARGETS[cfg["target"]]
    cache = _load_cache(args.cache, target)
    t0 = time.perf_counter()
    results = []
    for key, seed in _worlds(mode):
        _, sigma, w = key
        # a fresh process per world: one process compiling a dozen worlds' fits
        # ran out of memory maps for JIT code
        one = [sys.executable, __file__, "--cache", str(args.cache)]
        world_args = [mode, str(sigma), str(w), str(seed)]
        if key not in cache:
            subprocess.run(one + ["--one-world", *world_args], check=True)
            cache = _load_cache(args.cache, target)
        elif "mc" not in cache[key]:
            subprocess.run(one + ["--mc-world", *world_args], check=True)
            cache = _load_cache(args.cache, target)
        results.append(cache[key])
        print(f"sigma_seed={sigma} world={w} done ({time.perf_counter() - t0:.0f} s)")
    body = summarise(results, mode, target, time.perf_counter() - t0)
    print(body)
    if not args.no_write:
        write_section(SECTIONS[mode], body)
    pooled = summarise_targets(args.cache)
    if pooled is not None:
        print(pooled)
        if not args.no_write and mode != "quick":
            write_section("plan_validation_targets", pooled)
    return 0


def _se(d) -> float:
    return float(d.std(ddof=1) / math.sqrt(len(d))) if len(d) > 1 else float("nan")


def _paired(err: pd.DataFrame, alt: str) -> dict:
    """Plan's error against one alternative, paired by world (one column per strategy)."""
    d = err["plan"] - err[alt]
    differ = d != 0
    return {
        "alternative": alt,
        "worlds": len(d),
        "mean error plan %": float(err["plan"].mean()),
        "mean error alternative %": float(err[alt].mean()),
        "plan - alternative (pp)": float(d.mean()),
        "se (pp)": _se(d),
        "plan better in": f"{int((d < 0).sum())}/{int(differ.sum())} worlds that differ",
        "where they differ (pp)": float(d[differ].mean()) if differ.any() else 0.0,
        "se where they differ": _se(d[differ]),
    }


def summarise_mc(results: list, rows: pd.DataFrame) -> list:
    """Lines on the errors averaged over many outcomes per strategy (if computed)."""
    have = [r for r in results if "mc" in r]
    if not have:
        return []
    per = _per_world(have)
    idx = ["sigma_seed", "world"]
    mean_err = per.pivot_table(index=idx, columns="strategy", values="mean_error")
    rms_err = per.pivot_table(index=idx, columns="strategy", values="rms_error")
    n_out = len(have[0]["mc"]["strategies"]["plan"]["error_pct"])
    out_rows = []
    for alt in ("one large run", "small seeds"):
        d_rms = rms_err["plan"] - rms_err[alt]
        row = _paired(mean_err, alt)
        out_rows.append({**row, "RMS error: plan - alternative (pp)": float(d_rms.mean())})
    by_sigma = mean_err.groupby(level="sigma_seed").mean()
    by_sigma.columns = [f"mean error % {c}" for c in by_sigma.columns]
    rms_sigma = rms_err.groupby(level="sigma_seed").mean()
    rms_sigma.columns = [f"RMS error % {c}" for c in rms_sigma.columns]
    by_sigma = by_sigma.join(rms_sigma).reset_index()
    # does the sd plan minimises track the error? RMS error / RMS posterior sd
    # plan's row last, so that it survives only where it is neither alternative
    calib = per.sort_values("strategy", key=lambda k: k == "plan", kind="stable")
    calib = calib.drop_duplicates(["sigma_seed", "world", "rms_error", "post_sd"])
    calib = calib.assign(kind=calib["strategy"].where(calib["strategy"] != "plan", "plan's pick"))
    calib = calib.groupby(["sigma_seed", "kind"]).agg(
        worlds=("world", "size"),
        rms_error_pct=("rms_error", lambda x: float(np.sqrt(np.mean(np.square(x))))),
        posterior_sd_pct=("post_sd", lambda x: float(np.sqrt(np.mean(np.square(x))))),
    )
    calib["error / sd"] = calib["rms_error_pct"] / calib["posterior_sd_pct"]
    calib = calib.reset_index()
    # the approximation against the NUTS refit on the outcome both saw
    nuts = rows.drop_duplicates(["sigma_seed", "world", "strategy"]).set_index(
        ["sigma_seed", "world", "strategy"]
    )
    both = per.set_index(["sigma_seed", "world", "strategy"]).join(nuts[["realised_mean", "truth"]])
    both = both.reset_index()
    both["gap"] = 100 * (both["outcome0"] - both["realised_mean"]) / both["truth"]
    gap_by = both[both["strategy"] != "plan"].pivot_table(
        index="sigma_seed", columns="strategy", values="gap"
    )
    gap_by.columns = [f"reweighted - NUTS (pp) after {c}" for c in gap_by.columns]
    ess_by = per[per["strategy"] != "plan"].pivot_table(
        index="sigma_seed", columns="strategy", values="ess", aggfunc="median"
    )
    ess_by.columns = [f"median ESS after {c}" for c in ess_by.columns]
    gap_by = gap_by.join(ess_by)
    both = both.drop_duplicates(["sigma_seed", "world", "outcome0"])
    gap = both["gap"]
    same = sum(bool(r["mc"].get("same_pick", True)) for r in have)
    err_is = both["outcome0"] - both["truth"]
    corr = float(np.corrcoef(err_is, both["realised_mean"] - both["truth"])[0, 1])
    return [
        f"**Averaged over {n_out} true-world outcomes per strategy.** One outcome per "
        "strategy leaves the comparison at the mercy of the new runs' seed effects, so each "
        f"strategy is also run {n_out} more times in each world's truth (fresh seed effects "
        "and noise). One NUTS refit per outcome would take hours per world, so each outcome "
        "updates the world's fit by reweighting its draws (`design.importance_update`, "
        "batched): the estimate is the weighted posterior mean. Error as above; "
        f"{len(have)} worlds (plan's pick reproduced in {same}).",
        "",
        frame_to_markdown(pd.DataFrame(out_rows), floatfmt=".3g"),
        "",
        frame_to_markdown(by_sigma, floatfmt=".3g"),
        "",
        "Plan minimises the posterior sd; this compares it with the error each strategy "
        "actually leaves (both over the outcomes, RMS over worlds, % of the true loss). "
        '"plan\'s pick" counts only worlds where plan chose neither fixed alternative. '
        "An error / sd ratio that differs between strategies means a smaller expected sd "
        "need not buy a smaller error:",
        "",
        frame_to_markdown(calib, floatfmt=".3g"),
        "",
        f"Reweighted vs NUTS refit on the outcome both saw ({len(both)} world x experiment "
        f"pairs): reweighted mean - NUTS posterior mean = {gap.mean():+.2f} pp of the true "
        f"loss on average (mean absolute {gap.abs().mean():.2f} pp; the NUTS means carry "
        f"their own Monte-Carlo error); their errors correlate at {corr:.2f}. By noise level "
        "and strategy (ESS of the weights out of the fit's draws):",
        "",
        frame_to_markdown(gap_by.reset_index(), floatfmt=".3g"),
        "",
    ]


def _per_world(results: list) -> pd.DataFrame:
    """One row per world and strategy: its errors over the outcomes (% of the true loss)."""
    per = []
    for res in results:
        flip = res["flip"]
        for name, v in res["mc"]["strategies"].items():
            e = np.asarray(v["error_pct"])
            per.append(
                {
                    "sigma_seed": flip["sigma_seed"],
                    "world": flip["world"],
                    "strategy": name,
                    "mean_error": float(e.mean()),
                    "rms_error": float(np.sqrt(np.mean(e**2))),
                    "post_sd": float(np.sqrt(np.mean(np.square(v["sd_pct"])))),
                    "outcome0": v["mean_outcome0"],
                    "ess": v["ess_median"],
                }
            )
    return pd.DataFrame(per)


def summarise_targets(cache_path: Path) -> str | None:
    """(b) over the three targets: plan against each fixed alternative, per target and pooled.

    None until every target's worlds (with their averaged errors) are in the cache.
    """
    per_target, pooled = [], []
    for mode in ("full", "near", "small"):
        cfg = MODES[mode]
        cache = _load_cache(cache_path, TARGETS[cfg["target"]])
        keys = [key for key, _ in _worlds(mode)]
        if any(k not in cache or "mc" not in cache[k] for k in keys):
            return None
        err = _per_world([cache[k] for k in keys]).pivot_table(
            index=["sigma_seed", "world"], columns="strategy", values="mean_error"
        )
        err["target"] = cfg["target"]
        pooled.append(err)
        vs_large, vs_seeds = _paired(err, "one large run"), _paired(err, "small seeds")
        best = err[["one large run", "small seeds"]].min(axis=1)
        seeds_picked = sum(cache[k]["flip"]["recommended_kind"] == "more seeds" for k in keys)
        per_target.append(
            {
                "target": cfg["target"],
                "params": TARGETS[cfg["target"]]["params"],
                "worlds": len(err),
                "plan picks seeds": f"{seeds_picked}/{len(keys)}",
                "error % plan": err["plan"].mean(),
                "error % one large run": err["one large run"].mean(),
                "error % small seeds": err["small seeds"].mean(),
                "error % better alternative (hindsight)": best.mean(),
                "plan - one large run (pp)": vs_large["plan - alternative (pp)"],
                "se vs large": vs_large["se (pp)"],
                "plan - small seeds (pp)": vs_seeds["plan - alternative (pp)"],
                "se vs seeds": vs_seeds["se (pp)"],
            }
        )
    table = pd.DataFrame(per_target)
    allw = pd.concat(pooled)
    rows, by_sigma = [], {}
    for alt in ("one large run", "small seeds"):
        d = allw["plan"] - allw[alt]
        # the targets share their worlds: one world's three differences are not
        # independent, so the se is over worlds (each world's mean over its targets)
        per_world = d.groupby(level=["sigma_seed", "world"]).mean()
        rows.append(
            {
                "alternative": alt,
                "world x target pairs": len(d),
                "plan - alternative (pp)": d.mean(),
                "se over worlds": _se(per_world),
                "plan better in": f"{int((d < 0).sum())}/{int((d != 0).sum())} pairs that differ",
            }
        )
        by_sigma[f"plan - {alt} (pp)"] = d.groupby(level="sigma_seed").mean()
        by_sigma[f"se vs {alt}"] = per_world.groupby(level="sigma_seed").agg(_se)
    by_sigma = pd.DataFrame(by_sigma).reset_index()
    return "\n".join(
        [
            "## Experiment planning across targets: (b) pooled (`benchmarks/plan_validation.py`)",
            "",
            "The sections for the three targets (the default 2x past the largest fitted "
            "size, `--near` and `--small`) side by side; all three ask their question of the "
            "same simulated worlds. Each fixed alternative is the right experiment for some "
            "targets and the wrong one for others; plan is meant to choose per situation. "
            "Error: mean absolute error of the target's posterior mean over "
            f"{MC_OUTCOMES} true-world outcomes per strategy and world, % of the true loss; "
            "negative differences favour following plan. The hindsight column takes, in each "
            "world, whichever fixed alternative turned out better: no rule that must choose "
            "beforehand can be expected to reach it.",
            "",
            frame_to_markdown(table, floatfmt=".3g"),
            "",
            "Pooled over targets and worlds:",
            "",
            frame_to_markdown(pd.DataFrame(rows), floatfmt=".3g"),
            "",
            "By seed-noise level (pooled over the three targets):",
            "",
            frame_to_markdown(by_sigma, floatfmt=".3g"),
        ]
    )


def summarise(results: list, mode: str, target: dict, seconds: float) -> str:
    rows = pd.DataFrame([r for res in results for r in res["rows"]])
    fits = pd.DataFrame([res["fit"] for res in results])
    flips = pd.DataFrame([res["flip"] for res in results])
    # (a) one row per distinct experiment and world
    uniq = rows.drop_duplicates(["sigma_seed", "world", "experiment"]).copy()
    uniq["ratio"] = uniq["realised_sd"] / uniq["predicted_sd"]
    uniq["is_ratio"] = uniq["realised_sd"] / uniq["predicted_sd_is"]
    by_method = (
        uniq.groupby("method")
        .agg(
            n=("ratio", "size"),
            mean_ratio=("ratio", "mean"),
            mean_abs_log_ratio=("ratio", lambda r: float(np.mean(np.abs(np.log(r))))),
        )
        .reset_index()
    )
    by_method = pd.concat(
        [
            by_method,
            pd.DataFrame(
                {
                    "method": ["importance, every row (method='importance')"],
                    "n": [len(uniq)],
                    "mean_ratio": [float(uniq["is_ratio"].mean())],
                    "mean_abs_log_ratio": [float(np.mean(np.abs(np.log(uniq["is_ratio"]))))],
                }
            ),
        ],
        ignore_index=True,
    )
    overall_ratio = float(uniq["ratio"].mean())
    within = float(np.mean(np.abs(uniq["ratio"] - 1) <= 0.2))
    # (b) paired by world
    err = rows.pivot_table(
        index=["sigma_seed", "world"], columns="strategy", values="error_pct", aggfunc="first"
    )
    sds = rows.pivot_table(
        index=["sigma_seed", "world"], columns="strategy", values="realised_sd", aggfunc="first"
    )
    b_rows = []
    for alt in ("one large run", "small seeds"):
        d_sd = sds["plan"] - sds[alt]
        se_sd = _se(d_sd)
        b_rows.append(
            {
                **_paired(err, alt),
                "realised sd: plan - alternative": float(d_sd.mean()),
                "se of sd difference": se_sd,
            }
        )
    mc_lines = summarise_mc(results, rows)
    by_sigma = err.groupby(level="sigma_seed").mean()
    by_sigma.columns = [f"error % {c}" for c in by_sigma.columns]
    sd_sigma = sds.groupby(level="sigma_seed").mean()
    sd_sigma.columns = [f"realised sd {c}" for c in sd_sigma.columns]
    by_sigma = by_sigma.join(sd_sigma).reset_index()
    flip = (
        flips.groupby("sigma_seed")
        .agg(
            worlds=("world", "size"),
            fitted_sigma_seed=("sigma_seed_fitted", "median"),
            seeds_recommended=("recommended_kind", lambda k: int((k == "more seeds").sum())),
            sd_now=("sd_now", "mean"),
            sd_after_one_large=("sd_after_one_large", "mean"),
            sd_after_small_seeds=("sd_after_small_seeds", "mean"),
            recommended=("recommended", lambda r: "; ".join(sorted(set(r)))),
        )
        .reset_index()
    )
    detail = uniq[
        [
            "sigma_seed",
            "world",
            "experiment",
            "method",
            "ess",
            "current_sd",
            "predicted_sd",
            "predicted_sd_is",
            "ess_is",
            "realised_sd",
            "is_sd_actual",
            "is_ess_actual",
            "ratio",
            "error_pct",
            "refit_rhat",
        ]
    ]
    lines = [
        "## Experiment planning: predicted vs realised (`benchmarks/plan_validation.py"
        + HEADINGS.get(mode, "`)"),
        "",
        machine_info() + f"; mode `{mode}`, {len(results)} worlds (about 2 min each; this run took "
        f"{seconds / 60:.0f} min, worlds already in the cache are read, not recomputed).",
        "",
        "Simulated worlds (`simulate_frame`: 3 families, sizes 1e8/2e8/4e8, 2 seeds per size, "
        "8 checkpoints over 1e10-1e11 tokens, sigma_obs 0.01); fits and refits by NUTS "
        f"({FIT['num_chains']} chains x {FIT['num_warmup']} warm-up + {FIT['num_samples']} "
        f"draws, shared exponents). Target: the mean law of fam0 at {target['params']:.2g} "
        f"params, {target['tokens']:.2g} tokens ({target['params'] / max(WORLD['sizes']):.3g}x "
        f"the largest fitted size). Budget {BUDGET:.2g} FLOPs; `plan(..., "
        "rank_by='reduction')` over its default candidates plus the two fixed alternatives; "
        "64 simulated outcomes per candidate (importance sampling), 8 per candidate refitted "
        "by MAP + Laplace where the ESS falls below 50. Each strategy is then run once in the "
        "true world and refitted.",
        "",
        "### (a) Predicted posterior sd after the experiment vs the sd of the actual refit",
        f"Mean realised / predicted sd over {len(uniq)} (world, experiment) pairs: "
        f"**{overall_ratio:.2f}**; {100 * within:.0f}% of pairs within 20%. "
        "`is_sd_actual` reweights the draws by the actual outcome (no simulation): it "
        "separates the importance-sampling error from outcome-to-outcome spread.",
        "",
        frame_to_markdown(by_method),
        "",
        frame_to_markdown(detail, floatfmt=".3g"),
        "",
        "### (b) Realised error of the target after each strategy (paired by world)",
        "Absolute error of the refit's posterior mean against the true law, % of the true "
        "loss. Negative differences favour following plan.",
        "",
        frame_to_markdown(pd.DataFrame(b_rows), floatfmt=".3g"),
        "",
        *mc_lines,
        "By seed-noise level (mean over worlds; realised sd in nats):",
        "",
        frame_to_markdown(by_sigma, floatfmt=".3g"),
        "",
        "### (c) What plan recommends as seed noise grows",
        "Predicted sd after the two fixed alternatives (mean over worlds) and the kind of "
        "experiment plan recommends.",
        "",
        frame_to_markdown(flip, floatfmt=".3g"),
        "",
        "Fits: max R-hat "
        f"{fits['rhat_max'].max():.3f}, divergences {int(fits['divergences'].sum())}, "
        f"mean fit {fits['fit_seconds'].mean():.0f} s, "
        f"mean plan {fits['plan_seconds'].mean():.0f} s "
        f"for {fits['plan_rows'].mean():.0f} candidates ({fits['laplace_rows'].sum()} rows by "
        f"Laplace in all), draw efficiency {fits['draw_efficiency'].mean():.2f}.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
