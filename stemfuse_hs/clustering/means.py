"""Per-cluster mean and standard deviation of any data over the same scan.

One pass over the data computes, for every cluster, the weighted sums of
the signal and of its square: for lazy data as matrix products of the
(small) weight matrix with the data chunks, never loading the data whole;
for data in memory with a compiled kernel
(:func:`stemfuse_hs._kernels.weighted_moments`).
"""

import dask.array as da
import numpy as np

from .._arrays import as_dask, describe_positions, flat_positions, is_lazy_array
from .._kernels import weighted_moments
from .._validation import check_array, check_choice, check_fraction, check_int, check_numeric_dtype

__all__ = ["MEAN_MODES", "MIN_INTERIOR_POSITIONS", "cluster_weights", "cluster_statistics", "interior_weights"]

MEAN_MODES = ("membership", "hard")

#: A segment's interior stands for it only if it keeps at least this many
#: positions (and half of the segment's weighted ones).
MIN_INTERIOR_POSITIONS = 10


def cluster_weights(labels, memberships, mode="membership", min_membership=0.5):
    """``(n, n_clusters)`` weights of every position in every cluster's mean.

    ``"membership"``: the soft memberships themselves (noise included with
    its small memberships). ``"hard"``: 1 where the position's label is the
    cluster and its largest membership is at least ``min_membership``. The
    reference notebook kept only memberships exactly 1.0, which selects
    almost nothing on real data.

    Examples
    --------
    >>> import numpy as np
    >>> m = np.array([[0.9, 0.1], [0.4, 0.6], [0.55, 0.45]])
    >>> cluster_weights(np.array([0, 1, 0]), m, "hard", 0.6).tolist()
    [[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]
    """
    if not isinstance(mode, str):
        raise TypeError(f"mode must be one of {list(MEAN_MODES)}, got {mode!r}.")
    check_choice("mode", mode, MEAN_MODES)
    min_membership = check_fraction("min_membership", min_membership, closed_low=True)
    memberships = np.asarray(check_array("memberships", memberships, ndim=2, finite=True), dtype=np.float64)
    labels = np.asarray(check_array("labels", labels, ndim=1))
    if labels.dtype.kind not in "iu":
        raise TypeError(f"labels must be integers (-1 for noise), got dtype {labels.dtype}.")
    if labels.shape[0] != memberships.shape[0]:
        raise ValueError(f"labels has {labels.shape[0]} positions, memberships {memberships.shape[0]}; they must match.")
    k = memberships.shape[1]
    if labels.size and (labels.max() >= k or labels.min() < -1):
        raise ValueError(f"labels must be -1 (noise) or a cluster index below {k}, got values from {labels.min()} to {labels.max()}.")
    if np.any(memberships < 0):
        raise ValueError("memberships must be non-negative.")
    if mode == "membership":
        return memberships
    weights = np.zeros_like(memberships)
    sure = (labels >= 0) & (memberships.max(axis=1, initial=0) >= min_membership)
    rows = np.flatnonzero(sure)
    weights[rows, labels[rows]] = 1.0
    return weights[:, :k]


def interior_weights(weights, segment_map, *, min_positions=MIN_INTERIOR_POSITIONS, min_share=0.5):
    """``weights`` kept only where the position's nearest neighbours on the scan are of its own segment.

    The probe at a grain boundary lights both grains, so a segment's border
    positions carry weak spots of the neighbouring grain; in the segment's
    mean pattern they are spacings the segment's lattice does not have.
    The interior (the segment eroded by one position, the scan's edge not
    counting as a border) is free of them. A segment whose interior keeps
    fewer than ``min_positions`` or less than ``min_share`` of its weighted
    positions (a precipitate a few positions across has none) keeps its
    weights unchanged.

    Parameters
    ----------
    weights : numpy.ndarray
        ``(n_positions, n_segments)`` from :func:`cluster_weights`.
    segment_map : numpy.ndarray
        The segment of every position on the scan grid (-1 for none);
        ``segment_map.size == n_positions``.
    min_positions : int, default 10
    min_share : float, default 0.5

    Returns
    -------
    numpy.ndarray
        ``(n_positions, n_segments)`` float64.

    Examples
    --------
    A 5 x 5 segment beside a 5 x 2 one: the first keeps the 20 positions
    not touching the second; the second has no interior and keeps all.

    >>> import numpy as np
    >>> segments = np.zeros((5, 7), dtype=int); segments[:, 5:] = 1
    >>> weights = cluster_weights(segments.ravel(), np.ones((35, 2)), "hard")
    >>> interior_weights(weights, segments).sum(axis=0).tolist()
    [20.0, 10.0]
    """
    from scipy import ndimage

    weights = np.asarray(check_array("weights", weights, ndim=2, finite=True), dtype=np.float64)
    segment_map = np.asarray(segment_map)
    if segment_map.size != weights.shape[0]:
        raise ValueError(f"segment_map covers {segment_map.size} positions, weights {weights.shape[0]}.")
    min_positions = check_int("min_positions", min_positions, minimum=0)
    min_share = check_fraction("min_share", min_share, closed_low=True)
    inner = weights.copy()
    for segment in range(weights.shape[1]):
        interior = ndimage.binary_erosion(segment_map == segment, border_value=1).ravel()
        weighted = weights[:, segment] > 0
        kept = interior & weighted
        if kept.sum() >= max(min_positions, min_share * weighted.sum()):
            inner[~kept, segment] = 0.0
    return inner


