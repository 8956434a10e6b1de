"""Fusion: block layout, weighting that means what it says, reference arithmetic."""

import re
import warnings

import dask.array as da
import numpy as np
import pytest
from sklearn.preprocessing import RobustScaler

import hyperspy.api as hs
import stemfuse_hs
from stemfuse_hs.data import synthetic_scan
from stemfuse_hs.fusion import block_discreteness, fuse_blocks, robust_statistics, sample_rows


@pytest.fixture(scope="module")
def four():
    return synthetic_scan("four_phases", size="tiny", seed=0)


@pytest.fixture(scope="module")
def structure():
    return synthetic_scan("structure_only", size="tiny", seed=0)


def test_hs_fuse_is_registered_and_matches_function(four):
    assert hs.fuse is not None
    a = hs.fuse(four.dp, four.eds)
    b = stemfuse_hs.fuse(four.dp, four.eds)
    np.testing.assert_array_equal(a.data, b.data)


def test_fused_signal_layout_and_metadata(four):
    fused = stemfuse_hs.fuse(four.dp, four.eds)
    assert fused.metadata.Signal.signal_type == "fused_stem"
    assert type(fused).__name__ == "FusedSTEMSignal"
    nav_in = [(a.name, a.scale, a.offset, a.units) for a in four.dp.axes_manager.navigation_axes]
    nav_out = [(a.name, a.scale, a.offset, a.units) for a in fused.axes_manager.navigation_axes]
    assert nav_in == nav_out
    meta = fused.metadata.Fusion
    assert meta.block_names == ["diffraction", "eds"]
    slices = np.asarray(meta.block_slices)
    assert slices[0, 0] == 0 and slices[0, 1] == slices[1, 0] and slices[1, 1] == fused.axes_manager.signal_shape[0]
    assert meta.Blocks.diffraction.extractor == "sdt"
    assert meta.Blocks.eds.extractor == "variance"
    assert meta.Blocks.eds.source_title == four.eds.metadata.General.title
    assert meta.parameters.weighting == "auto"
    assert meta.Blocks.diffraction.feature_parameters["fraction"] == 0.4


def test_method_on_signal_equals_function(four):
    dp = four.dp.deepcopy()
    dp.set_signal_type("fused_stem")
    np.testing.assert_array_equal(dp.fuse(four.eds).data, stemfuse_hs.fuse(four.dp, four.eds).data)


def test_mismatched_scans_are_refused_with_both_shapes(four):
    eds = four.eds.inav[:, :-1]
    with pytest.raises(ValueError, match=re.escape("navigation shapes (48, 32) (argument 1) and (48, 31) (argument 2)")):
        stemfuse_hs.fuse(four.dp, eds)


def test_transposed_scan_is_named(four):
    eds = four.eds.T.T  # same
    swapped = eds.transpose(navigation_axes=[1, 0])
    with pytest.raises(ValueError, match="looks transposed"):
        stemfuse_hs.fuse(four.dp, swapped)


def test_scale_mismatch_warns(four):
    eds = four.eds.deepcopy()
    eds.axes_manager.navigation_axes[0].scale *= 2
    with pytest.warns(UserWarning, match="differs between argument 1"):
        stemfuse_hs.fuse(four.dp, eds)


def test_needs_two_signals(four):
    with pytest.raises(ValueError, match=re.escape("fuse needs two or more signals of the same scan, got 1.")):
        stemfuse_hs.fuse(four.dp)


def test_weights_must_match_blocks(four):
    with pytest.raises(ValueError, match=re.escape("weights has 3 values for 2 blocks; give one per block.")):
        stemfuse_hs.fuse(four.dp, four.eds, weights=[1, 1, 1])
    with pytest.raises(ValueError, match="non-negative"):
        stemfuse_hs.fuse(four.dp, four.eds, weights=[1, -1])


def test_reference_weighting_is_the_notebook_arithmetic(four):
    dp = stemfuse_hs.sdt_features(four.dp, std_scale="linear", normalize=None)
    eds = stemfuse_hs.variance_features(four.eds, normalize=None)
    fused = stemfuse_hs.fuse(dp, eds, weighting="reference", reference_factor=2.4)
    n = int(np.prod(dp.axes_manager.navigation_shape))
    combined = np.concatenate([dp.data.reshape(n, -1), eds.data.reshape(n, -1) * np.exp(2.4)], axis=1)
    expected = RobustScaler(with_centering=True).fit_transform(combined.astype(np.float64))
    np.testing.assert_allclose(fused.data.reshape(n, -1), expected, rtol=1e-4, atol=1e-4)


def test_reference_factor_acts_only_on_zero_iqr_features():
    """Why the reference weighting misleads: the factor cancels wherever the IQR is non-zero."""
    rng = np.random.default_rng(0)
    dense = rng.normal(size=(400, 5))
    sparse = (rng.random((400, 3)) < 0.1).astype(float)
    block = np.hstack([dense, sparse])
    one = fuse_blocks([block, block], (20, 20), weighting="reference", reference_factors=[1.0, 1.0]).matrix
    ten = fuse_blocks([block, block], (20, 20), weighting="reference", reference_factors=[1.0, 10.0]).matrix
    np.testing.assert_allclose(ten[:, 8:13], one[:, 8:13], atol=1e-5)  # dense: factor gone
    np.testing.assert_allclose(ten[:, 13:], 10 * one[:, 13:], atol=1e-5)  # sparse: factor stays


