"""Preparation shared by the diffraction extractors other than SDT.

Validation of the array, detector binning, exclusion of non-finite
positions, normalisation by total counts, one pass for the mean pattern and
the direct beam, and the final compute of eager results. SDT keeps its own
single-pass version (it also needs the standard-deviation map).
"""

from dataclasses import dataclass

import dask
import dask.array as da
import numpy as np

from .._arrays import LAZY_ADVICE, as_dask, check_memory, is_lazy_array
from .._validation import check_choice, check_int, check_nan_policy, check_numeric_dtype, check_real
from ._common import NORMALIZATIONS, exclude_nonfinite, normalize_by_total
from .sdt import _as_real, _raise_nonfinite, bin_patterns, find_direct_beam

__all__ = ["Patterns", "prepare_patterns", "check_beam_centre", "locate_beam", "finish", "SCALES"]

#: How extractors scale intensities before they become features.
SCALES = ("log", "linear")


@dataclass
class Patterns:
    """Binned, normalised float32 patterns and what was learned on the way."""

    data: object
    mean_pattern: np.ndarray
    excluded: np.ndarray
    lazy: bool
    n_positions: int
    binning: int


def check_patterns(data, function):
    """Refuse anything that is not a scan of 2-D patterns; return (lazy, n_positions)."""
    if not hasattr(data, "dtype") or not hasattr(data, "ndim"):
        raise TypeError(f"{function}: data must be a numpy or dask array, got {type(data).__name__}.")
    check_numeric_dtype("data", data.dtype)
    if data.ndim < 3:
        raise ValueError(
            f"{function}: data must have at least one navigation and two signal dimensions, got shape {data.shape}."
        )
    n_positions = int(np.prod(data.shape[:-2]))
    if n_positions < 2:
        raise ValueError(
            f"{function}: data has a single position (shape {data.shape}); at least two are needed to "
            "measure how patterns vary across a scan."
        )
    return is_lazy_array(data), n_positions


def check_beam_centre(beam_centre, data=None):
    """``None`` or a (row, column) pair of finite numbers on the detector.

    With ``data`` (an array whose last two axes are the detector), the
    centre must lie on it: from -0.5 (the first pixel's outer edge) to
    ``size - 0.5`` (the last pixel's) along each axis. A centre off the
    detector excludes no pixel at all, silently.
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


def prepare_patterns(data, *, function, binning, normalize, nan_policy, extra=None):
    """Validate, bin, blank non-finite positions, normalise; compute the mean pattern.

    Parameters
    ----------
    data : numpy.ndarray or dask.array.Array
        ``(*navigation, H, W)`` counts.
    function : str
        Name used in error messages.
    binning : int
    normalize : {"total", None}
    nan_policy : {"raise", "exclude"}
    extra : callable, optional
        ``extra(patterns, reducer)`` returning a dict of further lazy
        reductions to compute in the same pass as the mean pattern.

    Returns
    -------
    Patterns, dict
        The prepared patterns and the computed extra reductions.
    """
    lazy, n_positions = check_patterns(data, function)
    binning = check_int("binning", binning, minimum=1)
    if binning > min(data.shape[-2:]):
        raise ValueError(
            f"binning={binning} is larger than the detector ({data.shape[-2]} x {data.shape[-1]} pixels)."
        )
    check_choice("normalize", normalize, NORMALIZATIONS)
    nan_policy = check_nan_policy(nan_policy)
    patterns = bin_patterns(as_dask(data, 2), binning)
    patterns, excluded, totals = exclude_nonfinite(patterns, 2, nan_policy, normalize == "total")
    excluding = bool(excluded.any())
    if normalize == "total":
        if not np.all(np.isfinite(totals)):
            _raise_nonfinite(data, 2)
        patterns = normalize_by_total(patterns, 2, totals, excluded)
    nav_axes = tuple(range(patterns.ndim - 2))
    mean = da.nanmean if excluding else da.mean
    reductions = {"mean": mean(patterns, axis=nav_axes, dtype=np.float64)}
    if extra is not None:
        reductions.update(extra(patterns, mean))
    computed = dict(zip(reductions, dask.compute(*reductions.values())))
    mean_pattern = computed.pop("mean")
    if not np.all(np.isfinite(mean_pattern)):
        _raise_nonfinite(data, 2)
    prepared = Patterns(
        data=patterns,
        mean_pattern=mean_pattern.astype(np.float32),
        excluded=excluded,
        lazy=lazy,
        n_positions=n_positions,
        binning=binning,
    )
    return prepared, computed


def locate_beam(mean_pattern, binning, beam_centre=None, beam_radius=None):
    """The direct beam on the binned grid: given (in unbinned pixels) or found.

    Returns
    -------
    centre : tuple of float
        (row, column) on the binned grid.
    radius : float
        On the binned grid.
    """
    half = (binning - 1) / 2
    found_centre, found_radius = find_direct_beam(mean_pattern)
    centre = found_centre if beam_centre is None else tuple((c - half) / binning for c in beam_centre)
    radius = found_radius if beam_radius is None else beam_radius / binning
    return centre, float(radius)


def unbinned(value, binning, position=False):
    """A binned-grid coordinate (``position=True``) or length in unbinned pixels."""
    half = (binning - 1) / 2
    return float(value * binning + half) if position else float(value * binning)


def finish(features, prepared, function):
    """Compute eager results (after a memory check); lazy ones stay lazy."""
    if prepared.lazy:
        return features
    n_features = int(features.shape[-1])
    check_memory(
        2 * prepared.n_positions * n_features * 4,
        f"{function}: the {prepared.n_positions} x {n_features} float32 features of this in-memory data",
        LAZY_ADVICE,
    )
    return np.asarray(features.compute(), dtype=np.float32)


def check_scale(scale):
    """``"log"`` or ``"linear"``."""
    return check_choice("scale", scale, SCALES)
