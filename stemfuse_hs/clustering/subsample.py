"""Embedding and clustering of very large scans: fit on a subsample, assign the rest.

UMAP and HDBSCAN on every position cost time and memory that grow faster
than the scan: past a few hundred thousand positions (a 512 x 512 scan has
262,144) one embedding no longer fits the time or the memory at hand. Here
both are fitted on a random subsample of ``n_fit`` positions, and every
other position is placed in that embedding and given soft memberships,
chunk by chunk:

1. ``n_fit`` positions drawn at random (without replacement, seeded): the
   subsample represents every phase in proportion to its area.
2. Optionally principal components fitted on the subsample
   (``pca_components``, as in the full path), then UMAP (densMAP by default) and HDBSCAN (with
   prediction data) on the subsample, with the full path's conventions (:func:`~.embed.embed`,
   :func:`~.cluster.soft_cluster`): the subsample's memberships are
   ``all_points_membership_vectors``.
3. Clusters without a density valley between them in the fused features
   are merged (:func:`~.cluster.merge_indistinct`), decided on the
   subsample; the same groups are then summed for every position.
4. Every other position, ``chunk_size`` at a time (projected on the same
   components if any): UMAP's ``transform`` places it in the fitted embedding (its nearest fitted neighbours in
   feature space give its starting point, a few epochs of UMAP's
   cross-entropy against the fixed fitted points refine it), and
   ``hdbscan.membership_vector`` gives its soft memberships. Labels are the
   argmax of the memberships, as in the full path (``approximate_predict``'s
   hard labels are therefore not needed).

densMAP and ``transform``
-------------------------
umap-learn refuses ``transform`` on a densMAP model ("Transforming data
into an existing embedding not supported for densMAP", umap-learn 0.5):
densMAP's density term is defined over the whole graph at fit time. The
embedding of the fitted points is still the densMAP one; new points are
placed by UMAP's standard transform (neighbour-weighted initialisation in
the densMAP embedding, then UMAP's attraction/repulsion without the density
term, against the fixed fitted points) run on a shallow copy of the fitted
model with ``densmap=False``. The density term changes how spread out each
cluster is, not where a point's neighbours are, so a new point lands among
its neighbours in the fitted embedding. :func:`embed_and_cluster_subsample`
records this in ``parameters["transform"]``.

Memory: the subsample (``n_fit x n_features`` float32), UMAP's search index
on it, one chunk, and the ``(n, n_components)`` embedding and ``(n, k)``
memberships of all positions. A lazy (dask) ``matrix`` is read chunk by
chunk and never held whole.
"""

import copy
import time
import warnings
from dataclasses import dataclass, field
from numbers import Integral
from types import MappingProxyType

import numpy as np

from .._arrays import is_lazy_array
from .._validation import check_int
from .cluster import ClusterResult, _labels_from_memberships, merge_indistinct, resolve_min_cluster_size
from .embed import effective_pca_components, fit_reduction, fit_umap
from ..cluster_parameters import CLUSTER_DEFAULTS, ClusterParameters, cluster_keywords, with_cluster_signature
from .separability import label_moments as moments_of

__all__ = [
    "DEFAULT_HDBSCAN",
    "DEFAULT_UMAP",
    "NonFiniteRowsError",
    "SubsampleResult",
    "embed_and_cluster_subsample",
    "subsample_index",
]

#: UMAP parameters of the full path (:meth:`FusedSTEMSignal.cluster`), from the spec (read-only).
DEFAULT_UMAP = MappingProxyType(ClusterParameters().umap_kwargs())
#: HDBSCAN parameters of the full path, from the spec (read-only).
DEFAULT_HDBSCAN = MappingProxyType(ClusterParameters().hdbscan_kwargs())
#: Epochs UMAP's transform refines new points for, whatever the chunk size
#: (umap-learn's own rule switches from 100 to 30 at 10,000 new points).
TRANSFORM_EPOCHS = 100
#: Positions transformed and assigned at a time.
DEFAULT_CHUNK_SIZE = 8_192


