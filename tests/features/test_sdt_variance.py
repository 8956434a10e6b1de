"""Feature extraction: standard-deviation thresholding (SDT) of 4D-STEM data and
variance thresholding of spectrum images, at the signal level and in the array core."""

import math
import re

import dask.array as da
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import hyperspy.api as hs

import stemfuse_hs
from stemfuse_hs.features import safe_log, select_top_fraction
from stemfuse_hs.signals.features import FusedSTEMSignal, LazyFusedSTEMSignal

CU_KA, CU_LA = 8.048, 0.9295  # keV (exspy's database)


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------
def exact(message):
    """``pytest.raises(match=...)`` pattern for exactly ``message``."""
    return "^" + re.escape(message) + "$"


def computed(signal):
    """An eager copy of a (lazy) signal; ``compute`` works in place."""
    signal = signal.deepcopy()
    if signal._lazy:
        signal.compute()
    return signal


def axis_dicts(axes):
    return [a.get_axis_dictionary() for a in axes]


def assert_tree_equal(a, b, path="root", rtol=0.0):
    """Recursive equality for metadata/axes dictionaries.

    Arrays are compared by value: exactly, or float arrays to ``rtol``.
    """
    if isinstance(a, dict):
        assert isinstance(b, dict), path
        assert a.keys() == b.keys(), f"{path}: {sorted(a)} != {sorted(b)}"
        for key in a:
            assert_tree_equal(a[key], b[key], f"{path}.{key}", rtol)
    elif isinstance(a, (list, tuple)) and not isinstance(b, np.ndarray):
        assert type(a) is type(b) and len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            assert_tree_equal(x, y, f"{path}[{i}]", rtol)
    elif isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        a, b = np.asarray(a), np.asarray(b)
        assert a.shape == b.shape and a.dtype == b.dtype, path
        if rtol and a.dtype.kind == "f":
            np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol, err_msg=path)
        else:
            assert np.array_equal(a, b, equal_nan=a.dtype.kind == "f"), path
    elif hasattr(a, "as_dictionary"):
        assert_tree_equal(a.as_dictionary(), b.as_dictionary(), path, rtol)
    elif isinstance(a, float) and rtol:
        assert a == pytest.approx(b, rel=rtol, nan_ok=True), path
    else:
        assert a == b or (a != a and b != b), f"{path}: {a!r} != {b!r}"


def snapshot(signal, data=None):
    """What a feature extractor must leave untouched.

    For a lazy signal the dask graph's name is recorded (the data are
    compared by computing them afterwards, against ``data``).
    """
    return {
        "class": type(signal),
        "signal_type": signal.metadata.get_item("Signal.signal_type", ""),
        "lazy": signal._lazy,
        "data": np.array(signal.data, copy=True) if data is None else data,
        "dask_name": signal.data.name if signal._lazy else None,
        "dtype": signal.data.dtype,
        "axes": signal.axes_manager.as_dictionary(),
        "metadata": signal.metadata.as_dictionary(),
        "original_metadata": signal.original_metadata.as_dictionary(),
    }


def assert_unchanged(signal, before):
    assert type(signal) is before["class"]
    assert signal.metadata.get_item("Signal.signal_type", "") == before["signal_type"]
    assert signal._lazy is before["lazy"]
    assert signal.data.dtype == before["dtype"]
    if before["lazy"]:
        assert isinstance(signal.data, da.Array)
        assert signal.data.name == before["dask_name"]
        assert np.array_equal(signal.data.compute(), before["data"])
    else:
        assert np.array_equal(signal.data, before["data"])
    assert_tree_equal(signal.axes_manager.as_dictionary(), before["axes"], "axes")
    assert_tree_equal(signal.metadata.as_dictionary(), before["metadata"], "metadata")
    assert_tree_equal(signal.original_metadata.as_dictionary(), before["original_metadata"], "original_metadata")


def diffraction(data, lazy=False, nav_chunk=None):
    """A plain Signal2D of ``data``; lazy ones chunked ``nav_chunk`` rows at a time."""
    s = hs.signals.Signal2D(data)
    if lazy:
        s = s.as_lazy()
        if nav_chunk:
            s.data = s.data.rechunk((nav_chunk,) + (-1,) * (s.data.ndim - 1))
    return s


def spectra(data, scale_offset=None, lazy=False, nav_chunk=None):
    """A spectrum image with an "Energy" axis in keV, of ``(scale, offset)`` if given."""
    s = hs.signals.Signal1D(data)
    axis = s.axes_manager.signal_axes[0]
    axis.name, axis.units = "Energy", "keV"
    if scale_offset is not None:
        axis.scale, axis.offset = scale_offset
    if lazy:
        s = s.as_lazy()
        if nav_chunk:
            s.data = s.data.rechunk((nav_chunk,) + (-1,) * (s.data.ndim - 1))
    return s


def true_beam_centre(scan):
    """Mean direct-beam position over the scan as (row, column), unbinned pixels."""
    x, y = np.asarray(scan.beam_center, dtype=np.float64).reshape(-1, 2).mean(axis=0)
    return np.array([y, x])


