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

from .._arrays import as_dask
from .._validation import check_choice, check_nan_policy
from ._common import (
    NORMALIZATIONS,
    check_binning,
    check_data,
    check_positions,
    compute_features,
    blank_and_normalize,
    raise_nonfinite,
)
from .sdt import bin_patterns, find_direct_beam

__all__ = ["Patterns", "prepare_patterns", "check_patterns", "locate_beam", "finish", "check_scale", "SCALES"]

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
    lazy = check_data(data, 2, function)
    return lazy, check_positions(data, 2, "patterns", function)


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
    binning = check_binning(binning, data)
    check_choice("normalize", normalize, NORMALIZATIONS)
    nan_policy = check_nan_policy(nan_policy)
    patterns = bin_patterns(as_dask(data, 2), binning)
    patterns, excluded, _ = blank_and_normalize(patterns, data, 2, normalize, nan_policy)
    excluding = bool(excluded.any())
    nav_axes = tuple(range(patterns.ndim - 2))
    mean = da.nanmean if excluding else da.mean
    reductions = {"mean": mean(patterns, axis=nav_axes, dtype=np.float64)}
    if extra is not None:
        reductions.update(extra(patterns, mean))
    computed = dict(zip(reductions, dask.compute(*reductions.values())))
    mean_pattern = computed.pop("mean")
    if not np.all(np.isfinite(mean_pattern)):
        raise_nonfinite(data, 2)
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


def finish(features, prepared, function):
    """Compute eager results (after a memory check); lazy ones stay lazy."""
    return compute_features(features, prepared.lazy, prepared.n_positions, function)


def check_scale(scale):
    """``"log"`` or ``"linear"``."""
    return check_choice("scale", scale, SCALES)
