"""Figures and interactive exploration: stemfuse_hs.plot.figures and .explore.

Every figure is rendered with the Agg backend (conftest) from label maps
built directly from arrays (no UMAP), so the tests are fast and the
baseline images deterministic.

Image comparisons use ``matplotlib.testing.compare.compare_images`` against
PNGs in ``tests/baseline/``. To regenerate them after an intended change
of a figure::

    STEMFUSE_UPDATE_BASELINES=1 python -m pytest tests/plot/test_figures.py -k baseline
"""

import os
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import dask.array as da  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.colors import to_rgba  # noqa: E402
from matplotlib.testing.compare import compare_images  # noqa: E402
from matplotlib_scalebar.scalebar import ScaleBar  # noqa: E402

import hyperspy.api as hs  # noqa: E402
import stemfuse_hs  # noqa: E402
from stemfuse_hs.clustering import ClusterResult  # noqa: E402
from stemfuse_hs.plot import MASK_COLOUR, NOISE_COLOUR, cluster_colours, explore, explore_clusters  # noqa: E402
from stemfuse_hs.plot import plot_cluster_grid, plot_embedding, plot_label_map, save_figure  # noqa: E402
from stemfuse_hs.plot import plot_mean_patterns, plot_mean_spectra, plot_membership_map  # noqa: E402
from stemfuse_hs.signals._axes import navigation_axes_dicts  # noqa: E402
from stemfuse_hs.signals.features import FusedSTEMSignal  # noqa: E402
from stemfuse_hs.signals.labels import ClusterLabels, build_cluster_labels  # noqa: E402

BASELINE = Path(__file__).parents[1] / "baseline"
UPDATE = os.environ.get("STEMFUSE_UPDATE_BASELINES") == "1"


# ---------------------------------------------------------------------------
# Constructed inputs
# ---------------------------------------------------------------------------
def _labels_from(nav_axes, labels, memberships, embedding):
    """A ClusterLabels built from arrays, as ``cluster`` would build it."""
    shape = labels.shape
    fused = FusedSTEMSignal(
        np.zeros(shape + (2,), np.float32), axes=[dict(a) for a in nav_axes] + [{"name": "feature", "size": 2}]
    )
    fused.metadata.General.title = "Constructed features"
    n, k = labels.size, memberships.shape[-1]
    result = ClusterResult(labels.reshape(n).astype(np.int64), memberships.reshape(n, k).astype(np.float32), {})
    out = build_cluster_labels(fused, result, embedding.reshape(n, -1).astype(np.float32), {"constructed": True})
    out.metadata.General.title = "Constructed labels"
    return out


