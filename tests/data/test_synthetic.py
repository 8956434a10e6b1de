"""Tests of stemfuse_hs.data: synthetic paired 4D-STEM / STEM-EDS scans."""

import functools
import math
import pickle
import time
import tracemalloc

import dask
import dask.array as da
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

import exspy.signals as es
import hyperspy.api as hs
import pyxem.signals as ps

from stemfuse_hs.data import SCENARIOS, SIZES, SyntheticScan, synthetic_scan

ALL_SCENARIOS = ["chemistry_only", "structure_only", "four_phases", "precipitates"]


@functools.lru_cache(maxsize=None)
def tiny(scenario, seed=0):
    return synthetic_scan(scenario, size="tiny", seed=seed)


def energy_window(scan, centre, half_width):
    axis = scan.eds.axes_manager.signal_axes[0].axis
    return (axis >= centre - half_width) & (axis <= centre + half_width)


def pure(scan, phase):
    """Positions of one phase with (almost) no signal of another phase.

    Embedded precipitates never fill the column, so take their cores.
    """
    share = scan.phase_weights[..., phase]
    return share >= min(0.97, share.max() - 0.05)


def phase_mean_spectra(scan):
    spectra = np.asarray(scan.eds.data, dtype=float)
    return [spectra[pure(scan, p)].mean(0) for p in range(len(scan.phases))]


def phase_mean_patterns(scan):
    patterns = np.asarray(scan.dp.data, dtype=float)
    return [patterns[pure(scan, p)].mean(0) for p in range(len(scan.phases))]


def spot_overlap(a, b):
    """Jaccard overlap of the pixels that stand out from a local median (the disks)."""
    spots_a = a > 1.5 * ndimage.median_filter(a, size=5)
    spots_b = b > 1.5 * ndimage.median_filter(b, size=5)
    return (spots_a & spots_b).sum() / (spots_a | spots_b).sum()


def centre_of_mass(image, y, x, radius=2.5):
    """Centre (x, y) of the disk near pixel (y, x), above the surrounding level."""
    yy, xx = np.mgrid[0 : image.shape[0], 0 : image.shape[1]]
    d = np.hypot(yy - y, xx - x)
    level = np.median(image[(d > radius + 0.5) & (d < radius + 2.5)])
    w = np.clip(image - level, 0, None) * (d <= radius)
    return np.array([(w * xx).sum(), (w * yy).sum()]) / w.sum()


def raising_scheduler(*args, **kwargs):
    raise AssertionError("something was computed")


# --- constants ---------------------------------------------------------------
def test_public_constants():
    # The fixed-section scenarios come first; the polycrystals follow (they
    # have their own tests in test_data_polycrystal.py).
    assert list(SCENARIOS)[: len(ALL_SCENARIOS)] == ALL_SCENARIOS
    assert all(name.startswith("poly_") for name in list(SCENARIOS)[len(ALL_SCENARIOS) :])
    for description in SCENARIOS.values():
        assert isinstance(description, str) and "\n" not in description and description
    assert SIZES == {
        "tiny": {"scan_shape": (32, 48), "detector": (32, 32), "channels": 512},
        "small": {"scan_shape": (48, 80), "detector": (64, 64), "channels": 1024},
        "published": {"scan_shape": (50, 150), "detector": (256, 256), "channels": 2048},
        "large": {"scan_shape": (256, 256), "detector": (256, 256), "channels": 2048},
    }


def test_editing_public_sizes_does_not_change_generation():
    SIZES["tiny"]["channels"] = 7
    try:
        assert synthetic_scan(size="tiny", lazy=True).eds.data.shape[-1] == 512
    finally:
        SIZES["tiny"]["channels"] = 512


