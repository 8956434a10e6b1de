"""Lazy and distributed runs give the eager, threaded result (tiny data, < 60 s).

A ``dask.distributed`` ``LocalCluster`` of two worker processes (one thread
each) computes the feature extraction and the fusion of a lazy scan; the
results must equal the threaded scheduler's bit for bit, and the labels of
a seeded clustering must be the same.
"""

import dask
import numpy as np
import pytest

import stemfuse_hs
from stemfuse_hs.data import synthetic_scan

distributed = pytest.importorskip("distributed")


def _run(scan):
    dp = stemfuse_hs.sdt_features(scan.dp)
    eds = stemfuse_hs.variance_features(scan.eds)
    fused = stemfuse_hs.fuse(dp, eds)
    return {
        "dp": np.asarray(dp.data.compute() if dp._lazy else dp.data),
        "eds": np.asarray(eds.data.compute() if eds._lazy else eds.data),
        "fused": np.asarray(fused.data.compute() if fused._lazy else fused.data),
        "weights": np.asarray(fused.metadata.Fusion.weights),
        "std_map": np.asarray(dp.metadata.Features.std_map.data),
        "fused_signal": fused,
    }


@pytest.fixture(scope="module")
def threaded():
    scan = synthetic_scan("four_phases", size="tiny", seed=0, lazy=True)
    with dask.config.set(scheduler="threads"):
        result = _run(scan)
        result["labels"] = np.asarray(result["fused_signal"].cluster(random_state=0).data)
    return result


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    )
    client = distributed.Client(cluster)
    try:
        yield client
    finally:
        client.close()
        cluster.close()


@pytest.fixture(scope="module")
def on_cluster(threaded, client):
    scan = synthetic_scan("four_phases", size="tiny", seed=0, lazy=True)
    with distributed.get_task_stream(client) as stream:
        result = _run(scan)
    result["n_tasks_on_workers"] = len(stream.data)
    result["labels"] = np.asarray(result["fused_signal"].cluster(random_state=0).data)
    return result


def test_the_cluster_did_the_work(on_cluster, client):
    assert len(client.scheduler_info()["workers"]) == 2
    assert on_cluster["n_tasks_on_workers"] > 0


def test_feature_extraction_equals_threaded(threaded, on_cluster):
    np.testing.assert_array_equal(on_cluster["std_map"], threaded["std_map"])
    np.testing.assert_array_equal(on_cluster["dp"], threaded["dp"])
    np.testing.assert_array_equal(on_cluster["eds"], threaded["eds"])


def test_fusion_equals_threaded(threaded, on_cluster):
    np.testing.assert_array_equal(on_cluster["weights"], threaded["weights"])
    np.testing.assert_array_equal(on_cluster["fused"], threaded["fused"])


def test_labels_equal_threaded(threaded, on_cluster):
    np.testing.assert_array_equal(on_cluster["labels"], threaded["labels"])


def test_lazy_equals_eager(threaded, four_phases):
    """The threaded lazy run is the eager run (the distributed one equals it above)."""
    eager = _run(four_phases)
    np.testing.assert_array_equal(eager["dp"], threaded["dp"])
    np.testing.assert_array_equal(eager["eds"], threaded["eds"])
    np.testing.assert_array_equal(eager["fused"], threaded["fused"])