def _small_scan():
    """A 12 x 16 scan, 3 clusters in bands plus a noise patch, with patterns and spectra."""
    rows, cols = 12, 16
    nav_axes = [
        {"name": "y", "size": rows, "scale": 2.0, "offset": 0.0, "units": "nm", "navigate": True},
        {"name": "x", "size": cols, "scale": 2.0, "offset": 0.0, "units": "nm", "navigate": True},
    ]
    col = np.arange(cols)[None, :].repeat(rows, axis=0)
    row = np.arange(rows)[:, None].repeat(cols, axis=1)
    labels = np.where(col < 5, 0, np.where(col < 11, 1, 2))
    labels[1:3, 6:9] = -1
    centres = np.array([2.0, 8.0, 13.5])
    distance = np.abs(col[..., None] - centres)
    memberships = np.exp(-((distance / 3.0) ** 2))
    memberships /= memberships.sum(axis=-1, keepdims=True)
    memberships[labels < 0] *= 0.4
    embedding = np.stack([np.cos(labels * 2.1), np.sin(labels * 2.1), 0.3 * labels], axis=-1)
    embedding = embedding + 0.05 * np.stack([np.sin(row * 1.3 + col), np.cos(row + col * 0.7), np.sin(row * col)], axis=-1)
    label_signal = _labels_from(nav_axes, labels, memberships, embedding)

    # Patterns: a bright direct beam at the centre and cluster-specific spots.
    ky, kx = np.indices((16, 16))
    beam = 2000.0 * np.exp(-((ky - 8) ** 2 + (kx - 8) ** 2) / 3.0)
    spots = {
        0: [(3, 3), (13, 13)],
        1: [(3, 13), (13, 3)],
        2: [(8, 2), (8, 14), (2, 8), (14, 8)],
    }
    patterns = np.empty((rows, cols, 16, 16), np.float32)
    for r in range(rows):
        for c in range(cols):
            image = beam + 2.0
            for cy, cx in spots[max(labels[r, c], 0)]:
                image = image + 60.0 * np.exp(-((ky - cy) ** 2 + (kx - cx) ** 2) / 1.5)
            patterns[r, c] = image * (1 + 0.02 * np.sin(r + c))
    dp = hs.signals.Signal2D(
        patterns,
        axes=[dict(a) for a in nav_axes]
        + [
            {"name": "ky", "size": 16, "scale": 0.5, "offset": -4.0, "units": "1/nm"},
            {"name": "kx", "size": 16, "scale": 0.5, "offset": -4.0, "units": "1/nm"},
        ],
    )
    dp.metadata.General.title = "Constructed patterns"

    energy = np.arange(128) * 0.08
    peaks = {"Cr_Ka": 5.4147, "Fe_Ka": 6.4039, "Ni_Ka": 7.4781}
    heights = {0: (8, 2, 1), 1: (2, 8, 1), 2: (1, 2, 8)}
    spectra = np.empty((rows, cols, 128), np.float32)
    for r in range(rows):
        for c in range(cols):
            spectrum = 0.5 + 0.0 * energy
            for h, e in zip(heights[max(labels[r, c], 0)], peaks.values()):
                spectrum = spectrum + h * np.exp(-((energy - e) ** 2) / (2 * 0.06**2))
            spectra[r, c] = spectrum
    eds = hs.signals.Signal1D(
        spectra,
        axes=[dict(a) for a in nav_axes] + [{"name": "Energy", "size": 128, "scale": 0.08, "offset": 0.0, "units": "keV"}],
    )
    eds.metadata.General.title = "Constructed spectra"
    eds.metadata.set_item("Sample.xray_lines", list(peaks))
    return label_signal, dp, eds


@pytest.fixture(scope="module")
def small():
    labels, dp, eds = _small_scan()
    return labels, dp, eds


@pytest.fixture(scope="module")
def scan():
    return stemfuse_hs.data.synthetic_scan("four_phases", size="tiny")


@pytest.fixture(scope="module")
def truth_labels(scan):
    """The synthetic scan's ground truth as a ClusterLabels (memberships = phase shares)."""
    k = len(scan.phases)
    rng = np.random.default_rng(0)
    weights = scan.phase_weights
    embedding = weights @ rng.normal(size=(k, 3)) + 0.05 * rng.normal(size=weights.shape[:2] + (3,))
    return _labels_from(navigation_axes_dicts(scan.dp), scan.truth, weights, embedding)


def _rgba_at(image, row, col):
    """The colour an AxesImage shows at a data pixel."""
    return tuple(np.asarray(image.to_rgba(image.get_array()[row, col])).tolist())


def _scalebars(ax):
    return [a for a in ax.artists if isinstance(a, ScaleBar)]