# --- structure of the returned scan ----------------------------------------
@pytest.mark.parametrize("scenario", ALL_SCENARIOS)
def test_tiny_scan_shapes_dtypes_and_classes(scenario):
    scan = tiny(scenario)
    assert isinstance(scan, SyntheticScan)
    assert scan.scenario == scenario and scan.size == "tiny" and scan.seed == 0
    assert not scan.lazy
    assert type(scan.dp) is ps.Diffraction2D
    assert type(scan.eds) is es.EDSTEMSpectrum
    assert scan.dp.metadata.Signal.signal_type == "diffraction"
    assert scan.eds.metadata.Signal.signal_type == "EDS_TEM"
    assert isinstance(scan.dp.data, np.ndarray) and isinstance(scan.eds.data, np.ndarray)
    assert scan.dp.data.shape == (32, 48, 32, 32) and scan.dp.data.dtype == np.uint16
    assert scan.eds.data.shape == (32, 48, 512) and scan.eds.data.dtype == np.uint16
    assert scan.truth.shape == (32, 48)
    assert np.issubdtype(scan.truth.dtype, np.integer)
    assert set(np.unique(scan.truth)) == set(range(len(scan.phases)))
    assert len(scan.phases) == (4 if scenario == "four_phases" else 2)
    assert all(isinstance(name, str) and name for name in scan.phases)
    assert isinstance(scan.description, str) and "\n" not in scan.description
    assert "thickness" in scan.description and "Cu" in scan.description
    assert scan.thickness.shape == (32, 48)
    assert scan.tilt.shape == (32, 48, 2)
    assert scan.beam_center.shape == (32, 48, 2)
    assert scan.phase_weights.shape == (32, 48, len(scan.phases))
    np.testing.assert_allclose(scan.phase_weights.sum(-1), 1, rtol=1e-5)
    np.testing.assert_array_equal(np.argmax(scan.phase_weights, -1), scan.truth)
    assert len(scan.g_vectors) == len(scan.hkl) == len(scan.phases)
    assert "Cu" in scan.elements
    assert scenario in repr(scan)


def _axis_record(axis):
    """What two axes of one scan must share: name, units, calibration and size."""
    return (axis.name, axis.units, axis.scale, axis.offset, axis.size)


@pytest.mark.parametrize("scenario", ALL_SCENARIOS)
def test_axes_and_metadata(scenario):
    scan = tiny(scenario)
    dp_nav = scan.dp.axes_manager.navigation_axes
    eds_nav = scan.eds.axes_manager.navigation_axes
    assert [a.name for a in dp_nav] == ["x", "y"]
    for a, b in zip(dp_nav, eds_nav):
        assert _axis_record(a) == _axis_record(b)
        assert a.units == "nm" and a.scale > 0 and a.offset == 0
    kx, ky = scan.dp.axes_manager.signal_axes
    assert (kx.name, ky.name) == ("kx", "ky")
    assert kx.units == ky.units == "1/nm"
    assert kx.scale == ky.scale > 0
    energy = scan.eds.axes_manager.signal_axes[0]
    assert energy.name == "Energy" and energy.units == "keV"
    assert energy.offset <= 0 and energy.offset > -0.1
    assert energy.scale == pytest.approx(0.02)

    tem = scan.dp.metadata.Acquisition_instrument.TEM
    assert tem.beam_energy == 200
    assert scan.dp.metadata.General.title
    assert scan.eds.metadata.General.title
    eds_tem = scan.eds.metadata.Acquisition_instrument.TEM
    assert eds_tem.beam_energy == 200
    assert eds_tem.Detector.EDS.energy_resolution_MnKa == 130
    assert eds_tem.Detector.EDS.live_time > 0
    assert list(scan.eds.metadata.Sample.elements) == scan.elements
    assert "Cu_Ka" in scan.eds.metadata.Sample.xray_lines


@pytest.mark.parametrize("size", ["tiny", "small", "published", "large"])
def test_sizes_lazily(size):
    scan = synthetic_scan("four_phases", size=size, lazy=True)
    spec = SIZES[size]
    rows, cols = spec["scan_shape"]
    h, w = spec["detector"]
    assert scan.dp.data.shape == (rows, cols, h, w)
    assert scan.eds.data.shape == (rows, cols, spec["channels"])
    assert scan.truth.shape == (rows, cols)
    kx = scan.dp.axes_manager.signal_axes[0]
    # The same reciprocal-space field of view at every binning.
    assert kx.scale * w == pytest.approx(25.6)
    energy = scan.eds.axes_manager.signal_axes[0]
    top = {"tiny": 10.24, "small": 10.24, "published": 20.48, "large": 20.48}[size]
    assert energy.offset + energy.scale * spec["channels"] == pytest.approx(top)


def test_lazy_signal_classes():
    scan = synthetic_scan("precipitates", size="tiny", lazy=True)
    assert scan.lazy
    assert type(scan.dp) is ps.LazyDiffraction2D
    assert type(scan.eds) is es.LazyEDSTEMSpectrum
    assert isinstance(scan.dp.data, da.Array) and isinstance(scan.eds.data, da.Array)
    assert scan.dp.data.dtype == np.uint16 and scan.eds.data.dtype == np.uint16
    # Chunked over scan rows only.
    assert scan.dp.data.chunks[1:] == ((48,), (32,), (32,))
    assert scan.eds.data.chunks[0] == scan.dp.data.chunks[0]


