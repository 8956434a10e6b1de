"""Feature matrix in, soft phase labels out: the clustering stage as one function.

:func:`cluster_features` chains what :meth:`FusedSTEMSignal.cluster
<stemfuse_hs.signals.features.FusedSTEMSignal.cluster>` does to the array
it reads from the signal: UMAP embedding (:mod:`.embed`), HDBSCAN with soft
memberships (:mod:`.cluster`), the merge of clusters without a density
valley between them, and the per-block separation of the final clusters
(:func:`block_separation`). It also picks how: every position in one fit,
or, past ``max_fit_positions``, a fit on a subsample with every position
assigned (:mod:`.subsample`); on the CPU, or on a GPU with RAPIDS cuML when
asked for and installed.
"""

import warnings

import numpy as np

from .._arrays import compute_in_blocks, is_lazy_array
from .._kernels import weighted_moments
from .._validation import check_choice, check_int
from .cluster import ClusterResult, merge_indistinct, single_cluster, soft_cluster
from .embed import DEFAULT_PCA_COMPONENTS, effective_pca_components, embed, reduce_dimensions

__all__ = [
    "BACKENDS",
    "DEFAULT_MAX_FIT_POSITIONS",
    "block_separation",
    "check_backend",
    "cluster_features",
    "label_moments",
    "resolve_backend",
    "separation_from_moments",
    "streams_features",
]

#: ``"cpu"``: umap-learn and hdbscan (the default, what CI tests);
#: ``"cuml"``: RAPIDS cuML on a GPU when installed (CPU otherwise, with a warning).
BACKENDS = ("cpu", "cuml")

#: Above this many positions UMAP and HDBSCAN are fitted on a subsample of
#: this size and the other positions are assigned (a 448 x 448 scan fits
#: whole; a 512 x 512 one does not).
DEFAULT_MAX_FIT_POSITIONS = 200_000


def check_backend(backend):
    """Validate ``backend`` (one of :data:`BACKENDS`) without importing anything."""
    if not isinstance(backend, str):
        raise TypeError(f"backend must be one of {list(BACKENDS)}, got {backend!r}.")
    return check_choice("backend", backend, BACKENDS)


def resolve_backend(backend):
    """The backend that will run: ``backend`` if usable, else ``"cpu"`` with a warning.

    Parameters
    ----------
    backend : {"cpu", "cuml"}

    Returns
    -------
    str

    Examples
    --------
    >>> resolve_backend("cpu")
    'cpu'
    """
    backend = check_backend(backend)
    if backend == "cuml":
        try:
            import cuml  # noqa: F401
        except ImportError:
            warnings.warn(
                "backend='cuml': RAPIDS cuML is not installed (it needs an NVIDIA GPU, see "
                "https://docs.rapids.ai/install); clustering on the CPU instead.",
                UserWarning,
                stacklevel=3,
            )
            return "cpu"
    return backend


def streams_features(lazy, n_positions, max_fit_positions, backend):
    """Whether :func:`cluster_features` reads a matrix chunk by chunk instead of holding it.

    Lazy features of a scan fitted on a subsample (more than
    ``max_fit_positions`` positions, CPU backend) are never held whole: a
    full fit, or the GPU backend, needs every row at once.

    Examples
    --------
    >>> streams_features(True, 300_000, 200_000, "cpu"), streams_features(True, 300_000, 200_000, "cuml")
    (True, False)
    """
    return bool(lazy) and n_positions > max_fit_positions and backend == "cpu"