class NonFiniteRowsError(ValueError):
    """Rows of the matrix hold NaN or inf; ``rows`` are their indices (those found so far).

    Raised while a lazy matrix is read, where the whole matrix was never
    checked up front; callers can say which scan positions these are.
    """

    def __init__(self, message, rows):
        super().__init__(message)
        self.rows = np.asarray(rows, dtype=np.int64)


def _check_finite(rows, index, where):
    finite = np.isfinite(rows).all(axis=1)
    if not finite.all():
        raise NonFiniteRowsError(f"matrix holds NaN or inf {where}; clean the features first.", index[~finite])


@dataclass
class SubsampleResult:
    """Embedding and soft clustering of every position from a subsample fit.

    Attributes
    ----------
    embedding : numpy.ndarray
        ``(n, n_components)`` float32: fitted positions keep their fitted
        coordinates, the others are placed by ``transform``.
    labels : numpy.ndarray
        ``(n,)`` int64, argmax of the memberships (-1: noise, only with
        ``min_membership`` or when HDBSCAN finds no cluster).
    memberships : numpy.ndarray
        ``(n, n_clusters)`` float32 soft memberships (after merging).
    fit_index : numpy.ndarray
        Sorted flat indices of the positions UMAP and HDBSCAN were fitted on.
    parameters : dict
        Every parameter used and what happened (cluster counts, merges).
    timings : dict
        ``{"read_subsample": ..., "fit": ..., "assign": ...}``, each
        ``(wall_s, cpu_s)``; "fit" includes reading the subsample.
    label_moments : tuple of numpy.ndarray or None
        With ``label_moments=True``: ``(counts, sums, squares)`` of the
        features of every final cluster over all positions
        (:func:`~.separability.label_moments`), accumulated while they were
        read, for :func:`~.separability.separation_from_moments`.
    """

    embedding: np.ndarray
    labels: np.ndarray
    memberships: np.ndarray
    fit_index: np.ndarray
    parameters: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)
    label_moments: tuple = None

    @property
    def n_clusters(self):
        return self.memberships.shape[1]

    def cluster_result(self):
        """The labels and memberships as a :class:`~.cluster.ClusterResult` (what the full path returns)."""
        return ClusterResult(self.labels, self.memberships, dict(self.parameters))


def subsample_index(n, n_fit, random_state=None):
    """Sorted flat indices of ``min(n_fit, n)`` positions drawn without replacement.

    Examples
    --------
    >>> subsample_index(10, 4, random_state=0).tolist()
    [2, 4, 5, 7]
    >>> subsample_index(3, 10).tolist()
    [0, 1, 2]
    """
    n = check_int("n", n, minimum=1)
    n_fit = check_int("n_fit", n_fit, minimum=1)
    if n_fit >= n:
        return np.arange(n)
    seed = 0 if random_state is None else random_state
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, size=n_fit, replace=False))


def _rows(matrix, index):
    """``matrix[index]`` as float32 numpy (computes a dask array)."""
    rows = matrix[index]
    if is_lazy_array(rows):
        rows = rows.compute()
    return np.ascontiguousarray(rows, dtype=np.float32)


def _row_blocks(matrix, chunk_size):
    """``(start, stop)`` row ranges of about ``chunk_size`` rows.

    For a dask array the ranges follow its own row chunks (grouped up to
    ``chunk_size``), so that no stored chunk is read twice.
    """
    n = matrix.shape[0]
    if not is_lazy_array(matrix):
        return [(a, min(a + chunk_size, n)) for a in range(0, n, chunk_size)]
    blocks, start, stop = [], 0, 0
    for size in matrix.chunks[0]:
        if stop > start and stop - start + size > chunk_size:
            blocks.append((start, stop))
            start = stop
        stop += size
    if stop > start:
        blocks.append((start, stop))
    return blocks