@pytest.mark.parametrize("lazy", [False, True])
def test_hyperspy_diffraction_class_same_data_axes_and_metadata(lazy):
    pyxem_scan = synthetic_scan("four_phases", size="tiny", seed=0, lazy=lazy, scan_shape=(8, 12))
    plain = synthetic_scan(
        "four_phases", size="tiny", seed=0, lazy=lazy, scan_shape=(8, 12), diffraction_class="hyperspy"
    )
    assert type(plain.dp) is (hs.signals.LazySignal2D if lazy else hs.signals.Signal2D)
    assert type(plain.eds) is type(pyxem_scan.eds)
    np.testing.assert_array_equal(np.asarray(plain.dp.data), np.asarray(pyxem_scan.dp.data))
    np.testing.assert_array_equal(np.asarray(plain.eds.data), np.asarray(pyxem_scan.eds.data))
    np.testing.assert_array_equal(plain.truth, pyxem_scan.truth)
    assert plain.dp.axes_manager.as_dictionary() == pyxem_scan.dp.axes_manager.as_dictionary()
    meta, pyxem_meta = plain.dp.metadata.as_dictionary(), pyxem_scan.dp.metadata.as_dictionary()
    assert meta["Signal"].pop("signal_type") == "" and pyxem_meta["Signal"].pop("signal_type") == "diffraction"
    assert meta == pyxem_meta


def test_hyperspy_diffraction_class_does_not_import_pyxem():
    import subprocess
    import sys

    code = (
        "import sys; from stemfuse_hs.data import synthetic_scan; "
        "synthetic_scan('four_phases', size='tiny', scan_shape=(8, 8), diffraction_class='hyperspy'); "
        "print(sorted(m for m in ('pyxem', 'orix', 'diffsims') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_truth_signal():
    scan = tiny("four_phases")
    s = scan.truth_signal()
    assert isinstance(s, hs.signals.Signal2D)
    np.testing.assert_array_equal(s.data, scan.truth)
    for a, b in zip(s.axes_manager.signal_axes, scan.dp.axes_manager.navigation_axes):
        assert _axis_record(a) == _axis_record(b)
    assert list(s.metadata.Sample.phases) == scan.phases


# --- determinism and laziness ------------------------------------------------
def test_same_seed_same_data_different_seed_different_map():
    a = tiny("four_phases", 0)
    b = synthetic_scan("four_phases", size="tiny", seed=0)
    np.testing.assert_array_equal(a.dp.data, b.dp.data)
    np.testing.assert_array_equal(a.eds.data, b.eds.data)
    np.testing.assert_array_equal(a.truth, b.truth)
    c = tiny("four_phases", 1)
    assert not np.array_equal(a.truth, c.truth)
    assert not np.array_equal(a.dp.data, c.dp.data)
    # Two-phase scenarios draw from their own streams.
    assert not np.array_equal(tiny("chemistry_only").truth, tiny("structure_only").truth)


@pytest.mark.parametrize("scenario", ["four_phases", "precipitates"])
def test_lazy_equals_eager_bit_for_bit(scenario):
    eager = tiny(scenario)
    lazy = synthetic_scan(scenario, size="tiny", seed=0, lazy=True)
    np.testing.assert_array_equal(lazy.dp.data.compute(), eager.dp.data)
    np.testing.assert_array_equal(lazy.eds.data.compute(), eager.eds.data)
    np.testing.assert_array_equal(lazy.truth, eager.truth)


def test_chunking_and_scheduler_do_not_change_data():
    eager = tiny("four_phases")
    lazy = synthetic_scan("four_phases", size="tiny", seed=0, lazy=True, chunk_rows=3)
    assert lazy.dp.data.numblocks[0] == 11
    with dask.config.set(scheduler="synchronous"):
        np.testing.assert_array_equal(lazy.dp.data.compute(), eager.dp.data)
        np.testing.assert_array_equal(lazy.eds.data[5:9].compute(), eager.eds.data[5:9])


def test_pickled_graph_gives_the_same_data():
    # What a distributed worker sees: the generator travels without its cache.
    lazy = synthetic_scan("four_phases", size="tiny", seed=0, lazy=True, chunk_rows=8)
    dp = pickle.loads(pickle.dumps(lazy.dp.data))
    eds = pickle.loads(pickle.dumps(lazy.eds.data))
    np.testing.assert_array_equal(dp[8:16].compute(), tiny("four_phases").dp.data[8:16])
    np.testing.assert_array_equal(eds.compute(), tiny("four_phases").eds.data)


def test_large_lazy_is_instant_and_allocates_nothing():
    synthetic_scan("four_phases", size="tiny", lazy=True)  # warm imports
    tracemalloc.start()
    try:
        start = time.perf_counter()
        with dask.config.set(scheduler=raising_scheduler):
            scan = synthetic_scan("precipitates", size="large", seed=0, lazy=True)
        elapsed = time.perf_counter() - start
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert scan.dp.data.shape == (256, 256, 256, 256)
    assert scan.eds.data.shape == (256, 256, 2048)
    assert scan.dp.data.nbytes == 256**4 * 2
    assert type(scan.dp) is ps.LazyDiffraction2D
    assert elapsed < 3.0
    assert peak < 100e6  # the data would be 8.6 GB


# --- ground-truth geometry ---------------------------------------------------
@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), scenario=st.sampled_from(ALL_SCENARIOS))
def test_phase_coverage(seed, scenario):
    scan = synthetic_scan(scenario, size="tiny", seed=seed, lazy=True)
    coverage = scan.coverage
    assert coverage.sum() == pytest.approx(1)
    if scenario == "precipitates":
        assert 0.05 <= coverage[1] <= 0.15
        labels, n = ndimage.label(scan.truth == 1)
        assert n >= 3
        cols = scan.truth.shape[1]
        areas = np.bincount(labels.ravel())[1:]
        assert areas.max() <= math.pi * (0.1 * cols + 1) ** 2
    else:
        assert coverage.min() >= 0.12