def label_moments(matrix, labels, n_clusters):
    """Count, sum and sum of squares of the features of every cluster.

    Moments of row blocks add up: computed chunk by chunk over a matrix
    that is never held whole (the subsample path on lazy features), they
    give what one call on the whole matrix gives.

    Parameters
    ----------
    matrix : numpy.ndarray
        ``(n_positions, n_features)`` features.
    labels : numpy.ndarray
        ``(n_positions,)`` integer labels below ``n_clusters``; -1 (noise)
        is left out.
    n_clusters : int

    Returns
    -------
    counts : numpy.ndarray
        ``(n_clusters,)`` float64 positions per cluster.
    sums, squares : numpy.ndarray
        ``(n_clusters, n_features)`` float64.

    Examples
    --------
    >>> import numpy as np
    >>> counts, sums, squares = label_moments(np.array([[1.0], [2.0], [5.0]]), np.array([0, 0, -1]), 1)
    >>> counts.tolist(), sums.tolist(), squares.tolist()
    ([2.0], [[3.0]], [[5.0]])
    """
    matrix = np.asarray(matrix)
    labels = np.asarray(labels).ravel()
    if matrix.ndim != 2 or labels.shape != (matrix.shape[0],):
        raise ValueError(
            f"matrix must be (n_positions, n_features) with one label per row, got {matrix.shape} and "
            f"{labels.shape}."
        )
    # One compiled pass over the rows, in float64, without a float64 copy
    # of the matrix; noise rows weigh 0 (and are skipped).
    one_hot = np.zeros((labels.size, n_clusters))
    labelled = np.flatnonzero(labels >= 0)
    one_hot[labelled, labels[labelled]] = 1.0
    sums, squares = weighted_moments(matrix, one_hot)
    return one_hot.sum(axis=0), sums, squares


def separation_from_moments(counts, sums, squares, block_slices):
    """:func:`block_separation` from the moments of :func:`label_moments`.

    Parameters
    ----------
    counts, sums, squares : numpy.ndarray
        As returned by :func:`label_moments` (or their sums over row blocks).
    block_slices : sequence of (int, int)
        ``(start, stop)`` feature columns of each block.

    Returns
    -------
    numpy.ndarray
        ``(n_blocks,)`` float64 in [0, 1], NaN where undefined.

    Examples
    --------
    >>> import numpy as np
    >>> moments = label_moments(np.array([[0.0], [0.2], [4.0], [4.2]]), np.array([0, 0, 1, 1]), 2)
    >>> np.round(separation_from_moments(*moments, [(0, 1)]), 3)
    array([0.998])
    """
    counts = np.asarray(counts, dtype=np.float64)
    present = counts > 0
    out = np.full(len(block_slices), np.nan)
    if present.sum() < 2:
        return out
    counts, sums = counts[present], np.asarray(sums)[present]
    squares = np.asarray(squares)[present].sum(axis=0)
    n = counts.sum()
    grand = sums.sum(axis=0)
    total = squares - grand**2 / n
    between = (sums**2 / counts[:, None]).sum(axis=0) - grand**2 / n
    for i, (start, stop) in enumerate(block_slices):
        t = total[start:stop].sum()
        if t > 1e-12 * max(squares[start:stop].sum(), 1e-300):
            out[i] = float(np.clip(between[start:stop].sum() / t, 0.0, 1.0))
    return out


def block_separation(matrix, labels, block_slices):
    """How much of each feature block the final clusters explain.

    For every block, the share of its variance (summed over its features)
    that lies between the clusters rather than within them: the correlation
    ratio eta squared, from 0 (the labels say nothing about this block) to
    1 (each cluster is a single point in it). A block with a high value is
    what separates the phases; one near 0 rode along. Noise (-1) is left
    out.

    Parameters
    ----------
    matrix : numpy.ndarray
        ``(n_positions, n_features)`` fused features that were clustered.
    labels : numpy.ndarray
        ``(n_positions,)`` integer labels, -1 for noise.
    block_slices : sequence of (int, int)
        ``(start, stop)`` feature columns of each block.

    Returns
    -------
    numpy.ndarray
        ``(n_blocks,)`` float64 in [0, 1] (NaN for a block without
        variance among the labelled positions, or with fewer than two
        clusters).

    Examples
    --------
    >>> import numpy as np
    >>> labels = np.repeat([0, 1], 50)
    >>> structure = np.repeat([0.0, 5.0], 50)[:, None] + np.random.default_rng(0).normal(size=(100, 1))
    >>> noise = np.random.default_rng(1).normal(size=(100, 2))
    >>> np.round(block_separation(np.hstack([structure, noise]), labels, [(0, 1), (1, 3)]), 2)
    array([0.87, 0.  ])
    """
    labels = np.asarray(labels).ravel()
    clusters, index = np.unique(labels, return_inverse=True)
    # Labels need not be 0..k-1 here: number them by rank, noise kept at -1.
    dense = np.where(labels >= 0, index.ravel() - int((clusters < 0).sum()), -1)
    moments = label_moments(matrix, dense, int((clusters >= 0).sum()))
    return separation_from_moments(*moments, block_slices)


