"""The shared checks (stemfuse_hs._checks, features._common, signals._axes): exact messages."""

import re

import dask.array as da
import numpy as np
import pytest
from hyperspy.signals import Signal1D, Signal2D

from stemfuse_hs._checks import TRANSPOSED_HINT, check_same_scan, check_weights, is_signal, require_signal, scan_mismatch
from stemfuse_hs.features._common import (
    beam_provenance,
    blank_and_normalize,
    check_beam,
    check_binning,
    check_data,
    check_positions,
    compute_features,
    provenance,
)
from stemfuse_hs.signals._axes import build_features_signal, index_axis


def exact(message):
    return "^" + re.escape(message) + "$"


def test_is_signal_and_require_signal():
    signal = Signal1D(np.zeros((2, 3)))
    assert is_signal(signal) and not is_signal(np.zeros(3))
    assert require_signal(signal, "unused {type}") is signal
    with pytest.raises(TypeError, match=exact("f needs a signal, got ndarray.")):
        require_signal(np.zeros(3), "f needs a signal, got {type}.")


@pytest.mark.parametrize(
    "shape, reference, expected",
    [((4, 6), (4, 6), None), ((6, 4), (4, 6), TRANSPOSED_HINT), ((5, 6), (4, 6), ""), ((24,), (4, 6), ""), ((3, 3), (3, 3), None)],
)
def test_scan_mismatch(shape, reference, expected):
    assert scan_mismatch(shape, reference) == expected


def test_check_same_scan_is_strict_and_names_a_transposed_scan():
    check_same_scan((4, 6), (4, 6), "unused")
    with pytest.raises(ValueError, match=exact("g: scans differ." + TRANSPOSED_HINT)):
        check_same_scan((6, 4), (4, 6), "g: scans differ.")
    # A line scan held as one row is not silently taken for the same scan.
    with pytest.raises(ValueError, match=exact("g: scans differ.")):
        check_same_scan((1, 24), (24,), "g: scans differ.")


def test_check_weights():
    assert check_weights(np.array([1, 2]), 2) == [1.0, 2.0]
    with pytest.raises(TypeError, match=exact("weights must be a sequence of numbers, one per signal, got 'ab'.")):
        check_weights("ab", 2, "signal")
    with pytest.raises(TypeError, match=exact("weights must be a sequence of numbers, one per block, got ['a', 1].")):
        check_weights(["a", 1], 2)
    with pytest.raises(ValueError, match=exact("weights has 3 values for 2 blocks; give one per block.")):
        check_weights([1, 1, 1], 2)
    with pytest.raises(ValueError, match=exact("weights must be finite, non-negative and not all zero, got [1.0, -1.0].")):
        check_weights([1, -1], 2)
    with pytest.raises(ValueError, match=exact("weights must be finite, non-negative and not all zero, got [nan, 1.0].")):
        check_weights([np.nan, 1], 2)


def test_check_data_and_positions():
    assert check_data(da.zeros((2, 4, 4)), 2) is True
    with pytest.raises(TypeError, match=exact("data must be a numpy or dask array, got list.")):
        check_data([1, 2], 1)
    with pytest.raises(TypeError, match=exact("radial: data must be a numpy or dask array, got list.")):
        check_data([1, 2], 2, "radial")
    with pytest.raises(ValueError, match=exact("data must have at least one navigation and one signal dimension, got shape (4,).")):
        check_data(np.zeros(4), 1)
    with pytest.raises(ValueError, match=exact("data has a single position (shape (1, 8, 8)); at least two are needed to measure how pixels vary across a scan.")):
        check_positions(np.zeros((1, 8, 8)), 2, "pixels")
    with pytest.raises(ValueError, match=exact("cepstrum: data has a single position (shape (1, 8, 8)); at least two are needed to measure how patterns vary across a scan.")):
        check_positions(np.zeros((1, 8, 8)), 2, "patterns", "cepstrum")


def test_check_binning_and_beam():
    data = np.zeros((2, 6, 8))
    assert check_binning(6, data) == 6
    with pytest.raises(ValueError, match=exact("binning=7 is larger than the detector (6 x 8 pixels).")):
        check_binning(7, data)
    assert check_beam((2, 3), 0, data) == ((2.0, 3.0), 0.0)
    with pytest.raises(ValueError, match=exact("beam_centre=(9, 3) is off the 6 x 8 pixel detector: row must be in [-0.5, 5.5] and column in [-0.5, 7.5] (unbinned pixels).")):
        check_beam((9, 3), None, data)
    with pytest.raises(TypeError, match=exact("beam_centre must hold two real numbers, got 'x'.")):
        check_beam(("x", 3), None, data)


def test_provenance_keeps_the_order_of_the_entries():
    beam = beam_provenance((0.0, 1.0), 1.0, 2, (0.5, 2.5))
    parameters = provenance({"binning": 2, "scale": "log"}, normalize="total", beam=beam, n_features=np.int64(4), nan_policy="exclude")
    assert list(parameters) == ["binning", "scale", "normalize", "beam_centre", "beam_radius", "beam_centre_found", "n_features", "nan_policy"]
    assert parameters["beam_centre"] == [0.5, 2.5] and parameters["beam_centre_found"] is False
    assert type(parameters["n_features"]) is int


def test_blank_and_normalize_and_compute_features():
    data = np.array([[1.0, 3.0], [np.nan, 1.0], [2.0, 2.0]], dtype=np.float32)
    working, excluded, totals = blank_and_normalize(da.from_array(data, chunks=(1, 2)), data, 1, "total", "exclude")
    assert excluded.tolist() == [False, True, False] and totals.tolist() == [4.0, 0.0, 4.0]
    features = compute_features(working, False, 3, "demo")
    assert isinstance(features, np.ndarray) and features.dtype == np.float32
    assert np.isnan(features[1]).all() and features[0].tolist() == [1.0, 3.0]
    with pytest.raises(ValueError, match="NaN or inf"):
        blank_and_normalize(da.from_array(data, chunks=(1, 2)), data, 1, "total", "raise")


def test_build_features_signal_is_the_registered_class_and_lazy_twin():
    axes = [index_axis("x", 3, True), index_axis("feature", 2)]
    eager = build_features_signal(np.zeros((3, 2), np.float32), axes, title="t\x00")
    lazy = build_features_signal(da.zeros((3, 2), dtype=np.float32), axes)
    assert type(eager).__name__ == "FusedSTEMSignal" and eager.metadata.General.title == "t"
    assert type(lazy).__name__ == "LazyFusedSTEMSignal"
    assert not isinstance(Signal2D(np.zeros((2, 2))), type(eager))