# ---------------------------------------------------------------------------
# SDT: shapes, dtype, detector axes
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("binning", [1, 2, 4])
@pytest.mark.parametrize("detector", [(32, 32), (30, 29)], ids=["32x32", "30x29"])
def test_sdt_shapes_dtype_and_detector_axes(four_phases, binning, detector):
    h, w = detector
    dp = four_phases.dp.isig[:w, :h]  # HyperSpy index order is (kx, ky)
    assert dp.data.shape[-2:] == (h, w)
    fraction = 0.3
    features = stemfuse_hs.sdt_features(dp, binning=binning, fraction=fraction)
    md = features.metadata.Features
    binned = (h // binning, w // binning)

    assert isinstance(features, FusedSTEMSignal) and not features._lazy
    assert features.data.dtype == np.float32
    n = md.parameters.n_features
    assert features.data.shape == (32, 48, n)
    eligible = int((md.beam_mask.data == 0).sum())
    assert n == math.ceil(fraction * eligible) == int(md.selected_mask.data.sum())
    assert md.pixel_indices.shape == (n, 2)
    assert np.all(md.selected_mask.data[tuple(md.pixel_indices.T)] == 1)

    # Features axis: dimensionless index.
    feature_axis = features.axes_manager.signal_axes[0]
    assert feature_axis.name == "feature" and feature_axis.size == n

    # std_map, mean_pattern, beam_mask and selected_mask: Signal2D on the binned detector.
    source_axes = {a.name: a for a in dp.axes_manager.signal_axes}
    for name in ("std_map", "mean_pattern", "beam_mask", "selected_mask"):
        image = md[name]
        assert isinstance(image, hs.signals.Signal2D), name
        assert image.axes_manager.navigation_dimension == 0
        assert image.data.shape == binned, name
        for axis in image.axes_manager.signal_axes:
            src = source_axes[axis.name]
            assert axis.units == src.units == "1/nm"
            assert axis.scale == pytest.approx(src.scale * binning)
            # The first binned pixel sits at the centre of the pixels it sums.
            assert axis.offset == pytest.approx(src.axis[:binning].mean())
            assert axis.size == (binned[0] if axis.name == "ky" else binned[1])
        assert [a.name for a in image.axes_manager.signal_axes] == ["kx", "ky"]
        image.plot()
    assert md.std_map.data.dtype == np.float32
    assert set(np.unique(md.beam_mask.data)) <= {0, 1}
    assert not np.any(md.beam_mask.data & md.selected_mask.data)


def test_sdt_binning_larger_than_detector_is_refused():
    s = diffraction(np.ones((2, 3, 4, 6)))
    with pytest.raises(ValueError, match=exact("binning=5 is larger than the detector (4 x 6 pixels).")):
        stemfuse_hs.sdt_features(s, binning=5)


def test_sdt_std_map_log_versus_linear(four_phases):
    dp = four_phases.dp.inav[:24, :16]
    kwargs = dict(binning=2, normalize=None, beam_centre=(14.0, 14.0), beam_radius=4.0, fraction=0.3)
    log = stemfuse_hs.sdt_features(dp, std_scale="log", **kwargs)
    linear = stemfuse_hs.sdt_features(dp, std_scale="linear", **kwargs)

    binned = dp.data.astype(np.float64).reshape(16, 24, 16, 2, 16, 2).sum(axis=(3, 5))
    np.testing.assert_allclose(log.metadata.Features.std_map.data, np.log1p(binned).std(axis=(0, 1)), rtol=1e-4)
    np.testing.assert_allclose(linear.metadata.Features.std_map.data, binned.std(axis=(0, 1)), rtol=1e-4)
    assert log.metadata.Features.parameters.std_scale == "log"
    assert linear.metadata.Features.parameters.std_scale == "linear"
    # Different scores pick different pixels; the features are log intensities either way.
    assert not np.array_equal(log.metadata.Features.selected_mask.data, linear.metadata.Features.selected_mask.data)
    for result in (log, linear):
        idx = result.metadata.Features.pixel_indices
        np.testing.assert_allclose(result.data, np.log1p(binned[:, :, idx[:, 0], idx[:, 1]]), rtol=1e-5)


# ---------------------------------------------------------------------------
# SDT: the direct beam
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("binning", [1, 2, 4])
def test_sdt_finds_the_off_centre_beam_of_the_synthetic_scans(scan_cache, scenario, binning):
    scan = scan_cache(scenario)
    truth = true_beam_centre(scan)
    h, w = scan.dp.data.shape[-2:]
    # The generator puts the beam 3-5 % of the detector off its centre.
    assert np.abs(truth - [(h - 1) / 2, (w - 1) / 2]).min() > 0.02 * w
    features = stemfuse_hs.sdt_features(scan.dp, binning=binning)
    params = features.metadata.Features.parameters
    assert params.beam_centre_found and params.beam_radius_found
    found = np.array(params.beam_centre)
    # Within half a binned pixel (plus the beam's small descan drift) of the truth.
    np.testing.assert_array_less(np.abs(found - truth), 0.25 + binning / 2)
    # The truth lies inside the excluded disk, and the disk is only a few pixels wide.
    assert np.hypot(*(found - truth)) < params.beam_radius < w / 4
    beam = features.metadata.Features.beam_mask.data.astype(bool)
    row, col = np.round((truth - (binning - 1) / 2) / binning).astype(int)
    assert beam[row, col]


@pytest.mark.parametrize("binning", [1, 2, 4])
def test_sdt_found_beam_centre_is_in_unbinned_pixels(binning):
    """A square beam over unbinned rows 8-11 and columns 16-19 is centred at (9.5, 17.5)."""
    data = np.ones((3, 4, 32, 32), dtype=np.float32)
    data[..., 8:12, 16:20] = 100.0
    data[:, :, 25, 3] = np.arange(12).reshape(3, 4)  # something varying outside the beam
    params = stemfuse_hs.sdt_features(diffraction(data), binning=binning).metadata.Features.parameters
    np.testing.assert_allclose(params.beam_centre, [9.5, 17.5], atol=1e-6)


@pytest.mark.parametrize("binning", [1, 2, 4])
def test_sdt_given_beam_disk_is_drawn_in_unbinned_coordinates(binning):
    """The excluded disk holds the binned pixels whose centres lie within the radius."""
    data = np.random.default_rng(0).poisson(3.0, size=(3, 4, 32, 32))
    centre, radius = (15.5, 15.5), 6.0  # the detector's centre
    features = stemfuse_hs.sdt_features(diffraction(data), binning=binning, beam_centre=centre, beam_radius=radius)
    n = 32 // binning
    pixel_centres = binning * np.arange(n) + (binning - 1) / 2
    expected = np.hypot(*np.meshgrid(pixel_centres - centre[0], pixel_centres - centre[1], indexing="ij")) <= radius
    beam = features.metadata.Features.beam_mask.data.astype(bool)
    np.testing.assert_array_equal(beam, expected)
    # A disk centred on the detector is symmetric.
    np.testing.assert_array_equal(beam, beam[::-1, :])
    np.testing.assert_array_equal(beam, beam[:, ::-1])


@pytest.mark.parametrize("binning", [1, 2, 4])
def test_sdt_beam_can_be_given_and_is_recorded(four_phases, binning):
    centre, radius = (20.0, 9.0), 5.0
    features = stemfuse_hs.sdt_features(four_phases.dp, binning=binning, beam_centre=centre, beam_radius=radius)
    md = features.metadata.Features
    assert md.parameters.beam_centre == [20.0, 9.0]
    assert md.parameters.beam_radius == 5.0
    assert md.parameters.beam_centre_found is False
    assert md.parameters.beam_radius_found is False
    beam = md.beam_mask.data.astype(bool)
    # Far from the beam found automatically (about (14, 14)): the disk is where it was asked to be.
    rows, cols = np.nonzero(beam)
    assert beam.sum() > 0
    assert np.abs(rows * binning + (binning - 1) / 2 - centre[0]).max() <= radius + binning
    assert np.abs(cols * binning + (binning - 1) / 2 - centre[1]).max() <= radius + binning
    assert not np.any(beam & md.selected_mask.data.astype(bool))


def test_sdt_beam_radius_zero_excludes_nothing(four_phases):
    features = stemfuse_hs.sdt_features(four_phases.dp, binning=2, beam_radius=0, fraction=0.5)
    md = features.metadata.Features
    assert md.beam_mask.data.sum() == 0
    assert md.parameters.n_features == 128  # half of 16 x 16


# ---------------------------------------------------------------------------
# SDT: exactly the requested number of pixels
# ---------------------------------------------------------------------------
def _tied_blocks(n_positions=12):
    """8 x 8 patterns whose pixel standard deviations take only four values (16 each)."""
    profile = np.random.default_rng(1).poisson(20.0, size=n_positions).astype(np.float32) + 1.0
    amplitude = np.repeat(np.repeat(np.array([[4.0, 3.0], [2.0, 1.0]], dtype=np.float32), 4, 0), 4, 1)
    return (profile[:, None, None] * amplitude).reshape(3, 4, 8, 8)


@pytest.mark.parametrize("lazy", [False, True], ids=["eager", "lazy"])
@pytest.mark.parametrize("std_scale", ["log", "linear"])
def test_sdt_fraction_selects_exact_count_despite_ties(lazy, std_scale):
    data = _tied_blocks()
    features = stemfuse_hs.sdt_features(
        diffraction(data, lazy=lazy, nav_chunk=1), binning=1, fraction=0.3, beam_radius=0,
        std_scale=std_scale, normalize=None,
    )
    md = features.metadata.Features
    std_map = md.std_map.data
    assert len(np.unique(std_map)) == 4  # the four blocks tie internally
    n_keep = math.ceil(0.3 * 64)  # 20: the 16 strongest pixels and 4 of the next block
    assert n_keep == 20
    selected = md.selected_mask.data.astype(bool)
    assert selected.sum() == n_keep == md.parameters.n_features == features.data.shape[-1]
    # What np.isin on the sorted values (the reference notebook) would have kept: 32.
    kept_values = np.sort(std_map.ravel())[::-1][:n_keep]
    assert np.isin(std_map, kept_values).sum() == 32
    # The strongest block whole, then the tied block in pixel order (a stable sort).
    assert selected[:4, :4].all()
    assert np.flatnonzero(selected[:4, 4:].ravel()).tolist() == [0, 1, 2, 3]
    assert not selected[4:].any()


def test_select_top_fraction_with_all_scores_equal():
    score = np.full((5, 7), 2.5)
    eligible = np.ones((5, 7), bool)
    eligible[0] = False
    for fraction in (0.01, 0.25, 0.5, 0.99, 1.0):
        selected = select_top_fraction(score, eligible, fraction)
        assert selected.sum() == math.ceil(fraction * 28)
        assert not (selected & ~eligible).any()


@pytest.mark.parametrize("fraction, shape, n_keep", [(0.07, (10, 10), 7), (0.14, (5, 10), 7)])
def test_sdt_decimal_fraction_is_not_inflated_by_rounding(fraction, shape, n_keep):
    data = np.random.default_rng(2).poisson(4.0, size=(2, 3) + shape)
    features = stemfuse_hs.sdt_features(diffraction(data), binning=1, beam_radius=0, fraction=fraction)
    assert features.metadata.Features.parameters.n_features == n_keep


# ---------------------------------------------------------------------------
# SDT: safe log
# ---------------------------------------------------------------------------
def test_safe_log_values():
    x = np.array([-3.0, -0.5, 0.0, np.e - 1, 5.0])
    out = safe_log(x)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out[:3], [0.0, 0.0, 0.0])
    np.testing.assert_allclose(out[3:], [1.0, np.log(6.0)], rtol=1e-6)
    lazy = safe_log(da.from_array(x.astype(np.float32), chunks=2))
    assert lazy.dtype == np.float32 and lazy.compute().dtype == np.float32
    np.testing.assert_allclose(lazy.compute(), out, rtol=1e-6)
    assert np.all(lazy.compute()[:3] == 0.0)