@pytest.mark.parametrize("size", ["small", "published"])
def test_phase_coverage_other_sizes(size):
    for scenario in ALL_SCENARIOS:
        coverage = synthetic_scan(scenario, size=size, seed=7, lazy=True).coverage
        if scenario == "precipitates":
            assert 0.05 <= coverage[1] <= 0.15
        else:
            assert coverage.min() >= 0.12


def test_domains_are_smooth():
    # Smooth-bounded domains: few boundary pixels relative to the area.
    truth = tiny("four_phases").truth
    boundary = (np.diff(truth, axis=0) != 0).sum() + (np.diff(truth, axis=1) != 0).sum()
    # A pixel-noise map of four phases would have ~1.5 boundaries per pixel.
    assert boundary < 0.3 * truth.size


def test_thickness_field_and_wedge():
    t = tiny("four_phases").thickness
    assert t.min() == pytest.approx(0.5) and t.max() == pytest.approx(1.5)
    wedge = tiny("precipitates").thickness
    assert wedge.max() / wedge.min() == pytest.approx(3, rel=0.05)
    cols = np.broadcast_to(np.arange(wedge.shape[1]), wedge.shape)
    assert abs(np.corrcoef(cols.ravel(), wedge.ravel())[0, 1]) > 0.9


# --- physics of the diffraction ---------------------------------------------
def test_data_mean_matches_noise_free_expectation():
    scan = tiny("four_phases")
    expected_dp = scan.expected_dp()
    assert expected_dp.dtype == np.float32 and expected_dp.shape == scan.dp.data.shape
    assert scan.dp.data.sum() == pytest.approx(expected_dp.sum(dtype=float), rel=1e-3)
    expected_eds = scan.expected_eds()
    assert scan.eds.data.sum() == pytest.approx(expected_eds.sum(dtype=float), rel=0.01)
    np.testing.assert_allclose(scan.expected_dp(slice(3, 5)), expected_dp[3:5])


def test_diffraction_counts_follow_thickness():
    scan = tiny("four_phases")
    totals = scan.dp.data.reshape(scan.truth.size, -1).sum(1)
    assert np.corrcoef(totals, scan.thickness.ravel())[0, 1] > 0.5


def test_counts_per_pattern_are_realistic():
    scan = synthetic_scan("four_phases", size="small", seed=0, lazy=True)
    row = scan.dp.data[10].compute()
    totals = row.reshape(row.shape[0], -1).sum(1)
    assert 1e4 <= totals.min() and totals.max() <= 1.5e5
    # Most of the detector is sparse background.
    assert np.median(row) <= 3


