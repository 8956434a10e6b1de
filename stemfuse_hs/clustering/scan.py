"""A scan's features in, its label map's arrays out: the clustering of one scan.

:func:`cluster_scan` is everything :meth:`FusedSTEMSignal.cluster
<stemfuse_hs.signals.features.FusedSTEMSignal.cluster>` does between
reading the signal and building the label map, on numpy or dask arrays:
the one validation of the parameters, the positions left out, the choice
of a full or subsample fit and its memory check (:func:`check_fit_memory`), the refusal of NaN or inf features, the
clustering stage itself (:func:`~.embed_and_cluster.cluster_features`),
the warning when nothing separates, and the placing of the excluded
positions back in the map.
"""

import dataclasses
import warnings

import numpy as np

from .._arrays import (
    check_memory,
    compute_in_blocks,
    describe_positions,
    format_bytes,
    is_lazy_array,
    nonfinite_positions,
)
from .._progress import dask_progress, stage_bar
from .._validation import check_optional_bool
from .cluster import ClusterResult, resolve_min_cluster_size
from .embed import effective_pca_components
from .embed_and_cluster import cluster_features, streams_features
from .memory import plan_fit
from ..cluster_parameters import ClusterParameters, fill_cluster_doc, validate_cluster_parameters
from .subsample import NonFiniteRowsError

__all__ = ["check_fit_memory", "cluster_scan"]


def check_fit_memory(lazy, n_included, n_features, params):
    """The fit :func:`~.memory.plan_fit` chooses, after checking that it fits in memory.

    Lazy features of a scan fitted on a subsample are never held whole:
    read once for the subsample and once, chunk by chunk, to assign
    (:func:`~.embed_and_cluster.streams_features`). Otherwise the matrix
    and umap-learn's copies of it are held.

    Parameters
    ----------
    lazy : bool
        The features are a dask array.
    n_included : int
        Positions clustered.
    n_features : int
    params : ClusterParameters
        Validated.

    Returns
    -------
    stream : bool
        True when the features are read chunk by chunk.
    plan : FitPlan
        The choice, its size and reason (:mod:`stemfuse_hs.clustering.memory`).

    Raises
    ------
    MemoryError
        When the fit would not fit in the available memory.

    Examples
    --------
    >>> from stemfuse_hs.cluster_parameters import validate_cluster_parameters
    >>> stream, plan = check_fit_memory(False, 100, 8, validate_cluster_parameters())
    >>> stream, plan.fit
    (False, 'full')
    """
    plan = plan_fit(
        n_included,
        n_features,
        lazy=lazy,
        max_fit_positions=params.max_fit_positions,
        n_neighbors=params.n_neighbors,
        backend=params.backend,
    )
    stream = streams_features(lazy, n_included, plan.max_fit_positions, params.backend)
    if stream:
        what = f"cluster: the {plan.n_fit} x {n_features} float32 subsample UMAP is fitted on"
    else:
        matrix = format_bytes(n_included * n_features * 4)
        what = f"cluster: the {n_included} x {n_features} float32 feature matrix ({matrix})"
    check_memory(
        plan.estimate_bytes,
        what + " and UMAP's working copies",
        "Use fewer features (sdt_features with a larger binning or a smaller fraction, variance_features "
        "with a higher threshold), fit on fewer positions (max_fit_positions; lazy features are then read "
        "chunk by chunk), or crop or bin the scan (signal.inav[...], signal.rebin) first.",
    )
    return stream, plan


