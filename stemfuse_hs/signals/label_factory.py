"""The one place label maps (:class:`~stemfuse_hs.signals.labels.ClusterLabels`) are built.

:func:`build_cluster_labels` makes a segment map from the arrays of
:func:`stemfuse_hs.clustering.scan.cluster_scan`, :func:`build_cluster_labels_like`
a phase map on a segment map's grid, :func:`relabel_cluster_labels` a copy
of a map with new labels. The class is not imported: a map is a
``Signal2D`` given the signal type ``"fused_stem_labels"``, for which
HyperSpy's extension registry gives the class, so that the modules the
class delegates to (:mod:`.phases`) can build maps without an import circle.
"""

import copy

import numpy as np
from hyperspy.signals import Signal1D, Signal2D

from ._axes import index_axis, navigation_axes_dicts, signal_axes_dicts, signal_title

__all__ = [
    "LABELS_SIGNAL_TYPE",
    "PROVENANCE_PACKAGES",
    "build_cluster_labels",
    "build_cluster_labels_like",
    "is_cluster_labels",
    "relabel_cluster_labels",
    "software_versions",
]

#: The signal type of label maps (ClusterLabels).
LABELS_SIGNAL_TYPE = "fused_stem_labels"


def is_cluster_labels(signal):
    """Whether ``signal`` is a label map (a ClusterLabels), by its signal type.

    Examples
    --------
    >>> import numpy as np
    >>> from hyperspy.signals import Signal2D
    >>> is_cluster_labels(Signal2D(np.zeros((2, 2))))
    False
    """
    return getattr(signal, "_signal_type", None) == LABELS_SIGNAL_TYPE


def _label_map(labels, scan_axes, title):
    """A ClusterLabels of integer ``labels`` on ``scan_axes``, through HyperSpy's registry."""
    out = Signal2D(np.asarray(labels).astype(np.int32), axes=copy.deepcopy(scan_axes))
    out.set_signal_type(LABELS_SIGNAL_TYPE)
    out.metadata.General.title = title
    return out


#: Packages whose versions every label map records.
PROVENANCE_PACKAGES = ("stemfuse_hs", "hyperspy", "pyxem", "exspy", "umap-learn", "hdbscan", "scikit-learn", "numpy", "dask")


def software_versions(extra=()):
    """Versions of the packages that shape a result, for provenance: the one collector.

    Parameters
    ----------
    extra : sequence of str, optional
        More distribution names (e.g. what a report also lists).

    Returns
    -------
    dict
        ``{name: version}`` (dashes become underscores), ``"not installed"``
        for a package that is not.

    Examples
    --------
    >>> versions = software_versions(extra=("scipy",))
    >>> "stemfuse_hs" in versions and "umap_learn" in versions and "scipy" in versions
    True
    """
    from importlib import metadata

    versions = {}
    for package in PROVENANCE_PACKAGES + tuple(extra):
        try:
            versions[package.replace("-", "_")] = metadata.version(package)
        except metadata.PackageNotFoundError:
            if package == "stemfuse_hs":
                from .. import __version__

                versions[package] = __version__
            else:
                versions[package.replace("-", "_")] = "not installed"
    return versions


def _scan_axes(fused):
    axes = [dict(a, navigate=False) for a in navigation_axes_dicts(fused)]
    if len(axes) == 1:
        # A line scan is drawn as a one-row image.
        axes.insert(0, {"name": "y", "size": 1, "scale": 1.0, "offset": 0.0, "units": axes[0].get("units"), "navigate": False})
    return axes