def cluster_statistics(data, signal_ndim, weights, *, std=True):
    """Weighted mean and standard deviation of ``data`` for every cluster.

    Parameters
    ----------
    data : numpy.ndarray or dask.array.Array
        ``(*navigation, *signal)``, any real dtype (float16 included).
        Sums are accumulated in float64 about one position of each
        cluster (its largest weight), so that counts with a large offset
        and a small spread (uint32 sums of frames near 4e9) keep their
        standard deviation.
    signal_ndim : int
    weights : numpy.ndarray
        ``(n_positions, n_clusters)`` from :func:`cluster_weights`.
    std : bool, default True
        False: the means only (``std`` returned as None), without the sums
        of squares.

    Returns
    -------
    mean, std : numpy.ndarray
        ``(n_clusters, *signal)`` float32; NaN for a cluster with no weight.

    Examples
    --------
    >>> import numpy as np
    >>> data = np.array([[1.0, 2.0], [3.0, 6.0], [5.0, 0.0]])
    >>> mean, std = cluster_statistics(data, 1, np.array([[1, 0], [1, 0], [0, 1.0]]))
    >>> mean.tolist(), std.tolist()
    ([[2.0, 4.0], [5.0, 0.0]], [[1.0, 2.0], [0.0, 0.0]])
    """
    if not hasattr(data, "dtype") or not hasattr(data, "ndim"):
        raise TypeError(f"data must be a numpy or dask array, got {type(data).__name__}.")
    check_numeric_dtype("data", data.dtype)
    signal_ndim = check_int("signal_ndim", signal_ndim, minimum=0, maximum=data.ndim)
    weights = np.asarray(check_array("weights", weights, ndim=2, finite=True), dtype=np.float64)
    if np.any(weights < 0):
        raise ValueError("weights must be non-negative.")
    nav_shape = data.shape[: data.ndim - signal_ndim]
    sig_shape = data.shape[data.ndim - signal_ndim :]
    n = int(np.prod(nav_shape))
    if weights.shape[0] != n:
        raise ValueError(f"weights cover {weights.shape[0]} positions, the data {n}.")
    # Positions that weigh nothing in every cluster (noise, excluded
    # positions) must not spoil the sums with their NaN: 0 * NaN is NaN.
    used = weights.sum(axis=1) > 0
    total = weights.sum(axis=0)[:, None]
    # Every cluster's sums are taken about one of its own positions (the
    # one of largest weight): sums of squares of raw values cancel
    # catastrophically for large counts with a small spread (uint32 near
    # 4e9), in float64 too.
    reference = np.argmax(weights, axis=0)
    if is_lazy_array(data):
        flat = flat_positions(as_dask(data, signal_ndim), signal_ndim).reshape((n, -1))
        # The reference rows come from chunks the sums read anyway: one
        # graph, computed together, reads the data once.
        shift = flat[reference].astype(np.float64).rechunk((weights.shape[1], flat.chunks[1]))
        w = da.from_array(weights, chunks=(flat.chunks[0], weights.shape[1]))
        parts = da.blockwise(
            _shifted_moments, "iqcj", flat, "ij", w, "ic", shift, "cj",
            new_axes={"q": 2}, adjust_chunks={"i": 1}, dtype=np.float64, squares=bool(std),
        )
        moments, shift = da.compute(parts.sum(axis=0), shift)
        sums, squares = moments
        shift = np.where(total > 0, shift, 0.0)
    else:
        flat = np.asarray(data).reshape((n, -1))
        if std:
            shift = np.where(total > 0, flat[reference].astype(np.float64), 0.0)
        else:
            # Means keep their digits without a shift (float64 sums).
            shift = np.zeros((weights.shape[1], 1))
        sums, squares = weighted_moments(flat, weights, shift if std else None, squares=std)
    with np.errstate(invalid="ignore", divide="ignore"):
        offset = sums / total
        mean = shift + offset
        var = np.clip(squares / total - offset**2, 0, None) if std else None
    weighed = total[:, 0] > 0
    if not (np.all(np.isfinite(mean[weighed])) and (not std or np.all(np.isfinite(var[weighed])))):
        row_sums = flat.sum(axis=1)
        bad = ~np.isfinite(np.asarray(row_sums.compute() if is_lazy_array(row_sums) else row_sums)) & used
        bad = bad.reshape(data.shape[: data.ndim - signal_ndim])
        raise ValueError(
            f"data holds NaN or inf at {describe_positions(bad)} that weigh in a cluster; "
            "exclude them when fusing (nan_policy='exclude') and cluster again, or clean the data."
        )
    shape = (weights.shape[1],) + tuple(sig_shape)
    mean = mean.reshape(shape).astype(np.float32)
    return mean, (np.sqrt(var).reshape(shape).astype(np.float32) if std else None)


def _shifted_moments(block, weights, shift, squares=True):
    """One chunk's ``(1, 2, k, m)`` weighted sums of ``block - shift[c]`` and of their squares (zero without ``squares``).

    numpy (float64) rather than the compiled kernel: dask runs chunks in
    threads of its own, and numba's parallel kernels must not be entered
    from several threads at once.
    """
    k = weights.shape[1]
    out = np.zeros((1, 2, k, block.shape[1]), dtype=np.float64)
    for c in range(k):
        rows = np.flatnonzero(weights[:, c] > 0)
        if rows.size == 0:
            continue
        delta = np.asarray(block[rows], dtype=np.float64) - shift[c]
        w = weights[rows, c]
        out[0, 0, c] = w @ delta
        if squares:
            out[0, 1, c] = w @ (delta * delta)
    return out
