"""Variance thresholding of spectrum images (STEM-EDS).

Channels whose counts vary across the scan more than counting noise can
explain carry the chemical contrast; the rest (empty channels, flat
continuum) only add noise. Known artefacts that vary for reasons other than
the sample (the Cu grid lines) can be excluded by energy window or by X-ray
line name.

All functions take numpy or dask arrays of shape ``(*navigation, channels)``.
"""

from dataclasses import dataclass, field

import dask
import dask.array as da
import numpy as np

from .._arrays import LAZY_ADVICE, as_dask, check_memory, is_lazy_array
from .._kernels import KERNEL_DTYPES, spectra_statistics
from .._validation import check_choice, check_fraction, check_nan_policy, check_real
from .._docstrings import fill_doc
from ._common import (
    NORMALIZATIONS,
    check_positions,
    check_spectra,
    blank_and_normalize,
    neutral_fill,
    normalize_by_total,
    provenance,
    raise_nonfinite,
    safe_log,
)

__all__ = [
    "NoVaryingChannelError",
    "VarianceResult",
    "xray_line_energy",
    "line_windows",
    "validate_windows",
    "variance_threshold",
]


class NoVaryingChannelError(ValueError):
    """No channel's variance exceeds the threshold: nothing to keep.

    A ValueError, so ``except ValueError`` still catches it; its own class
    lets :func:`stemfuse_hs.fuse` tell it from a mistake in the call.
    """

#: Detector resolution at Mn Ka assumed when the metadata gives none, in eV.
DEFAULT_RESOLUTION_MNKA = 130.0
#: Number of standard errors above Poisson dispersion that marks a channel as varying.
AUTO_SIGNIFICANCE = 4.0
#: Spectra converted to float32 at a time for their totals.
TOTALS_BLOCK_ROWS = 4096


@fill_doc
@dataclass
class VarianceResult:
    """What variance thresholding found and extracted.

    Attributes
    ----------
    features : numpy.ndarray or dask.array.Array
        ``(*navigation, n_kept)`` float32 ``log1p`` counts of the kept channels.
    variance, mean : numpy.ndarray
        ``(channels,)`` per-channel variance and mean over positions.
    threshold : numpy.ndarray
        ``(channels,)`` the variance a channel had to exceed (a constant for
        a given value or quantile; per channel for the automatic threshold).
    kept, excluded : numpy.ndarray
        ``(channels,)`` boolean masks.
    %(result_parameters)s
    excluded_positions : numpy.ndarray
        ``navigation``-shaped boolean mask of the positions left out
        (``nan_policy="exclude"``); their features are the scan's mean.
    """

    features: object
    variance: np.ndarray
    mean: np.ndarray
    threshold: np.ndarray
    kept: np.ndarray
    excluded: np.ndarray
    parameters: dict = field(default_factory=dict)
    excluded_positions: np.ndarray = None


def xray_line_energy(line):
    """Energy in keV of an X-ray line named like ``"Cu_Ka"`` (exspy's database).

    Examples
    --------
    >>> round(xray_line_energy("Cu_Ka"), 3)
    8.048
    """
    from exspy.material import elements

    if not isinstance(line, str) or "_" not in line:
        raise ValueError(f"X-ray line {line!r} is not of the form 'Element_Line', e.g. 'Cu_Ka'.")
    element, name = line.split("_", 1)
    try:
        lines = elements[element].Atomic_properties.Xray_lines
    except (AttributeError, KeyError):
        raise ValueError(f"X-ray line {line!r}: element {element!r} is not in exspy's database.") from None
    if name not in lines:
        known = sorted(lines.keys())
        raise ValueError(f"X-ray line {line!r}: {element} has no line {name!r}; it has {known}.")
    return float(lines[name]["energy (keV)"])


def fwhm_at_energy(energy, resolution_mnka=DEFAULT_RESOLUTION_MNKA):
    """Detector peak width (FWHM, keV) at ``energy`` keV (Fiori & Newbury, 1978).

    Examples
    --------
    >>> round(fwhm_at_energy(5.8987, 130.0), 4)
    0.13
    """
    fwhm_ev = np.sqrt(max(resolution_mnka**2 + 2.5 * (energy - 5.8987) * 1000.0, 1.0))
    return float(fwhm_ev / 1000.0)


