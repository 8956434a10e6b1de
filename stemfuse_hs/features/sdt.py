"""Standard-deviation thresholding (SDT) of 4D-STEM diffraction patterns.

The diffraction pixels whose intensity varies most across the scan carry
the structural contrast (Bragg disks that appear, vanish or move between
phases); the rest is background. SDT keeps the top ``fraction`` of pixels by
their standard deviation over all probe positions, after excluding the direct
beam, whose intensity swings with thickness and descan rather than structure.

All functions take numpy or dask arrays of shape ``(*navigation, H, W)``.
"""

import warnings
from dataclasses import dataclass, field

import dask
import dask.array as da
import numpy as np
from scipy import ndimage

from .. import _arrays
from .._arrays import as_dask, is_lazy_array
from .._validation import check_array, check_choice, check_fraction, check_int, check_nan_policy, check_real
from .._docstrings import fill_doc
from ._common import (
    NORMALIZATIONS,
    beam_provenance,
    check_beam,
    check_binning,
    check_data,
    check_positions,
    compute_features,
    blank_and_normalize,
    neutral_fill,
    provenance,
    raise_nonfinite,
    safe_log,
)
from .._kernels import KERNEL_DTYPES, bin_patterns_with_totals, gather_columns, log_statistics

__all__ = [
    "SDTResult",
    "bin_patterns",
    "find_direct_beam",
    "disk_mask",
    "select_top_fraction",
    "hot_pixels",
    "sdt",
]

STD_SCALES = ("log", "linear")
#: A mean-pattern pixel this many times brighter than all its neighbours is
#: taken for a hot pixel, not a diffraction feature: the direct beam's peak is
#: about 3 times its brightest neighbour even when the beam is a pixel wide.
HOT_PIXEL_FACTOR = 10.0


@fill_doc
@dataclass
class SDTResult:
    """What standard-deviation thresholding found and extracted.

    Attributes
    ----------
    features : numpy.ndarray or dask.array.Array
        ``(*navigation, n_features)`` float32 log-scaled intensities of the
        selected pixels; lazy when the input was.
    std_map : numpy.ndarray
        ``(H', W')`` per-pixel standard deviation over positions (binned grid).
    mean_pattern : numpy.ndarray
        ``(H', W')`` mean (normalised) pattern, used to locate the beam.
    %(result_beam_mask)s
    selected_mask : numpy.ndarray
        ``(H', W')`` True for the pixels kept as features.
    pixel_indices : numpy.ndarray
        ``(n_features, 2)`` (row, column) of each feature on the binned grid.
    beam_centre : tuple of float
        (row, column) of the direct beam on the binned grid.
    beam_radius : float
        Radius of the excluded disk on the binned grid, in pixels.
    %(result_parameters)s
    %(result_excluded_mean_features)s
    """

    features: object
    std_map: np.ndarray
    mean_pattern: np.ndarray
    beam_mask: np.ndarray
    selected_mask: np.ndarray
    pixel_indices: np.ndarray
    beam_centre: tuple
    beam_radius: float
    parameters: dict = field(default_factory=dict)
    excluded: np.ndarray = None


def _bin_block(block, binning):
    *nav, h, w = block.shape
    hb, wb = h // binning, w // binning
    block = block[..., : hb * binning, : wb * binning].astype(np.float32, copy=False)
    return block.reshape(*nav, hb, binning, wb, binning).sum(axis=(-3, -1), dtype=np.float32)


