"""Robustness: properties over random shapes, dtypes, parameters and NaN positions.

For the feature extractors and the fusion: results are finite float32 of
the right shape, excluded positions are exactly the non-finite ones, their
features are neutral, the other positions do not depend on what the
excluded ones hold, and lazy equals eager.
"""

import dask.array as da
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import hyperspy.api as hs
import stemfuse_hs
from stemfuse_hs.fusion import fuse_blocks

SETTINGS = settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
INTEGER_DTYPES = ["uint8", "uint16", "int16", "int32"]
FLOAT_DTYPES = ["float32", "float64"]


@st.composite
def scans(draw, signal_shape, max_value=200):
    """(data, bad): random counts, NaN/inf at the ``bad`` positions (float dtypes only)."""
    # Floats twice as often: only they can hold NaN and inf.
    dtype = draw(st.sampled_from(FLOAT_DTYPES + INTEGER_DTYPES + FLOAT_DTYPES))
    nav = (draw(st.integers(1, 3)), draw(st.integers(2, 5)))
    low = 0 if dtype.startswith("uint") else -5
    data = draw(hnp.arrays(np.dtype(dtype), nav + signal_shape, elements=st.integers(low, max_value)))
    bad = np.zeros(nav, bool)
    if dtype in FLOAT_DTYPES and draw(st.integers(0, 3)):
        bad = draw(hnp.arrays(bool, nav, elements=st.booleans()))
        bad.flat[draw(st.integers(0, bad.size - 1))] = True
        if bad.size - bad.sum() < 2:
            bad[:] = False
            bad.flat[0] = True
        if bad.size - bad.sum() < 2:
            bad[:] = False
        n_bad = int(bad.sum())
        values = draw(st.lists(st.sampled_from([np.nan, np.inf, -np.inf]), min_size=n_bad, max_size=n_bad))
        # At the first pixel: inside the binned area whatever the binning.
        data[(bad,) + (0,) * len(signal_shape)] = values
    return data, bad


def _diffraction(data, lazy=False):
    s = hs.signals.Signal2D(data)
    if lazy:
        s = s.as_lazy()
        s.data = s.data.rechunk((1,) + (-1,) * (data.ndim - 1))
    return s


def _spectra(data, lazy=False):
    s = hs.signals.Signal1D(data)
    axis = s.axes_manager.signal_axes[0]
    axis.name, axis.units, axis.scale, axis.offset = "Energy", "keV", 0.1, 0.5
    if lazy:
        s = s.as_lazy()
        s.data = s.data.rechunk((1,) + (-1,) * (data.ndim - 1))
    return s


def _values(signal):
    return np.asarray(signal.data.compute() if isinstance(signal.data, da.Array) else signal.data)


def _check_features(features, bad, lazy_features):
    values = features.data
    assert values.dtype == np.float32 and values.shape[:-1] == bad.shape
    assert np.all(np.isfinite(values)) and values.shape[-1] >= 1
    np.testing.assert_array_equal(features.metadata.Features.excluded_positions, bad)
    if bad.any():
        # Neutral: every excluded position holds the mean of the included ones.
        np.testing.assert_allclose(
            values[bad], np.broadcast_to(values[~bad].mean(axis=0), values[bad].shape), rtol=1e-4, atol=1e-4
        )
    assert isinstance(lazy_features.data, da.Array)
    np.testing.assert_array_equal(lazy_features.metadata.Features.excluded_positions, bad)
    np.testing.assert_allclose(_values(lazy_features), values, rtol=1e-5, atol=1e-5)


@pytest.mark.filterwarnings("ignore:sdt. no selected detector pixel varies")
@SETTINGS
@given(
    case=scans(signal_shape=(6, 6)),
    binning=st.sampled_from([1, 2, 3]),
    fraction=st.floats(0.05, 1.0),
    normalize=st.sampled_from(["total", None]),
    std_scale=st.sampled_from(["log", "linear"]),
)
def test_property_sdt_exclude(case, binning, fraction, normalize, std_scale):
    data, bad = case
    kwargs = dict(binning=binning, fraction=fraction, normalize=normalize, std_scale=std_scale,
                  beam_centre=(2.0, 3.0), beam_radius=1.0, nan_policy="exclude")
    features = stemfuse_hs.sdt_features(_diffraction(data), **kwargs)
    _check_features(features, bad, stemfuse_hs.sdt_features(_diffraction(data, lazy=True), **kwargs))
    if bad.any():
        other = data.copy()
        other[bad] = np.nan  # whatever an excluded position holds
        again = stemfuse_hs.sdt_features(_diffraction(other), **kwargs)
        np.testing.assert_array_equal(again.metadata.Features.selected_mask.data, features.metadata.Features.selected_mask.data)
        np.testing.assert_allclose(again.data[~bad], features.data[~bad], rtol=1e-6, atol=1e-6)


