"""Measuring helpers shared by the benchmarks: stage timers and memory sampling.

Peak memory is the process's resident set size (RSS) sampled every
``interval`` seconds by a background thread (psutil): tracemalloc does not
see memory that numpy, BLAS, numba or dask threads allocate outside
Python's allocator. The kernel's high-water mark (``ru_maxrss``) is
reported as well for the whole process. CPU time is
``time.process_time()`` (all threads of the process): on a shared machine
it is less noisy than wall time.
"""

import contextlib
import platform
import resource
import sys
import threading
import time

import psutil

__all__ = ["RSSSampler", "StageRecorder", "machine_info", "versions", "warm_up", "warm_up_subsample"]


class RSSSampler:
    """Background thread recording the peak RSS since the last ``reset``."""

    def __init__(self, interval=0.01):
        self.interval = interval
        self._process = psutil.Process()
        self._peak = self._process.memory_info().rss
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.wait(self.interval):
            rss = self._process.memory_info().rss
            with self._lock:
                self._peak = max(self._peak, rss)

    def reset(self):
        rss = self._process.memory_info().rss
        with self._lock:
            self._peak = rss
        return rss

    def peak(self):
        rss = self._process.memory_info().rss
        with self._lock:
            self._peak = max(self._peak, rss)
            return self._peak

    def close(self):
        self._stop.set()
        self._thread.join()


class StageRecorder:
    """Wall time, CPU time and peak RSS of named stages.

    Examples
    --------
    >>> recorder = StageRecorder()
    >>> with recorder.stage("sleep"):
    ...     time.sleep(0.01)
    >>> recorder.as_list()[0]["name"]
    'sleep'
    """

    def __init__(self, interval=0.01):
        self.sampler = RSSSampler(interval)
        self.stages = []
        self._overall_peak = self.sampler.peak()

    @contextlib.contextmanager
    def stage(self, name, **extra):
        start_rss = self.sampler.reset()
        wall = time.perf_counter()
        cpu = time.process_time()
        try:
            yield
        finally:
            record = {
                "name": name,
                "wall_s": time.perf_counter() - wall,
                "cpu_s": time.process_time() - cpu,
                "start_rss_bytes": start_rss,
                "peak_rss_bytes": self.sampler.peak(),
            }
            record.update(extra)
            self._overall_peak = max(self._overall_peak, record["peak_rss_bytes"])
            self.stages.append(record)

    def split(self, parent, name, wall_s, cpu_s):
        """Record a part of an already measured stage (time only, memory of the parent)."""
        for record in self.stages:
            if record["name"] == parent:
                self.stages.append(
                    {
                        "name": name,
                        "wall_s": wall_s,
                        "cpu_s": cpu_s,
                        "start_rss_bytes": record["start_rss_bytes"],
                        "peak_rss_bytes": record["peak_rss_bytes"],
                        "part_of": parent,
                    }
                )
                return
        raise KeyError(parent)

    def as_list(self):
        return list(self.stages)

    def peak_rss(self):
        return max(self._overall_peak, self.sampler.peak())

    @staticmethod
    def ru_maxrss():
        # Linux reports kibibytes.
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info():
    """CPU model, cores, RAM, OS and Python of this machine."""
    import os

    return {
        "cpu": _cpu_model(),
        "cores": psutil.cpu_count(logical=False) or os.cpu_count(),
        "logical_cpus": psutil.cpu_count(logical=True),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "ram_bytes": psutil.virtual_memory().total,
        "os": f"{platform.system()} {platform.release()}",
        "python": sys.version.split()[0],
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


def versions():
    """Versions of the packages the numbers depend on."""
    from importlib import metadata

    out = {}
    for package in (
        "stemfuse_hs",
        "numpy",
        "scipy",
        "dask",
        "distributed",
        "umap-learn",
        "pynndescent",
        "hdbscan",
        "scikit-learn",
        "numba",
        "hyperspy",
        "pyxem",
        "exspy",
        "zarr",
    ):
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            out[package] = "not installed"
    return out


def warm_up():
    """Compile UMAP's, HDBSCAN's and stemfuse_hs's numba code before anything is timed.

    The first UMAP fit of a process compiles (or loads from numba's cache)
    its kernels: seconds that belong to neither side of a comparison. A
    densMAP fit and an HDBSCAN fit with prediction data on random points
    run both code paths (chebyshev and euclidean). More than 4,096 points:
    below that UMAP computes exact distances and never compiles its
    nearest-neighbour descent, which the timed fits then would (about 35 s).
    """
    import warnings

    import numpy as np

    warnings.filterwarnings("ignore")
    import hdbscan
    import umap

    rng = np.random.default_rng(0)
    x = rng.normal(size=(4200, 8)).astype(np.float32)
    for metric in ("euclidean", "chebyshev"):
        embedding = umap.UMAP(
            densmap=True, n_neighbors=10, min_dist=0.0, n_components=3, metric=metric, random_state=0, n_epochs=20
        ).fit_transform(x)
    model = umap.UMAP(n_neighbors=10, min_dist=0.0, n_components=3, random_state=0, n_epochs=20).fit(x)
    # stemfuse_hs's own compiled kernels (loaded from numba's cache, or
    # compiled once after an install or an edit of the kernels).
    from stemfuse_hs import _kernels
    from stemfuse_hs.clustering.embed import fit_umap
    from stemfuse_hs.features.sdt import sdt

    # The package's own fit: its exact neighbours and its parallel layout.
    fit_umap(x, random_state=0, densmap=True, n_neighbors=10, min_dist=0.0, n_components=3, n_epochs=20)

    sdt(rng.poisson(3.0, size=(4, 5, 8, 8)).astype(np.uint16))
    _kernels.weighted_moments(rng.poisson(3.0, size=(6, 8)).astype(np.uint16), np.ones((6, 2)))
    model.transform(x[:20] + 0.01)
    clusterer = hdbscan.HDBSCAN(min_cluster_size=20, min_samples=5, prediction_data=True).fit(embedding)
    if clusterer.labels_.max() >= 1:
        hdbscan.all_points_membership_vectors(clusterer)
        hdbscan.membership_vector(clusterer, embedding[:10])
        hdbscan.approximate_predict(clusterer, embedding[:10])


def warm_up_subsample():
    """Compile what the subsample path runs (pynndescent's search, UMAP's transform layout).

    A small run of :func:`embed_and_cluster_subsample` itself on random
    float32 data (numba specialises on types, not sizes; more than 4,096
    fitted points so that UMAP builds the same search index), so that no
    compilation is timed in the assignment.
    """
    import warnings

    import numpy as np

    from stemfuse_hs.clustering.subsample import embed_and_cluster_subsample

    warnings.filterwarnings("ignore")
    rng = np.random.default_rng(0)
    x = np.vstack([rng.normal(c, 1.0, (3000, 8)) for c in (0.0, 8.0)]).astype(np.float32)
    embed_and_cluster_subsample(x, n_fit=4500, chunk_size=1000, random_state=0, show_progressbar=False)
