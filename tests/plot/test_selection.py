"""Figures that judge a feature selection: stemfuse_hs.plot.selection."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.patches import Circle  # noqa: E402

import stemfuse_hs  # noqa: E402
from stemfuse_hs.plot import plot_sdt_selection, plot_variance_selection  # noqa: E402

CU_LINES = ["Cu_Ka", "Cu_Kb", "Cu_La"]


@pytest.fixture(scope="module")
def scan():
    return stemfuse_hs.data.synthetic_scan("four_phases", size="tiny")


@pytest.fixture(scope="module")
def sdt(scan):
    return stemfuse_hs.sdt_features(scan.dp, show_progressbar=False)


@pytest.fixture(scope="module")
def variance(scan):
    return stemfuse_hs.variance_features(scan.eds, show_progressbar=False)


@pytest.fixture(scope="module")
def variance_cu(scan):
    return stemfuse_hs.variance_features(scan.eds, exclude_lines=CU_LINES, show_progressbar=False)


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def _panels(fig):
    return {ax.get_label(): ax for ax in fig.axes if ax.get_label() != "<colorbar>"}


def _circles(ax):
    return [p for p in ax.patches if isinstance(p, Circle)]


def _spans(ax):
    # axvspan gives a Rectangle (matplotlib >= 3.9) or a Polygon (older).
    return [p for p in ax.patches if type(p).__name__ in ("Rectangle", "Polygon")]


def _x_range(span):
    if type(span).__name__ == "Rectangle":
        return span.get_x(), span.get_x() + span.get_width()
    x = np.asarray(span.get_xy())[:, 0]
    return x.min(), x.max()


# --- plot_sdt_selection ----------------------------------------------------
def test_sdt_returns_figure_with_three_panels_and_two_colourbars(sdt):
    fig = plot_sdt_selection(sdt)
    assert isinstance(fig, matplotlib.figure.Figure)
    assert len(fig.axes) == 5
    assert list(_panels(fig)) == ["std_map", "selection", "mean_pattern"]
    assert sum(ax.get_label() == "<colorbar>" for ax in fig.axes) == 2


def test_sdt_titles_say_what_to_judge(sdt):
    fig = plot_sdt_selection(sdt)
    panels = _panels(fig)
    assert panels["std_map"].get_title().startswith("Std map (log scale)")
    assert "beam disk excluded" in panels["std_map"].get_title()
    selection = panels["selection"].get_title()
    assert selection.startswith("40% of pixels kept")
    n_selected = int(sdt.metadata.Features.selected_mask.data.sum())
    n_outside = int((sdt.metadata.Features.beam_mask.data == 0).sum())
    assert f"{n_selected} of {n_outside} outside the beam" in selection
    assert panels["mean_pattern"].get_title().startswith("Mean pattern (log scale)")
    assert "found from the mean" in panels["mean_pattern"].get_title()
    assert "fraction 0.4" in fig.get_suptitle()


def test_sdt_title_follows_fraction(scan):
    features = stemfuse_hs.sdt_features(scan.dp, fraction=0.25, show_progressbar=False)
    fig = plot_sdt_selection(features)
    assert _panels(fig)["selection"].get_title().startswith("25% of pixels kept")


def test_sdt_panels_use_log_colour_scale(sdt):
    from matplotlib.colors import LogNorm

    panels = _panels(plot_sdt_selection(sdt))
    assert isinstance(panels["std_map"].images[0].norm, LogNorm)
    assert isinstance(panels["mean_pattern"].images[0].norm, LogNorm)


def test_sdt_beam_circle_in_calibrated_units(sdt):
    fig = plot_sdt_selection(sdt)
    node = sdt.metadata.Features
    parameters = node.parameters
    horizontal, vertical = node.std_map.axes_manager.signal_axes
    binning = parameters.binning
    row, col = (c / binning for c in parameters.beam_centre)
    expected_centre = (horizontal.offset + col * horizontal.scale, vertical.offset + row * vertical.scale)
    expected_radius = parameters.beam_radius / binning * horizontal.scale
    for ax in _panels(fig).values():
        circles = _circles(ax)
        assert len(circles) == 1
        np.testing.assert_allclose(circles[0].center, expected_centre)
        assert circles[0].radius == pytest.approx(expected_radius)


def test_sdt_extent_and_labels_use_detector_axes(sdt):
    fig = plot_sdt_selection(sdt)
    axis = sdt.metadata.Features.std_map.axes_manager.signal_axes[0]
    ax = _panels(fig)["std_map"]
    left, right, _, _ = ax.images[0].get_extent()
    assert left == pytest.approx(axis.offset - axis.scale / 2)
    assert right == pytest.approx(axis.offset + (axis.size - 0.5) * axis.scale)
    assert ax.get_xlabel() == f"{axis.name} ({axis.units})"
    assert axis.units == "1/nm"


def test_sdt_without_beam_disk_draws_no_circle(scan):
    features = stemfuse_hs.sdt_features(scan.dp, beam_radius=0, show_progressbar=False)
    fig = plot_sdt_selection(features)
    panels = _panels(fig)
    assert all(not _circles(ax) for ax in panels.values())
    assert "no beam disk excluded" in panels["std_map"].get_title()


def test_sdt_given_beam_position_said_so(scan):
    features = stemfuse_hs.sdt_features(scan.dp, beam_centre=(15.0, 15.0), beam_radius=4, show_progressbar=False)
    fig = plot_sdt_selection(features)
    assert "given" in _panels(fig)["mean_pattern"].get_title()


def test_sdt_figsize(sdt):
    fig = plot_sdt_selection(sdt, figsize=(9, 3))
    np.testing.assert_allclose(fig.get_size_inches(), (9, 3))


def test_sdt_lazy_input(scan):
    lazy = stemfuse_hs.data.synthetic_scan("four_phases", size="tiny", lazy=True)
    features = stemfuse_hs.sdt_features(lazy.dp, show_progressbar=False)
    fig = plot_sdt_selection(features)
    assert len(_panels(fig)) == 3


# --- plot_variance_selection -------------------------------------------------
def test_variance_returns_figure_with_two_panels(variance):
    fig = plot_variance_selection(variance)
    assert isinstance(fig, matplotlib.figure.Figure)
    assert len(fig.axes) == 2
    assert list(_panels(fig)) == ["variance", "ratio"]
    top, bottom = fig.axes
    assert top.get_yscale() == "log"
    assert bottom.get_xlabel() == "Energy (keV)"


def test_variance_title_counts_channels(variance):
    fig = plot_variance_selection(variance)
    n_kept = int(variance.metadata.Features.kept_channels.data.sum())
    n = variance.metadata.Features.variance.data.size
    title = fig.axes[0].get_title()
    assert title.startswith(f"{n_kept} of {n} channels kept")
    assert "Poisson threshold" in title


def test_variance_highlights_kept_channels(variance):
    fig = plot_variance_selection(variance)
    kept = variance.metadata.Features.kept_channels.data.astype(bool)
    energy = variance.metadata.Features.variance.axes_manager.signal_axes[0].axis
    markers = [line for line in fig.axes[0].lines if line.get_label().startswith("kept")]
    assert len(markers) == 1
    np.testing.assert_allclose(markers[0].get_xdata(), energy[kept])


def test_variance_poisson_threshold_is_a_curve(variance):
    fig = plot_variance_selection(variance)
    (curve,) = [line for line in fig.axes[0].lines if "Poisson threshold" in line.get_label()]
    assert len(curve.get_xdata()) == variance.metadata.Features.threshold.data.size


def test_variance_constant_threshold_is_a_line(scan):
    features = stemfuse_hs.variance_features(scan.eds, quantile=0.8, show_progressbar=False)
    fig = plot_variance_selection(features)
    (line,) = [line for line in fig.axes[0].lines if "quantile" in line.get_label()]
    value = float(features.metadata.Features.threshold.data[0])
    np.testing.assert_allclose(line.get_ydata(), [value, value], rtol=1e-6)


def test_variance_no_shading_without_exclusions(variance):
    fig = plot_variance_selection(variance)
    assert all(not _spans(ax) for ax in fig.axes)
    assert "0 excluded" in fig.axes[0].get_title()


def test_variance_shades_excluded_lines(variance_cu):
    fig = plot_variance_selection(variance_cu)
    excluded = variance_cu.metadata.Features.excluded_channels.data.astype(bool)
    n_runs = int(np.sum(np.diff(np.concatenate([[0], excluded.astype(int)])) == 1))
    assert n_runs >= 2  # Cu L at 0.93 keV and Cu K at 8-9 keV at least
    for ax in fig.axes:
        assert len(_spans(ax)) == n_runs
    labels = [text.get_text() for text in fig.axes[0].texts]
    assert {"Cu Ka", "Cu Kb", "Cu La"} <= set(labels)
    energy = variance_cu.metadata.Features.variance.axes_manager.signal_axes[0].axis
    span = next(p for p in _spans(fig.axes[0]) if p.get_label() == "excluded windows")
    low, high = _x_range(span)
    # The first shaded window (Cu La) covers the first run of excluded channels.
    first = np.flatnonzero(excluded)[0]
    last = first + np.argmin(excluded[first:]) - 1
    assert low < energy[first] and energy[last] < high
    assert not low < energy[first - 1] and not energy[last + 1] < high


def test_variance_shades_excluded_windows(scan):
    features = stemfuse_hs.variance_features(scan.eds, exclude_windows=[(5.0, 5.5)], show_progressbar=False)
    fig = plot_variance_selection(features)
    spans = _spans(fig.axes[0])
    assert len(spans) == 1
    low, high = _x_range(spans[0])
    assert low == pytest.approx(5.0, abs=0.03)
    assert high == pytest.approx(5.5, abs=0.03)
    assert not fig.axes[0].texts


def test_variance_figsize(variance):
    fig = plot_variance_selection(variance, figsize=(6, 5))
    np.testing.assert_allclose(fig.get_size_inches(), (6, 5))


# --- errors -----------------------------------------------------------------
@pytest.mark.parametrize(
    "function, other, match",
    [
        (
            plot_sdt_selection,
            "variance",
            r"plot_sdt_selection needs the result of stemfuse_hs\.sdt_features "
            r"\(metadata\.Features\.extractor == 'sdt'\); this signal has metadata\.Features\.extractor == 'variance'",
        ),
        (
            plot_variance_selection,
            "sdt",
            r"plot_variance_selection needs the result of stemfuse_hs\.variance_features "
            r"\(metadata\.Features\.extractor == 'variance'\)",
        ),
    ],
    ids=["sdt", "variance"],
)
def test_refuses_the_other_extractors_features(request, function, other, match):
    with pytest.raises(ValueError, match=match):
        function(request.getfixturevalue(other))


@pytest.mark.parametrize("which", ["dp", "eds"])
def test_raw_data_refused(scan, which):
    function = plot_sdt_selection if which == "dp" else plot_variance_selection
    with pytest.raises(ValueError, match="this signal has no metadata.Features"):
        function(getattr(scan, which))


def test_not_a_signal_refused(sdt):
    with pytest.raises(TypeError, match="plot_sdt_selection needs the result of stemfuse_hs.sdt_features"):
        plot_sdt_selection(sdt.data)
    with pytest.raises(TypeError, match="got dict"):
        plot_variance_selection({})


def test_incomplete_metadata_refused(sdt, variance):
    broken = sdt.deepcopy()
    del broken.metadata.Features.std_map
    with pytest.raises(ValueError, match="metadata.Features lacks std_map"):
        plot_sdt_selection(broken)
    broken = variance.deepcopy()
    del broken.metadata.Features.threshold
    with pytest.raises(ValueError, match="metadata.Features lacks threshold"):
        plot_variance_selection(broken)


def test_exported():
    import stemfuse_hs.plot as plot

    assert {"plot_sdt_selection", "plot_variance_selection"} <= set(plot.__all__)


def test_sdt_unequal_calibration_draws_an_ellipse(sdt):
    from matplotlib.patches import Ellipse

    stretched = sdt.deepcopy()
    stretched.metadata.Features.std_map.axes_manager.signal_axes[1].scale *= 2
    fig = plot_sdt_selection(stretched)
    (ellipse,) = [p for p in _panels(fig)["std_map"].patches if isinstance(p, Ellipse)]
    assert not isinstance(ellipse, Circle)
    assert ellipse.height == pytest.approx(2 * ellipse.width)
