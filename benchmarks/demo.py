"""The `bayescale demo` job with its default settings: table, wall time, diagnostics.

Hides the largest model of pythia-deduped, OPT, gpt3, t5-pile and
overtrain-RedPajama (and Pythia's run of the same size as Pythia-deduped's,
a near twin), fits one hierarchical model on everything else, and predicts
each hidden model's final loss (90% interval for a new run). Times it twice:
in this process with an empty compile cache (a new machine's first run), then
``bayescale demo`` in a new process with the cache it filled (every later
run). Writes the section ``demo`` of RESULTS.md and ``results/demo.json``.

Run: ``uv run python benchmarks/demo.py [--quick] [--no-write]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import frame_to_markdown, machine_info, write_json, write_section  # noqa: E402

from bayescale import enable_compile_cache, set_host_device_count  # noqa: E402
from bayescale.demo import format_table, run_demo  # noqa: E402

SECTION = "demo"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="the --quick settings")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-write", action="store_true", help="do not touch RESULTS.md")
    args = p.parse_args(argv)
    set_host_device_count()  # as the CLI does: one device per chain
    # and with its compile cache, in a fresh folder: this run is a new machine's first
    # (compiling every program), the command-line run below every later one
    cache = tempfile.mkdtemp(prefix="bayescale-demo-xla-")
    enable_compile_cache(cache)
    load = os.getloadavg()[0]
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = run_demo(quick=args.quick, seed=args.seed, progress_bar=False)
    wall = time.perf_counter() - start
    text = format_table(result)
    print(text)
    print(f"wall time (data loading, fit, predictions), empty compile cache: {wall:.0f} s")
    warm, same = warm_cli_run(args, cache, result.table)
    print(f"`bayescale demo` again with that cache: {warm:.0f} s; same table: {same}")
    if args.no_write:
        return
    t = result.table.copy()
    t["are %"] = 100 * t.pop("are")
    diag = result.posterior.diagnostics()
    warned = sorted({str(w.message).split(".")[0] for w in caught if "sampling" in str(w.message)})
    s = result.settings
    body = "\n\n".join(
        [
            "## `bayescale demo` (`benchmarks/demo.py`)",
            f"{machine_info()}; load average at start {load:.1f} (shared machine).",
            f"Settings: {'--quick' if args.quick else 'default'} ({s['num_chains']} chains x "
            f"{s['num_warmup']}+{s['num_samples']}, <= {s['max_points_per_run']} log-spaced "
            f"checkpoints per run), seed {args.seed}; {result.posterior.data.n_obs} checkpoints "
            f"of {result.posterior.data.n_runs} runs in {result.posterior.data.n_families} "
            'families. Interval: 90%, `kind="new_run"`.',
            frame_to_markdown(t, floatfmt=".4g"),
            f"**{int(t['inside'].sum())} of {len(t)}** actual losses inside their 90% intervals; "
            f"median ARE **{float(np.median(t['are %'])):.2f}%**. Wall time **{wall:.0f} s** "
            f"with an empty compile cache, as on a new machine (fit and predictions "
            f"{result.seconds:.0f} s); `bayescale demo` run again with that cache: "
            f"**{warm:.0f} s** (the same table: {'yes' if same else 'no'}). Diagnostics: max R-hat "
            f"{diag['rhat_max']:.3f}, {diag['divergences']} divergences, min bulk ESS "
            f"{diag['ess_bulk_min']:.0f}"
            + (f"; warning shown: {'; '.join(warned)}." if warned else "; no warning."),
            "```\n" + text + "\n```",
        ]
    )
    write_section(SECTION, body)
    write_json(
        SECTION,
        {
            "settings": {**s, "seed": args.seed, "quick": args.quick},
            "wall_seconds": wall,
            "wall_seconds_warm_cli": warm,
            "fit_seconds": result.seconds,
            "table": t,
            "diagnostics": {k: diag.get(k) for k in ("rhat_max", "divergences", "ess_bulk_min")},
            "warnings": warned,
        },
    )


def warm_cli_run(args, cache: str, table) -> tuple[float, bool]:
    """Wall time of ``bayescale demo --json`` in a new process with the filled cache.

    Also whether it printed the same predictions as the run in this process.
    """
    argv = ["demo", "--json", "--seed", str(args.seed)] + (["--quick"] if args.quick else [])
    code = f"import sys; from bayescale.cli import run; sys.argv[1:] = {argv!r}; run()"
    env = {**os.environ, "BAYESCALE_XLA_CACHE": cache}
    env.pop("JAX_COMPILATION_CACHE_DIR", None)  # it would win over the folder above
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if out.returncode != 0:
        raise RuntimeError(f"bayescale demo failed:\n{out.stderr[-2000:]}")
    rows = json.loads(out.stdout)
    same = all(
        np.isclose(r["median"], m, rtol=1e-9) for r, m in zip(rows, table["median"], strict=True)
    )
    return seconds, bool(same)


if __name__ == "__main__":
    main()
