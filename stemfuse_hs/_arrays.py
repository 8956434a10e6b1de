"""Array plumbing shared by eager and lazy code paths.

Every algorithm works on dask arrays: an eager numpy input is wrapped
(without copying) and the result computed at the end. This keeps one code
path for both, and keeps memory bounded on large in-memory arrays because
dask streams over chunks of positions.
"""

import dask.array as da
import numpy as np

__all__ = [
    "as_dask",
    "is_lazy_array",
    "flat_positions",
    "find_nonfinite",
    "nonfinite_positions",
    "raise_if_nonfinite",
    "describe_positions",
    "available_memory",
    "check_memory",
    "compute_in_blocks",
    "format_bytes",
    "release_freed_memory",
]

#: Largest block :func:`compute_in_blocks` computes at once, in bytes.
COMPUTE_BLOCK_BYTES = 256 * 2**20

#: Target size of one chunk when wrapping an in-memory array, in bytes.
CHUNK_BYTES = 64 * 2**20


def is_lazy_array(array):
    """True for dask arrays."""
    return isinstance(array, da.Array)


def as_dask(array, signal_ndim):
    """Return ``array`` as a dask array chunked over positions only.

    Parameters
    ----------
    array : numpy.ndarray or dask.array.Array
        Data of shape ``(*navigation, *signal)``.
    signal_ndim : int
        Number of trailing signal dimensions, kept whole in every chunk.

    Returns
    -------
    dask.array.Array

    Examples
    --------
    >>> import numpy as np
    >>> as_dask(np.zeros((4, 5, 8, 8)), 2).chunks[-2:]
    ((8,), (8,))
    """
    if is_lazy_array(array):
        nav_ndim = array.ndim - signal_ndim
        chunks = array.chunks[:nav_ndim] + tuple((n,) for n in array.shape[nav_ndim:])
        if chunks != array.chunks:
            array = array.rechunk(chunks)
        return array
    array = np.asarray(array)
    nav_shape = array.shape[: array.ndim - signal_ndim]
    per_position = max(array[(0,) * len(nav_shape)].nbytes if nav_shape else array.nbytes, 1)
    positions = max(1, CHUNK_BYTES // per_position)
    # Split the slowest navigation axes first so every chunk is contiguous.
    chunks = _contiguous_chunks(nav_shape, positions)
    return da.from_array(array, chunks=chunks + tuple(array.shape[len(nav_shape):]))


def _contiguous_chunks(nav_shape, positions):
    if not nav_shape:
        return ()
    inner = int(np.prod(nav_shape[1:])) if len(nav_shape) > 1 else 1
    if inner <= positions:
        return (max(1, positions // inner),) + tuple(nav_shape[1:])
    return (1,) + _contiguous_chunks(nav_shape[1:], positions)


def flat_positions(array, signal_ndim):
    """Reshape ``(*navigation, *signal)`` to ``(n_positions, *signal)``."""
    nav_ndim = array.ndim - signal_ndim
    n = int(np.prod(array.shape[:nav_ndim])) if nav_ndim else 1
    return array.reshape((n,) + tuple(array.shape[nav_ndim:]))


def find_nonfinite(array, signal_ndim):
    """Navigation indices of positions holding NaN or inf (computes for dask).

    Returns
    -------
    numpy.ndarray
        Integer array of shape ``(n_bad, nav_ndim)``; empty when all finite.
    """
    if np.dtype(array.dtype).kind in "ui":
        return np.empty((0, array.ndim - signal_ndim), dtype=int)
    sig_axes = tuple(range(array.ndim - signal_ndim, array.ndim))
    bad = ~(da.isfinite(array) if is_lazy_array(array) else np.isfinite(array)).all(axis=sig_axes)
    if is_lazy_array(bad):
        bad = bad.compute()
    return np.argwhere(np.atleast_1d(bad))


def nonfinite_positions(array, signal_ndim):
    """Boolean navigation-shaped mask of the positions holding NaN or inf.

    Lazy for a dask ``array`` (compute it, one pass, small result); an
    in-memory array is streamed chunk by chunk so that no full-size boolean
    temporary is made. Integer data is never non-finite and is not read.
    """
    nav_shape = tuple(array.shape[: array.ndim - signal_ndim])
    if np.dtype(array.dtype).kind in "ui":
        return da.zeros(nav_shape, dtype=bool) if is_lazy_array(array) else np.zeros(nav_shape, dtype=bool)
    sig_axes = tuple(range(array.ndim - signal_ndim, array.ndim))
    if is_lazy_array(array):
        return ~da.isfinite(as_dask(array, signal_ndim)).all(axis=sig_axes)
    # In blocks of positions: wrapping the array in dask made a full copy.
    flat = array.reshape((-1,) + array.shape[array.ndim - signal_ndim :])
    per_position = max(1, int(np.prod(flat.shape[1:])) * flat.itemsize)
    step = max(1, CHUNK_BYTES // per_position)
    bad = np.zeros(flat.shape[0], dtype=bool)
    axes = tuple(range(1, flat.ndim))
    for start in range(0, flat.shape[0], step):
        bad[start : start + step] = ~np.isfinite(flat[start : start + step]).all(axis=axes)
    return bad.reshape(nav_shape)


def describe_positions(mask):
    """``"3 positions, first at navigation index (1, 2) (array order)"`` for a boolean mask."""
    where = np.argwhere(np.atleast_1d(np.asarray(mask)))
    if not where.size:
        return "no position"
    first = tuple(int(v) for v in where[0])
    plural = "position" if len(where) == 1 else "positions"
    return f"{len(where)} {plural}, first at navigation index {first} (array order)"


def raise_if_nonfinite(array, signal_ndim, what="data"):
    """Raise a ValueError saying how many positions hold NaN or inf, and where.

    Called after a reduction came out non-finite, so that clean data pays
    nothing for the check.
    """
    bad = find_nonfinite(array, signal_ndim)
    if bad.size:
        first = tuple(int(v) for v in bad[0])
        raise ValueError(
            f"{what} holds NaN or inf at {len(bad)} positions, first at navigation index {first} "
            "(array order); replace them, crop them away (e.g. with signal.inav) or pass "
            "nan_policy='exclude' to leave those positions out."
        )


def available_memory():
    """Bytes of memory available to a new allocation, or None if unknown.

    psutil comes with dask's dependencies but is imported here only when a
    check is made, and its absence only disables the checks.
    """
    try:
        import psutil
    except ImportError:  # pragma: no cover - dask[array] usually brings psutil
        return None
    try:
        return int(psutil.virtual_memory().available)
    except Exception:  # pragma: no cover - e.g. no /proc in a sandbox
        return None


def format_bytes(nbytes):
    """``1.5 GiB``-style size.

    Examples
    --------
    >>> format_bytes(3 * 2**30 // 2)
    '1.5 GiB'
    """
    value = float(nbytes)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.3g} {unit}" if unit != "B" else f"{int(value)} B"
        value /= 1024
    return f"{value:.3g} TiB"  # pragma: no cover


def check_memory(nbytes, what, advice):
    """Raise MemoryError before allocating ``nbytes`` when less is available.

    Being refused with a message beats being killed by the system's
    out-of-memory handler halfway through, which loses the session.

    Parameters
    ----------
    nbytes : int
        Estimated bytes the computation needs at once.
    what : str
        What needs it, e.g. ``"sdt_features: the features of this eager signal"``.
    advice : str
        What to do instead, e.g. load lazily.
    """
    available = available_memory()
    if available is None or nbytes <= available:
        return
    raise MemoryError(
        f"{what} need about {format_bytes(nbytes)} of memory, but only {format_bytes(available)} "
        f"is available. {advice}"
    )


#: What to do when eager data would not fit: the same words everywhere.
LAZY_ADVICE = (
    "Work lazily instead: load the data with hs.load(..., lazy=True) or call signal.as_lazy() "
    "(or pass a dask array), so that it is read chunk by chunk."
)


def compute_in_blocks(array, dtype=np.float32, max_bytes=None):
    """Compute a dask array into one new numpy array, blocks of leading-axis chunks at a time.

    ``array.compute()`` gathers the finished chunks and concatenates them
    into the result, holding the whole result twice at its end (the
    fused features of a 256 x 256 scan: 1.8 GB twice). Here each block of
    chunks is computed and copied into the preallocated result, so the peak
    is the result and one block. Works with any dask scheduler, a
    ``dask.distributed`` cluster included.

    Parameters
    ----------
    array : dask.array.Array
    dtype : numpy.dtype, default float32
    max_bytes : int, optional
        Largest block (default :data:`COMPUTE_BLOCK_BYTES`); at least one
        chunk of the leading axis is computed at a time.

    Returns
    -------
    numpy.ndarray

    Examples
    --------
    >>> x = da.arange(12, chunks=3).reshape(4, 3)
    >>> compute_in_blocks(x, max_bytes=16).tolist()
    [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0], [6.0, 7.0, 8.0], [9.0, 10.0, 11.0]]
    """
    max_bytes = COMPUTE_BLOCK_BYTES if max_bytes is None else max_bytes
    out = np.empty(array.shape, dtype=dtype)
    if out.size == 0:
        return out
    row_bytes = max(out.nbytes // max(array.shape[0], 1), 1)
    bounds = np.cumsum((0,) + tuple(array.chunks[0]))
    start = 0
    while start < array.shape[0]:
        # The farthest chunk boundary within max_bytes, at least one chunk on.
        first = int(np.searchsorted(bounds, start, side="right"))
        fitting = bounds[(bounds > start) & ((bounds - start) * row_bytes <= max_bytes)]
        stop = int(fitting[-1]) if fitting.size else int(bounds[first])
        out[start:stop] = array[start:stop].compute()
        start = stop
    release_freed_memory()
    return out


def release_freed_memory():
    """Hand memory freed by the blocks' computation back to the system (glibc's ``malloc_trim``).

    dask's worker threads free their chunks into per-thread heaps that glibc
    keeps: without this the resident memory stays that much higher while
    the result is used (UMAP's copies then come on top). A no-op where
    there is no glibc.
    """
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # pragma: no cover - not glibc
        pass


def one_thread_arithmetic():
    """Run the enclosed BLAS and OpenMP work on one thread, so it gives the same bits anywhere.

    A multithreaded BLAS splits sums by its thread count, and a last-digit
    change in a block's scale or a principal component can move a position
    between two clusters: the same seed must give the same map on a laptop
    and on a 64-core node. Only small work (statistics of a sample, the fit
    of a subsample) runs inside, so one thread costs little.

    Returns
    -------
    contextlib.AbstractContextManager
        threadpoolctl's limit of every BLAS and OpenMP pool to one thread.

    Examples
    --------
    >>> import numpy as np
    >>> with one_thread_arithmetic():
    ...     product = np.ones((3, 3)) @ np.ones(3)
    >>> product.tolist()
    [3.0, 3.0, 3.0]
    """
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1)
