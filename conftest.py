"""Test-process set-up shared by tests/ and the docstrings' examples (tests/ has its own conftest)."""

import hashlib
import os
import sys
import tempfile

# numba's on-disk cache is not safe against two processes compiling the same
# function at once: in a fresh environment the two pytest-xdist workers both
# compiled orix's kernels on import and left a cache that crashed every
# later import (a segmentation fault, 2026-12-03). So every worker keeps its
# own cache, kept between runs of the same interpreter. Set before anything
# imports numba, which reads NUMBA_CACHE_DIR when it is imported.
_WORKER = os.environ.get("PYTEST_XDIST_WORKER")
if _WORKER:
    _tag = hashlib.sha1(sys.executable.encode()).hexdigest()[:10]
    _base = os.environ.get("NUMBA_CACHE_DIR") or os.path.join(tempfile.gettempdir(), f"stemfuse-tests-numba-{_tag}")
    os.environ["NUMBA_CACHE_DIR"] = os.path.join(_base, _WORKER)
    # One process per core: numba's threads (the parallel UMAP layout) get
    # the cores divided among the workers. Two workers of two threads each
    # on two cores made the layout's many short parallel steps wait on one
    # another (the suite ran at about half its speed).
    _workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    os.environ.setdefault("NUMBA_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // max(1, _workers))))
    if "numba" in sys.modules:
        sys.modules["numba"].config.reload_config()

import matplotlib  # noqa: E402

matplotlib.use("Agg")


def pytest_configure(config):
    import hyperspy.api as hs

    hs.preferences.General.show_progressbar = False