@fill_cluster_doc
def cluster_scan(
    features,
    parameters=None,
    *,
    scan_shape,
    excluded=None,
    block_slices=None,
    block_names=None,
    show_progressbar=None,
):
    """Cluster the feature vectors of a scan: labels, memberships and embedding of every position.

    Parameters
    ----------
    features : numpy.ndarray or dask.array.Array
        ``(*scan_shape, n_features)`` or ``(n_positions, n_features)``.
        Lazy features are read block by block (a full fit), or, past
        ``max_fit_positions``, once for the subsample and once chunk by
        chunk (never held whole).
    parameters : dict or ClusterParameters, optional
        The clustering parameters, any of these (the rest keep their
        defaults); checked here, once, before the features are read:

        {cluster_parameters}
    scan_shape : tuple of int
        Navigation shape, array order (at least two positions).
    excluded : numpy.ndarray, optional
        ``scan_shape`` booleans: positions left out (noise in the map, no
        membership, NaN in the embedding).
    block_slices : sequence of (int, int), optional
        ``(start, stop)`` feature columns of the fused blocks; by default
        one block of every feature.
    block_names : sequence of str, optional
        Their names (keys of ``parameters["block_separation"]``); by
        default ``"features"``.
    show_progressbar : bool, optional

    Returns
    -------
    result : ClusterResult
        ``(n_positions,)`` labels and ``(n_positions, n_clusters)`` memberships.
    embedding : numpy.ndarray
        ``(n_positions, n_components)`` float32, NaN at excluded positions.
    parameters : dict
        Every parameter used and what happened (``"fit"``, ``"merged"``,
        ``"block_separation"`` per block, -1 where undefined), as recorded
        in the label map's metadata.

    Raises
    ------
    ValueError
        For invalid parameters, fewer than two positions left, too few
        positions for ``n_neighbors`` or ``min_cluster_size``, or features
        holding NaN or inf at included positions.
    MemoryError
        When the fit would not fit in memory (:func:`check_fit_memory`).

    Warns
    -----
    UserWarning
        When fewer than two clusters are found.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> x = np.vstack([rng.normal(0, 1, (150, 6)), rng.normal(6, 1, (150, 6))]).astype(np.float32)
    >>> result, embedding, parameters = cluster_scan(x, {"random_state": 0}, scan_shape=(15, 20))
    >>> result.n_clusters, embedding.shape, parameters["fit"]
    (2, (300, 3), 'full')
    """
    # Every parameter is checked before the features are read: a typo
    # must not cost a pass over lazy data or a UMAP run.
    if not isinstance(parameters, ClusterParameters):
        parameters = validate_cluster_parameters(**dict(parameters or {}))
    params = parameters
    check_optional_bool("show_progressbar", show_progressbar)
    scan_shape = tuple(int(s) for s in scan_shape)
    n_positions = int(np.prod(scan_shape))
    excluded = np.zeros(scan_shape, dtype=bool) if excluded is None else np.asarray(excluded, dtype=bool)
    included = ~excluded.reshape(n_positions)
    n_included = int(included.sum())
    left = "" if n_included == n_positions else f" ({n_positions - n_included} excluded)"
    if n_included < 2:
        raise ValueError(f"cluster: {n_included} position(s) left{left}; clustering needs at least two.")
    resolve_min_cluster_size(params.min_cluster_size, n_included)
    if n_included <= params.n_neighbors:
        raise ValueError(
            f"n_neighbors={params.n_neighbors} needs more positions than that; the scan has {n_included}{left}."
        )
    n_features = int(np.prod(features.shape)) // n_positions
    if block_slices is None:
        block_slices, block_names = [(0, n_features)], list(block_names or ["features"])
    stream, plan = check_fit_memory(is_lazy_array(features), n_included, n_features, params)
    params = dataclasses.replace(params, max_fit_positions=plan.max_fit_positions)
    stages = ["features", "embedding", "clustering"]
    with stage_bar(stages, show_progressbar, "stemfuse cluster") as bar:
        if stream:
            matrix = features.reshape((n_positions, n_features))
        else:
            with dask_progress(show_progressbar):
                # Block by block into one array: a plain compute holds the
                # matrix twice while it concatenates the chunks.
                data = compute_in_blocks(features) if is_lazy_array(features) else features
            matrix = np.asarray(data, dtype=np.float32).reshape((n_positions, -1))
            _raise_if_nonfinite(nonfinite_positions(matrix, 1) & included, scan_shape)
        if n_included < n_positions:
            matrix = matrix[np.flatnonzero(included)]
        bar.update()
        try:
            result, embedding = cluster_features(
                matrix, params, block_slices=block_slices, show_progressbar=show_progressbar
            )
        except NonFiniteRowsError as error:
            bad = np.zeros(n_positions, dtype=bool)
            bad[np.flatnonzero(included)[error.rows]] = True
            _raise_if_nonfinite(bad, scan_shape, error)
        bar.update(2)
    # -1 for "undefined" (as random_state=-1 for None): NaN would not
    # compare equal to itself after a save and load.
    result.parameters["block_separation"] = {
        name: -1.0 if np.isnan(v) else float(v) for name, v in zip(block_names, result.parameters["block_separation"])
    }
    if result.n_clusters < 2:
        found = "no cluster: every position is noise" if result.n_clusters == 0 else "a single cluster"
        warnings.warn(
            f"cluster: found {found}. The scan may hold a single phase, or min_cluster_size="
            f"{params.min_cluster_size!r} / min_samples={params.min_samples!r} may be too large for "
            f"{n_included} positions.",
            UserWarning,
            stacklevel=3,
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
    recorded = {
        "n_components": params.n_components,
        "n_neighbors": params.n_neighbors,
        "min_dist": float(params.min_dist),
        "metric": params.metric,
        "densmap": bool(params.densmap),
        "layout": params.layout,
        # As used: principal components only with the euclidean metric.
        "pca_components": -1
        if effective_pca_components(params.pca_components, params.metric) is None
        else int(params.pca_components),
        "random_state": -1 if params.random_state is None else int(params.random_state),
    }
    recorded.update(result.parameters)
    recorded.update(plan.parameters())
    return result, embedding, recorded


def _raise_if_nonfinite(bad, scan_shape, cause=None):
    """The error of :func:`cluster_scan` for positions with NaN or inf features."""
    if bad.any():
        raise ValueError(
            f"cluster: {describe_positions(bad.reshape(scan_shape))} hold NaN or inf features; "
            "clean the data or exclude them (fuse or the extractors with nan_policy='exclude')."
        ) from cause
