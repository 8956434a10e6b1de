"""Stability over seeds and sensitivity over parameters.

The array core (stemfuse_hs.clustering.stability) is tested on constructed
label arrays; the signal level end to end on the tiny "precipitates" scan
(three runs; a 2 x 2 grid), computed once per module.
"""

import functools
import re
import time
import tracemalloc

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from sklearn.metrics import adjusted_rand_score  # noqa: E402

import stemfuse_hs  # noqa: E402
from stemfuse_hs.clustering import (  # noqa: E402
    adjusted_rand_index,
    align_labels,
    align_runs,
    consensus_labels,
    contingency_table,
    label_agreement,
    pairwise_ari,
    rescale_blocks,
)
from stemfuse_hs.plot import cluster_colours  # noqa: E402
from stemfuse_hs.signals.labels import ClusterLabels  # noqa: E402
from stemfuse_hs.signals.stability import SensitivityResult, StabilityResult, reweight  # noqa: E402


def _permuted(labels, permutation):
    permutation = np.asarray(permutation)
    return np.where(labels >= 0, permutation[np.clip(labels, 0, None)], -1)


def _blocks(shape=(40, 60), k=4):
    rows, cols = np.indices(shape)
    return (cols * k // shape[1]).astype(np.int64)


# ---------------------------------------------------------------------------
# Array core
# ---------------------------------------------------------------------------
def test_contingency_and_ari_match_scikit_learn():
    rng = np.random.default_rng(1)
    for _ in range(5):
        a = rng.integers(-1, 4, 500)
        b = np.where(rng.random(500) < 0.7, a, rng.integers(-1, 5, 500))
        assert adjusted_rand_index(a, b) == pytest.approx(adjusted_rand_score(a, b))
        table, values_a, values_b = contingency_table(a, b)
        assert table.sum() == 500
        assert table[list(values_a).index(2), list(values_b).index(2)] == np.count_nonzero((a == 2) & (b == 2))
    assert adjusted_rand_index([0, 0, 1, 1], [1, 1, 0, 0]) == 1.0
    assert adjusted_rand_index(np.zeros(10, int), np.zeros(10, int)) == 1.0
    with pytest.raises(ValueError, match="same scan"):
        contingency_table([0, 1], [0, 1, 2])
    with pytest.raises(ValueError, match="-1 marks noise"):
        contingency_table([0, -2], [0, 1])


def test_align_labels_recovers_a_permutation_and_numbers_new_clusters():
    reference = _blocks()
    aligned, mapping = align_labels(_permuted(reference, [2, 0, 3, 1]), reference)
    np.testing.assert_array_equal(aligned, reference)
    assert mapping == {0: 1, 1: 3, 2: 0, 3: 2}
    # One more cluster than the reference: it gets the next free id; noise stays noise.
    split = reference.copy()
    split[:, :5] = 9
    split[:2] = -1
    aligned, mapping = align_labels(split, reference)
    assert mapping[9] == 4
    assert np.all(aligned[:2] == -1)
    np.testing.assert_array_equal(aligned[2:, 5:], reference[2:, 5:])


def test_align_runs_keeps_one_id_for_a_cluster_the_reference_lacks():
    reference = _blocks(k=2)
    extra = reference.copy()
    extra[10:20, :10] = 2  # a cluster found by runs 1 and 2, not by the reference
    runs = np.stack([reference, _permuted(extra, [1, 0, 2]), _permuted(extra, [2, 1, 0])])
    aligned = align_runs(runs, reference=0)
    np.testing.assert_array_equal(aligned[0], reference)
    np.testing.assert_array_equal(aligned[1], extra)
    np.testing.assert_array_equal(aligned[2], extra)
    # A cluster that vanishes leaves its id unused in that run.
    merged = np.zeros_like(reference)
    aligned = align_runs(np.stack([reference, merged]))
    assert set(np.unique(aligned[1])) <= {0, 1}


def test_perfectly_separable_runs_are_stable_everywhere():
    reference = _blocks()
    runs = np.stack([_permuted(reference, p) for p in ([0, 1, 2, 3], [3, 2, 1, 0], [1, 3, 0, 2])])
    result = label_agreement(runs)
    assert np.all(result.stability == 1.0)
    np.testing.assert_array_equal(result.ari, np.ones((3, 3)))
    np.testing.assert_array_equal(result.consensus, runs[result.reference])
    for aligned in result.aligned:
        np.testing.assert_array_equal(aligned, result.consensus)
    np.testing.assert_array_equal(result.votes.max(axis=-1), 1.0)


def test_ambiguous_positions_are_less_stable():
    reference = _blocks(k=2)  # left half 0, right half 1
    ambiguous = np.zeros(reference.shape, bool)
    ambiguous[:, 25:35] = True  # a band both clusters claim
    runs = []
    for r, permutation in enumerate(([0, 1], [1, 0], [0, 1], [1, 0], [0, 1])):
        labels = reference.copy()
        labels[ambiguous] = r % 2  # the band flips between runs
        runs.append(_permuted(labels, permutation))
    result = label_agreement(np.stack(runs), reference=0)
    assert np.all(result.stability[~ambiguous] == 1.0)
    assert np.all(result.stability[ambiguous] < 1.0)
    assert result.stability[ambiguous] == pytest.approx(0.6)
    # Runs that give the band to different clusters disagree; the others do not.
    assert result.ari[0, 1] < 1.0 and result.ari[0, 2] == 1.0
    # Memberships of the consensus: the vote fractions.
    assert result.votes[ambiguous].max(axis=-1) == pytest.approx(0.6)


def test_consensus_ties_go_to_the_reference_and_noise_loses_ties():
    consensus, agreement, _ = consensus_labels([[0, 1], [1, -1]], prefer=1)
    assert consensus.tolist() == [1, -1]
    consensus, agreement, _ = consensus_labels([[0, 1], [1, -1]])
    assert consensus.tolist() == [0, 1]
    assert agreement.tolist() == [0.5, 0.5]


def test_medoid_reference_skips_maps_of_noise_only():
    reference = _blocks(k=2)
    noise = np.full_like(reference, -1)
    result = label_agreement(np.stack([noise, noise, reference]))
    assert result.reference == 2


def test_pairwise_ari_is_symmetric():
    rng = np.random.default_rng(0)
    runs = rng.integers(0, 3, (4, 100))
    matrix = pairwise_ari(runs)
    np.testing.assert_allclose(matrix, matrix.T)
    np.testing.assert_allclose(np.diag(matrix), 1.0)
    assert matrix[0, 1] == pytest.approx(adjusted_rand_score(runs[0], runs[1]))


def test_memory_is_linear_in_positions():
    """256 x 256 positions, 6 runs: fast, and far from any n x n allocation."""
    rng = np.random.default_rng(0)
    base = _blocks((256, 256), k=8)
    runs = []
    for _ in range(6):
        labels = _permuted(base, rng.permutation(8))
        flip = rng.random(base.shape) < 0.05
        labels[flip] = rng.integers(-1, 8, int(flip.sum()))
        runs.append(labels)
    runs = np.stack(runs)
    n = base.size
    tracemalloc.start()
    try:
        start = time.perf_counter()
        result = label_agreement(runs)
        elapsed = time.perf_counter() - start
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert elapsed < 10.0
    # An n x n matrix would be 4.3e9 elements; the peak stays a few bytes per
    # position and run.
    assert peak < 64 * n * runs.shape[0]
    assert peak < n * n / 100
    assert result.stability.shape == base.shape
    assert 0.9 < float(result.stability.mean()) < 1.0


def test_rescale_blocks():
    matrix = np.arange(12, dtype=np.float32).reshape(3, 4)
    out = rescale_blocks(matrix, [(0, 1), (1, 4)], [1.0, 0.5], [2.0, 1.0])
    np.testing.assert_allclose(out[:, :1], 2 * matrix[:, :1])
    np.testing.assert_allclose(out[:, 1:], 2 * matrix[:, 1:])
    with pytest.raises(ValueError, match="weight 0"):
        rescale_blocks(matrix, [(0, 1), (1, 4)], [1.0, 0.0], [1.0, 1.0])
    with pytest.raises(ValueError, match="one per block"):
        rescale_blocks(matrix, [(0, 1), (1, 4)], [1.0, 1.0], [1.0])
    with pytest.raises(ValueError, match="not all zero"):
        rescale_blocks(matrix, [(0, 1), (1, 4)], [1.0, 1.0], [0.0, 0.0])


# ---------------------------------------------------------------------------
# Signal level, end to end
# ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def precipitates():
    return stemfuse_hs.data.synthetic_scan("precipitates", size="tiny")


@pytest.fixture(scope="module")
def features(precipitates):
    dp = stemfuse_hs.sdt_features(precipitates.dp, show_progressbar=False)
    eds = stemfuse_hs.variance_features(precipitates.eds, show_progressbar=False)
    return dp, eds


@pytest.fixture(scope="module")
def fused(features):
    return stemfuse_hs.fuse(*features, show_progressbar=False)


@pytest.fixture(scope="module")
def stability_result(fused):
    return fused.stability(n_runs=3, show_progressbar=False)


def _own_weights(fused):
    return [float(w) for w in fused.metadata.Fusion.weights]


@pytest.fixture(scope="module")
def sensitivity_run(fused):
    """A 2 x 2 grid; counts the UMAP runs that cluster really makes."""
    import importlib

    module = importlib.import_module("stemfuse_hs.clustering.embed")

    calls = []
    original = module._run_umap

    @functools.wraps(original)
    def counting(matrix, **kwargs):
        calls.append(kwargs)
        return original(matrix, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(module, "_run_umap", counting)
        result = fused.sensitivity(
            {"weights": [_own_weights(fused), [1, 2]], "min_cluster_size": [0.02, 0.05]}, show_progressbar=False
        )
    assert module._CACHE.get() is None  # the cache is gone after the call
    return result, calls


def test_stability_end_to_end(stability_result, precipitates):
    result = stability_result
    assert isinstance(result, StabilityResult)
    assert result.random_states == [0, 1, 2] and result.n_runs == 3
    scan_axes = [(a.name, a.size, a.scale, a.units) for a in result.labels[0].axes_manager.signal_axes]
    for signal in (result.consensus, result.stability, result.runs):
        assert [(a.name, a.size, a.scale, a.units) for a in signal.axes_manager.signal_axes] == scan_axes
    assert result.runs.axes_manager.navigation_axes[0].name == "run"
    assert result.runs.axes_manager.navigation_shape == (3,)
    ari = result.ari.data
    assert ari.shape == (3, 3)
    np.testing.assert_allclose(ari, ari.T)
    np.testing.assert_allclose(np.diag(ari), 1.0)
    # Matrix and precipitates come out of every seed: nearly stable everywhere.
    assert ari.min() > 0.9
    assert float(result.stability.data.mean()) > 0.97
    assert result.stability.data.min() > 0 and result.stability.data.max() == 1.0
    assert adjusted_rand_index(result.consensus.data, precipitates.truth) > 0.9
    # The consensus is a full ClusterLabels: memberships are the vote fractions.
    assert isinstance(result.consensus, ClusterLabels)
    assert result.consensus.parameters["consensus_of"] == "stability"
    wins = result.consensus.data >= 0
    np.testing.assert_allclose(result.consensus.max_membership.data[wins], result.stability.data[wins])
    # The reference run keeps its ids; the others are aligned to it.
    np.testing.assert_array_equal(result.runs.data[result.reference], result.labels[result.reference].data)
    for i in range(3):
        assert adjusted_rand_index(result.runs.data[i], result.labels[i].data) == 1.0


def test_stability_figure(stability_result):
    result = stability_result
    fig = result.plot()
    names = [ax.get_label() for ax in fig.axes]
    assert names[:5] == ["consensus", "stability", "run 0", "run 1", "run 2"]
    assert len(fig.axes) == 6  # and the stability colour bar
    k = result.consensus.n_clusters
    # Cluster 0 has the palette's colour in the consensus and in every run.
    rows, cols = np.argwhere(result.consensus.data == 0)[0]
    for name in ("consensus", "run 0", "run 1", "run 2"):
        image = next(ax for ax in fig.axes if ax.get_label() == name).images[0]
        assert tuple(image.to_rgba(image.get_array()[rows, cols])) == pytest.approx(cluster_colours(k)[0])
    assert "ARI" in next(ax for ax in fig.axes if ax.get_label() == "run 1").get_title()


def test_stability_arguments(fused):
    with pytest.raises(TypeError, match="random_states"):
        fused.stability(random_state=3)
    with pytest.raises(ValueError, match="n_runs"):
        fused.stability(n_runs=1)
    with pytest.raises(ValueError, match="two or more"):
        fused.stability(random_states=[4])
    with pytest.raises(TypeError, match="FusedSTEMSignal"):
        from stemfuse_hs.signals.stability import stability

        stability(np.zeros((4, 4)))


def test_sensitivity_grid_reuses_embeddings(sensitivity_run, fused):
    result, calls = sensitivity_run
    assert isinstance(result, SensitivityResult)
    own = _own_weights(fused)
    assert result.settings == [
        {"weights": own, "min_cluster_size": 0.02},
        {"weights": own, "min_cluster_size": 0.05},
        {"weights": [1, 2], "min_cluster_size": 0.02},
        {"weights": [1, 2], "min_cluster_size": 0.05},
    ]
    # One embedding per weighting: min_cluster_size does not change it.
    assert len(calls) == 2 and result.n_embeddings == 2
    assert all(c["random_state"] == 0 for c in calls)
    assert result.maps.axes_manager.navigation_shape == (4,)
    assert result.maps.axes_manager.navigation_axes[0].name == "setting"
    assert result.ari.data.shape == (4, 4)
    np.testing.assert_allclose(np.diag(result.ari.data), 1.0)
    for i, labels in enumerate(result.labels):
        np.testing.assert_allclose(labels.metadata.Clustering.fusion["weights"], result.settings[i]["weights"])
        assert labels.parameters["min_cluster_size_given"] == result.settings[i]["min_cluster_size"]
    assert 0 < float(result.stability.data.min()) and float(result.stability.data.max()) == 1.0


def test_sensitivity_maps_are_what_cluster_gives(sensitivity_run, stability_result):
    """The fused signal's own weights, default parameters, seed 0: the first stability run."""
    result, _ = sensitivity_run
    direct = stability_result.labels[0]
    np.testing.assert_array_equal(direct.data, result.labels[0].data)
    assert direct.parameters == result.labels[0].parameters
    np.testing.assert_array_equal(direct.memberships.data, result.labels[0].memberships.data)


def test_sensitivity_figure(sensitivity_run):
    result, _ = sensitivity_run
    fig = result.plot()
    names = {ax.get_label() for ax in fig.axes}
    assert {"setting 0", "setting 1", "setting 2", "setting 3", "agreement", "ari"} <= names
    title = next(ax for ax in fig.axes if ax.get_label() == "setting 3").get_title()
    assert "weights=[1, 2]" in title and "min_cluster_size=0.05" in title


def test_reweight_equals_fusing_again(features, fused):
    again = stemfuse_hs.fuse(*features, weights=[1, 2], show_progressbar=False)
    rescaled = reweight(fused, [1, 2])
    np.testing.assert_allclose(rescaled.data, again.data, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(rescaled.metadata.Fusion.weights, [1, 2])
    assert rescaled.metadata.Fusion.Blocks.eds.weight == 2.0
    # The source is untouched.
    assert not np.allclose(fused.metadata.Fusion.weights, [1, 2])


def test_sensitivity_refusals(features, fused):
    reference = stemfuse_hs.fuse(*features, weighting="reference", show_progressbar=False)
    with pytest.raises(ValueError, match="weighting='reference'"):
        reference.sensitivity({"weights": [[1, 1], [1, 2]]})
    with pytest.raises(ValueError, match="sdt_features"):
        fused.sensitivity({"fraction": [0.2, 0.4]})
    with pytest.raises(ValueError, match="given once|both"):
        fused.sensitivity({"min_cluster_size": [0.02]}, min_cluster_size=0.05)
    with pytest.raises(ValueError, match="2 blocks"):
        fused.sensitivity({"weights": [[1, 2, 3]]})
    with pytest.raises(TypeError, match="list of values"):
        fused.sensitivity({"min_cluster_size": 0.02})
    with pytest.raises(TypeError, match="non-empty dict"):
        fused.sensitivity({})


def test_lazy_features_are_computed_once_for_all_runs(fused, stability_result, monkeypatch):
    """stability on lazy features clusters one in-memory copy, run after run."""
    from stemfuse_hs.signals.features import FusedSTEMSignal

    lazy = fused.as_lazy()
    seen = []

    def fake_cluster(self, *, random_state, **kwargs):
        seen.append((type(self).__name__, id(self), random_state))
        return stability_result.labels[random_state]

    monkeypatch.setattr(FusedSTEMSignal, "cluster", fake_cluster)
    result = lazy.stability(n_runs=3)
    assert [s[2] for s in seen] == [0, 1, 2]
    assert {s[0] for s in seen} == {"FusedSTEMSignal"}  # the eager copy
    assert len({s[1] for s in seen}) == 1  # one copy for every run
    assert type(lazy).__name__ == "LazyFusedSTEMSignal"  # the input stays lazy
    np.testing.assert_array_equal(result.stability.data, stability_result.stability.data)


def test_reweight_needs_fusion_metadata(features):
    dp_features, _ = features
    with pytest.raises(ValueError, match="metadata.Fusion"):
        reweight(dp_features, [1.0])


def test_sensitivity_over_feature_extraction_from_raw_signals(scan_cache):
    scan = scan_cache("four_phases")
    before = scan.dp.data.copy()
    result = stemfuse_hs.sensitivity(
        (scan.dp, scan.eds),
        {"sdt_features.fraction": [0.2, 0.4], "weights": [[1, 1], [1, 2]]},
        show_progressbar=False,
    )
    np.testing.assert_array_equal(scan.dp.data, before)
    assert len(result.settings) == 4
    assert result.settings[0] == {"sdt_features.fraction": 0.2, "weights": [1, 1]}
    # Two SDT extractions, one EDS extraction; four fusions; one embedding each.
    assert result.maps.metadata.Sensitivity.n_feature_extractions == 3
    assert result.maps.metadata.Sensitivity.n_fusions == 4
    assert result.n_embeddings == 4
    for setting, labels in zip(result.settings, result.labels):
        assert labels.metadata.Clustering.fusion["Blocks"]["diffraction"]["feature_parameters"]["fraction"] == (
            setting["sdt_features.fraction"]
        )
        np.testing.assert_allclose(labels.metadata.Clustering.fusion["weights"], setting["weights"])
    # Every setting recovers the four phases: the map holds across them
    # (measured 2026-12-03: ARI 0.935, 0.799, 0.954, 0.895; doubling the EDS
    # weight at fraction 0.2 costs the most).
    for labels in result.labels:
        assert adjusted_rand_score(scan.truth.ravel(), labels.data.ravel()) > 0.75
    assert result.ari.data.min() > 0.8


def test_sensitivity_extraction_keys_need_the_raw_signals(fused, scan_cache):
    with pytest.raises(ValueError, match=re.escape("is a feature-extraction parameter (sdt_features.fraction); give the raw signals")):
        fused.sensitivity({"sdt_features.fraction": [0.2, 0.4]})
    scan = scan_cache("four_phases")
    with pytest.raises(ValueError, match=r"'sdt_features.franction' is not a parameter"):
        stemfuse_hs.sensitivity((scan.dp, scan.eds), {"sdt_features.franction": [0.2]})
