"""Figures to judge a segmentation: the map, its confidence, its clusters, its stability.

Every function draws with matplotlib only (headless-safe), returns the
:class:`~matplotlib.figure.Figure` without showing it, and colours cluster
``i`` with the package palette (:mod:`stemfuse_hs.plot.palette`): the same
colour in the label map, the frames of the cluster grid, the embedding
scatter and every stability or sensitivity figure; noise is grey.

Maps are drawn in scan pixels with a scalebar from the scan axes' scale and
units (matplotlib-scalebar), as microscopists read them.
"""

from pathlib import Path

import numpy as np

from .._checks import require_signal
from .._text import format_value
from ._text import literal
from .palette import MASK_COLOUR, NOISE_COLOUR, cluster_colours, label_colormap
from .selection import _new_figure

__all__ = [
    "GRID_ROWS",
    "FIGURE_WIDTHS",
    "plot_label_map",
    "plot_membership_map",
    "plot_embedding",
    "plot_cluster_grid",
    "plot_mean_patterns",
    "plot_mean_spectra",
    "plot_stability",
    "plot_sensitivity",
    "save_figure",
]

#: Rows :func:`plot_cluster_grid` can draw, in its default order.
GRID_ROWS = ("dp_mean", "dp_std", "eds_mean", "eds_std", "membership")
#: Publication widths in inches: one journal column, the full page width.
FIGURE_WIDTHS = {"single": 3.5, "double": 7.2}
#: Width of the coloured frame around every panel of a cluster, in points.
FRAME_WIDTH = 2.5

_ROW_LABELS = {
    "dp_mean": "mean pattern",
    "dp_std": "std of patterns",
    "eds_mean": "mean spectrum",
    "eds_std": "std of spectra",
    "membership": "membership",
}
_SI_UNITS = None


# --------------------------------------------------------------------------
# Shared helpers
# --------------------------------------------------------------------------
def _check_signal(signal, function, what="a HyperSpy signal"):
    return require_signal(signal, f"{function} expects {what}, got {{type}}.")


def _check_cluster_labels(labels, function):
    from ..signals.labels import ClusterLabels

    if not isinstance(labels, ClusterLabels):
        raise TypeError(
            f"{function} needs a ClusterLabels (the result of FusedSTEMSignal.cluster), got {type(labels).__name__}."
        )
    return labels


def _map_axes(signal):
    """(horizontal, vertical) signal axes of a map, in display order."""
    axes = signal.axes_manager.signal_axes
    if len(axes) != 2:
        raise ValueError(
            f"expected a map with two signal axes (the scan), got signal shape {signal.axes_manager.signal_shape}."
        )
    return axes[0], axes[1]


def _labels_array(labels, function, n_clusters=None):
    """Integer label image and the number of clusters of a label map signal."""
    _check_signal(labels, function, "a label map (ClusterLabels or Signal2D of integer labels)")
    data = np.asarray(labels.data)
    if data.ndim != 2 or labels.axes_manager.navigation_dimension:
        raise ValueError(
            f"{function} expects one label map (two signal axes, no navigation), got a signal of shape "
            f"{labels.axes_manager.navigation_shape} | {labels.axes_manager.signal_shape}."
        )
    data = data.astype(np.int64)
    if n_clusters is None:
        n_clusters = getattr(labels, "n_clusters", None)
        if n_clusters is None:
            n_clusters = int(data.max()) + 1 if data.size and data.max() >= 0 else 0
    return data, int(n_clusters)


def _units(axis):
    units = axis.units
    return units if isinstance(units, str) and units and units != "<undefined>" else None


def _scalebar_units(scale, units):
    """``(dx, units, dimension)`` for matplotlib-scalebar, or None if it cannot show ``units``."""
    global _SI_UNITS
    if units is None:
        return None
    if _SI_UNITS is None:
        from matplotlib_scalebar.dimension import SILengthDimension, SILengthReciprocalDimension

        _SI_UNITS = (SILengthDimension(), SILengthReciprocalDimension())
    if units in ("Å", "A"):  # not an SI prefix: show it in nm
        return scale / 10.0, "nm", "si-length"
    if units in ("1/Å", "1/A"):
        return scale * 10.0, "1/nm", "si-length-reciprocal"
    if _SI_UNITS[0].is_valid_units(units):
        return scale, units, "si-length"
    if _SI_UNITS[1].is_valid_units(units):
        return scale, units, "si-length-reciprocal"
    return None


def _add_scalebar(ax, axis, **kwargs):
    """A scalebar for an image drawn in pixels of ``axis``; None if its units are not lengths."""
    scale = getattr(axis, "scale", None)  # non-uniform axes have none: no scalebar
    found = _scalebar_units(abs(float(scale)), _units(axis)) if scale else None
    if found is None:
        return None
    from matplotlib_scalebar.scalebar import ScaleBar

    dx, units, dimension = found
    style = {"location": "lower right", "box_alpha": 0.7, "border_pad": 0.3, "pad": 0.2, "font_properties": {"size": "small"}}
    style.update(kwargs)
    bar = ScaleBar(dx, units, dimension=dimension, **style)
    ax.add_artist(bar)
    return bar


def _axis_title(axis):
    name = axis.name if isinstance(axis.name, str) and axis.name and axis.name != "<undefined>" else "axis"
    units = _units(axis)
    return literal(f"{name} ({units})" if units else name)