@pytest.mark.parametrize("dtype", [np.float64, np.int64])
def test_safe_log_lazy_dtype_matches_its_declaration(dtype):
    lazy = safe_log(da.from_array(np.array([-1, 0, 3], dtype=dtype), chunks=2))
    assert lazy.dtype == np.float32
    assert lazy.compute().dtype == np.float32


@pytest.mark.parametrize("lazy", [False, True], ids=["eager", "lazy"])
def test_sdt_safe_log_on_zeros_and_negative_counts(lazy):
    rng = np.random.default_rng(3)
    data = rng.integers(-5, 6, size=(3, 4, 6, 6)).astype(np.int16)
    data[0, 0] = 0
    data[1, 2, :, 3] = -7
    features = stemfuse_hs.sdt_features(
        diffraction(data, lazy=lazy, nav_chunk=1), binning=1, fraction=1.0, beam_radius=0, normalize=None
    )
    values = np.asarray(computed(features).data)
    assert values.dtype == np.float32 and np.all(np.isfinite(values))
    # All pixels selected, in pixel order.
    assert features.metadata.Features.pixel_indices.tolist() == [[r, c] for r in range(6) for c in range(6)]
    expected = np.log1p(np.clip(data.astype(np.float32), 0, None)).reshape(3, 4, 36)
    np.testing.assert_allclose(values, expected, rtol=1e-6)
    assert np.all(values.reshape(data.shape)[data <= 0] == 0.0)


# ---------------------------------------------------------------------------
# SDT: axes and parameters
# ---------------------------------------------------------------------------
def _relabel_navigation(signal):
    names = ["scan_x", "scan_y", "frame"]
    units = ["µm", "Å", "s"]
    for i, axis in enumerate(signal.axes_manager.navigation_axes):
        axis.name, axis.units = names[i], units[i]
        axis.scale, axis.offset = 0.25 * (i + 1), -3.5 + 7 * i
    return signal


@pytest.mark.parametrize("lazy", [False, True], ids=["eager", "lazy"])
@pytest.mark.parametrize("nav_shape", [(7,), (3, 5), (2, 3, 4)], ids=["line", "map", "map-series"])
def test_navigation_axes_are_the_inputs(lazy, nav_shape):
    rng = np.random.default_rng(4)
    dp = _relabel_navigation(diffraction(rng.poisson(5.0, size=nav_shape + (8, 8)).astype(np.uint16), lazy=lazy))
    eds = _relabel_navigation(spectra(rng.poisson(3.0, size=nav_shape + (32,)), (0.05, 0.2), lazy=lazy))
    for source, features in (
        (dp, stemfuse_hs.sdt_features(dp, binning=2, beam_radius=0)),
        (eds, stemfuse_hs.variance_features(eds, threshold=0.0)),
    ):
        assert features._lazy is lazy
        assert features.data.shape[:-1] == nav_shape
        assert axis_dicts(features.axes_manager.navigation_axes) == axis_dicts(source.axes_manager.navigation_axes)


def test_sdt_parameters_are_recorded(four_phases):
    features = stemfuse_hs.sdt_features(
        four_phases.dp, binning=4, fraction=0.25, std_scale="linear", normalize=None,
        beam_centre=(13.0, 14.0), beam_radius=3.0,
    )
    md = features.metadata.Features
    assert md.extractor == "sdt"
    assert md.source_title == four_phases.dp.metadata.General.title
    assert features.metadata.General.title == f"SDT features of {four_phases.dp.metadata.General.title}"
    assert md.parameters.as_dictionary() == {
        "binning": 4,
        "fraction": 0.25,
        "std_scale": "linear",
        "normalize": "none",
        "beam_centre": [13.0, 14.0],
        "beam_radius": 3.0,
        "beam_centre_found": False,
        "beam_radius_found": False,
        "n_features": features.data.shape[-1],
        "nan_policy": "raise",
    }
    defaults = stemfuse_hs.sdt_features(four_phases.dp).metadata.Features.parameters
    assert (defaults.binning, defaults.fraction, defaults.std_scale, defaults.normalize) == (2, 0.4, "log", "total")


# ---------------------------------------------------------------------------
# Variance thresholding
# ---------------------------------------------------------------------------
def _manual_variance(eds):
    data = np.asarray(eds.data, dtype=np.float64).reshape(-1, eds.data.shape[-1])
    return data.var(axis=0), data.mean(axis=0), data.shape[0]


