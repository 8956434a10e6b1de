"""Robustness: NaN and inf (aborted scan lines, failed dark subtraction).

By default they are refused with a message saying how many positions and
the first; ``nan_policy="exclude"`` leaves those positions out of every
statistic, gives them neutral features, records them and carries them
through fusion (masks combined) and clustering (label -1, no membership).
"""

import re
import warnings

import dask.array as da
import numpy as np
import pytest

import hyperspy.api as hs
import stemfuse_hs
from _helpers import dp_signal, eds_signal
from stemfuse_hs.fusion import fuse_blocks

SCAN = (5, 8)


def _raw(seed=0):
    rng = np.random.default_rng(seed)
    patterns = rng.poisson(4.0, size=SCAN + (12, 12)).astype(np.float32)
    patterns[:, :, 5:7, 5:7] += 80
    patterns[:2, :, 2, 9] += 30
    patterns[:, :4, 9, 2] += 30
    spectra = rng.poisson(2.0, size=SCAN + (40,)).astype(np.float32)
    spectra[:2, :, 12] += 20
    spectra[:, 4:, 30] += 20
    return patterns, spectra


def _poisoned():
    """NaN over the last scan row (aborted), inf and -inf at single pixels."""
    patterns, spectra = _raw()
    patterns[-1] = np.nan
    patterns[1, 3, 0, 0] = np.inf
    spectra[-1] = np.nan
    spectra[2, 6, 5] = -np.inf
    dp_bad = np.zeros(SCAN, bool)
    dp_bad[-1] = True
    dp_bad[1, 3] = True
    eds_bad = np.zeros(SCAN, bool)
    eds_bad[-1] = True
    eds_bad[2, 6] = True
    return patterns, spectra, dp_bad, eds_bad


def _eager(signal):
    if signal._lazy:
        assert isinstance(signal.data, da.Array), "lazy input must give a lazy result"
        signal = signal.deepcopy()
        signal.compute()
    return signal


SDT_KW = dict(binning=1, fraction=0.3, beam_centre=(5.5, 5.5), beam_radius=2)


# ---------------------------------------------------------------------------
# Refused by default
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("lazy", [False, True], ids=["eager", "lazy"])
def test_default_refuses_with_count_and_first_position(lazy):
    patterns, spectra, _, _ = _poisoned()
    with pytest.raises(ValueError, match=re.escape("at 9 positions, first at navigation index (1, 3)")) as excinfo:
        _eager(stemfuse_hs.sdt_features(dp_signal(patterns, lazy), **SDT_KW))
    assert "nan_policy='exclude'" in str(excinfo.value)
    with pytest.raises(ValueError, match=re.escape("at 9 positions, first at navigation index (2, 6)")):
        _eager(stemfuse_hs.variance_features(eds_signal(spectra, lazy), quantile=0.8))
    with pytest.raises(ValueError, match="NaN or inf at 9 positions"):
        stemfuse_hs.fuse(dp_signal(patterns, lazy), eds_signal(spectra, lazy))


def test_float64_values_beyond_float32_are_refused_not_turned_into_inf():
    patterns, _ = _raw()
    patterns = patterns.astype(np.float64)
    patterns[0, 0, 3, 3] = 1e300
    with pytest.raises(ValueError, match="beyond float32's range"):
        stemfuse_hs.sdt_features(dp_signal(patterns), **SDT_KW)
    # Excluding treats the overflowing position as non-finite.
    features = stemfuse_hs.sdt_features(dp_signal(patterns), nan_policy="exclude", **SDT_KW)
    assert features.metadata.Features.excluded_positions[0, 0]


# ---------------------------------------------------------------------------
# Excluded: left out of every statistic, neutral features, recorded
# ---------------------------------------------------------------------------
def _flat_reference(extractor, data, bad, **kwargs):
    """The extractor on the included positions only, as a 1-D scan: the statistics to expect."""
    kept = data[~bad]
    signal = dp_signal(kept) if data.ndim == 4 else eds_signal(kept)
    return extractor(signal, **kwargs)


