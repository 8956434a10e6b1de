"""Regenerate ``labels_tiny_seed0.npz``: the label maps the package gives today.

``tests/test_baseline_labels.py`` asserts that the same seed still gives
these maps on every built-in scenario, so that a refactoring cannot change
behaviour unnoticed. Run this only when a change of results is intended
(new defaults), and say so in the commit message::

    python tests/baseline/regenerate_labels.py
"""

from pathlib import Path

import numpy as np

BASELINE = Path(__file__).with_name("labels_tiny_seed0.npz")


def baseline_maps(scenario):
    """The cluster() and map_phases() label maps of one tiny scan, seed 0."""
    import stemfuse_hs
    from stemfuse_hs.data import synthetic_scan

    scan = synthetic_scan(scenario, size="tiny", seed=0)
    fused = stemfuse_hs.fuse(scan.dp, scan.eds)
    cluster = np.asarray(fused.cluster(random_state=0).data)
    phases = np.asarray(stemfuse_hs.map_phases(scan.dp, scan.eds, random_state=0, fused=fused).data)
    return cluster, phases


def main():
    from stemfuse_hs.data import SCENARIOS

    maps = {}
    for scenario in SCENARIOS:
        maps[f"{scenario}/cluster"], maps[f"{scenario}/phases"] = baseline_maps(scenario)
        print(scenario, "done")
    np.savez_compressed(BASELINE, **maps)
    print("wrote", BASELINE)


if __name__ == "__main__":
    main()
