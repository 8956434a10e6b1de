"""Interactive exploration with HyperSpy's own plots: the map navigates the data.

:func:`explore` plots the 4D-STEM scan and the spectrum image with the
label map (or the confidence map) as their navigator and one shared cursor:
moving it shows that position's pattern and spectrum side by side.
:func:`explore_clusters` plots the cluster means, navigated by cluster.

Both work on lazy signals without loading them: the navigator is given, so
HyperSpy computes none, and a lazy signal is read one chunk at a time as
the cursor moves.
"""

from dataclasses import dataclass, field

import numpy as np

from .._checks import check_same_scan, require_signal
from .palette import cluster_colours, label_colormap

__all__ = ["Exploration", "explore", "explore_clusters"]

NAVIGATORS = ("labels", "membership")


@dataclass
class Exploration:
    """The signals plotted together and their navigator.

    Attributes
    ----------
    navigator : hyperspy signal
        What navigates: a map on the scan axes, or cluster sizes on the
        ``"cluster"`` axis.
    signals : list of hyperspy signals
        The plotted signals, in order; they share one cursor.
    """

    navigator: object
    signals: list = field(default_factory=list)

    @property
    def axes_manager(self):
        """The axes manager the plots share (its indices are the cursor)."""
        return self.signals[0]._plot.axes_manager

    @property
    def figures(self):
        """The navigator's figure, then each signal's figure."""
        plot = self.signals[0]._plot
        found = [plot.navigator_plot.figure] if plot.navigator_plot is not None else []
        for signal in self.signals:
            if signal._plot is not None and signal._plot.signal_plot is not None:
                found.append(signal._plot.signal_plot.figure)
        return found

    def close(self):
        """Close every plot."""
        for signal in self.signals:
            if signal._plot is not None:
                signal._plot.close()


def _check_scan(labels, signal, name):
    require_signal(signal, f"{name} must be a HyperSpy signal, got {{type}}.")
    scan = tuple(a.size for a in labels.axes_manager.signal_axes)
    check_same_scan(
        signal.axes_manager.navigation_shape,
        scan,
        f"{name} has navigation shape {signal.axes_manager.navigation_shape}, the label map's scan is {scan}.",
    )


def _navigator(labels, navigator):
    """The navigator signal (scan axes) and how to draw it."""
    from hyperspy.signals import Signal2D

    if navigator not in NAVIGATORS:
        raise ValueError(f"navigator={navigator!r} is not one of {list(NAVIGATORS)}.")
    if navigator == "labels":
        k = labels.n_clusters
        nav = Signal2D(np.asarray(labels.data, dtype=np.float32), axes=labels.axes_manager._get_axes_dicts())
        nav.metadata.General.title = f"Cluster labels ({k} clusters)"
        cmap, limits = label_colormap(k)
        style = dict(cmap=cmap, colorbar=False, **limits)
    else:
        nav = labels.max_membership
        nav.metadata.General.title = "Largest membership"
        style = dict(cmap="viridis", colorbar=True, vmin=0.0, vmax=1.0)
    return nav, style


def explore(labels, dp, eds=None, navigator="labels"):
    """Browse the scan: the map navigates, pattern and spectrum follow the cursor.

    A HyperSpy plot: the label map (in the package palette) or the
    largest-membership map is the navigator of the 4D-STEM data and of the
    spectrum image, which share one cursor
    (``hs.plot.plot_signals([dp, eds], navigator=...)``). Moving the cursor
    (or the arrow keys) shows that position's diffraction pattern and
    spectrum side by side. Lazy signals are not loaded: only the chunk
    under the cursor is read.

    Parameters
    ----------
    labels : ClusterLabels
        The phase map of the scan.
    dp : hyperspy signal
        4D-STEM data of the same scan (eager or lazy), or any signal
        navigated by the scan.
    eds : hyperspy signal, optional
        Spectrum image of the same scan (eager or lazy).
    navigator : {"labels", "membership"}, default "labels"
        The label map, or the largest membership (the confidence).

    Returns
    -------
    Exploration
        The navigator and plotted signals; ``.figures`` lists the figures,
        ``.close()`` closes them.

    Raises
    ------
    ValueError
        If a signal is not of the label map's scan, or for an unknown
        navigator.

    See Also
    --------
    explore_clusters, plot_cluster_grid

    Examples
    --------
    >>> import stemfuse_hs
    >>> from stemfuse_hs.plot import explore
    >>> scan = stemfuse_hs.data.synthetic_scan("four_phases", size="tiny", lazy=True)
    >>> labels = stemfuse_hs.fuse(scan.dp, scan.eds).cluster(random_state=0)  # doctest: +SKIP
    >>> view = explore(labels, scan.dp, scan.eds)  # doctest: +SKIP
    >>> view.axes_manager.indices = (10, 5)  # doctest: +SKIP
    """
    import hyperspy.api as hs

    from .figures import _check_cluster_labels

    labels = _check_cluster_labels(labels, "explore")
    signals = [dp] + ([eds] if eds is not None else [])
    for name, signal in zip(("dp", "eds"), signals):
        _check_scan(labels, signal, name)
    nav, style = _navigator(labels, navigator)
    style["title"] = f"{nav.metadata.General.title}: move the cursor"
    hs.plot.plot_signals(signals, navigator=nav, navigator_kwds=style)
    return Exploration(navigator=nav, signals=signals)


