"""Subsample-and-assign clustering (stemfuse_hs.clustering.subsample).

Not timed here: ``benchmarks/run.py`` measures the speed-up; these tests
check shapes, conventions, determinism and agreement with the full path.
"""

import re

import dask.array as da
import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from stemfuse_hs.clustering import embed, merge_indistinct, soft_cluster
from stemfuse_hs.clustering.subsample import (
    SubsampleResult,
    _initial_positions,
    _row_blocks,
    embed_and_cluster_subsample,
    subsample_index,
    transform_graph,
)


def blobs(n_per=700, centres=(0.0, 6.0, 12.0), dim=10, seed=0):
    rng = np.random.default_rng(seed)
    x = np.vstack([rng.normal(c, 1.0, (n_per, dim)) for c in centres]).astype(np.float32)
    truth = np.repeat(np.arange(len(centres)), n_per)
    order = rng.permutation(x.shape[0])
    return x[order], truth[order]


@pytest.fixture(scope="module")
def three_blobs():
    return blobs()


@pytest.fixture(scope="module")
def blob_result(three_blobs):
    x, _ = three_blobs
    return embed_and_cluster_subsample(
        x, n_fit=900, chunk_size=500, random_state=0, hdbscan_kwargs={"min_cluster_size": 0.05}, label_moments=True
    )


def test_subsample_index_is_sorted_unique_and_seeded():
    index = subsample_index(1000, 100, random_state=3)
    assert index.shape == (100,)
    assert np.all(np.diff(index) > 0)
    assert index.min() >= 0 and index.max() < 1000
    np.testing.assert_array_equal(index, subsample_index(1000, 100, random_state=3))
    assert not np.array_equal(index, subsample_index(1000, 100, random_state=4))
    np.testing.assert_array_equal(subsample_index(5, 10), np.arange(5))


def test_row_blocks_follow_dask_chunks():
    x = da.zeros((1000, 3), chunks=(300, 3))
    assert _row_blocks(x, 650) == [(0, 600), (600, 1000)]
    assert _row_blocks(x, 100) == [(0, 300), (300, 600), (600, 900), (900, 1000)]
    assert _row_blocks(np.zeros((1000, 3)), 400) == [(0, 400), (400, 800), (800, 1000)]


def test_result_shapes_and_conventions(three_blobs, blob_result):
    x, truth = three_blobs
    r = blob_result
    assert isinstance(r, SubsampleResult)
    n = x.shape[0]
    assert r.embedding.shape == (n, 3) and r.embedding.dtype == np.float32
    assert r.memberships.shape == (n, r.n_clusters) and r.memberships.dtype == np.float32
    assert r.labels.shape == (n,)
    assert np.all(np.isfinite(r.embedding))
    # Labels are the argmax of the soft memberships, as in the full path.
    np.testing.assert_array_equal(r.labels, np.argmax(r.memberships, axis=1))
    assert np.all(r.memberships >= 0) and np.all(r.memberships.sum(axis=1) <= 1 + 1e-5)
    assert r.fit_index.shape == (900,)
    assert r.parameters["n_fit"] == 900 and r.parameters["subsample"] is True
    assert "densmap=False" in r.parameters["transform"]
    assert set(r.timings) == {"read_subsample", "fit", "assign"}
    result = r.cluster_result()
    np.testing.assert_array_equal(result.labels, r.labels)


def test_separated_blobs_are_recovered(three_blobs, blob_result):
    x, truth = three_blobs
    assert blob_result.n_clusters == 3
    assert adjusted_rand_score(truth, blob_result.labels) > 0.99
    # Assigned (not fitted) positions land with their own blob too.
    assigned = np.setdiff1d(np.arange(x.shape[0]), blob_result.fit_index)
    assert adjusted_rand_score(truth[assigned], blob_result.labels[assigned]) > 0.99


def test_dask_input_gives_the_numpy_result(three_blobs, blob_result):
    x, _ = three_blobs
    # Dask chunks of 500 rows: the same assignment blocks as chunk_size=500 on numpy.
    lazy = embed_and_cluster_subsample(
        da.from_array(x, chunks=(500, x.shape[1])),
        n_fit=900,
        chunk_size=500,
        random_state=0,
        hdbscan_kwargs={"min_cluster_size": 0.05},
    )
    np.testing.assert_array_equal(lazy.labels, blob_result.labels)
    np.testing.assert_array_equal(lazy.embedding, blob_result.embedding)
    np.testing.assert_array_equal(lazy.memberships, blob_result.memberships)
    assert lazy.label_moments is None  # only when asked for


