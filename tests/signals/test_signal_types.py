"""HyperSpy extension registration: the "fused_stem" signal types and their methods."""

import numpy as np
import pytest

import hyperspy.api as hs
import pyxem.signals as ps
import exspy.signals as es

import stemfuse_hs
from stemfuse_hs.signals.diffraction import FusedSTEMDiffraction, LazyFusedSTEMDiffraction
from stemfuse_hs.signals.features import FusedSTEMSignal, LazyFusedSTEMSignal


def _table_rows(text, signal_type):
    """Rows of ``print_known_signal_types``' table whose signal_type column is ``signal_type``."""
    rows = []
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells and cells[0] == signal_type:
            rows.append(cells)
    return rows


def test_print_known_signal_types_lists_fused_stem(capsys):
    hs.print_known_signal_types()
    out = capsys.readouterr().out
    rows = _table_rows(out, "fused_stem")
    classes = {row[2] for row in rows}
    packages = {row[3] for row in rows}
    assert classes == {"FusedSTEMDiffraction", "FusedSTEMSignal"}, out
    assert packages == {"stemfuse_hs"}
    # The label type of the same extension is registered too, as its own type.
    assert [row[2] for row in _table_rows(out, "fused_stem_labels")] == ["ClusterLabels"]


def test_public_names_are_the_registered_classes():
    assert stemfuse_hs.FusedSTEMDiffraction is FusedSTEMDiffraction
    assert stemfuse_hs.LazyFusedSTEMDiffraction is LazyFusedSTEMDiffraction
    assert stemfuse_hs.FusedSTEMSignal is FusedSTEMSignal
    assert stemfuse_hs.LazyFusedSTEMSignal is LazyFusedSTEMSignal
    assert issubclass(FusedSTEMDiffraction, ps.Diffraction2D)
    assert issubclass(LazyFusedSTEMDiffraction, ps.LazyDiffraction2D)
    assert issubclass(LazyFusedSTEMDiffraction, FusedSTEMDiffraction)
    assert issubclass(FusedSTEMSignal, hs.signals.Signal1D)
    assert issubclass(LazyFusedSTEMSignal, FusedSTEMSignal)


@pytest.mark.parametrize("lazy", [False, True], ids=["eager", "lazy"])
def test_set_signal_type_on_pyxem_diffraction2d(fresh_scan, lazy):
    dp = fresh_scan("four_phases", lazy=lazy).dp
    assert type(dp) is (ps.LazyDiffraction2D if lazy else ps.Diffraction2D)
    dp.set_signal_type("fused_stem")
    assert type(dp) is (LazyFusedSTEMDiffraction if lazy else FusedSTEMDiffraction)
    assert dp.metadata.Signal.signal_type == "fused_stem"
    assert isinstance(dp, ps.Diffraction2D)
    # pyxem's own methods still work on the new class.
    shifts = dp.inav[:4, :3].get_direct_beam_position(method="center_of_mass")
    assert shifts.data.shape == (3, 4, 2)
    assert np.all(np.isfinite(np.asarray(shifts.data)))


@pytest.mark.parametrize("lazy", [False, True], ids=["eager", "lazy"])
def test_set_signal_type_on_plain_signal2d(lazy):
    s = hs.signals.Signal2D(np.arange(2 * 3 * 8 * 8, dtype=np.float32).reshape(2, 3, 8, 8))
    if lazy:
        s = s.as_lazy()
    s.set_signal_type("fused_stem")
    assert type(s) is (LazyFusedSTEMDiffraction if lazy else FusedSTEMDiffraction)


@pytest.mark.parametrize("lazy", [False, True], ids=["eager", "lazy"])
def test_set_signal_type_on_spectrum_image(fresh_scan, lazy):
    eds = fresh_scan("chemistry_only", lazy=lazy).eds
    assert type(eds) is (es.LazyEDSTEMSpectrum if lazy else es.EDSTEMSpectrum)
    eds.set_signal_type("fused_stem")
    assert type(eds) is (LazyFusedSTEMSignal if lazy else FusedSTEMSignal)
    plain = hs.signals.Signal1D(np.ones((2, 3, 16)))
    if lazy:
        plain = plain.as_lazy()
    plain.set_signal_type("fused_stem")
    assert type(plain) is (LazyFusedSTEMSignal if lazy else FusedSTEMSignal)


def _computed(signal):
    """An eager copy of a lazy signal (``compute`` works in place)."""
    signal = signal.deepcopy()
    signal.compute()
    return signal


def _assert_same_features(a, b):
    assert type(a) is type(b)
    np.testing.assert_array_equal(np.asarray(a.data), np.asarray(b.data))
    assert a.axes_manager.as_dictionary().keys() == b.axes_manager.as_dictionary().keys()
    for axis_a, axis_b in zip(a.axes_manager._axes, b.axes_manager._axes):
        assert axis_a.name == axis_b.name
        assert axis_a.units == axis_b.units
        np.testing.assert_array_equal(axis_a.axis, axis_b.axis)
    pa = a.metadata.Features.parameters.as_dictionary()
    pb = b.metadata.Features.parameters.as_dictionary()
    assert pa.keys() == pb.keys()
    for key in pa:
        np.testing.assert_array_equal(pa[key], pb[key])


@pytest.mark.parametrize("lazy", [False, True], ids=["eager", "lazy"])
def test_sdt_features_method_equals_function(fresh_scan, lazy):
    dp = fresh_scan("structure_only", lazy=lazy).dp
    by_function = stemfuse_hs.sdt_features(dp, fraction=0.3, binning=2)
    dp.set_signal_type("fused_stem")
    by_method = dp.sdt_features(fraction=0.3, binning=2)
    if lazy:
        assert type(by_method) is LazyFusedSTEMSignal
        by_function, by_method = _computed(by_function), _computed(by_method)
    assert type(by_method) is FusedSTEMSignal
    _assert_same_features(by_method, by_function)
    np.testing.assert_array_equal(
        by_method.metadata.Features.selected_mask.data, by_function.metadata.Features.selected_mask.data
    )


@pytest.mark.parametrize("lazy", [False, True], ids=["eager", "lazy"])
def test_variance_features_method_equals_function(fresh_scan, lazy):
    eds = fresh_scan("chemistry_only", lazy=lazy).eds
    kwargs = dict(exclude_lines=["Cu_Ka", "Cu_La"], quantile=0.8)
    by_function = stemfuse_hs.variance_features(eds, **kwargs)
    eds.set_signal_type("fused_stem")
    by_method = eds.variance_features(**kwargs)
    if lazy:
        assert type(by_method) is LazyFusedSTEMSignal
        by_function, by_method = _computed(by_function), _computed(by_method)
    assert type(by_method) is FusedSTEMSignal
    _assert_same_features(by_method, by_function)
    np.testing.assert_array_equal(
        by_method.metadata.Features.kept_channels.data, by_function.metadata.Features.kept_channels.data
    )


def test_a_single_feature_signal_is_a_features_signal():
    import numpy as np

    from stemfuse_hs.signals._axes import build_features_signal, index_axis

    axes = [index_axis("y", 2, True), index_axis("x", 3, True), index_axis("feature", 1)]
    assert type(build_features_signal(np.zeros((2, 3, 1), np.float32), axes)).__name__ == "FusedSTEMSignal"