@pytest.mark.parametrize("scenario", ALL_SCENARIOS)
def test_spot_intensity_varies_threefold_within_each_phase(scenario):
    scan = tiny(scenario)
    for phase in range(len(scan.phases)):
        spots = scan.spot_intensities(phase)
        assert spots.shape == (*scan.truth.shape, len(scan.g_vectors[phase]))
        inside = scan.truth == phase
        assert np.isnan(spots[~inside]).all() and np.isfinite(spots[inside]).all()
        ratio = np.nanmax(spots, axis=(0, 1)) / np.nanmin(spots, axis=(0, 1))
        assert ratio.max() >= 3
        # Unequal modulation: the spots do not all follow one common factor.
        flat = spots[inside]
        assert np.std(np.log(flat / flat.sum(1, keepdims=True)), axis=0).max() > 0.3


def test_spot_intensity_varies_in_the_counts():
    # Sum the counts over the strongest disks of one phase, straight from the data.
    scan = tiny("structure_only")
    phase = 0
    inside = scan.truth == phase
    k_scale = scan.dp.axes_manager.signal_axes[0].scale
    yy, xx = np.mgrid[0:32, 0:32]
    mean_strength = np.nanmean(scan.spot_intensities(phase), axis=(0, 1))
    ratios = []
    for spot in np.argsort(mean_strength)[::-1][:4]:
        gx, gy = scan.g_vectors[phase][spot]
        cx = scan.beam_center[..., 0] + gx / k_scale
        cy = scan.beam_center[..., 1] + gy / k_scale
        sums = [
            scan.dp.data[r, c][np.hypot(yy - cy[r, c], xx - cx[r, c]) <= 1.5].sum()
            for r, c in zip(*np.nonzero(inside))
        ]
        low, high = np.percentile(sums, [5, 95])
        ratios.append(high / max(low, 1))
    assert max(ratios) >= 3


def test_direct_beam_off_centre_and_drifting():
    scan = tiny("chemistry_only")
    h, w = scan.dp.data.shape[2:]
    data = np.asarray(scan.dp.data, dtype=float)
    mean = data.mean(axis=(0, 1))
    y, x = np.unravel_index(np.argmax(mean), mean.shape)
    com = centre_of_mass(mean, y, x)
    centre = np.array([(w - 1) / 2, (h - 1) / 2])
    assert np.hypot(*(com - centre)) > 0.04 * w
    np.testing.assert_allclose(com, scan.beam_center.mean(axis=(0, 1)), atol=0.05)

    # Descan: 1-2 px peak to peak at a 128 px equivalent, smooth over the scan.
    bc = scan.beam_center.reshape(-1, 2)
    spread = np.hypot(*(bc.max(0) - bc.min(0)))
    assert 0.007 * w < spread < 0.016 * w
    assert np.abs(np.diff(scan.beam_center, axis=1)).max() < 0.05
    # The measured beam follows it: compare the two ends of the drift.
    main = np.linalg.svd(bc - bc.mean(0), full_matrices=False)[2][0]
    along = (bc - bc.mean(0)) @ main
    patterns = data.reshape(-1, h, w)
    lo, hi = along < np.percentile(along, 10), along > np.percentile(along, 90)
    com_lo = centre_of_mass(patterns[lo].mean(0), y, x)
    com_hi = centre_of_mass(patterns[hi].mean(0), y, x)
    moved = (com_hi - com_lo) @ main
    assert moved > 0.1
    assert moved == pytest.approx((bc[hi].mean(0) - bc[lo].mean(0)) @ main, abs=0.03)


def test_bragg_disks_move_with_the_beam():
    scan = synthetic_scan("chemistry_only", size="small", seed=2, lazy=True)
    bc = scan.beam_center
    a = np.unravel_index(np.argmin(bc[..., 0]), bc.shape[:2])
    b = np.unravel_index(np.argmax(bc[..., 0]), bc.shape[:2])
    # Both phases share one lattice, so the spot order is common.
    strength = np.fmin(
        scan.spot_intensities(scan.truth[a])[a], scan.spot_intensities(scan.truth[b])[b]
    )
    g = scan.g_vectors[0][int(np.argmax(strength))]
    k_scale = scan.dp.axes_manager.signal_axes[0].scale
    centres = []
    for r, c in (a, b):
        pattern = scan.expected_dp(slice(r, r + 1))[0, c]
        x0, y0 = bc[0, 0] + g / k_scale
        centres.append(centre_of_mass(pattern, round(y0), round(x0), radius=3.5))
    np.testing.assert_allclose(centres[1] - centres[0], bc[b] - bc[a], atol=0.1)