# ---------------------------------------------------------------------------
# Label map, membership map, embedding
# ---------------------------------------------------------------------------
def test_label_map_palette_scalebar_and_legend(small):
    labels, _, _ = small
    fig = plot_label_map(labels)
    (ax,) = [a for a in fig.axes if a.get_label() == "label_map"]
    (image,) = ax.images
    colours = cluster_colours(labels.n_clusters)
    assert _rgba_at(image, 0, 0) == pytest.approx(colours[0])
    assert _rgba_at(image, 0, 6) == pytest.approx(colours[1])
    assert _rgba_at(image, 0, 15) == pytest.approx(colours[2])
    assert _rgba_at(image, 1, 6) == pytest.approx(NOISE_COLOUR)
    (bar,) = _scalebars(ax)
    assert bar.units == "nm" and bar.dx == pytest.approx(2.0) and type(bar.dimension).__name__ == "SILengthDimension"
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert texts == ["cluster 0", "cluster 1", "cluster 2", "noise"]
    handles = ax.get_legend().legend_handles
    np.testing.assert_allclose([h.get_facecolor() for h in handles], list(colours) + [NOISE_COLOUR])


def test_label_map_options_and_plain_signals(small):
    labels, _, _ = small
    fig = plot_label_map(labels, scalebar=False, legend=False, title="map")
    ax = fig.axes[0]
    assert not _scalebars(ax) and ax.get_legend() is None and ax.get_title() == "map"

    # A plain integer map without length units: no scalebar, pixel axes named.
    plain = hs.signals.Signal2D(np.asarray(labels.data))
    fig = plot_label_map(plain)
    ax = fig.axes[0]
    assert not _scalebars(ax)
    assert "[px]" in ax.get_xlabel()
    assert "3 clusters" in ax.get_title()

    # Drawing into a given axes returns its figure; Angstrom maps show nm.
    fig, ax = plt.subplots()
    angstrom = labels.deepcopy()
    for axis in angstrom.axes_manager.signal_axes:
        axis.scale, axis.units = 5.0, "Å"
    assert plot_label_map(angstrom, ax=ax) is fig
    (bar,) = _scalebars(ax)
    assert bar.units == "nm" and bar.dx == pytest.approx(0.5)

    with pytest.raises(TypeError, match="label map"):
        plot_label_map(np.zeros((4, 4), int))


def test_label_map_draws_excluded_positions_in_the_mask_colour(small):
    labels, _, _ = small
    masked = labels.deepcopy()
    excluded = np.zeros(masked.data.shape, bool)
    excluded[5:7, :3] = True
    masked.data[excluded] = -1
    masked.metadata.set_item("Clustering.excluded_positions", excluded)
    ax = plot_label_map(masked).axes[0]
    overlay = ax.images[1].get_array()
    np.testing.assert_allclose(overlay[5, 0], MASK_COLOUR)
    assert overlay[0, 0][3] == 0  # transparent elsewhere
    assert [t.get_text() for t in ax.get_legend().get_texts()][-1] == "excluded"


def test_membership_maps(small):
    labels, _, _ = small
    fig = plot_membership_map(labels)
    ax = next(a for a in fig.axes if a.get_label() == "membership_map")
    assert len(fig.axes) == 2  # map and colour bar
    (image,) = ax.images
    assert image.get_clim() == (0.0, 1.0)
    np.testing.assert_allclose(image.get_array(), labels.max_membership.data, rtol=1e-6)
    assert _scalebars(ax)[0].units == "nm"

    fig = plot_membership_map(labels, cluster=2)
    ax = next(a for a in fig.axes if a.get_label() == "membership_map")
    (image,) = ax.images
    assert tuple(image.cmap(1.0)) == pytest.approx(cluster_colours(3)[2])
    assert "cluster 2" in ax.get_title()
    with pytest.raises(ValueError, match="not a cluster index"):
        plot_membership_map(labels, cluster=3)
    with pytest.raises(TypeError, match="ClusterLabels"):
        plot_membership_map(hs.signals.Signal2D(np.zeros((4, 4))))