def build_cluster_labels(fused, result, embedding, parameters, excluded=None):
    """Assemble a :class:`ClusterLabels` from array results (used by ``cluster``).

    ``excluded`` (navigation-shaped boolean, optional) marks positions left
    out of the clustering; it is recorded as
    ``metadata.Clustering.excluded_positions`` on the map's grid.
    """
    scan_axes = _scan_axes(fused)
    scan_shape = tuple(a["size"] for a in scan_axes)
    n = int(np.prod(scan_shape))
    excluded = np.zeros(n, dtype=bool) if excluded is None else np.asarray(excluded, dtype=bool).reshape(n)
    labels = _label_map(result.labels.reshape(scan_shape), scan_axes, "Cluster labels")
    k = result.n_clusters
    memberships = Signal2D(
        np.moveaxis(result.memberships, -1, 0).reshape((k,) + scan_shape).astype(np.float32),
        axes=[index_axis("cluster", k, navigate=True)] + copy.deepcopy(scan_axes),
    )
    memberships.metadata.General.title = "Cluster memberships"
    embedding_signal = Signal1D(
        embedding.reshape(scan_shape + (embedding.shape[-1],)).astype(np.float32),
        axes=[dict(a, navigate=True) for a in copy.deepcopy(scan_axes)] + [index_axis("component", embedding.shape[-1])],
    )
    embedding_signal.metadata.General.title = "Embedding"
    sizes = np.array([(result.labels == i).sum() for i in range(k)], dtype=np.int64)
    fusion = fused.metadata.get_item("Fusion", None)
    labels.metadata.set_item(
        "Clustering",
        {
            "n_clusters": int(k),
            "cluster_sizes": sizes,
            "n_noise": int(((result.labels < 0) & ~excluded).sum()),
            "n_excluded": int(excluded.sum()),
            "excluded_positions": excluded.reshape(scan_shape),
            "parameters": parameters,
            "memberships": memberships,
            "embedding": embedding_signal,
            "fusion": fusion.as_dictionary() if fusion is not None else {},
            "source_title": signal_title(fused),
            "versions": software_versions(),
        },
    )
    return labels


def build_cluster_labels_like(segments, result, phase_merge):
    """A phase-level :class:`ClusterLabels` on the grid of ``segments``, which it carries.

    The phase map keeps the segment map's embedding, exclusions and
    provenance; ``metadata.Clustering.segments`` holds the segment map
    itself and ``metadata.Clustering.phase_merge`` the record of the merge.
    """
    scan_axes = copy.deepcopy(signal_axes_dicts(segments))
    scan_shape = segments.data.shape
    k = result.n_clusters
    phases = _label_map(result.labels.reshape(scan_shape), scan_axes, "Phase labels")
    memberships = Signal2D(
        np.moveaxis(result.memberships, -1, 0).reshape((k,) + scan_shape).astype(np.float32),
        axes=[index_axis("cluster", k, navigate=True)] + copy.deepcopy(scan_axes),
    )
    memberships.metadata.General.title = "Phase memberships"
    clustering = segments.metadata.Clustering.deepcopy().as_dictionary()
    clustering.pop("segments", None)
    clustering.pop("phase_merge", None)
    excluded = np.asarray(segments.metadata.Clustering.excluded_positions, dtype=bool).reshape(-1)
    clustering.update(
        n_clusters=int(k),
        cluster_sizes=np.array([(result.labels == i).sum() for i in range(k)], dtype=np.int64),
        n_noise=int(((result.labels < 0) & ~excluded).sum()),
        memberships=memberships,
        embedding=segments.metadata.Clustering.embedding,
        segments=segments.deepcopy(),
        phase_merge=phase_merge,
        parameters=result.parameters,
    )
    phases.metadata.set_item("Clustering", clustering)
    return phases


def relabel_cluster_labels(labels, data, memberships):
    """A copy of a label map with new labels and memberships (same grid and provenance).

    Parameters
    ----------
    labels : ClusterLabels
    data : numpy.ndarray
        New labels, one per position of the map.
    memberships : numpy.ndarray
        ``(n_positions, n_clusters)``.

    Returns
    -------
    ClusterLabels
    """
    out = labels.deepcopy()
    shape = labels.data.shape
    k = memberships.shape[1]
    out.data = data.reshape(shape).astype(np.int32)
    signal = Signal2D(
        np.moveaxis(memberships, -1, 0).reshape((k,) + shape).astype(np.float32),
        axes=[index_axis("cluster", k, navigate=True)] + signal_axes_dicts(labels),
    )
    signal.metadata.General.title = labels.memberships.metadata.General.title
    out.metadata.Clustering.memberships = signal
    out.metadata.Clustering.n_clusters = int(k)
    out.metadata.Clustering.cluster_sizes = np.array([(data == i).sum() for i in range(k)], dtype=np.int64)
    return out