def _show_map(ax, image, signal, scalebar=True, **imshow_kwargs):
    """``imshow`` of a scan map in pixels, true aspect, with a scalebar (else pixel ticks)."""
    horizontal, vertical = _map_axes(signal)
    scales = [getattr(axis, "scale", None) for axis in (horizontal, vertical)]
    aspect = abs(float(scales[1]) / float(scales[0])) if all(scales) else 1.0
    imshow_kwargs.setdefault("interpolation", "nearest")
    shown = ax.imshow(image, aspect=aspect, origin="upper", **imshow_kwargs)
    bar = _add_scalebar(ax, horizontal) if scalebar else None
    if bar is not None or not scalebar:
        ax.set_xticks([])
        ax.set_yticks([])
    else:  # units a scalebar cannot show: calibrated ticks instead
        ax.set_xlabel(_axis_title(horizontal) + " [px]")
        ax.set_ylabel(_axis_title(vertical) + " [px]")
    return shown


def _excluded(labels, shape):
    """Positions ``cluster`` left out (``metadata.Clustering.excluded_positions``), or None."""
    excluded = labels.metadata.get_item("Clustering.excluded_positions", None)
    if excluded is None:
        return None
    excluded = np.asarray(getattr(excluded, "data", excluded), dtype=bool)
    if excluded.size != int(np.prod(shape)) or not excluded.any():
        return None
    return excluded.reshape(shape)


def _legend_handles(ids, n_clusters, names=None, excluded=False):
    from matplotlib.patches import Patch

    colours = cluster_colours(n_clusters)
    handles = []
    for i in ids:
        if i < 0:
            continue
        label = names[i] if names is not None and i < len(names) else f"cluster {i}"
        handles.append(Patch(facecolor=colours[i], edgecolor="none", label=label))
    if any(i < 0 for i in ids):
        handles.append(Patch(facecolor=NOISE_COLOUR, edgecolor="none", label="noise"))
    if excluded:
        handles.append(Patch(facecolor=MASK_COLOUR, edgecolor="none", label="excluded"))
    return handles


def _figure_and_ax(ax, figsize, **subplot_kwargs):
    if ax is not None:
        return ax.figure, ax
    fig = _new_figure(figsize)
    return fig, fig.add_subplot(**subplot_kwargs)


def _draw_label_map(ax, data, n_clusters, signal, scalebar=True):
    cmap, limits = label_colormap(n_clusters)
    return _show_map(ax, data, signal, scalebar=scalebar, cmap=cmap, **limits)


# --------------------------------------------------------------------------
# Maps
# --------------------------------------------------------------------------
def plot_label_map(
    labels, ax=None, scalebar=True, legend=True, *, title=None, n_clusters=None, names=None, figsize=None
):
    """Draw a phase map in the package palette, with a scalebar and a legend.

    Parameters
    ----------
    labels : ClusterLabels or hyperspy.signals.Signal2D
        A label map whose signal axes are the scan (``-1`` = noise), e.g.
        from :meth:`FusedSTEMSignal.cluster
        <stemfuse_hs.signals.features.FusedSTEMSignal.cluster>`, a consensus
        or one map of a stability result.
    ax : matplotlib.axes.Axes, optional
        Where to draw; a new figure by default.
    scalebar : bool, default True
        A scalebar from the scan axes' scale and units (e.g. ``"nm"``);
        scan axes without length units get pixel axis labels instead.
    legend : bool, default True
        One patch per cluster present (and grey for noise), right of the map.
        Positions that ``cluster`` left out
        (``metadata.Clustering.excluded_positions``) are drawn black.
    title : str, optional
        Default: the signal's title (shown literally: a ``$`` in it does not start
        mathtext) and the number of clusters. A title given here is drawn as
        matplotlib draws text, mathtext included.
    n_clusters : int, optional
        Number of cluster ids to colour; default ``labels.n_clusters`` or the
        largest label + 1. Cluster ``i`` has the same colour whatever it is.
    names : sequence of str, optional
        Legend text of cluster ``i`` (e.g. phase names or sizes); default
        ``"cluster i"``.
    figsize : (float, float), optional

    Returns
    -------
    matplotlib.figure.Figure
        The figure (``ax.figure`` if ``ax`` was given); the map's axes is
        labelled ``"label_map"``.

    See Also
    --------
    plot_membership_map, plot_cluster_grid

    Examples
    --------
    >>> import numpy as np
    >>> import hyperspy.api as hs
    >>> from stemfuse_hs.plot import plot_label_map
    >>> labels = hs.signals.Signal2D(np.repeat([[0, 1, 2, -1]], 4, axis=0))
    >>> for axis in labels.axes_manager.signal_axes:
    ...     axis.scale, axis.units = 2.0, "nm"
    >>> fig = plot_label_map(labels)
    >>> fig.axes[0].artists[0].units
    'nm'
    """
    data, k = _labels_array(labels, "plot_label_map", n_clusters)
    fig, ax = _figure_and_ax(ax, figsize or (5.0, 4.0))
    ax.set_label("label_map")
    _draw_label_map(ax, data, k, labels, scalebar=scalebar)
    excluded = _excluded(labels, data.shape)
    if excluded is not None:
        # Left out of the clustering, not noise: drawn over the map in the mask colour.
        overlay = np.zeros(data.shape + (4,))
        overlay[excluded] = MASK_COLOUR
        _show_map(ax, overlay, labels, scalebar=False)
    if title is None:
        source = literal(labels.metadata.General.title or "Label map")
        title = f"{source} ({k} cluster{'s' if k != 1 else ''})"
    ax.set_title(title)
    if legend:
        shown = data if excluded is None else data[~excluded]
        ids = [int(i) for i in np.unique(shown)]
        ax.legend(
            handles=_legend_handles(ids, k, names, excluded=excluded is not None),
            loc="upper left", bbox_to_anchor=(1.02, 1.0),
            borderaxespad=0.0, fontsize="small", frameon=False,
        )
    return fig


