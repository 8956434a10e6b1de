"""``FusedSTEMSignal``: per-position feature vectors or spectra ("fused_stem", 1-D)."""

import numpy as np
from hyperspy.signals import LazySignal, Signal1D

from ..cluster_parameters import fill_cluster_doc, with_cluster_signature

__all__ = ["FusedSTEMSignal", "LazyFusedSTEMSignal"]


class FusedSTEMSignal(Signal1D):
    """Per-position vectors of one scan: a spectrum image, features, or fused features.

    ``eds.set_signal_type("fused_stem")`` gives a spectrum image
    :meth:`variance_features`; :func:`~stemfuse_hs.sdt_features`,
    :func:`~stemfuse_hs.variance_features` and :func:`~stemfuse_hs.fuse`
    return this class; :meth:`cluster` maps the phases.

    Examples
    --------
    A spectrum image is one: its variance-selected channels are features.

    >>> import stemfuse_hs
    >>> scan = stemfuse_hs.data.synthetic_scan("four_phases", size="tiny")
    >>> eds = scan.eds.deepcopy()
    >>> eds.set_signal_type("fused_stem")
    >>> features = eds.variance_features(exclude_lines=())
    >>> type(features).__name__, features.axes_manager.navigation_shape == eds.axes_manager.navigation_shape
    ('FusedSTEMSignal', True)
    >>> features.cluster(random_state=0).plot()  # doctest: +SKIP
    """

    _signal_type = "fused_stem"

    def variance_features(self, **kwargs):
        """Variance-thresholded features of this spectrum image.

        See :func:`stemfuse_hs.variance_features` for the parameters.
        """
        from .extract import variance_features

        return variance_features(self, **kwargs)

    def line_features(self, **kwargs):
        """X-ray line intensities of this spectrum image.

        See :func:`stemfuse_hs.line_features` for the parameters.
        """
        from .extract import line_features

        return line_features(self, **kwargs)

    def fuse(self, *others, **kwargs):
        """Fuse with other signals of the same scan; see :func:`stemfuse_hs.fuse`."""
        from .fuse import fuse

        return fuse(self, *others, **kwargs)

    def block_shares(self, **kwargs):
        """Each block's share of the total variance; see :func:`stemfuse_hs.block_shares`."""
        from .fuse import block_shares

        return block_shares(self, **kwargs)

    @with_cluster_signature
    @fill_cluster_doc
    def cluster(self, *, show_progressbar=None, **parameters):
        """Map phases: UMAP embedding, HDBSCAN with soft memberships, merging.

        The work is :func:`stemfuse_hs.clustering.scan.cluster_scan`'s, on
        this signal's arrays; the parameters, their defaults and their
        constraints are :data:`stemfuse_hs.cluster_parameters.CLUSTER_PARAMETERS`
        (the signature shows them; any other keyword is a TypeError).

        Parameters
        ----------
        {cluster_parameters}
        show_progressbar : bool, optional

        Returns
        -------
        ClusterLabels
            The label map (signal axes = scan axes), with memberships,
            embedding and all parameters. ``parameters["block_separation"]``
            gives, per fused block, the share of its variance that lies
            between the final clusters (see
            :func:`stemfuse_hs.clustering.separability.block_separation`): which
            modality drives the map; -1 where it is undefined (fewer than
            two clusters, or a block without variance, e.g. weighted 0).

        Examples
        --------
        >>> import stemfuse_hs
        >>> scan = stemfuse_hs.data.synthetic_scan("four_phases", size="tiny")
        >>> labels = stemfuse_hs.fuse(scan.dp, scan.eds).cluster(random_state=0)
        >>> labels.n_clusters
        4
        """
        from ..clustering.scan import cluster_scan
        from ._axes import check_scan_dimension, recorded_exclusions
        from .labels import build_cluster_labels

        nav_ndim = self.axes_manager.navigation_dimension
        if nav_ndim == 0:
            raise ValueError("cluster needs a scan: this signal has no navigation axes.")
        check_scan_dimension(self, "cluster")
        scan_shape = tuple(self.data.shape[:nav_ndim])
        if int(np.prod(scan_shape)) < 2:
            raise ValueError(
                f"cluster needs a scan of at least two positions, got navigation shape "
                f"{self.axes_manager.navigation_shape} (1 position)."
            )
        excluded = recorded_exclusions(self, "cluster")
        if self.metadata.has_item("Fusion.block_slices"):
            slices = [tuple(int(v) for v in s) for s in np.asarray(self.metadata.Fusion.block_slices)]
            names = list(self.metadata.Fusion.block_names)
        else:
            slices, names = None, [self.metadata.get_item("General.title", "") or "features"]
        result, embedding, recorded = cluster_scan(
            self.data,
            parameters,
            scan_shape=scan_shape,
            excluded=excluded,
            block_slices=slices,
            block_names=names,
            show_progressbar=show_progressbar,
        )
        excluded = np.zeros(scan_shape, dtype=bool) if excluded is None else excluded
        return build_cluster_labels(self, result, embedding, recorded, excluded=excluded)

    def stability(self, n_runs=5, random_states=None, *, reference="medoid", **cluster_kwargs):
        """Cluster with several seeds and measure how far the maps agree.

        See :func:`stemfuse_hs.signals.stability.stability`.

        Examples
        --------
        >>> import stemfuse_hs
        >>> scan = stemfuse_hs.data.synthetic_scan("precipitates", size="tiny")
        >>> result = stemfuse_hs.fuse(scan.dp, scan.eds).stability(n_runs=3)  # doctest: +SKIP
        >>> fig = result.plot()  # doctest: +SKIP
        """
        from .stability import stability

        return stability(self, n_runs, random_states, reference=reference, **cluster_kwargs)

    def sensitivity(self, param_grid, **kwargs):
        """Cluster over a grid of parameters and see which results hold.

        See :func:`stemfuse_hs.signals.stability.sensitivity`.

        Examples
        --------
        Does the map depend on the smallest cluster size or on the EDS weight?

        >>> import stemfuse_hs
        >>> scan = stemfuse_hs.data.synthetic_scan("precipitates", size="tiny")
        >>> grid = {"min_cluster_size": [0.02, 0.05], "weights": [(1, 1), (1, 2)]}
        >>> result = stemfuse_hs.fuse(scan.dp, scan.eds).sensitivity(grid)  # doctest: +SKIP
        >>> result.plot(), result.mean_ari  # doctest: +SKIP
        """
        from .stability import sensitivity

        return sensitivity(self, param_grid, **kwargs)


class LazyFusedSTEMSignal(LazySignal, FusedSTEMSignal):
    """Lazy (dask-backed) twin of :class:`~stemfuse_hs.signals.features.FusedSTEMSignal`."""