@pytest.mark.parametrize("dims", [3, 2])
def test_embedding_scatter_in_palette(small, dims):
    labels, _, _ = small
    fig = plot_embedding(labels, dims=dims)
    ax = next(a for a in fig.axes if a.get_label() == "embedding")
    assert (ax.name == "3d") == (dims == 3)
    collections = {c.get_label(): c for c in ax.collections}
    assert set(collections) == {"noise", "cluster 0", "cluster 1", "cluster 2"}
    for i, colour in enumerate(cluster_colours(3)):
        face = collections[f"cluster {i}"].get_facecolor()
        assert np.allclose(face, colour)  # depthshade off: the exact palette colour
        assert len(collections[f"cluster {i}"].get_offsets()) == np.count_nonzero(labels.data == i)
    assert np.allclose(collections["noise"].get_facecolor(), NOISE_COLOUR)


def test_embedding_refuses_bad_dims(small):
    labels, _, _ = small
    with pytest.raises(ValueError, match="dims"):
        plot_embedding(labels, dims=4)
    fig, ax = plt.subplots()
    with pytest.raises(ValueError, match="3-D axes"):
        plot_embedding(labels, dims=3, ax=ax)


# ---------------------------------------------------------------------------
# Cluster grid
# ---------------------------------------------------------------------------
def _panels(fig):
    return {ax.get_label(): ax for ax in fig.axes if ":" in ax.get_label()}


def test_cluster_grid_layout_frames_and_one_pass(small, monkeypatch):
    labels, dp, eds = small
    calls = []
    original = ClusterLabels.cluster_statistics

    def counting(self, signal, *args, **kwargs):
        calls.append(signal.metadata.General.title)
        return original(self, signal, *args, **kwargs)

    monkeypatch.setattr(ClusterLabels, "cluster_statistics", counting)
    fig = plot_cluster_grid(labels, dp, eds)
    # Means computed once per input, not once per column.
    assert calls == ["Constructed patterns", "Constructed spectra"]
    panels = _panels(fig)
    assert len(panels) == 5 * 3
    assert len(fig.axes) == 5 * 3 + 3  # colour bars: two pattern rows, membership row
    colours = cluster_colours(3)
    for name, ax in panels.items():
        cluster = int(name.split(":")[1])
        for spine in ax.spines.values():
            assert spine.get_visible()
            assert spine.get_edgecolor() == pytest.approx(colours[cluster])
    # Title boxes in the cluster's colour.
    for c in range(3):
        box = panels[f"dp_mean:{c}"].title.get_bbox_patch()
        assert box.get_facecolor() == pytest.approx(colours[c])
    # Spectra drawn in the cluster's colour, lines labelled on the means only.
    for c in range(3):
        (line,) = [ln for ln in panels[f"eds_mean:{c}"].lines if len(ln.get_xdata()) == 128]
        assert to_rgba(line.get_color()) == pytest.approx(colours[c])
    mean_texts = {t.get_text() for t in panels["eds_mean:0"].texts}
    assert {"Cr Ka", "Fe Ka", "Ni Ka"} <= mean_texts
    assert not panels["eds_std:0"].texts
    # The membership row shares one colour scale.
    for c in range(3):
        assert panels[f"membership:{c}"].images[0].get_clim() == (0.0, 1.0)


def test_cluster_grid_excludes_the_beam_from_the_contrast(small):
    labels, dp, _ = small
    fig = plot_cluster_grid(labels, dp, rows=["dp_mean"])
    panels = _panels(fig)
    assert set(panels) == {"dp_mean:0", "dp_mean:1", "dp_mean:2"}
    norms = {id(ax.images[0].norm) for ax in panels.values()}
    assert len(norms) == 1  # one colour scale for the row
    norm = panels["dp_mean:0"].images[0].norm
    assert type(norm).__name__ == "LogNorm"
    means = labels.cluster_means(dp).data
    # The beam (about 2000 counts) saturates; the spots (about 60) set the top.
    assert norm.vmax < 0.2 * means.max()
    assert norm.vmax > 40


