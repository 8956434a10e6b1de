"""Pieces shared by every feature extractor: the prologue (validation of
the data array, the detector binning and the beam), safe log scaling,
per-position normalisation, the exclusion of non-finite positions, and the
epilogue (computing eager results, recording the parameters)."""

import dask
import dask.array as da
import numpy as np

from .._arrays import LAZY_ADVICE, check_memory, describe_positions, is_lazy_array, nonfinite_positions, raise_if_nonfinite
from .._validation import check_int, check_numeric_dtype, check_real

__all__ = [
    "NORMALIZATIONS",
    "check_data",
    "check_positions",
    "check_binning",
    "check_beam",
    "check_beam_centre",
    "unbinned",
    "raise_nonfinite",
    "safe_log",
    "position_totals",
    "normalize_by_total",
    "exclude_nonfinite",
    "blank_and_normalize",
    "neutral_fill",
    "check_spectra",
    "compute_features",
    "provenance",
    "beam_provenance",
]

#: Per-position normalisations every extractor accepts.
NORMALIZATIONS = (None, "total")

_SIGNAL_DIMENSIONS = {1: "one signal dimension", 2: "two signal dimensions"}


def _prefix(function):
    return f"{function}: " if function else ""


def check_data(data, signal_ndim, function=None):
    """Refuse what is not a numeric numpy or dask array of a scan of ``signal_ndim``-D signals.

    Parameters
    ----------
    data : object
    signal_ndim : {1, 2}
        Spectra (1) or diffraction patterns (2).
    function : str, optional
        Prefix of the messages ("radial: ..."); none by default.

    Returns
    -------
    bool
        Whether ``data`` is lazy (dask).

    Examples
    --------
    >>> import numpy as np
    >>> check_data(np.zeros((2, 3, 4)), 1)
    False
    >>> check_data(np.zeros((8, 8)), 2, "radial")
    Traceback (most recent call last):
    ...
    ValueError: radial: data must have at least one navigation and two signal dimensions, got shape (8, 8).
    """
    if not hasattr(data, "dtype") or not hasattr(data, "ndim"):
        raise TypeError(f"{_prefix(function)}data must be a numpy or dask array, got {type(data).__name__}.")
    check_numeric_dtype("data", data.dtype)
    if data.ndim < signal_ndim + 1:
        raise ValueError(
            f"{_prefix(function)}data must have at least one navigation and {_SIGNAL_DIMENSIONS[signal_ndim]}, "
            f"got shape {data.shape}."
        )
    return is_lazy_array(data)


def check_positions(data, signal_ndim, varying, function=None):
    """The number of scan positions of ``data``, refused below two.

    Every extractor measures how something (``varying``: "pixels",
    "channels", ...) varies across the scan, which one position cannot show.

    Examples
    --------
    >>> import numpy as np
    >>> check_positions(np.zeros((2, 3, 4)), 1, "channels")
    6
    >>> check_positions(np.zeros((1, 4)), 1, "channels")
    Traceback (most recent call last):
    ...
    ValueError: data has a single position (shape (1, 4)); at least two are needed to measure how channels vary across a scan.
    """
    n_positions = int(np.prod(data.shape[: data.ndim - signal_ndim]))
    if n_positions < 2:
        raise ValueError(
            f"{_prefix(function)}data has a single position (shape {data.shape}); at least two are needed to "
            f"measure how {varying} vary across a scan."
        )
    return n_positions


def check_binning(binning, data):
    """``binning`` as an int of at least 1 that fits the detector (the last two axes of ``data``).

    Examples
    --------
    >>> import numpy as np
    >>> check_binning(2, np.zeros((2, 8, 8)))
    2
    >>> check_binning(9, np.zeros((2, 8, 8)))
    Traceback (most recent call last):
    ...
    ValueError: binning=9 is larger than the detector (8 x 8 pixels).
    """
    binning = check_int("binning", binning, minimum=1)
    if binning > min(data.shape[-2:]):
        raise ValueError(
            f"binning={binning} is larger than the detector ({data.shape[-2]} x {data.shape[-1]} pixels)."
        )
    return binning