def plot_membership_map(labels, cluster=None, ax=None, scalebar=True, *, figsize=None):
    """Draw how sure the clustering is at every position.

    Parameters
    ----------
    labels : ClusterLabels
    cluster : int, optional
        ``None``: the largest membership of every position (its confidence,
        viridis from 0 to 1). An index: that cluster's membership, from
        white to the cluster's palette colour.
    ax : matplotlib.axes.Axes, optional
    scalebar : bool, default True
    figsize : (float, float), optional

    Returns
    -------
    matplotlib.figure.Figure
        The map's axes is labelled ``"membership_map"``; a colour bar from 0
        to 1 is added.

    Examples
    --------
    >>> import stemfuse_hs
    >>> from stemfuse_hs.plot import plot_membership_map
    >>> scan = stemfuse_hs.data.synthetic_scan("four_phases", size="tiny")
    >>> labels = stemfuse_hs.fuse(scan.dp, scan.eds).cluster(random_state=0)  # doctest: +SKIP
    >>> fig = plot_membership_map(labels)  # doctest: +SKIP
    >>> fig = plot_membership_map(labels, cluster=1)  # doctest: +SKIP
    """
    from matplotlib.colors import LinearSegmentedColormap

    labels = _check_cluster_labels(labels, "plot_membership_map")
    k = labels.n_clusters
    if cluster is None:
        data = np.asarray(labels.max_membership.data, dtype=np.float64)
        cmap, what = "viridis", "largest membership"
    else:
        if isinstance(cluster, bool) or not isinstance(cluster, (int, np.integer)) or not 0 <= cluster < k:
            raise ValueError(f"cluster={cluster!r} is not a cluster index (0 to {k - 1}).")
        cluster = int(cluster)
        data = np.asarray(labels.memberships.data[cluster], dtype=np.float64)
        cmap = LinearSegmentedColormap.from_list(f"cluster_{cluster}", [(1.0, 1.0, 1.0, 1.0), cluster_colours(k)[cluster]])
        what = f"membership of cluster {cluster}"
    fig, ax = _figure_and_ax(ax, figsize or (5.0, 4.0))
    ax.set_label("membership_map")
    image = _show_map(ax, data, labels, scalebar=scalebar, cmap=cmap, vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, shrink=0.85, label=what)
    ax.set_title(what[0].upper() + what[1:])
    return fig


def plot_embedding(
    labels, dims=3, ax=None, *, components=None, max_points=20_000, point_size=4.0, legend=True, figsize=None
):
    """Scatter of the embedding, one palette colour per cluster, noise grey.

    Parameters
    ----------
    labels : ClusterLabels
    dims : {3, 2}, default 3
        A 3-D scatter of the first three embedding components, or a 2-D
        scatter of the first two.
    ax : matplotlib.axes.Axes, optional
        A 3-D axes (``projection="3d"``) for ``dims=3``.
    components : sequence of int, optional
        The ``dims`` embedding components to draw (0-based), e.g. ``(2, 1)``
        for a side view; default the first ``dims``.
    max_points : int, default 20000
        At most this many positions are drawn (an evenly spread, seeded
        sample), so large scans stay quick to draw.
    point_size : float, default 4
    legend : bool, default True
    figsize : (float, float), optional

    Returns
    -------
    matplotlib.figure.Figure
        One scatter collection per cluster (labelled ``"cluster i"``) and
        one for noise (``"noise"``) if any.

    Examples
    --------
    >>> import stemfuse_hs
    >>> from stemfuse_hs.plot import plot_embedding
    >>> scan = stemfuse_hs.data.synthetic_scan("four_phases", size="tiny")
    >>> labels = stemfuse_hs.fuse(scan.dp, scan.eds).cluster(random_state=0)  # doctest: +SKIP
    >>> fig = plot_embedding(labels, dims=2)  # doctest: +SKIP
    """
    labels = _check_cluster_labels(labels, "plot_embedding")
    if dims not in (2, 3):
        raise ValueError(f"dims must be 2 or 3, got {dims!r}.")
    embedding = np.asarray(labels.embedding.data, dtype=np.float64)
    embedding = embedding.reshape(-1, embedding.shape[-1])
    if components is None:
        if embedding.shape[1] < dims:
            raise ValueError(f"the embedding has {embedding.shape[1]} components; use dims={embedding.shape[1]}.")
        components = tuple(range(dims))
    components = tuple(int(c) for c in components)
    if len(components) != dims or not all(0 <= c < embedding.shape[1] for c in components):
        raise ValueError(
            f"components={components!r} must be {dims} indices of the {embedding.shape[1]} embedding components."
        )
    flat = np.asarray(labels.data).reshape(-1)
    n = flat.size
    keep = np.arange(n)
    if n > max_points:
        keep = np.sort(np.random.default_rng(0).choice(n, int(max_points), replace=False))
    k = labels.n_clusters
    colours = cluster_colours(k)
    if ax is None:
        fig = _new_figure(figsize or (5.5, 4.5))
        ax = fig.add_subplot(projection="3d" if dims == 3 else None)
    else:
        fig = ax.figure
        if (ax.name == "3d") != (dims == 3):
            raise ValueError(f"dims={dims} needs a {'3-D' if dims == 3 else '2-D'} axes, got a {ax.name!r} axes.")
    ax.set_label("embedding")
    # Noise first, so clusters are drawn over it.
    for cluster in [-1] + list(range(k)):
        rows = keep[flat[keep] == cluster]
        if rows.size == 0:
            continue
        colour = NOISE_COLOUR if cluster < 0 else colours[cluster]
        points = [embedding[rows, c] for c in components]
        kwargs = {"s": point_size, "color": [colour], "label": "noise" if cluster < 0 else f"cluster {cluster}", "linewidths": 0}
        if dims == 3:
            kwargs["depthshade"] = False  # keep the palette colour exact
        ax.scatter(*points, **kwargs)
    ax.set_xlabel(f"component {components[0] + 1}")
    ax.set_ylabel(f"component {components[1] + 1}")
    if dims == 3:
        ax.set_zlabel(f"component {components[2] + 1}")
    ax.set_title(f"Embedding ({k} clusters)")
    if legend and k:
        ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize="small", markerscale=3, frameon=False)
    return fig