def line_windows(lines, resolution_mnka=DEFAULT_RESOLUTION_MNKA, width=1.0):
    """Energy windows (keV) of ``width`` FWHM either side of each X-ray line.

    Examples
    --------
    >>> [round(e, 2) for e in line_windows(["Cu_Ka"])[0]]
    [7.9, 8.2]
    """
    if isinstance(lines, str):
        lines = [lines]
    resolution_mnka = check_real("resolution_mnka", resolution_mnka, minimum=0, strict_minimum=True)
    width = check_real("width", width, minimum=0, strict_minimum=True)
    windows = []
    for line in lines:
        energy = xray_line_energy(line)
        half = width * fwhm_at_energy(energy, resolution_mnka)
        windows.append((energy - half, energy + half))
    return windows


def _fwhm_channels(energies, resolution_mnka):
    """Channels in one detector FWHM at Mn Ka (at least 1, odd)."""
    step = float(np.median(np.abs(np.diff(energies)))) if energies.size > 1 else 1.0
    width = int(round(resolution_mnka / 1000.0 / step)) if step > 0 else 1
    return max(1, width | 1)


def _window_sum(block, width):
    from scipy.ndimage import uniform_filter1d

    if width == 1:
        return block
    return (uniform_filter1d(block, width, axis=-1, mode="constant") * width).astype(np.float32)


def validate_windows(windows):
    """``exclude_windows`` as a list of ``(low, high)`` float pairs, low below high, all finite.

    Examples
    --------
    >>> validate_windows([(7.9, 8.2)])
    [(7.9, 8.2)]
    """
    if isinstance(windows, (str, bytes)) or not hasattr(windows, "__iter__"):
        raise TypeError(f"exclude_windows must be a list of (low, high) energies in keV, got {windows!r}.")
    checked = []
    for window in windows:
        if isinstance(window, str) or np.ndim(window) != 1 or len(window) != 2:
            raise ValueError(
                f"exclude_windows must be a list of (low, high) energies in keV, got {window!r}."
            )
        try:
            low, high = (float(w) for w in window)
        except (TypeError, ValueError):
            raise TypeError(f"exclude_windows: {window!r} does not hold two numbers.") from None
        if not (np.isfinite(low) and np.isfinite(high)):
            raise ValueError(f"exclude_windows: the energies must be finite, got {window!r}.")
        if not low < high:
            raise ValueError(f"exclude_windows: low must be below high, got {window!r}.")
        checked.append((low, high))
    return checked