def test_cluster_grid_rows_and_errors(small):
    labels, dp, eds = small
    fig = plot_cluster_grid(labels, eds=eds)  # dp rows left out
    assert {name.split(":")[0] for name in _panels(fig)} == {"eds_mean", "eds_std", "membership"}
    fig = plot_cluster_grid(labels, rows="membership", clusters=[2, 0])
    assert sorted(_panels(fig)) == ["membership:0", "membership:2"]
    with pytest.raises(ValueError, match="unknown rows"):
        plot_cluster_grid(labels, dp, rows=["dp_mean", "mean"])
    with pytest.raises(ValueError, match="nothing to draw"):
        plot_cluster_grid(labels, rows=["dp_mean"])
    with pytest.raises(ValueError, match="not cluster indices"):
        plot_cluster_grid(labels, rows=["membership"], clusters=[5])


def test_cluster_grid_on_synthetic_scan(truth_labels, scan):
    fig = plot_cluster_grid(truth_labels, scan.dp, scan.eds)
    panels = _panels(fig)
    k = truth_labels.n_clusters
    assert len(panels) == 5 * k
    # The synthetic spectra carry Sample.xray_lines: they are labelled.
    texts = {t.get_text() for t in panels["eds_mean:0"].texts}
    assert "Fe Ka" in texts
    assert _scalebars(panels["dp_mean:0"])[0].units == "1/nm"


def test_same_colour_for_a_cluster_in_every_figure(truth_labels, scan):
    labels = truth_labels
    k = labels.n_clusters
    cluster = 2
    expected = cluster_colours(k)[cluster]
    rows, cols = np.argwhere(np.asarray(labels.data) == cluster)[0]

    image = plot_label_map(labels).axes[0].images[0]
    from_map = _rgba_at(image, rows, cols)
    grid = _panels(plot_cluster_grid(labels, rows=["membership"]))
    from_frame = grid[f"membership:{cluster}"].spines["left"].get_edgecolor()
    fig = plot_embedding(labels, dims=3)
    scatter = next(c for c in fig.axes[0].collections if c.get_label() == f"cluster {cluster}")
    from_scatter = tuple(scatter.get_facecolor()[0])
    membership = plot_membership_map(labels, cluster=cluster).axes[0].images[0]
    from_membership = tuple(membership.cmap(1.0))

    for colour in (from_map, from_frame, from_scatter, from_membership):
        assert colour == pytest.approx(expected)


# ---------------------------------------------------------------------------
# Saving
# ---------------------------------------------------------------------------
def test_save_figure_sizes_and_formats(small, tmp_path):
    labels, _, _ = small
    fig = plot_label_map(labels, figsize=(6.0, 4.0))
    path = save_figure(fig, tmp_path / "map.png")
    image = plt.imread(path)
    assert image.shape[1] == 1050  # 3.5 in at 300 dpi
    assert image.shape[0] == pytest.approx(1050 * 4 / 6, abs=2)
    assert tuple(fig.get_size_inches()) == (6.0, 4.0)  # the figure is given back its size
    assert plt.imread(save_figure(fig, tmp_path / "wide.png", "double")).shape[1] == 2160
    assert plt.imread(save_figure(fig, tmp_path / "box.png", (2, 1), dpi=100)).shape[:2] == (100, 200)
    assert save_figure(fig, tmp_path / "map.pdf", "double").read_bytes().startswith(b"%PDF")
    assert b"<svg" in save_figure(fig, tmp_path / "map.svg").read_bytes()[:500]
    with pytest.raises(ValueError, match=r"\.png, \.pdf or \.svg"):
        save_figure(fig, tmp_path / "map.jpg")
    with pytest.raises(ValueError, match="size"):
        save_figure(fig, tmp_path / "map.png", size="triple")