def _assert_kept_means_above_threshold(md):
    """``kept`` is exactly "variance above threshold, not excluded" (up to float32 ties)."""
    kept = md.kept_channels.data.astype(bool)
    excluded = md.excluded_channels.data.astype(bool)
    variance, threshold = md.variance.data.astype(np.float64), md.threshold.data.astype(np.float64)
    above = (variance > threshold) & ~excluded
    tie = np.isclose(variance, threshold, rtol=1e-6, atol=0)
    np.testing.assert_array_equal(kept[~tie], above[~tie])
    assert np.all(variance[kept] >= threshold[kept])
    assert not np.any(kept & excluded)


def test_variance_threshold_value_rule(scan_cache):
    eds = scan_cache("chemistry_only").eds
    variance, _, _ = _manual_variance(eds)
    threshold = float(np.quantile(variance, 0.9)) * 1.0001
    features = stemfuse_hs.variance_features(eds, threshold=threshold, normalize=None)
    md = features.metadata.Features
    kept = md.kept_channels.data.astype(bool)
    np.testing.assert_array_equal(kept, variance > threshold)
    assert kept.sum() == features.data.shape[-1] == md.parameters.n_features
    np.testing.assert_allclose(md.variance.data, variance, rtol=1e-5)
    np.testing.assert_allclose(md.threshold.data, threshold, rtol=1e-6)
    _assert_kept_means_above_threshold(md)
    assert md.parameters.threshold_rule == "value"
    assert md.parameters.threshold == pytest.approx(threshold)
    assert np.isnan(md.parameters.quantile)


@pytest.mark.parametrize("quantile", [0.5, 0.95])
def test_variance_threshold_quantile_rule(scan_cache, quantile):
    eds = scan_cache("four_phases").eds
    variance, _, _ = _manual_variance(eds)
    limit = np.quantile(variance, quantile)
    features = stemfuse_hs.variance_features(eds, quantile=quantile, normalize=None)
    md = features.metadata.Features
    kept = md.kept_channels.data.astype(bool)
    np.testing.assert_array_equal(kept, variance > limit)
    assert kept.sum() <= math.ceil((1 - quantile) * variance.size) + 1
    np.testing.assert_allclose(md.threshold.data, limit, rtol=1e-5)
    _assert_kept_means_above_threshold(md)
    assert md.parameters.threshold_rule == "quantile"
    assert md.parameters.quantile == quantile


def _counts_with_thickness(contrast, seed=7):
    """Poisson spectra (24 x 32 positions, 0.02 keV channels) of a constant composition
    under a thickness that varies 0.5-1.5; ``contrast`` doubles the 7.48 keV line in
    half of the scan."""
    rng = np.random.default_rng(seed)
    energies = np.arange(512) * 0.02
    mean = (0.05 + 2.0 * np.exp(-0.5 * ((energies - 6.4) / 0.06) ** 2)
            + 1.5 * np.exp(-0.5 * ((energies - 7.48) / 0.065) ** 2))
    expected = rng.uniform(0.5, 1.5, size=(24, 32, 1)) * mean
    if contrast:
        expected[:12] *= np.where(np.abs(energies - 7.48) < 0.2, 2.0, 1.0)
    return rng.poisson(expected).astype(np.uint16), energies


def test_variance_threshold_automatic_rule_keeps_real_contrast_only():
    data, energies = _counts_with_thickness(contrast=False)
    s = spectra(data, (0.02, 0.0))
    # Thickness alone, normalised away, leaves Poisson noise only: nothing to keep.
    with pytest.raises(ValueError, match="^" + re.escape("No channel has a variance above the threshold (poisson rule, ")):
        stemfuse_hs.variance_features(s)
    data, energies = _counts_with_thickness(contrast=True)
    features = stemfuse_hs.variance_features(spectra(data, (0.02, 0.0)))
    md = features.metadata.Features
    assert md.parameters.threshold_rule == "poisson"
    assert np.isnan(md.parameters.threshold) and np.isnan(md.parameters.quantile)
    _assert_kept_means_above_threshold(md)
    kept_energies = features.axes_manager.signal_axes[0].axis
    assert np.any(np.abs(kept_energies - 7.48) < 0.05)
    assert np.all(np.abs(kept_energies - 7.48) < 0.5), kept_energies


@pytest.mark.parametrize("lazy", [False, True], ids=["eager", "lazy"])
def test_variance_threshold_automatic_rule_on_synthetic_chemistry(scan_cache, lazy):
    eds = scan_cache("chemistry_only", lazy=lazy).eds
    features = stemfuse_hs.variance_features(eds, exclude_lines=["Cu_Ka", "Cu_Kb", "Cu_La"])
    assert features._lazy is lazy
    md = features.metadata.Features
    _assert_kept_means_above_threshold(md)
    kept = md.kept_channels.data.astype(bool)
    energies = eds.axes_manager.signal_axes[0].axis
    # Mn-rich vs Ni-rich: the Mn Ka line (5.899 keV) differs by half between the phases.
    assert kept[np.abs(energies - 5.899) < 0.05].any()
    assert 0 < kept.sum() < 0.25 * kept.size


def test_variance_features_are_log1p_of_kept_counts(scan_cache):
    eds = scan_cache("four_phases").eds
    features = stemfuse_hs.variance_features(eds, quantile=0.8, normalize=None)
    kept = features.metadata.Features.kept_channels.data.astype(bool)
    assert features.data.dtype == np.float32
    np.testing.assert_allclose(features.data, np.log1p(eds.data[..., kept].astype(np.float64)), rtol=1e-6)


def test_variance_feature_axis_holds_kept_energies(scan_cache):
    eds = scan_cache("precipitates").eds
    features = stemfuse_hs.variance_features(eds, quantile=0.7)
    kept = features.metadata.Features.kept_channels.data.astype(bool)
    axis = features.axes_manager.signal_axes[0]
    assert not axis.is_uniform
    assert axis.units == "keV"
    assert axis.name == "Energy"
    np.testing.assert_allclose(axis.axis, eds.axes_manager.signal_axes[0].axis[kept])
    assert axis.size == features.data.shape[-1] == kept.sum()
    assert features.metadata.General.title == f"Variance features of {eds.metadata.General.title}"


def test_variance_metadata_spectra_have_the_energy_axis(scan_cache):
    eds = scan_cache("four_phases").eds
    features = stemfuse_hs.variance_features(eds, exclude_windows=[(7.9, 8.2)])
    md = features.metadata.Features
    assert md.extractor == "variance"
    energy = eds.axes_manager.signal_axes[0]
    for name in ("variance", "threshold", "mean", "kept_channels", "excluded_channels"):
        spectrum = md[name]
        assert isinstance(spectrum, hs.signals.Signal1D), name
        assert spectrum.axes_manager.navigation_dimension == 0
        axis = spectrum.axes_manager.signal_axes[0]
        assert (axis.name, axis.units, axis.size) == ("Energy", "keV", 512)
        assert axis.scale == energy.scale and axis.offset == energy.offset
        spectrum.plot()
    assert md.excluded_channels.data.sum() > 0
    assert not np.any(md.kept_channels.data & md.excluded_channels.data)


