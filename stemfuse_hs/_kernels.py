"""Compiled kernels for in-memory (eager) arrays.

Lazy data go through dask graphs; on an array already in memory the same
arithmetic runs here in compiled passes, parallel over threads. A pass
over the positions keeps ``PARTIAL_SUMS`` partial results over fixed shares
of them, summed at the end in a fixed order; :func:`weighted_moments`
shares out columns instead, each summed over the positions in order: the
results depend neither on scheduling nor on the number of threads.

Diffraction patterns (the eager path of :func:`stemfuse_hs.features.sdt.sdt`)
------------------------------------------------------------------------------
The dask graph of :func:`~stemfuse_hs.features.sdt.sdt` costs three passes
over the raw data, each converting it to float32 and binning it again; here:

1. :func:`bin_patterns_with_totals`: raw counts -> binned float32 buffer,
   each position's total, a finiteness flag, and (when the beam is to be
   found) the sum of the unbinned patterns for the hot-pixel check.
2. :func:`log_statistics`: in place, ``log1p`` of the normalised binned
   values (numpy's vectorised ``log1p`` on chunks, in a pool of threads),
   with the sums for the mean pattern and the standard-deviation map
   (float64, shifted by the first position's values so that the variance
   does not lose digits to cancellation).
3. :func:`gather_columns`: the selected pixels.

Spectra (the eager path of :func:`stemfuse_hs.features.variance.variance_threshold`)
----------------------------------------------------------------------------------
:func:`spectra_statistics`: in one pass, the per-channel mean and variance
of the normalised spectra and of their sums over a detector-resolution
window, and the window sums' noise term.

Neighbours
----------
:func:`pair_distances`: exact (float64) squared distances between rows and
their candidate neighbours, to re-rank candidates found with float32 matrix
products (:func:`stemfuse_hs.clustering.embed.nearest_neighbors`).

Rings
-----
:func:`ring_medians`: medians over the rings of a pattern (the round
background of :func:`stemfuse_hs.clustering.phases.radial_background`).

Cluster statistics
------------------
:func:`weighted_moments`: every cluster's weighted sums of the data and of
their squares in one pass (the eager path of
:func:`stemfuse_hs.clustering.means.cluster_statistics`).

numba is imported (and the kernels compiled, or loaded from numba's cache)
on first use only.
"""

import math
from collections.abc import Mapping

import numpy as np

__all__ = [
    "KERNEL_DTYPES",
    "bin_patterns_with_totals",
    "cache_umap_compilation",
    "cached_umap_dispatchers",
    "umap_pairwise_euclidean",
    "gather_columns",
    "import_umap",
    "log_statistics",
    "n_threads",
    "pair_distances",
    "ring_medians",
    "spectra_statistics",
    "weighted_moments",
]

_COMPILED = {}
#: Data dtypes the kernels take (numba has no half floats); others go through dask.
KERNEL_DTYPES = tuple(
    np.dtype(t) for t in ("uint8", "uint16", "uint32", "uint64", "int8", "int16", "int32", "int64", "float32", "float64")
)
#: Partial sums every pass keeps (each over a fixed share of the positions),
#: whatever the number of threads: the sums, and so the selected features,
#: do not depend on the machine or on numba's thread setting (UMAP changes
#: it while it runs).
PARTIAL_SUMS = 8
#: Most columns one thread sums at a time in :func:`weighted_moments` (4 kB
#: of a float32 row).
MOMENTS_BLOCK_COLUMNS = 1024
#: Rows converted to float32 at a time when :func:`weighted_moments` gets
#: float16 data.
MOMENTS_CHUNK_ROWS = 1024
#: Positions per chunk of :func:`log_statistics` (a few MB: stays in cache).
LOG_CHUNK_POSITIONS = 64


def n_threads():
    """Threads the kernels run on (numba's setting, e.g. ``NUMBA_NUM_THREADS``)."""
    import numba

    return int(numba.get_num_threads())