def explore_clusters(labels, dp, eds=None, mode="membership", min_membership=0.5):
    """Browse the clusters: select one to see its mean pattern and spectrum.

    The means are computed once per signal
    (:meth:`~stemfuse_hs.signals.labels.ClusterLabels.cluster_statistics`,
    one pass over lazy data) and plotted as HyperSpy signals navigated by
    their ``"cluster"`` axis, sharing one cursor. The navigator shows each
    cluster's share of the scan, shaded in the cluster's palette colour.

    Parameters
    ----------
    labels : ClusterLabels
    dp : hyperspy signal
        4D-STEM data of the same scan (eager or lazy).
    eds : hyperspy signal, optional
        Spectrum image of the same scan.
    mode : {"membership", "hard"}, default "membership"
    min_membership : float, default 0.5
        For ``mode="hard"``.

    Returns
    -------
    Exploration
        ``.signals`` are the mean signals (navigation axis ``"cluster"``).

    Examples
    --------
    >>> import stemfuse_hs
    >>> from stemfuse_hs.plot import explore_clusters
    >>> scan = stemfuse_hs.data.synthetic_scan("four_phases", size="tiny")
    >>> labels = stemfuse_hs.fuse(scan.dp, scan.eds).cluster(random_state=0)  # doctest: +SKIP
    >>> view = explore_clusters(labels, scan.dp, scan.eds)  # doctest: +SKIP
    >>> view.axes_manager.indices = (2,)  # doctest: +SKIP
    """
    import hyperspy.api as hs
    from hyperspy.signals import Signal1D

    from .figures import _check_cluster_labels

    labels = _check_cluster_labels(labels, "explore_clusters")
    k = labels.n_clusters
    if k == 0:
        raise ValueError("explore_clusters: the label map has no clusters (only noise).")
    inputs = [dp] + ([eds] if eds is not None else [])
    for name, signal in zip(("dp", "eds"), inputs):
        _check_scan(labels, signal, name)
    means = [labels.cluster_means(signal, mode=mode, min_membership=min_membership) for signal in inputs]
    sizes = np.asarray(labels.metadata.get_item("Clustering.cluster_sizes", np.zeros(k)), dtype=np.float64)
    share = sizes / max(int(np.asarray(labels.data).size), 1)
    nav = Signal1D(share, axes=[dict(means[0].axes_manager.navigation_axes[0].get_axis_dictionary(), navigate=False)])
    nav.metadata.General.title = "Share of the scan per cluster"
    hs.plot.plot_signals(means, navigator=nav, navigator_kwds={"title": "Clusters (share of the scan): select one"})
    view = Exploration(navigator=nav, signals=means)
    nav_plot = means[0]._plot.navigator_plot
    if nav_plot is not None and getattr(nav_plot, "ax", None) is not None:
        # The palette on the navigator: cluster i's slot in its colour.
        for i, colour in enumerate(cluster_colours(k)):
            nav_plot.ax.axvspan(i - 0.5, i + 0.5, color=colour, alpha=0.45, linewidth=0, zorder=0)
        nav_plot.ax.set_ylabel("share of the scan")
        nav_plot.figure.canvas.draw_idle()
    return view
