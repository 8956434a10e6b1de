"""Record the label maps the package gives today on this machine (``labels_tiny_seed0_<cpu>.npz``).

``tests/test_baseline_labels.py`` asserts that the same seed still gives
these maps on every built-in scenario, so that a refactoring cannot change
behaviour unnoticed. Run this only when a change of results is intended
(new defaults), and say so in the commit message::

    python tests/baseline/regenerate_labels.py

The maps are bit-reproducible for one seed on one kind of processor and one
set of numerical libraries, not across them: numba compiles UMAP's kernels
for the host processor (``fastmath``, its vector width) and numpy and
OpenBLAS choose their kernels by it, and the last bits of the features
change the embedding. Measured 2026-12-03: the same commit gave maps whose
ARI to each other was 0.82-1.00 (``cluster``) and 0.34-1.00
(``map_phases``) on an AMD EPYC and on an Intel Xeon (Rocket Lake). So
every file records its machine's :func:`fingerprint`, and the test compares
against the file of the machine it runs on.
"""

import json
from importlib.metadata import version
from pathlib import Path

import numpy as np

FOLDER = Path(__file__).parent
#: The libraries whose versions decide the labels beside the processor.
LIBRARIES = ("numpy", "scipy", "scikit-learn", "numba", "umap-learn", "pynndescent", "hdbscan")


def fingerprint():
    """What the maps depend on besides the code: the processor numba compiles for and the libraries' versions."""
    import llvmlite.binding

    return {"cpu": llvmlite.binding.get_host_cpu_name(), **{name: version(name) for name in LIBRARIES}}


def baseline_path(machine=None):
    """The baseline file of ``machine`` (a :func:`fingerprint`; this machine's by default)."""
    machine = machine or fingerprint()
    return FOLDER / f"labels_tiny_seed0_{machine['cpu']}.npz"


def recorded_fingerprint(path):
    """The fingerprint stored in a baseline file."""
    with np.load(path) as stored:
        return json.loads(str(stored["fingerprint"]))


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

    machine = fingerprint()
    maps = {"fingerprint": np.array(json.dumps(machine, sort_keys=True))}
    for scenario in SCENARIOS:
        maps[f"{scenario}/cluster"], maps[f"{scenario}/phases"] = baseline_maps(scenario)
        print(scenario, "done")
    path = baseline_path(machine)
    np.savez_compressed(path, **maps)
    print("wrote", path)


if __name__ == "__main__":
    main()