def test_auto_weights_silence_a_noise_block(structure):
    """Phases differing only in structure: EDS is noise and must not dilute diffraction."""
    fused = stemfuse_hs.fuse(structure.dp, structure.eds)
    weights = dict(zip(fused.metadata.Fusion.block_names, fused.metadata.Fusion.weights))
    assert weights["diffraction"] == 1.0
    assert weights["eds"] < 0.3
    shares = fused.block_shares()
    assert shares["diffraction"] > 0.9


def test_user_weights_replace_auto_and_are_reported(four):
    fused = stemfuse_hs.fuse(four.dp, four.eds, weights=[1.0, 3.0])
    np.testing.assert_allclose(fused.metadata.Fusion.weights, [1.0, 3.0])
    shares = fused.block_shares()
    equal = stemfuse_hs.fuse(four.dp, four.eds, weighting="equal").block_shares()
    assert shares["eds"] > equal["eds"]
    assert sum(shares.values()) == pytest.approx(1.0)


def test_equal_weighting_gives_blocks_equal_leading_variance(four):
    """Each block divided by its first singular value (multiple factor analysis)."""
    fused = stemfuse_hs.fuse(four.dp, four.eds, weighting="equal")
    n = int(np.prod(fused.axes_manager.navigation_shape))
    matrix = fused.data.reshape(n, -1).astype(np.float64)
    tops = []
    for a, b in np.asarray(fused.metadata.Fusion.block_slices):
        block = matrix[:, a:b] - matrix[:, a:b].mean(axis=0)
        tops.append(np.linalg.svd(block, compute_uv=False)[0] / np.sqrt(n))
    assert tops[0] == pytest.approx(tops[1], rel=1e-3)
    assert tops[0] == pytest.approx(1.0, rel=1e-3)


def test_lazy_fusion_equals_eager_and_stays_lazy(four):
    eager = stemfuse_hs.fuse(four.dp, four.eds)
    lazy = stemfuse_hs.fuse(four.dp.as_lazy(), four.eds.as_lazy())
    assert isinstance(lazy.data, da.Array)
    assert type(lazy).__name__ == "LazyFusedSTEMSignal"
    np.testing.assert_allclose(lazy.data.compute(), eager.data, rtol=1e-5, atol=1e-5)


def test_fuse_accepts_precomputed_features(four):
    dp = stemfuse_hs.sdt_features(four.dp, fraction=0.2)
    fused = stemfuse_hs.fuse(dp, four.eds)
    a, b = np.asarray(fused.metadata.Fusion.block_slices)[0]
    assert b - a == dp.axes_manager.signal_shape[0]


def test_sample_rows_keeps_whole_rows():
    index = sample_rows((10, 7), 30)
    assert index.size == 28 and np.all(np.diff(index.reshape(-1, 7), axis=1) == 1)


def test_robust_statistics_keeps_sparse_channels_on_the_block_scale():
    rng = np.random.default_rng(1)
    sample = np.hstack([rng.normal(0, 2, (200, 3)), (rng.random((200, 1)) < 0.05).astype(float)])
    _, scale = robust_statistics(sample)
    assert scale[3] == pytest.approx(np.median(scale[:3]))
    _, scale_ref = robust_statistics(sample, zero_iqr="one")
    assert scale_ref[3] == 1.0


def test_robust_statistics_leaves_a_fortran_ordered_sample_unchanged():
    # Its transpose is C-contiguous: partitioned without a copy it came back reordered.
    sample = np.asfortranarray(np.random.default_rng(2).normal(size=(50, 4)))
    before = sample.copy()
    centre, _ = robust_statistics(sample)
    np.testing.assert_array_equal(sample, before)
    np.testing.assert_allclose(centre, np.median(before, axis=0))


def test_block_discreteness_separates_phases_from_continuum():
    rng = np.random.default_rng(0)
    rows, cols, p = 32, 32, 12
    noise = rng.normal(size=(rows * cols, p))
    gradient = np.linspace(-3, 3, rows * cols)[:, None] * rng.normal(size=(1, p))
    phases = (np.arange(rows * cols) % cols >= cols // 2)[:, None] * 2.0 * rng.normal(size=(1, p))
    assert block_discreteness(noise, cols) < 0.3
    assert block_discreteness(noise + gradient, cols) < 0.4
    assert block_discreteness(noise + phases, cols) > 0.7


def test_inputs_are_not_modified(four):
    dp, eds = four.dp.deepcopy(), four.eds.deepcopy()
    before = (dp.data.copy(), eds.data.copy(), dp.metadata.as_dictionary(), eds.metadata.as_dictionary())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stemfuse_hs.fuse(dp, eds)
    np.testing.assert_array_equal(dp.data, before[0])
    np.testing.assert_array_equal(eds.data, before[1])
    assert dp.metadata.as_dictionary() == before[2]
    assert eds.metadata.as_dictionary() == before[3]
    assert type(dp).__name__ == "Diffraction2D"


def test_blocks_are_named_by_the_recorded_modality_with_a_guess_for_old_files(four):
    radial = stemfuse_hs.radial_features(four.dp)
    lines = stemfuse_hs.line_features(four.eds, exclude_lines=["Cu_Ka"])
    assert radial.metadata.Features.modality == "diffraction"
    assert lines.metadata.Features.modality == "eds"
    assert stemfuse_hs.fuse(radial, lines).metadata.Fusion.block_names == ["diffraction", "eds"]
    # Saved by a version that did not record the modality: guessed from the extractor, as then.
    old_sdt, old_radial = stemfuse_hs.sdt_features(four.dp), radial.deepcopy()
    for signal in (old_sdt, old_radial):
        signal.metadata.Features.__delattr__("modality")
    assert stemfuse_hs.fuse(old_sdt, old_radial).metadata.Fusion.block_names == ["diffraction", "features"]
