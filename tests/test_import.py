"""Importing the package has no side effects; the command line starts without JAX."""

import subprocess
import sys

import pytest


def _run(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def test_import_changes_nothing_and_loads_nothing_heavy():
    code = (
        "import os, sys, warnings; hook = warnings.showwarning; env = dict(os.environ); "
        "import bayescale; "
        "print(os.environ == env, warnings.showwarning is hook, "
        "sorted(m for m in ('jax', 'numpyro', 'pandas', 'matplotlib') if m in sys.modules))"
    )
    assert _run(code) == "True True []"


def test_every_module_imports_without_touching_process_state():
    # JAX sets logging variables of its own when imported: snapshot after it
    code = (
        "import importlib, os, pkgutil, sys, warnings; import jax; "
        "hook = warnings.showwarning; env = dict(os.environ); "
        "cache = jax.config.jax_compilation_cache_dir; import bayescale; "
        "mods = [m.name for m in pkgutil.walk_packages(bayescale.__path__, 'bayescale.')]; "
        "[importlib.import_module(m) for m in mods]; "
        "print(os.environ == env, 'XLA_FLAGS' in os.environ, warnings.showwarning is hook, "
        "jax.config.jax_enable_x64, jax.config.jax_compilation_cache_dir == cache, "
        "'matplotlib.pyplot' in sys.modules)"
    )
    assert _run(code) == "True False True False True False"


def test_public_names_resolve_to_their_documented_objects():
    import bayescale
    from bayescale import data, design, devices, fitting, posterior, queries, reporting

    assert bayescale.fit is fitting.fit
    assert bayescale.load is posterior.load
    assert bayescale.predict is queries.predict
    assert bayescale.plan is design.plan
    assert bayescale.write_report is reporting.write_report
    assert bayescale.ScalingData is data.ScalingData
    assert bayescale.set_host_device_count is devices.set_host_device_count
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        bayescale.nope  # noqa: B018


def test_no_public_function_shadows_a_submodule():
    import pkgutil

    import bayescale

    submodules = {m.name for m in pkgutil.iter_modules(bayescale.__path__)}
    assert not (set(bayescale.__all__) & submodules)


def test_lower_layers_never_import_higher_ones():
    """laws/schedules/trajectory/discrepancy/seeds/pooling/centring/coordinates/options < model
    < convergence < inference < domain API (on the source)."""
    import ast
    from pathlib import Path

    import bayescale

    root = Path(bayescale.__file__).parent
    allowed = {
        "laws": set(),
        "trajectory": set(),
        "discrepancy": {"trajectory"},
        "pooling": set(),
        "seeds": {"discrepancy"},
        "centring": set(),
        "coordinates": {"laws"},
        "schedules": {"laws"},
        "options": set(),
        "_version": set(),
        "model": {
            "laws",
            "schedules",
            "trajectory",
            "discrepancy",
            "seeds",
            "pooling",
            "centring",
            "coordinates",
            "options",
        },
        "optim": {"progress"},
        "convergence": set(),
        "inference": {"progress", "options", "devices", "optim", "convergence"},
    }
    for name, ok in allowed.items():
        tree = ast.parse((root / f"{name}.py").read_text())
        used = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("bayescale"):
                mod = node.module.split(".")
                used.add(mod[1] if len(mod) > 1 else node.names[0].name)
        assert used <= ok, (name, used - ok)