@SETTINGS
@given(
    case=scans(signal_shape=(12,)),
    rule=st.one_of(
        st.builds(dict, quantile=st.floats(0.05, 0.95)),
        st.builds(dict, threshold=st.sampled_from([0.0, 0.5])),
    ),
    normalize=st.sampled_from(["total", None]),
)
def test_property_variance_exclude(case, rule, normalize):
    data, bad = case
    kwargs = dict(rule, normalize=normalize, nan_policy="exclude")
    try:
        features = stemfuse_hs.variance_features(_spectra(data), **kwargs)
    except stemfuse_hs.features.NoVaryingChannelError:
        # Refused the same way, lazy or not.
        with pytest.raises(stemfuse_hs.features.NoVaryingChannelError):
            stemfuse_hs.variance_features(_spectra(data, lazy=True), **kwargs)
        return
    _check_features(features, bad, stemfuse_hs.variance_features(_spectra(data, lazy=True), **kwargs))
    kept = features.metadata.Features.kept_channels.data.astype(bool)
    assert kept.sum() == features.data.shape[-1]


@st.composite
def block_sets(draw):
    rows, cols = draw(st.integers(1, 5)), draw(st.integers(2, 8))
    n = rows * cols
    widths = draw(st.lists(st.integers(1, 6), min_size=1, max_size=3))
    blocks = [
        draw(hnp.arrays(np.float64, (n, w), elements=st.floats(-50, 50, allow_nan=False, allow_infinity=False)))
        for w in widths
    ]
    excluded = draw(hnp.arrays(bool, n, elements=st.booleans()))
    if n - excluded.sum() < 2:
        excluded[:] = False
    weighting = draw(st.sampled_from(["auto", "equal", "reference"]))
    kwargs = dict(weighting=weighting, max_samples=draw(st.integers(1, 60)))
    if weighting == "reference":
        kwargs["reference_factors"] = draw(st.lists(st.floats(0.1, 20), min_size=len(blocks), max_size=len(blocks)))
    elif draw(st.booleans()):
        weights = draw(st.lists(st.floats(0, 5), min_size=len(blocks), max_size=len(blocks)))
        if any(w > 0 for w in weights):
            kwargs["weights"] = weights
    return blocks, (rows, cols), excluded, kwargs


@SETTINGS
@given(block_sets())
def test_property_fuse_blocks(case):
    blocks, scan_shape, excluded, kwargs = case
    result = fuse_blocks(blocks, scan_shape, excluded=excluded, **kwargs)
    matrix = result.matrix
    assert matrix.dtype == np.float32 and matrix.shape == (excluded.size, sum(b.shape[1] for b in blocks))
    assert np.all(np.isfinite(matrix)) and np.all(matrix[excluded] == 0)
    assert np.all(result.weights >= 0) and np.all(np.isfinite(result.weights))
    if kwargs["weighting"] == "auto" and "weights" not in kwargs:
        assert result.weights.max() == pytest.approx(1.0)
    # The excluded rows' values do not matter, even NaN.
    spoiled = [np.where(excluded[:, None], np.nan, b) for b in blocks]
    again = fuse_blocks(spoiled, scan_shape, excluded=excluded, **kwargs)
    np.testing.assert_array_equal(again.matrix, matrix)
    # Lazy blocks give the same matrix, lazily.
    lazy = fuse_blocks([da.from_array(b, chunks=(max(1, b.shape[0] // 3), -1)) for b in spoiled], scan_shape,
                       excluded=excluded, **kwargs)
    assert isinstance(lazy.matrix, da.Array)
    np.testing.assert_allclose(lazy.matrix.compute(), matrix, rtol=1e-6, atol=1e-6)


@pytest.mark.filterwarnings("ignore:sdt. no selected detector pixel varies")
@SETTINGS
@given(
    dp_case=scans(signal_shape=(6, 6)),
    eds_seed=st.integers(0, 2**16),
    nan_policy=st.sampled_from(["raise", "exclude"]),
)
def test_property_fuse_signals(dp_case, eds_seed, nan_policy):
    data, bad = dp_case
    rng = np.random.default_rng(eds_seed)
    spectra = rng.poisson(2.0, size=data.shape[:2] + (10,)).astype(np.float32)
    eds_bad = rng.random(data.shape[:2]) < 0.2
    if (~(bad | eds_bad)).sum() < 2 or nan_policy == "raise":
        eds_bad[:] = False
    spectra[eds_bad, 3] = np.nan
    dp = stemfuse_hs.sdt_features(_diffraction(data), beam_centre=(2.0, 3.0), beam_radius=1.0, nan_policy="exclude")
    eds = _spectra(spectra)
    # Recorded exclusions (the diffraction's) are honoured under "raise" too.
    try:
        fused = stemfuse_hs.fuse(dp, stemfuse_hs.variance_features(eds, quantile=0.5, nan_policy="exclude"), nan_policy=nan_policy)
    except stemfuse_hs.features.NoVaryingChannelError:
        return
    union = bad | eds_bad
    np.testing.assert_array_equal(fused.metadata.Fusion.excluded_positions, union)
    assert fused.data.dtype == np.float32 and np.all(np.isfinite(fused.data)) and np.all(fused.data[union] == 0)
