"""Annular (angular-sector) averages of 4D-STEM diffraction patterns.

Rings about the direct beam, bounded by the minima of the scan's mean
radial profile (so that each ring holds one family of reflections), are cut
into equal angular sectors; the features are the mean intensity in every
sector of every ring. Unlike the radial profile they see where on a ring
the intensity is: spots against an even (powder) ring, or a grain rotated
against another with the same lattice spacings. Unlike SDT they do not
depend on single pixels, so they tolerate a little descan or strain.

All functions take numpy or dask arrays of shape ``(*navigation, H, W)``.
"""

from dataclasses import dataclass, field

import dask.array as da
import numpy as np
from scipy import ndimage, signal

from .._validation import check_bool, check_int, check_real
from .._docstrings import fill_doc
from ._common import beam_provenance, check_beam, neutral_fill, provenance, safe_log
from ._patterns import check_scale, finish, locate_beam, prepare_patterns
from .radial import azimuthal_mean, inscribed_radius

__all__ = ["AnnularResult", "annular", "profile_minima", "sector_labels"]


@fill_doc
@dataclass
class AnnularResult:
    """What the annular averaging used and extracted.

    Attributes
    ----------
    features : numpy.ndarray or dask.array.Array
        ``(*navigation, n_rings * n_sectors)`` float32, ring by ring, sectors
        counter-clockwise from the +column direction: the (``log1p`` unless
        ``scale="linear"``) sector means or, with ``contrast=True``, every
        ring's mean followed by its sectors' deviations from it
        (``n_rings * (n_sectors + 1)`` features). Lazy when the input was.
    ring_edges : numpy.ndarray
        ``(n_rings + 1,)`` ring boundaries in unbinned detector pixels.
    labels : numpy.ndarray
        ``(H', W')`` int, ``ring * n_sectors + sector`` of every binned
        pixel, -1 outside the rings.
    mean_profile : numpy.ndarray
        Radial profile of the mean pattern (one-pixel rings) used to place
        the ring edges.
    profile_radii : numpy.ndarray
        Radii of ``mean_profile`` in unbinned pixels.
    %(result_mean_pattern)s
    beam_centre : tuple of float
        (row, column) on the binned grid.
    beam_radius : float
        On the binned grid.
    %(result_parameters)s
    %(result_excluded_mean_pattern)s
    """

    features: object
    ring_edges: np.ndarray
    labels: np.ndarray
    mean_profile: np.ndarray
    profile_radii: np.ndarray
    mean_pattern: np.ndarray
    beam_centre: tuple
    beam_radius: float
    parameters: dict = field(default_factory=dict)
    excluded: np.ndarray = None


def profile_minima(profile, smooth=0.0, prominence=0.05):
    """Indices of the clear local minima of a radial profile.

    The profile is ``log1p`` scaled (so that the weak outer rings count as
    much as the strong inner ones) and smoothed with a Gaussian of
    ``smooth`` samples; a minimum is kept when it lies at least
    ``prominence`` times the scaled profile's range below the maxima on
    either side.

    Examples
    --------
    >>> import numpy as np
    >>> profile = np.array([9, 5, 1, 5, 9, 5, 2, 6, 9, 4.0])
    >>> profile_minima(profile, smooth=0).tolist()
    [2, 6]
    """
    profile = np.log1p(np.clip(np.asarray(profile, dtype=np.float64), 0, None))
    smooth = check_real("smooth", smooth, minimum=0)
    prominence = check_real("prominence", prominence, minimum=0)
    if smooth > 0:
        profile = ndimage.gaussian_filter1d(profile, smooth, mode="nearest")
    span = float(np.ptp(profile)) if profile.size else 0.0
    if span <= 0:
        return np.zeros(0, dtype=int)
    minima, _ = signal.find_peaks(-profile, prominence=prominence * span)
    return minima.astype(int)


def sector_labels(shape, centre, ring_edges, n_sectors):
    """Label every pixel with ``ring * n_sectors + sector`` (-1 outside the rings).

    Radii and angles are those of the pixel centres; sector 0 starts at the
    +column direction and sectors run towards +row.

    Examples
    --------
    >>> labels = sector_labels((5, 5), (2, 2), [0.5, 2.5], 4)
    >>> labels[2].tolist()
    [2, 2, -1, 0, 0]
    """
    n_sectors = check_int("n_sectors", n_sectors, minimum=1)
    edges = np.asarray(ring_edges, dtype=np.float64)
    rows, cols = np.mgrid[: shape[0], : shape[1]]
    dr, dc = rows - centre[0], cols - centre[1]
    radius = np.hypot(dr, dc)
    angle = np.mod(np.arctan2(dr, dc), 2 * np.pi)
    ring = np.searchsorted(edges, radius, side="right") - 1
    inside = (ring >= 0) & (ring < edges.size - 1)
    sector = np.minimum((angle / (2 * np.pi) * n_sectors).astype(int), n_sectors - 1)
    return np.where(inside, ring * n_sectors + sector, -1)