# --------------------------------------------------------------------------
# Cluster grid
# --------------------------------------------------------------------------
def _beam_disk(pattern):
    """Centre (row, col) and radius in pixels of the direct beam of a mean pattern.

    The brightest pixel is the beam; its disk is taken as the pixels above
    half that maximum, plus a margin, so the beam's tails stay out of the
    contrast range too.
    """
    pattern = np.nan_to_num(np.asarray(pattern, dtype=np.float64))
    centre = np.unravel_index(int(np.argmax(pattern)), pattern.shape)
    peak = pattern[centre]
    bright = int(np.count_nonzero(pattern >= peak / 2)) if peak > 0 else 1
    radius = np.sqrt(bright / np.pi) * 1.5 + 1.0
    return centre, min(radius, min(pattern.shape) / 4)


def _pattern_norm(patterns, centre, radius):
    """A log norm shared by a row of patterns, from percentiles outside the beam disk."""
    from matplotlib.colors import LogNorm

    patterns = np.asarray(patterns, dtype=np.float64)
    rows, cols = np.indices(patterns.shape[-2:])
    outside = (rows - centre[0]) ** 2 + (cols - centre[1]) ** 2 > radius**2
    values = patterns[:, outside]
    values = values[np.isfinite(values) & (values > 0)]
    if values.size == 0:
        return LogNorm(vmin=1e-3, vmax=1.0, clip=True)
    low, high = np.percentile(values, [1.0, 99.5])
    low = max(low, values.min(), high * 1e-4)
    if high <= low:
        high = low * 10.0
    return LogNorm(vmin=low, vmax=high, clip=True)


def _energy_keV(axis):
    energy = np.asarray(axis.axis, dtype=np.float64)
    units = _units(axis) or ""
    if units == "eV":
        return energy / 1000.0, "keV"
    return energy, "keV" if units in ("keV", "") else units


def _xray_lines(eds):
    """``[(name, energy keV)]`` of the spectrum image's X-ray lines (exspy's database)."""
    from ..features.variance import xray_line_energy

    lines = list(eds.metadata.get_item("Sample.xray_lines", []) or [])
    if not lines:
        # Elements without chosen lines: each element's strongest line.
        from exspy.material import elements as database

        for element in eds.metadata.get_item("Sample.elements", []) or []:
            try:
                known = database[element].Atomic_properties.Xray_lines
            except (AttributeError, KeyError):
                continue
            names = known.keys()
            if names:
                best = max(names, key=lambda name: known[name]["weight"])
                lines.append(f"{element}_{best}")
    found = []
    for line in lines:
        try:
            found.append((line, xray_line_energy(line)))
        except ValueError:
            continue
    return sorted(found, key=lambda item: item[1])


def _label_lines(ax, lines, low, high, text=True):
    transform = ax.get_xaxis_transform()
    span = high - low
    last = -np.inf
    level = 0
    for name, energy in lines:
        if not low <= energy <= high:
            continue
        ax.axvline(energy, color="0.55", linewidth=0.5, linestyle=":", zorder=0)
        if not text:
            continue
        # Close lines alternate height so their labels do not overlap.
        level = level + 1 if energy - last < 0.08 * span else 0
        last = energy
        ax.text(
            energy, 0.97 - 0.13 * (level % 3), name.replace("_", " "), transform=transform,
            rotation=90, ha="right", va="top", fontsize=5.5, color="0.25",
        )


def _frame(ax, colour):
    for spine in ax.spines.values():
        spine.set_visible(True)
        spine.set_edgecolor(colour)
        spine.set_linewidth(FRAME_WIDTH)


