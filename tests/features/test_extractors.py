"""Radial, annular, cepstrum, binary and X-ray line extractors (issue #9).

Shapes, eager == lazy, inputs untouched, fusion, and whether each extractor
separates the phases it is meant for on the synthetic scans (ARI against the
ground truth). The "same spacings, different symmetry" case is derived from
the ``chemistry_only`` scan, whose two domains share one L2_1 [001] single
crystal pattern: the patterns of domain 1 are replaced by their rotational
average about the (drifting) beam before the Poisson noise, i.e. the
fibre-textured / nanocrystalline form of the same crystal, with exactly the
same radial profile.
"""

import warnings

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

import stemfuse_hs
from stemfuse_hs.data import synthetic_scan


def textured_dp(seed=0):
    """Single crystal (truth 0) against its rotational average (truth 1)."""
    scan = synthetic_scan("chemistry_only", size="tiny", seed=seed)
    expected = scan.expected_dp()
    h, w = expected.shape[-2:]
    yy, xx = np.mgrid[:h, :w]
    for r, c in zip(*np.nonzero(scan.truth == 1)):
        bx, by = scan.beam_center[r, c]
        radius = np.hypot(yy - by, xx - bx).ravel()
        bins = (radius / 0.25).astype(int)
        sums, counts = np.bincount(bins, expected[r, c].ravel()), np.bincount(bins)
        ok = counts > 0
        centres = (np.flatnonzero(ok) + 0.5) * 0.25
        expected[r, c] = np.interp(radius, centres, sums[ok] / counts[ok]).reshape(h, w)
    dp = scan.dp.deepcopy()
    dp.data = np.random.default_rng(seed).poisson(expected).astype(np.uint16)
    return dp, scan.truth


# One modality's features alone keep thickness pieces of a phase apart at
# the fused pipeline's default merge threshold (0.55, chosen for fused
# SDT + EDS features, docs/merge_sweep.csv); single-extractor comparisons
# use the stricter merge (docs/extractors.rst says so).
MERGE_THRESHOLD = 0.6