def _compiled():
    if _COMPILED:
        return _COMPILED
    import numba

    @numba.njit(parallel=True, cache=True)
    def bin_kernel(raw, binning, binned, totals, finite, raw_sums):
        n, height, width = raw.shape
        hb = height // binning
        wb = width // binning
        slabs = raw_sums.shape[0]
        per_slab = (n + slabs - 1) // slabs
        for slab in numba.prange(slabs):
            for p in range(slab * per_slab, min(n, (slab + 1) * per_slab)):
                total = 0.0
                ok = True
                for i in range(hb):
                    for j in range(wb):
                        if binning == 2:
                            # The default, unrolled: the generic loop is twice slower.
                            r, c = 2 * i, 2 * j
                            value = (
                                np.float32(raw[p, r, c])
                                + np.float32(raw[p, r, c + 1])
                                + np.float32(raw[p, r + 1, c])
                                + np.float32(raw[p, r + 1, c + 1])
                            )
                        else:
                            value = np.float32(0.0)
                            for di in range(binning):
                                for dj in range(binning):
                                    value += np.float32(raw[p, i * binning + di, j * binning + dj])
                        binned[p, i * wb + j] = value
                        if value > 0:
                            total += value
                        elif not math.isfinite(value):
                            ok = False
                totals[p] = total
                finite[p] = ok and math.isfinite(total)
                if raw_sums.shape[1] > 0:
                    for r in range(height):
                        for c in range(width):
                            raw_sums[slab, r, c] += raw[p, r, c]

    @numba.njit(nogil=True, cache=True)
    def scale_kernel(block, scale, linear, shift, sums, shifted_sums, shifted_squares):
        # In place: value = x * scale, clipped at 0 for the log; the sums
        # of the values (mean pattern) and, for a linear standard
        # deviation, of their shifted values and squares.
        zero = np.float32(0.0)
        for p in range(block.shape[0]):
            factor = scale[p]
            for j in range(block.shape[1]):
                value = block[p, j] * factor
                sums[j] += value
                if linear:
                    delta = np.float64(value) - shift[j]
                    shifted_sums[j] += delta
                    shifted_squares[j] += delta * delta
                block[p, j] = max(value, zero)

    @numba.njit(nogil=True, cache=True)
    def moments_of_rows(block, shift, shifted_sums, shifted_squares):
        for p in range(block.shape[0]):
            for j in range(block.shape[1]):
                delta = np.float64(block[p, j]) - shift[j]
                shifted_sums[j] += delta
                shifted_squares[j] += delta * delta

    @numba.njit(parallel=True, cache=True)
    def gather_kernel(values, columns, out):
        for p in numba.prange(values.shape[0]):
            for k in range(columns.size):
                out[p, k] = values[p, columns[k]]

    @numba.njit(parallel=True, cache=True)
    def moments_kernel(values, row_starts, clusters, row_weights, shift, sums, squares, with_shift, with_squares,
                       block_columns):
        n, m = values.shape
        n_blocks = (m + block_columns - 1) // block_columns
        for block in numba.prange(n_blocks):
            first = block * block_columns
            last = min(m, first + block_columns)
            for p in range(n):
                for e in range(row_starts[p], row_starts[p + 1]):
                    c = clusters[e]
                    w = row_weights[e]
                    for j in range(first, last):
                        delta = np.float64(values[p, j])
                        if with_shift:
                            delta -= shift[c, j]
                        sums[c, j] += w * delta
                        if with_squares:
                            squares[c, j] += w * delta * delta

    @numba.njit(parallel=True, cache=True)
    def pair_distance_kernel(points, rows, candidates, out):
        for a in numba.prange(rows.shape[0]):
            i = rows[a]
            for b in range(candidates.shape[1]):
                j = candidates[a, b]
                total = 0.0
                for t in range(points.shape[1]):
                    diff = np.float64(points[i, t]) - np.float64(points[j, t])
                    total += diff * diff
                out[a, b] = total

    @numba.njit(parallel=True, cache=True)
    def spectra_kernel(data, scale, width, shift, window_shift, sums, squares, window_sums, window_squares, noise):
        n, c = data.shape
        half = width // 2
        slabs = sums.shape[0]
        per_slab = (n + slabs - 1) // slabs
        for slab in numba.prange(slabs):
            values = np.empty(c, dtype=np.float32)
            for p in range(slab * per_slab, min(n, (slab + 1) * per_slab)):
                r = scale[p]
                for j in range(c):
                    values[j] = np.float32(data[p, j]) * r
                    delta = np.float64(values[j]) - shift[j]
                    sums[slab, j] += delta
                    squares[slab, j] += delta * delta
                # Moving sum over the window, zeros beyond the ends.
                running = 0.0
                for j in range(min(half, c)):
                    running += values[j]
                for j in range(c):
                    if j + half < c:
                        running += values[j + half]
                    if j - half - 1 >= 0:
                        running -= values[j - half - 1]
                    windowed = np.float32(running)
                    delta = np.float64(windowed) - window_shift[j]
                    window_sums[slab, j] += delta
                    window_squares[slab, j] += delta * delta
                    noise[slab, j] += np.float64(windowed * r)

    @numba.njit(cache=True)
    def ring_medians_kernel(values, ring, n_rings, out):
        n = ring.size
        counts = np.zeros(n_rings, dtype=np.int64)
        for i in range(n):
            counts[ring[i]] += 1
        starts = np.empty(n_rings, dtype=np.int64)
        total = 0
        for b in range(n_rings):
            starts[b] = total
            total += counts[b]
        filled = starts.copy()
        order = np.empty(n, dtype=np.int64)
        for i in range(n):
            order[filled[ring[i]]] = i
            filled[ring[i]] += 1
        segment = np.empty(counts.max(), dtype=np.float64)
        for row in range(values.shape[0]):
            j = 0
            for b in range(n_rings):
                c = counts[b]
                if c == 0:
                    continue
                for t in range(c):
                    segment[t] = values[row, order[starts[b] + t]]
                out[row, j] = np.median(segment[:c])
                j += 1

    _COMPILED.update(
        ring_medians=ring_medians_kernel,
        spectra=spectra_kernel,
        bin=bin_kernel,
        scale=scale_kernel,
        row_moments=moments_of_rows,
        gather=gather_kernel,
        moments=moments_kernel,
        pair_distances=pair_distance_kernel,
    )
    return _COMPILED


