"""Radial (azimuthally integrated) profiles of 4D-STEM diffraction patterns.

The mean intensity on rings about the direct beam is what amorphous,
nanocrystalline and randomly textured materials show best: their rings
stand where the lattice spacings are, whatever the orientation of the
grains. The profile is blind to angles: two phases with the same lattice
spacings but a different arrangement of spots (a single crystal and its
fibre-textured or nanocrystalline form, two grains rotated against each
other) have the same profile. The variance of the intensity within each
ring (``variance=True``) sees that difference: spots make a ring uneven,
a powder ring is even.

The integration is pyxem's (:meth:`pyxem.signals.Diffraction2D.get_azimuthal_integral1d`,
with exact pixel splitting), mapped lazily over the scan.

All functions take numpy or dask arrays of shape ``(*navigation, H, W)``.
"""

import warnings
from dataclasses import dataclass, field

import numpy as np

from .._validation import check_bool, check_int, check_real
from .._docstrings import fill_doc
from ._common import beam_provenance, check_beam, neutral_fill, provenance, safe_log, unbinned
from ._patterns import check_scale, finish, locate_beam, prepare_patterns

__all__ = ["RadialResult", "azimuthal_mean", "inscribed_radius", "radial"]


@fill_doc
@dataclass
class RadialResult:
    """What the radial integration found and extracted.

    Attributes
    ----------
    features : numpy.ndarray or dask.array.Array
        ``(*navigation, n_rings)`` float32 ring means, followed by the ring
        variances when ``variance=True`` (``2 * n_rings``); ``log1p`` scaled
        unless ``scale="linear"``. Lazy when the input was.
    radii : numpy.ndarray
        ``(n_rings,)`` centre radius of every ring in unbinned detector pixels.
    ring_edges : numpy.ndarray
        ``(n_rings + 1,)`` ring boundaries in unbinned pixels.
    mean_profile : numpy.ndarray
        ``(n_rings,)`` radial profile of the mean pattern (linear scale).
    %(result_mean_pattern)s
    beam_centre : tuple of float
        (row, column) of the integration centre on the binned grid.
    beam_radius : float
        Radius of the direct beam on the binned grid.
    %(result_parameters)s
    %(result_excluded_mean_pattern)s
    """

    features: object
    radii: np.ndarray
    ring_edges: np.ndarray
    mean_profile: np.ndarray
    mean_pattern: np.ndarray
    beam_centre: tuple
    beam_radius: float
    parameters: dict = field(default_factory=dict)
    excluded: np.ndarray = None


def inscribed_radius(shape, centre):
    """Radius of the largest circle about ``centre`` (row, column) inside the detector.

    Pixel ``i`` spans ``i - 0.5`` to ``i + 0.5``.

    Examples
    --------
    >>> inscribed_radius((32, 32), (15.5, 15.5))
    16.0
    """
    rows, cols = shape
    r, c = centre
    return float(max(0.0, min(r + 0.5, rows - 0.5 - r, c + 0.5, cols - 0.5 - c)))