def _resolve_min_cluster_size(value, n, n_fit):
    """A fraction applies to the subsample; a count refers to the whole scan and is scaled."""
    if isinstance(value, Integral) and not isinstance(value, bool):
        resolve_min_cluster_size(value, n)  # validates against the scan
        return max(2, int(round(value * n_fit / n)))
    return resolve_min_cluster_size(value, n_fit)


def _transformer(reducer):
    """A model whose ``transform`` works, densMAP or not (see the module notes)."""
    model = copy.copy(reducer)
    model.densmap = False
    if reducer.n_epochs is None:
        model.n_epochs = 3 * TRANSFORM_EPOCHS
    return model


def _initial_positions(graph, fitted):
    """UMAP's ``init_graph_transform``, vectorised (umap-learn loops over rows in Python).

    A new point starts at the strength-weighted mean of its fitted
    neighbours' coordinates, or exactly at a neighbour it coincides with
    (strength 1); NaN without neighbours.
    """
    import scipy.sparse

    graph = scipy.sparse.csr_matrix(graph)
    graph.eliminate_zeros()
    sums = np.asarray(graph.sum(axis=1)).ravel()
    with np.errstate(divide="ignore", invalid="ignore"):
        weights = scipy.sparse.diags(np.where(sums > 0, 1.0 / sums, 0.0)) @ graph
    result = np.asarray(weights @ fitted.astype(np.float64), dtype=np.float32)
    result[sums == 0] = np.nan
    exact = graph.data == 1
    if exact.any():
        rows = np.repeat(np.arange(graph.shape[0]), np.diff(graph.indptr))[exact]
        cols = graph.indices[exact]
        first = np.unique(rows, return_index=True)[1]
        result[rows[first]] = fitted[cols[first]]
    return result


def transform_graph(model, points):
    """The fuzzy graph from new ``points`` to a fitted UMAP model's points (umap-learn's ``transform_mode="graph"``).

    umap-learn's small-data transform (a fit on fewer than 4,096 points)
    hands its numba euclidean to scikit-learn as a Python callable, one
    call per pair: 80 s for 5,000 new points against 2,500 fitted ones. By
    name, scikit-learn computes the same distances in matrix products.
    """
    by_name = getattr(model, "_small_data", False) and model.metric == "euclidean"
    if by_name:
        distance = model.__dict__.pop("_input_distance_func", None)
        model._input_distance_func = "euclidean"
    mode = model.transform_mode
    model.transform_mode = "graph"
    try:
        return model.transform(points)
    finally:
        model.transform_mode = mode
        if by_name:
            del model._input_distance_func
            if distance is not None:
                model._input_distance_func = distance