# ---------------------------------------------------------------------------
# Image comparisons (deterministic constructed inputs)
# ---------------------------------------------------------------------------
def _compare(fig, name, tmp_path, tol=6):
    BASELINE.mkdir(exist_ok=True)
    expected = BASELINE / name
    actual = tmp_path / name
    with matplotlib.rc_context({"font.family": "DejaVu Sans", "text.hinting": "none", "text.antialiased": True}):
        fig.savefig(actual, dpi=60)
    if UPDATE or not expected.exists():
        if not UPDATE:
            pytest.fail(f"baseline {expected} missing: run with STEMFUSE_UPDATE_BASELINES=1 to create it")
        expected.write_bytes(actual.read_bytes())
    assert expected.stat().st_size < 50_000
    result = compare_images(str(expected), str(actual), tol=tol)
    assert result is None, result


def test_baseline_label_map(small, tmp_path):
    labels, _, _ = small
    with matplotlib.rc_context({"font.family": "DejaVu Sans"}):
        fig = plot_label_map(labels, figsize=(4.0, 2.6))
    _compare(fig, "label_map.png", tmp_path)


def test_baseline_cluster_grid(small, tmp_path):
    labels, dp, eds = small
    with matplotlib.rc_context({"font.family": "DejaVu Sans"}):
        fig = plot_cluster_grid(labels, dp, eds, rows=("dp_mean", "eds_mean", "membership"), figsize=(6.0, 5.0))
    _compare(fig, "cluster_grid.png", tmp_path)


# ---------------------------------------------------------------------------
# Interactive exploration
# ---------------------------------------------------------------------------
def test_explore_shares_one_cursor(small):
    labels, dp, eds = small
    dp, eds = dp.deepcopy(), eds.deepcopy()
    view = explore(labels, dp, eds)
    figures = view.figures
    assert len(figures) == 3 and all(isinstance(f, matplotlib.figure.Figure) for f in figures)
    nav_plot = dp._plot.navigator_plot
    np.testing.assert_array_equal(nav_plot.ax.images[0].get_array(), labels.data)
    # The navigator is drawn in the palette.
    image = nav_plot.ax.images[0]
    assert _rgba_at(image, 0, 15) == pytest.approx(cluster_colours(3)[2])
    assert _rgba_at(image, 1, 6) == pytest.approx(NOISE_COLOUR)
    view.axes_manager.indices = (14, 3)
    assert dp._plot.axes_manager.indices == eds._plot.axes_manager.indices == (14, 3)
    np.testing.assert_allclose(dp._plot.signal_plot.ax.images[0].get_array(), dp.data[3, 14], rtol=1e-6)
    line = eds._plot.signal_plot.ax_lines[0]
    np.testing.assert_allclose(line.line.get_ydata(), eds.data[3, 14], rtol=1e-6)
    view.close()


def test_explore_membership_navigator_and_errors(small):
    labels, dp, eds = small
    view = explore(labels, dp.deepcopy(), navigator="membership")
    nav_image = view.signals[0]._plot.navigator_plot.ax.images[0]
    np.testing.assert_allclose(nav_image.get_array(), labels.max_membership.data, rtol=1e-6)
    assert len(view.figures) == 2
    view.close()
    with pytest.raises(ValueError, match="navigator"):
        explore(labels, dp, navigator="sum")
    with pytest.raises(ValueError, match="navigation shape"):
        explore(labels, dp.inav[:5])


class _BlockCounter:
    """Counts the chunks of a dask array that are actually computed."""

    def __init__(self):
        self.blocks = []

    def __call__(self, block, block_info=None):
        if block_info is not None:  # None: dask probing the output type
            self.blocks.append(block_info[0]["chunk-location"])
        return block


def test_explore_lazy_reads_only_the_chunk_under_the_cursor(truth_labels, scan_cache):
    lazy = scan_cache("four_phases", lazy=True)
    dp, eds = lazy.dp.deepcopy(), lazy.eds.deepcopy()
    counter = _BlockCounter()
    dp.data = dp.data.map_blocks(counter, dtype=dp.data.dtype)
    n_chunks = int(np.prod(dp.data.numblocks))
    assert n_chunks > 2
    view = explore(truth_labels, dp, eds)
    assert dp.navigator is None  # no navigator computed from the data
    assert len(view.figures) == 3
    assert len(counter.blocks) == 1  # the chunk of the first position only
    rows_per_chunk = dp.data.chunks[0][0]
    view.axes_manager.indices = (5, rows_per_chunk * 2 + 1)
    assert len(counter.blocks) == 2 and counter.blocks[-1][0] == 2
    view.close()


