"""Robustness: no public call changes its inputs' data, axes or metadata, eager or lazy.

Each input is snapshotted (data values, dtype, dask graph name, axes,
metadata, original metadata, class) before the call and compared after.
The inputs include NaN positions (excluded) and raw data of both
modalities, so that every code path that could write into an array runs.
"""

import dask.array as da
import numpy as np
import pytest

import stemfuse_hs


def _tree_equal(a, b, path="root"):
    """Recursive equality for metadata and axes dictionaries (arrays by value, NaN == NaN)."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), f"{path}: keys {sorted(a)} != {sorted(b)}"
        for key in a:
            _tree_equal(a[key], b[key], f"{path}.{key}")
    elif isinstance(a, (list, tuple)) and not isinstance(b, np.ndarray):
        assert type(a) is type(b) and len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            _tree_equal(x, y, f"{path}[{i}]")
    elif isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        a, b = np.asarray(a), np.asarray(b)
        assert a.shape == b.shape and a.dtype == b.dtype, path
        assert np.array_equal(a, b, equal_nan=a.dtype.kind == "f"), path
    elif hasattr(a, "as_dictionary"):
        _tree_equal(a.as_dictionary(), b.as_dictionary(), path)
    else:
        assert a == b or (a != a and b != b), f"{path}: {a!r} != {b!r}"


def snapshot(signal):
    data = signal.data.compute() if signal._lazy else signal.data
    return {
        "class": type(signal),
        "data": np.array(data, copy=True),
        "dtype": signal.data.dtype,
        "dask_name": signal.data.name if signal._lazy else None,
        "axes": signal.axes_manager.as_dictionary(),
        "metadata": signal.metadata.as_dictionary(),
        "original_metadata": signal.original_metadata.as_dictionary(),
    }


def assert_unchanged(signal, before):
    assert type(signal) is before["class"]
    assert signal.data.dtype == before["dtype"]
    if before["dask_name"] is not None:
        assert isinstance(signal.data, da.Array) and signal.data.name == before["dask_name"]
        data = signal.data.compute()
    else:
        data = signal.data
    assert np.array_equal(data, before["data"], equal_nan=data.dtype.kind == "f")
    _tree_equal(signal.axes_manager.as_dictionary(), before["axes"], "axes")
    _tree_equal(signal.metadata.as_dictionary(), before["metadata"], "metadata")
    _tree_equal(signal.original_metadata.as_dictionary(), before["original_metadata"], "original_metadata")


def checked(call, *inputs):
    """Run ``call()`` and assert that no input changed; return its result."""
    before = [snapshot(s) for s in inputs]
    result = call()
    for signal, snap in zip(inputs, before):
        assert_unchanged(signal, snap)
    return result


@pytest.fixture(scope="module", params=[False, True], ids=["eager", "lazy"])
def inputs(request, scan_cache):
    """Copies of part of the tiny four-phase scan, with NaN positions in the diffraction data."""
    scan = scan_cache("four_phases")
    dp, eds = scan.dp.inav[:24, :16].deepcopy(), scan.eds.inav[:24, :16].deepcopy()
    dp.change_dtype("float32")
    dp.data[0, :3] = np.nan
    dp.metadata.set_item("Acquisition_instrument.TEM.beam_energy", 200.0)
    dp.original_metadata.set_item("detector.name", "test")
    if request.param:
        dp, eds = dp.as_lazy(), eds.as_lazy()
    return dp, eds


def test_extractors_leave_inputs_unchanged(inputs):
    dp, eds = inputs
    for kwargs in (
        dict(nan_policy="exclude"),
        dict(nan_policy="exclude", binning=1, fraction=0.2, std_scale="linear", normalize=None),
        dict(nan_policy="exclude", beam_centre=(14.0, 14.0), beam_radius=4.0),
    ):
        features = checked(lambda: stemfuse_hs.sdt_features(dp, **kwargs), dp)
        checked(lambda: np.asarray(features.data.compute() if features._lazy else features.data), dp)
    for kwargs in (dict(), dict(quantile=0.9, normalize=None), dict(threshold=0.01, exclude_lines=["Cu_Ka"])):
        features = checked(lambda: stemfuse_hs.variance_features(eds, **kwargs), eds)
        checked(lambda: np.asarray(features.data.compute() if features._lazy else features.data), eds)
    before = snapshot(dp)
    with pytest.raises(ValueError, match="NaN or inf"):
        stemfuse_hs.sdt_features(dp)  # refused: still untouched
    assert_unchanged(dp, before)


def test_fusion_and_block_shares_leave_inputs_unchanged(inputs):
    dp, eds = inputs
    fused = checked(lambda: stemfuse_hs.fuse(dp, eds, nan_policy="exclude"), dp, eds)
    sdt = stemfuse_hs.sdt_features(dp, nan_policy="exclude")
    var = stemfuse_hs.variance_features(eds)
    for kwargs in (dict(weights=[1.0, 2.0]), dict(weighting="reference")):
        checked(lambda: stemfuse_hs.fuse(sdt, var, **kwargs), sdt, var)
    checked(lambda: stemfuse_hs.block_shares(fused), fused)
    checked(lambda: sdt.fuse(var), sdt, var)


@pytest.fixture(scope="module")
def clustered(inputs):
    dp, eds = inputs
    fused = stemfuse_hs.fuse(dp, eds, nan_policy="exclude")
    labels = checked(lambda: fused.cluster(random_state=0), fused)
    return dp, eds, fused, labels


def test_cluster_statistics_leave_inputs_and_the_map_unchanged(clustered):
    dp, eds, fused, labels = clustered
    for method in ("cluster_statistics", "cluster_means", "cluster_stds"):
        for kwargs in (dict(), dict(mode="hard", min_membership=0.3)):
            checked(lambda: getattr(labels, method)(dp, **kwargs), dp, labels)
            checked(lambda: getattr(labels, method)(eds, **kwargs), eds, labels)
    checked(lambda: labels.cluster_means(fused), fused, labels)
    checked(lambda: labels.max_membership, labels)
