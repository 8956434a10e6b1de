"""The clustering stage on arrays: subsample fit past max_fit_positions, backends, block separation."""

import functools
import importlib
import re

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

import stemfuse_hs
from stemfuse_hs.clustering.embed_and_cluster import check_backend, cluster_features, resolve_backend
from stemfuse_hs.cluster_parameters import validate_cluster_parameters
from stemfuse_hs.clustering.separability import block_separation


def test_full_fit_is_recorded(labels):
    assert labels.parameters["fit"] == "full"
    assert labels.parameters["backend"] == "cpu"
    assert labels.parameters["max_fit_positions"] == 200_000


def test_subsample_fit_above_max_fit_positions_agrees_with_the_full_fit(four, fused, labels):
    n = four.truth.size
    sub = fused.cluster(random_state=0, max_fit_positions=n // 2)
    assert sub.parameters["fit"] == "subsample"
    assert sub.parameters["n_fit"] == n // 2
    assert sub.memberships.axes_manager.navigation_shape == (sub.n_clusters,)
    assert adjusted_rand_score(labels.data.ravel(), sub.data.ravel()) > 0.85
    assert adjusted_rand_score(four.truth.ravel(), sub.data.ravel()) > 0.85
    assert np.isfinite(sub.embedding.data).all()


def test_cuml_backend_falls_back_to_the_cpu_with_a_warning(fused, labels):
    pytest.importorskip("hdbscan")
    try:
        import cuml  # noqa: F401
    except ImportError:
        pass
    else:  # pragma: no cover - a GPU machine
        pytest.skip("cuML is installed: no fallback to test")
    with pytest.warns(UserWarning, match=re.escape("backend='cuml': RAPIDS cuML is not installed")):
        fallback = fused.cluster(random_state=0, backend="cuml")
    assert fallback.parameters["backend"] == "cpu"
    np.testing.assert_array_equal(fallback.data, labels.data)


def test_backend_validation():
    assert check_backend("cpu") == "cpu"
    with pytest.raises(ValueError, match="backend"):
        check_backend("gpu")
    with pytest.raises(TypeError, match=re.escape("backend must be one of ['cpu', 'cuml'], got 1.")):
        check_backend(1)
    assert resolve_backend("cpu") == "cpu"


def test_invalid_backend_is_refused_before_any_work(fused):
    with pytest.raises(ValueError, match="backend"):
        fused.cluster(backend="gpu")
    with pytest.raises(ValueError, match="max_fit_positions"):
        fused.cluster(max_fit_positions=1)


def test_block_separation_measures_what_each_block_carries():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2], 100)
    carrying = labels[:, None] * 4.0 + rng.normal(size=(300, 3))
    riding = rng.normal(size=(300, 5))
    separation = block_separation(np.hstack([carrying, riding]), labels, [(0, 3), (3, 8)])
    assert separation[0] > 0.9
    assert separation[1] < 0.05
    # Noise is left out; one cluster says nothing.
    noisy = np.where(labels == 2, -1, labels)
    assert block_separation(np.hstack([carrying, riding]), noisy, [(0, 3)])[0] > 0.8
    assert np.isnan(block_separation(carrying, np.zeros(300, int), [(0, 3)])[0])


def test_block_separation_is_stored_per_block(fused, labels):
    separation = labels.parameters["block_separation"]
    assert list(separation) == ["diffraction", "eds"]
    # Four phases need both modalities: the map separates both blocks, far
    # beyond what the same cluster sizes at random places would.
    matrix = np.asarray(fused.data).reshape(-1, fused.data.shape[-1])
    shuffled = np.random.default_rng(0).permutation(labels.data.ravel())
    chance = block_separation(matrix, shuffled, fused.metadata.Fusion.block_slices)
    for value, random_value in zip(separation.values(), chance):
        assert value > 0.15 and value > 10 * random_value, (separation, chance)


