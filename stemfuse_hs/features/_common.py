"""Pieces shared by every feature extractor: safe log scaling,
per-position normalisation and the exclusion of non-finite positions."""

import dask
import dask.array as da
import numpy as np

from .._arrays import describe_positions, is_lazy_array, nonfinite_positions
from .._validation import check_int, check_numeric_dtype

__all__ = ["NORMALIZATIONS", "safe_log", "position_totals", "normalize_by_total", "exclude_nonfinite"]

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
    signal_ndim = check_int("signal_ndim", signal_ndim, minimum=0, maximum=data.ndim)
    sig_axes = tuple(range(data.ndim - signal_ndim, data.ndim))
    totals = data.clip(min=0).sum(axis=sig_axes, dtype=np.float64)
    return np.asarray(totals.compute() if is_lazy_array(totals) else totals)


def normalize_by_total(data, signal_ndim, totals, excluded=None):
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
    excluded : numpy.ndarray, optional
        ``navigation``-shaped boolean mask of positions left out of the scan
        mean (see :func:`exclude_nonfinite`).

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
    totals = np.asarray(totals, dtype=np.float64)
    nav_shape = tuple(data.shape[: data.ndim - signal_ndim])
    if totals.shape != nav_shape:
        raise ValueError(f"totals has shape {totals.shape}, expected the navigation shape {nav_shape}.")
    included = totals if excluded is None else totals[~np.asarray(excluded, dtype=bool)]
    target = float(included.mean()) if included.size else 1.0
    positive = totals > 0
    scale = np.where(positive, target / np.where(positive, totals, 1.0), 1.0).astype(np.float32)
    scale = da.from_array(scale, chunks=data.chunks[: data.ndim - signal_ndim])
    return (data * scale[(Ellipsis,) + (None,) * signal_ndim]).astype(np.float32)


def exclude_nonfinite(data, signal_ndim, nan_policy, need_totals):
    """Find positions holding NaN or inf and blank them, or leave that to the caller.

    With ``nan_policy="raise"`` nothing is read here: the callers detect
    non-finite values afterwards from their reductions, so clean data pays
    nothing. With ``"exclude"``, one pass (shared with the per-position
    totals when ``need_totals``) finds the positions; their values become NaN
    throughout, so that NaN-ignoring reductions leave them out of every
    statistic, and their totals 0.

    Parameters
    ----------
    data : dask.array.Array
        ``(*navigation, *signal)`` float32 working array.
    signal_ndim : int
    nan_policy : {"raise", "exclude"}
    need_totals : bool
        Also return :func:`position_totals` of the (blanked) data.

    Returns
    -------
    data : dask.array.Array
        With excluded positions all NaN.
    excluded : numpy.ndarray
        ``navigation``-shaped boolean mask (all False with ``"raise"``).
    totals : numpy.ndarray or None

    Examples
    --------
    >>> import dask.array as da, numpy as np
    >>> x = da.from_array(np.array([[1.0, 2.0], [np.nan, 1.0], [0.0, 3.0]]), chunks=(1, 2))
    >>> _, excluded, totals = exclude_nonfinite(x, 1, "exclude", True)
    >>> excluded.tolist(), totals.tolist()
    ([False, True, False], [3.0, 0.0, 3.0])
    """
    nav_shape = tuple(data.shape[: data.ndim - signal_ndim])
    sig_axes = tuple(range(data.ndim - signal_ndim, data.ndim))
    if nan_policy == "raise":
        totals = position_totals(data, signal_ndim) if need_totals else None
        return data, np.zeros(nav_shape, dtype=bool), totals
    bad = nonfinite_positions(data, signal_ndim)
    if need_totals:
        bad, totals = dask.compute(bad, data.clip(min=0).sum(axis=sig_axes, dtype=np.float64))
        totals = np.asarray(totals)
    else:
        bad, totals = np.asarray(bad.compute() if is_lazy_array(bad) else bad), None
    bad = np.asarray(bad, dtype=bool)
    n_left = int(bad.size - bad.sum())
    if n_left < 2:
        raise ValueError(
            f"data holds NaN or inf at {describe_positions(bad)}: {n_left} position(s) would be left, "
            "at least two are needed to measure variation across the scan."
        )
    if bad.any():
        totals = None if totals is None else np.where(bad, 0.0, totals)
        mask = da.from_array(bad, chunks=data.chunks[: len(nav_shape)])
        data = da.where(mask[(Ellipsis,) + (None,) * signal_ndim], np.float32(np.nan), data)
    return data, bad, totals


def neutral_fill(features, excluded, neutral):
    """Give excluded positions the ``neutral`` feature vector (lazy stays lazy)."""
    excluded = np.asarray(excluded, dtype=bool)
    if not excluded.any():
        return features
    neutral = np.asarray(neutral, dtype=np.float32)
    if is_lazy_array(features):
        mask = da.from_array(excluded, chunks=features.chunks[:-1])
        return da.where(mask[..., None], neutral, features).astype(np.float32)
    features = np.array(features, dtype=np.float32, copy=True)
    features[excluded] = neutral
    return features


def check_spectra(data, energies):
    """Validate ``(*navigation, channels)`` spectra and their energy axis.

    Returns
    -------
    numpy.ndarray
        ``energies`` as float64, one finite value per channel.

    Examples
    --------
    >>> import numpy as np
    >>> check_spectra(np.zeros((2, 3, 4)), [0, 1, 2, 3]).dtype
    dtype('float64')
    """
    if not hasattr(data, "dtype") or not hasattr(data, "ndim"):
        raise TypeError(f"data must be a numpy or dask array, got {type(data).__name__}.")
    check_numeric_dtype("data", data.dtype)
    if data.ndim < 2:
        raise ValueError(
            f"data must have at least one navigation and one signal dimension, got shape {data.shape}."
        )
    try:
        energies = np.asarray(energies, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"energies must be an array of numbers, got {type(energies).__name__}.") from None
    if energies.shape != (data.shape[-1],):
        raise ValueError(f"energies has shape {energies.shape}, expected ({data.shape[-1]},) to match the channels.")
    if not np.all(np.isfinite(energies)):
        raise ValueError("energies must be finite; the energy axis holds NaN or inf.")
    return energies