def test_variance_exclude_windows_and_lines(scan_cache):
    eds = scan_cache("four_phases").eds
    energies = eds.axes_manager.signal_axes[0].axis
    near_ka = np.abs(energies - CU_KA) <= 0.1
    near_la = np.abs(energies - CU_LA) <= 0.05
    # threshold=0 keeps every channel that varies, the Cu lines included.
    everything = stemfuse_hs.variance_features(eds, threshold=0.0).metadata.Features
    assert everything.kept_channels.data[near_ka].all() and everything.kept_channels.data[near_la].all()

    by_window = stemfuse_hs.variance_features(eds, threshold=0.0, exclude_windows=[(7.9, 8.2), (0.86, 1.0)])
    excluded = by_window.metadata.Features.excluded_channels.data.astype(bool)
    np.testing.assert_array_equal(excluded, ((energies >= 7.9) & (energies <= 8.2)) | ((energies >= 0.86) & (energies <= 1.0)))
    axis = by_window.axes_manager.signal_axes[0].axis
    assert not np.any((axis >= 7.9) & (axis <= 8.2)) and not np.any((axis >= 0.86) & (axis <= 1.0))
    assert by_window.metadata.Features.parameters.exclude_windows.tolist() == [[7.9, 8.2], [0.86, 1.0]]

    by_line = stemfuse_hs.variance_features(eds, threshold=0.0, exclude_lines=["Cu_Ka", "Cu_La"])
    md = by_line.metadata.Features
    excluded = md.excluded_channels.data.astype(bool)
    kept = md.kept_channels.data.astype(bool)
    assert excluded[near_ka].all() and excluded[near_la].all()
    assert not kept[near_ka].any() and not kept[near_la].any()
    # Only around those two lines (one FWHM, 70-150 eV, either side).
    assert not excluded[(np.abs(energies - CU_KA) > 0.2) & (np.abs(energies - CU_LA) > 0.12)].any()
    assert md.parameters.exclude_lines == ["Cu_Ka", "Cu_La"]
    feature_energies = by_line.axes_manager.signal_axes[0].axis
    assert np.abs(feature_energies - CU_KA).min() > 0.1 and np.abs(feature_energies - CU_LA).min() > 0.05
    # A single line name is accepted as a string.
    single = stemfuse_hs.variance_features(eds, threshold=0.0, exclude_lines="Cu_Ka").metadata.Features
    assert single.excluded_channels.data[near_ka].all() and not single.excluded_channels.data[near_la].any()


# ---------------------------------------------------------------------------
# Lazy and eager; inputs untouched
# ---------------------------------------------------------------------------
EXTRACTORS = {
    "sdt": (lambda scan: scan.dp, lambda s: stemfuse_hs.sdt_features(s, fraction=0.3)),
    "variance": (
        lambda scan: scan.eds,
        lambda s: stemfuse_hs.variance_features(s, quantile=0.8, exclude_lines=["Cu_Ka", "Cu_La"]),
    ),
}


@pytest.mark.parametrize("extractor", sorted(EXTRACTORS))
def test_lazy_equals_eager_and_inputs_are_untouched(scan_cache, scenario, extractor):
    pick, extract = EXTRACTORS[extractor]
    eager_input = pick(scan_cache(scenario))
    lazy_input = pick(scan_cache(scenario, lazy=True))
    before_eager = snapshot(eager_input)
    # The synthetic lazy data are the eager data, bit for bit.
    before_lazy = snapshot(lazy_input, data=before_eager["data"])

    eager = extract(eager_input)
    lazy = extract(lazy_input)

    assert type(eager) is FusedSTEMSignal and isinstance(eager.data, np.ndarray)
    assert type(lazy) is LazyFusedSTEMSignal and isinstance(lazy.data, da.Array)
    assert lazy.data.dtype == eager.data.dtype == np.float32
    lazy_values = lazy.data.compute()
    assert lazy_values.dtype == np.float32
    np.testing.assert_allclose(lazy_values, eager.data, rtol=1e-5, atol=1e-6)
    assert axis_dicts(lazy.axes_manager.navigation_axes) == axis_dicts(eager_input.axes_manager.navigation_axes)
    assert_tree_equal(
        lazy.axes_manager.signal_axes[0].get_axis_dictionary(),
        eager.axes_manager.signal_axes[0].get_axis_dictionary(),
        "feature axis",
    )
    # Same pixels / channels, same maps and parameters (float32 tolerance).
    assert_tree_equal(
        lazy.metadata.Features.as_dictionary(), eager.metadata.Features.as_dictionary(), "Features", rtol=1e-5
    )

    assert_unchanged(eager_input, before_eager)
    assert_unchanged(lazy_input, before_lazy)


@pytest.mark.parametrize("lazy", [False, True], ids=["eager", "lazy"])
def test_inputs_untouched_with_every_option(fresh_scan, lazy):
    scan = fresh_scan("four_phases", lazy=lazy)
    dp, eds = scan.dp.inav[:20, :10], scan.eds.inav[:20, :10]
    dp_before = snapshot(dp, data=np.array(dp.data) if not lazy else dp.data.compute())
    eds_before = snapshot(eds, data=np.array(eds.data) if not lazy else eds.data.compute())
    for kwargs in (
        dict(binning=1, normalize=None, std_scale="linear"),
        dict(binning=4, beam_centre=(10.0, 12.0), beam_radius=2.0, fraction=1.0),
    ):
        result = stemfuse_hs.sdt_features(dp, **kwargs)
        computed(result)
    for kwargs in (
        dict(threshold=0.5, exclude_windows=[(7.9, 8.2)], normalize=None),
        dict(quantile=0.5, exclude_lines=["Cu_Ka"]),
    ):
        computed(stemfuse_hs.variance_features(eds, **kwargs))
    assert_unchanged(dp, dp_before)
    assert_unchanged(eds, eds_before)


# ---------------------------------------------------------------------------
# Per-position normalisation
# ---------------------------------------------------------------------------
def _common_features(a, b, position, key):
    """Values at ``position`` of the features both results share (same pixel or channel)."""
    if key == "pixel_indices":
        ia = [tuple(p) for p in a.metadata.Features.pixel_indices]
        ib = [tuple(p) for p in b.metadata.Features.pixel_indices]
    else:
        ia = list(np.flatnonzero(a.metadata.Features.kept_channels.data))
        ib = list(np.flatnonzero(b.metadata.Features.kept_channels.data))
    common = sorted(set(ia) & set(ib))
    assert len(common) > 0.8 * len(ia)
    va = a.data[position][[ia.index(p) for p in common]]
    vb = b.data[position][[ib.index(p) for p in common]]
    return va, vb


def _mean_shift_bound(data, position, signal_ndim):
    """Largest log change "total" normalisation may show when ``position`` is tripled:
    the scan's mean total (the common target) grows by 2 * total[position] / N."""
    totals = data.sum(axis=tuple(range(-signal_ndim, 0)), dtype=np.float64)
    return np.log1p(2 * totals[position] / totals.sum()) + 1e-5