@fill_doc
def variance_threshold(
    data,
    energies,
    *,
    threshold=None,
    quantile=None,
    exclude_windows=(),
    exclude_lines=(),
    resolution_mnka=DEFAULT_RESOLUTION_MNKA,
    normalize="total",
    nan_policy="raise",
):
    """Per-channel variance thresholding on an array of spectra.

    Parameters
    ----------
    %(spectra_data)s
    %(energies)s
    threshold : float, optional
        Keep channels whose variance (of the normalised counts) exceeds this.
        Default: the variance Poisson counting noise gives, by four standard
        errors (see Notes).
    quantile : float, optional
        Keep channels whose variance exceeds this quantile (in (0, 1)) of all
        channel variances. Only one of ``threshold`` and ``quantile``.
    exclude_windows : sequence of (float, float)
        Energy windows (keV) never kept.
    exclude_lines : sequence of str
        X-ray lines (e.g. ``"Cu_Ka"``) never kept: one FWHM either side.
    resolution_mnka : float
        Detector resolution at Mn Ka in eV, for the line windows.
    %(normalize_spectra)s
    nan_policy : {"raise", "exclude"}, default "raise"
        What to do with positions holding NaN or inf: refuse the data,
        saying how many and where, or leave them out of every statistic
        (variances, means, noise estimate, normalisation target) and give
        them the mean features of the other positions
        (``VarianceResult.excluded_positions`` marks them).

    Returns
    -------
    VarianceResult

    Raises
    ------
    NoVaryingChannelError
        (a ValueError) if no channel's variance exceeds the threshold.
    MemoryError
        If ``data`` is in memory (numpy) and the features would not fit in
        the memory available: pass a dask array instead.

    Notes
    -----
    With neither ``threshold`` nor ``quantile``, a channel is kept when its
    variance exceeds what Poisson counting noise gives. For raw counts the
    noise variance equals the mean; after normalisation, where position
    ``i``'s counts are multiplied by ``r_i``, it is the mean over positions
    of ``r_i`` times the normalised counts. The test is made on counts summed
    over one detector FWHM around each channel (from ``resolution_mnka``),
    which gathers a line's counts: a channel is kept when that sum's
    variance exceeds its noise variance ``v`` by ``1 + 4 * sqrt((2 + 1 / v)
    / (n - 1))`` (four standard errors of the sample variance of Poisson
    counts over ``n`` positions). The
    ``threshold`` returned is this rule expressed on the channel variances.
    This assumes the data are counts (not already scaled).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> spectra = rng.poisson(1.0, size=(20, 30, 64)).astype(float)
    >>> spectra[:10, :, 5] += 20  # one channel with real contrast
    >>> result = variance_threshold(spectra, np.arange(64) * 0.2)
    >>> np.flatnonzero(result.kept).tolist()
    [5]
    """
    energies = check_spectra(data, energies)
    lazy = is_lazy_array(data)
    if threshold is not None and quantile is not None:
        raise ValueError("Give either threshold or quantile, not both.")
    if threshold is not None:
        threshold = check_real("threshold", threshold, minimum=0)
    if quantile is not None:
        quantile = check_fraction("quantile", quantile, closed_high=False)
    check_choice("normalize", normalize, NORMALIZATIONS)
    nan_policy = check_nan_policy(nan_policy)
    resolution_mnka = check_real("resolution_mnka", resolution_mnka, minimum=0, strict_minimum=True)
    if isinstance(exclude_lines, str):
        exclude_lines = [exclude_lines]
    if not hasattr(exclude_lines, "__iter__"):
        raise TypeError(f"exclude_lines must be a list of X-ray line names, got {exclude_lines!r}.")
    exclude_lines = list(exclude_lines)
    windows = validate_windows(exclude_windows) + line_windows(exclude_lines, resolution_mnka)

    n_positions = check_positions(data, 1, "channels")
    # Counts summed over one detector FWHM gather a line before its
    # dispersion is tested: at tens of counts per spectrum single channels
    # hold too few counts for the test to see chemistry.
    width = _fwhm_channels(energies, resolution_mnka)
    in_memory = None if lazy else _in_memory_statistics(data, normalize, width)
    if in_memory is not None:
        mean, variance, window_variance, window_noise, scale = in_memory
        excluded_positions = np.zeros(data.shape[:-1], dtype=bool)
        excluding = False
        n_included = n_positions
    else:
        spectra, excluded_positions, excluding, n_included, computed = _dask_statistics(
            data, normalize, width, nan_policy, n_positions
        )
        variance, mean, window_variance, window_noise = computed[:4]

    if not (np.all(np.isfinite(variance)) and np.all(np.isfinite(window_variance))):
        raise_nonfinite(data, 1)
    if threshold is not None:
        limit = np.full(variance.shape, threshold)
        rule = "value"
    elif quantile is not None:
        limit = np.full(variance.shape, np.quantile(variance, quantile))
        rule = "quantile"
    else:
        # The sample variance of Poisson counts with mean m scatters by
        # sqrt((2 + 1 / m) / (n - 1)) of the variance: much more than the
        # Gaussian sqrt(2 / (n - 1)) for nearly empty channels.
        low_count = 1.0 / np.maximum(window_noise, 1e-12)
        spread = AUTO_SIGNIFICANCE * np.sqrt((2.0 + low_count) / max(n_included - 1, 1))
        # Expressed on the single-channel variance scale, so that the
        # threshold plots against the channel variances.
        ratio = np.divide(window_variance, window_noise * (1.0 + spread), out=np.zeros_like(window_variance), where=window_noise > 0)
        limit = np.divide(variance, ratio, out=np.full_like(variance, np.inf), where=ratio > 0)
        rule = "poisson"
    excluded = np.zeros(energies.shape, dtype=bool)
    for low, high in windows:
        excluded |= (energies >= low) & (energies <= high)
    kept = (variance > limit) & ~excluded
    if rule == "poisson":
        kept = (ratio > 1.0) & ~excluded
    if not kept.any():
        raise NoVaryingChannelError(
            f"No channel has a variance above the threshold ({rule} rule, largest variance "
            f"{variance[~excluded].max() if (~excluded).any() else 0:.4g}); "
            "lower threshold or quantile, or check the excluded windows."
        )
    kept_index = np.flatnonzero(kept)
    if not lazy:
        check_memory(
            2 * n_positions * kept_index.size * 4,
            f"variance_threshold: the {n_positions} x {kept_index.size} float32 features of this in-memory data",
            LAZY_ADVICE,
        )
    if in_memory is not None:
        # The dask path's arithmetic on the kept channels: the same float32 values.
        kept_counts = np.asarray(data).reshape(n_positions, -1)[:, kept_index].astype(np.float32)
        features = safe_log(kept_counts * scale[:, None]).reshape(data.shape[:-1] + (kept_index.size,))
    else:
        features = safe_log(spectra[..., kept_index])
        if excluding:
            # Excluded positions get the scan's mean: they pull no statistic.
            features = neutral_fill(features, excluded_positions, computed[4][kept_index])
        if not lazy:
            features = features.compute()
    parameters = provenance(
        {
            "threshold_rule": rule,
            "threshold": float(threshold) if threshold is not None else float("nan"),
            "quantile": float(quantile) if quantile is not None else float("nan"),
            "exclude_windows": [list(w) for w in validate_windows(exclude_windows)],
            "exclude_lines": list(exclude_lines),
            "resolution_mnka": resolution_mnka,
        },
        normalize=normalize,
        n_features=kept.sum(),
        nan_policy=nan_policy,
    )
    return VarianceResult(
        features=features,
        variance=variance.astype(np.float32),
        mean=mean.astype(np.float32),
        threshold=limit.astype(np.float32),
        kept=kept,
        excluded=excluded,
        parameters=parameters,
        excluded_positions=excluded_positions,
    )