def plot_cluster_grid(
    labels,
    dp=None,
    eds=None,
    rows=GRID_ROWS,
    mode="membership",
    *,
    min_membership=0.5,
    clusters=None,
    figsize=None,
):
    """One column per cluster: its mean and spread of patterns and spectra, and where it is.

    Every panel of cluster ``i`` is framed in its palette colour. The means
    and standard deviations are computed once per input (one
    :meth:`~stemfuse_hs.signals.labels.ClusterLabels.cluster_statistics`
    pass over each signal, lazy data read chunk by chunk).

    Rows, any of (in the order given):

    ``"dp_mean"``, ``"dp_std"``
        Mean and standard deviation of the diffraction patterns on a log
        colour scale shared by the row (one colour bar). The contrast range
        comes from the 1st-99.5th percentiles of the pixels outside a disk
        around the brightest pixel (the direct beam), so the beam does not
        wash out the Bragg disks; the beam itself saturates.
    ``"eds_mean"``, ``"eds_std"``
        Mean and standard deviation of the spectra (shared y axis), with
        the X-ray lines of ``eds.metadata.Sample.xray_lines`` (or each
        element's strongest line of ``Sample.elements``) marked, labelled on
        the mean.
    ``"membership"``
        Each cluster's membership map, 0 to 1, with one shared colour bar.

    Parameters
    ----------
    labels : ClusterLabels
    dp : hyperspy signal, optional
        4D-STEM data of the same scan (``Diffraction2D``, eager or lazy).
    eds : hyperspy signal, optional
        Spectrum image of the same scan (``EDSTEMSpectrum``, eager or lazy).
    rows : sequence of str, default ``GRID_ROWS``
        Rows that need ``dp`` or ``eds`` are left out when it is not given.
    mode : {"membership", "hard"}, default "membership"
        How positions are weighted in the means (see
        :meth:`~stemfuse_hs.signals.labels.ClusterLabels.cluster_statistics`).
    min_membership : float, default 0.5
        For ``mode="hard"``.
    clusters : sequence of int, optional
        Columns to draw; all clusters by default.
    figsize : (float, float), optional

    Returns
    -------
    matplotlib.figure.Figure
        Panels labelled ``"<row>:<cluster>"`` (e.g. ``"dp_mean:0"``), plus
        colour bars.

    Raises
    ------
    ValueError
        For an unknown row, no drawable row, or no clusters.

    Examples
    --------
    >>> import stemfuse_hs
    >>> from stemfuse_hs.plot import plot_cluster_grid
    >>> scan = stemfuse_hs.data.synthetic_scan("four_phases", size="tiny")
    >>> labels = stemfuse_hs.fuse(scan.dp, scan.eds).cluster(random_state=0)  # doctest: +SKIP
    >>> fig = plot_cluster_grid(labels, scan.dp, scan.eds)  # doctest: +SKIP
    >>> fig = plot_cluster_grid(labels, eds=scan.eds, rows=["eds_mean", "membership"])  # doctest: +SKIP
    """
    from matplotlib.ticker import NullFormatter

    labels = _check_cluster_labels(labels, "plot_cluster_grid")
    if isinstance(rows, str):
        rows = (rows,)
    rows = list(rows)
    unknown = [r for r in rows if r not in GRID_ROWS]
    if unknown:
        raise ValueError(f"plot_cluster_grid: unknown rows {unknown}; choose from {list(GRID_ROWS)}.")
    available = {"dp": dp is not None, "eds": eds is not None, "membership": True}
    rows = [r for r in rows if available[r.split("_")[0]]]
    if not rows:
        raise ValueError("plot_cluster_grid: nothing to draw (rows need dp or eds that were not given).")
    k = labels.n_clusters
    columns = list(range(k)) if clusters is None else [int(c) for c in clusters]
    if not columns:
        raise ValueError("plot_cluster_grid: the label map has no clusters (only noise).")
    bad = [c for c in columns if not 0 <= c < k]
    if bad:
        raise ValueError(f"plot_cluster_grid: clusters {bad} are not cluster indices (0 to {k - 1}).")
    colours = cluster_colours(k)

    # One pass per input, whatever the number of columns.
    stats = {}
    if any(r.startswith("dp_") for r in rows):
        _check_signal(dp, "plot_cluster_grid", "a 4D-STEM signal for dp")
        stats["dp"] = labels.cluster_statistics(dp, mode=mode, min_membership=min_membership)
    if any(r.startswith("eds_") for r in rows):
        _check_signal(eds, "plot_cluster_grid", "a spectrum image for eds")
        stats["eds"] = labels.cluster_statistics(eds, mode=mode, min_membership=min_membership)

    n_rows, n_cols = len(rows), len(columns)
    fig = _new_figure(figsize or (1.1 + 1.75 * n_cols, 0.5 + 1.65 * n_rows))
    grid = fig.subplots(n_rows, n_cols, squeeze=False)
    sizes = np.asarray(labels.metadata.get_item("Clustering.cluster_sizes", np.zeros(k)), dtype=np.int64)
    n_positions = max(int(np.asarray(labels.data).size), 1)

    beam = None
    lines = _xray_lines(eds) if "eds" in stats else []
    for r, row in enumerate(rows):
        axes = grid[r]
        source, _, kind = row.partition("_")
        if source == "dp":
            mean, std = stats["dp"]
            patterns = np.asarray((mean if kind == "mean" else std).data, dtype=np.float64)[columns]
            if beam is None:
                beam = _beam_disk(np.nanmean(np.asarray(mean.data, dtype=np.float64)[columns], axis=0))
            norm = _pattern_norm(patterns, *beam)
            for c, ax in enumerate(axes):
                shown = np.where(np.isfinite(patterns[c]) & (patterns[c] > 0), patterns[c], norm.vmin)
                image = ax.imshow(shown, norm=norm, cmap="magma", interpolation="nearest", origin="upper")
                ax.set_xticks([])
                ax.set_yticks([])
            _add_scalebar(axes[0], mean.axes_manager.signal_axes[0], location="lower left", font_properties={"size": 5.5})
            bar = fig.colorbar(image, ax=list(axes), shrink=0.9, pad=0.01, label="counts (log)")
            # Decades only: minor log labels crowd a short colour bar.
            bar.ax.yaxis.set_minor_formatter(NullFormatter())
        elif source == "eds":
            mean, std = stats["eds"]
            spectra = np.asarray((mean if kind == "mean" else std).data, dtype=np.float64)[columns]
            energy, energy_units = _energy_keV(mean.axes_manager.signal_axes[0])
            finite = spectra[np.isfinite(spectra)]
            top = float(finite.max()) if finite.size else 1.0
            for c, ax in enumerate(axes):
                ax.plot(energy, spectra[c], color=colours[columns[c]], linewidth=0.8)
                _label_lines(ax, lines, energy.min(), energy.max(), text=kind == "mean")
                ax.set_xlim(energy.min(), energy.max())
                ax.set_ylim(0, top * 1.08 if top > 0 else 1.0)
                ax.tick_params(labelsize=6)
                ax.set_xlabel(literal(f"energy ({energy_units})"), fontsize=6)
                if c:
                    ax.tick_params(labelleft=False)
        else:
            data = np.asarray(labels.memberships.data, dtype=np.float64)
            for c, ax in enumerate(axes):
                image = _show_map(ax, data[columns[c]], labels, scalebar=c == 0, cmap="viridis", vmin=0.0, vmax=1.0)
            fig.colorbar(image, ax=list(axes), shrink=0.9, pad=0.01, label="membership")
        axes[0].set_ylabel(_ROW_LABELS[row], fontsize=8)
        for c, ax in enumerate(axes):
            ax.set_label(f"{row}:{columns[c]}")
            _frame(ax, colours[columns[c]])

    for c, cluster in enumerate(columns):
        share = sizes[cluster] / n_positions if cluster < sizes.size else float("nan")
        grid[0, c].set_title(
            f"cluster {cluster}\n{share:.0%} of positions", fontsize=8,
            bbox={"facecolor": colours[cluster], "edgecolor": "none", "boxstyle": "round,pad=0.25"},
        )
    fig.suptitle(f"{literal(labels.metadata.General.title or 'Clusters')}: {k} clusters, {mode} weighting", fontsize=9)
    return fig