def bin_patterns_with_totals(patterns, binning, raw_sum=False):
    """Bin in-memory patterns into a float32 buffer, with each position's total.

    Parameters
    ----------
    patterns : numpy.ndarray
        ``(n, H, W)`` counts of any real dtype.
    binning : int
        Bin edge; edges that do not fill a bin are dropped.
    raw_sum : bool
        Also sum the unbinned patterns over positions.

    Returns
    -------
    binned : numpy.ndarray
        ``(n, (H // binning) * (W // binning))`` float32.
    totals : numpy.ndarray
        ``(n,)`` float64 sums of the positive binned values.
    finite : numpy.ndarray
        ``(n,)`` bool, False where a binned value is NaN or inf.
    raw_sum : numpy.ndarray or None
        ``(H, W)`` float64 sum over positions of the unbinned patterns.

    Examples
    --------
    >>> import numpy as np
    >>> binned, totals, finite, _ = bin_patterns_with_totals(np.ones((2, 4, 4), np.uint16), 2)
    >>> binned.tolist(), totals.tolist(), finite.tolist()
    ([[4.0, 4.0, 4.0, 4.0], [4.0, 4.0, 4.0, 4.0]], [16.0, 16.0], [True, True])
    """
    kernels = _compiled()
    patterns = np.ascontiguousarray(patterns)
    n, height, width = patterns.shape
    slabs = max(1, min(PARTIAL_SUMS, n))
    binned = np.empty((n, (height // binning) * (width // binning)), dtype=np.float32)
    totals = np.empty(n, dtype=np.float64)
    finite = np.empty(n, dtype=np.bool_)
    sums = np.zeros((slabs, height, width) if raw_sum else (slabs, 0, 0), dtype=np.float64)
    kernels["bin"](patterns, int(binning), binned, totals, finite, sums)
    return binned, totals, finite, (sums.sum(axis=0) if raw_sum else None)


def log_statistics(binned, scale, log_std=True):
    """``log1p`` of the scaled binned values in place, with their mean and standard deviation.

    Chunks of positions go to a pool of threads; each fixed share of the
    chunks has its own sums (so the result depends neither on scheduling
    nor on the number of threads). A compiled pass scales the values and
    adds them up, numpy's vectorised ``log1p`` (several times faster than a
    compiled scalar loop) takes the logarithm in place, and a second
    compiled pass adds up the logged values.

    Parameters
    ----------
    binned : numpy.ndarray
        ``(n, m)`` float32, overwritten with ``log1p(max(binned * scale, 0))``.
    scale : numpy.ndarray
        ``(n,)`` float32 factor of every position.
    log_std : bool
        Standard deviation of the logged values (True) or of the scaled ones.

    Returns
    -------
    mean, std : numpy.ndarray
        ``(m,)`` float64 mean of the scaled values and standard deviation
        (population, ``ddof=0``) of the logged or scaled ones.

    Examples
    --------
    >>> import numpy as np
    >>> values = np.array([[0.0, 1.0], [2.0, 3.0]], np.float32)
    >>> mean, std = log_statistics(values, np.ones(2, np.float32), log_std=False)
    >>> mean.tolist(), std.tolist(), np.round(values[1].astype(float), 4).tolist()
    ([1.0, 2.0], [1.0, 1.0], [1.0986, 1.3863])
    """
    from concurrent.futures import ThreadPoolExecutor

    kernels = _compiled()
    n, m = binned.shape
    scale = np.ascontiguousarray(scale, dtype=np.float32)
    first = binned[0] * scale[0]
    shift = (np.log1p(np.maximum(first, 0)) if log_std else first).astype(np.float64)
    chunks = [(a, min(a + LOG_CHUNK_POSITIONS, n)) for a in range(0, n, LOG_CHUNK_POSITIONS)]
    shares = max(1, min(PARTIAL_SUMS, len(chunks)))
    partial = np.zeros((shares, 3, m), dtype=np.float64)

    def work(share):
        sums, shifted_sums, shifted_squares = partial[share]
        for a, b in chunks[share::shares]:
            block = binned[a:b]
            kernels["scale"](block, scale[a:b], not log_std, shift, sums, shifted_sums, shifted_squares)
            np.log1p(block, out=block)
            if log_std:
                kernels["row_moments"](block, shift, shifted_sums, shifted_squares)

    with ThreadPoolExecutor(max(1, min(n_threads(), shares))) as pool:
        list(pool.map(work, range(shares)))
    sums, shifted_sums, shifted_squares = partial.sum(axis=0)
    shifted_mean = shifted_sums / n
    variance = np.maximum(shifted_squares / n - shifted_mean**2, 0.0)
    return sums / n, np.sqrt(variance)


def gather_columns(values, columns):
    """``values[:, columns]`` into a new float32 array, in parallel.

    Examples
    --------
    >>> import numpy as np
    >>> gather_columns(np.arange(6, dtype=np.float32).reshape(2, 3), np.array([2, 0])).tolist()
    [[2.0, 0.0], [5.0, 3.0]]
    """
    kernels = _compiled()
    out = np.empty((values.shape[0], len(columns)), dtype=np.float32)
    kernels["gather"](values, np.ascontiguousarray(columns, dtype=np.int64), out)
    return out


def weighted_moments(values, weights, shift=None, *, squares=True):
    """Weighted sums of ``values`` and of their squares for every column of ``weights``.

    Threads share out the columns of ``values``: each cluster's sum over
    the positions runs in one fixed order whatever the number of threads,
    and no partial sums are kept (a published scan's few hundred grains'
    mean patterns are 200 MB already).

    Parameters
    ----------
    values : numpy.ndarray
        ``(n, m)`` of any real dtype (accumulated in float64; float16,
        which the compiled kernel does not take, is converted to float32
        ``MOMENTS_CHUNK_ROWS`` rows at a time, never as a whole copy).
    weights : numpy.ndarray
        ``(n, k)`` float64; rows of zeros skip their position entirely, so
        that its NaN (an excluded position) cannot spoil the sums.
    shift : numpy.ndarray, optional
        ``(k, m)`` reference values subtracted before summing: the sums are
        then of ``values - shift[c]``. With a reference close to the
        cluster's values (one of its positions) the variance
        ``squares / total - (sums / total)**2`` keeps its digits: without
        it, counts near 4e9 (uint32 sums of frames) square to 1.6e19, where
        float64 resolves nothing finer than about 2000, far above a
        variance of ~100. Default: zero (plain sums).
    squares : bool, default True
        False: only the sums (the squares returned as None), in about
        half the arithmetic.

    Returns
    -------
    sums, squares : numpy.ndarray
        ``(k, m)`` float64: ``weights.T @ (values - shift)`` and
        ``weights.T @ (values - shift)**2`` (per cluster ``c``, ``shift[c]``).

    Examples
    --------
    >>> import numpy as np
    >>> sums, squares = weighted_moments(np.array([[1, 2], [3, 4]], np.uint16), np.array([[1.0], [0.5]]))
    >>> sums.tolist(), squares.tolist()
    ([[2.5, 4.0]], [[5.5, 12.0]])
    >>> sums, squares = weighted_moments(np.array([[1, 2], [3, 4]], np.uint16), np.array([[1.0], [1.0]]), np.array([[1.0, 2.0]]))
    >>> sums.tolist(), squares.tolist()
    ([[2.0, 2.0]], [[4.0, 4.0]])
    """
    kernels = _compiled()
    values = np.asarray(values)
    weights = np.ascontiguousarray(weights, dtype=np.float64)
    n, m = values.shape
    k = weights.shape[1]
    # Without a shift the kernel reads none: a (k, m) float64 row read for
    # every position doubles the memory traffic of a pattern's sums.
    with_shift = shift is not None
    shift = np.zeros((1, 1)) if shift is None else np.ascontiguousarray(shift, dtype=np.float64)
    if with_shift and shift.shape != (k, m):
        raise ValueError(f"shift must have shape {(k, m)} (clusters x columns), got {shift.shape}.")
    with_squares = bool(squares)
    sums = np.zeros((k, m), dtype=np.float64)
    squares = np.zeros((k, m) if with_squares else (1, 1), dtype=np.float64)
    # Each position's clusters of non-zero weight (a position weighs in one
    # or two of hundreds of grains).
    rows, clusters = np.nonzero(weights)
    row_starts = np.searchsorted(rows, np.arange(n + 1)).astype(np.int64)
    clusters = clusters.astype(np.int64)
    row_weights = weights[rows, clusters]
    # Enough column blocks for every thread, each a few kB of a row.
    block_columns = max(1, min(MOMENTS_BLOCK_COLUMNS, -(-m // max(1, 4 * n_threads()))))
    # float16: numba has no half floats. Converted a few rows at a time,
    # the kernel adds every chunk into the same sums.
    native = values.dtype in KERNEL_DTYPES
    chunk_rows = max(1, n if native else MOMENTS_CHUNK_ROWS)
    for start in range(0, n, chunk_rows):
        stop = min(n, start + chunk_rows)
        chunk = np.ascontiguousarray(values[start:stop], dtype=None if native else np.float32)
        kernels["moments"](
            chunk, row_starts[start : stop + 1] - row_starts[start], clusters[row_starts[start] : row_starts[stop]],
            row_weights[row_starts[start] : row_starts[stop]], shift, sums, squares, with_shift, with_squares,
            block_columns,
        )
    return sums, (squares if with_squares else None)


def pair_distances(points, rows, candidates):
    """Squared euclidean distances, in float64, from ``points[rows[a]]`` to ``points[candidates[a]]``.

    Parameters
    ----------
    points : numpy.ndarray
        ``(n, d)`` float32.
    rows : numpy.ndarray
        ``(m,)`` row indices.
    candidates : numpy.ndarray
        ``(m, c)`` row indices, ``c`` per row.

    Returns
    -------
    numpy.ndarray
        ``(m, c)`` float64.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.array([[0, 0], [3, 4], [1, 0]], np.float32)
    >>> pair_distances(x, np.array([0, 1]), np.array([[1, 2], [0, 2]])).tolist()
    [[25.0, 1.0], [25.0, 20.0]]
    """
    kernels = _compiled()
    rows = np.ascontiguousarray(rows, dtype=np.int64)
    candidates = np.ascontiguousarray(candidates, dtype=np.int64)
    out = np.empty(candidates.shape, dtype=np.float64)
    kernels["pair_distances"](np.ascontiguousarray(points, dtype=np.float32), rows, candidates, out)
    return out


def ring_medians(values, ring):
    """The median of each row of ``values`` over every non-empty ring, rings in ascending order.

    Each ring's values are gathered by a counting pass over ``ring`` and
    their median selected on its own (a few hundred values per ring): one
    sort of the whole pattern by (ring, value) cost four times as long and
    most of a spot search on a 256-pixel detector.

    Parameters
    ----------
    values : numpy.ndarray
        ``(k, n)`` or ``(n,)``: one or more quantities per pixel.
    ring : numpy.ndarray
        ``(n,)`` non-negative integer ring of every pixel.

    Returns
    -------
    numpy.ndarray
        ``(k, n_rings)`` float64 (``(n_rings,)`` for 1-D ``values``), ``n_rings``
        the number of distinct rings; an even count's median is the mean of
        its two middle values.

    Examples
    --------
    >>> import numpy as np
    >>> ring_medians(np.array([5.0, 1.0, 3.0, 7.0, 2.0]), np.array([2, 0, 2, 0, 2])).tolist()
    [4.0, 3.0]
    """
    values = np.asarray(values, dtype=np.float64)
    flat = values.ndim == 1
    values = np.ascontiguousarray(values.reshape(1, -1) if flat else values)
    ring = np.ascontiguousarray(ring, dtype=np.int64).ravel()
    if ring.size != values.shape[1]:
        raise ValueError(f"ring_medians: values has {values.shape[1]} pixels, ring {ring.size}.")
    if ring.size == 0:
        return np.zeros(0) if flat else np.zeros((values.shape[0], 0))
    if ring.min() < 0:
        raise ValueError("ring_medians: rings must be non-negative.")
    n_rings = int(ring.max()) + 1
    out = np.empty((values.shape[0], int(np.count_nonzero(np.bincount(ring, minlength=n_rings)))))
    _compiled()["ring_medians"](values, ring, n_rings, out)
    return out[0] if flat else out


def spectra_statistics(spectra, scale, width):
    """Per-channel statistics of scaled spectra and of their moving window sums, in one pass.

    Parameters
    ----------
    spectra : numpy.ndarray
        ``(n, c)`` counts of any real dtype (finite).
    scale : numpy.ndarray
        ``(n,)`` float32 factor of every spectrum (its normalisation).
    width : int
        Odd window width in channels (1: the channels themselves).

    Returns
    -------
    mean, variance : numpy.ndarray
        ``(c,)`` float64 over positions of the scaled counts
        ``float32(spectra) * scale`` (population variance).
    window_mean, window_variance : numpy.ndarray
        The same for their sums over ``width`` channels centred on each
        channel (zeros beyond the ends).
    window_noise : numpy.ndarray
        ``(c,)`` float64 mean of the window sums times ``scale``.

    Examples
    --------
    >>> import numpy as np
    >>> stats = spectra_statistics(np.array([[1, 2, 3], [3, 2, 1]], np.uint16), np.ones(2, np.float32), 3)
    >>> [s.tolist() for s in stats]
    [[2.0, 2.0, 2.0], [1.0, 0.0, 1.0], [4.0, 6.0, 4.0], [1.0, 0.0, 1.0], [4.0, 6.0, 4.0]]
    """
    kernels = _compiled()
    spectra = np.ascontiguousarray(spectra)
    scale = np.ascontiguousarray(scale, dtype=np.float32)
    width = int(width)
    n, c = spectra.shape
    slabs = max(1, min(PARTIAL_SUMS, n))
    # Shifted by the first spectrum's values: the variance then does not
    # lose digits to cancellation.
    shift = (spectra[0].astype(np.float32) * scale[0]).astype(np.float64)
    window_shift = np.zeros(c)
    if n:
        first = np.concatenate([np.zeros(width // 2), shift, np.zeros(width // 2)])
        window_shift = np.convolve(first, np.ones(width), mode="valid").astype(np.float32).astype(np.float64)
    sums, squares, window_sums, window_squares, noise = (np.zeros((slabs, c)) for _ in range(5))
    kernels["spectra"](spectra, scale, width, shift, window_shift, sums, squares, window_sums, window_squares, noise)
    out = []
    for total, square, offset in ((sums, squares, shift), (window_sums, window_squares, window_shift)):
        total, square = total.sum(axis=0) / n, square.sum(axis=0) / n
        out += [offset + total, np.maximum(square - total**2, 0.0)]
    return out[0], out[1], out[2], out[3], noise.sum(axis=0) / n


# --------------------------------------------------------------------------
# umap-learn's numba functions, compiled once per installation
# --------------------------------------------------------------------------
#: The modules umap-learn imports from pynndescent (``umap/umap_.py``).
PYNNDESCENT_MODULES = ("pynndescent", "pynndescent.distances", "pynndescent.sparse")
_PYNNDESCENT_NAMES = (
    ("pynndescent", "NNDescent", "NNDescent"),
    ("pynndescent.distances", "named_distances", "pynn_named_distances"),
    ("pynndescent.sparse", "sparse_named_distances", "pynn_sparse_named_distances"),
)


def _real_pynndescent():
    """Import pynndescent and point umap-learn's names at it (what the stand-ins defer)."""
    import importlib

    import umap.umap_

    for module_name, name, alias in _PYNNDESCENT_NAMES:
        setattr(umap.umap_, alias, getattr(importlib.import_module(module_name), name))
    return umap.umap_


class _DeferredClass(type):
    """Metaclass of the stand-in for ``pynndescent.NNDescent``: the first use imports the real class."""

    def __call__(cls, *args, **kwargs):
        return _real_pynndescent().NNDescent(*args, **kwargs)

    def __instancecheck__(cls, instance):
        # umap-learn asks this of every fit's precomputed neighbours: until
        # pynndescent is imported, no NNDescent can exist to be one.
        import sys

        real = getattr(sys.modules.get("pynndescent"), "NNDescent", None)
        return real is not None and real is not cls and isinstance(instance, real)


class _DeferredNNDescent(metaclass=_DeferredClass):
    """Stands for ``pynndescent.NNDescent`` in ``umap.umap_`` until first used."""


class _DeferredMapping(Mapping):
    """Stands for one of pynndescent's metric dictionaries in ``umap.umap_`` until first read."""

    def __init__(self, alias):
        self._alias = alias

    def _real(self):
        return getattr(_real_pynndescent(), self._alias)

    def __getitem__(self, key):
        return self._real()[key]

    def __iter__(self):
        return iter(self._real())

    def __len__(self):
        return len(self._real())

    def __contains__(self, key):
        # umap-learn asks this of every fit's metric, also when given the
        # neighbours; pynndescent names every metric stemfuse_hs offers.
        from .cluster_parameters import METRICS

        return key in METRICS or key in self._real()


def import_umap():
    """``import umap``, deferring pynndescent until umap-learn uses it; the one place umap is imported.

    umap-learn imports pynndescent (approximate nearest neighbours) when it
    is imported; pynndescent compiles its random-projection trees then,
    with explicit signatures: 21.7 of the 24.4 s a first ``import umap``
    took on an AMD EPYC with numba's cache empty (1.5 s of a warm import).
    stemfuse_hs hands UMAP exact neighbours (:func:`stemfuse_hs.clustering.embed.fit_umap`)
    and needs pynndescent only for a searchable model (the subsample path of
    large scans) or a metric umap-learn lacks. While umap-learn is
    imported, stand-ins take the place of the three names it imports from
    pynndescent; the first call, ``isinstance`` check or lookup through one
    of them imports pynndescent and puts the real names in ``umap.umap_``.
    Nothing else changes: the stand-ins leave ``sys.modules`` once umap is
    imported, and where umap or pynndescent was imported before (by the
    user), this is a plain ``import umap``.

    Returns
    -------
    module
        ``umap``.

    Examples
    --------
    >>> umap = import_umap()
    >>> umap.UMAP.__name__
    'UMAP'
    """
    import sys
    import types

    if "umap.umap_" in sys.modules or any(name in sys.modules for name in PYNNDESCENT_MODULES):
        import umap

        return umap
    stand_ins = {name: types.ModuleType(name) for name in PYNNDESCENT_MODULES}
    stand_ins["pynndescent"].distances = stand_ins["pynndescent.distances"]
    stand_ins["pynndescent"].sparse = stand_ins["pynndescent.sparse"]
    for module_name, name, alias in _PYNNDESCENT_NAMES:
        value = _DeferredNNDescent if name == "NNDescent" else _DeferredMapping(alias)
        setattr(stand_ins[module_name], name, value)
    sys.modules.update(stand_ins)
    try:
        import umap
    finally:
        for name, module in stand_ins.items():
            if sys.modules.get(name) is module:
                del sys.modules[name]
    return umap


#: umap-learn functions compiled without ``cache=True`` (module, name): in
#: every fresh process numba compiled them again, about 25 s of one core on
#: a tiny scan (most of the ``stemfuse demo``). :func:`cache_umap_compilation`
#: replaces each by the same Python function compiled with the same options
#: plus ``cache=True``: the same machine code, so the same embedding, but
#: compiled once and then loaded from numba's cache (next to umap-learn's
#: sources, or the user-wide cache or ``NUMBA_CACHE_DIR`` where those are
#: not writable).
UMAP_UNCACHED = (
    ("umap.umap_", "fast_knn_indices"),
    ("umap.umap_", "smooth_knn_dist"),
    ("umap.umap_", "compute_membership_strengths"),
    ("umap.layouts", "_nb_optimize_layout_euclidean_single_epoch"),
    ("umap.layouts", "_nb_optimize_layout_euclidean_single_epoch_parallel"),
)
_UMAP_CACHED = {}
_umap_euclidean = None


def _njit_cached(py_func, **options):
    """``numba.njit(py_func, **options)`` with ``cache=True``, made once per function and options.

    numba's cache index does not tell the options apart (only the bytecode
    and the signature), so each set of options compiles a copy of the
    function under a name of its own: a parallel and a serial version never
    share an entry. Falls back to no caching where numba cannot cache.
    """
    import types

    import numba

    key = (py_func, tuple(sorted(options.items())))
    if key not in _UMAP_CACHED:
        flags = "_".join(f"{k}{int(v) if isinstance(v, bool) else ''}" for k, v in sorted(options.items()) if k != "locals")
        copy = types.FunctionType(
            py_func.__code__, py_func.__globals__, py_func.__name__, py_func.__defaults__, py_func.__closure__
        )
        copy.__qualname__ = f"{py_func.__qualname__}__stemfuse_{flags}"
        copy.__doc__ = py_func.__doc__
        copy.__kwdefaults__ = py_func.__kwdefaults__
        try:
            _UMAP_CACHED[key] = numba.njit(cache=True, **options)(copy)
        except RuntimeError:  # no writable cache location: compile in memory, as umap-learn does
            _UMAP_CACHED[key] = numba.njit(**options)(py_func)
    return _UMAP_CACHED[key]


class _CachingNumba:
    """``numba`` as umap's layout driver sees it: ``njit`` caches (see :func:`_njit_cached`)."""

    def __getattr__(self, name):
        import numba

        return getattr(numba, name)

    @staticmethod
    def njit(*args, **options):
        if len(args) == 1 and callable(args[0]):
            options.pop("cache", None)
            return _njit_cached(args[0], **options)
        import numba

        return numba.njit(*args, **options)


def cache_umap_compilation():
    """Make umap-learn's uncached numba functions cache their compilation (idempotent).

    Replaces the functions named in ``UMAP_UNCACHED`` in their modules by
    cached compilations of the same Python functions with the same options,
    and ``umap.umap_.optimize_layout_euclidean`` (which compiles densMAP's
    per-epoch density function anew on every call) by the same code whose
    ``numba.njit`` caches. Returns the names replaced; anything umap-learn
    does not have (another version) is left as it is.

    Examples
    --------
    >>> names = cache_umap_compilation()
    >>> cache_umap_compilation() == names
    True
    """
    import importlib
    import types

    if "replaced" in _UMAP_CACHED:
        return _UMAP_CACHED["replaced"]
    import_umap()
    replaced = []
    for module_name, name in UMAP_UNCACHED:
        module = importlib.import_module(module_name)
        dispatcher = getattr(module, name, None)
        py_func = getattr(dispatcher, "py_func", None)
        options = dict(getattr(dispatcher, "targetoptions", {}))
        if py_func is None or options.get("cache"):
            continue
        options.pop("nopython", None)
        options = {k: v for k, v in options.items() if v is not None}
        setattr(module, name, _njit_cached(py_func, **options))
        replaced.append(f"{module_name}.{name}")
    umap_, layouts = importlib.import_module("umap.umap_"), importlib.import_module("umap.layouts")
    driver = getattr(umap_, "optimize_layout_euclidean", None)
    if driver is getattr(layouts, "optimize_layout_euclidean", None) and isinstance(driver, types.FunctionType):
        scope = dict(driver.__globals__, numba=_CachingNumba())
        copy = types.FunctionType(driver.__code__, scope, driver.__name__, driver.__defaults__, driver.__closure__)
        copy.__kwdefaults__ = driver.__kwdefaults__
        copy.__doc__ = driver.__doc__
        copy.__qualname__ = driver.__qualname__
        copy.__module__ = driver.__module__
        # The copy's module-level names are a snapshot: point it at the cached epoch functions.
        for module_name, name in UMAP_UNCACHED:
            if module_name == "umap.layouts" and name in scope:
                scope[name] = getattr(layouts, name)
        umap_.optimize_layout_euclidean = _layout_switch(copy)
        replaced.append("umap.umap_.optimize_layout_euclidean")
    _UMAP_CACHED["replaced"] = tuple(replaced)
    return _UMAP_CACHED["replaced"]


def _layout_switch(umap_layout):
    """umap-learn's layout driver, or the parallel layout for fits inside ``parallel_layout``."""
    import functools

    @functools.wraps(umap_layout)
    def optimize_layout_euclidean(head_embedding, tail_embedding, head, tail, n_epochs, *args, **kwargs):
        from .clustering.layout import fits_in_parallel
        from .clustering.layout import optimize_layout_euclidean as parallel_layout

        threads = fits_in_parallel()
        if threads is not None and head_embedding is tail_embedding and kwargs.get("move_other"):
            if not isinstance(n_epochs, list):
                kwargs.pop("parallel", None)
                return parallel_layout(
                    head_embedding, tail_embedding, head, tail, n_epochs, *args, n_threads=threads, **kwargs
                )
        return umap_layout(head_embedding, tail_embedding, head, tail, n_epochs, *args, **kwargs)

    return optimize_layout_euclidean


def cached_umap_dispatchers():
    """The numba functions of umap-learn's fits: those :func:`cache_umap_compilation` made, and the parallel layout's.

    The first, compiled or not, with the pairwise kernel; the parallel
    layout's (:mod:`stemfuse_hs.clustering.layout`) once compiled.

    Returns
    -------
    list
        numba dispatchers with ``cache=True``; empty before any was made.
    """
    import sys

    dispatchers = [v for v in _UMAP_CACHED.values() if hasattr(v, "py_func") and hasattr(v, "signatures")]
    layout = sys.modules.get("stemfuse_hs.clustering.layout")
    if layout is not None:  # the parallel layout's kernels, once a fit used them
        dispatchers += [kernel for kernel in layout.compiled_kernels() if kernel.signatures]
    return dispatchers


def _umap_pairwise_kernel():
    global _umap_euclidean
    if "pairwise" not in _UMAP_CACHED:
        import numba

        euclidean = import_umap().distances.euclidean

        # A module global, not a closure variable: numba's cache index hashes
        # a closure's pickled contents, which differ between processes.
        _umap_euclidean = euclidean

        @numba.njit(parallel=True, cache=True)
        def pairwise(points, out):
            n = points.shape[0]
            for i in numba.prange(n):
                out[i, i] = 0.0
                for j in range(i + 1, n):
                    out[i, j] = _umap_euclidean(points[i], points[j])
            for i in numba.prange(n):
                for j in range(i):
                    out[i, j] = out[j, i]

        _UMAP_CACHED["pairwise"] = pairwise
    return _UMAP_CACHED["pairwise"]


def umap_pairwise_euclidean(points):
    """Every pairwise euclidean distance exactly as umap-learn computes them below 4,096 points.

    There umap-learn gives scikit-learn's ``pairwise_distances`` its own
    numba ``euclidean`` as a Python callable: one Python call per pair
    (1.2 million on a tiny 32 x 48 scan, seconds). Here the same compiled
    function runs over the pairs in one compiled loop, into float32 as
    scikit-learn stores it (its output dtype for float32 input): the same
    matrix, bit for bit (tests/test_reproducibility_threads.py).

    Parameters
    ----------
    points : numpy.ndarray
        ``(n, d)`` float32.

    Returns
    -------
    numpy.ndarray
        ``(n, n)`` float32, symmetric, zero diagonal.

    Examples
    --------
    >>> import numpy as np
    >>> umap_pairwise_euclidean(np.array([[0, 0], [3, 4]], np.float32)).tolist()
    [[0.0, 5.0], [5.0, 0.0]]
    """
    points = np.ascontiguousarray(points, dtype=np.float32)
    out = np.empty((points.shape[0], points.shape[0]), dtype=np.float32)
    _umap_pairwise_kernel()(points, out)
    return out