def _ring_contrast(block, n_sectors):
    """``(..., rings * sectors)`` -> per ring: mean, then sector deviations."""
    sectors = block.reshape(block.shape[:-1] + (-1, n_sectors))
    ring = sectors.mean(axis=-1, keepdims=True)
    out = np.concatenate([ring, sectors - ring], axis=-1)
    return out.reshape(block.shape[:-1] + (-1,)).astype(np.float32)


def _sector_means(block, weights):
    flat = block.reshape(block.shape[:-2] + (-1,)).astype(np.float32, copy=False)
    return (flat @ weights).astype(np.float32)


@fill_doc
def annular(
    data,
    *,
    n_sectors=8,
    ring_edges=None,
    max_rings=None,
    binning=1,
    scale="log",
    contrast=True,
    smooth=0.0,
    prominence=0.05,
    beam_centre=None,
    beam_radius=None,
    normalize="total",
    nan_policy="raise",
):
    """Mean intensity in angular sectors of rings about the direct beam.

    Parameters
    ----------
    %(diffraction_data)s
    n_sectors : int, default 8
        Equal angular sectors per ring.
    ring_edges : sequence of float, optional
        Ring boundaries (radii about the beam centre, increasing) in
        unbinned pixels. Default: the edge of the direct beam, the clear
        minima of the mean pattern's radial profile, and the largest circle
        on the detector.
    max_rings : int, optional
        Keep only the innermost rings (of the automatic edges).
    %(binning_1)s
    scale : {"log", "linear"}, default "log"
        ``log1p`` of the sector means, or the means themselves.
    contrast : bool, default True
        Give, for every ring, its mean and then each sector's deviation from
        that mean (with ``scale="log"``: log ratios), instead of the sector
        means themselves. The same information, arranged so that the
        angular contrast (spots against an even ring) is not drowned by the
        intensity changes that thickness brings to every sector at once.
    smooth, prominence : float
        For the automatic ring edges, see
        :func:`~stemfuse_hs.features.annular.profile_minima`.
    %(beam_centre)s
    %(beam_radius)s
    %(normalize_patterns)s
    nan_policy : {"raise", "exclude"}, default "raise"
        Positions holding NaN or inf: refuse the data, or leave them out of
        the mean pattern and normalisation and give them the features of
        the mean pattern.

    Returns
    -------
    AnnularResult
        Features are lazy if ``data`` is a dask array, else numpy.

    Raises
    ------
    ValueError
        If a sector holds no pixel (too many sectors for a thin inner ring):
        use fewer sectors, wider rings or less binning.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> patterns = rng.poisson(5.0, size=(4, 5, 24, 24))
    >>> result = annular(patterns, n_sectors=4, ring_edges=[2, 6, 10], beam_centre=(11.5, 11.5))
    >>> result.features.shape  # 2 rings x (mean + 4 sector contrasts)
    (4, 5, 10)
    >>> annular(patterns, n_sectors=4, ring_edges=[2, 6, 10], contrast=False).features.shape
    (4, 5, 8)
    """
    n_sectors = check_int("n_sectors", n_sectors, minimum=1)
    contrast = check_bool("contrast", contrast)
    if max_rings is not None:
        max_rings = check_int("max_rings", max_rings, minimum=1)
    check_scale(scale)
    smooth = check_real("smooth", smooth, minimum=0)
    prominence = check_real("prominence", prominence, minimum=0)
    beam_centre, beam_radius = check_beam(beam_centre, beam_radius, data)
    if ring_edges is not None:
        ring_edges = _check_edges(ring_edges)
    prepared, _ = prepare_patterns(
        data, function="annular", binning=binning, normalize=normalize, nan_policy=nan_policy
    )
    b = prepared.binning
    shape = prepared.mean_pattern.shape
    centre, radius = locate_beam(prepared.mean_pattern, b, beam_centre, beam_radius)
    outer = inscribed_radius(shape, centre)
    if outer <= radius and ring_edges is None:
        raise ValueError(
            f"annular: the direct beam (radius {radius * b:.3g} px) leaves no complete ring on the "
            "detector; give ring_edges."
        )
    # The mean pattern's profile in one-pixel rings, for the edges and for the user.
    start = 0.0
    npt = max(1, int(round(max(outer, 1.0) - start)))
    mean_stack = da.from_array(prepared.mean_pattern[None].astype(np.float32))
    profile = np.asarray(azimuthal_mean(mean_stack, centre, npt, (start, max(outer, 1.0))).compute()[0])
    profile_radii = (start + (np.arange(npt) + 0.5) * (max(outer, 1.0) - start) / npt) * b
    if ring_edges is None:
        # Minima are looked for outside the direct beam only: its
        # brightness would dwarf every ring.
        first = int(np.searchsorted(profile_radii / b, radius, side="right"))
        minima = profile_minima(profile[first:], smooth, prominence) + first
        edges = [radius] + [float(profile_radii[i] / b) for i in minima] + [outer]
        edges = sorted(set(e for e in edges if radius <= e <= outer))
        if max_rings is not None:
            edges = edges[: max_rings + 1]
    else:
        edges = [e / b for e in ring_edges]
    edges = np.asarray(edges, dtype=np.float64)
    if edges.size < 2:
        raise ValueError("annular: fewer than two ring edges; give ring_edges.")
    labels = sector_labels(shape, centre, edges, n_sectors)
    n_labels = (edges.size - 1) * n_sectors
    counts = np.bincount(labels[labels >= 0].ravel(), minlength=n_labels)
    if np.any(counts == 0):
        empty = np.flatnonzero(counts == 0)
        raise ValueError(
            f"annular: {empty.size} of {n_labels} sectors hold no detector pixel (ring {int(empty[0]) // n_sectors}, "
            f"edges {[round(e * b, 2) for e in edges]} px): use fewer sectors (n_sectors={n_sectors}), wider rings "
            "or less binning."
        )
    weights = np.zeros((labels.size, n_labels), dtype=np.float32)
    flat_labels = labels.ravel()
    on = flat_labels >= 0
    weights[np.flatnonzero(on), flat_labels[on]] = 1.0 / counts[flat_labels[on]]
    patterns = prepared.data
    features = patterns.map_blocks(
        _sector_means,
        weights,
        dtype=np.float32,
        drop_axis=[patterns.ndim - 1],
        chunks=patterns.chunks[:-2] + ((n_labels,),),
    )
    neutral = _sector_means(prepared.mean_pattern, weights)
    if scale == "log":
        features, neutral = safe_log(features), safe_log(neutral)
    if contrast:
        features = features.map_blocks(
            _ring_contrast, n_sectors, dtype=np.float32,
            chunks=features.chunks[:-1] + ((n_labels + edges.size - 1,),),
        )
        neutral = _ring_contrast(neutral, n_sectors)
    if prepared.excluded.any():
        features = neutral_fill(features, prepared.excluded, neutral)
    features = finish(features, prepared, "annular")
    parameters = provenance(
        {
            "n_sectors": n_sectors,
            "n_rings": int(edges.size - 1),
            "ring_edges": [float(e * b) for e in edges],
            "ring_edges_found": ring_edges is None,
            "max_rings": -1 if max_rings is None else max_rings,
            "smooth": smooth,
            "prominence": prominence,
            "binning": b,
            "scale": scale,
            "contrast": contrast,
        },
        normalize=normalize,
        beam=beam_provenance(centre, radius, b, beam_centre),
        n_features=features.shape[-1],
        nan_policy=nan_policy,
    )
    return AnnularResult(
        features=features,
        ring_edges=edges * b,
        labels=labels,
        mean_profile=profile.astype(np.float32),
        profile_radii=profile_radii,
        mean_pattern=prepared.mean_pattern,
        beam_centre=centre,
        beam_radius=radius,
        parameters=parameters,
        excluded=prepared.excluded,
    )


def _check_edges(ring_edges):
    if isinstance(ring_edges, str) or np.ndim(ring_edges) != 1 or len(ring_edges) < 2:
        raise ValueError(f"ring_edges must be at least two increasing radii in pixels, got {ring_edges!r}.")
    try:
        edges = [float(e) for e in ring_edges]
    except (TypeError, ValueError):
        raise TypeError(f"ring_edges must hold numbers, got {ring_edges!r}.") from None
    for e in edges:
        check_real("ring_edges", e, minimum=0)
    if np.any(np.diff(edges) <= 0):
        raise ValueError(f"ring_edges must be strictly increasing, got {ring_edges!r}.")
    return edges