def test_fitting_every_position_is_the_full_path():
    x, _ = blobs(n_per=300, seed=1)
    sub = embed_and_cluster_subsample(x, n_fit=10_000, random_state=0, hdbscan_kwargs={"min_cluster_size": 0.05})
    assert sub.parameters["transform"].startswith("none")
    embedding = embed(x, random_state=0)
    np.testing.assert_allclose(sub.embedding, embedding)
    full = merge_indistinct(soft_cluster(embedding, min_cluster_size=0.05, cluster_selection_method="leaf"), x)
    np.testing.assert_array_equal(sub.labels, full.labels)
    np.testing.assert_allclose(sub.memberships, full.memberships, atol=1e-6)


def test_integer_min_cluster_size_refers_to_the_whole_scan(three_blobs):
    x, _ = three_blobs
    r = embed_and_cluster_subsample(x, n_fit=700, random_state=0, hdbscan_kwargs={"min_cluster_size": 150})
    assert r.parameters["min_cluster_size"] == round(150 * 700 / x.shape[0])
    assert r.parameters["min_cluster_size_given"] == 150


def test_agrees_with_the_full_fit_on_a_synthetic_scan(default_fit, four_phases):
    fused = default_fit.fused("four_phases")
    full = default_fit.labels("four_phases")
    matrix = np.asarray(fused.data).reshape(-1, fused.data.shape[-1])
    sub = embed_and_cluster_subsample(matrix, n_fit=900, chunk_size=400, random_state=0)
    assert sub.parameters["pca_components"] == -1
    # Optionally projected on principal components fitted on the subsample.
    projected = embed_and_cluster_subsample(matrix, n_fit=900, chunk_size=400, random_state=0, pca_components=20)
    assert matrix.shape[1] > 20 and projected.parameters["pca_components"] == 20
    assert adjusted_rand_score(four_phases.truth.ravel(), projected.labels) > 0.5
    full_labels = np.asarray(full.data).ravel()
    assert adjusted_rand_score(full_labels, sub.labels) > 0.8
    truth = four_phases.truth.ravel()
    assert adjusted_rand_score(truth, sub.labels) > adjusted_rand_score(truth, full_labels) - 0.15


def test_small_fit_transforms_as_umaps_small_data_fit_without_per_pair_calls(three_blobs, monkeypatch):
    """A fit on fewer than 4,096 points places new ones on umap-learn's own graph, in matrix products."""
    import sklearn.metrics.pairwise as pairwise
    import umap

    from stemfuse_hs.clustering.embed import fit_umap

    x, _ = three_blobs
    fitted, new = x[:600], x[600:900]
    plain = umap.UMAP(n_neighbors=10, random_state=0, transform_mode="graph").fit(fitted)
    expected = plain.transform(new).tocsr()

    def per_pair(*args, **kwargs):
        raise AssertionError("scikit-learn was handed a Python callable: one call per pair")

    monkeypatch.setattr(pairwise, "_pairwise_callable", per_pair)
    ours, _ = fit_umap(fitted, random_state=0, n_neighbors=10, searchable=True)
    graph = transform_graph(ours, new).tocsr()
    assert ours.transform_mode == "embedding" and callable(ours._input_distance_func)  # the model is left as it was
    assert graph.shape == expected.shape == (300, 600)
    assert np.array_equal(graph.indptr, expected.indptr) and np.array_equal(graph.indices, expected.indices)
    np.testing.assert_allclose(graph.data, expected.data, rtol=1e-4)


def test_vectorised_initialisation_matches_umap():
    import scipy.sparse
    from umap.umap_ import init_graph_transform

    rng = np.random.default_rng(0)
    fitted = rng.normal(size=(50, 3)).astype(np.float32)
    dense = np.where(rng.random((20, 50)) < 0.15, rng.random((20, 50)), 0.0).astype(np.float32)
    dense[3, 7] = 1.0  # coincides with fitted point 7
    dense[5] = 0.0  # no neighbours: NaN, as umap-learn
    graph = scipy.sparse.csr_matrix(dense)
    expected = init_graph_transform(graph, fitted)
    got = _initial_positions(graph.tocoo(), fitted)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(got[3], fitted[7])
    assert np.all(np.isnan(got[5]))


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"matrix": np.zeros(10)}, ValueError),
        ({"n_fit": 5}, ValueError),
        ({"chunk_size": 0}, ValueError),
        # The clustering parameters are checked once, at the entrance
        # (validate_cluster_parameters, tests/test_cluster_parameters.py).
    ],
)
def test_invalid_arguments(kwargs, error):
    matrix = kwargs.pop("matrix", np.zeros((100, 4), np.float32))
    with pytest.raises(error):
        embed_and_cluster_subsample(matrix, **kwargs)


