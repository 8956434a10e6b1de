"""The same seed gives the same labels in any process and with any thread count,
and the compilation caching of umap-learn's functions changes nothing.

Each check runs in fresh subprocesses (thread counts are fixed when numba and
the BLAS start), so these tests take a minute or so.
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]

CLUSTER_SCRIPT = textwrap.dedent(
    """
    import json, sys, warnings
    warnings.simplefilter("ignore")
    import numba, numpy as np
    import stemfuse_hs
    from stemfuse_hs.data import synthetic_scan

    threads = numba.get_num_threads()  # before UMAP, which sets its own while it runs
    labels = {}
    for scenario in sys.argv[1:]:
        scan = synthetic_scan(scenario, size="tiny", seed=0, lazy=False)
        fused = stemfuse_hs.fuse(scan.dp, scan.eds, show_progressbar=False)
        labels[scenario] = np.asarray(fused.cluster(random_state=0, show_progressbar=False).data).ravel().tolist()
    # The parallel layout alone, bit for bit.
    from stemfuse_hs.clustering.embed import fit_umap
    rng = np.random.default_rng(3)
    x = np.vstack([rng.normal(0, 1, (200, 12)), rng.normal(5, 1, (200, 12))]).astype(np.float32)
    e = fit_umap(x, random_state=0, n_components=3, n_neighbors=10, min_dist=0.0, densmap=True, n_epochs=80,
                 layout="parallel")[1]
    bits = np.asarray(e, dtype=np.float32).ravel().view(np.uint32).tolist()
    # A default fit of 4,096 positions or more: exact neighbours (BLAS products) and layout="auto" (parallel).
    big = np.vstack([rng.normal(0, 1, (2100, 40)), rng.normal(3, 1, (2100, 40))]).astype(np.float32)
    e = fit_umap(big, random_state=0, n_components=3, n_neighbors=10, min_dist=0.0, densmap=True, n_epochs=30)[1]
    large = np.asarray(e, dtype=np.float32).ravel().view(np.uint32).tolist()
    print(json.dumps({"threads": threads, "labels": labels, "layout": bits, "large_fit": large}))
    """
)

# umap-learn exactly as it is, without stemfuse_hs's caching or neighbours,
# against stemfuse_hs's fit_umap on the same points.
PLAIN_UMAP_SCRIPT = textwrap.dedent(
    """
    import json, sys, warnings
    warnings.simplefilter("ignore")
    import numpy as np
    rng = np.random.default_rng(3)
    x = np.vstack([rng.normal(0, 1, (150, 12)), rng.normal(4, 1, (150, 12))]).astype(np.float32)
    kwargs = dict(n_components=3, n_neighbors=10, min_dist=0.0, densmap=True, n_epochs=60)
    if sys.argv[1] == "plain":
        import umap
        e = umap.UMAP(random_state=0, n_jobs=1, init="spectral", **kwargs).fit_transform(x)
    else:
        from stemfuse_hs.clustering.embed import fit_umap
        e = fit_umap(x, random_state=0, layout="umap-learn", **kwargs)[1]
    print(json.dumps(np.asarray(e, dtype=np.float32).ravel().view(np.uint32).tolist()))
    """
)


BLAS_THREADS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def _start(script, *args, threads=None, blas_threads=None, numba_cache_dir=None):
    env = dict(os.environ)
    if numba_cache_dir is not None:
        env["NUMBA_CACHE_DIR"] = str(numba_cache_dir)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    if threads is not None:
        env["NUMBA_NUM_THREADS"] = str(threads)
    blas_threads = threads if blas_threads is None else blas_threads
    if blas_threads is not None:
        for name in BLAS_THREADS:
            env[name] = str(blas_threads)
    return subprocess.Popen(
        [sys.executable, "-c", script, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _results(*processes):
    """The JSON each process printed last; they run side by side (the results do not depend on load)."""
    results = []
    for process in processes:
        stdout, stderr = process.communicate(timeout=900)
        assert process.returncode == 0, stderr[-3000:]
        results.append(json.loads(stdout.strip().splitlines()[-1]))
    return results


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs two cores to run two threads")
def test_labels_equal_with_one_and_two_threads():
    """numba's and the BLAS's thread counts change no label, and not one bit of the parallel layout,
    alone or in a default fit of 4,200 positions (exact neighbours, ``layout="auto"``).

    Before the block statistics of fuse ran on one BLAS thread, the tiny
    four_phases labels differed between OpenBLAS 1 and 2 threads (a scale
    one float32 digit apart; ARI 0.996 between the two maps).
    """
    scenarios = ("four_phases", "poly_chemistry")
    one, two = _results(_start(CLUSTER_SCRIPT, *scenarios, threads=1), _start(CLUSTER_SCRIPT, *scenarios, threads=2))
    assert (one["threads"], two["threads"]) == (1, 2)
    for scenario in scenarios:
        first, second = np.array(one["labels"][scenario]), np.array(two["labels"][scenario])
        # Arrays, not lists: pytest's diff of two long lists takes hours.
        moved = int(np.count_nonzero(first != second))
        assert moved == 0, f"{scenario}: {moved} of {first.size} labels differ"
        assert len(set(first.tolist()) - {-1}) >= 2
    assert np.count_nonzero(np.array(one["layout"]) != np.array(two["layout"])) == 0
    assert np.count_nonzero(np.array(one["large_fit"]) != np.array(two["large_fit"])) == 0


def test_fit_umap_equals_plain_umap_learn_bit_for_bit():
    """Cached compilations and the compiled small-scan neighbours give umap-learn's own embedding.

    With ``layout="umap-learn"``: the parallel layout (the default from 4,096 positions) is not umap-learn's bit for bit.
    """
    ours, plain = map(np.array, _results(_start(PLAIN_UMAP_SCRIPT, "stemfuse"), _start(PLAIN_UMAP_SCRIPT, "plain")))
    assert np.count_nonzero(ours != plain) == 0


def test_umap_pairwise_euclidean_is_scikit_learns_with_umaps_metric():
    import umap.distances
    from sklearn.metrics import pairwise_distances

    from stemfuse_hs._kernels import umap_pairwise_euclidean

    rng = np.random.default_rng(0)
    x = (rng.normal(size=(120, 37)) * rng.uniform(0.1, 100, 37)).astype(np.float32)
    expected = pairwise_distances(x, metric=umap.distances.euclidean)
    assert expected.dtype == np.float32
    assert np.array_equal(umap_pairwise_euclidean(x), expected)


def test_small_scan_neighbors_are_umaps():
    import umap.distances
    import umap.umap_
    from sklearn.metrics import pairwise_distances

    from stemfuse_hs.clustering.embed import small_scan_neighbors

    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, 9)).astype(np.float32)
    # Duplicated points: exact ties, which both stable sorts order alike.
    x = np.concatenate([x, x[:40], x[:10]])
    indices, distances, _ = umap.umap_.nearest_neighbors(
        pairwise_distances(x, metric=umap.distances.euclidean), 10, "precomputed", {}, False, None
    )
    ours = small_scan_neighbors(x, 10)
    assert np.array_equal(ours[0], indices)
    assert np.array_equal(ours[1], distances)


def test_cache_umap_compilation_is_idempotent_and_caches():
    import umap.layouts
    import umap.umap_

    from stemfuse_hs._kernels import cache_umap_compilation

    names = cache_umap_compilation()
    assert cache_umap_compilation() == names
    assert "umap.umap_.smooth_knn_dist" in names
    for name in ("smooth_knn_dist", "compute_membership_strengths", "fast_knn_indices"):
        if f"umap.umap_.{name}" in names:
            assert type(getattr(umap.umap_, name)._cache).__name__ != "NullCache"
    serial = umap.layouts._nb_optimize_layout_euclidean_single_epoch
    parallel = umap.layouts._nb_optimize_layout_euclidean_single_epoch_parallel
    # A serial and a parallel compilation never share a cache entry.
    assert serial.py_func.__qualname__ != parallel.py_func.__qualname__
    assert serial.targetoptions.get("parallel") is False
    assert parallel.targetoptions.get("parallel") is True


# The parallel layout with densMAP on a random graph of 3,000 points, its
# kernels compiled by this process or loaded from NUMBA_CACHE_DIR.
LAYOUT_CACHE_SCRIPT = textwrap.dedent(
    """
    import json, warnings
    warnings.simplefilter("ignore")
    import numpy as np
    from stemfuse_hs.clustering import layout
    rng = np.random.default_rng(0)
    n, k = 3000, 10
    head = np.repeat(np.arange(n), k).astype(np.int32)
    tail = rng.integers(0, n, n * k).astype(np.int32)
    head, tail = np.concatenate([head, tail]), np.concatenate([tail, head])
    mu = rng.uniform(0.1, 1.0, head.size).astype(np.float32)
    densmap_kwds = {"lambda": 2.0, "frac": 0.5, "var_shift": 0.1, "mu": mu,
                    "mu_sum": np.bincount(head, mu, n), "R": rng.normal(size=n).astype(np.float32)}
    embedding = rng.normal(size=(n, 3)).astype(np.float32)
    layout.optimize_layout_euclidean(embedding, embedding, head, tail, 6, n, np.ones(head.size), 1.58, 0.9,
                                     np.array([1, 2, 3]), densmap=True, densmap_kwds=densmap_kwds, move_other=True)
    hits = {kernel.py_func.__name__: sum(kernel.stats.cache_hits.values()) for kernel in layout.compiled_kernels()}
    print(json.dumps({"hits": hits, "layout": embedding.ravel().view(np.uint32).tolist()}))
    """
)


def test_parallel_layout_is_the_same_compiled_or_loaded_from_numbas_cache(tmp_path):
    """A process that compiles the layout's kernels and one that loads them from numba's cache lay out alike.

    With ``fastmath=True`` (reassociation allowed) densMAP's radii summed
    differently in the two, and a published-size map of the same scan
    changed with the process's history (``KERNEL_FASTMATH``).
    """
    compiled, = _results(_start(LAYOUT_CACHE_SCRIPT, numba_cache_dir=tmp_path))
    loaded, = _results(_start(LAYOUT_CACHE_SCRIPT, numba_cache_dir=tmp_path))
    # _step_edges is compiled into _epoch, which calls it.
    assert (compiled["hits"]["_epoch"], compiled["hits"]["_local_radii"]) == (0, 0)
    assert (loaded["hits"]["_epoch"], loaded["hits"]["_local_radii"]) == (1, 1)
    moved = int(np.count_nonzero(np.array(compiled["layout"]) != np.array(loaded["layout"])))
    assert moved == 0, f"{moved} of {len(compiled['layout'])} coordinates differ"


DEFERRED_PYNNDESCENT_SCRIPT = textwrap.dedent(
    """
    import json, sys, warnings
    warnings.simplefilter("ignore")
    import numpy as np
    from stemfuse_hs.clustering.embed import fit_umap
    rng = np.random.default_rng(0)
    kwargs = dict(random_state=0, n_components=2, n_neighbors=10, n_epochs=5, init="random")
    fit_umap(rng.normal(size=(300, 4)).astype(np.float32), **kwargs)
    fit_umap(rng.normal(size=(4200, 4)).astype(np.float32), **kwargs)  # exact neighbours handed over
    import umap.umap_
    out = {"imported": "pynndescent" in sys.modules, "left": sorted(n for n in sys.modules if n.startswith("pynndescent"))}
    stand_in = umap.umap_.NNDescent
    out["not_an_index"] = isinstance(object(), stand_in)
    # A metric only pynndescent names: the lookup imports it and puts its names in umap-learn.
    out["hamming"] = "hamming" in umap.umap_.pynn_named_distances
    import pynndescent
    out["real_names"] = [
        umap.umap_.NNDescent is pynndescent.NNDescent,
        umap.umap_.pynn_named_distances is pynndescent.distances.named_distances,
        umap.umap_.pynn_sparse_named_distances is pynndescent.sparse.sparse_named_distances,
        getattr(sys.modules["pynndescent"], "__file__", None) is not None,
    ]
    print(json.dumps(out))
    """
)


def test_pynndescent_is_imported_only_when_umap_learn_uses_it():
    """Fits on handed-over neighbours never import pynndescent; the first use through umap-learn gets the real one.

    (A searchable fit, which builds pynndescent's index through the same
    names, is tested in ``test_subsample.py``.)
    """
    out = _results(_start(DEFERRED_PYNNDESCENT_SCRIPT))[0]
    assert out == {"imported": False, "left": [], "not_an_index": False, "hamming": True, "real_names": [True] * 4}
