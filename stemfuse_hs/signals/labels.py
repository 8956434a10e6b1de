"""``ClusterLabels``: the phase map and everything needed to read it ("fused_stem_labels")."""

import copy

import numpy as np
from hyperspy.signals import LazySignal, Signal2D

from .._checks import require_signal
from .._progress import dask_progress
from .._validation import check_choice, check_fraction, check_optional_bool
from ..clustering.means import MEAN_MODES, cluster_statistics, cluster_weights
from ._axes import index_axis, signal_axes_dicts, signal_title

# Label maps are built in one place, which does not import this module (so
# that signals.phases can build them without an import circle); re-exported
# here, where they have always been found.
from .label_factory import build_cluster_labels, build_cluster_labels_like, software_versions

__all__ = ["ClusterLabels", "LazyClusterLabels", "build_cluster_labels", "build_cluster_labels_like", "software_versions"]


class ClusterLabels(Signal2D):
    """The phase map of a scan: integer labels, -1 for noise.

    Its signal axes are the scan axes, so ``.plot()`` draws the map with a
    scalebar in the scan's units. Memberships, the embedding and every
    parameter travel in ``metadata.Clustering`` and are saved with it.

    Examples
    --------
    >>> import stemfuse_hs
    >>> scan = stemfuse_hs.data.synthetic_scan("four_phases", size="tiny")
    >>> labels = stemfuse_hs.fuse(scan.dp, scan.eds).cluster(random_state=0)
    >>> labels.memberships.axes_manager.navigation_axes[0].name
    'cluster'
    >>> means = labels.cluster_means(scan.eds)
    >>> means.axes_manager.navigation_shape == (labels.n_clusters,)
    True
    """

    _signal_type = "fused_stem_labels"

    @property
    def n_clusters(self):
        """Number of clusters (noise not counted)."""
        return int(self.metadata.Clustering.n_clusters)

    @property
    def memberships(self):
        """Soft memberships: navigation axis "cluster", signal axes = scan."""
        return self.metadata.Clustering.memberships

    @property
    def max_membership(self):
        """Largest membership of every position (its confidence), as a map."""
        memberships = self.memberships.data
        data = memberships.max(axis=0) if memberships.shape[0] else np.zeros(self.data.shape, np.float32)
        out = Signal2D(np.asarray(data, dtype=np.float32), axes=copy.deepcopy(signal_axes_dicts(self)))
        out.metadata.General.title = "Largest membership"
        return out

    @property
    def embedding(self):
        """Embedding: navigation = scan, signal axis "component"."""
        return self.metadata.Clustering.embedding

    @property
    def parameters(self):
        """Every clustering parameter used, as a dictionary."""
        return self.metadata.Clustering.parameters.as_dictionary()

    @property
    def segments(self):
        """The segment (grain) map a phase map was merged from; None for a segment map.

        Examples
        --------
        >>> import stemfuse_hs
        >>> scan = stemfuse_hs.data.synthetic_scan("structure_only", size="tiny", seed=1)
        >>> phases = stemfuse_hs.map_phases(scan.dp, scan.eds, random_state=1)  # doctest: +SKIP
        >>> phases.segments.n_clusters >= phases.n_clusters  # doctest: +SKIP
        True
        """
        return self.metadata.get_item("Clustering.segments", None)

    @property
    def phase_merge(self):
        """What :meth:`merge_phases` joined and why (a dictionary), None for a segment map."""
        record = self.metadata.get_item("Clustering.phase_merge", None)
        return None if record is None else record.as_dictionary()

    def merge_phases(self, dp=None, eds=None, **kwargs):
        """Merge segments that are one phase by composition and lattice.

        See :func:`stemfuse_hs.signals.phases.merge_phases` for the parameters.
        """
        from .phases import merge_phases

        return merge_phases(self, dp, eds, **kwargs)

    def _weights(self, mode, min_membership):
        n = int(np.prod(self.data.shape))
        memberships = np.moveaxis(np.asarray(self.memberships.data), 0, -1).reshape(n, -1)
        return cluster_weights(self.data.reshape(n), memberships, mode, min_membership)

    def cluster_statistics(self, signal, mode="membership", min_membership=0.5, show_progressbar=None):
        """Mean and standard deviation of ``signal`` over each cluster.

        Parameters
        ----------
        signal : hyperspy signal
            Any signal of the same scan (4D-STEM, spectrum image, features),
            eager or lazy; lazy data is read once, chunk by chunk.
        mode : {"membership", "hard"}, default "membership"
            Weight every position by its membership, or take positions
            labelled with the cluster whose largest membership is at least
            ``min_membership``.
        min_membership : float, default 0.5
            For ``mode="hard"``.
        show_progressbar : bool, optional

        Returns
        -------
        mean, std : hyperspy signals
            Of the input's class (a diffraction signal stays one; a spectrum
            keeps its energy axis and metadata), navigation axis "cluster".

        Examples
        --------
        >>> import stemfuse_hs
        >>> scan = stemfuse_hs.data.synthetic_scan("four_phases", size="tiny")
        >>> labels = stemfuse_hs.fuse(scan.dp, scan.eds).cluster(random_state=0)
        >>> mean, std = labels.cluster_statistics(scan.dp)
        >>> type(mean).__name__, mean.axes_manager.navigation_shape
        ('Diffraction2D', (4,))
        """
        require_signal(signal, "cluster_statistics expects a HyperSpy signal, got {type}.")
        if not isinstance(mode, str):
            raise TypeError(f"mode must be one of {list(MEAN_MODES)}, got {mode!r}.")
        check_choice("mode", mode, MEAN_MODES)
        check_fraction("min_membership", min_membership, closed_low=True)
        check_optional_bool("show_progressbar", show_progressbar)
        if signal.axes_manager.navigation_dimension == 0:
            raise ValueError(
                "cluster_statistics needs a signal of the same scan; this one has no navigation axes "
                f"(signal shape {signal.axes_manager.signal_shape})."
            )
        scan = signal.axes_manager.navigation_shape
        own = tuple(a.size for a in self.axes_manager.signal_axes)
        # A line scan's map has a one-row axis added for drawing.
        squeezed = tuple(size for size in own if size != 1) or (1,)
        if scan != own and tuple(size for size in scan if size != 1) != squeezed:
            hint = ""
            if tuple(reversed(scan)) == own:
                hint = (
                    " The signal looks transposed (rows and columns swapped) relative to the map: "
                    "swap its navigation axes, e.g. signal.transpose(signal_axes=...)."
                )
            raise ValueError(
                f"cluster_statistics: the signal's scan (navigation shape {scan}) is not the label map's "
                f"scan {own}.{hint}"
            )
        if self.n_clusters == 0:
            raise ValueError("cluster_statistics: the label map has no clusters (every position is noise).")
        weights = self._weights(mode, min_membership)
        with dask_progress(show_progressbar):
            mean, std = cluster_statistics(signal.data, signal.axes_manager.signal_dimension, weights)
        return _like(signal, mean, "mean"), _like(signal, std, "standard deviation")

    def cluster_means(self, signal, mode="membership", min_membership=0.5, show_progressbar=None):
        """Mean of ``signal`` over each cluster; see :meth:`cluster_statistics`."""
        return self.cluster_statistics(signal, mode, min_membership, show_progressbar)[0]

    def cluster_stds(self, signal, mode="membership", min_membership=0.5, show_progressbar=None):
        """Standard deviation of ``signal`` in each cluster; see :meth:`cluster_statistics`."""
        return self.cluster_statistics(signal, mode, min_membership, show_progressbar)[1]

    def plot(self, *args, **kwargs):
        """Plot the map in the package's cluster palette (noise grey), with a scalebar.

        Arguments go to HyperSpy's ``Signal2D.plot``.
        """
        from ..plot.palette import label_colormap

        cmap, norm_kwargs = label_colormap(self.n_clusters)
        for key, value in norm_kwargs.items():
            kwargs.setdefault(key, value)
        kwargs.setdefault("cmap", cmap)
        kwargs.setdefault("colorbar", False)
        return super().plot(*args, **kwargs)


class LazyClusterLabels(LazySignal, ClusterLabels):
    """Lazy twin of :class:`~stemfuse_hs.signals.labels.ClusterLabels` (what ``hs.load(..., lazy=True)`` gives)."""


def _like(template, data, what):
    """A signal of ``template``'s kind holding per-cluster ``data``."""
    from hyperspy.signals import BaseSignal

    signal_axes = copy.deepcopy(signal_axes_dicts(template))
    axes = [index_axis("cluster", data.shape[0], navigate=True)] + signal_axes
    metadata = template.metadata.deepcopy().as_dictionary()
    for node in ("Features", "Fusion", "Clustering"):
        metadata.pop(node, None)
    # transpose picks the class of the template's signal type and dimension
    # (e.g. Diffraction2D, EDSTEMSpectrum) through HyperSpy's public API.
    out = BaseSignal(data, axes=axes, metadata=metadata).transpose(signal_axes=len(signal_axes))
    out.metadata.General.title = f"Cluster {what} of {signal_title(template)}".strip()
    return out
