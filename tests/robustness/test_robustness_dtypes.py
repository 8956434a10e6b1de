"""Robustness: every integer width and float precision gives the same float32 results.

Detectors write uint8 to uint32, dark-subtracted data are signed (with
negative counts) and processed data are float32 or float64. The same
integer values in any of these dtypes must give the same features and the
same fusion, within float32 rounding.
"""

import dask.array as da
import numpy as np
import pytest

import hyperspy.api as hs
import stemfuse_hs

UNSIGNED = ["uint8", "uint16", "uint32", "uint64"]
SIGNED = ["int8", "int16", "int32", "int64"]
FLOATS = ["float16", "float32", "float64"]
ALL = UNSIGNED + SIGNED + FLOATS


def _counts(negative):
    """Two-phase integer-valued data in 0..120 (or -20..100), exact in every dtype above."""
    rng = np.random.default_rng(3)
    patterns = rng.poisson(4.0, size=(6, 8, 12, 12))
    patterns[:, :, 5:7, 5:7] += 60  # direct beam
    patterns[:3, :, 2, 9] += 25  # a reflection of one phase
    patterns[3:, :, 9, 2] += 25  # and of the other
    spectra = rng.poisson(2.0, size=(6, 8, 40))
    spectra[:3, :, 12] += 20
    spectra[3:, :, 30] += 20
    if negative:
        # Dark subtraction leaves counts scattered around zero.
        patterns = patterns - rng.integers(0, 21, size=patterns.shape)
        spectra = spectra - rng.integers(0, 3, size=spectra.shape)
    assert patterns.max() <= 120 and spectra.max() <= 120 and patterns.min() >= -20
    return patterns, spectra


def _signals(patterns, spectra, dtype, lazy=False):
    dp = hs.signals.Signal2D(patterns.astype(dtype))
    eds = hs.signals.Signal1D(spectra.astype(dtype))
    axis = eds.axes_manager.signal_axes[0]
    axis.name, axis.units, axis.scale, axis.offset = "Energy", "keV", 0.1, 0.5
    if lazy:
        dp, eds = dp.as_lazy(), eds.as_lazy()
    return dp, eds


def _results(dp, eds):
    sdt = stemfuse_hs.sdt_features(dp, binning=1, fraction=0.3, beam_centre=(5.5, 5.5), beam_radius=2)
    var = stemfuse_hs.variance_features(eds, quantile=0.8)
    auto = stemfuse_hs.variance_features(eds)
    fused = stemfuse_hs.fuse(sdt, var)
    out = {}
    for name, signal in (("sdt", sdt), ("variance", var), ("auto", auto), ("fused", fused)):
        if signal._lazy:
            assert isinstance(signal.data, da.Array)
            signal = signal.deepcopy()
            signal.compute()
        out[name] = signal
    return out


@pytest.fixture(scope="module")
def reference():
    patterns, spectra = _counts(negative=False)
    return _results(*_signals(patterns, spectra, "float64"))


@pytest.fixture(scope="module")
def signed_reference():
    patterns, spectra = _counts(negative=True)
    return _results(*_signals(patterns, spectra, "float64"))


def _assert_same(results, reference):
    for name, expected in reference.items():
        got = results[name]
        assert got.data.dtype == np.float32, (name, got.data.dtype)
        assert got.data.shape == expected.data.shape, name
        np.testing.assert_allclose(got.data, expected.data, rtol=1e-5, atol=1e-5, err_msg=name)
    for name in ("sdt",):
        np.testing.assert_array_equal(
            results[name].metadata.Features.selected_mask.data, reference[name].metadata.Features.selected_mask.data
        )
        np.testing.assert_allclose(
            results[name].metadata.Features.std_map.data, reference[name].metadata.Features.std_map.data, rtol=1e-5, atol=1e-6
        )
    for name in ("variance", "auto"):
        np.testing.assert_array_equal(
            results[name].metadata.Features.kept_channels.data, reference[name].metadata.Features.kept_channels.data
        )
    np.testing.assert_allclose(results["fused"].metadata.Fusion.weights, reference["fused"].metadata.Fusion.weights, rtol=1e-5)


@pytest.mark.parametrize("dtype", ALL)
def test_every_dtype_gives_the_same_float32_results(reference, dtype):
    patterns, spectra = _counts(negative=False)
    _assert_same(_results(*_signals(patterns, spectra, dtype)), reference)


@pytest.mark.parametrize("dtype", ["uint8", "int16", "float32"])
def test_lazy_inputs_of_every_kind_give_the_same_results(reference, dtype):
    patterns, spectra = _counts(negative=False)
    _assert_same(_results(*_signals(patterns, spectra, dtype, lazy=True)), reference)


@pytest.mark.parametrize("dtype", SIGNED + FLOATS)
def test_negative_counts_in_signed_dtypes(signed_reference, dtype):
    patterns, spectra = _counts(negative=True)
    results = _results(*_signals(patterns, spectra, dtype))
    _assert_same(results, signed_reference)
    # Negative counts count as none: features are log1p of non-negative values.
    for name in ("sdt", "variance"):
        assert np.all(np.isfinite(results[name].data)) and results[name].data.min() >= 0


def test_large_unsigned_values_do_not_wrap():
    """uint32 counts near 4e9 and uint16 saturation stay ordered (no overflow on summing or binning)."""
    rng = np.random.default_rng(0)
    data = rng.integers(0, 1000, size=(4, 5, 8, 8)).astype(np.uint32)
    data[:2, :, 1, 1] = np.iinfo(np.uint32).max  # saturated in half the scan
    features = stemfuse_hs.sdt_features(hs.signals.Signal2D(data), binning=2, fraction=1.0, beam_radius=0)
    assert features.data.dtype == np.float32 and np.all(np.isfinite(features.data))
    column = features.metadata.Features.pixel_indices.tolist().index([0, 0])
    # Saturated positions have far more counts in that bin than the others.
    assert features.data[:2, :, column].min() > features.data[2:, :, column].max()


def test_boolean_and_complex_data_are_refused():
    for dtype in ("bool", "complex64"):
        signal = hs.signals.Signal2D(np.zeros((3, 4, 8, 8), dtype=dtype))
        with pytest.raises(TypeError, match=f"must hold real numbers \\(integer or float\\), got dtype {dtype}"):
            stemfuse_hs.sdt_features(signal)