def test_explore_clusters_navigates_the_means(small):
    labels, dp, eds = small
    view = explore_clusters(labels, dp, eds)
    assert len(view.figures) == 3
    means, spectra = view.signals
    assert means.axes_manager.navigation_axes[0].name == "cluster"
    assert means.axes_manager.navigation_shape == (3,)
    view.axes_manager.indices = (2,)
    assert spectra._plot.axes_manager.indices == (2,)
    np.testing.assert_allclose(means._plot.signal_plot.ax.images[0].get_array(), means.data[2], rtol=1e-6)
    # The navigator is shaded in the palette, one slot per cluster.
    nav_ax = means._plot.navigator_plot.ax
    spans = [p for p in nav_ax.patches]
    assert len(spans) == 3
    assert tuple(spans[1].get_facecolor()[:3]) == pytest.approx(cluster_colours(3)[1][:3])
    view.close()


def test_explore_clusters_with_lazy_data(truth_labels, scan_cache):
    lazy = scan_cache("four_phases", lazy=True)
    view = explore_clusters(truth_labels, lazy.dp, lazy.eds)
    assert len(view.figures) == 3
    assert not isinstance(view.signals[0].data, da.Array)  # means are small and in memory
    view.close()


def test_label_map_names_and_embedding_components(small):
    labels, _, _ = small
    fig = plot_label_map(labels, names=["a", "b", "c"])
    texts = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert texts[:3] == ["a", "b", "c"] and texts[3] == "noise"
    fig = plot_embedding(labels, dims=2, components=(2, 1))
    ax = next(a for a in fig.axes if a.get_label() == "embedding")
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("component 3", "component 2")
    offsets = ax.collections[-1].get_offsets()
    rows = np.flatnonzero(np.asarray(labels.data).ravel() == 2)
    embedding = np.asarray(labels.embedding.data).reshape(-1, 3)
    assert np.allclose(np.sort(offsets[:, 0]), np.sort(embedding[rows, 2]))
    with pytest.raises(ValueError, match=re.escape("components=(0, 5) must be 2 indices of the 3 embedding components.")):
        plot_embedding(labels, dims=2, components=(0, 5))


def test_mean_patterns_and_spectra_from_saved_means(small):
    labels, dp, eds = small
    mean_dp, _ = labels.cluster_statistics(dp)
    mean_eds, _ = labels.cluster_statistics(eds)
    fig = plot_mean_patterns(mean_dp, max_columns=2)
    drawn = [ax for ax in fig.axes if ax.get_label().startswith("dp_mean:")]
    assert [ax.get_label() for ax in drawn] == ["dp_mean:0", "dp_mean:1", "dp_mean:2"]
    for i, ax in enumerate(drawn):
        assert np.allclose(ax.spines["left"].get_edgecolor(), cluster_colours(3)[i])
    fig = plot_mean_spectra(mean_eds)
    lines = {line.get_label(): line for line in fig.axes[0].lines}
    for i, colour in enumerate(cluster_colours(3)):
        assert np.allclose(to_rgba(lines[f"cluster {i}"].get_color()), colour)
    with pytest.raises(ValueError, match=re.escape("plot_mean_spectra expects cluster means (one navigation axis of clusters, signal dimension 1)")):
        plot_mean_spectra(mean_dp)
    with pytest.raises(TypeError, match=re.escape("plot_mean_patterns expects the cluster means of ClusterLabels.cluster_statistics, got ndarray.")):
        plot_mean_patterns(np.zeros((2, 4, 4)))
