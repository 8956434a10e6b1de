"""Pieces shared by every feature extractor: safe log scaling and
per-position normalisation."""

import dask.array as da
import numpy as np

from .._arrays import is_lazy_array

__all__ = ["NORMALIZATIONS", "safe_log", "position_totals", "normalize_by_total"]

#: Per-position normalisations every extractor accepts.
NORMALIZATIONS = (None, "total")


def safe_log(x):
    """``log(1 + max(x, 0))``: finite everywhere, 0 where there are no counts.

    The reference notebook used ``np.log(x, where=x != 0)`` without ``out=``,
    which leaves whatever was in memory at the zero pixels. ``log1p`` of the
    clipped counts is defined everywhere and keeps the ordering of counts.

    Examples
    --------
    >>> import numpy as np
    >>> safe_log(np.array([-3.0, 0.0, np.e - 1])).tolist()
    [0.0, 0.0, 1.0]
    """
    if is_lazy_array(x):
        return x.clip(min=0).map_blocks(_log1p_float32, dtype=np.float32)
    return np.log1p(np.clip(x, 0, None)).astype(np.float32, copy=False)


def _log1p_float32(block):
    return np.log1p(block).astype(np.float32, copy=False)


def position_totals(data, signal_ndim):
    """Total (non-negative) counts at every position, computed now.

    This is one pass over the data; the result is small (one number a
    position).
    """
    sig_axes = tuple(range(data.ndim - signal_ndim, data.ndim))
    return np.asarray(data.clip(min=0).sum(axis=sig_axes, dtype=np.float64).compute())


def normalize_by_total(data, signal_ndim, totals):
    """Scale every position to the scan's mean total counts.

    Thickness scales every count at a position by the same factor; dividing
    by the position's total removes that, and multiplying by the scan mean
    keeps values on the scale of counts, so that ``log1p`` compresses them
    as it would raw data. Positions without counts stay all zero.

    Parameters
    ----------
    data : dask.array.Array
        ``(*navigation, *signal)``, chunked over positions only.
    signal_ndim : int
        Number of signal dimensions.
    totals : numpy.ndarray
        ``navigation``-shaped totals, from :func:`position_totals`.

    Returns
    -------
    dask.array.Array
        float32, same shape and chunks.

    Examples
    --------
    >>> import dask.array as da, numpy as np
    >>> x = da.from_array(np.array([[1.0, 1.0], [3.0, 5.0]]), chunks=(1, 2))
    >>> normalize_by_total(x, 1, position_totals(x, 1)).compute().tolist()
    [[2.5, 2.5], [1.875, 3.125]]
    """
    target = float(totals.mean()) if totals.size else 1.0
    positive = totals > 0
    scale = np.where(positive, target / np.where(positive, totals, 1.0), 1.0).astype(np.float32)
    scale = da.from_array(scale, chunks=data.chunks[: data.ndim - signal_ndim])
    return (data * scale[(Ellipsis,) + (None,) * signal_ndim]).astype(np.float32)