# --- what differs between the phases ----------------------------------------
def test_chemistry_only_same_lattice_different_line_ratios():
    scan = tiny("chemistry_only")
    assert scan.structures[0] == scan.structures[1]
    np.testing.assert_array_equal(scan.g_vectors[0], scan.g_vectors[1])
    assert scan.hkl[0] == scan.hkl[1]
    assert scan.compositions[0] != scan.compositions[1]
    means = phase_mean_patterns(scan)
    assert spot_overlap(means[0], means[1]) > 0.7
    spectra = phase_mean_spectra(scan)
    ni, mn = energy_window(scan, 7.478, 0.1), energy_window(scan, 5.899, 0.1)
    ratios = [s[ni].sum() / s[mn].sum() for s in spectra]
    assert ratios[0] > 1.4 * ratios[1]  # Ni-rich vs Mn-rich


def test_structure_only_same_composition_different_spots():
    scan = tiny("structure_only")
    assert scan.compositions[0] == scan.compositions[1]
    assert scan.structures[0] != scan.structures[1]
    spectra = phase_mean_spectra(scan)
    fe, cr = energy_window(scan, 6.404, 0.1), energy_window(scan, 5.415, 0.1)
    ratios = [s[fe].sum() / s[cr].sum() for s in spectra]
    assert ratios[0] == pytest.approx(ratios[1], rel=0.1)
    # Noise-free spectra are thickness x phase spectrum + grid: the Fe line
    # grows with thickness at exactly the same rate in both phases.
    expected = scan.expected_eds().reshape(scan.truth.size, -1)
    t = scan.thickness.ravel()
    slopes = []
    for p in range(2):
        sel = pure(scan, p).ravel()
        coef = np.polyfit(t[sel], expected[sel][:, fe].sum(1), 1)
        slopes.append(coef[0])
    assert slopes[0] == pytest.approx(slopes[1], rel=1e-4)
    means = phase_mean_patterns(scan)
    assert spot_overlap(means[0], means[1]) < 0.55
    g0 = {tuple(np.round(g, 3)) for g in scan.g_vectors[0]}
    g1 = {tuple(np.round(g, 3)) for g in scan.g_vectors[1]}
    assert g0 != g1


def test_four_phases_each_modality_sees_two_groups():
    scan = tiny("four_phases")
    assert scan.phases == ["Fe-rich bcc", "Fe-rich fcc", "Ni-rich bcc", "Ni-rich fcc"]
    same_structure = [(0, 2), (1, 3)]
    same_composition = [(0, 1), (2, 3)]
    for a, b in same_structure:
        np.testing.assert_array_equal(scan.g_vectors[a], scan.g_vectors[b])
        assert scan.compositions[a] != scan.compositions[b]
    for a, b in same_composition:
        assert scan.compositions[a] == scan.compositions[b]
        assert scan.structures[a] != scan.structures[b]
    spectra = phase_mean_spectra(scan)
    ni, fe = energy_window(scan, 7.478, 0.1), energy_window(scan, 6.404, 0.1)
    ratio = [s[ni].sum() / s[fe].sum() for s in spectra]
    assert ratio[0] == pytest.approx(ratio[1], rel=0.15)
    assert ratio[2] == pytest.approx(ratio[3], rel=0.15)
    assert ratio[2] > 3 * ratio[0]
    means = phase_mean_patterns(scan)
    for a, b in same_structure:
        assert spot_overlap(means[a], means[b]) > 0.7
    for a, b in same_composition:
        assert spot_overlap(means[a], means[b]) < 0.55


def test_precipitates_differ_in_structure_and_composition():
    scan = tiny("precipitates")
    assert scan.structures[0] != scan.structures[1]
    assert set(scan.compositions[1]) - set(scan.compositions[0])
    means = phase_mean_patterns(scan)
    assert spot_overlap(means[0], means[1]) < 0.55
    spectra = phase_mean_spectra(scan)
    ti = energy_window(scan, 4.511, 0.1)
    assert spectra[1][ti].sum() > 10 * spectra[0][ti].sum()