def _in_memory_statistics(data, normalize, width):
    """The channel statistics of in-memory spectra in one compiled pass, or None.

    None sends the data down the dask path, which handles what the kernel
    does not: non-finite values (refused or excluded with the right
    message) and float16.

    Returns
    -------
    mean, variance, window_variance, window_noise : numpy.ndarray
        As the dask path computes them (float64, ``(channels,)``).
    scale : numpy.ndarray
        ``(n_positions,)`` float32 normalisation factor of every spectrum.
    """
    if data.dtype not in KERNEL_DTYPES:
        return None
    spectra = np.ascontiguousarray(data).reshape(-1, data.shape[-1])
    n = spectra.shape[0]
    if spectra.dtype.kind == "f" and not all(
        np.isfinite(spectra[a : a + TOTALS_BLOCK_ROWS]).all() for a in range(0, n, TOTALS_BLOCK_ROWS)
    ):
        return None
    if normalize == "total":
        # As position_totals computes them on the float32 working copy, a
        # block of rows at a time instead of a whole float32 copy.
        totals = np.concatenate(
            [
                np.clip(spectra[a : a + TOTALS_BLOCK_ROWS].astype(np.float32), 0, None).sum(axis=1, dtype=np.float64)
                for a in range(0, n, TOTALS_BLOCK_ROWS)
            ]
        )
        positive = totals > 0
        scale = np.where(positive, float(totals.mean()) / np.where(positive, totals, 1.0), 1.0).astype(np.float32)
    else:
        scale = np.ones(n, dtype=np.float32)
    mean, variance, _, window_variance, window_noise = spectra_statistics(spectra, scale, width)
    return mean, variance, window_variance, window_noise, scale


def _dask_statistics(data, normalize, width, nan_policy, n_positions):
    """The channel statistics through dask: lazy data, NaN/inf, float16."""
    nav_axes = tuple(range(data.ndim - 1))
    spectra = as_dask(data, 1).astype(np.float32)
    spectra, excluded_positions, totals = blank_and_normalize(spectra, data, 1, normalize, nan_policy)
    excluding = bool(excluded_positions.any())
    n_included = n_positions - int(excluded_positions.sum())
    if normalize == "total":
        scale = normalize_by_total(
            da.ones(totals.shape, chunks=spectra.chunks[:-1])[..., None], 1, totals, excluded_positions
        )
    else:
        scale = da.ones(spectra.shape[:-1] + (1,), chunks=spectra.chunks[:-1] + ((1,),))
    # A count scaled by r contributes r**2 to the Poisson variance of the
    # scaled data, so the noise variance of a channel is the mean of
    # (scaled counts * r) over positions; without normalisation (r = 1) it is
    # the mean, the usual Poisson dispersion.
    windowed = spectra.map_blocks(_window_sum, width, dtype=np.float32)
    # Blanked (NaN) positions drop out of NaN-ignoring reductions; without
    # exclusions the plain ones keep NaN visible for the check below.
    var, mean_ = (da.nanvar, da.nanmean) if excluding else (da.var, da.mean)
    reductions = [
        var(spectra, axis=nav_axes, dtype=np.float64),
        mean_(spectra, axis=nav_axes, dtype=np.float64),
        var(windowed, axis=nav_axes, dtype=np.float64),
        mean_(windowed * scale, axis=nav_axes, dtype=np.float64),
    ]
    if excluding:
        reductions.append(da.nanmean(safe_log(spectra), axis=nav_axes, dtype=np.float64))
    return spectra, excluded_positions, excluding, n_included, dask.compute(*reductions)

