"""The parallel layout: used by fits that ask for it or are large enough (``layout="auto"``), on ``n_jobs`` threads."""

import numpy as np
import pytest

from stemfuse_hs.clustering import layout as layout_module
from stemfuse_hs.clustering.embed import fit_umap


@pytest.fixture(scope="module")
def blobs():
    rng = np.random.default_rng(3)
    points = np.vstack([rng.normal(0, 1, (200, 12)), rng.normal(5, 1, (200, 12))]).astype(np.float32)
    return points, np.repeat([0, 1], 200)


KWARGS = dict(n_components=3, n_neighbors=10, min_dist=0.0, densmap=True, n_epochs=80)


def test_fits_lay_out_in_parallel_on_n_jobs_threads(blobs, monkeypatch):
    """The same layout on any thread count is tested in fresh processes (test_reproducibility_threads.py)."""
    import numba

    points, truth = blobs
    threads = []
    real = layout_module.optimize_layout_euclidean

    def spy(*args, n_threads, **kwargs):
        threads.append(n_threads)
        return real(*args, n_threads=n_threads, **kwargs)

    monkeypatch.setattr(layout_module, "optimize_layout_euclidean", spy)
    embedding = fit_umap(points, random_state=0, n_jobs=1, layout="parallel", **KWARGS)[1]
    fit_umap(points, random_state=0, layout="parallel", **KWARGS)
    assert threads == [1, numba.get_num_threads()]
    # It lays the two blobs out apart: each point's nearest other point is in
    # its own blob (all but one on some CPUs: the two blobs touch in 12-D).
    distances = np.linalg.norm(embedding[:, None] - embedding[None], axis=-1)
    np.fill_diagonal(distances, np.inf)
    assert np.count_nonzero(truth[distances.argmin(axis=1)] != truth) <= 1


def test_umap_learn_layout_does_not_use_the_parallel_one(blobs, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the parallel layout ran")

    monkeypatch.setattr(layout_module, "optimize_layout_euclidean", refuse)
    assert fit_umap(blobs[0], random_state=0, layout="umap-learn", **KWARGS)[1].shape == (400, 3)


def test_auto_layout_is_parallel_from_the_size_threshold(blobs, monkeypatch):
    """The default ``layout="auto"``: umap-learn's layout below ``LAYOUT_PARALLEL_MIN_POSITIONS``, parallel from it."""
    import importlib

    embed = importlib.import_module("stemfuse_hs.clustering.embed")
    calls = []
    real = layout_module.optimize_layout_euclidean

    def spy(*args, **kwargs):
        calls.append(args[0].shape[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(layout_module, "optimize_layout_euclidean", spy)
    monkeypatch.setattr(embed, "LAYOUT_PARALLEL_MIN_POSITIONS", 401)
    fit_umap(blobs[0], random_state=0, **KWARGS)
    assert calls == []
    monkeypatch.setattr(embed, "LAYOUT_PARALLEL_MIN_POSITIONS", 400)
    fit_umap(blobs[0], random_state=0, **KWARGS)
    assert calls == [400]


def test_default_cluster_records_the_auto_layout(labels):
    assert labels.metadata.Clustering.parameters.layout == "auto"


def test_parallel_layout_refuses_a_transform():
    layout = np.zeros((3, 2), np.float32)
    with pytest.raises(ValueError, match="lays out a fit: one embedding, move_other=True, an int n_epochs"):
        layout_module.optimize_layout_euclidean(
            layout, layout.copy(), np.array([0]), np.array([1]), 5, 3, np.ones(1), 1.0, 1.0, np.array([1, 2, 3])
        )


def test_fit_umap_refuses_an_unknown_layout(blobs):
    with pytest.raises(ValueError, match="layout='fast' is not one of"):
        fit_umap(blobs[0], random_state=0, layout="fast", **KWARGS)