# --- physics of the spectra --------------------------------------------------
@pytest.mark.parametrize("scenario", ALL_SCENARIOS)
def test_eds_counts_low_and_following_thickness(scenario):
    scan = tiny(scenario)
    totals = scan.eds.data.sum(-1)
    assert totals.min() >= 10 and totals.max() <= 1000
    assert np.corrcoef(totals.ravel(), scan.thickness.ravel())[0, 1] > 0.5


@pytest.mark.parametrize("scenario", ALL_SCENARIOS)
def test_cu_grid_line_in_every_phase(scenario):
    scan = tiny(scenario)
    peak = energy_window(scan, 8.048, 0.06)
    left, right = energy_window(scan, 7.82, 0.06), energy_window(scan, 8.61, 0.06)
    for spectrum in phase_mean_spectra(scan):
        side = max(spectrum[left].mean(), spectrum[right].mean())
        assert spectrum[peak].mean() > 3 * side + 0.05


def test_line_widths_follow_detector_resolution():
    scan = tiny("four_phases")
    # Mn-free scan: use the strongest line, Fe Ka at 6.404 keV (FWHM ~ 136 eV).
    spectrum = scan.expected_eds().reshape(-1, 512).mean(0)
    axis = scan.eds.axes_manager.signal_axes[0].axis
    window = (axis > 6.1) & (axis < 6.7)
    e, y = axis[window], spectrum[window] - spectrum[window].min()
    mean = (e * y).sum() / y.sum()
    fwhm = 2.3548 * math.sqrt(((e - mean) ** 2 * y).sum() / y.sum())
    assert mean == pytest.approx(6.404, abs=0.02)
    assert fwhm == pytest.approx(0.136, abs=0.02)


def test_dose_scales_counts():
    base = tiny("four_phases")
    double = synthetic_scan("four_phases", size="tiny", seed=0, dose=2.0)
    assert double.dp.data.sum() / base.dp.data.sum() == pytest.approx(2, rel=0.01)
    assert double.eds.data.sum() / base.eds.data.sum() == pytest.approx(2, rel=0.03)
    np.testing.assert_array_equal(double.truth, base.truth)


def test_scan_shape_override():
    scan = synthetic_scan("precipitates", size="tiny", scan_shape=(20, 24), lazy=True)
    assert scan.dp.data.shape == (20, 24, 32, 32)
    assert scan.eds.data.shape == (20, 24, 512)
    assert scan.truth.shape == (20, 24)
    assert scan.dp.axes_manager.navigation_shape == (24, 20)


# --- argument validation -----------------------------------------------------
@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            {"scenario": "foo"},
            f"scenario='foo' is not one of {list(SCENARIOS)}",
        ),
        ({"size": "huge"}, "size='huge' is not one of ['tiny', 'small', 'published', 'large']"),
        ({"scenario": 3}, f"scenario=3 is not one of {list(SCENARIOS)}"),
        ({"seed": -1}, "seed=-1 is not a non-negative integer"),
        ({"seed": 1.5}, "seed=1.5 is not a non-negative integer"),
        ({"seed": True}, "seed=True is not a non-negative integer"),
        ({"lazy": "yes"}, "lazy='yes' is not one of [True, False]"),
        ({"dose": 0}, "dose=0 is not a positive finite number"),
        ({"dose": float("nan")}, "dose=nan is not a positive finite number"),
        (
            {"scan_shape": (4, 100)},
            "scan_shape=(4, 100) is not a (rows, cols) pair of integers >= 8",
        ),
        ({"chunk_rows": 0}, "chunk_rows=0 is not a positive integer or None"),
        ({"diffraction_class": "pyxm"}, "diffraction_class='pyxm' is not one of ['pyxem', 'hyperspy']"),
        (
            {"size": "large"},
            "lazy=False with size='large' would hold 8.6 GB of diffraction data in "
            "memory; pass lazy=True (or a smaller scan_shape)",
        ),
    ],
)
def test_invalid_arguments(kwargs, message):
    with pytest.raises(ValueError) as info:
        synthetic_scan(**kwargs)
    assert str(info.value) == message


def test_invalid_phase_for_spot_intensities():
    scan = tiny("four_phases")
    with pytest.raises(ValueError) as info:
        scan.spot_intensities(4)
    assert str(info.value) == "phase=4 is not one of [0, 1, 2, 3]"