def test_defaults_are_the_full_path_defaults():
    """The subsample path clusters with the spec's defaults, as FusedSTEMSignal.cluster does."""
    import inspect

    from stemfuse_hs.cluster_parameters import CLUSTER_DEFAULTS
    from stemfuse_hs.clustering.subsample import DEFAULT_HDBSCAN, DEFAULT_UMAP

    sub = {k: p.default for k, p in inspect.signature(embed_and_cluster_subsample).parameters.items()}
    for key, value in {**DEFAULT_UMAP, **DEFAULT_HDBSCAN}.items():
        assert CLUSTER_DEFAULTS[key] == value, key
    assert sub["merge_threshold"] == CLUSTER_DEFAULTS["merge_threshold"]
    assert sub["min_membership"] == CLUSTER_DEFAULTS["min_membership"]


def test_cluster_max_fit_positions_is_the_subsample_path(four_phases):
    """FusedSTEMSignal.cluster(max_fit_positions=...) runs embed_and_cluster_subsample with its own defaults."""
    import inspect

    import stemfuse_hs
    from stemfuse_hs.signals.features import FusedSTEMSignal

    if "max_fit_positions" not in inspect.signature(FusedSTEMSignal.cluster).parameters:
        pytest.skip("FusedSTEMSignal.cluster has no max_fit_positions")
    fused = stemfuse_hs.fuse(four_phases.dp, four_phases.eds)
    n_fit = 900
    signal = fused.cluster(max_fit_positions=n_fit, random_state=0)
    matrix = np.asarray(fused.data).reshape(-1, fused.data.shape[-1])
    direct = embed_and_cluster_subsample(matrix, n_fit=n_fit, random_state=0)
    np.testing.assert_array_equal(np.asarray(signal.data).ravel(), direct.labels)
    assert signal.metadata.get_item("Clustering.parameters.fit") == "subsample"


def test_label_moments_accumulated_over_chunks_equal_those_of_the_final_labels(three_blobs, blob_result):
    from stemfuse_hs.clustering.separability import label_moments

    x, _ = three_blobs
    r = blob_result
    for streamed, whole in zip(r.label_moments, label_moments(x, r.labels, r.n_clusters)):
        np.testing.assert_allclose(streamed, whole, rtol=1e-10)


@pytest.fixture(scope="module")
def lazy_fused(four_phases):
    import stemfuse_hs

    return stemfuse_hs.fuse(four_phases.dp.as_lazy(), four_phases.eds.as_lazy())


def test_lazy_features_past_max_fit_positions_are_never_held_whole(four_phases, lazy_fused, monkeypatch):
    """A lazy scan fitted on a subsample is read chunk by chunk and gives the eager map."""
    import stemfuse_hs
    import stemfuse_hs.clustering.embed_and_cluster as pipeline
    import stemfuse_hs.clustering.scan as scan

    eager = stemfuse_hs.fuse(four_phases.dp, four_phases.eds).cluster(max_fit_positions=900, random_state=0)

    def refuse(*args, **kwargs):
        raise AssertionError("the lazy feature matrix was computed whole")

    monkeypatch.setattr(pipeline, "compute_in_blocks", refuse)
    monkeypatch.setattr(scan, "compute_in_blocks", refuse)
    lazy = lazy_fused.cluster(max_fit_positions=900, random_state=0)
    assert lazy.metadata.get_item("Clustering.parameters.fit") == "subsample"
    np.testing.assert_array_equal(np.asarray(lazy.data), np.asarray(eager.data))
    separation = lazy.metadata.Clustering.parameters.block_separation.as_dictionary()
    expected = eager.metadata.Clustering.parameters.block_separation.as_dictionary()
    assert separation.keys() == expected.keys()
    np.testing.assert_allclose(list(separation.values()), list(expected.values()), rtol=1e-6)
    # A full fit needs the whole matrix: computed (here refused).
    with pytest.raises(AssertionError, match="computed whole"):
        lazy_fused.cluster(random_state=0)


def test_lazy_nan_features_found_while_streaming_name_their_position(lazy_fused):
    holed = lazy_fused.deepcopy()
    del holed.metadata.Fusion
    data = np.asarray(holed.data.compute())
    data[2, 3, 0] = np.nan
    holed.data = da.from_array(data, chunks=(5,) + data.shape[1:])
    n = data.shape[0] * data.shape[1]
    # Position (2, 3) (array order) is row 2 * width + 3: fitted on every other
    # row, it is met either in the subsample or while assigning.
    message = "cluster: 1 position, first at navigation index (2, 3) (array order) hold NaN or inf features"
    with pytest.raises(ValueError, match=re.escape(message)):
        holed.cluster(max_fit_positions=n // 2, random_state=0)
