"""Non-linear embedding of the fused features with UMAP (densMAP by default)."""

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

__all__ = ["METRICS", "embed", "check_embed_parameters"]

METRICS = ("euclidean", "chebyshev", "manhattan", "cosine", "correlation")


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
    n_components, n_neighbors, min_dist = checked["n_components"], checked["n_neighbors"], checked["min_dist"]
    densmap, pca_components, random_state = checked["densmap"], checked["pca_components"], checked["random_state"]
    n_jobs, verbose = checked["n_jobs"], checked["verbose"]
    matrix = np.asarray(check_array("matrix", matrix, ndim=2, finite=True), dtype=np.float32)
    n = matrix.shape[0]
    if n <= n_neighbors:
        raise ValueError(
            f"n_neighbors={n_neighbors} needs more positions than that; the scan has {n}."
        )
    if matrix.shape[1] == 0:
        raise ValueError("matrix has no features (0 columns).")
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