def _as_real(value, name):
    try:
        return float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must hold two real numbers, got {value!r}.") from None


def check_beam_centre(beam_centre, data=None):
    """``None`` or a (row, column) pair of finite numbers on the detector.

    With ``data`` (an array whose last two axes are the detector), the
    centre must lie on it: from -0.5 (the first pixel's outer edge) to
    ``size - 0.5`` (the last pixel's) along each axis. A centre off the
    detector excludes no pixel at all, silently.

    Examples
    --------
    >>> import numpy as np
    >>> check_beam_centre((3, 4.5), np.zeros((2, 8, 8)))
    (3.0, 4.5)
    """
    if beam_centre is None:
        return None
    if isinstance(beam_centre, str) or np.ndim(beam_centre) != 1 or len(beam_centre) != 2:
        raise ValueError(f"beam_centre must be (row, column), got {beam_centre!r}.")
    centre = tuple(check_real("beam_centre", _as_real(c, "beam_centre")) for c in beam_centre)
    shape = getattr(data, "shape", None)
    if shape is not None and len(shape) >= 2:
        height, width = int(shape[-2]), int(shape[-1])
        if not all(-0.5 <= c <= size - 0.5 for c, size in zip(centre, (height, width))):
            raise ValueError(
                f"beam_centre={beam_centre!r} is off the {height} x {width} pixel detector: "
                f"row must be in [-0.5, {height - 0.5:g}] and column in [-0.5, {width - 0.5:g}] "
                "(unbinned pixels)."
            )
    return centre


def check_beam(beam_centre, beam_radius, data):
    """The direct-beam options every diffraction extractor takes, checked.

    Returns
    -------
    beam_centre : tuple of float or None
        See :func:`check_beam_centre`.
    beam_radius : float or None
        Non-negative (0: exclude nothing), in unbinned pixels.

    Examples
    --------
    >>> import numpy as np
    >>> check_beam(None, 2, np.zeros((2, 8, 8)))
    (None, 2.0)
    """
    beam_centre = check_beam_centre(beam_centre, data)
    if beam_radius is not None:
        beam_radius = check_real("beam_radius", beam_radius, minimum=0)
    return beam_centre, beam_radius


def unbinned(value, binning, position=False):
    """A binned-grid coordinate (``position=True``) or length in unbinned pixels.

    Binned pixel ``j`` spans unbinned pixels ``j*b .. j*b + b - 1``: its
    centre is at ``j*b + (b - 1) / 2``.

    Examples
    --------
    >>> unbinned(1.0, 2, position=True), unbinned(1.0, 2)
    (2.5, 2.0)
    """
    half = (binning - 1) / 2
    return float(value * binning + half) if position else float(value * binning)


def raise_nonfinite(data, signal_ndim):
    """Name the non-finite positions of ``data``; else say that values overflowed float32.

    Called when a statistic of the float32 working array came out NaN or
    infinite: either the data hold NaN/inf (refused, with where), or finite
    values beyond float32's range became infinite there.
    """
    raise_if_nonfinite(data, signal_ndim)
    raise ValueError(
        "data holds values beyond float32's range (about 3.4e38), which become infinite in the "
        "float32 working arrays; rescale the data first."
    )


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


