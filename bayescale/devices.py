"""Process-level JAX settings, made only when asked: parallel chains and the compile cache.

Importing bayescale changes nothing in the process. Two explicit calls do:

* :func:`set_host_device_count` lets JAX see several CPU devices so that NUTS
  chains run in parallel. JAX reads it once, when it starts its backend, so
  call it at the top of a script or notebook, before any JAX computation.
* :func:`enable_compile_cache` keeps compiled programs on disk, so that the
  second fit of a model in a new process skips most of its ~20 s of
  compilation.

The ``bayescale`` command calls both. :func:`float64` switches JAX to 64-bit
numbers for one block and restores the previous setting after it.
"""

from __future__ import annotations

import os
import warnings
from contextlib import contextmanager
from pathlib import Path

DEFAULT_DEVICES = 4  # the default number of chains


class SequentialChainsWarning(UserWarning):
    """More chains than JAX devices: the chains run one after another."""


def set_host_device_count(n: int = DEFAULT_DEVICES) -> int:
    """Let JAX use ``n`` CPU devices, so that ``n`` chains sample in parallel.

    Must run before JAX starts its backend (before the first fit or any JAX
    computation); afterwards it has no effect and says so with a warning.

    Parameters
    ----------
    n : int
        Number of CPU devices (default 4, the default number of chains).
        Chains share the machine's cores, so more devices than cores still
        helps: chains that finish early free their core.

    Returns
    -------
    int
        The number of devices JAX will use.
    """
    import jax

    n = int(n)
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    try:
        jax.config.update("jax_num_cpu_devices", n)
    except RuntimeError:
        have = jax.local_device_count()
        if have != n:
            warnings.warn(
                f"set_host_device_count({n}) came too late: JAX already started with {have} "
                "device(s). Call it at the top of the script or notebook, before any fit.",
                SequentialChainsWarning,
                stacklevel=2,
            )
        return have
    return n


def chain_method(num_chains: int, stacklevel: int = 3) -> str:
    """``"parallel"`` when JAX has a device per chain, else ``"sequential"`` with a warning."""
    import jax

    have = jax.local_device_count()
    if num_chains <= have:
        return "parallel"
    warnings.warn(
        f"{num_chains} chains will run one after another: JAX sees {have} CPU device(s). "
        f"Call bayescale.set_host_device_count({num_chains}) at the start of the program, "
        "before any fit, to run them in parallel.",
        SequentialChainsWarning,
        stacklevel=stacklevel,
    )
    return "sequential"


def default_cache_dir(environ=None) -> Path:
    """``$BAYESCALE_XLA_CACHE``, else ``$XDG_CACHE_HOME/bayescale/xla`` or ``~/.cache/...``."""
    env = os.environ if environ is None else environ
    where = env.get("BAYESCALE_XLA_CACHE", "")
    if where and where.lower() != "off":
        return Path(where)
    base = env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "bayescale" / "xla"


def enable_compile_cache(path=None, *, environ=None) -> str | None:
    """Keep JAX's compiled programs on disk (``~/.cache/bayescale/xla`` by default).

    Parameters
    ----------
    path : str or path-like, optional
        Cache folder. Default: :func:`default_cache_dir`.
        ``BAYESCALE_XLA_CACHE=off`` disables the cache; an explicit
        ``JAX_COMPILATION_CACHE_DIR`` wins over both.

    Returns
    -------
    str or None
        The folder used, or ``None`` when disabled or already set by the user.
    """
    env = os.environ if environ is None else environ
    if env.get("JAX_COMPILATION_CACHE_DIR"):
        return None
    if path is None:
        if env.get("BAYESCALE_XLA_CACHE", "").lower() == "off":
            return None
        path = default_cache_dir(env)
    import jax

    jax.config.update("jax_compilation_cache_dir", str(path))
    # NumPyro's set-up runs many small eager ops: each compiles in milliseconds,
    # together they take seconds, so cache them all
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    return str(path)


@contextmanager
def float64():
    """64-bit JAX inside the block, for every thread; the previous setting after it.

    ``jax.enable_x64`` holds for the calling thread only, but NumPyro's progress
    bar runs host callbacks on XLA's threads: built in 32-bit mode there, their
    results no longer match the 64-bit program, and parallel chains fail.
    """
    import jax

    before = bool(jax.config.jax_enable_x64)
    jax.config.update("jax_enable_x64", True)
    try:
        with jax.enable_x64(True):
            yield
    finally:
        jax.config.update("jax_enable_x64", before)