def ari(features, truth, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        labels = features.cluster(random_state=0, merge_threshold=MERGE_THRESHOLD, show_progressbar=False, **kwargs)
    return adjusted_rand_score(truth.ravel(), labels.data.ravel())


@pytest.fixture(scope="module")
def structure():
    return synthetic_scan("structure_only", size="tiny")


@pytest.fixture(scope="module")
def structure_lazy():
    return synthetic_scan("structure_only", size="tiny", lazy=True)


@pytest.fixture(scope="module")
def chemistry():
    # Ten times the default dose: at the default tens of X-rays per
    # spectrum no EDS extractor (variance_features included) separates the
    # two Heusler compositions position by position.
    return synthetic_scan("chemistry_only", size="tiny", dose=10.0)


@pytest.fixture(scope="module")
def textured():
    return textured_dp()


DIFFRACTION = {
    "radial_features": {},
    "annular_features": {},
    "cepstrum_features": {"fraction": 0.5},
    "binary_features": {},
}


# --- shapes, axes, metadata ---------------------------------------------------


def test_documented_shapes_and_metadata(structure):
    dp = structure.dp
    nav = dp.axes_manager.navigation_shape
    radial = stemfuse_hs.radial_features(dp)
    n_rings = radial.metadata.Features.parameters.npt
    assert radial.data.shape == (32, 48, n_rings) and radial.data.dtype == np.float32
    assert radial.axes_manager.signal_axes[0].units == "1/nm"
    assert stemfuse_hs.radial_features(dp, variance=True).data.shape == (32, 48, 2 * n_rings)

    annular = stemfuse_hs.annular_features(dp, n_sectors=6, ring_edges=[3, 7, 11, 14])
    assert annular.data.shape == (32, 48, 3 * (6 + 1))
    plain = stemfuse_hs.annular_features(dp, n_sectors=6, ring_edges=[3, 7, 11, 14], contrast=False)
    assert plain.data.shape == (32, 48, 18)
    labels = plain.metadata.Features.sector_labels.data
    assert labels.shape == (32, 32) and set(np.unique(labels)) == set(range(-1, 18))

    cep = stemfuse_hs.cepstrum_features(dp)  # 16 x 16 binned, crop 0.5 -> 9 x 9, half without the origin
    assert cep.data.shape == (32, 48, 40)
    assert stemfuse_hs.cepstrum_features(dp, fraction=0.25).data.shape == (32, 48, 10)

    binary = stemfuse_hs.binary_features(dp)
    beam = binary.metadata.Features.beam_mask.data
    assert binary.data.shape == (32, 48, int((beam == 0).sum()))
    assert set(np.unique(binary.data)) <= {0.0, 1.0}

    for features in (radial, annular, cep, binary):
        assert features.axes_manager.navigation_shape == nav
        for a, b in zip(features.axes_manager.navigation_axes, dp.axes_manager.navigation_axes):
            assert (a.name, a.scale, a.units) == (b.name, b.scale, b.units)
        assert type(features).__name__ == "FusedSTEMSignal"
        assert features.metadata.Features.excluded_positions.shape == (32, 48)


def test_line_features_shapes_lines_and_windows(chemistry):
    eds = chemistry.eds
    features = stemfuse_hs.line_features(eds)
    meta = features.metadata.Features
    assert list(meta.parameters.lines) == ["Mn_Ka", "Ni_Ka", "Cu_Ka", "Ga_Ka"]  # by energy
    assert features.data.shape == (32, 48, 4)
    assert meta.windows.shape == (4, 2) and meta.background_windows.shape == (4, 2, 2)
    low, high = meta.windows[1]
    assert low < 7.478 < high  # Ni Ka
    assert meta.background_windows[1][0][1] == pytest.approx(low)
    per_channel = stemfuse_hs.line_features(eds, elements=["Ni", "Mn"], per_channel=True)
    assert per_channel.data.shape[-1] == len(per_channel.metadata.Features.feature_lines) > 2
    assert set(per_channel.metadata.Features.feature_lines) == {"Ni_Ka", "Mn_Ka"}
    assert stemfuse_hs.line_features(eds, exclude_lines=["Cu_Ka"]).data.shape == (32, 48, 3)


def test_line_background_subtraction_removes_a_flat_continuum():
    from stemfuse_hs.features import line_intensities

    energies = np.arange(1000) * 0.01
    spectra = np.full((3, 4, 1000), 5.0)
    spectra[:, :, 795:815] += 10.0  # Cu Ka at 8.048 keV, in half the scan
    spectra[:2] = 5.0
    result = line_intensities(spectra, energies, ["Cu_Ka"], scale="linear", normalize=None)
    assert np.allclose(result.features[:2], 0.0, atol=1e-3)
    assert float(result.features[2].mean()) == pytest.approx(200.0, rel=0.05)
    raw = line_intensities(spectra, energies, ["Cu_Ka"], scale="linear", normalize=None, background=False)
    assert float(raw.features[0, 0, 0]) > 50  # the continuum left in


# --- eager == lazy, inputs untouched --------------------------------------------


@pytest.mark.parametrize("name", sorted(DIFFRACTION))
def test_lazy_equals_eager_and_input_untouched(name, structure, structure_lazy):
    function = getattr(stemfuse_hs, name)
    before = structure.dp.data.copy()
    metadata = structure.dp.metadata.as_dictionary()
    eager = function(structure.dp, **DIFFRACTION[name])
    lazy = function(structure_lazy.dp, **DIFFRACTION[name])
    assert not eager._lazy and lazy._lazy
    assert type(lazy).__name__ == "LazyFusedSTEMSignal"
    np.testing.assert_allclose(lazy.data.compute(), eager.data, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(structure.dp.data, before)
    assert structure.dp.metadata.as_dictionary() == metadata
    assert structure_lazy.dp._lazy


def test_line_features_lazy_equals_eager_and_input_untouched(chemistry):
    lazy_scan = synthetic_scan("chemistry_only", size="tiny", dose=10.0, lazy=True)
    before = chemistry.eds.data.copy()
    eager = stemfuse_hs.line_features(chemistry.eds)
    lazy = stemfuse_hs.line_features(lazy_scan.eds)
    np.testing.assert_allclose(lazy.data.compute(), eager.data, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(chemistry.eds.data, before)


def test_nan_policy_exclude_records_positions(structure):
    dp = structure.dp.deepcopy()
    dp.data = dp.data.astype(np.float32)
    dp.data[3, 5, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        stemfuse_hs.radial_features(dp)
    for name in sorted(DIFFRACTION):
        features = getattr(stemfuse_hs, name)(dp, nan_policy="exclude", **DIFFRACTION[name])
        excluded = features.metadata.Features.excluded_positions
        assert excluded.sum() == 1 and excluded[3, 5]
        assert np.all(np.isfinite(features.data))


# --- methods on the "fused_stem" signals, fusion, metric ------------------------


def test_methods_on_fused_stem_signals_and_fuse(structure, chemistry):
    dp = structure.dp.deepcopy()
    dp.set_signal_type("fused_stem")
    for name in sorted(DIFFRACTION):
        assert getattr(dp, name)(**DIFFRACTION[name]).metadata.Features.extractor == name.split("_")[0]
    eds = chemistry.eds.deepcopy()
    eds.set_signal_type("fused_stem")
    lines = eds.line_features()
    assert lines.metadata.Features.extractor == "lines"
    radial = stemfuse_hs.radial_features(chemistry.dp)
    annular = stemfuse_hs.annular_features(chemistry.dp)
    fused = stemfuse_hs.fuse(radial, annular, lines)
    assert fused.data.shape == (32, 48, radial.data.shape[-1] + annular.data.shape[-1] + lines.data.shape[-1])


def test_jaccard_metric_is_accepted():
    from stemfuse_hs.clustering.embed import METRICS, check_embed_parameters

    assert "jaccard" in METRICS
    kwargs = dict(n_components=3, n_neighbors=10, min_dist=0.0, densmap=True, pca_components=None,
                  random_state=0, n_jobs=1)
    assert check_embed_parameters(metric="jaccard", **kwargs)["metric"] == "jaccard"


# --- validation -------------------------------------------------------------------


def test_clear_errors(structure, chemistry):
    dp, eds = structure.dp, chemistry.eds
    with pytest.raises(ValueError, match="4D-STEM"):
        stemfuse_hs.radial_features(eds)
    with pytest.raises(ValueError, match="spectrum image"):
        stemfuse_hs.line_features(dp)
    with pytest.raises(ValueError, match="outer radius must exceed"):
        stemfuse_hs.radial_features(dp, radial_range=(5, 2))
    with pytest.raises(ValueError, match="scale='cubic'"):
        stemfuse_hs.radial_features(dp, scale="cubic")
    with pytest.raises(ValueError, match="hold no detector pixel"):
        stemfuse_hs.annular_features(dp, n_sectors=64, ring_edges=[2, 3])
    with pytest.raises(ValueError, match="strictly increasing"):
        stemfuse_hs.annular_features(dp, ring_edges=[5, 3])
    with pytest.raises(ValueError, match="crop must be in"):
        stemfuse_hs.cepstrum_features(dp, crop=0)
    with pytest.raises(TypeError, match="sigma must be a finite real number"):
        stemfuse_hs.binary_features(dp, sigma="3")
    with pytest.raises(ValueError, match="lines or elements, not both"):
        stemfuse_hs.line_features(eds, lines=["Ni_Ka"], elements=["Ni"])
    with pytest.raises(ValueError, match="has no line 'Kz'"):
        stemfuse_hs.line_features(eds, lines=["Ni_Kz"])
    bare = eds.deepcopy()
    del bare.metadata.Sample
    with pytest.raises(ValueError, match="names no elements"):
        stemfuse_hs.line_features(bare)


# --- which phases each extractor separates (ARI vs ground truth) -----------------


def test_radial_separates_different_lattice_spacings(structure):
    # fcc (a = 0.3595 nm) against bcc (a = 0.2866 nm): rings at other radii.
    # How well depends on the seed of the embedding: random_state 0-9 gave
    # ARI 0.55-0.85 (mean 0.64; 0.82 for 0) with umap-learn's layout (the
    # default at this size) and 0.50-0.93 (mean 0.70; 0.64 for 0) with the
    # parallel one (measured 2026-12-04).
    assert ari(stemfuse_hs.radial_features(structure.dp), structure.truth) > 0.5


def test_same_spacings_different_symmetry(textured):
    # A single crystal against its rotational average: identical radial
    # profiles, so radial features fail; SDT and annular sectors see the
    # spots (so does radial_features(variance=True): ARI 0.72 in
    # benchmarks/extractor_ari.py, not repeated here to keep the file fast).
    # SDT splits the textured half in two on this seed (ARI 0.735; seeds 1
    # and 2 give 1.0 and 0.89, measured 2026-12-02), so its bound is lower.
    dp, truth = textured
    assert ari(stemfuse_hs.radial_features(dp), truth) < 0.3
    assert ari(stemfuse_hs.annular_features(dp), truth) > 0.8
    assert ari(stemfuse_hs.sdt_features(dp), truth) > 0.7


def test_binary_features_are_clustered_as_they_are_with_jaccard(textured):
    # Principal components preserve euclidean distances only: with the
    # jaccard metric the 0/1 features go to UMAP untouched (projected on
    # components they scored 0.00 here instead of 0.81).
    dp, truth = textured
    labels = stemfuse_hs.binary_features(dp).cluster(random_state=0, metric="jaccard", merge_threshold=MERGE_THRESHOLD)
    assert labels.parameters["pca_components"] == -1
    assert adjusted_rand_score(truth.ravel(), np.asarray(labels.data).ravel()) > 0.7


def test_cepstrum_separates_structures(structure):
    # Binary features with metric="jaccard" reach 0.60 here and 0.81 on the
    # textured case (benchmarks/extractor_ari.py); not repeated, for speed.
    assert ari(stemfuse_hs.cepstrum_features(structure.dp, fraction=0.4), structure.truth) > 0.7


def test_lines_see_chemistry_radial_does_not(chemistry):
    assert ari(stemfuse_hs.line_features(chemistry.eds, exclude_lines=["Cu_Ka"]), chemistry.truth) > 0.8
    assert ari(stemfuse_hs.radial_features(chemistry.dp), chemistry.truth) < 0.3
