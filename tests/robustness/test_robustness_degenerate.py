"""Robustness: degenerate data gives a valid result with a warning, or a clear error.

Constant, dead and hot detector pixels, all-zero patterns, spectra without
chemical contrast, single-phase samples, scans too small for the
clustering, line scans and single positions.
"""

import contextlib
import functools
import re
import warnings

import numpy as np
import pytest

import hyperspy.api as hs
import stemfuse_hs
from _helpers import dp_signal, eds_signal

SDT_KW = dict(binning=1, fraction=0.3, beam_centre=(5.5, 5.5), beam_radius=2)


#: This module's spectrum images: 20 eV channels from 0 keV.
_eds = functools.partial(eds_signal, scale=0.02, offset=0.0)


def _two_phase(scan=(6, 10), seed=0):
    rng = np.random.default_rng(seed)
    patterns = rng.poisson(4.0, size=scan + (12, 12)).astype(np.uint16)
    patterns[..., 5:7, 5:7] += 80
    patterns[: scan[0] // 2, ..., 2, 9] += 30
    spectra = rng.poisson(1.0, size=scan + (64,)).astype(np.uint16)
    spectra[: scan[0] // 2, ..., 20] += 15
    return patterns, spectra


@contextlib.contextmanager
def _no_warning():
    """Fail on any UserWarning inside the block (where the data are fine)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        yield


# ---------------------------------------------------------------------------
# Detector pixels and channels
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("lazy", [False, True], ids=["eager", "lazy"])
def test_constant_dead_pixels_and_channels_are_never_selected(lazy):
    patterns, spectra = _two_phase()
    patterns[..., 0, :] = 0  # a dead row of pixels
    patterns[..., 11, 11] = 7  # a stuck pixel
    spectra[..., 40:50] = 3  # flat channels
    spectra[..., 0:5] = 0  # an empty energy range
    features = stemfuse_hs.sdt_features(dp_signal(patterns, lazy), **SDT_KW)
    md = features.metadata.Features
    assert not md.selected_mask.data[0].any() and not md.selected_mask.data[11, 11]
    variance = stemfuse_hs.variance_features(_eds(spectra, lazy))
    kept = variance.metadata.Features.kept_channels.data.astype(bool)
    assert kept[20] and not kept[40:50].any() and not kept[:5].any()
    for signal in (features, variance):
        values = np.asarray(signal.data)
        assert values.dtype == np.float32 and np.all(np.isfinite(values))


def test_fraction_one_keeps_constant_pixels_as_finite_features():
    patterns, _ = _two_phase()
    patterns[..., 0, :] = 0
    features = stemfuse_hs.sdt_features(dp_signal(patterns), binning=1, fraction=1.0, beam_radius=0)
    assert features.data.shape[-1] == 144 and np.all(np.isfinite(features.data))
    fused = stemfuse_hs.fuse(features, stemfuse_hs.variance_features(_eds(_two_phase()[1])))
    assert np.all(np.isfinite(fused.data))


def test_a_hot_pixel_does_not_capture_the_direct_beam(scan_cache):
    scan = scan_cache("four_phases")
    clean = stemfuse_hs.sdt_features(scan.dp).metadata.Features.parameters.beam_centre
    hot = scan.dp.deepcopy()
    hot.data[..., 3, 27] = np.iinfo(np.uint16).max  # saturated in every frame
    with pytest.warns(UserWarning, match=re.escape("hot pixels?), at unbinned (row, column) [(3, 27)]")):
        features = stemfuse_hs.sdt_features(hot)
    np.testing.assert_allclose(features.metadata.Features.parameters.beam_centre, clean, atol=0.5)
    assert not features.metadata.Features.beam_mask.data[1, 13]


def test_a_given_beam_does_not_look_for_hot_pixels():
    patterns, _ = _two_phase()
    patterns[..., 0, 0] = 60000
    with _no_warning():
        stemfuse_hs.sdt_features(dp_signal(patterns), **SDT_KW)


@pytest.mark.parametrize("lazy", [False, True], ids=["eager", "lazy"])
def test_all_zero_patterns_warn_and_give_zero_features(lazy):
    data = np.zeros((4, 5, 8, 8), np.uint16)
    with pytest.warns(UserWarning, match="no selected detector pixel varies across the scan"):
        features = stemfuse_hs.sdt_features(dp_signal(data, lazy))
    assert np.all(np.asarray(features.data) == 0)


def test_some_all_zero_patterns_stay_zero_and_finite():
    patterns, _ = _two_phase()
    patterns[2, 3] = 0  # a blanked beam
    features = stemfuse_hs.sdt_features(dp_signal(patterns), **SDT_KW)
    assert np.all(features.data[2, 3] == 0) and np.all(np.isfinite(features.data))


def test_no_chemical_contrast_with_the_automatic_threshold_is_refused_clearly():
    spectra = np.random.default_rng(0).poisson(1.0, size=(6, 10, 64)).astype(np.uint16)
    with pytest.raises(ValueError, match=r"^No channel has a variance above the threshold \(poisson rule") as excinfo:
        stemfuse_hs.variance_features(_eds(spectra))
    assert isinstance(excinfo.value, stemfuse_hs.features.NoVaryingChannelError)


# ---------------------------------------------------------------------------
# Fusion of a raw spectrum image without chemical contrast: the block is dropped
# ---------------------------------------------------------------------------
def test_fuse_drops_a_raw_spectrum_image_without_contrast_and_says_so():
    patterns, _ = _two_phase()
    flat = _eds(np.random.default_rng(1).poisson(1.0, size=(6, 10, 64)).astype(np.uint16))
    flat.metadata.General.title = "flat EDS"
    with pytest.warns(UserWarning, match=r"fuse: argument 2 \(flat EDS\) is left out: No channel has a variance"):
        fused = stemfuse_hs.fuse(dp_signal(patterns), flat)
    assert list(fused.metadata.Fusion.block_names) == ["diffraction"]
    assert list(fused.metadata.Fusion.dropped) == ["argument 2 (flat EDS): no channel varies above counting noise"]
    alone = stemfuse_hs.fuse(dp_signal(patterns), dp_signal(patterns))
    np.testing.assert_allclose(fused.data, alone.data[..., : fused.data.shape[-1]], rtol=1e-5, atol=1e-5)
    # Weights follow the blocks that are left.
    with pytest.warns(UserWarning, match="left out"):
        weighted = stemfuse_hs.fuse(flat, dp_signal(patterns), weights=[5.0, 2.0])
    assert list(weighted.metadata.Fusion.weights) == [2.0]
    with pytest.warns(UserWarning, match="left out"):
        with pytest.raises(ValueError, match=r"weights of the blocks left \(\[0.0\]\) are all zero"):
            stemfuse_hs.fuse(dp_signal(patterns), flat, weights=[0.0, 1.0])
    with pytest.warns(UserWarning, match="left out"):
        with pytest.raises(ValueError, match="every argument was left out"):
            stemfuse_hs.fuse(flat, flat)


def test_fuse_keeps_a_spectrum_block_given_as_features():
    patterns, _ = _two_phase()
    flat = _eds(np.random.default_rng(1).poisson(1.0, size=(6, 10, 64)).astype(np.uint16))
    with _no_warning():
        fused = stemfuse_hs.fuse(dp_signal(patterns), stemfuse_hs.variance_features(flat, quantile=0.9))
    assert list(fused.metadata.Fusion.block_names) == ["diffraction", "eds"]
    assert list(fused.metadata.Fusion.dropped) == []


# ---------------------------------------------------------------------------
# Clustering
# ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def single_phase():
    """One phase (a constant pattern and spectrum) under Poisson noise."""
    rng = np.random.default_rng(0)
    pattern = np.full((16, 16), 5.0)
    pattern[6:10, 6:10] = 200
    pattern[2, 2] = pattern[13, 12] = 50
    spectrum = np.full(128, 0.3)
    spectrum[40:43] = 5
    dp = dp_signal(rng.poisson(pattern, size=(16, 20, 16, 16)).astype(np.uint16))
    eds = _eds(rng.poisson(spectrum, size=(16, 20, 128)).astype(np.uint16))
    with pytest.warns(UserWarning, match="is left out"):
        return stemfuse_hs.fuse(dp, eds)


def test_single_phase_gives_one_cluster_and_a_warning(single_phase):
    with pytest.warns(UserWarning, match="found a single cluster. The scan may hold a single phase"):
        labels = single_phase.cluster(random_state=0)
    assert labels.n_clusters == 1 and set(np.unique(labels.data)) <= {-1, 0}
    assert labels.memberships.data.shape == (1, 16, 20)
    mean = labels.cluster_means(single_phase)
    assert mean.data.shape == (1, single_phase.data.shape[-1])


def test_only_noise_gives_a_valid_empty_map_and_a_warning(single_phase):
    with pytest.warns(UserWarning, match="found no cluster: every position is noise"):
        labels = single_phase.cluster(random_state=0, min_cluster_size=0.9, min_samples=300)
    assert labels.n_clusters == 0 and np.all(labels.data == -1)
    assert labels.memberships.data.shape == (0, 16, 20)
    assert labels.metadata.Clustering.n_noise == 320
    assert labels.max_membership.data.shape == (16, 20)
    with pytest.raises(ValueError, match="the label map has no clusters"):
        labels.cluster_means(single_phase)


def test_identical_features_are_one_cluster_without_umap(single_phase, monkeypatch):
    import stemfuse_hs.clustering.embed_and_cluster as module

    monkeypatch.setattr(module, "embed", lambda *a, **k: pytest.fail("UMAP on identical points"))
    same = single_phase.deepcopy()
    same.data[:] = 1.5
    with pytest.warns(UserWarning, match="identical at every position"):
        labels = same.cluster(random_state=0)
    assert labels.n_clusters == 1 and np.all(labels.data == 0)
    assert labels.parameters["merged"] == [[0]]


def test_fewer_positions_than_min_cluster_size_is_refused_before_embedding(single_phase):
    with pytest.raises(ValueError, match=re.escape("min_cluster_size=400 (400 positions) is larger than the number of positions (320).")):
        single_phase.cluster(min_cluster_size=400)


@pytest.mark.parametrize(
    "shape", [(1, 60), (60,), (60, 1)], ids=["one row", "one navigation axis", "one column"]
)
def test_line_scans(shape):
    patterns, spectra = _two_phase(scan=(60, 1))
    patterns = patterns.reshape(shape + patterns.shape[-2:])
    spectra = spectra.reshape(shape + spectra.shape[-1:])
    fused = stemfuse_hs.fuse(dp_signal(patterns), _eds(spectra))
    assert fused.data.shape[:-1] == shape
    labels = fused.cluster(random_state=0, n_neighbors=8)
    assert labels.data.size == 60 and labels.n_clusters >= 1
    assert labels.cluster_means(_eds(spectra)).data.shape[-1] == 64


def test_a_single_position_is_a_clear_error():
    patterns, spectra = _two_phase()
    dp, eds = dp_signal(patterns[:1, :1]), _eds(spectra[:1, :1])
    message = "needs a scan of at least 2 positions, got navigation shape (1, 1) (1 position)"
    with pytest.raises(ValueError, match=re.escape(f"sdt_features {message}")):
        stemfuse_hs.sdt_features(dp)
    with pytest.raises(ValueError, match=re.escape(f"variance_features {message}")):
        stemfuse_hs.variance_features(eds)
    with pytest.raises(ValueError, match=re.escape(f"sdt_features {message}")):
        stemfuse_hs.fuse(dp, eds)
    features = hs.signals.Signal1D(np.ones((1, 1, 5), np.float32))
    features.set_signal_type("fused_stem")
    with pytest.raises(ValueError, match=re.escape("cluster needs a scan of at least two positions")):
        features.cluster()