def test_sdt_total_normalisation_removes_a_positions_scale(four_phases_lazy):
    clean = four_phases_lazy.expected_dp(slice(0, 16))  # noiseless, 16 x 48 positions
    brighter = clean.copy()
    brighter[5, 7] *= 3.0
    kwargs = dict(binning=2, beam_centre=(14.0, 14.0), beam_radius=4.0, fraction=0.4)
    a = stemfuse_hs.sdt_features(diffraction(clean), normalize="total", **kwargs)
    b = stemfuse_hs.sdt_features(diffraction(brighter), normalize="total", **kwargs)
    np.testing.assert_array_equal(a.metadata.Features.selected_mask.data, b.metadata.Features.selected_mask.data)
    bound = _mean_shift_bound(clean, (5, 7), 2)
    assert bound < 0.005
    np.testing.assert_array_less(np.abs(b.data[5, 7] - a.data[5, 7]), bound)
    # Other positions move only by the same common factor.
    np.testing.assert_array_less(np.abs(b.data[6, 7] - a.data[6, 7]), bound)

    a = stemfuse_hs.sdt_features(diffraction(clean), normalize=None, **kwargs)
    b = stemfuse_hs.sdt_features(diffraction(brighter), normalize=None, **kwargs)
    va, vb = _common_features(a, b, (5, 7), "pixel_indices")
    # Without normalisation every log intensity moves, the bright ones by about log(3).
    assert np.all(vb > va)
    assert np.max(vb - va) == pytest.approx(np.log(3), abs=0.05)


def test_variance_total_normalisation_removes_a_positions_scale(four_phases_lazy):
    clean = four_phases_lazy.expected_eds(slice(0, 16))  # noiseless spectra
    brighter = clean.copy()
    brighter[2, 30] *= 3.0
    a = stemfuse_hs.variance_features(spectra(clean, (0.02, 0.0)), quantile=0.7, normalize="total")
    b = stemfuse_hs.variance_features(spectra(brighter, (0.02, 0.0)), quantile=0.7, normalize="total")
    va, vb = _common_features(a, b, (2, 30), "kept_channels")
    bound = _mean_shift_bound(clean, (2, 30), 1)
    assert bound < 0.005
    np.testing.assert_array_less(np.abs(vb - va), bound)

    a = stemfuse_hs.variance_features(spectra(clean, (0.02, 0.0)), quantile=0.7, normalize=None)
    b = stemfuse_hs.variance_features(spectra(brighter, (0.02, 0.0)), quantile=0.7, normalize=None)
    va, vb = _common_features(a, b, (2, 30), "kept_channels")
    assert np.all(vb > va)
    assert np.max(vb - va) > 0.5


def test_total_normalisation_formula():
    """Each position is scaled to the scan's mean total; empty positions stay zero."""
    data = np.zeros((2, 3, 4), dtype=np.float32)
    data[0, 0] = [1, 1, 1, 1]
    data[0, 1] = [0, 2, 2, 0]
    data[1, 2] = [8, 0, 0, 0]
    s = spectra(data, (1.0, 0.0))
    features = stemfuse_hs.variance_features(s, threshold=0.0, normalize="total")
    totals = data.sum(-1)
    target = totals.mean()
    scale = np.where(totals > 0, target / np.where(totals > 0, totals, 1), 1.0)
    kept = features.metadata.Features.kept_channels.data.astype(bool)
    np.testing.assert_allclose(features.data, np.log1p(data * scale[..., None])[..., kept], rtol=1e-5)
    assert np.all(features.data[1, 0] == 0)


# ---------------------------------------------------------------------------
# Bad input: exact messages
# ---------------------------------------------------------------------------
def test_wrong_signal_dimension(four_phases):
    with pytest.raises(ValueError, match=exact(
        "sdt_features expects 4D-STEM data (signal dimension 2), got a signal with signal dimension 1 ((512,))."
    )):
        stemfuse_hs.sdt_features(four_phases.eds)
    with pytest.raises(ValueError, match=exact(
        "variance_features expects a spectrum image (signal dimension 1), got a signal with signal "
        "dimension 2 ((32, 32))."
    )):
        stemfuse_hs.variance_features(four_phases.dp)
    with pytest.raises(TypeError, match=exact("sdt_features expects a HyperSpy signal, got ndarray.")):
        stemfuse_hs.sdt_features(np.zeros((2, 3, 8, 8)))
    with pytest.raises(TypeError, match=exact("variance_features expects a HyperSpy signal, got ndarray.")):
        stemfuse_hs.variance_features(np.zeros((2, 3, 8)))


def test_no_navigation_axes():
    with pytest.raises(ValueError, match=exact(
        "sdt_features needs a scan: the signal has no navigation axes (a single pattern or spectrum)."
    )):
        stemfuse_hs.sdt_features(hs.signals.Signal2D(np.ones((8, 8))))
    with pytest.raises(ValueError, match=exact(
        "variance_features needs a scan: the signal has no navigation axes (a single pattern or spectrum)."
    )):
        stemfuse_hs.variance_features(hs.signals.Signal1D(np.ones(16)))


@pytest.mark.parametrize(
    "fraction, error, message",
    [
        (0, ValueError, "fraction must be in (0, 1], got 0."),
        (0.0, ValueError, "fraction must be in (0, 1], got 0.0."),
        (1.5, ValueError, "fraction must be in (0, 1], got 1.5."),
        (-0.2, ValueError, "fraction must be in (0, 1], got -0.2."),
        (float("nan"), ValueError, "fraction must be in (0, 1], got nan."),
        ("a", TypeError, "fraction must be a real number in (0, 1], got 'a'."),
        (True, TypeError, "fraction must be a real number in (0, 1], got True."),
    ],
)
def test_bad_fraction(fraction, error, message):
    s = diffraction(np.ones((2, 3, 8, 8)))
    with pytest.raises(error, match=exact(message)):
        stemfuse_hs.sdt_features(s, fraction=fraction)


def test_fraction_one_keeps_every_pixel_outside_the_beam(four_phases):
    md = stemfuse_hs.sdt_features(four_phases.dp, fraction=1).metadata.Features
    np.testing.assert_array_equal(md.selected_mask.data, 1 - md.beam_mask.data)




@pytest.mark.parametrize(
    "binning",
    [1, 2, 4],
)
def test_beam_radius_leaving_no_pixel(binning):
    s = diffraction(np.random.default_rng(0).poisson(2.0, size=(2, 3, 32, 32)))
    with pytest.raises(ValueError, match=exact(
        "beam_radius=100 px around (16.0, 16.0) leaves no detector pixel outside the direct-beam mask."
    )):
        stemfuse_hs.sdt_features(s, binning=binning, beam_centre=(16.0, 16.0), beam_radius=100)


def test_bad_beam_parameters():
    s = diffraction(np.random.default_rng(0).poisson(2.0, size=(2, 3, 32, 32)))
    with pytest.raises(ValueError, match=exact("beam_radius must be >= 0, got -1.")):
        stemfuse_hs.sdt_features(s, beam_radius=-1)
    with pytest.raises(ValueError, match=exact("beam_centre must be (row, column), got (1.0, 2.0, 3.0).")):
        stemfuse_hs.sdt_features(s, beam_centre=(1.0, 2.0, 3.0))


def test_no_channel_above_threshold():
    # Every channel alternates 0, 2 over the four positions: variance exactly 1.
    data = np.tile(np.array([0.0, 2.0, 0.0, 2.0])[:, None], (1, 8)).reshape(2, 2, 8)
    s = spectra(data, (0.1, 0.0))
    with pytest.raises(ValueError, match=exact(
        "No channel has a variance above the threshold (value rule, largest variance 1); "
        "lower threshold or quantile, or check the excluded windows."
    )):
        stemfuse_hs.variance_features(s, threshold=5.0, normalize=None)
    assert stemfuse_hs.variance_features(s, threshold=0.99, normalize=None).data.shape == (2, 2, 8)


