"""Figures to judge a feature selection: the SDT std map and the EDS channel variances.

Both functions take the result of an extractor (:func:`stemfuse_hs.sdt_features`
or :func:`stemfuse_hs.variance_features`), read what it stored in
``metadata.Features`` and return a new matplotlib figure, without showing it.
"""

import numpy as np

from .._checks import require_signal
from ._text import literal

__all__ = ["plot_sdt_selection", "plot_variance_selection"]

#: Colour of the selected pixels and kept channels.
SELECTED_COLOUR = "tab:orange"
#: Colour of the direct-beam disk outline and of the excluded windows.
EXCLUDED_COLOUR = "tab:cyan"
_THRESHOLD_COLOUR = "tab:red"
_VARIANCE_COLOUR = "0.35"


def _features_node(signal, function, extractor, producer):
    """``metadata.Features`` of ``signal``, checked to come from ``extractor``."""
    require_signal(signal, f"{function} needs the result of {producer} (a HyperSpy signal), got {{type}}.")
    found = signal.metadata.get_item("Features.extractor", None)
    if found != extractor:
        what = "no metadata.Features" if found is None else f"metadata.Features.extractor == {found!r}"
        raise ValueError(
            f"{function} needs the result of {producer} "
            f"(metadata.Features.extractor == {extractor!r}); this signal has {what}."
        )
    return signal.metadata.Features


def _required(node, names, function, producer):
    missing = [name for name in names if not node.has_item(name)]
    if missing:
        raise ValueError(
            f"{function} needs the result of {producer}: metadata.Features lacks {', '.join(missing)}."
        )


def _new_figure(figsize):
    import matplotlib.pyplot as plt

    # pyplot keeps track of the figure (so notebooks and Sphinx's plot
    # directive pick it up) but nothing is shown until the caller asks.
    return plt.figure(figsize=figsize, layout="constrained")


def _axis_label(axis):
    name = axis.name if isinstance(axis.name, str) and axis.name else f"axis {axis.index_in_array}"
    units = axis.units if isinstance(axis.units, str) and axis.units else None
    return literal(f"{name} ({units})" if units else name)


def _pixel_edges(axis):
    """Calibrated positions of the first and last pixel edges of ``axis``."""
    values = np.asarray(axis.axis, dtype=np.float64)
    if values.size == 1:
        step = float(getattr(axis, "scale", 1.0) or 1.0)
    else:
        step = float(values[1] - values[0])
    last_step = step if values.size == 1 else float(values[-1] - values[-2])
    return values[0] - step / 2, values[-1] + last_step / 2


def _to_calibrated(axis, index):
    """Fractional pixel ``index`` -> calibrated coordinate (linear beyond the ends)."""
    values = np.asarray(axis.axis, dtype=np.float64)
    n = values.size
    if n == 1:
        return float(values[0] + index * float(getattr(axis, "scale", 1.0) or 1.0))
    if index < 0:
        return float(values[0] + index * (values[1] - values[0]))
    if index > n - 1:
        return float(values[-1] + (index - n + 1) * (values[-1] - values[-2]))
    return float(np.interp(index, np.arange(n), values))


def _log_norm(image):
    from matplotlib.colors import LogNorm

    positive = image[np.isfinite(image) & (image > 0)]
    if positive.size == 0:
        return None
    low, high = float(positive.min()), float(positive.max())
    if high <= low:
        high = low * 10.0
    return LogNorm(vmin=low, vmax=high, clip=True)


def _show_log(ax, image, extent, cmap):
    """``imshow`` on a log colour scale; non-positive pixels take the lowest colour."""
    norm = _log_norm(image)
    if norm is None:
        return ax.imshow(image, extent=extent, origin="upper", cmap=cmap, interpolation="nearest")
    shown = np.where(np.isfinite(image) & (image > 0), image, norm.vmin)
    return ax.imshow(shown, extent=extent, origin="upper", cmap=cmap, norm=norm, interpolation="nearest")


