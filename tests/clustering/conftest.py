"""Fixtures of the clustering tests: the default fit of the shared ``four_phases`` scan.

Each is a shared object from ``default_fit`` (see ``tests/conftest.py``):
read it, never modify it.
"""

import pytest


@pytest.fixture(scope="module")
def four(default_fit):
    """The shared tiny ``four_phases`` SyntheticScan (seed 0)."""
    return default_fit.scan("four_phases")


@pytest.fixture(scope="module")
def fused(default_fit):
    """``fuse(dp, eds)`` of ``four`` with the default extractors and weights."""
    return default_fit.fused("four_phases")


@pytest.fixture(scope="module")
def labels(default_fit):
    """``fused.cluster(random_state=0)``: the default label map of ``four``."""
    return default_fit.labels("four_phases")