@pytest.mark.parametrize("dtype", [bool, np.complex128])
def test_non_numeric_dtype(dtype):
    message = f"data must hold real numbers (integer or float), got dtype {np.dtype(dtype)}."
    with pytest.raises(TypeError, match=exact(message)):
        stemfuse_hs.sdt_features(hs.signals.Signal2D(np.ones((2, 3, 8, 8), dtype=dtype)))
    with pytest.raises(TypeError, match=exact(message)):
        stemfuse_hs.variance_features(hs.signals.Signal1D(np.ones((2, 3, 16), dtype=dtype)))


def test_threshold_and_quantile_together(four_phases):
    with pytest.raises(ValueError, match=exact("Give either threshold or quantile, not both.")):
        stemfuse_hs.variance_features(four_phases.eds, threshold=1.0, quantile=0.5)
    with pytest.raises(ValueError, match=exact("quantile must be in (0, 1), got 1.")):
        stemfuse_hs.variance_features(four_phases.eds, quantile=1)


def test_unknown_xray_line(four_phases):
    from exspy.material import elements

    cu_lines = sorted(elements.Cu.Atomic_properties.Xray_lines.keys())
    cases = [
        ("Xx_Ka", "X-ray line 'Xx_Ka': element 'Xx' is not in exspy's database."),
        ("Cu_Kz", f"X-ray line 'Cu_Kz': Cu has no line 'Kz'; it has {cu_lines}."),
        ("CuKa", "X-ray line 'CuKa' is not of the form 'Element_Line', e.g. 'Cu_Ka'."),
    ]
    for line, message in cases:
        with pytest.raises(ValueError, match=exact(message)):
            stemfuse_hs.variance_features(four_phases.eds, exclude_lines=["Cu_La", line])


@pytest.mark.parametrize(
    "windows, message",
    [
        ([(9.0, 8.0)], "exclude_windows: low must be below high, got (9.0, 8.0)."),
        ([(8.0, 8.0)], "exclude_windows: low must be below high, got (8.0, 8.0)."),
        ([(1.0, 2.0, 3.0)], "exclude_windows must be a list of (low, high) energies in keV, got (1.0, 2.0, 3.0)."),
        ((7.9, 8.2), "exclude_windows must be a list of (low, high) energies in keV, got 7.9."),
    ],
)
def test_bad_exclude_window(four_phases, windows, message):
    with pytest.raises(ValueError, match=exact(message)):
        stemfuse_hs.variance_features(four_phases.eds, exclude_windows=windows)


# ---------------------------------------------------------------------------
# NaN and inf: required to fail clearly, saying how many positions and where
# ---------------------------------------------------------------------------
def _poison(data):
    """Put NaN/inf at array positions (1, 2) [twice], (1, 4) and (3, 0): 3 positions."""
    data = data.astype(np.float32)
    data[1, 2].flat[5] = np.nan
    data[1, 2].flat[-1] = np.inf
    data[1, 4].flat[0] = -np.inf
    data[3, 0].flat[7] = np.nan
    return data


def _assert_nonfinite_message(excinfo):
    message = str(excinfo.value)
    assert re.search(r"(?<![\d.])3(?![\d.])", message), message  # how many positions
    # The first in array order: (row 1, column 2) -- HyperSpy's (x, y) order also accepted.
    assert "(1, 2)" in message or "(2, 1)" in message, message
    assert re.search("nan|inf|finite", message, re.IGNORECASE), message


@pytest.mark.parametrize("lazy", [False, True], ids=["eager", "lazy"])
@pytest.mark.parametrize("normalize", ["total", None])
def test_sdt_refuses_nan_and_inf(lazy, normalize):
    data = _poison(np.random.default_rng(5).poisson(5.0, size=(4, 6, 8, 8)))
    with pytest.raises(ValueError) as excinfo:
        computed(stemfuse_hs.sdt_features(diffraction(data, lazy=lazy, nav_chunk=1), binning=1, normalize=normalize))
    _assert_nonfinite_message(excinfo)


@pytest.mark.parametrize("lazy", [False, True], ids=["eager", "lazy"])
@pytest.mark.parametrize("normalize", ["total", None])
def test_variance_refuses_nan_and_inf(lazy, normalize):
    data = np.random.default_rng(6).poisson(5.0, size=(4, 6, 32)).astype(np.float32)
    data[:2, :, 10] += 30  # a channel with real contrast
    data = _poison(data)
    with pytest.raises(ValueError) as excinfo:
        computed(stemfuse_hs.variance_features(spectra(data, lazy=lazy, nav_chunk=1), threshold=1.0, normalize=normalize))
    _assert_nonfinite_message(excinfo)


