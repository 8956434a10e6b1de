"""The same seed gives the same label maps as the recorded baseline.

``tests/baseline/labels_tiny_seed0.npz`` holds, for every built-in scenario
(tiny, seed 0), the label map of ``fuse(dp, eds).cluster(random_state=0)``
and of ``map_phases(dp, eds, random_state=0)``. A refactoring must leave
them unchanged; a change of defaults that changes results regenerates the
file on purpose (``python tests/baseline/regenerate_labels.py``).
"""

from pathlib import Path

import numpy as np
import pytest

from stemfuse_hs.data import SCENARIOS

BASELINE = np.load(Path(__file__).parent / "baseline" / "labels_tiny_seed0.npz")
# map_phases reruns UMAP: three scenarios cover its segment merge, its
# minor-phase carving and a single-crystal scan within the suite's budget.
PHASE_SCENARIOS = ("structure_only", "poly_chemistry", "poly_minor_phase")


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_cluster_labels_match_baseline(default_fit, scenario):
    labels = np.asarray(default_fit.labels(scenario).data)
    np.testing.assert_array_equal(labels, BASELINE[f"{scenario}/cluster"])


@pytest.mark.parametrize("scenario", PHASE_SCENARIOS)
def test_phase_labels_match_baseline(default_fit, scenario):
    phases = np.asarray(default_fit.phases(scenario).data)
    np.testing.assert_array_equal(phases, BASELINE[f"{scenario}/phases"])