def plot_sdt_selection(features, *, figsize=None):
    """Show what standard-deviation thresholding selected, to judge ``fraction``.

    Three panels on the binned detector grid, in the detector's calibrated
    units:

    1. the standard-deviation map on a log colour scale, with the excluded
       direct-beam disk outlined;
    2. the selected pixels (orange) over that map: a good selection covers
       the Bragg disks and rings that vary between phases, not the background;
    3. the mean pattern on a log colour scale with the beam disk, to check
       that the disk sits on the direct beam and covers it.

    Parameters
    ----------
    features : FusedSTEMSignal
        The result of :func:`stemfuse_hs.sdt_features` (or of the
        ``sdt_features`` method); its ``metadata.Features`` holds the maps.
    figsize : (float, float), optional
        Figure size in inches; default ``(13, 4.8)``.

    Returns
    -------
    matplotlib.figure.Figure
        A new pyplot figure (not shown; ``plt.close(fig)`` frees it): the
        three panels, labelled ``"std_map"``, ``"selection"`` and
        ``"mean_pattern"``, and two colour bars.

    Raises
    ------
    TypeError
        If ``features`` is not a HyperSpy signal.
    ValueError
        If ``features`` is not the result of :func:`~stemfuse_hs.sdt_features`.

    See Also
    --------
    plot_variance_selection, stemfuse_hs.sdt_features

    Examples
    --------
    >>> import stemfuse_hs
    >>> from stemfuse_hs.plot import plot_sdt_selection
    >>> scan = stemfuse_hs.data.synthetic_scan("four_phases", size="tiny")
    >>> features = stemfuse_hs.sdt_features(scan.dp, fraction=0.4, show_progressbar=False)
    >>> fig = plot_sdt_selection(features)
    >>> [ax.get_label() for ax in fig.axes][:3]
    ['std_map', 'selection', 'mean_pattern']
    >>> fig.axes[1].get_title().startswith("40% of pixels kept")
    True
    """
    from matplotlib.colors import to_rgba
    from matplotlib.patches import Circle, Ellipse, Patch

    function, producer = "plot_sdt_selection", "stemfuse_hs.sdt_features"
    node = _features_node(features, function, "sdt", producer)
    _required(node, ["std_map", "mean_pattern", "beam_mask", "selected_mask", "parameters"], function, producer)
    parameters = node.parameters.as_dictionary()
    std_signal = node.std_map
    std_map = np.asarray(std_signal.data, dtype=np.float64)
    mean_pattern = np.asarray(node.mean_pattern.data, dtype=np.float64)
    beam = np.asarray(node.beam_mask.data, dtype=bool)
    selected = np.asarray(node.selected_mask.data, dtype=bool)

    horizontal, vertical = std_signal.axes_manager.signal_axes
    left, right = _pixel_edges(horizontal)
    top, bottom = _pixel_edges(vertical)
    extent = (left, right, bottom, top)

    binning = float(parameters.get("binning", 1))
    radius_px = float(parameters.get("beam_radius", 0.0)) / binning
    centre_px = [float(c) / binning for c in parameters.get("beam_centre", (np.nan, np.nan))]
    # The circle is drawn where the mask was computed (binned grid), so it
    # outlines the excluded pixels exactly; its size is in calibrated units.
    centre = (_to_calibrated(horizontal, centre_px[1]), _to_calibrated(vertical, centre_px[0]))
    scale_x = abs((right - left) / horizontal.size)
    scale_y = abs((bottom - top) / vertical.size)
    has_disk = radius_px > 0 and all(np.isfinite(centre))

    n_selected = int(selected.sum())
    n_eligible = int((~beam).sum())
    share = n_selected / n_eligible if n_eligible else 0.0

    fig = _new_figure(figsize or (13.0, 4.8))
    axes = fig.subplots(1, 3, sharex=True, sharey=True)
    for ax, label in zip(axes, ("std_map", "selection", "mean_pattern")):
        ax.set_label(label)
        ax.set_xlabel(_axis_label(horizontal))
        ax.set_aspect("equal")
    axes[0].set_ylabel(_axis_label(vertical))

    def beam_circle(ax, label):
        if not has_disk:
            return
        style = {"fill": False, "edgecolor": EXCLUDED_COLOUR, "linewidth": 1.5, "linestyle": "--", "label": label}
        if np.isclose(scale_x, scale_y):
            ax.add_patch(Circle(centre, radius_px * scale_x, **style))
        else:  # a disk in pixels is an ellipse in unequal calibrated units
            ax.add_patch(Ellipse(centre, 2 * radius_px * scale_x, 2 * radius_px * scale_y, **style))

    scale_name = "log intensities" if parameters.get("std_scale", "log") == "log" else "intensities"
    image = _show_log(axes[0], std_map, extent, "viridis")
    fig.colorbar(image, ax=axes[0], shrink=0.8, label=f"standard deviation of {scale_name}")
    beam_circle(axes[0], "direct-beam disk (excluded)")
    beam_text = f"beam disk excluded (r = {radius_px * binning:.1f} px)" if has_disk else "no beam disk excluded"
    axes[0].set_title(f"Std map (log scale)\n{beam_text}")

    _show_log(axes[1], std_map, extent, "gray")
    overlay = np.zeros(selected.shape + (4,))
    overlay[selected] = to_rgba(SELECTED_COLOUR, 0.75)
    axes[1].imshow(overlay, extent=extent, origin="upper", interpolation="nearest")
    beam_circle(axes[1], "direct-beam disk (excluded)")
    handles = [Patch(color=SELECTED_COLOUR, alpha=0.75, label=f"{n_selected} selected pixels")]
    if has_disk:
        handles.append(Patch(fill=False, edgecolor=EXCLUDED_COLOUR, linestyle="--", label="direct-beam disk"))
    axes[1].legend(handles=handles, loc="lower left", fontsize="small", framealpha=0.8)
    axes[1].set_title(f"{share:.0%} of pixels kept\n{n_selected} of {n_eligible} outside the beam")

    image = _show_log(axes[2], mean_pattern, extent, "magma")
    fig.colorbar(image, ax=axes[2], shrink=0.8, label="mean counts (normalised)")
    beam_circle(axes[2], "direct-beam disk (excluded)")
    found = "found from the mean" if parameters.get("beam_centre_found", True) else "given"
    axes[2].set_title(f"Mean pattern (log scale)\nbeam position {found}")

    source = literal(node.get_item("source_title", "") or "")
    fig.suptitle(
        f"SDT selection{' of ' + source if source else ''}: binning {int(binning)}, "
        f"fraction {parameters.get('fraction', float('nan')):g}, "
        f"std of {scale_name}, {parameters.get('n_features', n_selected)} features"
    )
    return fig


