"""Record the label maps the package gives today on this machine (``labels_tiny_seed0_<vector unit>.npz``).

``tests/test_baseline_labels.py`` asserts that the same seed still gives
these maps on every built-in scenario, so that a refactoring cannot change
behaviour unnoticed. Run this only when a change of results is intended
(new defaults), and say so in the commit message::

    python tests/baseline/regenerate_labels.py          # this machine's vector unit
    python tests/baseline/regenerate_labels.py --avx2   # AVX2's, emulated on an AVX-512 machine

The maps are bit-reproducible for one seed on one vector unit and one set
of numerical libraries, not across them: numba compiles UMAP's kernels for
the host processor (``fastmath``, its vector width) and numpy and OpenBLAS
choose their kernels by it, and the last bits of the features change the
embedding. What decides is the widest vector instruction set, not the
make or model: the maps of an AMD EPYC znver4, an Intel Xeon
emeraldrapids and an Intel Rocket Lake (all AVX-512) were identical, those
of an AMD znver1 and znver3 (AVX2) identical to each other and different
(2026-12-06; recorded in each file's ``recorded_on``). So every file
records its machine's :func:`fingerprint` (the vector unit and the
libraries' versions), and the test compares against the file of the
machine it runs on.
"""

import json
import os
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import numpy as np

FOLDER = Path(__file__).parent
#: The libraries whose versions decide the labels beside the processor.
LIBRARIES = ("numpy", "scipy", "scikit-learn", "numba", "umap-learn", "pynndescent", "hdbscan")


#: The environment under which an AVX-512 machine computes as an AVX2 one:
#: numba compiles for znver1, OpenBLAS and numpy leave out their AVX-512
#: kernels. Its maps equalled those of a real znver1 and znver3 (2026-12-06).
AVX2_EMULATION = {
    "NUMBA_CPU_NAME": "znver1",
    "NUMBA_CPU_FEATURES": "",
    "OPENBLAS_CORETYPE": "Zen",
    "NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR",
}


def vector_unit(features=None):
    """The widest vector instruction set the maps are computed with: "avx512", "avx2" or the CPU's name.

    ``features``: llvmlite's host CPU features (this machine's by default).
    Under :data:`AVX2_EMULATION`, "avx2".
    """
    import llvmlite.binding

    if features is None and all(os.environ.get(name) == value for name, value in AVX2_EMULATION.items()):
        return "avx2"
    features = llvmlite.binding.get_host_cpu_features() if features is None else features
    for unit, flag in (("avx512", "avx512f"), ("avx2", "avx2")):
        if features.get(flag):
            return unit
    return llvmlite.binding.get_host_cpu_name()


def fingerprint():
    """What the maps depend on besides the code: the vector unit numba compiles for and the libraries' versions."""
    return {"vector_unit": vector_unit(), **{name: version(name) for name in LIBRARIES}}


def baseline_path(machine=None):
    """The baseline file of ``machine`` (a :func:`fingerprint`; this machine's by default)."""
    machine = machine or fingerprint()
    return FOLDER / f"labels_tiny_seed0_{machine['vector_unit']}.npz"


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
    if "--avx2" in sys.argv[1:]:
        # numba, OpenBLAS and numpy read these at start-up: a fresh process.
        env = dict(os.environ, **AVX2_EMULATION)
        sys.exit(subprocess.call([sys.executable, __file__], env=env))
    from stemfuse_hs.data import SCENARIOS

    import llvmlite.binding

    machine = fingerprint()
    host = llvmlite.binding.get_host_cpu_name()
    if machine["vector_unit"] != vector_unit(llvmlite.binding.get_host_cpu_features()):
        host += f" emulating {machine['vector_unit']}"
    maps = {
        "fingerprint": np.array(json.dumps(machine, sort_keys=True)),
        # The processors that gave these maps: this one (and, added by hand, others checked against it).
        "recorded_on": np.array(json.dumps([host])),
    }
    for scenario in SCENARIOS:
        maps[f"{scenario}/cluster"], maps[f"{scenario}/phases"] = baseline_maps(scenario)
        print(scenario, "done")
    path = baseline_path(machine)
    np.savez_compressed(path, **maps)
    print("wrote", path)


if __name__ == "__main__":
    main()
