"""Feature matrix in, soft phase labels out: UMAP, then HDBSCAN, then the merge.

:func:`cluster_features` is the clustering stage on one matrix (one row per
included position): UMAP embedding (:mod:`.embed`), HDBSCAN with soft
memberships (:mod:`.cluster`), the merge of clusters without a density
valley between them, and the per-block separation of the final clusters
(:func:`~.separability.block_separation`). It also picks how: every position
in one fit, or, past ``max_fit_positions``, a fit on a subsample with every
position assigned (:mod:`.subsample`); on the CPU, or on a GPU with RAPIDS
cuML when asked for and installed. It takes parameters already validated
(:func:`~stemfuse_hs.cluster_parameters.validate_cluster_parameters`); a scan's exclusions,
NaN checks and memory check are :func:`~.scan.cluster_scan`'s.
"""

import warnings

import numpy as np

from .._arrays import compute_in_blocks, is_lazy_array
from .cluster import ClusterResult, fit_hdbscan, merge_indistinct, single_cluster
from .embed import effective_pca_components, embed, reduce_dimensions
from ..cluster_parameters import BACKENDS, CLUSTER_PARAMETERS
from .memory import DEFAULT_MAX_FIT_POSITIONS, plan_fit
from .separability import block_separation, separation_from_moments

__all__ = [
    "BACKENDS",
    "DEFAULT_MAX_FIT_POSITIONS",
    "check_backend",
    "cluster_features",
    "resolve_backend",
    "streams_features",
]


def check_backend(backend):
    """Validate ``backend`` (one of :data:`~stemfuse_hs.cluster_parameters.BACKENDS`) without importing anything.

    Examples
    --------
    >>> check_backend("cpu")
    'cpu'
    """
    return CLUSTER_PARAMETERS["backend"].check(backend)


def resolve_backend(backend):
    """The backend that will run: ``backend`` (validated) if usable, else ``"cpu"`` with a warning.

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
    if backend == "cuml":
        try:
            import cuml  # noqa: F401
        except ImportError:
            warnings.warn(
                "backend='cuml': RAPIDS cuML is not installed (it needs an NVIDIA GPU, see "
                "https://docs.rapids.ai/install); clustering on the CPU instead.",
                UserWarning,
                stacklevel=4,
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


def cluster_features(matrix, params, *, block_slices=None, show_progressbar=None):
    """Embed and soft-cluster a feature matrix; one row per scan position.

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
    params : ClusterParameters
        Validated clustering parameters
        (:func:`~stemfuse_hs.cluster_parameters.validate_cluster_parameters`).
    block_slices : sequence of (int, int), optional
        ``(start, stop)`` feature columns of the fused blocks: adds
        ``parameters["block_separation"]``, the per-block
        :func:`~.separability.block_separation` of the final labels (NaN where
        undefined), accumulated while the rows are read on the lazy
        subsample path.
    show_progressbar : bool, optional

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
    >>> from stemfuse_hs.cluster_parameters import validate_cluster_parameters
    >>> rng = np.random.default_rng(0)
    >>> x = np.vstack([rng.normal(0, 1, (150, 6)), rng.normal(6, 1, (150, 6))]).astype(np.float32)
    >>> result, embedding = cluster_features(x, validate_cluster_parameters(random_state=0))
    >>> result.n_clusters, embedding.shape
    (2, (300, 3))
    """
    max_fit_positions = params.max_fit_positions
    if max_fit_positions is None:
        # Called directly, without cluster_scan's plan: the same rule.
        max_fit_positions = plan_fit(
            int(matrix.shape[0]), int(np.prod(matrix.shape[1:])), lazy=is_lazy_array(matrix),
            n_neighbors=params.n_neighbors, backend=params.backend,
        ).max_fit_positions
    pca_components = effective_pca_components(params.pca_components, params.metric)
    backend = resolve_backend(params.backend)
    random_state, n_components = params.random_state, params.n_components
    n = int(matrix.shape[0])
    stream = streams_features(is_lazy_array(matrix), n, max_fit_positions, backend)
    if is_lazy_array(matrix) and not stream:
        matrix = compute_in_blocks(matrix)
    if not stream:
        matrix = np.asarray(matrix, dtype=np.float32)
    umap_kwargs = params.umap_kwargs()
    hdbscan_kwargs = params.hdbscan_kwargs()
    if not stream and n and np.ptp(matrix, axis=0).max(initial=0.0) == 0:
        # UMAP cannot embed identical points; they are one group.
        warnings.warn(
            "cluster: the features are identical at every position: one cluster, nothing to separate.",
            UserWarning,
            stacklevel=4,
        )
        result = single_cluster(n, params)
        result.parameters.update(fit="identical features", backend=backend)
        return _with_separation(result, matrix, block_slices), np.zeros((n, n_components), dtype=np.float32)
    if backend == "cuml":
        points = reduce_dimensions(matrix, pca_components, random_state)
        result, embedding = _cluster_on_gpu(points, umap_kwargs, hdbscan_kwargs, random_state, params.min_membership)
        result = merge_indistinct(result, points, threshold=params.merge_threshold)
        result.parameters.update(fit="full", backend="cuml")
        return _with_separation(result, matrix, block_slices), embedding
    if n > max_fit_positions:
        from .subsample import embed_and_cluster_subsample

        fitted = embed_and_cluster_subsample(
            matrix,
            n_fit=max_fit_positions,
            umap_kwargs=umap_kwargs,
            hdbscan_kwargs=hdbscan_kwargs,
            merge_threshold=params.merge_threshold,
            min_membership=params.min_membership,
            pca_components=pca_components,
            random_state=random_state,
            n_jobs=params.n_jobs,
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
    embedding = embed(points, pca_components=None, random_state=random_state, n_jobs=params.n_jobs, **umap_kwargs)
    result = fit_hdbscan(
        np.asarray(embedding, dtype=np.float64), min_membership=params.min_membership, **hdbscan_kwargs
    )
    result = merge_indistinct(result, points, threshold=params.merge_threshold)
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
    kwargs.pop("layout", None)  # cuML lays out on the GPU
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
