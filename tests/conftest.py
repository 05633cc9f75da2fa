"""Session set-up shared by all tests.

Every test process (pytest-xdist workers, notebook kernels, CLI subprocesses)
shares one persistent XLA cache, so NumPyro's eagerly compiled set-up ops are
compiled once per test run instead of once per process. The variables must be
set before JAX is imported; subprocesses inherit them.
"""

import getpass
import os
import tempfile
from pathlib import Path

_CACHE = Path(tempfile.gettempdir()) / f"bayescale-test-xla-{getpass.getuser()}"
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(_CACHE))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")


def pytest_collection_modifyitems(config, items):
    """Modules with long tests first, so that parallel workers (one module each,
    ``--dist loadfile``) do not end the run on one of them. Modules stay whole
    so that their fitted fixtures are built once."""
    slow = {item.module.__name__ for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.module.__name__ not in slow)


def pytest_configure(config):
    """Two CPU devices per test process, so that two-chain fits sample in parallel."""
    from bayescale import set_host_device_count

    set_host_device_count(2)
