"""Robustness: results survive saving to .hspy and .zspy and loading back.

Every array, axis and parameter must come back equal: features of both
extractors with their metadata sub-signals and exclusion masks, fused
signals (with a dropped block and exclusions), and label maps (with
excluded positions, and one where every position is noise).
"""

import warnings

import numpy as np
import pytest

import hyperspy.api as hs
import stemfuse_hs


def _tree_equal(a, b, path="root"):
    if hasattr(a, "axes_manager"):  # a signal inside the metadata
        assert type(a).__name__ == type(b).__name__, path
        _signal_equal(a, b, path)
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), f"{path}: keys {sorted(a)} != {sorted(b)}"
        for key in a:
            _tree_equal(a[key], b[key], f"{path}.{key}")
    elif hasattr(a, "as_dictionary") and not hasattr(a, "axes_manager"):
        _tree_equal(a.as_dictionary(), b.as_dictionary() if hasattr(b, "as_dictionary") else b, path)
    elif isinstance(a, (list, tuple)) and not isinstance(b, np.ndarray):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), f"{path}: {a!r} != {b!r}"
        for i, (x, y) in enumerate(zip(a, b)):
            _tree_equal(x, y, f"{path}[{i}]")
    elif isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        a, b = np.asarray(a), np.asarray(b)
        assert a.shape == b.shape and a.dtype == b.dtype, f"{path}: {a.shape} {a.dtype} != {b.shape} {b.dtype}"
        assert np.array_equal(a, b, equal_nan=a.dtype.kind == "f"), path
    else:
        assert type(a) is type(b) or {type(a), type(b)} <= {int, float, np.int64, np.float64}, f"{path}: {type(a)} != {type(b)}"
        assert a == b or (a != a and b != b), f"{path}: {a!r} != {b!r}"


def _axes(signal):
    axes = []
    for axis in signal.axes_manager._get_axes_in_natural_order():
        d = axis.get_axis_dictionary()
        d.pop("_type", None)
        axes.append(d)
    return axes


def _signal_equal(a, b, path="signal"):
    da_, db = np.asarray(a.data), np.asarray(b.data)
    assert da_.dtype == db.dtype and da_.shape == db.shape, path
    assert np.array_equal(da_, db, equal_nan=da_.dtype.kind == "f"), f"{path}: data"
    _tree_equal(_axes(a), _axes(b), f"{path}.axes")
    meta_a = a.metadata.as_dictionary()
    meta_b = b.metadata.as_dictionary()
    for meta in (meta_a, meta_b):
        meta.get("General", {}).pop("FileIO", None)
        meta.get("General", {}).pop("original_filename", None)
    _tree_equal(
        {k: v for k, v in meta_a.items() if k != "_HyperSpy"},
        {k: v for k, v in meta_b.items() if k != "_HyperSpy"},
        f"{path}.metadata",
    )


def _round_trip(signal, tmp_path, extension, name):
    path = tmp_path / f"{name}.{extension}"
    signal.save(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # zarr's NestedDirectoryStore notice
        loaded = hs.load(path)
        lazy = hs.load(path, lazy=True)
    assert type(loaded) is type(signal), (type(loaded), type(signal))
    assert lazy._lazy
    _signal_equal(signal, loaded, name)
    lazy.compute()
    _signal_equal(signal, lazy, f"{name} (lazy)")
    return loaded


@pytest.fixture(scope="module")
def results(scan_cache):
    scan = scan_cache("four_phases")
    dp = scan.dp.inav[:24, :16].deepcopy()
    dp.change_dtype("float32")
    dp.data[0, :3] = np.nan
    eds = scan.eds.inav[:24, :16]
    flat = hs.signals.Signal1D(np.random.default_rng(0).poisson(1.0, size=(16, 24, 64)).astype(np.uint16))
    flat.axes_manager.signal_axes[0].units = "keV"
    sdt = stemfuse_hs.sdt_features(dp, nan_policy="exclude")
    variance = stemfuse_hs.variance_features(eds, exclude_lines=["Cu_Ka"], exclude_windows=[(0.0, 0.3)])
    plain = stemfuse_hs.variance_features(eds)  # no windows or lines: empty lists in the parameters
    fused = stemfuse_hs.fuse(sdt, variance)
    with pytest.warns(UserWarning, match="left out"):
        dropped = stemfuse_hs.fuse(dp, flat, nan_policy="exclude")
    labels = fused.cluster(random_state=0)
    with pytest.warns(UserWarning, match="found no cluster"):
        noise = fused.cluster(random_state=0, min_cluster_size=0.9, min_samples=300)
    return {
        "sdt": sdt,
        "variance": variance,
        "plain": plain,
        "fused": fused,
        "dropped": dropped,
        "labels": labels,
        "noise": noise,
    }


@pytest.mark.parametrize("extension", ["hspy", "zspy"])
@pytest.mark.parametrize("name", ["sdt", "variance", "plain", "fused", "dropped", "labels", "noise"])
def test_round_trip_keeps_everything(results, tmp_path, extension, name):
    signal = results[name]
    loaded = _round_trip(signal, tmp_path, extension, name)
    md = loaded.metadata
    if name in ("sdt", "variance", "plain"):
        assert md.Features.excluded_positions.dtype == bool
        assert md.Features.excluded_positions.shape == signal.data.shape[:-1]
    if name == "sdt":
        assert md.Features.excluded_positions[0, :3].all() and md.Features.parameters.nan_policy == "exclude"
        assert type(md.Features.std_map).__name__ == "Signal2D"
    if name in ("fused", "dropped"):
        np.testing.assert_array_equal(md.Fusion.excluded_positions, signal.metadata.Fusion.excluded_positions)
        assert list(md.Fusion.dropped) == list(signal.metadata.Fusion.dropped)
        assert stemfuse_hs.block_shares(loaded) == pytest.approx(stemfuse_hs.block_shares(signal))
    if name in ("labels", "noise"):
        assert loaded.parameters == signal.parameters
        assert loaded.n_clusters == signal.n_clusters
        np.testing.assert_array_equal(loaded.memberships.data, signal.memberships.data)
        np.testing.assert_array_equal(md.Clustering.excluded_positions, signal.metadata.Clustering.excluded_positions)
        assert md.Clustering.excluded_positions[0, :3].all()


def test_loaded_features_fuse_and_cluster_like_the_originals(results, tmp_path):
    """A fused signal read back honours its recorded exclusions."""
    loaded = _round_trip(results["fused"], tmp_path, "zspy", "fused_again")
    labels = loaded.cluster(random_state=0)
    np.testing.assert_array_equal(labels.data, results["labels"].data)
