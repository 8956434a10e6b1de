"""Cepstra of 4D-STEM diffraction patterns: ``|FFT(log1p(pattern))|``.

The logarithm turns the lattice of Bragg disks into a sum of periodic
terms, whose Fourier transform has sharp peaks at the lattice's periods
(the "quefrencies"), wherever the disks are and however their intensities
change with thickness. The method's advice: "try cepstrum next if SDT is not
working well" — for strained, bent or drifting crystals, whose spots move
between pixels.

The magnitude of the transform of a real image is centrosymmetric, so only
one half of the cropped centre is kept, without the zero-quefrency term
(the summed log intensity, which measures brightness, not periodicity).

All functions take numpy or dask arrays of shape ``(*navigation, H, W)``.
"""

from dataclasses import dataclass, field

import dask
import dask.array as da
import numpy as np

from .._validation import check_fraction
from .._docstrings import fill_doc
from ._common import neutral_fill, provenance, safe_log
from ._patterns import finish, prepare_patterns
from .sdt import select_top_fraction

__all__ = ["CepstrumResult", "cepstrum", "half_plane"]


@fill_doc
@dataclass
class CepstrumResult:
    """What the cepstral transform kept and extracted.

    Attributes
    ----------
    features : numpy.ndarray or dask.array.Array
        ``(*navigation, n_features)`` float32 cepstral magnitudes of the kept
        quefrencies. Lazy when the input was.
    mean_cepstrum : numpy.ndarray
        ``(2 * ky + 1, 2 * kx + 1)`` mean cepstrum of the cropped centre
        (zero quefrency in the middle, set to 0).
    std_map : numpy.ndarray or None
        Same shape: standard deviation over the scan (with ``fraction``).
    selected_mask : numpy.ndarray
        Same shape: True for the quefrencies kept as features.
    quefrency_indices : numpy.ndarray
        ``(n_features, 2)`` (row, column) quefrency of every feature, in
        cycles across the binned detector (zero in the middle).
    %(result_parameters)s
    %(result_excluded_mean_features)s
    """

    features: object
    mean_cepstrum: np.ndarray
    std_map: object
    selected_mask: np.ndarray
    quefrency_indices: np.ndarray
    parameters: dict = field(default_factory=dict)
    excluded: np.ndarray = None


def half_plane(ky, kx):
    """Mask of the non-redundant half of a ``(2ky+1, 2kx+1)`` centred grid.

    Keeps quefrencies with ``qy > 0``, or ``qy == 0`` and ``qx > 0``: one of
    every pair ``q, -q`` and not the origin.

    Examples
    --------
    >>> half_plane(1, 1).astype(int).tolist()
    [[0, 0, 0], [0, 0, 1], [1, 1, 1]]
    """
    qy, qx = np.mgrid[-ky : ky + 1, -kx : kx + 1]
    return (qy > 0) | ((qy == 0) & (qx > 0))


def _cepstrum_block(block, ky, kx):
    """``|fftshift(fft2(block))|`` cropped to ``(2ky+1, 2kx+1)`` about zero."""
    h, w = block.shape[-2:]
    spectrum = np.abs(np.fft.fftshift(np.fft.fft2(block.astype(np.float32, copy=False)), axes=(-2, -1)))
    cy, cx = h // 2, w // 2
    return spectrum[..., cy - ky : cy + ky + 1, cx - kx : cx + kx + 1].astype(np.float32)


@fill_doc
def cepstrum(
    data,
    *,
    binning=2,
    crop=0.5,
    fraction=None,
    normalize="total",
    nan_policy="raise",
):
    """Cepstral features ``|FFT(log1p(pattern))|`` of diffraction patterns.

    Parameters
    ----------
    %(diffraction_data)s
    %(binning_2)s
    crop : float, default 0.5
        Fraction, in (0, 1], of the largest quefrency kept along each
        detector axis: the informative centre. Lattice periods of several
        pixels show as peaks at low quefrencies; the high ones hold
        pixel-scale noise.
    fraction : float, optional
        Keep only this fraction of the (non-redundant) cropped quefrencies,
        those whose magnitude varies most over the scan (standard-deviation
        thresholding, as SDT does for pixels). All by default.
    %(normalize_patterns)s
    %(nan_policy_mean_features)s

    Returns
    -------
    CepstrumResult
        Features are lazy if ``data`` is a dask array, else numpy.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> patterns = rng.poisson(5.0, size=(4, 5, 32, 32))
    >>> result = cepstrum(patterns, binning=2, crop=0.5)
    >>> result.features.shape, result.mean_cepstrum.shape
    ((4, 5, 40), (9, 9))
    """
    crop = check_fraction("crop", crop)
    if fraction is not None:
        fraction = check_fraction("fraction", fraction)
    prepared, _ = prepare_patterns(
        data, function="cepstrum", binning=binning, normalize=normalize, nan_policy=nan_policy
    )
    h, w = prepared.mean_pattern.shape
    if min(h, w) < 3:
        raise ValueError(
            f"cepstrum: the binned detector is {h} x {w} pixels; at least 3 x 3 are needed (less binning)."
        )
    ky = max(1, int(round(crop * ((h - 1) // 2))))
    kx = max(1, int(round(crop * ((w - 1) // 2))))
    patterns = prepared.data
    spectra = safe_log(patterns).map_blocks(
        _cepstrum_block, ky, kx, dtype=np.float32,
        chunks=patterns.chunks[:-2] + ((2 * ky + 1,), (2 * kx + 1,)),
    )
    half = half_plane(ky, kx)
    flat = spectra.reshape(spectra.shape[:-2] + (-1,))
    nav_axes = tuple(range(flat.ndim - 1))
    excluding = bool(prepared.excluded.any())
    mean = da.nanmean if excluding else da.mean
    reductions = {"mean": mean(spectra, axis=nav_axes, dtype=np.float64)}
    if fraction is not None:
        reductions["std"] = (da.nanstd if excluding else da.std)(spectra, axis=nav_axes, dtype=np.float64)
    computed = dict(zip(reductions, dask.compute(*reductions.values())))
    mean_cepstrum = computed["mean"].astype(np.float32)
    mean_cepstrum[ky, kx] = 0.0
    std_map = None
    if fraction is not None:
        std_map = computed["std"].astype(np.float32)
        std_map[ky, kx] = 0.0
        selected = select_top_fraction(std_map, half, fraction)
    else:
        selected = half
    index = np.flatnonzero(selected)
    features = flat[..., index]
    if excluding:
        features = neutral_fill(features, prepared.excluded, mean_cepstrum.ravel()[index])
    features = finish(features, prepared, "cepstrum")
    parameters = provenance(
        {
            "binning": prepared.binning,
            "crop": crop,
            "max_quefrency": [ky, kx],
            "fraction": float("nan") if fraction is None else fraction,
        },
        normalize=normalize,
        n_features=index.size,
        nan_policy=nan_policy,
    )
    return CepstrumResult(
        features=features,
        mean_cepstrum=mean_cepstrum,
        std_map=std_map,
        selected_mask=selected,
        quefrency_indices=np.argwhere(selected) - np.array([ky, kx]),
        parameters=parameters,
        excluded=prepared.excluded,
    )
