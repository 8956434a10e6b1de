"""Binarised 4D-STEM diffraction patterns, for a Jaccard metric.

A pixel is "on" where the pattern is clearly brighter than usual there: by
default, more than ``sigma`` Poisson standard deviations above the scan's
mean pattern; or above a given ``threshold``. What remains is which Bragg
disks are present, not how bright they are, which thickness and bending
change several-fold within one phase. Compare such sets with the Jaccard
distance (``cluster(metric="jaccard")``): the share of lit pixels that two
positions do not have in common.

All functions take numpy or dask arrays of shape ``(*navigation, H, W)``.
"""

from dataclasses import dataclass, field

import numpy as np

from .._validation import check_real
from .._docstrings import fill_doc
from ._common import beam_provenance, check_beam, neutral_fill, provenance
from ._patterns import finish, locate_beam, prepare_patterns
from .sdt import disk_mask

__all__ = ["BinaryResult", "binarize"]


@fill_doc
@dataclass
class BinaryResult:
    """What the binarisation used and extracted.

    Attributes
    ----------
    features : numpy.ndarray or dask.array.Array
        ``(*navigation, n_pixels)`` float32 0/1 of every binned pixel outside
        the direct-beam disk. Lazy when the input was.
    threshold_map : numpy.ndarray
        ``(H', W')`` the value each pixel had to exceed.
    %(result_mean_pattern)s
    %(result_beam_mask)s
    pixel_indices : numpy.ndarray
        ``(n_pixels, 2)`` (row, column) of every feature on the binned grid.
    %(result_parameters)s
    excluded : numpy.ndarray
        ``navigation``-shaped boolean mask of the positions left out
        (``nan_policy="exclude"``); their features are those of the mean
        pattern (all off).
    """

    features: object
    threshold_map: np.ndarray
    mean_pattern: np.ndarray
    beam_mask: np.ndarray
    pixel_indices: np.ndarray
    parameters: dict = field(default_factory=dict)
    excluded: np.ndarray = None


def _binarize_block(block, limit, index):
    flat = block.reshape(block.shape[:-2] + (-1,))[..., index]
    return (flat > limit).astype(np.float32)


@fill_doc
def binarize(
    data,
    *,
    threshold=None,
    sigma=3.0,
    binning=2,
    beam_centre=None,
    beam_radius=None,
    normalize="total",
    nan_policy="raise",
):
    """Binarise diffraction patterns above a threshold.

    Parameters
    ----------
    %(diffraction_data)s
    threshold : float, optional
        A pixel is on above this value (counts after binning and
        normalisation), the same for every pixel.
    sigma : float, default 3
        Without ``threshold``: a pixel is on where it exceeds the scan's mean
        pattern ``m`` there by ``sigma * sqrt(m)`` (Poisson standard
        deviations), i.e. where something appears that most positions do
        not have.
    %(binning_2)s
    %(beam_centre)s
    %(beam_radius_excluded)s
    %(normalize_patterns)s
    nan_policy : {"raise", "exclude"}, default "raise"
        Positions holding NaN or inf: refuse the data, or leave them out of
        the mean pattern and normalisation and give them all-off features.

    Returns
    -------
    BinaryResult
        Features are lazy if ``data`` is a dask array, else numpy.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> patterns = rng.poisson(5.0, size=(4, 5, 16, 16)).astype(float)
    >>> patterns[:2, :, 3, 3] += 200  # a spot at half the positions
    >>> result = binarize(patterns, binning=1, beam_radius=0)
    >>> spot = np.flatnonzero((result.pixel_indices == [3, 3]).all(axis=1))[0]
    >>> result.features[:, :, spot].astype(int).tolist()[1:3]
    [[1, 1, 1, 1, 1], [0, 0, 0, 0, 0]]
    """
    if threshold is not None:
        threshold = check_real("threshold", threshold)
    sigma = check_real("sigma", sigma, minimum=0)
    beam_centre, beam_radius = check_beam(beam_centre, beam_radius, data)
    prepared, _ = prepare_patterns(
        data, function="binarize", binning=binning, normalize=normalize, nan_policy=nan_policy
    )
    b = prepared.binning
    mean_pattern = prepared.mean_pattern
    centre, radius = locate_beam(mean_pattern, b, beam_centre, beam_radius)
    beam = disk_mask(mean_pattern.shape, centre, radius) if radius > 0 else np.zeros(mean_pattern.shape, bool)
    if beam.all():
        raise ValueError("binarize: the direct-beam disk covers the whole detector; give a smaller beam_radius.")
    if threshold is None:
        m = np.clip(mean_pattern.astype(np.float64), 0, None)
        limit_map = (m + sigma * np.sqrt(m)).astype(np.float32)
    else:
        limit_map = np.full(mean_pattern.shape, threshold, dtype=np.float32)
    index = np.flatnonzero(~beam)
    patterns = prepared.data
    features = patterns.map_blocks(
        _binarize_block,
        limit_map.ravel()[index],
        index,
        dtype=np.float32,
        drop_axis=[patterns.ndim - 1],
        chunks=patterns.chunks[:-2] + ((index.size,),),
    )
    if prepared.excluded.any():
        features = neutral_fill(features, prepared.excluded, np.zeros(index.size, np.float32))
    features = finish(features, prepared, "binarize")
    parameters = provenance(
        {
            "threshold": float("nan") if threshold is None else threshold,
            "threshold_rule": "mean_pattern" if threshold is None else "value",
            "sigma": sigma,
            "binning": b,
        },
        normalize=normalize,
        beam=beam_provenance(centre, radius, b, beam_centre),
        n_features=index.size,
        nan_policy=nan_policy,
    )
    return BinaryResult(
        features=features,
        threshold_map=limit_map,
        mean_pattern=mean_pattern,
        beam_mask=beam,
        pixel_indices=np.argwhere(~beam),
        parameters=parameters,
        excluded=prepared.excluded,
    )