def test_cluster_features_on_arrays_matches_the_signal_method(fused, labels):
    matrix = np.asarray(fused.data).reshape(-1, fused.data.shape[-1])
    result, embedding = cluster_features(matrix, validate_cluster_parameters(random_state=0))
    np.testing.assert_array_equal(result.labels, labels.data.ravel())
    np.testing.assert_array_equal(embedding, labels.embedding.data.reshape(embedding.shape))


def test_exact_neighbours_are_handed_to_umap_past_its_small_data_size(monkeypatch):
    # From 4,096 positions UMAP would search approximately (and compile its
    # search first); the pipeline gives it the exact neighbours instead.
    import importlib

    import umap

    embed_module = importlib.import_module("stemfuse_hs.clustering.embed")

    rng = np.random.default_rng(0)
    x = np.vstack([rng.normal(0, 1, (2100, 60)), rng.normal(4, 1, (2100, 60))]).astype(np.float32)
    seen = {}
    original = umap.UMAP.__init__

    @functools.wraps(original)
    def recording(self, *args, **kwargs):
        seen["precomputed_knn"] = kwargs.get("precomputed_knn")
        original(self, *args, **kwargs)

    monkeypatch.setattr(umap.UMAP, "__init__", recording)
    embedding = embed_module.embed(x, random_state=0)
    indices, distances, index = seen["precomputed_knn"]
    points = x
    expected, expected_distances = embed_module.nearest_neighbors(points, 10)
    np.testing.assert_array_equal(indices, expected)
    assert index is None and np.all(distances[:, 0] == 0) and embedding.shape == (4200, 3)
    # Brute force agrees with the neighbours' definition.
    d = np.linalg.norm(points[:5, None, :] - points[None, :, :], axis=2)
    np.testing.assert_allclose(np.sort(d, axis=1)[:, :10], expected_distances[:5], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(("strip_bytes", "max_strips"), [(None, None), (200_000, None), (200_000, 8)])
def test_exact_neighbours_match_float64_brute_force_far_from_the_origin(strip_bytes, max_strips, monkeypatch):
    """Candidates from float32 products are re-ranked exactly: large offsets do not reorder neighbours.

    Small strips of the distance matrix (200 kB: 16 rows each) hand most candidates on between strips;
    with at most 8 strips allowed, blocks of rows are compared with every row instead.
    """
    from stemfuse_hs.clustering.embed import nearest_neighbors

    embed_module = importlib.import_module("stemfuse_hs.clustering.embed")
    if strip_bytes is not None:
        monkeypatch.setattr(embed_module, "KNN_BLOCK_BYTES", strip_bytes)
    if max_strips is not None:
        monkeypatch.setattr(embed_module, "KNN_MAX_STRIPS", max_strips)
    rng = np.random.default_rng(1)
    x = (rng.normal(size=(1500, 40)) + 300.0).astype(np.float32)
    indices, distances = nearest_neighbors(x, 10)
    x64 = x.astype(np.float64)
    squared = ((x64[:, None, :] - x64[None, :, :]) ** 2).sum(axis=2)
    expected = np.argsort(squared, axis=1, kind="stable")[:, :10]
    np.testing.assert_array_equal(indices, expected)
    np.testing.assert_allclose(distances, np.sqrt(np.take_along_axis(squared, expected, axis=1)), rtol=1e-6)
    assert indices.dtype == np.int64 and distances.dtype == np.float32


def test_exact_neighbours_put_each_row_first_among_many_duplicates():
    from stemfuse_hs.clustering.embed import nearest_neighbors

    x = np.repeat(np.arange(30, dtype=np.float32)[:, None], 40, axis=0) * np.ones((1, 3), np.float32)
    indices, distances = nearest_neighbors(x, 10)
    np.testing.assert_array_equal(indices[:, 0], np.arange(x.shape[0]))
    # Forty copies of every row: all ten neighbours are copies at distance 0.
    assert np.all(distances == 0)
    np.testing.assert_array_equal(x[indices], np.broadcast_to(x[:, None, :], (x.shape[0], 10, 3)))