def azimuthal_mean(patterns, centre, npt, radial_range):
    """Mean intensity on ``npt`` rings about ``centre``, lazily, with pyxem.

    A thin adapter over :meth:`pyxem.signals.Diffraction2D.get_azimuthal_integral1d`
    (``mean=True``): the patterns are wrapped, without copying, in a lazy
    pyxem signal whose detector axes are in pixels with their origin at
    ``centre``, and pyxem's per-pattern integration is mapped over the
    scan. Nothing is computed here.

    Parameters
    ----------
    patterns : dask.array.Array
        ``(*navigation, H, W)`` with at least one navigation dimension.
    centre : (float, float)
        (row, column) in pixels of ``patterns``.
    npt : int
        Number of rings.
    radial_range : (float, float)
        Inner and outer radius in pixels of ``patterns``.

    Returns
    -------
    dask.array.Array
        ``(*navigation, npt)`` float32.

    Examples
    --------
    >>> import dask.array as da, numpy as np
    >>> rows, cols = np.mgrid[:21, :21]
    >>> ring = (np.abs(np.hypot(rows - 10, cols - 10) - 5.5) < 0.5).astype(float)
    >>> profile = azimuthal_mean(da.from_array(np.stack([ring, 2 * ring])), (10, 10), 8, (0, 8)).compute()
    >>> int(np.argmax(profile[0])), bool(np.allclose(profile[1], 2 * profile[0]))
    (5, True)
    """
    from pyxem.signals import LazyDiffraction2D

    signal = LazyDiffraction2D(patterns)
    for axis in signal.axes_manager.signal_axes:
        axis.scale, axis.units = 1.0, "px"
    # pyxem's order is (x, y) = (column, row).
    signal.calibration.center = (float(centre[1]), float(centre[0]))
    with warnings.catch_warnings():
        # pyxem/hyperspy chatter about the calibration of a plain pixel grid.
        warnings.filterwarnings("ignore", category=UserWarning)
        integral = signal.get_azimuthal_integral1d(
            npt=int(npt), radial_range=(float(radial_range[0]), float(radial_range[1])), mean=True
        )
    return integral.data.astype(np.float32)


@fill_doc
def radial(
    data,
    *,
    npt=None,
    radial_range=None,
    variance=False,
    binning=1,
    scale="log",
    beam_centre=None,
    beam_radius=None,
    normalize="total",
    nan_policy="raise",
):
    """Radial profiles (and optionally ring variances) of diffraction patterns.

    Parameters
    ----------
    %(diffraction_data)s
    npt : int, optional
        Number of rings. Default: one a (binned) pixel across ``radial_range``.
    radial_range : (float, float), optional
        Inner and outer radius about the beam centre, in unbinned detector
        pixels. Default: from the edge of the direct beam to the largest
        circle that fits on the detector, so that every ring is complete.
    variance : bool, default False
        Also return the variance of the intensity within every ring:
        large for rings made of spots, small for even (powder) rings.
        Separates a single crystal from its textured or nanocrystalline
        form, which the profile alone cannot.
    %(binning_1)s
    scale : {"log", "linear"}, default "log"
        ``log1p`` of the ring means (and variances), which equalises weak
        outer rings and the strong inner ones, or the values themselves.
    beam_centre : (float, float), optional
        (row, column) of the direct beam in unbinned pixels; found in the
        mean pattern when omitted. The descan (beam drift over the scan) is
        not followed: correct it first (pyxem's ``center_direct_beam``) if
        it is larger than a ring.
    beam_radius : float, optional
        Radius of the direct beam in unbinned pixels (default inner radius);
        found when omitted.
    %(normalize_patterns)s
    nan_policy : {"raise", "exclude"}, default "raise"
        Positions holding NaN or inf: refuse the data, or leave them out of
        the mean pattern and the normalisation and give them the features of
        the mean pattern (``RadialResult.excluded`` marks them).

    Returns
    -------
    RadialResult
        Features are lazy if ``data`` is a dask array, else numpy.

    Notes
    -----
    Radial profiles separate phases whose lattice spacings differ, in any
    orientation. They cannot separate phases with the same spacings that
    differ only in the angular arrangement of the spots; use
    ``variance=True``, :func:`~stemfuse_hs.features.annular.annular` or
    :func:`~stemfuse_hs.features.sdt.sdt` there.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> patterns = rng.poisson(5.0, size=(4, 5, 24, 24))
    >>> result = radial(patterns, radial_range=(2, 10), npt=8, beam_centre=(11.5, 11.5))
    >>> result.features.shape, result.radii.tolist()[:2]
    ((4, 5, 8), [2.5, 3.5])
    """
    variance = check_bool("variance", variance)
    check_scale(scale)
    beam_centre, beam_radius = check_beam(beam_centre, beam_radius, data)
    if npt is not None:
        npt = check_int("npt", npt, minimum=1)
    if radial_range is not None:
        radial_range = _check_range(radial_range)
    prepared, _ = prepare_patterns(
        data, function="radial", binning=binning, normalize=normalize, nan_policy=nan_policy
    )
    b = prepared.binning
    centre, radius = locate_beam(prepared.mean_pattern, b, beam_centre, beam_radius)
    shape = prepared.mean_pattern.shape
    if radial_range is None:
        outer = inscribed_radius(shape, centre)
        if outer <= radius:
            raise ValueError(
                f"radial: the direct beam (radius {radius * b:.3g} px at {tuple(round(unbinned(c, b, True), 1) for c in centre)}) "
                "leaves no complete ring on the detector; give radial_range."
            )
        inner_outer = (radius, outer)
    else:
        inner_outer = (radial_range[0] / b, radial_range[1] / b)
    if npt is None:
        npt = max(1, int(round(inner_outer[1] - inner_outer[0])))
    edges = np.linspace(inner_outer[0], inner_outer[1], npt + 1)

    features, mean_profile, neutral = _profiles(prepared, centre, npt, inner_outer, variance, scale)
    excluded = prepared.excluded
    if excluded.any():
        features = neutral_fill(features, excluded, neutral)
    features = finish(features, prepared, "radial")
    parameters = provenance(
        {
            "npt": int(npt),
            "radial_range": [float(e * b) for e in inner_outer],
            "radial_range_found": radial_range is None,
            "variance": variance,
            "binning": b,
            "scale": scale,
        },
        normalize=normalize,
        beam=beam_provenance(centre, radius, b, beam_centre),
        n_features=features.shape[-1],
        nan_policy=nan_policy,
    )
    return RadialResult(
        features=features,
        radii=((edges[:-1] + edges[1:]) / 2 * b).astype(np.float64),
        ring_edges=(edges * b).astype(np.float64),
        mean_profile=mean_profile.astype(np.float32),
        mean_pattern=prepared.mean_pattern,
        beam_centre=centre,
        beam_radius=radius,
        parameters=parameters,
        excluded=excluded,
    )


