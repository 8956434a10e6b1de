"""Non-linear embedding of the fused features with UMAP (densMAP by default).

With the euclidean metric, every position's neighbours are found exactly
(:func:`nearest_neighbors`: candidates from float32 matrix products in
blocks, ranked on exact float64 distances) and handed to UMAP wherever UMAP
would otherwise switch to its approximate nearest-neighbour descent, as
long as that costs less than ``EXACT_NEIGHBORS_MAX_WORK``: on the
published-size scan (7,500 positions, 6,700 features) the exact search
takes 5.7 s (scikit-learn's brute force, which computes in float64, 9.6 s;
the same neighbours and distances) where the descent took 41 s, plus about
55 s of numba compilation on its first use in a session. Larger scans use
the descent.

``pca_components`` (off by default) gives UMAP the leading principal
components instead of the features, which makes the neighbour search
nearly free (0.2 s on the published size). It is not the default because
it lost phases on the largest synthetic scan: adjusted Rand index 0.84 with
50 components (0.82 with 200) against 0.98 without, on the 256 x 256 scan
fitted on 20,000 positions, while it was equal on the tiny scans (0.850
against 0.842 on average) and on the published size (0.965 against 0.952).
"""

import contextlib
import contextvars
import hashlib
import warnings

import numpy as np

from .._arrays import one_thread_arithmetic
from .._validation import check_array, check_bool, check_random_state
from ..cluster_parameters import CLUSTER_DEFAULTS, CLUSTER_PARAMETERS, METRICS, cluster_keywords, with_cluster_signature

__all__ = [
    "DEFAULT_PCA_COMPONENTS",
    "METRICS",
    "check_embed_parameters",
    "effective_pca_components",
    "embed",
    "fit_reduction",
    "fit_umap",
    "nearest_neighbors",
    "reduce_dimensions",
    "resolve_layout",
    "reuse_embeddings",
    "small_scan_neighbors",
]

#: Principal components UMAP is given by default: none (see the module notes).
DEFAULT_PCA_COMPONENTS = CLUSTER_DEFAULTS["pca_components"]
#: Epochs of UMAP's layout optimisation for fits of at least
#: :data:`LAYOUT_EPOCHS_MIN_POSITIONS` positions (:func:`layout_epochs`;
#: None: umap-learn's default, 700 with densMAP up to 10,000 positions, 400
#: beyond). 400 is umap-learn's own choice beyond 10,000 positions; below,
#: it changes the fits of 5,000-10,000 positions (the published size's
#: 7,500) and saves about 3-6 s of a 15-20 s ``cluster()``. Measured with
#: benchmarks/epochs.py (benchmarks/results/epochs_*.csv, summarised in
#: docs/performance.md): at the published size with the parallel layout
#: (seed 0; 700 against 400 epochs) ``cluster()`` scored ARI 0.947/0.947
#: on four_phases, 0.817/0.817 on structure_only and 0.04/0.18 on
#: poly_chemistry, ``map_phases`` 0.948/0.948, 0.884/0.882 and 0.65/0.72,
#: run-to-run agreement 0.97-0.99 against 0.94-0.99 except poly_chemistry
#: (0.11/0.35, 0.87/0.95); with umap-learn's layout four_phases 0.949
#: against 0.944 (cluster) and 0.949/0.948 (map_phases), and on the small
#: scans (4 scenarios) the same phase maps (0.812/0.808) and steadier
#: ``cluster()`` (agreement 0.83/0.97). 300 epochs cost structure_only's
#: ``cluster()`` at the published size (0.773 against 0.845, agreement
#: 0.915 against 0.986), so it stops at 400.
LAYOUT_EPOCHS = 400
#: Fits smaller than this keep umap-learn's epochs whatever LAYOUT_EPOCHS says:
#: on the tiny (1,536 positions) scans fewer epochs kept the mean ARI over
#: every scenario but cost single scans (structure_only's phase map, seed 1:
#: 0.92 at 700 epochs, 0.80-0.91 at 300).
LAYOUT_EPOCHS_MIN_POSITIONS = 5000


#: Fits of at least this many positions optimise their layout in parallel
#: with ``layout="auto"`` (the default, :func:`resolve_layout`). Below it
#: the layout takes a second or two on one thread, and a fresh install
#: would first compile the parallel layout's kernels: measured in the
#: clean-clone CI run (AMD EPYC, 2 cores, 2026-12-04) the demo on the tiny
#: scan (1,536 positions) took 41.8 s right after the install with the
#: parallel layout against 17.7-22.9 s with umap-learn's; warm, the tiny
#: scans' fused ``cluster()`` took 2.61 s against 3.10 s.
LAYOUT_PARALLEL_MIN_POSITIONS = 4096