def _minor_log_label(value, _position=None):
    """Label a minor log tick only if its leading digit is 2 or 5."""
    if value <= 0:
        return ""
    leading = round(value / 10 ** np.floor(np.log10(value)), 6)
    return f"{value:g}" if leading in (2.0, 5.0) else ""


def _runs(mask):
    """(start, stop) index pairs of the True runs of a 1-D boolean mask."""
    padded = np.concatenate([[False], np.asarray(mask, dtype=bool), [False]])
    changes = np.flatnonzero(np.diff(padded.astype(np.int8)))
    return list(zip(changes[::2], changes[1::2]))


def plot_variance_selection(features, *, figsize=None):
    """Show which EDS channels variance thresholding kept, to judge the threshold.

    Two panels sharing the energy axis (keV):

    1. every channel's variance over the scan (log scale) with the threshold
       it had to exceed (a horizontal line for a value or a quantile, a
       curve for the automatic Poisson threshold), the kept channels
       highlighted and the excluded windows and X-ray lines shaded;
    2. the ratio variance / threshold (on a log scale when it spans a
       decade or more): the channels above 1 that are not excluded are
       kept. It makes the per-channel Poisson threshold readable, which
       follows the variance closely wherever a channel holds only counting
       noise.

    Parameters
    ----------
    features : FusedSTEMSignal
        The result of :func:`stemfuse_hs.variance_features` (or of the
        ``variance_features`` method); its ``metadata.Features`` holds the
        per-channel spectra.
    figsize : (float, float), optional
        Figure size in inches; default ``(11, 6)``.

    Returns
    -------
    matplotlib.figure.Figure
        A new pyplot figure (not shown; ``plt.close(fig)`` frees it) with the
        two axes, labelled ``"variance"`` and ``"ratio"``.

    Raises
    ------
    TypeError
        If ``features`` is not a HyperSpy signal.
    ValueError
        If ``features`` is not the result of
        :func:`~stemfuse_hs.variance_features`.

    See Also
    --------
    plot_sdt_selection, stemfuse_hs.variance_features

    Examples
    --------
    >>> import stemfuse_hs
    >>> from stemfuse_hs.plot import plot_variance_selection
    >>> scan = stemfuse_hs.data.synthetic_scan("four_phases", size="tiny")
    >>> features = stemfuse_hs.variance_features(
    ...     scan.eds, exclude_lines=["Cu_Ka", "Cu_Kb", "Cu_La"], show_progressbar=False
    ... )
    >>> fig = plot_variance_selection(features)
    >>> [ax.get_label() for ax in fig.axes]
    ['variance', 'ratio']
    >>> fig.axes[1].get_xlabel()
    'Energy (keV)'
    """
    function, producer = "plot_variance_selection", "stemfuse_hs.variance_features"
    node = _features_node(features, function, "variance", producer)
    _required(node, ["variance", "threshold", "kept_channels", "excluded_channels", "parameters"], function, producer)
    parameters = node.parameters.as_dictionary()
    variance_signal = node.variance
    axis = variance_signal.axes_manager.signal_axes[0]
    energy = np.asarray(axis.axis, dtype=np.float64)
    units = axis.units if isinstance(axis.units, str) else ""
    if units == "eV":
        energy = energy / 1000.0
    # keV (or no units: exspy's default); any other unit is plotted as given.
    x_units = "keV" if units in ("eV", "keV", "") else units
    x_name = axis.name if isinstance(axis.name, str) and axis.name else "Energy"
    variance = np.asarray(variance_signal.data, dtype=np.float64)
    threshold = np.asarray(node.threshold.data, dtype=np.float64)
    kept = np.asarray(node.kept_channels.data, dtype=bool)
    excluded = np.asarray(node.excluded_channels.data, dtype=bool)
    half_channel = (float(np.median(np.abs(np.diff(energy)))) / 2) if energy.size > 1 else 0.5

    rule = parameters.get("threshold_rule", "")
    rule_text = {
        "value": f"threshold = {parameters.get('threshold', float('nan')):g}",
        "quantile": f"threshold: {parameters.get('quantile', float('nan')):g} quantile",
        "poisson": "Poisson threshold: mean x (1 + 4 s.e.)",
    }.get(rule, "threshold")

    fig = _new_figure(figsize or (11.0, 6.0))
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=(3, 2))
    top.set_label("variance")
    bottom.set_label("ratio")

    runs = _runs(excluded)
    for ax in (top, bottom):
        for i, (start, stop) in enumerate(runs):
            ax.axvspan(
                energy[start] - half_channel,
                energy[stop - 1] + half_channel,
                color=EXCLUDED_COLOUR,
                alpha=0.3,
                linewidth=0,
                label="excluded windows" if i == 0 else None,
            )
    lines = list(parameters.get("exclude_lines", []) or [])
    if lines:
        from ..features.variance import xray_line_energy

        transform = top.get_xaxis_transform()
        for line in lines:
            try:
                position = xray_line_energy(line)
            except ValueError:
                continue
            top.text(
                position, 0.98, line.replace("_", " "), transform=transform, rotation=90,
                ha="center", va="top", fontsize="x-small", color="0.15",
            )

    positive = np.where(variance > 0, variance, np.nan)
    top.plot(energy, positive, color=_VARIANCE_COLOUR, linewidth=0.8, label="channel variance")
    if threshold.size and np.all(threshold == threshold[0]):
        if threshold[0] > 0:
            top.axhline(threshold[0], color=_THRESHOLD_COLOUR, linestyle="--", linewidth=1.2, label=rule_text)
    else:
        top.plot(
            energy, np.where(threshold > 0, threshold, np.nan), color=_THRESHOLD_COLOUR,
            linestyle="--", linewidth=1.0, alpha=0.9, label=rule_text,
        )
    top.plot(
        energy[kept], positive[kept], linestyle="none", marker="o", markersize=3,
        color=SELECTED_COLOUR, label=f"kept ({int(kept.sum())} channels)",
    )
    top.set_yscale("log")
    top.set_ylabel("variance over the scan")

    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where((threshold > 0) & (variance > 0), variance / threshold, np.nan)
    bottom.plot(energy, ratio, color=_VARIANCE_COLOUR, linewidth=0.8)
    bottom.plot(energy[kept], ratio[kept], linestyle="none", marker="o", markersize=3, color=SELECTED_COLOUR)
    bottom.axhline(1.0, color=_THRESHOLD_COLOUR, linestyle="--", linewidth=1.2)
    shown = ratio[np.isfinite(ratio) & (ratio > 0)]
    # A log scale when the ratio spans a decade or more (a constant
    # threshold); the Poisson threshold's ratio stays near 1, read linearly.
    if shown.size and shown.max() / shown.min() >= 10:
        from matplotlib.ticker import FuncFormatter

        bottom.set_yscale("log")
        # Plain numbers (1, 2, 5, 0.5) rather than 8e-1: the ratio often
        # spans about a decade, where minor ticks must carry the labels.
        bottom.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        bottom.yaxis.set_minor_formatter(FuncFormatter(_minor_log_label))
    bottom.set_ylabel("variance / threshold")
    bottom.set_xlabel(literal(f"{x_name} ({x_units})"))
    bottom.set_xlim(energy.min() - half_channel, energy.max() + half_channel)

    handles, labels = top.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=len(labels), fontsize="small")
    n = variance.size
    top.set_title(
        f"{int(kept.sum())} of {n} channels kept ({kept.sum() / n:.0%}), "
        f"{int(excluded.sum())} excluded; {rule_text}"
    )
    source = literal(node.get_item("source_title", "") or "")
    if source:
        fig.suptitle(f"Variance selection of {source}")
    return fig
