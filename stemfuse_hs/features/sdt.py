"""Standard-deviation thresholding (SDT) of 4D-STEM diffraction patterns.

The diffraction pixels whose intensity varies most across the scan carry
the structural contrast (Bragg disks that appear, vanish or move between
phases); the rest is background. SDT keeps the top ``fraction`` of pixels by
their standard deviation over all probe positions, after excluding the direct
beam, whose intensity swings with thickness and descan rather than structure.

All functions take numpy or dask arrays of shape ``(*navigation, H, W)``.
"""

from dataclasses import dataclass, field

import dask
import numpy as np
from scipy import ndimage

from .._arrays import as_dask, is_lazy_array, raise_if_nonfinite
from ._common import NORMALIZATIONS, normalize_by_total, position_totals, safe_log
from .._validation import check_choice, check_fraction, check_int, check_numeric_dtype, check_real

__all__ = [
    "SDTResult",
    "bin_patterns",
    "find_direct_beam",
    "disk_mask",
    "select_top_fraction",
    "sdt",
]

STD_SCALES = ("log", "linear")


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
    beam_mask : numpy.ndarray
        ``(H', W')`` True inside the excluded direct-beam disk.
    selected_mask : numpy.ndarray
        ``(H', W')`` True for the pixels kept as features.
    pixel_indices : numpy.ndarray
        ``(n_features, 2)`` (row, column) of each feature on the binned grid.
    beam_centre : tuple of float
        (row, column) of the direct beam on the binned grid.
    beam_radius : float
        Radius of the excluded disk on the binned grid, in pixels.
    parameters : dict
        Every parameter used, for provenance.
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
    rows, cols = np.ogrid[: shape[0], : shape[1]]
    return (rows - centre[0]) ** 2 + (cols - centre[1]) ** 2 <= radius**2


def find_direct_beam(mean_pattern):
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
    mean_pattern : numpy.ndarray
        ``(H, W)`` mean pattern over the scan.

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
    """
    pattern = np.nan_to_num(np.asarray(mean_pattern, dtype=np.float64))
    smooth = ndimage.gaussian_filter(pattern, 1.0)
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
    flat_score = np.asarray(score, dtype=np.float64).ravel()
    candidates = np.flatnonzero(np.asarray(eligible).ravel())
    # Rounding first: 0.07 * 100 is 7.000000000000001 in floating point.
    n_keep = int(np.ceil(round(fraction * candidates.size, 9)))
    order = np.argsort(-flat_score[candidates], kind="stable")
    selected = np.zeros(flat_score.size, dtype=bool)
    selected[candidates[order[:n_keep]]] = True
    return selected.reshape(np.shape(score))


def sdt(
    data,
    *,
    binning=2,
    fraction=0.4,
    std_scale="log",
    beam_centre=None,
    beam_radius=None,
    normalize="total",
):
    """Standard-deviation thresholding on an array of diffraction patterns.

    Parameters
    ----------
    data : numpy.ndarray or dask.array.Array
        ``(*navigation, H, W)`` diffraction patterns (counts).
    binning : int, default 2
        Detector binning before anything else (sums counts).
    fraction : float, default 0.4
        Fraction of the pixels outside the beam disk kept as features.
    std_scale : {"log", "linear"}, default "log"
        Standard deviation of log-scaled intensities (the method's text:
        equalises weak and strong reflections) or of raw intensities (what
        the reference notebook's code computed).
    beam_centre : tuple of float, optional
        (row, column) of the direct beam on the *unbinned* detector. Found
        from the mean pattern when omitted.
    beam_radius : float, optional
        Radius of the excluded disk in *unbinned* pixels; 0 excludes nothing.
        Found from the mean pattern when omitted.
    normalize : {"total", None}, default "total"
        ``"total"`` scales each pattern to the scan's mean total counts before
        anything else, removing the overall intensity change with thickness.

    Returns
    -------
    SDTResult
        Features are lazy if ``data`` is a dask array, else numpy.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> patterns = rng.poisson(5.0, size=(4, 5, 16, 16))
    >>> result = sdt(patterns, binning=2, fraction=0.5)
    >>> result.features.shape[:2], result.std_map.shape
    ((4, 5), (8, 8))
    """
    lazy = is_lazy_array(data)
    check_numeric_dtype("data", data.dtype)
    if data.ndim < 3:
        raise ValueError(
            f"data must have at least one navigation and two signal dimensions, got shape {data.shape}."
        )
    binning = check_int("binning", binning, minimum=1)
    if binning > min(data.shape[-2:]):
        raise ValueError(
            f"binning={binning} is larger than the detector ({data.shape[-2]} x {data.shape[-1]} pixels)."
        )
    fraction = check_fraction("fraction", fraction)
    check_choice("std_scale", std_scale, STD_SCALES)
    check_choice("normalize", normalize, NORMALIZATIONS)
    if beam_radius is not None:
        beam_radius = check_real("beam_radius", beam_radius, minimum=0)
    if beam_centre is not None:
        if np.ndim(beam_centre) != 1 or len(beam_centre) != 2:
            raise ValueError(f"beam_centre must be (row, column), got {beam_centre!r}.")
        beam_centre = tuple(check_real("beam_centre", float(c)) for c in beam_centre)

    nav_axes = tuple(range(data.ndim - 2))
    patterns = bin_patterns(as_dask(data, 2), binning)
    if normalize == "total":
        totals = position_totals(patterns, 2)
        if not np.all(np.isfinite(totals)):
            raise_if_nonfinite(data, 2)
        patterns = normalize_by_total(patterns, 2, totals)
    logged = safe_log(patterns)
    varying = logged if std_scale == "log" else patterns
    std_map, mean_pattern = dask.compute(
        varying.std(axis=nav_axes, dtype=np.float64),
        patterns.mean(axis=nav_axes, dtype=np.float64),
    )
    if not (np.all(np.isfinite(std_map)) and np.all(np.isfinite(mean_pattern))):
        raise_if_nonfinite(data, 2)
    std_map = std_map.astype(np.float32)
    mean_pattern = mean_pattern.astype(np.float32)

    found_centre, found_radius = find_direct_beam(mean_pattern)
    # Binned pixel j spans unbinned pixels j*b .. j*b + b - 1: its centre is
    # at j*b + (b - 1) / 2 in unbinned coordinates.
    half = (binning - 1) / 2
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

    flat = logged.reshape(logged.shape[:-2] + (-1,))
    features = flat[..., flat_index]
    if not lazy:
        features = features.compute()

    parameters = {
        "binning": binning,
        "fraction": fraction,
        "std_scale": std_scale,
        "normalize": "none" if normalize is None else normalize,
        "beam_centre": [float(c * binning + half) for c in centre],
        "beam_radius": float(radius * binning),
        "beam_centre_found": beam_centre is None,
        "beam_radius_found": beam_radius is None,
        "n_features": int(flat_index.size),
    }
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
    )