def _cluster_means(mean, function, signal_dimension):
    """The per-cluster mean signal of ``cluster_statistics`` (one navigation index a cluster), checked."""
    _check_signal(mean, function, "the cluster means of ClusterLabels.cluster_statistics")
    am = mean.axes_manager
    if am.navigation_dimension != 1 or am.signal_dimension != signal_dimension:
        raise ValueError(
            f"{function} expects cluster means (one navigation axis of clusters, signal dimension "
            f"{signal_dimension}), got a signal of shape {am.navigation_shape} | {am.signal_shape}."
        )
    return np.asarray(mean.data, dtype=np.float64)


def plot_mean_patterns(mean, fig=None, *, max_columns=5, figsize=None):
    """Draw every cluster's mean diffraction pattern, framed in its palette colour.

    The patterns share the log colour scale of :func:`plot_cluster_grid`
    (percentiles outside the direct beam, which saturates), so that Bragg
    disks show beside the beam.

    Parameters
    ----------
    mean : hyperspy.signals.Signal2D
        Cluster means as :meth:`~stemfuse_hs.signals.labels.ClusterLabels.cluster_statistics`
        returns them (navigation: the clusters), e.g. loaded from a results folder.
    fig : matplotlib.figure.Figure, optional
        An empty figure to draw in; a new one by default.
    max_columns : int, default 5
        Patterns a row.
    figsize : (float, float), optional
        For a new figure.

    Returns
    -------
    matplotlib.figure.Figure
        Panels labelled ``"dp_mean:<cluster>"``.

    Raises
    ------
    ValueError
        If ``mean`` holds no cluster.

    Examples
    --------
    >>> import numpy as np
    >>> import hyperspy.api as hs
    >>> from stemfuse_hs.plot import plot_mean_patterns
    >>> fig = plot_mean_patterns(hs.signals.Signal2D(np.random.default_rng(0).poisson(5.0, (3, 16, 16))))
    >>> [ax.get_label() for ax in fig.axes][:3]
    ['dp_mean:0', 'dp_mean:1', 'dp_mean:2']
    """
    patterns = _cluster_means(mean, "plot_mean_patterns", 2)
    k = patterns.shape[0]
    if k == 0:
        raise ValueError("plot_mean_patterns: no cluster to draw.")
    columns = max(1, min(k, int(max_columns)))
    n_rows = -(-k // columns)
    fig = fig if fig is not None else _new_figure(figsize or (2.4 * columns + 0.6, 2.5 * n_rows + 0.4))
    axes = fig.subplots(n_rows, columns, squeeze=False).ravel()
    colours = cluster_colours(k)
    norm = _pattern_norm(patterns, *_beam_disk(np.nanmean(patterns, axis=0)))
    for i, ax in enumerate(axes):
        if i >= k:
            ax.set_axis_off()
            continue
        shown = np.where(np.isfinite(patterns[i]) & (patterns[i] > 0), patterns[i], norm.vmin)
        ax.imshow(shown, norm=norm, cmap="magma", interpolation="nearest", origin="upper")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"cluster {i}", color=colours[i], fontweight="bold")
        ax.set_label(f"dp_mean:{i}")
        _frame(ax, colours[i])
    _add_scalebar(axes[0], mean.axes_manager.signal_axes[0], location="lower left", font_properties={"size": 5.5})
    fig.suptitle("Cluster mean diffraction patterns (log scale)")
    return fig