@pytest.mark.parametrize("lazy", [False, True], ids=["eager", "lazy"])
@pytest.mark.parametrize("normalize", ["total", None])
def test_sdt_exclude_matches_the_scan_without_those_positions(lazy, normalize):
    patterns, _, dp_bad, _ = _poisoned()
    features = stemfuse_hs.sdt_features(dp_signal(patterns, lazy), nan_policy="exclude", normalize=normalize, **SDT_KW)
    md = features.metadata.Features
    assert md.parameters.nan_policy == "exclude"
    assert isinstance(md.excluded_positions, np.ndarray) and md.excluded_positions.dtype == bool
    np.testing.assert_array_equal(md.excluded_positions, dp_bad)
    features = _eager(features)
    reference = _flat_reference(stemfuse_hs.sdt_features, patterns, dp_bad, normalize=normalize, **SDT_KW)
    np.testing.assert_allclose(md.std_map.data, reference.metadata.Features.std_map.data, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(md.mean_pattern.data, reference.metadata.Features.mean_pattern.data, rtol=1e-5)
    np.testing.assert_array_equal(md.selected_mask.data, reference.metadata.Features.selected_mask.data)
    np.testing.assert_allclose(features.data[~dp_bad], reference.data, rtol=1e-5, atol=1e-6)
    # Neutral: the mean features of the included positions.
    np.testing.assert_allclose(features.data[dp_bad], np.broadcast_to(reference.data.mean(axis=0), (dp_bad.sum(), reference.data.shape[-1])), rtol=1e-4, atol=1e-5)
    assert features.data.dtype == np.float32 and np.all(np.isfinite(features.data))


@pytest.mark.parametrize("lazy", [False, True], ids=["eager", "lazy"])
@pytest.mark.parametrize("rule", [dict(quantile=0.8), dict()], ids=["quantile", "poisson"])
def test_variance_exclude_matches_the_scan_without_those_positions(lazy, rule):
    _, spectra, _, eds_bad = _poisoned()
    features = stemfuse_hs.variance_features(eds_signal(spectra, lazy), nan_policy="exclude", **rule)
    md = features.metadata.Features
    np.testing.assert_array_equal(md.excluded_positions, eds_bad)
    features = _eager(features)
    reference = _flat_reference(stemfuse_hs.variance_features, spectra, eds_bad, **rule)
    for name in ("variance", "mean", "threshold", "kept_channels"):
        np.testing.assert_allclose(md[name].data, reference.metadata.Features[name].data, rtol=1e-5, atol=1e-6, err_msg=name)
    np.testing.assert_allclose(features.data[~eds_bad], reference.data, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(features.data[eds_bad][0], reference.data.mean(axis=0), rtol=1e-4, atol=1e-5)


def test_excluded_values_do_not_matter():
    """Whatever else an excluded position holds, the result is the same."""
    patterns, spectra, dp_bad, _ = _poisoned()
    other = patterns.copy()
    other[dp_bad] = 1e6
    other[1, 3, 0, 0] = np.nan
    other[-1, :, 0, 0] = np.nan
    a = stemfuse_hs.sdt_features(dp_signal(patterns), nan_policy="exclude", **SDT_KW)
    b = stemfuse_hs.sdt_features(dp_signal(other), nan_policy="exclude", **SDT_KW)
    np.testing.assert_array_equal(a.data, b.data)


def test_clean_data_is_unchanged_by_exclude():
    patterns, spectra = _raw()
    a = stemfuse_hs.sdt_features(dp_signal(patterns), **SDT_KW)
    b = stemfuse_hs.sdt_features(dp_signal(patterns), nan_policy="exclude", **SDT_KW)
    np.testing.assert_array_equal(a.data, b.data)
    assert not b.metadata.Features.excluded_positions.any()
    assert a.metadata.Features.excluded_positions.shape == SCAN


def test_everything_non_finite_is_a_clear_error():
    patterns, spectra = _raw()
    patterns[:] = np.nan
    patterns[0, 0] = 1.0
    with pytest.raises(ValueError, match=r"39 positions, .*1 position\(s\) would be left, at least two"):
        stemfuse_hs.sdt_features(dp_signal(patterns), nan_policy="exclude", **SDT_KW)


# ---------------------------------------------------------------------------
# Fusion: masks of all blocks combined
# ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fused_pair():
    patterns, spectra, dp_bad, eds_bad = _poisoned()
    eager = stemfuse_hs.fuse(dp_signal(patterns), eds_signal(spectra), nan_policy="exclude")
    lazy = stemfuse_hs.fuse(dp_signal(patterns, True), eds_signal(spectra, True), nan_policy="exclude")
    return eager, lazy, dp_bad | eds_bad


def test_fuse_combines_masks_and_zeroes_excluded_rows(fused_pair):
    eager, lazy, bad = fused_pair
    assert isinstance(lazy.data, da.Array)
    for fused in (eager, _eager(lazy)):
        np.testing.assert_array_equal(fused.metadata.Fusion.excluded_positions, bad)
        assert fused.metadata.Fusion.parameters.nan_policy == "exclude"
        assert np.all(fused.data[bad] == 0) and np.all(np.isfinite(fused.data))
    np.testing.assert_allclose(_eager(lazy).data, eager.data, rtol=1e-5, atol=1e-5)
    shares = stemfuse_hs.block_shares(eager)
    assert sum(shares.values()) == pytest.approx(1.0)


def test_fuse_honours_exclusions_recorded_by_the_extractors():
    patterns, spectra, dp_bad, eds_bad = _poisoned()
    dp = stemfuse_hs.sdt_features(dp_signal(patterns), nan_policy="exclude", **SDT_KW)
    eds = stemfuse_hs.variance_features(eds_signal(spectra), nan_policy="exclude")
    fused = stemfuse_hs.fuse(dp, eds)  # default "raise": recorded exclusions are not errors
    np.testing.assert_array_equal(fused.metadata.Fusion.excluded_positions, dp_bad | eds_bad)


def test_fuse_statistics_ignore_excluded_rows():
    rng = np.random.default_rng(0)
    blocks = [rng.normal(size=(40, 6)), rng.normal(size=(40, 3)) + np.repeat([0, 4], 20)[:, None]]
    excluded = np.zeros(40, bool)
    excluded[[3, 17, 30]] = True
    a = fuse_blocks(blocks, (5, 8), excluded=excluded)
    spoiled = [b.copy() for b in blocks]
    for b in spoiled:
        b[excluded] = np.nan
    b = fuse_blocks(spoiled, (5, 8), excluded=excluded)
    np.testing.assert_array_equal(a.matrix, b.matrix)
    np.testing.assert_array_equal(a.weights, b.weights)
    assert np.all(a.matrix[excluded] == 0)


def test_lazy_fuse_of_unrecorded_nan_features_is_refused_or_excluded():
    patterns, spectra = _raw()
    dp = stemfuse_hs.sdt_features(dp_signal(patterns, True), **SDT_KW)
    eds = stemfuse_hs.variance_features(eds_signal(spectra, True), quantile=0.8)
    # Features from elsewhere, with NaN and no record of exclusions.
    holed = hs.signals.Signal1D(da.where(da.arange(40).reshape(SCAN)[..., None] == 9, np.nan, dp.data))
    holed.metadata.set_item("Features.extractor", "sdt")
    with pytest.raises(ValueError, match=re.escape("fuse: argument 1 holds NaN or inf at 1 position, first at navigation index (1, 1)")):
        stemfuse_hs.fuse(holed, eds)
    fused = stemfuse_hs.fuse(holed, eds, nan_policy="exclude")
    assert isinstance(fused.data, da.Array)
    assert fused.metadata.Fusion.excluded_positions.sum() == 1 and fused.metadata.Fusion.excluded_positions[1, 1]


# ---------------------------------------------------------------------------
# Clustering: excluded positions are noise with no membership
# ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def excluded_labels(scan_cache):
    scan = scan_cache("four_phases")
    dp = scan.dp.deepcopy()
    dp.change_dtype("float32")
    dp.data[-1] = np.nan  # an aborted last line
    dp.data[5, 7, 3, 3] = np.inf
    fused = stemfuse_hs.fuse(dp, scan.eds, nan_policy="exclude")
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # four phases: no "single cluster" warning
        labels = fused.cluster(random_state=0)
    bad = np.zeros(dp.data.shape[:2], bool)
    bad[-1] = True
    bad[5, 7] = True
    return scan, dp, fused, labels, bad


def test_cluster_gives_excluded_positions_label_minus_one_and_no_membership(excluded_labels):
    scan, _, _, labels, bad = excluded_labels
    assert np.all(labels.data[bad] == -1)
    assert np.all(labels.memberships.data[:, bad] == 0)
    assert np.all(np.isnan(labels.embedding.data[bad]))
    assert np.all(np.isfinite(labels.embedding.data[~bad]))
    np.testing.assert_array_equal(labels.metadata.Clustering.excluded_positions, bad)
    assert labels.metadata.Clustering.n_excluded == bad.sum()
    assert labels.metadata.Clustering.n_noise == int(((labels.data < 0) & ~bad).sum())
    assert labels.n_clusters == 4
    from sklearn.metrics import adjusted_rand_score

    assert adjusted_rand_score(scan.truth[~bad], labels.data[~bad]) > 0.8


def test_cluster_means_of_raw_data_with_nan_positions(excluded_labels):
    _, dp, _, labels, bad = excluded_labels
    mean, std = labels.cluster_statistics(dp)
    assert np.all(np.isfinite(mean.data)) and np.all(np.isfinite(std.data))
    # A NaN position that still weighs in a cluster is refused, not averaged in.
    holed = dp.deepcopy()
    holed.data[0, 0, 1, 1] = np.nan
    with pytest.raises(ValueError, match=re.escape("NaN or inf at 1 position, first at navigation index (0, 0)")):
        labels.cluster_statistics(holed)


def test_lazy_subsample_fit_leaves_excluded_positions_out_as_the_eager_one_does(excluded_labels):
    # Past max_fit_positions lazy features are streamed, never held whole:
    # the excluded positions must still be left out, as in memory.
    scan, dp, fused, _, bad = excluded_labels
    n_fit = 700
    eager = fused.cluster(max_fit_positions=n_fit, random_state=0)
    lazy_fused = stemfuse_hs.fuse(dp.as_lazy(), scan.eds.as_lazy(), nan_policy="exclude")
    lazy = lazy_fused.cluster(max_fit_positions=n_fit, random_state=0)
    assert lazy.metadata.get_item("Clustering.parameters.fit") == "subsample"
    np.testing.assert_array_equal(np.asarray(lazy.data), np.asarray(eager.data))
    assert np.all(np.asarray(lazy.data)[bad] == -1)
    np.testing.assert_array_equal(lazy.metadata.Clustering.excluded_positions, bad)


def test_cluster_refuses_unrecorded_nan_features(excluded_labels):
    _, _, fused, _, _ = excluded_labels
    holed = fused.deepcopy()
    del holed.metadata.Fusion
    holed.data[2, 3, 0] = np.nan
    holed.data[4, 0, 1] = np.inf
    with pytest.raises(ValueError, match=re.escape("cluster: 2 positions, first at navigation index (2, 3) (array order) hold NaN or inf")):
        holed.cluster(random_state=0)


def test_a_cropped_signal_with_a_stale_mask_warns(excluded_labels):
    _, _, fused, _, _ = excluded_labels
    cropped = fused.inav[:, :10]
    with pytest.warns(UserWarning, match="recorded exclusions are ignored"):
        with pytest.raises(ValueError, match="n_neighbors=500"):
            cropped.cluster(n_neighbors=500)