def resolve_layout(layout, n_positions):
    """The layout optimisation a fit of ``n_positions`` runs (``"auto"`` chooses by size).

    Examples
    --------
    >>> resolve_layout("auto", 1536), resolve_layout("auto", 7500), resolve_layout("parallel", 100)
    ('umap-learn', 'parallel', 'parallel')
    """
    layout = CLUSTER_PARAMETERS["layout"].check(layout)
    if layout == "auto":
        return "parallel" if n_positions >= LAYOUT_PARALLEL_MIN_POSITIONS else "umap-learn"
    return layout


def layout_epochs(n_positions):
    """Epochs of the layout optimisation for a fit of ``n_positions`` (None: umap-learn's default).

    Examples
    --------
    >>> layout_epochs(1536) is None, layout_epochs(7500)
    (True, 400)
    """
    return LAYOUT_EPOCHS if n_positions >= LAYOUT_EPOCHS_MIN_POSITIONS else None


#: Below this many positions umap-learn computes every pairwise distance
#: (exact neighbours) itself, through one Python call per pair: there
#: :func:`small_scan_neighbors` computes the same neighbours bit for bit in
#: a compiled loop and hands them to UMAP.
EXACT_NEIGHBORS_MIN_POSITIONS = 4096
#: Largest exact neighbour search, in positions squared times dimensions
#: (about its multiply-adds): 7,500 positions x 6,700 features is 3.8e11
#: (6 s on 2 cores); 65,536 positions x 50 components 2.1e11; a 128 x 128
#: scan's 6,745 fused features 1.8e12. Beyond it UMAP's approximate
#: nearest-neighbour descent, whose search index keeps a copy of the
#: features for the whole fit (a third copy: the full fit of that 128 x 128
#: scan peaked 2.19 GB with it).
EXACT_NEIGHBORS_MAX_WORK = 2e12
#: The principal components are fitted on at most this many rows (drawn
#: with a fixed seed) and every row is projected in chunks: the components
#: are settled long before, and no centred copy of a large matrix is made.
PCA_MAX_FIT_ROWS = 20_000
#: Rows projected at a time.
PROJECTION_CHUNK_ROWS = 4096
#: Bytes of one block of float32 distances in the exact neighbour search.
KNN_BLOCK_BYTES = 64 * 2**20
#: Most strips of the symmetric distance matrix (:func:`_candidate_neighbors`);
#: beyond (over about 32,000 positions) whole rows are compared, block by block.
KNN_MAX_STRIPS = 128

# Set only inside ``reuse_embeddings``: {key: embedding} and the counts.
_CACHE = contextvars.ContextVar("stemfuse_embedding_cache", default=None)


@contextlib.contextmanager
def reuse_embeddings():
    """Within the block, :func:`embed` computes each distinct embedding once.

    A parameter sweep often changes only what happens after the embedding
    (HDBSCAN's sizes, the merge threshold): UMAP, the slow part, need not
    run again for the same features and UMAP parameters. Embeddings are
    keyed by the matrix's content and every UMAP parameter; the cache lives
    only as long as the block and is local to the thread (or task) that
    opened it.

    Yields
    ------
    dict
        ``{"computed": int, "reused": int}``, updated as the block runs.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.random.default_rng(0).normal(size=(40, 4))
    >>> with reuse_embeddings() as counts:
    ...     a = embed(x, random_state=0)
    ...     b = embed(x, random_state=0)
    >>> counts, bool(np.array_equal(a, b))
    ({'computed': 1, 'reused': 1}, True)
    """
    state = {"embeddings": {}, "counts": {"computed": 0, "reused": 0}}
    token = _CACHE.set(state)
    try:
        yield state["counts"]
    finally:
        _CACHE.reset(token)