def plot_mean_spectra(mean, ax=None, *, lines=None, figsize=None):
    """Draw every cluster's mean spectrum in its palette colour, on one axes.

    Parameters
    ----------
    mean : hyperspy.signals.Signal1D
        Cluster means as :meth:`~stemfuse_hs.signals.labels.ClusterLabels.cluster_statistics`
        returns them (navigation: the clusters).
    ax : matplotlib.axes.Axes, optional
    lines : hyperspy signal, optional
        A spectrum image whose X-ray lines (``metadata.Sample``) are marked,
        as in :func:`plot_cluster_grid`; by default ``mean``'s own.
    figsize : (float, float), optional

    Returns
    -------
    matplotlib.figure.Figure
        One line a cluster, labelled ``"cluster i"``.

    Examples
    --------
    >>> import numpy as np
    >>> import hyperspy.api as hs
    >>> from stemfuse_hs.plot import plot_mean_spectra
    >>> fig = plot_mean_spectra(hs.signals.Signal1D(np.ones((2, 64))))
    >>> [line.get_label() for line in fig.axes[0].lines]
    ['cluster 0', 'cluster 1']
    """
    spectra = _cluster_means(mean, "plot_mean_spectra", 1)
    k = spectra.shape[0]
    fig, ax = _figure_and_ax(ax, figsize or (8.0, 4.0))
    ax.set_label("eds_mean")
    energy, units = _energy_keV(mean.axes_manager.signal_axes[0])
    for i, colour in enumerate(cluster_colours(k)):
        ax.plot(energy, spectra[i], color=colour, lw=1.0, label=f"cluster {i}")
    _label_lines(ax, _xray_lines(mean if lines is None else lines), energy.min(), energy.max())
    ax.set_xlabel(literal(f"energy ({units})"))
    ax.set_ylabel("mean counts")
    ax.set_xlim(energy.min(), energy.max())
    ax.set_ylim(bottom=0)
    ax.set_title("Cluster mean spectra")
    if k:
        ax.legend(fontsize="small", ncols=max(1, -(-k // 10)), frameon=False)
    return fig


# --------------------------------------------------------------------------
# Stability and sensitivity
# --------------------------------------------------------------------------
def _ari_to(labels_a, labels_b):
    from ..clustering.stability import adjusted_rand_index

    return adjusted_rand_index(np.asarray(labels_a), np.asarray(labels_b))


def _agreement_panel(fig, ax, signal, label, what):
    ax.set_label(label)
    image = _show_map(ax, np.asarray(signal.data, dtype=np.float64), signal, cmap="viridis", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, shrink=0.8, label=what)
    return image


def plot_stability(result, *, figsize=None):
    """Consensus map, stability map and every run's map in a row.

    Parameters
    ----------
    result : StabilityResult
        From :meth:`FusedSTEMSignal.stability
        <stemfuse_hs.signals.features.FusedSTEMSignal.stability>`.
    figsize : (float, float), optional

    Returns
    -------
    matplotlib.figure.Figure
        Axes labelled ``"consensus"``, ``"stability"`` and ``"run i"``; run
        titles give the seed and the adjusted Rand index to the consensus;
        one legend for all maps (aligned ids: cluster ``i`` has the same
        colour in every map).

    Examples
    --------
    >>> import stemfuse_hs
    >>> scan = stemfuse_hs.data.synthetic_scan("precipitates", size="tiny")
    >>> result = stemfuse_hs.fuse(scan.dp, scan.eds).stability(n_runs=3)  # doctest: +SKIP
    >>> fig = stemfuse_hs.plot.plot_stability(result)  # doctest: +SKIP
    """
    consensus = result.consensus
    k = consensus.n_clusters
    runs = np.asarray(result.runs.data)
    n_runs = runs.shape[0]
    fig = _new_figure(figsize or (2.3 * (n_runs + 2) + 0.6, 3.0))
    axes = fig.subplots(1, n_runs + 2)
    consensus_data, _ = _labels_array(consensus, "plot_stability", k)
    axes[0].set_label("consensus")
    _draw_label_map(axes[0], consensus_data, k, consensus)
    axes[0].set_title(f"Consensus of {n_runs} runs", fontsize=9)
    _agreement_panel(fig, axes[1], result.stability, "stability", "fraction of runs agreeing")
    axes[1].set_title(f"Stability (mean {float(np.mean(result.stability.data)):.2f})", fontsize=9)
    seeds = list(result.random_states)
    for i in range(n_runs):
        ax = axes[i + 2]
        ax.set_label(f"run {i}")
        _draw_label_map(ax, runs[i], k, consensus, scalebar=False)
        marker = ", reference" if i == result.reference else ""
        ax.set_title(f"run {i} (seed {seeds[i]}{marker})\nARI {_ari_to(runs[i], consensus_data):.2f} to consensus", fontsize=8)
    ids = sorted(set(np.unique(runs).tolist()) | set(np.unique(consensus_data).tolist()))
    fig.legend(handles=_legend_handles(ids, k), loc="outside lower center", ncols=min(len(ids), 8), fontsize="small", frameon=False)
    fig.suptitle(f"Stability over {n_runs} seeds: mean pairwise ARI {result.mean_ari:.2f}", fontsize=10)
    return fig


def plot_sensitivity(result, *, figsize=None):
    """The label maps of a parameter grid in a grid, with their agreement.

    With two grid parameters the first varies down the rows and the second
    along the columns; otherwise the maps fill rows in grid order. On the
    right: the fraction of settings agreeing with the consensus at every
    position, and the adjusted Rand index between every pair of settings.

    Parameters
    ----------
    result : SensitivityResult
        From :meth:`FusedSTEMSignal.sensitivity
        <stemfuse_hs.signals.features.FusedSTEMSignal.sensitivity>`.
    figsize : (float, float), optional

    Returns
    -------
    matplotlib.figure.Figure
        Map axes labelled ``"setting i"``, plus ``"agreement"`` and
        ``"ari"``.

    Examples
    --------
    >>> import stemfuse_hs
    >>> scan = stemfuse_hs.data.synthetic_scan("precipitates", size="tiny")
    >>> fused = stemfuse_hs.fuse(scan.dp, scan.eds)
    >>> result = fused.sensitivity({"min_cluster_size": [0.02, 0.1]})  # doctest: +SKIP
    >>> fig = stemfuse_hs.plot.plot_sensitivity(result)  # doctest: +SKIP
    """
    consensus = result.consensus
    k = consensus.n_clusters
    maps = np.asarray(result.maps.data)
    n = maps.shape[0]
    varying = [name for name, values in result.param_grid.items() if len(values) > 1] or list(result.param_grid)
    if len(result.param_grid) == 2:
        n_rows, n_cols = (len(v) for v in result.param_grid.values())
    else:
        n_cols = min(n, 4)
        n_rows = int(np.ceil(n / n_cols))
    fig = _new_figure(figsize or (2.4 * n_cols + 3.2, 2.4 * n_rows + 0.9))
    left, right = fig.subfigures(1, 2, width_ratios=(n_cols, 1.25))
    grid = left.subplots(n_rows, n_cols, squeeze=False)
    ari = np.asarray(result.ari.data)
    for i in range(n_rows * n_cols):
        ax = grid.flat[i]
        if i >= n:
            ax.set_axis_off()
            continue
        ax.set_label(f"setting {i}")
        _draw_label_map(ax, maps[i], k, consensus, scalebar=i == 0)
        setting = ", ".join(f"{name}={format_value(result.settings[i][name])}" for name in varying)
        n_found = int(result.labels[i].n_clusters)
        marker = " (reference)" if i == result.reference else f", ARI {ari[i, result.reference]:.2f}"
        ax.set_title(f"{setting}\n{n_found} clusters{marker}", fontsize=7)
    ids = sorted(set(np.unique(maps).tolist()))
    left.legend(handles=_legend_handles(ids, k), loc="outside lower center", ncols=min(len(ids), 6), fontsize="small", frameon=False)
    top, bottom = right.subplots(2, 1)
    _agreement_panel(right, top, result.stability, "agreement", "fraction of settings")
    top.set_title("Agreement with consensus", fontsize=8)
    bottom.set_label("ari")
    image = bottom.imshow(ari, cmap="viridis", vmin=min(0.0, float(ari.min())), vmax=1.0, interpolation="nearest")
    bottom.set_xticks(range(n))
    bottom.set_yticks(range(n))
    bottom.tick_params(labelsize=6)
    bottom.set_xlabel("setting", fontsize=7)
    bottom.set_ylabel("setting", fontsize=7)
    right.colorbar(image, ax=bottom, shrink=0.8, label="ARI")
    bottom.set_title("Pairwise ARI", fontsize=8)
    fig.suptitle(f"Sensitivity over {n} settings: mean pairwise ARI {result.mean_ari:.2f}", fontsize=10)
    return fig



# --------------------------------------------------------------------------
# Saving
# --------------------------------------------------------------------------
def save_figure(fig, path, size="single", *, dpi=None, **savefig_kwargs):
    """Save a figure at a journal's column width as PNG, PDF or SVG.

    The figure is resized to the width (its aspect ratio kept), saved, and
    given back its former size.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
    path : str or pathlib.Path
        The suffix chooses the format: ``.png``, ``.pdf`` or ``.svg``.
    size : {"single", "double"} or (float, float), default "single"
        One column (3.5 in wide), the full page width (7.2 in), or a
        ``(width, height)`` in inches.
    dpi : float, optional
        Default 300 for PNG (vector formats ignore it).
    **savefig_kwargs
        Passed to :meth:`matplotlib.figure.Figure.savefig`.

    Returns
    -------
    pathlib.Path
        The file written.

    Raises
    ------
    ValueError
        For another suffix or an unknown size.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> import matplotlib.pyplot as plt
    >>> from stemfuse_hs.plot import save_figure
    >>> fig, ax = plt.subplots(figsize=(6, 4))
    >>> _ = ax.plot([0, 1], [0, 1])
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     path = save_figure(fig, pathlib.Path(folder) / "line.png", size="single")
    ...     path.suffix, path.stat().st_size > 0
    ('.png', True)
    """
    path = Path(path)
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in ("png", "pdf", "svg"):
        raise ValueError(f"save_figure writes .png, .pdf or .svg files, got {path.name!r}.")
    original = fig.get_size_inches().copy()
    if isinstance(size, str):
        if size not in FIGURE_WIDTHS:
            raise ValueError(f"size={size!r} is not one of {sorted(FIGURE_WIDTHS)} or a (width, height) in inches.")
        width = FIGURE_WIDTHS[size]
        new_size = (width, width * original[1] / original[0])
    else:
        try:
            new_size = tuple(float(v) for v in size)
        except TypeError:
            raise ValueError(f"size={size!r} is not 'single', 'double' or a (width, height) in inches.") from None
        if len(new_size) != 2 or min(new_size) <= 0:
            raise ValueError(f"size={size!r} must be a positive (width, height) in inches.")
    if dpi is None and fmt == "png":
        dpi = 300
    fig.set_size_inches(*new_size)
    try:
        fig.savefig(path, format=fmt, dpi=dpi, **savefig_kwargs)
    finally:
        fig.set_size_inches(*original)
    return path