def _transform(model, points):
    """``model.transform(points)`` with a vectorised initialisation.

    The same steps as umap-learn's ``UMAP.transform`` (0.5): the fuzzy graph
    from the new points to the fitted ones (umap-learn's public
    ``transform_mode="graph"``), the neighbour-weighted start, then
    ``n_epochs // 3`` epochs of the euclidean layout optimisation against the
    fixed fitted embedding, seeded by ``transform_seed``. Falls back to
    ``model.transform`` for a non-euclidean output metric.
    """
    if getattr(model, "output_metric", "euclidean") != "euclidean":
        return model.transform(points)
    from sklearn.utils import check_random_state as sk_random_state

    from .._kernels import import_umap

    umap = import_umap()
    optimize_layout_euclidean = umap.layouts.optimize_layout_euclidean
    INT32_MAX, INT32_MIN, make_epochs_per_sample = umap.umap_.INT32_MAX, umap.umap_.INT32_MIN, umap.umap_.make_epochs_per_sample

    graph = transform_graph(model, points).tocoo()
    fitted = np.asarray(model.embedding_, dtype=np.float32)
    embedding = _initial_positions(graph, fitted)
    n_epochs = int(model.n_epochs // 3.0) if model.n_epochs is not None else (100 if graph.shape[0] <= 10000 else 30)
    if graph.nnz:
        graph.data[graph.data < (graph.data.max() / float(n_epochs))] = 0.0
        graph.eliminate_zeros()
    rng_state = sk_random_state(model.transform_seed).randint(INT32_MIN, INT32_MAX, 3).astype(np.int64)
    epochs_per_sample = make_epochs_per_sample(graph.data, n_epochs)
    return optimize_layout_euclidean(
        embedding,
        fitted.copy(),
        graph.row,
        graph.col,
        n_epochs,
        graph.shape[1],
        epochs_per_sample,
        model._a,
        model._b,
        rng_state,
        model.repulsion_strength,
        model._initial_alpha / 4.0,
        model.negative_sample_rate,
        model.random_state is None,
        verbose=False,
    )


def _memberships(clusterer, points, n_found):
    import hdbscan

    if n_found == 0:
        return np.zeros((points.shape[0], 0), dtype=np.float32)
    if n_found == 1:
        return np.ones((points.shape[0], 1), dtype=np.float32)
    values = hdbscan.membership_vector(clusterer, np.asarray(points, dtype=np.float64))
    return np.nan_to_num(np.asarray(values, dtype=np.float32), nan=0.0)


#: The clustering parameters the subsample fit takes besides UMAP's and HDBSCAN's.
SUBSAMPLE_PARAMETERS = ("merge_threshold", "min_membership", "pca_components", "random_state", "n_jobs")


@with_cluster_signature(names=SUBSAMPLE_PARAMETERS)
def embed_and_cluster_subsample(
    matrix,
    n_fit=50_000,
    chunk_size=DEFAULT_CHUNK_SIZE,
    *,
    umap_kwargs=None,
    hdbscan_kwargs=None,
    return_timings=True,
    label_moments=False,
    show_progressbar=None,
    **parameters,
):
    """UMAP + HDBSCAN fitted on ``n_fit`` positions, every position assigned.

    The clustering parameters are taken as validated
    (:func:`~stemfuse_hs.cluster_parameters.validate_cluster_parameters`,
    which :func:`~stemfuse_hs.clustering.scan.cluster_scan` calls); only
    this function's own (``n_fit``, ``chunk_size``) are checked here.

    Parameters
    ----------
    matrix : numpy.ndarray or dask.array.Array
        ``(n_positions, n_features)`` fused features. A dask array is read
        chunk by chunk (twice: once for the subsample, once to assign).
    n_fit : int, default 50000
        Positions UMAP and HDBSCAN are fitted on; all of them when the scan
        has no more (then the result is the full fit's, up to merging).
    chunk_size : int, default 8192
        Positions transformed and assigned at a time (bounds the memory).
    umap_kwargs : dict, optional
        Overrides of :data:`DEFAULT_UMAP` (``n_components``,
        ``n_neighbors``, ``min_dist``, ``metric``, ``densmap``, or any other
        ``umap.UMAP`` argument).
    hdbscan_kwargs : dict, optional
        Overrides of :data:`DEFAULT_HDBSCAN`. A float ``min_cluster_size``
        is a fraction of the subsample (the same fraction of the scan); an
        integer counts positions of the whole scan and is scaled to the
        subsample.
    merge_threshold : float, default 0.55
        As in :meth:`FusedSTEMSignal.cluster`; decided on the subsample.
    min_membership : float, optional
        Positions whose largest membership is below this become noise.
    pca_components : int, optional
        Principal components (fitted on the subsample) UMAP embeds, as in
        :func:`~stemfuse_hs.clustering.embed.embed`; every chunk is projected
        on them before it is placed. None (the default) embeds the features
        as they are.
    random_state : int, optional
        Seeds the subsample and UMAP (0 for the subsample when None).
    n_jobs : int, default -1
        UMAP threads when no seed is given.
    return_timings : bool, default True
        Record wall and CPU time of the fit and of the assignment.
    label_moments : bool, default False
        Also accumulate each final cluster's feature moments over every
        position while the rows are read (``SubsampleResult.label_moments``):
        what :func:`~.separability.block_separation` needs, without another
        pass over a lazy matrix.
    show_progressbar : bool, optional
        A bar over the assignment chunks (default: HyperSpy's preference).

    Returns
    -------
    SubsampleResult

    Raises
    ------
    NonFiniteRowsError
        A row read holds NaN or inf (a ``ValueError``; ``rows`` says which).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> x = np.vstack([rng.normal(0, 1, (3000, 8)), rng.normal(6, 1, (3000, 8))]).astype(np.float32)
    >>> result = embed_and_cluster_subsample(x, n_fit=1000, chunk_size=2000, random_state=0)  # doctest: +SKIP
    >>> result.embedding.shape, result.n_clusters  # doctest: +SKIP
    ((6000, 3), 2)
    """
    import hdbscan

    from .._progress import resolve_show_progressbar

    merge_threshold, min_membership, pca_components, random_state, n_jobs = cluster_keywords(
        embed_and_cluster_subsample, parameters
    ).values()
    if matrix.ndim != 2:
        raise ValueError(f"matrix must be (n_positions, n_features), got shape {matrix.shape}.")
    n = int(matrix.shape[0])
    n_fit = check_int("n_fit", n_fit, minimum=2)
    chunk_size = check_int("chunk_size", chunk_size, minimum=1)
    umap_params = dict(DEFAULT_UMAP, **(umap_kwargs or {}))
    hdbscan_params = dict(DEFAULT_HDBSCAN, **(hdbscan_kwargs or {}))
    min_cluster_size_given = hdbscan_params["min_cluster_size"]
    n_fit = min(n_fit, n)
    if n_fit <= umap_params["n_neighbors"]:
        raise ValueError(
            f"n_fit={n_fit} must exceed n_neighbors={umap_params['n_neighbors']} (the scan has {n} positions)."
        )
    timings = {}

    # 1-2. Fit on the subsample.
    start, cpu = time.perf_counter(), time.process_time()
    fit_index = subsample_index(n, n_fit, random_state)
    fit_rows = _rows(matrix, fit_index)
    timings["read_subsample"] = (time.perf_counter() - start, time.process_time() - cpu)
    _check_finite(fit_rows, fit_index, "in the subsample")
    projection = fit_reduction(fit_rows, effective_pca_components(pca_components, umap_params["metric"]), random_state)

    def project(rows):
        return rows if projection is None else np.asarray(projection.transform(rows), dtype=np.float32)

    n_components = umap_params["n_components"]
    # With every position fitted nothing is transformed: the full path's
    # exact neighbours then give the full path's embedding.
    reducer, fit_embedding = fit_umap(
        project(fit_rows), random_state=random_state, n_jobs=n_jobs, searchable=n_fit < n, **umap_params
    )
    size = _resolve_min_cluster_size(hdbscan_params.pop("min_cluster_size"), n, n_fit)
    min_samples = min(hdbscan_params.pop("min_samples"), size)
    clusterer = hdbscan.HDBSCAN(
        min_cluster_size=size, min_samples=min_samples, prediction_data=True, **hdbscan_params
    ).fit(fit_embedding.astype(np.float64))
    n_found = int(clusterer.labels_.max()) + 1
    if n_found >= 2:
        fit_memberships = np.asarray(hdbscan.all_points_membership_vectors(clusterer), dtype=np.float32)
    else:
        fit_memberships = _memberships(clusterer, fit_embedding, n_found)

    # 3. Merge on the subsample; the same groups apply to every position.
    fit_result = ClusterResult(_labels_from_memberships(fit_memberships, None), fit_memberships, {})
    merged = merge_indistinct(fit_result, fit_rows, threshold=merge_threshold)
    groups = merged.parameters["merged"]
    fit_merged = _merge_columns(fit_memberships, groups)
    moments = None
    if label_moments:
        moments = moments_of(fit_rows, _labels_from_memberships(fit_merged, min_membership), len(groups))
    del fit_rows
    timings["fit"] = (time.perf_counter() - start, time.process_time() - cpu)

    # 4. Assign every position, chunk by chunk.
    start, cpu = time.perf_counter(), time.process_time()
    embedding = np.empty((n, n_components), dtype=np.float32)
    memberships = np.empty((n, len(groups)), dtype=np.float32)
    is_fit = np.zeros(n, dtype=bool)
    is_fit[fit_index] = True
    embedding[fit_index] = fit_embedding
    memberships[fit_index] = fit_merged
    transformer = _transformer(reducer) if n_fit < n else None
    blocks = _row_blocks(matrix, chunk_size) if n_fit < n else []
    from tqdm.auto import tqdm

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*n_jobs value.*overridden.*")
        for a, b in tqdm(
            blocks, desc="assigning positions", unit="chunk", disable=not resolve_show_progressbar(show_progressbar)
        ):
            new = np.flatnonzero(~is_fit[a:b]) + a
            if new.size == 0:
                continue
            chunk = matrix[a:b]
            chunk = np.asarray(chunk.compute() if is_lazy_array(chunk) else chunk, dtype=np.float32)
            chunk = np.ascontiguousarray(chunk[new - a])
            _check_finite(chunk, new, f"between positions {a} and {b}")
            placed = np.asarray(_transform(transformer, project(chunk)), dtype=np.float32)
            embedding[new] = placed
            memberships[new] = _merge_columns(_memberships(clusterer, placed, n_found), groups)
            if moments is not None:
                chunk_moments = moments_of(chunk, _labels_from_memberships(memberships[new], min_membership), len(groups))
                moments = tuple(total + part for total, part in zip(moments, chunk_moments))
    timings["assign"] = (time.perf_counter() - start, time.process_time() - cpu)

    labels = _labels_from_memberships(memberships, min_membership)
    parameters = {
        "subsample": True,
        "n_fit": int(n_fit),
        "n_positions": n,
        "chunk_size": int(chunk_size),
        "random_state": -1 if random_state is None else int(random_state),
        "pca_components": -1 if projection is None else int(projection.n_components_),
        "umap": {k: v for k, v in umap_params.items()},
        "transform": (
            "umap transform with densmap=False on the fitted densMAP model"
            if umap_params.get("densmap") and n_fit < n
            else ("umap transform" if n_fit < n else "none (every position fitted)")
        ),
        "min_cluster_size": int(size),
        "min_cluster_size_given": min_cluster_size_given,
        "min_samples": int(min_samples),
        "cluster_selection_epsilon": float(hdbscan_params.get("cluster_selection_epsilon", 0.0)),
        "cluster_selection_method": hdbscan_params.get("cluster_selection_method", "eom"),
        "min_membership": 0.0 if min_membership is None else float(min_membership),
        "n_clusters_hdbscan": n_found,
        "n_noise_hdbscan_subsample": int((clusterer.labels_ < 0).sum()),
        "merge_threshold": merge_threshold,
        "merged": groups,
    }
    return SubsampleResult(
        embedding=embedding,
        labels=labels,
        memberships=memberships,
        fit_index=fit_index,
        parameters=parameters,
        timings=timings if return_timings else {},
        label_moments=moments,
    )


def _merge_columns(memberships, groups):
    """Sum membership columns by merged ``groups`` (as :func:`merge_indistinct` does)."""
    if memberships.shape[1] == 0:
        return memberships
    return np.stack([memberships[:, g].sum(axis=1) for g in groups], axis=1).astype(np.float32)
