"""Non-linear embedding of the fused features with UMAP (densMAP by default)."""

import contextlib
import contextvars
import hashlib
import warnings

import numpy as np

from .._validation import (
    check_array,
    check_bool,
    check_choice,
    check_int,
    check_n_jobs,
    check_random_state,
    check_real,
)

__all__ = ["METRICS", "embed", "check_embed_parameters", "reuse_embeddings"]

METRICS = ("euclidean", "chebyshev", "manhattan", "cosine", "correlation", "jaccard")

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
    *, n_components, n_neighbors, min_dist, metric, densmap, pca_components, random_state, n_jobs, verbose=False
):
    """Validate :func:`embed`'s parameters without embedding anything.

    So that a mistake is reported before the features are read, not after.

    Returns
    -------
    dict
        The parameters, converted to plain Python types.
    """
    if pca_components is not None:
        pca_components = check_int("pca_components", pca_components, minimum=1)
    if not isinstance(metric, str):
        raise TypeError(f"metric must be one of {list(METRICS)}, got {metric!r}.")
    return {
        "n_components": check_int("n_components", n_components, minimum=1),
        "n_neighbors": check_int("n_neighbors", n_neighbors, minimum=2),
        "min_dist": check_real("min_dist", min_dist, minimum=0),
        "metric": check_choice("metric", metric, METRICS),
        "densmap": check_bool("densmap", densmap),
        "pca_components": pca_components,
        "random_state": check_random_state(random_state),
        "n_jobs": check_n_jobs(n_jobs),
        "verbose": check_bool("verbose", verbose),
    }


def embed(
    matrix,
    *,
    n_components=3,
    n_neighbors=10,
    min_dist=0.0,
    metric="euclidean",
    densmap=True,
    pca_components=None,
    random_state=None,
    n_jobs=-1,
    verbose=False,
):
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
    pca_components : int, optional
        Reduce to this many principal components before UMAP (faster on
        many features). Off by default, as in the method.
    random_state : int, optional
        Seed: repeatable runs (UMAP then uses one thread).
    n_jobs : int, default -1
        Threads when no seed is set.
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
    checked = check_embed_parameters(
        n_components=n_components,
        n_neighbors=n_neighbors,
        min_dist=min_dist,
        metric=metric,
        densmap=densmap,
        pca_components=pca_components,
        random_state=random_state,
        n_jobs=n_jobs,
        verbose=verbose,
    )
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
    key = (matrix.shape, digest, repr(sorted(checked.items())))
    if key in state["embeddings"]:
        state["counts"]["reused"] += 1
    else:
        state["embeddings"][key] = _run_umap(matrix, **checked)
        state["counts"]["computed"] += 1
    return state["embeddings"][key].copy()


def _run_umap(
    matrix, *, n_components, n_neighbors, min_dist, metric, densmap, pca_components, random_state, n_jobs, verbose
):
    n = matrix.shape[0]
    if pca_components is not None:
        from sklearn.decomposition import PCA

        k = min(pca_components, *matrix.shape)
        matrix = PCA(k, random_state=0 if random_state is None else random_state).fit_transform(matrix)
        matrix = matrix.astype(np.float32)
    import umap

    reducer = umap.UMAP(
        n_components=n_components,
        n_neighbors=n_neighbors,
        min_dist=min_dist,
        metric=metric,
        densmap=densmap,
        random_state=random_state,
        n_jobs=1 if random_state is not None else n_jobs,
        # Spectral initialisation needs more points than components + 1.
        init="spectral" if n > n_components + 2 else "random",
        verbose=verbose,
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*n_jobs value.*overridden.*")
        warnings.filterwarnings("ignore", message=".*Graph is not fully connected.*")
        embedding = reducer.fit_transform(matrix)
    return np.asarray(embedding, dtype=np.float32)