def _profiles(prepared, centre, npt, radial_range, variance, scale):
    """Lazy features, the mean pattern's profile and the neutral feature vector."""
    import dask.array as da

    patterns = prepared.data
    means = azimuthal_mean(patterns, centre, npt, radial_range)
    mean_pattern = da.from_array(prepared.mean_pattern[None].astype(np.float32))
    blocks = [means]
    neutral_blocks = [azimuthal_mean(mean_pattern, centre, npt, radial_range)]
    if variance:
        squares = azimuthal_mean(patterns * patterns, centre, npt, radial_range)
        blocks.append((squares - means * means).clip(min=0))
        # The mean pattern's rings have no spread of their own to measure;
        # excluded positions get the scan's typical spread instead.
        neutral_blocks.append(da.zeros_like(neutral_blocks[0]))
    features = da.concatenate(blocks, axis=-1) if len(blocks) > 1 else blocks[0]
    neutral = np.asarray(da.concatenate(neutral_blocks, axis=-1).compute()[0], dtype=np.float32)
    mean_profile = neutral[:npt].copy()
    if variance and prepared.excluded.any():
        spread = da.nanmean(blocks[1].reshape(-1, npt)[~prepared.excluded.ravel()], axis=0)
        neutral[npt:] = np.asarray(spread.compute(), dtype=np.float32)
    if scale == "log":
        features = safe_log(features)
        neutral = safe_log(neutral)
    return features.astype(np.float32), mean_profile, neutral


def _check_range(radial_range):
    if isinstance(radial_range, str) or np.ndim(radial_range) != 1 or len(radial_range) != 2:
        raise ValueError(f"radial_range must be (inner, outer) radii in pixels, got {radial_range!r}.")
    try:
        inner, outer = (float(r) for r in radial_range)
    except (TypeError, ValueError):
        raise TypeError(f"radial_range must hold two numbers, got {radial_range!r}.") from None
    check_real("radial_range", inner, minimum=0)
    check_real("radial_range", outer)
    if not outer > inner:
        raise ValueError(f"radial_range: the outer radius must exceed the inner one, got {radial_range!r}.")
    return inner, outer