# ---------------------------------------------------------------------------
# Properties
# ---------------------------------------------------------------------------
DTYPES = {
    "uint8": st.integers(0, 255),
    "uint16": st.integers(0, 3000),
    "int16": st.integers(-100, 3000),
    "float32": st.floats(-10, 1e4, width=32, allow_nan=False, allow_infinity=False),
    "float64": st.floats(-10, 1e5, allow_nan=False, allow_infinity=False),
}
PROPERTY_SETTINGS = settings(
    max_examples=25, deadline=None, derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@st.composite
def diffraction_cases(draw):
    dtype = draw(st.sampled_from(sorted(DTYPES)))
    nav = (draw(st.integers(1, 3)), draw(st.integers(2, 4)))
    det = (draw(st.integers(4, 9)), draw(st.integers(4, 9)))
    binning = draw(st.integers(1, min(det) // 2))
    data = draw(hnp.arrays(np.dtype(dtype), nav + det, elements=DTYPES[dtype]))
    fraction = draw(st.floats(0.0, 1.0, exclude_min=True))
    radius = draw(st.sampled_from([0.0, 1.0, 2.5]))
    normalize = draw(st.sampled_from(["total", None]))
    std_scale = draw(st.sampled_from(["log", "linear"]))
    return data, dict(binning=binning, fraction=fraction, beam_centre=(0.0, 1.0), beam_radius=radius,
                      normalize=normalize, std_scale=std_scale)


@PROPERTY_SETTINGS
@given(diffraction_cases())
def test_property_sdt_exact_count_finite_and_lazy_equals_eager(case):
    data, kwargs = case
    try:
        eager = stemfuse_hs.sdt_features(diffraction(data), **kwargs)
    except ValueError as error:
        # A disk over a tiny binned detector may leave nothing: refused, lazy or not.
        message = str(error)
        assert message.endswith("leaves no detector pixel outside the direct-beam mask."), message
        with pytest.raises(ValueError, match=exact(message)):
            stemfuse_hs.sdt_features(diffraction(data, lazy=True, nav_chunk=1), **kwargs)
        return
    md = eager.metadata.Features
    eligible = ~md.beam_mask.data.astype(bool)
    n = int(eligible.sum())
    product = kwargs["fraction"] * n
    # Products a rounding error above an integer are the known inflation bug, tested above.
    assume(not 0 < product - math.floor(product) < 1e-9)
    selected = md.selected_mask.data.astype(bool)
    assert selected.sum() == math.ceil(product) == eager.data.shape[-1] == md.parameters.n_features
    assert not (selected & ~eligible).any()
    std_map = md.std_map.data
    if selected.sum() < n:
        assert std_map[selected].min() >= std_map[eligible & ~selected].max()
    assert eager.data.dtype == np.float32
    assert np.all(np.isfinite(eager.data)) and np.all(eager.data >= 0)
    assert eager.data.shape[:-1] == data.shape[:2]

    lazy = stemfuse_hs.sdt_features(diffraction(data, lazy=True, nav_chunk=1), **kwargs)
    assert isinstance(lazy.data, da.Array)
    np.testing.assert_array_equal(lazy.metadata.Features.selected_mask.data, md.selected_mask.data)
    values = lazy.data.compute()
    assert values.dtype == np.float32
    np.testing.assert_allclose(values, eager.data, rtol=1e-5, atol=1e-6)


@st.composite
def spectrum_cases(draw):
    dtype = draw(st.sampled_from(sorted(DTYPES)))
    nav = (draw(st.integers(1, 3)), draw(st.integers(2, 4)))
    channels = draw(st.integers(2, 16))
    data = draw(hnp.arrays(np.dtype(dtype), nav + (channels,), elements=DTYPES[dtype]))
    rule = draw(st.sampled_from(["quantile", "threshold"]))
    if rule == "quantile":
        kwargs = dict(quantile=draw(st.floats(0.01, 0.99)))
    else:
        kwargs = dict(threshold=draw(st.sampled_from([0.0, 0.5, 10.0])))
    kwargs["normalize"] = draw(st.sampled_from(["total", None]))
    return data, kwargs


@PROPERTY_SETTINGS
@given(spectrum_cases())
def test_property_variance_finite_consistent_and_lazy_equals_eager(case):
    data, kwargs = case
    try:
        eager = stemfuse_hs.variance_features(spectra(data, (0.1, 0.5)), **kwargs)
    except ValueError as error:
        assert str(error).startswith("No channel has a variance above the threshold")
        with pytest.raises(ValueError, match="^No channel has a variance above the threshold"):
            stemfuse_hs.variance_features(spectra(data, (0.1, 0.5), lazy=True, nav_chunk=1), **kwargs)
        return
    md = eager.metadata.Features
    kept = md.kept_channels.data.astype(bool)
    assert kept.sum() == eager.data.shape[-1] == md.parameters.n_features > 0
    assert np.all(md.variance.data[kept] >= md.threshold.data[kept])
    assert eager.data.dtype == np.float32
    assert np.all(np.isfinite(eager.data)) and np.all(eager.data >= 0)
    np.testing.assert_allclose(eager.axes_manager.signal_axes[0].axis, (0.5 + 0.1 * np.arange(data.shape[-1]))[kept])

    lazy = stemfuse_hs.variance_features(spectra(data, (0.1, 0.5), lazy=True, nav_chunk=1), **kwargs)
    assert isinstance(lazy.data, da.Array)
    np.testing.assert_array_equal(lazy.metadata.Features.kept_channels.data, md.kept_channels.data)
    values = lazy.data.compute()
    assert values.dtype == np.float32
    np.testing.assert_allclose(values, eager.data, rtol=1e-5, atol=1e-6)


def test_in_memory_sdt_does_not_depend_on_the_number_of_threads():
    # The compiled eager path keeps a fixed number of partial sums: UMAP
    # (and users) change numba's thread count, the features must not move.
    numba = pytest.importorskip("numba")
    from stemfuse_hs.features.sdt import sdt

    data = np.random.default_rng(3).poisson(3.0, size=(12, 15, 20, 22)).astype(np.uint16)
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = sdt(data)
    finally:
        numba.set_num_threads(before)
    many = sdt(data)
    np.testing.assert_array_equal(one.std_map, many.std_map)
    np.testing.assert_array_equal(one.mean_pattern, many.mean_pattern)
    np.testing.assert_array_equal(one.features, many.features)


@pytest.mark.parametrize("dtype", [np.uint16, np.int32, np.float32, np.float64])
def test_in_memory_sdt_matches_the_lazy_path(dtype):
    # Eager data take compiled kernels, lazy data the dask graph: the same
    # pixels, beam and values.
    from stemfuse_hs.features.sdt import sdt

    rng = np.random.default_rng(4)
    data = rng.poisson(4.0, size=(6, 7, 24, 20)).astype(dtype)
    data[..., 10:14, 8:12] += 60
    for kwargs in ({}, {"binning": 3, "std_scale": "linear"}, {"normalize": None, "binning": 1}):
        eager = sdt(data, **kwargs)
        lazy = sdt(da.from_array(data, chunks=(2, 7, 24, 20)), **kwargs)
        np.testing.assert_array_equal(eager.selected_mask, lazy.selected_mask)
        assert eager.beam_centre == lazy.beam_centre and eager.beam_radius == lazy.beam_radius
        np.testing.assert_allclose(eager.features, lazy.features.compute(), rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(eager.std_map, lazy.std_map, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(eager.mean_pattern, lazy.mean_pattern, rtol=1e-6)


@pytest.mark.parametrize("dtype", [np.uint16, np.int32, np.float32, np.float64])
def test_in_memory_variance_matches_the_lazy_path(dtype):
    # Eager spectra take one compiled pass, lazy ones the dask graph: the
    # same channels (every threshold rule) and the same values.
    from stemfuse_hs.features.variance import variance_threshold

    rng = np.random.default_rng(5)
    data = rng.poisson(0.3, size=(9, 11, 300)).astype(dtype)
    data[:4, :, 100:106] += rng.poisson(3.0, size=(4, 11, 6)).astype(dtype)
    data[..., 200:204] += rng.poisson(2.0, size=(9, 11, 4)).astype(dtype)  # varies by noise only
    energies = 0.01 * np.arange(300)
    for kwargs in ({}, {"normalize": None}, {"quantile": 0.9}, {"threshold": 0.05, "exclude_windows": [(1.0, 1.02)]}):
        eager = variance_threshold(data, energies, **kwargs)
        lazy = variance_threshold(da.from_array(data, chunks=(2, 11, 300)), energies, **kwargs)
        np.testing.assert_array_equal(eager.kept, lazy.kept)
        np.testing.assert_array_equal(eager.features, lazy.features.compute())
        np.testing.assert_allclose(eager.variance, lazy.variance, rtol=1e-5)
        np.testing.assert_allclose(eager.mean, lazy.mean, rtol=1e-6)
        np.testing.assert_allclose(eager.threshold, lazy.threshold, rtol=1e-5)
    # The automatic rule finds the chemical contrast, not the noise.
    kept = np.flatnonzero(variance_threshold(data, energies).kept)
    assert set(range(100, 106)) <= set(kept.tolist()) and not set(range(200, 204)) & set(kept.tolist())


def test_in_memory_variance_does_not_depend_on_the_number_of_threads():
    numba = pytest.importorskip("numba")
    from stemfuse_hs.features.variance import variance_threshold

    data = np.random.default_rng(6).poisson(1.0, size=(40, 50, 64)).astype(np.uint16)
    data[:20, :, 30:34] += 3
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = variance_threshold(data, 0.05 * np.arange(64))
    finally:
        numba.set_num_threads(before)
    many = variance_threshold(data, 0.05 * np.arange(64))
    np.testing.assert_array_equal(one.variance, many.variance)
    np.testing.assert_array_equal(one.features, many.features)