def blank_and_normalize(working, data, signal_ndim, normalize, nan_policy):
    """Blank the non-finite positions of the float32 ``working`` array, then normalise by total counts.

    The shared first step of every extractor's dask path:
    :func:`exclude_nonfinite` (one pass, shared with the totals), then,
    with ``normalize="total"``, :func:`normalize_by_total`. Totals that are
    not finite (NaN/inf kept by ``"raise"``, or float32 overflow) are
    refused with :func:`raise_nonfinite`, naming the positions of ``data``.

    Parameters
    ----------
    working : dask.array.Array
        ``(*navigation, *signal)`` float32 working copy of ``data`` (binned for patterns).
    data : numpy.ndarray or dask.array.Array
        The caller's input, for the messages.
    signal_ndim : int
    normalize : {"total", None}
    nan_policy : {"raise", "exclude"}

    Returns
    -------
    working : dask.array.Array
    excluded : numpy.ndarray
        ``navigation``-shaped boolean mask.
    totals : numpy.ndarray or None
        Per-position totals (None without normalisation).

    Examples
    --------
    >>> import dask.array as da, numpy as np
    >>> x = da.from_array(np.array([[1.0, 1.0], [3.0, 5.0]], np.float32), chunks=(1, 2))
    >>> normalized, excluded, _ = blank_and_normalize(x, x, 1, "total", "raise")
    >>> normalized.compute().tolist(), excluded.tolist()
    ([[2.5, 2.5], [1.875, 3.125]], [False, False])
    """
    working, excluded, totals = exclude_nonfinite(working, signal_ndim, nan_policy, normalize == "total")
    if normalize == "total":
        if not np.all(np.isfinite(totals)):
            raise_nonfinite(data, signal_ndim)
        working = normalize_by_total(working, signal_ndim, totals, excluded)
    return working, excluded, totals


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
    check_data(data, 1)
    try:
        energies = np.asarray(energies, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"energies must be an array of numbers, got {type(energies).__name__}.") from None
    if energies.shape != (data.shape[-1],):
        raise ValueError(f"energies has shape {energies.shape}, expected ({data.shape[-1]},) to match the channels.")
    if not np.all(np.isfinite(energies)):
        raise ValueError("energies must be finite; the energy axis holds NaN or inf.")
    return energies


def compute_features(features, lazy, n_positions, function):
    """The epilogue of the extractors: eager results computed (after a memory check), lazy ones left lazy.

    Parameters
    ----------
    features : dask.array.Array
        ``(*navigation, n_features)``.
    lazy : bool
        Whether the input was lazy.
    n_positions : int
    function : str
        Names the extractor in the MemoryError.

    Returns
    -------
    numpy.ndarray or dask.array.Array
        float32.

    Examples
    --------
    >>> import dask.array as da
    >>> compute_features(da.ones((2, 3, 4)), False, 6, "demo").dtype
    dtype('float32')
    """
    if lazy:
        return features
    n_features = int(features.shape[-1])
    check_memory(
        2 * n_positions * n_features * 4,
        f"{function}: the {n_positions} x {n_features} float32 features of this in-memory data",
        LAZY_ADVICE,
    )
    return np.asarray(features.compute(), dtype=np.float32)


def beam_provenance(centre, radius, binning, beam_centre):
    """The direct-beam entries of an extractor's parameters, in unbinned pixels.

    ``centre`` and ``radius`` are on the binned grid; ``beam_centre`` is
    what the caller gave (None: the centre was found).

    Examples
    --------
    >>> beam_provenance((1.0, 2.0), 1.5, 2, None)
    {'beam_centre': [2.5, 4.5], 'beam_radius': 3.0, 'beam_centre_found': True}
    """
    return {
        "beam_centre": [unbinned(c, binning, True) for c in centre],
        "beam_radius": unbinned(radius, binning),
        "beam_centre_found": beam_centre is None,
    }


def provenance(own, *, normalize, n_features, nan_policy, beam=None):
    """An extractor's ``parameters``: its ``own`` entries, then those every extractor records.

    The shared entries, in this order: ``normalize`` ("none" for None),
    the ``beam`` entries (:func:`beam_provenance`) when given,
    ``n_features`` and ``nan_policy``.

    Examples
    --------
    >>> provenance({"binning": 2}, normalize=None, n_features=3, nan_policy="raise")
    {'binning': 2, 'normalize': 'none', 'n_features': 3, 'nan_policy': 'raise'}
    """
    return {
        **own,
        "normalize": "none" if normalize is None else normalize,
        **(beam or {}),
        "n_features": int(n_features),
        "nan_policy": nan_policy,
    }
