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


#: modality -> (scenario, its class before (eager, lazy), after set_signal_type("fused_stem") (eager, lazy))
RETYPE_CASES = {
    "dp": (
        "four_phases", (ps.Diffraction2D, ps.LazyDiffraction2D), (FusedSTEMDiffraction, LazyFusedSTEMDiffraction)
    ),
    "eds": ("chemistry_only", (es.EDSTEMSpectrum, es.LazyEDSTEMSpectrum), (FusedSTEMSignal, LazyFusedSTEMSignal)),
}


@pytest.mark.parametrize("lazy", [False, True], ids=["eager", "lazy"])
@pytest.mark.parametrize("modality", list(RETYPE_CASES))
def test_set_signal_type_on_the_scan_signals(fresh_scan, modality, lazy):
    scenario, before, after = RETYPE_CASES[modality]
    signal = getattr(fresh_scan(scenario, lazy=lazy), modality)
    assert type(signal) is before[lazy]
    signal.set_signal_type("fused_stem")
    assert type(signal) is after[lazy]
    assert signal.metadata.Signal.signal_type == "fused_stem"


@pytest.mark.parametrize("lazy", [False, True], ids=["eager", "lazy"])
def test_pyxem_methods_work_on_fused_stem_diffraction(fresh_scan, lazy):
    dp = fresh_scan("four_phases", lazy=lazy).dp
    dp.set_signal_type("fused_stem")
    assert isinstance(dp, ps.Diffraction2D)
    shifts = dp.inav[:4, :3].get_direct_beam_position(method="center_of_mass")
    assert shifts.data.shape == (3, 4, 2)
    assert np.all(np.isfinite(np.asarray(shifts.data)))


@pytest.mark.parametrize("lazy", [False, True], ids=["eager", "lazy"])
@pytest.mark.parametrize(
    "shape, expected",
    [((2, 3, 8, 8), (FusedSTEMDiffraction, LazyFusedSTEMDiffraction)), ((2, 3, 16), (FusedSTEMSignal, LazyFusedSTEMSignal))],
    ids=["Signal2D", "Signal1D"],
)
def test_set_signal_type_on_plain_signals(shape, expected, lazy):
    signal_class = hs.signals.Signal2D if len(shape) == 4 else hs.signals.Signal1D
    s = signal_class(np.arange(np.prod(shape), dtype=np.float32).reshape(shape))
    if lazy:
        s = s.as_lazy()
    s.set_signal_type("fused_stem")
    assert type(s) is expected[lazy]


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


#: extractor -> (scenario, modality, keyword arguments, metadata.Features mask it records)
METHOD_CASES = {
    "sdt_features": ("structure_only", "dp", dict(fraction=0.3, binning=2), "selected_mask"),
    "variance_features": (
        "chemistry_only", "eds", dict(exclude_lines=["Cu_Ka", "Cu_La"], quantile=0.8), "kept_channels"
    ),
}


@pytest.mark.parametrize("lazy", [False, True], ids=["eager", "lazy"])
@pytest.mark.parametrize("extractor", list(METHOD_CASES))
def test_extractor_method_equals_function(fresh_scan, extractor, lazy):
    scenario, modality, kwargs, mask = METHOD_CASES[extractor]
    signal = getattr(fresh_scan(scenario, lazy=lazy), modality)
    by_function = getattr(stemfuse_hs, extractor)(signal, **kwargs)
    signal.set_signal_type("fused_stem")
    by_method = getattr(signal, extractor)(**kwargs)
    if lazy:
        assert type(by_method) is LazyFusedSTEMSignal
        by_function, by_method = _computed(by_function), _computed(by_method)
    assert type(by_method) is FusedSTEMSignal
    _assert_same_features(by_method, by_function)
    np.testing.assert_array_equal(
        by_method.metadata.Features[mask].data, by_function.metadata.Features[mask].data
    )


def test_a_single_feature_signal_is_a_features_signal():
    import numpy as np

    from stemfuse_hs.signals._axes import build_features_signal, index_axis

    axes = [index_axis("y", 2, True), index_axis("x", 3, True), index_axis("feature", 1)]
    assert type(build_features_signal(np.zeros((2, 3, 1), np.float32), axes)).__name__ == "FusedSTEMSignal"