def check_embed_parameters(
    *,
    n_components,
    n_neighbors,
    min_dist,
    metric,
    densmap,
    pca_components,
    random_state,
    n_jobs,
    layout=CLUSTER_DEFAULTS["layout"],
    verbose=False,
):
    """Validate :func:`embed`'s parameters without embedding anything: the spec's checks.

    So that a mistake is reported before the features are read, not after.
    The constraints live in :data:`~stemfuse_hs.cluster_parameters.CLUSTER_PARAMETERS`;
    ``random_state`` may also be a ``numpy.random.RandomState`` here (UMAP takes one).

    Returns
    -------
    dict
        The parameters, converted to plain Python types.
    """
    # The keyword arguments by the spec's names (random_state may be a RandomState here).
    given = {name: value for name, value in locals().items() if name in CLUSTER_PARAMETERS and name != "random_state"}
    checked = {name: CLUSTER_PARAMETERS[name].check(value) for name, value in given.items()}
    checked.update(random_state=check_random_state(random_state), verbose=check_bool("verbose", verbose))
    return checked


#: The clustering parameters the embedding takes.
EMBED_PARAMETERS = (
    "n_components", "n_neighbors", "min_dist", "metric", "densmap", "layout", "pca_components", "random_state", "n_jobs"
)


@with_cluster_signature(names=EMBED_PARAMETERS)
def embed(matrix, *, verbose=False, **parameters):
    """Embed ``(n_positions, n_features)`` features in a few dimensions.

    The defaults are the method's: ``densmap=True``, ``n_neighbors=10`` and
    ``min_dist=0`` give compact, well separated clusters; three components.

    Parameters
    ----------
    matrix : numpy.ndarray
        ``(n_positions, n_features)`` fused features.
    n_components : int, default 3
    n_neighbors : int, default 10
    min_dist : float, default 0.0
    metric : {"euclidean", "chebyshev", "manhattan", "cosine", "correlation"}
    densmap : bool, default True
    layout : {"auto", "parallel", "umap-learn"}, default "auto"
        The layout optimisation (:mod:`stemfuse_hs.clustering.layout`;
        "auto": :func:`resolve_layout`).
    pca_components : int, optional
        Reduce to this many principal components before UMAP when the
        matrix has more features and the metric is euclidean: faster, but
        see the module notes for what it cost on a large scan. None (the
        default) embeds the features as they are, as the method does.
    random_state : int, optional
        Seed: repeatable runs (umap-learn then uses one thread; the
        parallel layout keeps ``n_jobs``).
    n_jobs : int, default -1
        Threads of the parallel layout, and of all of umap-learn when no seed is set.
    verbose : bool, default False

    Returns
    -------
    numpy.ndarray
        ``(n_positions, n_components)`` float32.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> x = np.vstack([rng.normal(0, 1, (60, 8)), rng.normal(8, 1, (60, 8))])
    >>> embed(x, random_state=0).shape
    (120, 3)
    """
    checked = check_embed_parameters(**cluster_keywords(embed, parameters), verbose=verbose)
    matrix = np.asarray(check_array("matrix", matrix, ndim=2, finite=True), dtype=np.float32)
    n = matrix.shape[0]
    if n <= checked["n_neighbors"]:
        raise ValueError(
            f"n_neighbors={checked['n_neighbors']} needs more positions than that; the scan has {n}."
        )
    if matrix.shape[1] == 0:
        raise ValueError("matrix has no features (0 columns).")
    state = _CACHE.get()
    if state is None:
        return _run_umap(matrix, **checked)
    digest = hashlib.sha1(np.ascontiguousarray(matrix).view(np.uint8)).hexdigest()
    key = (matrix.shape, digest, repr(sorted(checked.items())), layout_epochs(matrix.shape[0]))
    if key in state["embeddings"]:
        state["counts"]["reused"] += 1
    else:
        state["embeddings"][key] = _run_umap(matrix, **checked)
        state["counts"]["computed"] += 1
    return state["embeddings"][key].copy()


def effective_pca_components(pca_components, metric):
    """The components actually used: principal components preserve euclidean
    distances only, so any other metric (chebyshev, manhattan, cosine,
    correlation, jaccard on binary features) sees the features as they are.

    Examples
    --------
    >>> effective_pca_components(50, "euclidean"), effective_pca_components(50, "jaccard")
    (50, None)
    """
    return pca_components if metric == "euclidean" else None