def cluster_features(
    matrix,
    *,
    n_components=3,
    n_neighbors=10,
    min_dist=0.0,
    metric="euclidean",
    densmap=True,
    pca_components=DEFAULT_PCA_COMPONENTS,
    min_cluster_size=0.02,
    min_samples=10,
    cluster_selection_epsilon=0.0,
    cluster_selection_method="leaf",
    min_membership=None,
    merge_threshold=0.55,
    max_fit_positions=DEFAULT_MAX_FIT_POSITIONS,
    backend="cpu",
    random_state=None,
    n_jobs=-1,
    block_slices=None,
    show_progressbar=None,
):
    """Embed and soft-cluster a feature matrix; one row per scan position.

    Parameters are those of :meth:`FusedSTEMSignal.cluster
    <stemfuse_hs.signals.features.FusedSTEMSignal.cluster>`, which reads
    the matrix from the signal and calls this, and:

    Parameters
    ----------
    matrix : numpy.ndarray or dask.array.Array
        ``(n_positions, n_features)``. A dask array with more than
        ``max_fit_positions`` rows (CPU backend) is never held whole: the
        subsample is gathered from it and every position is then read
        chunk by chunk to be assigned (the features are computed twice,
        from a lazy signal). Otherwise it is computed into memory, block
        by block, because UMAP embeds every row at once. A lazy matrix is
        not checked for identical rows.
    block_slices : sequence of (int, int), optional
        ``(start, stop)`` feature columns of the fused blocks: adds
        ``parameters["block_separation"]``, the per-block
        :func:`block_separation` of the final labels (NaN where undefined),
        accumulated while the rows are read on the lazy subsample path.

    Returns
    -------
    result : ClusterResult
        Labels (-1 noise), memberships and parameters, including
        ``"fit"`` (``"full"``, ``"subsample"`` or ``"identical features"``)
        and ``"backend"``.
    embedding : numpy.ndarray
        ``(n_positions, n_components)`` float32.

    Warns
    -----
    UserWarning
        When the features are identical at every position (one cluster),
        or when ``backend="cuml"`` is asked for without cuML.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> x = np.vstack([rng.normal(0, 1, (150, 6)), rng.normal(6, 1, (150, 6))]).astype(np.float32)
    >>> result, embedding = cluster_features(x, random_state=0)
    >>> result.n_clusters, embedding.shape
    (2, (300, 3))
    """
    max_fit_positions = check_int("max_fit_positions", max_fit_positions, minimum=2)
    if pca_components is not None:
        pca_components = check_int("pca_components", pca_components, minimum=1)
    pca_components = effective_pca_components(pca_components, metric)
    backend = resolve_backend(backend)
    n = int(matrix.shape[0])
    stream = streams_features(is_lazy_array(matrix), n, max_fit_positions, backend)
    if is_lazy_array(matrix) and not stream:
        matrix = compute_in_blocks(matrix)
    if not stream:
        matrix = np.asarray(matrix, dtype=np.float32)
    umap_kwargs = {
        "n_components": n_components,
        "n_neighbors": n_neighbors,
        "min_dist": min_dist,
        "metric": metric,
        "densmap": densmap,
    }
    hdbscan_kwargs = {
        "min_cluster_size": min_cluster_size,
        "min_samples": min_samples,
        "cluster_selection_epsilon": cluster_selection_epsilon,
        "cluster_selection_method": cluster_selection_method,
    }
    if not stream and n and np.ptp(matrix, axis=0).max(initial=0.0) == 0:
        # UMAP cannot embed identical points; they are one group.
        warnings.warn(
            "cluster: the features are identical at every position: one cluster, nothing to separate.",
            UserWarning,
            stacklevel=3,
        )
        result = single_cluster(n, min_membership=min_membership, merge_threshold=merge_threshold, **hdbscan_kwargs)
        result.parameters.update(fit="identical features", backend=backend)
        return _with_separation(result, matrix, block_slices), np.zeros((n, n_components), dtype=np.float32)
    if backend == "cuml":
        points = reduce_dimensions(matrix, pca_components, random_state)
        result, embedding = _cluster_on_gpu(points, umap_kwargs, hdbscan_kwargs, random_state, min_membership)
        result = merge_indistinct(result, points, threshold=merge_threshold)
        result.parameters.update(fit="full", backend="cuml")
        return _with_separation(result, matrix, block_slices), embedding
    if n > max_fit_positions:
        from .subsample import embed_and_cluster_subsample

        fitted = embed_and_cluster_subsample(
            matrix,
            n_fit=max_fit_positions,
            umap_kwargs=umap_kwargs,
            hdbscan_kwargs=hdbscan_kwargs,
            merge_threshold=merge_threshold,
            min_membership=min_membership,
            pca_components=pca_components,
            random_state=random_state,
            n_jobs=n_jobs,
            label_moments=block_slices is not None,
            show_progressbar=show_progressbar,
        )
        result = fitted.cluster_result()
        result.parameters.update(fit="subsample", backend="cpu", max_fit_positions=max_fit_positions)
        if block_slices is not None:
            result.parameters["block_separation"] = separation_from_moments(*fitted.label_moments, block_slices)
        return result, fitted.embedding
    # One reduction serves the embedding and the merge decisions, which are
    # made in the leading components anyway (denoised_scores).
    points = reduce_dimensions(matrix, pca_components, random_state)
    embedding = embed(points, pca_components=None, random_state=random_state, n_jobs=n_jobs, **umap_kwargs)
    result = soft_cluster(embedding, min_membership=min_membership, **hdbscan_kwargs)
    result = merge_indistinct(result, points, threshold=merge_threshold)
    result.parameters.update(fit="full", backend="cpu", max_fit_positions=max_fit_positions)
    return _with_separation(result, matrix, block_slices), embedding


