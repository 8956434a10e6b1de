"""``FusedSTEMSignal``: per-position feature vectors or spectra ("fused_stem", 1-D)."""

import numpy as np
from hyperspy._signals.lazy import LazySignal
from hyperspy.signals import Signal1D

from .._arrays import compute_in_blocks, describe_positions, is_lazy_array, nonfinite_positions
from .._progress import dask_progress, stage_bar

__all__ = ["FusedSTEMSignal", "LazyFusedSTEMSignal"]


class FusedSTEMSignal(Signal1D):
    """Per-position vectors of one scan: a spectrum image, features, or fused features.

    ``eds.set_signal_type("fused_stem")`` gives a spectrum image
    :meth:`variance_features`; :func:`~stemfuse_hs.sdt_features`,
    :func:`~stemfuse_hs.variance_features` and :func:`~stemfuse_hs.fuse`
    return this class; :meth:`cluster` maps the phases.

    Examples
    --------
    >>> import stemfuse_hs
    >>> scan = stemfuse_hs.data.synthetic_scan("four_phases", size="tiny")
    >>> fused = stemfuse_hs.fuse(scan.dp, scan.eds)
    >>> labels = fused.cluster(random_state=0)  # doctest: +SKIP
    >>> labels.plot()  # doctest: +SKIP
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

    def cluster(
        self,
        *,
        n_components=3,
        n_neighbors=10,
        min_dist=0.0,
        metric="euclidean",
        densmap=True,
        pca_components=None,
        min_cluster_size=0.02,
        min_samples=10,
        cluster_selection_epsilon=0.0,
        cluster_selection_method="leaf",
        min_membership=None,
        merge_threshold=0.55,
        max_fit_positions=None,
        backend="cpu",
        random_state=None,
        n_jobs=-1,
        show_progressbar=None,
    ):
        """Map phases: UMAP embedding, HDBSCAN with soft memberships, merging.

        Parameters
        ----------
        n_components : int, default 3
            Embedding dimensions.
        n_neighbors : int, default 10
        min_dist : float, default 0.0
        metric : {"euclidean", "chebyshev", "manhattan", "cosine", "correlation"}
            UMAP's metric; the method used "euclidean" and "chebyshev".
        densmap : bool, default True
        pca_components : int, optional
            With the euclidean metric, UMAP embeds this many leading
            principal components of the features instead of the features:
            much faster on thousands of features, but it lost phases on a
            large synthetic scan (see :mod:`stemfuse_hs.clustering.embed`).
            None (the default) embeds the features as they are, as the
            method does; other metrics always do.
        min_cluster_size : int or float, default 0.02
            Smallest cluster as a count or a fraction of the positions.
        min_samples : int, default 10
        cluster_selection_epsilon : float, default 0.0
        cluster_selection_method : {"leaf", "eom"}, default "leaf"
            HDBSCAN's selection of clusters from its tree. "leaf" proposes
            the finest clusters and lets the merge below decide, in the
            fused feature space, which splits are distinct phases; HDBSCAN's
            own "eom" (excess of mass) sometimes keeps a parent cluster that
            holds two phases. ``"eom"`` with ``merge_threshold=0`` is the
            reference method's plain HDBSCAN.
        min_membership : float, optional
            Positions whose largest membership is below this become noise (-1).
        merge_threshold : float, default 0.55
            Clusters without a density valley at least this deep between
            them in the fused feature space (see
            :func:`stemfuse_hs.clustering.separation`) are merged: thickness
            or bending can split one phase into several dense regions of the
            embedding. 0 disables.
        max_fit_positions : int, optional
            Scans with more (included) positions are embedded and clustered
            on a random subsample of this many; every other position is
            then placed in that embedding by UMAP's ``transform`` and given
            HDBSCAN memberships, chunk by chunk
            (:func:`stemfuse_hs.clustering.subsample.embed_and_cluster_subsample`).
            Lazy features are then never held whole: read once for the
            subsample and once more, chunk by chunk, to assign (a full fit
            computes them into memory, since UMAP embeds every row at once).
            None (the default) decides by itself
            (:func:`stemfuse_hs.clustering.memory.plan_fit`): every position
            up to 200,000, except lazy features whose full fit would need
            more working memory than the budget (2 GiB, or half the
            available memory if less), which are fitted on the largest
            subsample within it (at least 10,000 positions). Recorded as
            ``parameters["fit"]`` (``"full"`` or ``"subsample"``),
            ``"fit_positions"``, ``"fit_reason"``,
            ``"fit_memory_estimate_bytes"`` and ``"fit_memory_budget_bytes"``.
        backend : {"cpu", "cuml"}, default "cpu"
            ``"cuml"`` runs UMAP and HDBSCAN on an NVIDIA GPU with RAPIDS
            cuML when it is installed (plain UMAP: cuML has no densMAP), and
            falls back to the CPU with a warning when it is not.
        random_state : int, optional
            Seed for repeatable maps.
        n_jobs : int, default -1
            Threads for UMAP when no seed is given.
        show_progressbar : bool, optional

        Returns
        -------
        ClusterLabels
            The label map (signal axes = scan axes), with memberships,
            embedding and all parameters. ``parameters["block_separation"]``
            gives, per fused block, the share of its variance that lies
            between the final clusters (see
            :func:`stemfuse_hs.clustering.pipeline.block_separation`): which
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
        import warnings

        from .._arrays import check_memory, format_bytes
        from .._validation import check_int, check_optional_bool, check_seed
        from ..clustering.cluster import ClusterResult, check_cluster_parameters, resolve_min_cluster_size
        from ..clustering.pipeline import check_backend, cluster_features, streams_features
        from ..clustering.embed import check_embed_parameters, effective_pca_components
        from ..clustering.memory import plan_fit
        from ..clustering.subsample import NonFiniteRowsError
        from ._axes import check_scan_dimension, recorded_exclusions
        from .labels import build_cluster_labels

        # Every parameter is checked before the features are read: a typo
        # must not cost a pass over lazy data or a UMAP run.
        check_embed_parameters(
            n_components=n_components,
            n_neighbors=n_neighbors,
            min_dist=min_dist,
            metric=metric,
            densmap=densmap,
            pca_components=pca_components,
            random_state=check_seed(random_state),
            n_jobs=n_jobs,
        )
        check_cluster_parameters(
            min_cluster_size=min_cluster_size,
            min_samples=min_samples,
            cluster_selection_epsilon=cluster_selection_epsilon,
            cluster_selection_method=cluster_selection_method,
            min_membership=min_membership,
            merge_threshold=merge_threshold,
        )
        check_optional_bool("show_progressbar", show_progressbar)
        if max_fit_positions is not None:
            check_int("max_fit_positions", max_fit_positions, minimum=2)
        check_backend(backend)
        nav_ndim = self.axes_manager.navigation_dimension
        if nav_ndim == 0:
            raise ValueError("cluster needs a scan: this signal has no navigation axes.")
        check_scan_dimension(self, "cluster")
        scan_shape = tuple(self.data.shape[:nav_ndim])
        n_positions = int(np.prod(scan_shape))
        if n_positions < 2:
            raise ValueError(
                f"cluster needs a scan of at least two positions, got navigation shape "
                f"{self.axes_manager.navigation_shape} (1 position)."
            )
        excluded = recorded_exclusions(self, "cluster")
        excluded = np.zeros(scan_shape, dtype=bool) if excluded is None else excluded
        included = ~excluded.reshape(n_positions)
        n_included = int(included.sum())
        left = "" if n_included == n_positions else f" ({n_positions - n_included} excluded)"
        if n_included < 2:
            raise ValueError(f"cluster: {n_included} position(s) left{left}; clustering needs at least two.")
        resolve_min_cluster_size(min_cluster_size, n_included)
        if n_included <= n_neighbors:
            raise ValueError(
                f"n_neighbors={n_neighbors} needs more positions than that; the scan has {n_included}{left}."
            )
        n_features = int(self.data.shape[-1]) if self.data.ndim > nav_ndim else 1
        if self.metadata.has_item("Fusion.block_slices"):
            slices = [tuple(int(v) for v in s) for s in np.asarray(self.metadata.Fusion.block_slices)]
            names = list(self.metadata.Fusion.block_names)
        else:
            slices, names = [(0, n_features)], [self.metadata.get_item("General.title", "") or "features"]
        # Full fit or subsample fit, and how many positions, from the memory
        # model (clustering/memory.py; an explicit max_fit_positions wins).
        # Lazy features fitted on a subsample are never held whole.
        plan = plan_fit(n_included, n_features, lazy=is_lazy_array(self.data), max_fit_positions=max_fit_positions,
                        n_neighbors=n_neighbors, backend=backend)
        max_fit_positions = plan.max_fit_positions
        stream = streams_features(is_lazy_array(self.data), n_included, max_fit_positions, backend)
        if stream:
            what = f"cluster: the {plan.n_fit} x {n_features} float32 subsample UMAP is fitted on"
        else:
            matrix_bytes = format_bytes(n_included * n_features * 4)
            what = f"cluster: the {n_included} x {n_features} float32 feature matrix ({matrix_bytes})"
        check_memory(
            plan.estimate_bytes,
            what + " and UMAP's working copies",
            "Use fewer features (sdt_features with a larger binning or a smaller fraction, variance_features "
            "with a higher threshold), fit on fewer positions (max_fit_positions; lazy features are then read "
            "chunk by chunk), or crop or bin the scan (signal.inav[...], signal.rebin) first.",
        )
        stages = ["features", "embedding", "clustering"]
        with stage_bar(stages, show_progressbar, "stemfuse cluster") as bar:
            if stream:
                matrix = self.data.reshape((n_positions, n_features))
            else:
                with dask_progress(show_progressbar):
                    # Block by block into one array: a plain compute holds the
                    # matrix twice while it concatenates the chunks.
                    data = compute_in_blocks(self.data) if is_lazy_array(self.data) else self.data
                matrix = np.asarray(data, dtype=np.float32).reshape((n_positions, -1))
                _raise_if_nonfinite(nonfinite_positions(matrix, 1) & included, scan_shape)
            if n_included < n_positions:
                matrix = matrix[np.flatnonzero(included)]
            bar.update()
            try:
                result, embedding = cluster_features(
                    matrix,
                    n_components=n_components,
                    n_neighbors=n_neighbors,
                    min_dist=min_dist,
                    metric=metric,
                    densmap=densmap,
                    pca_components=pca_components,
                    min_cluster_size=min_cluster_size,
                    min_samples=min_samples,
                    cluster_selection_epsilon=cluster_selection_epsilon,
                    cluster_selection_method=cluster_selection_method,
                    min_membership=min_membership,
                    merge_threshold=merge_threshold,
                    max_fit_positions=max_fit_positions,
                    backend=backend,
                    random_state=random_state,
                    n_jobs=n_jobs,
                    block_slices=slices,
                    show_progressbar=show_progressbar,
                )
            except NonFiniteRowsError as error:
                bad = np.zeros(n_positions, dtype=bool)
                bad[np.flatnonzero(included)[error.rows]] = True
                _raise_if_nonfinite(bad, scan_shape, error)
            bar.update(2)
        # -1 for "undefined" (as random_state=-1 for None): NaN would not
        # compare equal to itself after a save and load.
        result.parameters["block_separation"] = {
            name: -1.0 if np.isnan(v) else float(v) for name, v in zip(names, result.parameters["block_separation"])
        }
        if result.n_clusters < 2:
            found = "no cluster: every position is noise" if result.n_clusters == 0 else "a single cluster"
            warnings.warn(
                f"cluster: found {found}. The scan may hold a single phase, or min_cluster_size="
                f"{min_cluster_size!r} / min_samples={min_samples!r} may be too large for {n_included} positions.",
                UserWarning,
                stacklevel=2,
            )
        if n_included < n_positions:
            # Excluded positions: noise, no membership, no place in the embedding.
            labels = np.full(n_positions, -1, dtype=np.int64)
            labels[included] = result.labels
            memberships = np.zeros((n_positions, result.n_clusters), dtype=np.float32)
            memberships[included] = result.memberships
            full_embedding = np.full((n_positions, embedding.shape[1]), np.nan, dtype=np.float32)
            full_embedding[included] = embedding
            result = ClusterResult(labels, memberships, result.parameters)
            embedding = full_embedding
        parameters = {
            "n_components": n_components,
            "n_neighbors": n_neighbors,
            "min_dist": float(min_dist),
            "metric": metric,
            "densmap": bool(densmap),
            # As used: principal components only with the euclidean metric.
            "pca_components": -1 if effective_pca_components(pca_components, metric) is None else int(pca_components),
            "random_state": -1 if random_state is None else int(random_state),
        }
        parameters.update(result.parameters)
        parameters.update(plan.parameters())
        return build_cluster_labels(self, result, embedding, parameters, excluded=excluded)

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
        >>> import stemfuse_hs
        >>> scan = stemfuse_hs.data.synthetic_scan("precipitates", size="tiny")
        >>> fused = stemfuse_hs.fuse(scan.dp, scan.eds)
        >>> result = fused.sensitivity({"min_cluster_size": [0.02, 0.05]})  # doctest: +SKIP
        >>> fig = result.plot()  # doctest: +SKIP
        """
        from .stability import sensitivity

        return sensitivity(self, param_grid, **kwargs)


def _raise_if_nonfinite(bad, scan_shape, cause=None):
    """The error of :meth:`FusedSTEMSignal.cluster` for positions with NaN or inf features."""
    if bad.any():
        raise ValueError(
            f"cluster: {describe_positions(bad.reshape(scan_shape))} hold NaN or inf features; "
            "clean the data or exclude them (fuse or the extractors with nan_policy='exclude')."
        ) from cause


class LazyFusedSTEMSignal(LazySignal, FusedSTEMSignal):
    """Lazy (dask-backed) twin of :class:`~stemfuse_hs.signals.features.FusedSTEMSignal`."""
