"""The same seed gives the same label maps as the recorded baseline.

``tests/baseline/labels_tiny_seed0_<vector unit>.npz`` holds, for every built-in
scenario (tiny, seed 0), the label map of
``fuse(dp, eds).cluster(random_state=0)`` and of
``map_phases(dp, eds, random_state=0)``, recorded on one vector unit (AVX-512, AVX2)
with one set of library versions (its fingerprint, see
``tests/baseline/regenerate_labels.py``: the maps are bit-reproducible
there, not across vector units). A refactoring must leave them unchanged; a
change of defaults that changes results records them again on purpose
(``python tests/baseline/regenerate_labels.py``). On a machine with no
baseline of its own the comparison is skipped, saying so.
"""

import sys
from pathlib import Path

import numpy as np
import pytest

from stemfuse_hs.data import SCENARIOS

sys.path.insert(0, str(Path(__file__).parent / "baseline"))
from regenerate_labels import baseline_path, fingerprint, recorded_fingerprint, vector_unit  # noqa: E402

_PATH = baseline_path()
_MACHINE = fingerprint()
if _PATH.exists() and recorded_fingerprint(_PATH) == _MACHINE:
    BASELINE = dict(np.load(_PATH))
else:
    BASELINE = None
_NO_BASELINE = (
    f"no baseline label maps recorded for this machine ({_MACHINE}); "
    "record them with python tests/baseline/regenerate_labels.py"
)
# map_phases reruns UMAP: three scenarios cover its segment merge, its
# minor-phase carving and a single-crystal scan within the suite's budget.
PHASE_SCENARIOS = ("structure_only", "poly_chemistry", "poly_minor_phase")


CASES = [(scenario, "cluster") for scenario in SCENARIOS] + [(scenario, "phases") for scenario in PHASE_SCENARIOS]


@pytest.mark.parametrize(("scenario", "kind"), CASES)
def test_labels_match_baseline(default_fit, scenario, kind):
    if BASELINE is None:
        pytest.skip(_NO_BASELINE)
    key = f"{scenario}/{kind}"
    if key not in BASELINE:
        # A change of defaults was recorded again only on the processors at hand.
        pytest.skip(f"the baseline of this machine ({_MACHINE['vector_unit']}) holds no {kind} map of {scenario}")
    fit = default_fit.labels if kind == "cluster" else default_fit.phases
    np.testing.assert_array_equal(np.asarray(fit(scenario).data), BASELINE[key])


def test_baselines_are_kept_per_vector_unit():
    """AVX-512 processors of either make share one file, AVX2 ones another."""
    assert vector_unit({"avx2": True, "avx512f": True, "avx512bw": True}) == "avx512"
    assert vector_unit({"avx2": True, "avx512f": False}) == "avx2"
    assert baseline_path({"vector_unit": "avx2"}).name == "labels_tiny_seed0_avx2.npz"
