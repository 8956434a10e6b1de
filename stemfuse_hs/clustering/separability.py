"""Separation statistics of clusters: density valleys and the share of variance between clusters.

The merge of :mod:`.cluster` asks :func:`separation` (built on
:func:`valley_depth`) whether two clusters have a density valley between
them; :func:`block_separation` (from the moments of :func:`label_moments`,
which add up over row blocks: :func:`separation_from_moments`) says how
much of each fused block's variance the final clusters explain. A leaf
module: numpy, scipy and the package's validation and compiled kernels only.
"""

import numpy as np

from .._kernels import weighted_moments
from .._validation import check_array, check_fraction, check_int

__all__ = ["block_separation", "label_moments", "separation", "separation_from_moments", "valley_depth"]


def separation(scores, labels, a, b, tube_quantile=0.9):
    """How deep the density valley between clusters ``a`` and ``b`` is.

    Distinct phases leave a valley in the density of positions along the
    segment between the two clusters' means; one phase cut in pieces (by a
    thickness gradient, say) does not. Positions of *other* clusters that
    lie inside a tube around the segment count too: thickness moves a
    phase's features along a curved path, and the pieces in between fill
    what would otherwise look like a valley between two far pieces. The
    tube's radius is the ``tube_quantile`` of the two clusters' own
    distances from the segment's line.

    Parameters
    ----------
    scores : numpy.ndarray
        ``(n, k)`` positions in a denoised feature space (a few principal
        components of the fused features).
    labels : numpy.ndarray
        ``(n,)`` cluster of every position (-1 noise).
    a, b : int
        The two clusters.
    tube_quantile : float, default 0.9

    Returns
    -------
    float
        In [0, 1]: about 0 without a valley, 1 when nothing lies between.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> two = np.vstack([rng.normal(0, 1, (300, 3)), rng.normal(0, 1, (300, 3)) + [8, 0, 0]])
    >>> separation(two, np.repeat([0, 1], 300), 0, 1) > 0.9
    True
    >>> line = np.c_[np.linspace(0, 30, 900), rng.normal(0, 1, (900, 2))]
    >>> pieces = np.repeat([0, 1, 2], 300)  # one continuum cut in three
    >>> separation(line, pieces, 0, 2) < 0.3
    True
    """
    scores = np.asarray(check_array("scores", scores, ndim=2), dtype=np.float64)
    labels = np.asarray(labels)
    if labels.shape != (scores.shape[0],):
        raise ValueError(f"labels has shape {labels.shape}, expected ({scores.shape[0]},) like scores' rows.")
    tube_quantile = check_fraction("tube_quantile", tube_quantile)
    in_a, in_b = labels == a, labels == b
    if in_a.sum() < 2 or in_b.sum() < 2:
        return 0.0
    start, stop = scores[in_a].mean(axis=0), scores[in_b].mean(axis=0)
    direction = stop - start
    length = np.linalg.norm(direction)
    if length == 0:
        return 0.0
    direction /= length
    along = (scores - start) @ direction
    across = np.linalg.norm((scores - start) - np.outer(along, direction), axis=1)
    radius = np.quantile(np.concatenate([across[in_a], across[in_b]]), tube_quantile)
    between = ~in_a & ~in_b & (across <= radius) & (along > 0) & (along < length)
    near_a = between & (along < length / 2)
    near_b = between & (along >= length / 2)
    return valley_depth(
        np.concatenate([along[in_a], along[near_a]]), np.concatenate([along[in_b], along[near_b]])
    )


def valley_depth(values_a, values_b, bins=40):
    """Depth of the density valley between two groups of 1-D values.

    ``1 - valley / lower_peak`` of a lightly smoothed histogram of the pooled
    values, the valley taken between the groups' medians: 0 without a
    valley, 1 when the groups do not touch.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> valley_depth(rng.normal(0, 1, 500), rng.normal(8, 1, 500)) > 0.9
    True
    """
    from scipy.ndimage import gaussian_filter1d

    bins = check_int("bins", bins, minimum=2)
    values_a, values_b = np.asarray(values_a, float).ravel(), np.asarray(values_b, float).ravel()
    if not (np.all(np.isfinite(values_a)) and np.all(np.isfinite(values_b))):
        raise ValueError("valley_depth: the values must be finite (no NaN or inf).")
    pooled = np.concatenate([values_a, values_b])
    if pooled.size < 4 or np.ptp(pooled) == 0:
        return 0.0
    counts, edges = np.histogram(pooled, bins=bins)
    density = gaussian_filter1d(counts.astype(np.float64), 1.0)
    centres = 0.5 * (edges[:-1] + edges[1:])
    low, high = sorted((np.median(values_a), np.median(values_b)))
    between = (centres >= low) & (centres <= high)
    if not between.any():
        return 0.0
    peak_low = density[centres <= low].max() if (centres <= low).any() else density[between][0]
    peak_high = density[centres >= high].max() if (centres >= high).any() else density[between][-1]
    lower_peak = min(peak_low, peak_high)
    if lower_peak <= 0:
        return 1.0
    return float(np.clip(1.0 - density[between].min() / lower_peak, 0.0, 1.0))


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