def bin_patterns(data, binning):
    """Sum ``binning x binning`` detector pixels, as float32.

    Edges that do not fill a whole bin are dropped, as HyperSpy's ``rebin``
    would refuse them.

    Parameters
    ----------
    data : dask.array.Array
        ``(*navigation, H, W)``, chunked over positions only.
    binning : int
        Bin edge length in pixels; 1 only converts to float32.

    Returns
    -------
    dask.array.Array
        ``(*navigation, H // binning, W // binning)`` float32.

    Examples
    --------
    >>> import dask.array as da
    >>> bin_patterns(da.ones((2, 3, 8, 8), chunks=(1, 3, 8, 8)), 2).shape
    (2, 3, 4, 4)
    """
    if data.ndim < 2:
        raise ValueError(f"data must have two signal dimensions (H, W), got shape {data.shape}.")
    binning = check_binning(binning, data)
    if not is_lazy_array(data):
        data = as_dask(data, 2)
    if binning == 1:
        return data.astype(np.float32)
    *nav, h, w = data.shape
    chunks = data.chunks[:-2] + ((h // binning,), (w // binning,))
    return data.map_blocks(_bin_block, binning, dtype=np.float32, chunks=chunks)


def disk_mask(shape, centre, radius):
    """Boolean mask of a disk on a grid.

    Examples
    --------
    >>> int(disk_mask((9, 9), (4, 4), 1).sum())
    5
    """
    if np.ndim(shape) != 1 or len(shape) != 2:
        raise ValueError(f"shape must be (rows, columns), got {shape!r}.")
    shape = tuple(check_int("shape", s, minimum=1) for s in shape)
    if np.ndim(centre) != 1 or len(centre) != 2:
        raise ValueError(f"centre must be (row, column), got {centre!r}.")
    centre = tuple(check_real("centre", float(c)) for c in centre)
    radius = check_real("radius", radius, minimum=0)
    rows, cols = np.ogrid[: shape[0], : shape[1]]
    return (rows - centre[0]) ** 2 + (cols - centre[1]) ** 2 <= radius**2


@fill_doc
def find_direct_beam(mean_pattern, near=None, within=None):
    """Locate the direct beam in a mean diffraction pattern.

    The direct beam is the brightest disk. Its centre is the intensity-weighted
    centre of mass of the connected region, around the brightest (lightly
    smoothed) pixel, that is brighter than half way between the background
    (median) and the peak. The returned radius is that region's equivalent
    radius plus a margin of a quarter of it (at least one pixel), because the
    beam's soft edge and its drift over the scan (descan) spread it beyond
    the half-maximum contour of the mean.

    Parameters
    ----------
    %(mean_pattern)s
    near : (float, float), optional
        (row, column) where the beam is known to be, e.g. the scan's mean
        pattern's beam when ``mean_pattern`` is a few grains' mean, in
        which a Bragg disk of a strongly diffracting grain can outshine the
        beam. With it, the brightest pixel is looked for only within
        ``within`` pixels of ``near``.
    within : float, optional
        Required with ``near``.

    Returns
    -------
    centre : tuple of float
        (row, column) in pixels.
    radius : float
        Radius to exclude, in pixels.

    Examples
    --------
    >>> import numpy as np
    >>> pattern = np.zeros((32, 32)); pattern[10:15, 18:23] = 100.0
    >>> centre, radius = find_direct_beam(pattern)
    >>> [round(c, 1) for c in centre]
    [12.0, 20.0]

    A brighter Bragg disk elsewhere, the beam's place known:

    >>> pattern[24:29, 4:9] = 150.0
    >>> [round(c, 1) for c in find_direct_beam(pattern)[0]]
    [26.0, 6.0]
    >>> [round(c, 1) for c in find_direct_beam(pattern, near=(12.5, 19.5), within=4)[0]]
    [12.0, 20.0]
    """
    pattern = check_array("mean_pattern", mean_pattern, ndim=2)
    pattern = np.nan_to_num(np.asarray(pattern, dtype=np.float64))
    smooth = ndimage.gaussian_filter(pattern, 1.0)
    if near is not None:
        if within is None:
            raise ValueError("find_direct_beam: near needs within (pixels).")
        rows, cols = np.indices(pattern.shape)
        outside = np.hypot(rows - float(near[0]), cols - float(near[1])) > float(within)
        if not outside.all():
            smooth = np.where(outside, -np.inf, smooth)
    peak_index = np.unravel_index(np.argmax(smooth), smooth.shape)
    background = np.median(pattern)
    level = background + 0.5 * (pattern[peak_index] - background)
    if pattern[peak_index] <= background:
        # A featureless pattern has no beam to find: fall back to the centre.
        return ((pattern.shape[0] - 1) / 2, (pattern.shape[1] - 1) / 2), 1.0
    regions, _ = ndimage.label(pattern >= level)
    region = regions == regions[peak_index]
    if not region.any():
        region = np.zeros_like(region)
        region[peak_index] = True
    weights = np.where(region, pattern - background, 0.0)
    centre = ndimage.center_of_mass(weights)
    radius = float(np.sqrt(region.sum() / np.pi))
    radius += max(1.0, 0.25 * radius)
    return (float(centre[0]), float(centre[1])), radius


_RING = np.array([[1, 1, 1], [1, 0, 1], [1, 1, 1]], dtype=bool)


@fill_doc
def hot_pixels(mean_pattern, factor=HOT_PIXEL_FACTOR):
    """Pixels much brighter than every one of their eight neighbours.

    Diffraction features (the direct beam, Bragg disks) are blurred over
    several pixels by the probe and the detector's point-spread function; a
    hot or stuck-high pixel is not.

    Parameters
    ----------
    %(mean_pattern)s
    factor : float, default 10
        How many times the brightest neighbour a pixel must exceed.

    Returns
    -------
    numpy.ndarray
        ``(H, W)`` boolean mask.

    Examples
    --------
    >>> import numpy as np
    >>> pattern = np.full((8, 8), 5.0); pattern[2, 6] = 60000.0
    >>> np.argwhere(hot_pixels(pattern)).tolist()
    [[2, 6]]
    """
    pattern = np.nan_to_num(np.asarray(check_array("mean_pattern", mean_pattern, ndim=2), dtype=np.float64))
    factor = check_real("factor", factor, minimum=1, strict_minimum=True)
    if min(pattern.shape) < 3:
        return np.zeros(pattern.shape, dtype=bool)
    neighbours = ndimage.maximum_filter(pattern, footprint=_RING, mode="nearest")
    background = max(float(np.median(pattern)), 0.0)
    # A floor of the background keeps single counts on an empty detector
    # from counting as hot.
    return (pattern > factor * np.maximum(neighbours, 0.0)) & (pattern > factor * max(background, 1e-12))


def _without_hot_pixels(pattern, hot):
    """``pattern`` with ``hot`` pixels replaced by their neighbours' median."""
    return np.where(hot, ndimage.median_filter(pattern, footprint=_RING, mode="nearest"), pattern)


def select_top_fraction(score, eligible, fraction):
    """Pick exactly ``ceil(fraction * n_eligible)`` eligible pixels of highest score.

    Ties are broken by pixel order (a stable sort), so the selection never
    grows beyond the requested count, unlike ``np.isin`` on sorted values,
    which keeps every pixel that shares a value with the last one kept.

    Parameters
    ----------
    score : numpy.ndarray
        ``(H, W)`` scores (the standard-deviation map).
    eligible : numpy.ndarray
        ``(H, W)`` boolean mask of candidate pixels.
    fraction : float
        In (0, 1].

    Returns
    -------
    numpy.ndarray
        ``(H, W)`` boolean mask of the selected pixels.

    Examples
    --------
    >>> import numpy as np
    >>> score = np.array([[1.0, 1.0], [1.0, 0.0]])
    >>> int(select_top_fraction(score, np.ones((2, 2), bool), 0.25).sum())
    1
    """
    fraction = check_fraction("fraction", fraction)
    score = check_array("score", score, ndim=2)
    if np.shape(eligible) != np.shape(score):
        raise ValueError(f"eligible has shape {np.shape(eligible)}, score {np.shape(score)}; they must match.")
    flat_score = np.asarray(score, dtype=np.float64).ravel()
    candidates = np.flatnonzero(np.asarray(eligible).ravel())
    # Rounding first: 0.07 * 100 is 7.000000000000001 in floating point.
    n_keep = int(np.ceil(round(fraction * candidates.size, 9)))
    order = np.argsort(-flat_score[candidates], kind="stable")
    selected = np.zeros(flat_score.size, dtype=bool)
    selected[candidates[order[:n_keep]]] = True
    return selected.reshape(np.shape(score))


@fill_doc
def sdt(
    data,
    *,
    binning=2,
    fraction=0.4,
    std_scale="log",
    beam_centre=None,
    beam_radius=None,
    normalize="total",
    nan_policy="raise",
):
    """Standard-deviation thresholding on an array of diffraction patterns.

    Parameters
    ----------
    %(diffraction_data)s
    %(binning_2)s
    fraction : float, default 0.4
        Fraction of the pixels outside the beam disk kept as features, in
        (0, 1]. The method's authors report stable results for 0.2 to 0.4
        (the top 60–80 percentile).
    std_scale : {"log", "linear"}, default "log"
        Standard deviation of log-scaled intensities (the method's text:
        equalises weak and strong reflections) or of raw intensities (what
        the reference notebook's code computed).
    %(beam_centre)s
    %(beam_radius_excluded)s
    %(normalize_patterns)s
    nan_policy : {"raise", "exclude"}, default "raise"
        What to do with positions holding NaN or inf (aborted scan lines,
        failed dark subtraction): refuse the data, saying how many and
        where, or leave them out of every statistic (standard deviation
        map, mean pattern, normalisation target) and give them the mean
        features of the other positions. ``SDTResult.excluded`` marks them.

    Returns
    -------
    SDTResult
        Features are lazy if ``data`` is a dask array, else numpy.

    Raises
    ------
    MemoryError
        If ``data`` is in memory (numpy) and the features would not fit in
        the memory available: pass a dask array instead.

    Warns
    -----
    UserWarning
        For hot pixels in the mean pattern, and when no selected pixel
        varies across the scan.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> patterns = rng.poisson(5.0, size=(4, 5, 16, 16))
    >>> result = sdt(patterns, binning=2, fraction=0.5)
    >>> result.features.shape[:2], result.std_map.shape
    ((4, 5), (8, 8))
    """
    lazy = check_data(data, 2)
    binning = check_binning(binning, data)
    fraction = check_fraction("fraction", fraction)
    check_choice("std_scale", std_scale, STD_SCALES)
    check_choice("normalize", normalize, NORMALIZATIONS)
    nan_policy = check_nan_policy(nan_policy)
    beam_centre, beam_radius = check_beam(beam_centre, beam_radius, data)
    n_positions = check_positions(data, 2, "pixels")

    finding = beam_centre is None or beam_radius is None
    in_memory = None if lazy else _in_memory_statistics(data, binning, normalize, std_scale, finding, fraction)
    if in_memory is not None:
        std_map, mean_pattern, raw_mean, logged = in_memory
        excluded = np.zeros(data.shape[:-2], dtype=bool)
        excluding = False
    else:
        std_map, mean_pattern, raw_mean, logged, excluded, neutral = _dask_statistics(
            data, binning, normalize, std_scale, finding, nan_policy
        )
        excluding = bool(excluded.any())
    std_map = std_map.astype(np.float32)
    mean_pattern = mean_pattern.astype(np.float32)

    half = (binning - 1) / 2
    beam_pattern = mean_pattern
    hot = np.zeros((1, 1), dtype=bool)
    if finding:
        raw_mean = np.nan_to_num(raw_mean, posinf=0.0, neginf=0.0)
        hot = hot_pixels(raw_mean)
    if hot.any():
        where = [tuple(int(v) for v in rc) for rc in np.argwhere(hot)[:5]]
        # The beam is then located in the raw mean without the hot pixels,
        # binned like the patterns (normalising does not move the beam).
        hb, wb = mean_pattern.shape
        corrected = _without_hot_pixels(raw_mean, hot)[: hb * binning, : wb * binning]
        beam_pattern = corrected.reshape(hb, binning, wb, binning).sum(axis=(1, 3))
        warnings.warn(
            f"sdt: {int(hot.sum())} detector pixel(s) are more than {HOT_PIXEL_FACTOR:g} times brighter than "
            f"all their neighbours in the mean pattern (hot pixels?), at unbinned (row, column) {where}"
            f"{' ...' if hot.sum() > 5 else ''}. They were ignored when locating the direct beam but still "
            "count in the totals and may be selected; correct them first (e.g. pyxem's "
            "find_hot_pixels and correct_bad_pixels).",
            UserWarning,
            stacklevel=3,
        )
    found_centre, found_radius = find_direct_beam(beam_pattern)
    # Binned pixel j spans unbinned pixels j*b .. j*b + b - 1: its centre is
    # at j*b + (b - 1) / 2 in unbinned coordinates.
    centre = found_centre if beam_centre is None else tuple((c - half) / binning for c in beam_centre)
    radius = found_radius if beam_radius is None else beam_radius / binning
    beam = disk_mask(std_map.shape, centre, radius) if radius > 0 else np.zeros(std_map.shape, bool)
    eligible = ~beam
    if not eligible.any():
        raise ValueError(
            f"beam_radius={radius * binning:g} px around {tuple(round(c * binning + half, 1) for c in centre)} "
            f"leaves no detector pixel outside the direct-beam mask."
        )
    selected = select_top_fraction(std_map, eligible, fraction)
    pixel_indices = np.argwhere(selected)
    flat_index = np.flatnonzero(selected)
    if not np.any(std_map[selected] > 0):
        warnings.warn(
            "sdt: no selected detector pixel varies across the scan (standard deviation 0): the features are "
            "constant and carry no structural contrast (all-zero or identical patterns?).",
            UserWarning,
            stacklevel=3,
        )

    if in_memory is not None:
        features = gather_columns(logged, flat_index).reshape(data.shape[:-2] + (flat_index.size,))
    else:
        flat = logged.reshape(logged.shape[:-2] + (-1,))
        features = flat[..., flat_index]
        if excluding:
            # Excluded positions get the scan's mean: they pull no statistic.
            features = neutral_fill(features, excluded, neutral.reshape(-1)[flat_index])
        features = compute_features(features, lazy, n_positions, "sdt")

    beam_entries = beam_provenance(centre, radius, binning, beam_centre)
    beam_entries["beam_radius_found"] = beam_radius is None
    parameters = provenance(
        {"binning": binning, "fraction": fraction, "std_scale": std_scale},
        normalize=normalize,
        beam=beam_entries,
        n_features=flat_index.size,
        nan_policy=nan_policy,
    )
    return SDTResult(
        features=features,
        std_map=std_map,
        mean_pattern=mean_pattern,
        beam_mask=beam,
        selected_mask=selected,
        pixel_indices=pixel_indices,
        beam_centre=centre,
        beam_radius=float(radius),
        parameters=parameters,
        excluded=excluded,
    )


def _in_memory_statistics(data, binning, normalize, std_scale, finding, fraction):
    """The statistics of in-memory patterns with the compiled kernels, or None.

    None sends the data down the dask path, which handles what the kernels
    do not: non-finite values (refused or excluded with the right message),
    float16 (numba has no half floats) and arrays whose binned float32 copy
    would not fit in memory.

    Returns
    -------
    std_map, mean_pattern, raw_mean, logged
        ``logged`` is the ``(n, H' * W')`` float32 log-scaled binned buffer.
    """
    if data.dtype not in KERNEL_DTYPES:
        return None
    n = int(np.prod(data.shape[:-2]))
    hb, wb = data.shape[-2] // binning, data.shape[-1] // binning
    # The binned float32 buffer, then the features gathered from it.
    available = _arrays.available_memory()
    if available is not None and n * hb * wb * 4 * (1 + max(fraction, 0.1)) > available:
        return None
    patterns = np.ascontiguousarray(data).reshape((n,) + data.shape[-2:])
    binned, totals, finite, raw_sum = bin_patterns_with_totals(patterns, binning, raw_sum=finding)
    if not finite.all():
        return None
    if normalize == "total":
        target = float(totals.mean())
        positive = totals > 0
        scale = np.where(positive, target / np.where(positive, totals, 1.0), 1.0).astype(np.float32)
    else:
        scale = np.ones(n, dtype=np.float32)
    mean, std = log_statistics(binned, scale, log_std=std_scale == "log")
    raw_mean = raw_sum / n if finding else None
    return std.reshape(hb, wb), mean.reshape(hb, wb), raw_mean, binned


def _dask_statistics(data, binning, normalize, std_scale, finding, nan_policy):
    """The statistics of lazy (or non-finite) patterns as one dask computation.

    Returns
    -------
    std_map, mean_pattern, raw_mean, logged, excluded, neutral
        ``logged`` is the lazy log-scaled binned array; ``neutral`` the mean
        logged pattern of the included positions (only with exclusions).
    """
    nav_axes = tuple(range(data.ndim - 2))
    raw = as_dask(data, 2)
    patterns = bin_patterns(raw, binning)
    # NaN/inf are looked for in the float32 working array: that also catches
    # float64 values beyond float32's range, which become inf there.
    patterns, excluded, _ = blank_and_normalize(patterns, data, 2, normalize, nan_policy)
    excluding = bool(excluded.any())
    logged = safe_log(patterns)
    varying = logged if std_scale == "log" else patterns
    # Blanked (NaN) positions drop out of NaN-ignoring reductions; without
    # exclusions the plain ones keep NaN visible for the check below.
    std, mean = (da.nanstd, da.nanmean) if excluding else (da.std, da.mean)
    reductions = {
        "std": std(varying, axis=nav_axes, dtype=np.float64),
        "mean": mean(patterns, axis=nav_axes, dtype=np.float64),
    }
    if finding:
        # Hot pixels would outshine the beam. The unbinned mean shows them as
        # single pixels; binning can shrink a small beam to one pixel too.
        if excluding:
            blank = da.from_array(excluded, chunks=raw.chunks[:-2])[..., None, None]
            raw = da.where(blank, np.nan, raw.astype(np.float32))
        reductions["raw_mean"] = mean(raw, axis=nav_axes, dtype=np.float64)
    if excluding:
        reductions["neutral"] = da.nanmean(logged, axis=nav_axes, dtype=np.float64)
    # One pass over the data for every statistic.
    computed = dict(zip(reductions, dask.compute(*reductions.values())))
    if not (np.all(np.isfinite(computed["std"])) and np.all(np.isfinite(computed["mean"]))):
        raise_nonfinite(data, 2)
    return (computed["std"], computed["mean"], computed.get("raw_mean"), logged, excluded,
            computed.get("neutral"))

