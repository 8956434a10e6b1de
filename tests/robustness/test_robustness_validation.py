"""Robustness: every public function refuses bad arguments with a message
that names the parameter, the value given and what is allowed.

No clustering runs here: parameters are checked before any work, so the
label map used by ``cluster_statistics`` is assembled from a made-up result.
"""

import re

import dask.array as da
import numpy as np
import pytest

import hyperspy.api as hs
import stemfuse_hs
from stemfuse_hs import clustering, features, fusion
from stemfuse_hs.clustering.cluster import ClusterResult
from stemfuse_hs.signals.labels import build_cluster_labels


def _diffraction(nav=(4, 6), det=(8, 8), seed=0):
    data = np.random.default_rng(seed).poisson(5.0, size=nav + det).astype(np.uint16)
    data[: nav[0] // 2, ..., 2, 2] += 40  # some structure to select
    return hs.signals.Signal2D(data)


def _spectra(nav=(4, 6), channels=32, seed=1):
    data = np.random.default_rng(seed).poisson(3.0, size=nav + (channels,)).astype(np.uint16)
    data[: nav[0] // 2, :, 10] += 30  # a channel with contrast
    s = hs.signals.Signal1D(data)
    axis = s.axes_manager.signal_axes[0]
    axis.name, axis.units, axis.scale, axis.offset = "Energy", "keV", 0.1, 0.5
    return s


@pytest.fixture(scope="module")
def dp():
    return _diffraction()


@pytest.fixture(scope="module")
def eds():
    return _spectra()


@pytest.fixture(scope="module")
def fused(dp, eds):
    return stemfuse_hs.fuse(dp, eds)


@pytest.fixture(scope="module")
def label_map(fused):
    """A ClusterLabels of two clusters over the 4 x 6 scan, without running UMAP."""
    n = 24
    labels = np.repeat([0, 1], n // 2)
    memberships = np.zeros((n, 2), np.float32)
    memberships[np.arange(n), labels] = 1.0
    result = ClusterResult(labels, memberships, {"min_cluster_size": 2})
    return build_cluster_labels(fused, result, np.zeros((n, 3), np.float32), {"random_state": 0})


def check_message(excinfo, *fragments):
    message = str(excinfo.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"


# ---------------------------------------------------------------------------
# Signal-level functions
# ---------------------------------------------------------------------------
SDT_CASES = [
    (dict(binning=0), ValueError, ["binning", "0"]),
    (dict(binning=2.5), TypeError, ["binning", "2.5"]),
    (dict(binning=True), TypeError, ["binning", "True"]),
    (dict(binning=16), ValueError, ["binning=16", "8 x 8"]),
    (dict(fraction=0), ValueError, ["fraction", "0"]),
    (dict(fraction="0.3"), TypeError, ["fraction", "'0.3'"]),
    (dict(fraction=np.nan), ValueError, ["fraction", "nan"]),
    (dict(std_scale="sqrt"), ValueError, ["std_scale", "'sqrt'", "'log'", "'linear'"]),
    (dict(normalize="max"), ValueError, ["normalize", "'max'", "'total'"]),
    (dict(nan_policy="omit"), ValueError, ["nan_policy", "'omit'", "'exclude'", "'raise'"]),
    (dict(nan_policy=None), TypeError, ["nan_policy", "None"]),
    (dict(beam_centre=(1.0,)), ValueError, ["beam_centre", "(1.0,)"]),
    (dict(beam_centre="ab"), ValueError, ["beam_centre", "'ab'"]),
    (dict(beam_centre=("a", "b")), TypeError, ["beam_centre", "'a'"]),
    (dict(beam_centre=(1.0, np.inf)), TypeError, ["beam_centre", "inf"]),
    (dict(beam_radius=-1), ValueError, ["beam_radius", "-1"]),
    (dict(beam_radius="3"), TypeError, ["beam_radius", "'3'"]),
    (dict(show_progressbar="yes"), TypeError, ["show_progressbar", "'yes'"]),
]


@pytest.mark.parametrize("kwargs, error, fragments", SDT_CASES, ids=[repr(c[0]) for c in SDT_CASES])
def test_sdt_features_bad_parameters(dp, kwargs, error, fragments):
    with pytest.raises(error) as excinfo:
        stemfuse_hs.sdt_features(dp, **kwargs)
    check_message(excinfo, *fragments)


VARIANCE_CASES = [
    (dict(threshold=-1), ValueError, ["threshold", "-1"]),
    (dict(threshold="high"), TypeError, ["threshold", "'high'"]),
    (dict(quantile=1), ValueError, ["quantile", "1"]),
    (dict(threshold=1.0, quantile=0.5), ValueError, ["threshold or quantile"]),
    (dict(exclude_windows=[(5.0, 1.0)]), ValueError, ["exclude_windows", "(5.0, 1.0)"]),
    (dict(exclude_windows=[(1.0, np.nan)]), ValueError, ["exclude_windows", "nan"]),
    (dict(exclude_windows=[("a", "b")]), TypeError, ["exclude_windows", "('a', 'b')"]),
    (dict(exclude_windows=3), TypeError, ["exclude_windows", "3"]),
    (dict(exclude_lines=["Xx_Ka"]), ValueError, ["Xx_Ka"]),
    (dict(exclude_lines=["CuKa"]), ValueError, ["CuKa", "Element_Line"]),
    (dict(exclude_lines=5), TypeError, ["exclude_lines", "5"]),
    (dict(normalize=1), ValueError, ["normalize", "1"]),
    (dict(nan_policy="drop"), ValueError, ["nan_policy", "'drop'"]),
    (dict(show_progressbar=1), TypeError, ["show_progressbar", "1"]),
]


@pytest.mark.parametrize("kwargs, error, fragments", VARIANCE_CASES, ids=[repr(c[0]) for c in VARIANCE_CASES])
def test_variance_features_bad_parameters(eds, kwargs, error, fragments):
    with pytest.raises(error) as excinfo:
        stemfuse_hs.variance_features(eds, **kwargs)
    check_message(excinfo, *fragments)


@pytest.mark.parametrize("function", ["sdt_features", "variance_features"])
def test_extractors_refuse_non_signals_and_wrong_dimensions(dp, eds, function):
    extractor = getattr(stemfuse_hs, function)
    with pytest.raises(TypeError, match=f"{function} expects a HyperSpy signal, got list"):
        extractor([[1, 2], [3, 4]])
    wrong = eds if function == "sdt_features" else dp
    with pytest.raises(ValueError, match=f"^{function} expects"):
        extractor(wrong)
    complex_signal = (dp if function == "sdt_features" else eds).deepcopy()
    complex_signal.change_dtype("complex128")
    with pytest.raises(TypeError, match="must hold real numbers .* got dtype complex128"):
        extractor(complex_signal)


FUSE_CASES = [
    (dict(weighting="median"), ValueError, ["weighting", "'median'", "'auto'"]),
    (dict(weighting=None), TypeError, ["weighting", "None"]),
    (dict(max_samples=0), ValueError, ["max_samples", "0"]),
    (dict(max_samples=1.5), TypeError, ["max_samples", "1.5"]),
    (dict(weights=[1]), ValueError, ["weights has 1 values for 2 blocks"]),
    (dict(weights=[-1, 1]), ValueError, ["weights", "[-1.0, 1.0]", "non-negative"]),
    (dict(weights=[0, 0]), ValueError, ["weights", "not all zero"]),
    (dict(weights="ab"), TypeError, ["weights", "'ab'"]),
    (dict(weights=[1, "x"]), TypeError, ["weights", "'x'"]),
    (dict(reference_factor=np.nan), TypeError, ["reference_factor", "nan"]),
    (dict(nan_policy="skip"), ValueError, ["nan_policy", "'skip'"]),
    (dict(show_progressbar="no"), TypeError, ["show_progressbar", "'no'"]),
]


@pytest.mark.parametrize("kwargs, error, fragments", FUSE_CASES, ids=[repr(c[0]) for c in FUSE_CASES])
def test_fuse_bad_parameters(dp, eds, kwargs, error, fragments):
    with pytest.raises(error) as excinfo:
        stemfuse_hs.fuse(dp, eds, **kwargs)
    check_message(excinfo, *fragments)


def test_fuse_bad_signals(dp, eds):
    with pytest.raises(ValueError, match="fuse needs two or more signals of the same scan, got 1"):
        stemfuse_hs.fuse(dp)
    with pytest.raises(TypeError, match="fuse: argument 2 is a ndarray, not a HyperSpy signal"):
        stemfuse_hs.fuse(dp, np.zeros((4, 6, 3)))
    with pytest.raises(ValueError, match="fuse: argument 2 has no navigation axes"):
        stemfuse_hs.fuse(dp, eds.inav[0, 0])


def test_fuse_refuses_other_scans_naming_both_shapes_and_transposition(dp, eds):
    with pytest.raises(ValueError) as excinfo:
        stemfuse_hs.fuse(dp, eds.inav[:5])
    check_message(excinfo, "(6, 4) (argument 1)", "(5, 4) (argument 2)")
    with pytest.raises(ValueError, match="looks transposed"):
        stemfuse_hs.fuse(dp, _spectra(nav=(6, 4)))


def test_block_shares_bad_inputs(fused, dp):
    with pytest.raises(TypeError, match="block_shares expects the signal returned by fuse, got ndarray"):
        stemfuse_hs.block_shares(np.zeros(3))
    with pytest.raises(ValueError, match=re.escape("metadata.Fusion is missing")):
        stemfuse_hs.block_shares(stemfuse_hs.sdt_features(dp))
    with pytest.raises(ValueError, match="max_samples must be >= 1, got 0"):
        stemfuse_hs.block_shares(fused, max_samples=0)


CLUSTER_CASES = [
    (dict(n_components=0), ValueError, ["n_components", "0"]),
    (dict(n_neighbors=1), ValueError, ["n_neighbors", "1"]),
    (dict(n_neighbors=5.0), TypeError, ["n_neighbors", "5.0"]),
    (dict(min_dist=-1), ValueError, ["min_dist", "-1"]),
    (dict(metric="minkowski"), ValueError, ["metric", "'minkowski'", "'euclidean'"]),
    (dict(metric=None), TypeError, ["metric", "None"]),
    (dict(densmap="yes"), TypeError, ["densmap", "'yes'"]),
    (dict(densmap=1), TypeError, ["densmap", "1"]),
    (dict(pca_components=0), ValueError, ["pca_components", "0"]),
    (dict(pca_components=2.5), TypeError, ["pca_components", "2.5"]),
    (dict(min_cluster_size=1.5), ValueError, ["min_cluster_size", "1.5"]),
    (dict(min_cluster_size=True), TypeError, ["min_cluster_size", "True"]),
    (dict(min_cluster_size="5"), TypeError, ["min_cluster_size", "'5'"]),
    (dict(min_cluster_size=1), ValueError, ["min_cluster_size", "1"]),
    (dict(min_cluster_size=25), ValueError, ["min_cluster_size=25", "(24)"]),
    (dict(min_samples=0), ValueError, ["min_samples", "0"]),
    (dict(cluster_selection_epsilon=-0.5), ValueError, ["cluster_selection_epsilon", "-0.5"]),
    (dict(cluster_selection_method="max"), ValueError, ["cluster_selection_method", "'max'", "'leaf'"]),
    (dict(min_membership=1.5), ValueError, ["min_membership", "1.5"]),
    (dict(merge_threshold=2), ValueError, ["merge_threshold", "2"]),
    (dict(random_state=-1), ValueError, ["random_state", "-1"]),
    (dict(random_state=1.5), TypeError, ["random_state", "1.5"]),
    (dict(random_state=np.random.RandomState(0)), TypeError, ["random_state", "RandomState"]),
    (dict(n_jobs=0), ValueError, ["n_jobs", "0"]),
    (dict(n_jobs=1.5), TypeError, ["n_jobs", "1.5"]),
    (dict(show_progressbar="no"), TypeError, ["show_progressbar", "'no'"]),
]


def _case_id(kwargs):
    """A test id without object addresses, the same in every process (pytest-xdist compares them)."""
    return ", ".join(f"{k}={type(v).__name__ if isinstance(v, np.random.RandomState) else repr(v)}" for k, v in kwargs.items())


@pytest.mark.parametrize("kwargs, error, fragments", CLUSTER_CASES, ids=[_case_id(c[0]) for c in CLUSTER_CASES])
def test_cluster_bad_parameters_before_any_work(fused, kwargs, error, fragments, monkeypatch):
    # Checked before the features are read: embedding must never start.
    import stemfuse_hs.clustering.embed_and_cluster as module

    monkeypatch.setattr(module, "embed", lambda *a, **k: pytest.fail("embed called with bad parameters"))
    with pytest.raises(error) as excinfo:
        fused.cluster(**kwargs)
    check_message(excinfo, *fragments)


def test_cluster_too_few_positions_for_neighbours(fused):
    with pytest.raises(ValueError, match=re.escape("n_neighbors=30 needs more positions than that; the scan has 24.")):
        fused.cluster(n_neighbors=30)


STATISTICS_CASES = [
    (dict(mode="soft"), ValueError, ["mode", "'soft'", "'membership'", "'hard'"]),
    (dict(mode=None), TypeError, ["mode", "None"]),
    (dict(min_membership=2), ValueError, ["min_membership", "2"]),
    (dict(min_membership="half"), TypeError, ["min_membership", "'half'"]),
    (dict(show_progressbar="y"), TypeError, ["show_progressbar", "'y'"]),
]


@pytest.mark.parametrize("method", ["cluster_statistics", "cluster_means", "cluster_stds"])
@pytest.mark.parametrize("kwargs, error, fragments", STATISTICS_CASES, ids=[repr(c[0]) for c in STATISTICS_CASES])
def test_cluster_statistics_bad_parameters(label_map, eds, method, kwargs, error, fragments):
    with pytest.raises(error) as excinfo:
        getattr(label_map, method)(eds, **kwargs)
    check_message(excinfo, *fragments)


def test_cluster_statistics_bad_signals(label_map, eds):
    with pytest.raises(TypeError, match="cluster_statistics expects a HyperSpy signal, got ndarray"):
        label_map.cluster_statistics(np.zeros((4, 6, 3)))
    with pytest.raises(ValueError) as excinfo:
        label_map.cluster_statistics(eds.inav[:5])
    check_message(excinfo, "(5, 4)", "(6, 4)")
    with pytest.raises(ValueError) as excinfo:
        label_map.cluster_statistics(_spectra(nav=(6, 4)))
    check_message(excinfo, "(4, 6)", "(6, 4)", "transposed")
    with pytest.raises(ValueError, match="no navigation axes"):
        label_map.cluster_statistics(eds.inav[0, 0])


# ---------------------------------------------------------------------------
# Array-level functions exported by stemfuse_hs.features / fusion / clustering
# ---------------------------------------------------------------------------
RNG = np.random.default_rng(0)
PATTERNS = RNG.poisson(5.0, (3, 4, 8, 8)).astype(np.float32)
SPECTRA = RNG.poisson(5.0, (3, 4, 16)).astype(np.float32)
ENERGIES = np.arange(16) * 0.1
BLOCK = RNG.normal(size=(12, 5))
EMBEDDING = RNG.normal(size=(40, 3))

ARRAY_CASES = [
    ("sdt list", lambda: features.sdt([[1, 2]]), TypeError, ["data", "list"]),
    ("sdt 2-D", lambda: features.sdt(np.zeros((8, 8))), ValueError, ["data", "(8, 8)"]),
    ("sdt bool", lambda: features.sdt(np.zeros((2, 8, 8), bool)), TypeError, ["data", "bool"]),
    ("sdt one position", lambda: features.sdt(PATTERNS[:1, :1]), ValueError, ["single position", "(1, 1, 8, 8)"]),
    ("sdt nan_policy", lambda: features.sdt(PATTERNS, nan_policy=1), TypeError, ["nan_policy", "1"]),
    ("variance energies", lambda: features.variance_threshold(SPECTRA, ENERGIES[:5]), ValueError, ["energies", "(5,)", "(16,)"]),
    ("variance energies nan", lambda: features.variance_threshold(SPECTRA, ENERGIES * np.nan), ValueError, ["energies", "NaN"]),
    ("variance energies text", lambda: features.variance_threshold(SPECTRA, ["a"] * 16), TypeError, ["energies"]),
    ("variance resolution", lambda: features.variance_threshold(SPECTRA, ENERGIES, resolution_mnka=0), ValueError, ["resolution_mnka", "0"]),
    ("bin_patterns binning", lambda: features.bin_patterns(da.zeros((2, 8, 8)), 0), ValueError, ["binning", "0"]),
    ("disk_mask radius", lambda: features.disk_mask((4, 4), (1, 1), -2), ValueError, ["radius", "-2"]),
    ("disk_mask shape", lambda: features.disk_mask((4,), (1, 1), 1), ValueError, ["shape", "(4,)"]),
    ("find_direct_beam 1-D", lambda: features.find_direct_beam(np.zeros(5)), ValueError, ["mean_pattern", "(5,)"]),
    ("find_direct_beam near", lambda: features.find_direct_beam(np.zeros((4, 4)), near=(1, 1)), ValueError, ["near needs within"]),
    ("hot_pixels factor", lambda: features.hot_pixels(np.zeros((4, 4)), factor=1), ValueError, ["factor", "1"]),
    ("select_top_fraction", lambda: features.select_top_fraction(np.zeros((2, 2)), np.ones((2, 2), bool), 0), ValueError, ["fraction", "0"]),
    ("select_top_fraction shape", lambda: features.select_top_fraction(np.zeros((2, 2)), np.ones((3, 2), bool), 0.5), ValueError, ["eligible", "(3, 2)", "(2, 2)"]),
    ("line_windows width", lambda: features.line_windows(["Cu_Ka"], width=0), ValueError, ["width", "0"]),
    ("normalize_by_total", lambda: features.normalize_by_total(da.ones((3, 4)), 1, np.ones(5)), ValueError, ["totals", "(5,)", "(3,)"]),
    ("position_totals", lambda: features.position_totals(da.ones((3, 4)), 3), ValueError, ["signal_ndim", "3"]),
    ("sample_rows", lambda: fusion.sample_rows((4, 3), 0), ValueError, ["max_samples", "0"]),
    ("sample_rows shape", lambda: fusion.sample_rows((4, 0), 5), ValueError, ["scan_shape", "(4, 0)"]),
    ("robust_statistics", lambda: fusion.robust_statistics(BLOCK, zero_iqr="zero"), ValueError, ["zero_iqr", "'zero'"]),
    ("block_discreteness", lambda: fusion.block_discreteness(BLOCK, 0), ValueError, ["scan_cols", "0"]),
    ("block_discreteness rows", lambda: fusion.block_discreteness(BLOCK, 5), ValueError, ["12 rows", "5"]),
    ("fuse_blocks weighting", lambda: fusion.fuse_blocks([BLOCK], (3, 4), weighting="x"), ValueError, ["weighting", "'x'"]),
    ("fuse_blocks shape", lambda: fusion.fuse_blocks([BLOCK, BLOCK[:5]], (3, 4)), ValueError, ["block 1", "(5, 5)", "(12, n_features)"]),
    ("fuse_blocks not a list", lambda: fusion.fuse_blocks(5, (3, 4)), TypeError, ["blocks", "int"]),
    ("fuse_blocks scan", lambda: fusion.fuse_blocks([BLOCK], (3, -4)), ValueError, ["scan_shape", "(3, -4)"]),
    ("fuse_blocks excluded", lambda: fusion.fuse_blocks([BLOCK], (3, 4), excluded=np.ones(5, bool)), ValueError, ["excluded", "(5,)"]),
    ("fuse_blocks factors", lambda: fusion.fuse_blocks([BLOCK], (3, 4), weighting="reference", reference_factors=[-1]), ValueError, ["reference_factors", "-1"]),
    ("fuse_blocks nan", lambda: fusion.fuse_blocks([np.where(np.arange(12)[:, None] == 7, np.nan, BLOCK)], (3, 4)), ValueError, ["block 0", "1 position", "(1, 3)", "excluded"]),
    ("variance_shares slices", lambda: fusion.variance_shares(BLOCK, [(0, 9)]), ValueError, ["(0, 9)", "5 columns"]),
    ("variance_shares scan", lambda: fusion.variance_shares(BLOCK, [(0, 5)], scan_shape=(5, 5)), ValueError, ["(5, 5)", "12 positions"]),
    ("embed nan", lambda: clustering.embed(np.full((20, 3), np.nan)), ValueError, ["matrix", "NaN"]),
    ("embed 1-D", lambda: clustering.embed(np.zeros(20)), ValueError, ["matrix", "(20,)"]),
    ("embed densmap", lambda: clustering.embed(BLOCK, densmap=None), TypeError, ["densmap", "None"]),
    ("embed n_jobs", lambda: clustering.embed(BLOCK, n_jobs=0), ValueError, ["n_jobs", "0"]),
    ("soft_cluster nan", lambda: clustering.soft_cluster(np.full((20, 3), np.inf)), ValueError, ["embedding", "NaN or infinite"]),
    ("soft_cluster one", lambda: clustering.soft_cluster(np.zeros((1, 3))), ValueError, ["embedding", "1 position"]),
    ("soft_cluster method", lambda: clustering.soft_cluster(EMBEDDING, cluster_selection_method="x"), ValueError, ["cluster_selection_method", "'x'"]),
    ("merge features", lambda: clustering.merge_indistinct(ClusterResult(np.zeros(4, int), np.ones((4, 1))), BLOCK), ValueError, ["12 rows", "4 labelled"]),
    ("merge result", lambda: clustering.merge_indistinct("labels", BLOCK), TypeError, ["ClusterResult", "str"]),
    ("separation tube", lambda: clustering.separation(EMBEDDING, np.zeros(40), 0, 1, tube_quantile=0), ValueError, ["tube_quantile", "0"]),
    ("separation labels", lambda: clustering.separation(EMBEDDING, np.zeros(3), 0, 1), ValueError, ["labels", "(3,)", "(40,)"]),
    ("valley_depth bins", lambda: clustering.valley_depth([1, 2], [3, 4], bins=1), ValueError, ["bins", "1"]),
    ("valley_depth nan", lambda: clustering.valley_depth([1, np.nan], [3, 4]), ValueError, ["finite"]),
    ("resolve size", lambda: clustering.resolve_min_cluster_size(50, 10), ValueError, ["min_cluster_size=50", "(10)"]),
    ("cluster_weights mode", lambda: clustering.cluster_weights(np.zeros(3, int), np.ones((3, 1)), "x"), ValueError, ["mode", "'x'"]),
    ("cluster_weights labels", lambda: clustering.cluster_weights(np.array([0, 5, 0]), np.ones((3, 2))), ValueError, ["labels", "below 2", "5"]),
    ("cluster_weights float labels", lambda: clustering.cluster_weights(np.zeros(3), np.ones((3, 2))), TypeError, ["labels", "float64"]),
    ("cluster_weights lengths", lambda: clustering.cluster_weights(np.zeros(4, int), np.ones((3, 2))), ValueError, ["4 positions", "3"]),
    ("cluster_statistics weights", lambda: clustering.cluster_statistics(SPECTRA, 1, -np.ones((12, 2))), ValueError, ["weights", "non-negative"]),
    ("cluster_statistics ndim", lambda: clustering.cluster_statistics(SPECTRA, 5, np.ones((12, 2))), ValueError, ["signal_ndim", "5"]),
    ("cluster_statistics positions", lambda: clustering.cluster_statistics(SPECTRA, 1, np.ones((10, 2))), ValueError, ["10 positions", "12"]),
]


@pytest.mark.parametrize("call, error, fragments", [c[1:] for c in ARRAY_CASES], ids=[c[0] for c in ARRAY_CASES])
def test_array_functions_bad_inputs(call, error, fragments):
    with pytest.raises(error) as excinfo:
        call()
    check_message(excinfo, *fragments)