def _with_separation(result, matrix, block_slices):
    if block_slices is not None:
        result.parameters["block_separation"] = block_separation(matrix, result.labels, block_slices)
    return result


def _cluster_on_gpu(matrix, umap_kwargs, hdbscan_kwargs, random_state, min_membership):  # pragma: no cover
    """UMAP and HDBSCAN from RAPIDS cuML; same conventions as the CPU path.

    cuML's UMAP has no densMAP: the embedding is plain UMAP (clusters keep
    their neighbourhoods but not their relative densities), recorded in the
    parameters. Soft memberships come from cuML's
    ``all_points_membership_vectors``.
    """
    from cuml.cluster import hdbscan as cuml_hdbscan
    from cuml.manifold import UMAP

    from .cluster import _labels_from_memberships, _record, resolve_min_cluster_size

    n = matrix.shape[0]
    kwargs = dict(umap_kwargs)
    densmap = kwargs.pop("densmap")
    if densmap:
        warnings.warn("backend='cuml': cuML's UMAP has no densMAP; using plain UMAP.", UserWarning, stacklevel=4)
    embedding = np.asarray(UMAP(random_state=random_state, **kwargs).fit_transform(matrix), dtype=np.float32)
    size = resolve_min_cluster_size(hdbscan_kwargs["min_cluster_size"], n)
    min_samples = min(int(hdbscan_kwargs["min_samples"]), size)
    clusterer = cuml_hdbscan.HDBSCAN(
        min_cluster_size=size,
        min_samples=min_samples,
        cluster_selection_epsilon=hdbscan_kwargs["cluster_selection_epsilon"],
        cluster_selection_method=hdbscan_kwargs["cluster_selection_method"],
        prediction_data=True,
    ).fit(embedding)
    labels = np.asarray(clusterer.labels_)
    n_found = int(labels.max()) + 1
    if n_found >= 2:
        memberships = np.asarray(cuml_hdbscan.all_points_membership_vectors(clusterer), dtype=np.float32)
    else:
        memberships = (labels[:, None] == np.arange(n_found)).astype(np.float32)
    parameters = _record(
        size,
        hdbscan_kwargs["min_cluster_size"],
        min_samples,
        hdbscan_kwargs["cluster_selection_epsilon"],
        hdbscan_kwargs["cluster_selection_method"],
        min_membership,
    )
    parameters.update(n_clusters_hdbscan=n_found, n_noise_hdbscan=int((labels < 0).sum()), densmap=False)
    return (
        ClusterResult(_labels_from_memberships(memberships, min_membership), memberships, parameters),
        embedding,
    )