def fit_reduction(matrix, pca_components, random_state=None):
    """Principal components of the rows, or None when no reduction applies.

    Parameters
    ----------
    matrix : numpy.ndarray
        ``(n, p)`` float32.
    pca_components : int or None
        Components kept; None, or not fewer than ``p``, means no reduction.
    random_state : int, optional
        Seed of the randomized solver and of the rows fitted on when there
        are more than ``PCA_MAX_FIT_ROWS`` (0 when None: the same components
        every run).

    Returns
    -------
    sklearn.decomposition.PCA or None
        Fitted; its ``transform`` projects any rows of the same features.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.random.default_rng(0).normal(size=(100, 20)).astype(np.float32)
    >>> fit_reduction(x, 5).n_components, fit_reduction(x, None)
    (5, None)
    """
    k = None if pca_components is None else min(pca_components, matrix.shape[0], PCA_MAX_FIT_ROWS)
    if k is None or k >= matrix.shape[1]:
        return None
    from sklearn.decomposition import PCA

    # Four power iterations instead of scikit-learn's seven: the leading
    # components converge long before, at half the time.
    seed = 0 if random_state is None else random_state
    rows = matrix
    if matrix.shape[0] > PCA_MAX_FIT_ROWS:
        rows = matrix[np.sort(np.random.default_rng(seed).choice(matrix.shape[0], PCA_MAX_FIT_ROWS, replace=False))]
    # A drawn subsample is already a copy: centre it in place (copy=False).
    # One BLAS thread: the components, and so every later step, must not
    # depend on the machine's thread count.
    with one_thread_arithmetic():
        return PCA(k, svd_solver="randomized", iterated_power=4, random_state=seed, copy=rows is matrix).fit(rows)


def reduce_dimensions(matrix, pca_components, random_state=None):
    """The leading principal-component scores of the rows, or the rows as they are.

    See :func:`fit_reduction` for the parameters.

    Returns
    -------
    numpy.ndarray
        ``(n, min(pca_components, p))`` float32.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.random.default_rng(0).normal(size=(100, 20)).astype(np.float32)
    >>> reduce_dimensions(x, 5).shape, reduce_dimensions(x, None).shape
    ((100, 5), (100, 20))
    """
    pca = fit_reduction(matrix, pca_components, random_state)
    if pca is None:
        return matrix
    return project_rows(pca, matrix)


def project_rows(pca, matrix, dtype=np.float32):
    """``pca.transform(matrix)`` a block of rows at a time.

    scikit-learn centres a copy of the whole input first: for the fused
    features of a 256 x 256 scan that is 1.8 GB more than the scores.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.decomposition import PCA
    >>> x = np.random.default_rng(0).normal(size=(100, 20)).astype(np.float32)
    >>> pca = PCA(3).fit(x)
    >>> np.allclose(project_rows(pca, x), pca.transform(x), atol=1e-5)
    True
    """
    points = np.empty((matrix.shape[0], pca.n_components_), dtype=dtype)
    for start in range(0, matrix.shape[0], PROJECTION_CHUNK_ROWS):
        rows = slice(start, start + PROJECTION_CHUNK_ROWS)
        points[rows] = pca.transform(matrix[rows])
    return points


def nearest_neighbors(points, n_neighbors):
    """Exact euclidean nearest neighbours of every row, itself first (UMAP's convention).

    Parameters
    ----------
    points : numpy.ndarray
        ``(n, d)`` float32.
    n_neighbors : int
        Neighbours per row, the row itself included.

    Returns
    -------
    indices : numpy.ndarray
        ``(n, n_neighbors)`` int64; column 0 is the row itself.
    distances : numpy.ndarray
        ``(n, n_neighbors)`` float32; column 0 is exactly 0.

    Examples
    --------
    >>> import numpy as np
    >>> indices, distances = nearest_neighbors(np.array([[0.0], [1.0], [3.0]], np.float32), 2)
    >>> indices.tolist(), distances.tolist()
    ([[0, 1], [1, 0], [2, 1]], [[0.0, 1.0], [0.0, 1.0], [0.0, 2.0]])
    """
    from .._kernels import pair_distances

    points = np.ascontiguousarray(points, dtype=np.float32)
    n = points.shape[0]
    # Candidates from float32 matrix products (BLAS, twice the speed of the
    # float64 products scikit-learn upcasts float32 to), with room for the
    # rounding of the products: then ranked on exact float64 distances. One
    # more than needed, so that the row itself can be put first even where
    # duplicates tie with it at distance 0.
    n_candidates = min(n, 2 * n_neighbors + 1)
    # Centred (a float32 copy): far from the origin the products' rounding
    # would swamp the differences between neighbours.
    centred = points - points.mean(axis=0, dtype=np.float64).astype(np.float32)
    norms = np.einsum("ij,ij->i", centred, centred)
    candidates = _candidate_neighbors(centred, norms, n_candidates)
    del centred
    exact = pair_distances(points, np.arange(n), candidates)
    # Nearest first, ties by index: the same order whatever the partition gave.
    order = np.lexsort((candidates, exact), axis=-1)
    candidates = np.take_along_axis(candidates, order, axis=1)
    exact = np.take_along_axis(exact, order, axis=1)
    own = np.arange(n)
    others = candidates != own[:, None]
    # A row whose own index was crowded out by duplicates drops its farthest.
    others[others.all(axis=1), -1] = False
    width = n_candidates - 1
    other_indices = candidates[others].reshape(n, width)[:, : n_neighbors - 1]
    # Rounded as scikit-learn rounds them (float32, then the square root),
    # so that UMAP sees the distances it would be given by scikit-learn.
    other_distances = np.sqrt(exact[others].reshape(n, width)[:, : n_neighbors - 1].astype(np.float32))
    indices = np.concatenate([own[:, None], other_indices], axis=1)
    distances = np.concatenate([np.zeros((n, 1)), other_distances], axis=1)
    return indices, distances.astype(np.float32)


def _candidate_neighbors(centred, norms, n_candidates):
    """Each row's ``n_candidates`` nearest rows by float32 squared distances (itself included).

    The distance matrix is symmetric: it is computed in strips of rows
    against the rows from the strip on (about half the products of the
    whole matrix), and each strip hands its columns' candidates on to the
    rows of the later strips, which merge them with their own. Where that
    would take more than ``KNN_MAX_STRIPS`` strips, blocks of rows are
    compared with every row instead.
    """
    n = centred.shape[0]
    if n_candidates >= n:
        return np.broadcast_to(np.arange(n), (n, n)).copy()
    best = np.full((n, n_candidates), np.inf, dtype=np.float32)
    best_index = np.zeros((n, n_candidates), dtype=np.int64)

    def merge(rows, squared, columns):
        # Keep the n_candidates smallest of the rows' current and new candidates.
        width = min(n_candidates, squared.shape[1])
        if width < squared.shape[1]:
            part = np.argpartition(squared, width - 1, axis=1)[:, :width]
            squared, columns = np.take_along_axis(squared, part, axis=1), columns[part]
        else:
            columns = np.broadcast_to(columns, squared.shape)
        pooled = np.concatenate([best[rows], squared], axis=1)
        pooled_index = np.concatenate([best_index[rows], columns], axis=1)
        keep = np.argpartition(pooled, n_candidates - 1, axis=1)[:, :n_candidates]
        best[rows] = np.take_along_axis(pooled, keep, axis=1)
        best_index[rows] = np.take_along_axis(pooled_index, keep, axis=1)

    # Rows per strip: a strip of distances of at most KNN_BLOCK_BYTES / 2
    # (and its transpose), and at least 8 strips where n allows.
    block = max(n_candidates, min(KNN_BLOCK_BYTES // (8 * n), -(-n // 8)))
    if -(-n // block) > KNN_MAX_STRIPS:
        # Each strip hands candidates on to every later row: with many thin
        # strips that costs more than the products it saves.
        block = max(1, KNN_BLOCK_BYTES // (4 * n))
        for start in range(0, n, block):
            squared = centred[start : start + block] @ centred.T
            squared *= -2.0
            squared += norms[start : start + block, None]
            squared += norms[None, :]
            best_index[start : start + block] = np.argpartition(squared, n_candidates - 1, axis=1)[:, :n_candidates]
        return best_index
    for start in range(0, n, block):
        stop = min(n, start + block)
        squared = centred[start:stop] @ centred[start:].T
        squared *= -2.0
        squared += norms[start:stop, None]
        squared += norms[None, start:]
        merge(slice(start, stop), squared, np.arange(start, n))
        if stop < n:
            merge(slice(stop, n), np.ascontiguousarray(squared[:, stop - start :].T), np.arange(start, stop))
    return best_index


def small_scan_neighbors(points, n_neighbors):
    """The neighbours umap-learn finds itself below ``EXACT_NEIGHBORS_MIN_POSITIONS`` points, bit for bit.

    umap-learn computes every pairwise distance there with scikit-learn's
    ``pairwise_distances`` given its numba ``euclidean`` as a Python
    callable, one call per pair: 4.4 s of a 32 x 48 scan's 1,536 positions
    (1.2 million pairs), against 0.08 s for the same compiled function in
    one compiled loop (:func:`stemfuse_hs._kernels.umap_pairwise_euclidean`).
    The neighbours are then ranked as umap-learn's ``fast_knn_indices``
    ranks them, by a stable sort of each row (its numba mergesort, compiled
    in parallel: 7.5 s of a first run; numpy's stable sort gives the same
    unique order): the same neighbours and distances, so the same embedding
    as without them.

    Returns
    -------
    indices : numpy.ndarray
        ``(n, n_neighbors)`` int32, as umap-learn's.
    distances : numpy.ndarray
        ``(n, n_neighbors)`` float32.
    """
    from .._kernels import cache_umap_compilation, umap_pairwise_euclidean

    cache_umap_compilation()
    matrix = umap_pairwise_euclidean(points)
    indices = np.empty((matrix.shape[0], n_neighbors), dtype=np.int32)
    for start in range(0, matrix.shape[0], 512):
        rows = matrix[start : start + 512]
        indices[start : start + 512] = np.argsort(rows, axis=1, kind="stable")[:, :n_neighbors]
    distances = matrix[np.arange(matrix.shape[0])[:, None], indices].copy()
    return indices, distances


class _EdgeDistances(dict):
    """A sparse matrix's entries as ``{(row, column): value}``; absent entries are 0.

    ``matrix[j, k]`` of a scipy DOK matrix, as umap-learn's densMAP reads
    the neighbour distances edge by edge in a Python loop, validates its
    indices first: the tiny scan's 46,004 reads took 4.0 s of CPU under
    cProfile (a loaded machine; not timed on its own, and more edges on
    larger scans). A dictionary gives the same float32 values at a
    fraction of the cost.
    """

    def __init__(self, matrix):
        coo = matrix.tocoo()
        super().__init__(zip(zip(coo.row.tolist(), coo.col.tolist()), coo.data))
        self._zero = coo.data.dtype.type(0)

    def __missing__(self, key):
        return self._zero


_UMAP_CLASS = []


def _umap_class():
    """``umap.UMAP`` whose densMAP reads the neighbour distances from :class:`_EdgeDistances`."""
    if not _UMAP_CLASS:
        import scipy.sparse

        from .._kernels import import_umap

        umap = import_umap()

        class UMAP(umap.UMAP):
            def _fit_embed_data(self, X, n_epochs, init, random_state, **kwargs):
                kwds = getattr(self, "_densmap_kwds", None)
                dists = kwds.get("graph_dists") if isinstance(kwds, dict) else None
                if dists is None or not scipy.sparse.issparse(dists):
                    return super()._fit_embed_data(X, n_epochs, init, random_state, **kwargs)
                kwds["graph_dists"] = _EdgeDistances(dists)
                try:
                    return super()._fit_embed_data(X, n_epochs, init, random_state, **kwargs)
                finally:
                    kwds["graph_dists"] = dists

        UMAP.__module__ = umap.UMAP.__module__
        UMAP.__qualname__ = umap.UMAP.__qualname__
        _UMAP_CLASS.append(UMAP)
    return _UMAP_CLASS[0]


def fit_umap(
    points, *, random_state=None, n_jobs=-1, searchable=False, layout=CLUSTER_DEFAULTS["layout"], **umap_params
):
    """Fit UMAP to ``points``: the one place a UMAP model is made.

    Parameters
    ----------
    points : numpy.ndarray
        ``(n, d)`` float32, already reduced (:func:`reduce_dimensions`).
    random_state : int, optional
        Seed; umap-learn then runs on one thread (the parallel layout keeps ``n_jobs``).
    n_jobs : int, default -1
        Threads of the parallel layout (-1: numba's), and of umap-learn when no seed is given.
    searchable : bool, default False
        Keep UMAP's own nearest-neighbour search index, which ``transform``
        needs for new points. Otherwise the euclidean neighbours of at
        least ``EXACT_NEIGHBORS_MIN_POSITIONS`` points are found exactly
        (:func:`nearest_neighbors`) and handed to UMAP, up to
        ``EXACT_NEIGHBORS_MAX_WORK``; below, those umap-learn would find
        itself (:func:`small_scan_neighbors`).
    layout : {"auto", "parallel", "umap-learn"}, default "auto"
        ``"auto"``: ``"parallel"`` from ``LAYOUT_PARALLEL_MIN_POSITIONS``
        points, ``"umap-learn"`` below (:func:`resolve_layout`).
        ``"parallel"``: the layout is optimised by
        :func:`stemfuse_hs.clustering.layout.optimize_layout_euclidean` on
        ``n_jobs`` threads, the same on any number of them;
        ``"umap-learn"``: by umap-learn itself.
    **umap_params
        ``n_components``, ``n_neighbors``, ``min_dist``, ``metric``,
        ``densmap`` and any other ``umap.UMAP`` argument.

    Returns
    -------
    reducer : umap.UMAP
        The fitted model.
    embedding : numpy.ndarray
        ``(n, n_components)`` float32.
    """
    from .._kernels import cache_umap_compilation

    cache_umap_compilation()
    n = points.shape[0]
    params = dict(umap_params)
    n_components = params.get("n_components", 2)
    if (
        not searchable
        and params.get("metric", "euclidean") == "euclidean"
        and n >= EXACT_NEIGHBORS_MIN_POSITIONS
        and float(n) * n * points.shape[1] <= EXACT_NEIGHBORS_MAX_WORK
        and "precomputed_knn" not in params
    ):
        indices, distances = nearest_neighbors(points, params.get("n_neighbors", 15))
        params["precomputed_knn"] = (indices, distances, None)
    elif (
        params.get("metric", "euclidean") == "euclidean"
        and params.get("n_neighbors", 15) < n < EXACT_NEIGHBORS_MIN_POSITIONS
        and "precomputed_knn" not in params
    ):
        # umap-learn keeps no search index below this size either: transform
        # compares new points with every fitted one (see small_data_model).
        params["precomputed_knn"] = (*small_scan_neighbors(points, params.get("n_neighbors", 15)), None)
    # Spectral initialisation needs more points than components + 1.
    params.setdefault("init", "spectral" if n > n_components + 2 else "random")
    params.setdefault("n_epochs", layout_epochs(n))
    reducer = _umap_class()(random_state=random_state, n_jobs=1 if random_state is not None else n_jobs, **params)
    with warnings.catch_warnings(), _layout_context(resolve_layout(layout, n), n_jobs):
        warnings.filterwarnings("ignore", message=".*n_jobs value.*overridden.*")
        warnings.filterwarnings("ignore", message=".*Graph is not fully connected.*")
        warnings.filterwarnings("ignore", message=".*precomputed_knn.*")
        embedding = reducer.fit_transform(points)
    if searchable and "precomputed_knn" in params and n < EXACT_NEIGHBORS_MIN_POSITIONS:
        small_data_model(reducer)
    return reducer, np.asarray(embedding, dtype=np.float32)


@contextlib.contextmanager
def _layout_context(layout, n_jobs):
    """Within the block, UMAP fits optimise their layout as ``layout`` says (see :func:`fit_umap`)."""
    if CLUSTER_PARAMETERS["layout"].check(layout) == "umap-learn":
        yield
        return
    from .._validation import check_n_jobs
    from .layout import parallel_layout

    with parallel_layout(check_n_jobs(n_jobs)):
        yield


def small_data_model(reducer):
    """Let a model fitted on precomputed neighbours of fewer than 4,096 points transform new ones.

    Below that size umap-learn fits on every pairwise distance and keeps no
    search index; ``transform`` then compares the new points with every
    fitted point. A model given the same neighbours (:func:`small_scan_neighbors`)
    has the same embedding, but umap-learn marks it as having no index at
    all; marked as a small-data model it transforms as umap-learn's own
    small-data fit does.
    """
    reducer._small_data = True
    if getattr(reducer, "_knn_search_index", False) is None:
        del reducer._knn_search_index  # umap-learn refuses to transform with an index of None
    return reducer


def _run_umap(
    matrix,
    *,
    n_components,
    n_neighbors,
    min_dist,
    metric,
    densmap,
    layout,
    pca_components,
    random_state,
    n_jobs,
    verbose,
):
    points = reduce_dimensions(matrix, effective_pca_components(pca_components, metric), random_state)
    _, embedding = fit_umap(
        points,
        random_state=random_state,
        n_jobs=n_jobs,
        n_components=n_components,
        n_neighbors=n_neighbors,
        min_dist=min_dist,
        metric=metric,
        densmap=densmap,
        layout=layout,
        verbose=verbose,
    )
    return embedding
