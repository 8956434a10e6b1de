"""How accurately the phase merge measures Bragg-spot spacings, against the truth.

For the interior of every grain of the polycrystal scenarios (positions
whose 8 neighbours are the same grain, at most 150), the mean pattern is
handed to a spacing detector and its spacings are compared with the
radii of the grain's reflections (``scan.grain_g_vectors``):

* ``false``: spacings farther than 0.3 px from every reflection that
  holds more than 3 counts per pattern on average;
* ``found``: reflections holding more than 20 counts per pattern (one per
  distinct radius, inside 14.5 px) with a spacing within 0.3 px;
* the error of every spacing against its nearest reflection.

Three detectors: the package's
(:func:`stemfuse_hs.clustering.phases.ring_spacings` about the direct
beam's centroid, as :func:`stemfuse_hs.merge_phases` calls it for the
overlap tests), the same about the centre of the spots' Friedel pairs (as
it is called for the scan's lattice) and the experiment below, which
centres the pattern on the point about which it is most rotationally
symmetric (``symmetric``). Measured 2026-12-05 (tiny scans, seeds 0-2,
AMD EPYC): the package's detector 19 false spacings (27 before its
background was interpolated between quarter-pixel rings), 412 of 515
reflections, median error 0.055 px; about the Friedel centre 11 false
(19 before), 0.031 px; the experiment 6 false, 409 found, 0.035 px. The
experiment's centre did not make the phase map score better (see the
workflow page), so it is not the package's detector. Since small spots
are located by the Gaussian through their 3 x 3 sums on a background
taken without them (2026-12-06, 2ea28de, Intel Xeon): the package's
detector 16 false, 423 found, 0.044 px (90th percentile 0.167); about
the Friedel centre 9 false, 0.007 px (0.064); the experiment 4 false,
412 found, 0.025 px. Run::

    python benchmarks/spacing_precision.py            # tiny, seeds 0 1 2
    python benchmarks/spacing_precision.py --size small --seeds 0 1
"""

import argparse

import numpy as np
from scipy import ndimage

from stemfuse_hs.clustering.phases import spot_spacings

#: Width of the rings (pixels) over which the background median is taken.
RING_WIDTH = 0.5
#: Largest pattern side on which the centre is refined; larger patterns are
#: binned to it first (the optimum moves by less than a binned pixel's tenth).
CENTRE_SEARCH_SIDE = 64


def _ring_medians(values, radius, width, keep=None):
    """Mean radius and median of ``values`` per ring of ``width`` (NaN where a ring has fewer than 3 pixels).

    The ring's mean radius, not its middle, is where the median value
    belongs: a ring's pixels are not spread evenly over its width.
    """
    ring = np.floor(radius / width).astype(np.int64).ravel()
    n_rings = int(ring.max()) + 1
    values, radius = values.ravel(), radius.ravel()
    if keep is not None:
        keep = np.asarray(keep).ravel()
        ring, values, radius = ring[keep], values[keep], radius[keep]
    counts = np.bincount(ring, minlength=n_rings)
    radii = np.bincount(ring, weights=radius, minlength=n_rings) / np.maximum(counts, 1)
    # One sort by ring, then by value, gives every ring's median by position.
    order = np.lexsort((values, ring))
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    low = starts + (counts - 1) // 2
    high = starts + counts // 2
    ordered = values[order]
    medians = np.full(n_rings, np.nan)
    has = counts >= 3
    medians[has] = 0.5 * (ordered[low[has]] + ordered[high[has]])
    return radii, medians


def symmetric_background(pattern, centre, *, width=RING_WIDTH, exclude=None):
    """The experiment's rotationally symmetric part of a pattern: ring medians, interpolated in radius.

    The package's :func:`stemfuse_hs.clustering.phases.radial_background`
    is the adopted form (linear medians of quarter-pixel rings, no
    exclusion); this one keeps the experiment as it was measured.

    The logarithm of the pattern's median over every ring ``width`` pixels
    wide is interpolated linearly to each pixel's own radius, so a profile
    that falls tenfold within a pixel (the beam's tail) is followed within
    a ring, not stepped at its edges.

    Parameters
    ----------
    pattern : numpy.ndarray
        ``(H, W)`` non-negative intensities.
    centre : (float, float)
        (row, column) of the symmetry centre, pixels.
    width : float, default 0.5
    exclude : numpy.ndarray, optional
        ``(H, W)`` bool: pixels left out of the medians (spots found already).

    Returns
    -------
    numpy.ndarray
        ``(H, W)`` float64 background.

    Examples
    --------
    >>> import numpy as np
    >>> rows, cols = np.mgrid[:33, :33]
    >>> halo = 100 * np.exp(-np.hypot(rows - 16.3, cols - 15.8) / 3)
    >>> background = symmetric_background(halo, (16.3, 15.8))
    >>> inside = (np.hypot(rows - 16.3, cols - 15.8) > 2) & (np.hypot(rows - 16.3, cols - 15.8) < 15)
    >>> bool(np.abs(background / halo - 1)[inside].max() < 0.02)
    True
    """
    pattern = np.asarray(pattern, dtype=np.float64)
    rows, cols = np.indices(pattern.shape)
    radius = np.hypot(rows - centre[0], cols - centre[1])
    log_pattern = np.log(np.maximum(pattern, 1e-9))
    keep = None if exclude is None else ~np.asarray(exclude, dtype=bool)
    centres, medians = _ring_medians(log_pattern, radius, width, keep)
    known = np.isfinite(medians)
    if not known.any():
        return np.full(pattern.shape, float(np.median(pattern)))
    return np.exp(np.interp(radius, centres[known], medians[known]))


def _asymmetry(log_pattern, centre, inner_radius, outer_radius, width):
    """How far a pattern is from rotational symmetry about ``centre``: mean of the lower 80 % of |log residuals|."""
    rows, cols = np.indices(log_pattern.shape)
    radius = np.hypot(rows - centre[0], cols - centre[1])
    centres, medians = _ring_medians(log_pattern, radius, width)
    known = np.isfinite(medians)
    if known.sum() < 2:
        return np.inf
    residual = np.abs(log_pattern - np.interp(radius, centres[known], medians[known]))
    residual = residual[(radius >= inner_radius) & (radius <= outer_radius)]
    if residual.size < 8:
        return np.inf
    # Spots are the largest residuals: leave them out.
    return float(np.mean(np.partition(residual, int(0.8 * residual.size))[: int(0.8 * residual.size)]))


def symmetric_centre(pattern, start, *, inner_radius=0.0, outer_radius=None, width=RING_WIDTH, max_shift=1.0):
    """The point about which a mean pattern is most rotationally symmetric, to a fraction of a pixel.

    The diffuse background, the beam's halo and an amorphous ring are
    centred on the direct beam; a centre half a pixel off makes the near
    side of every ring brighter than the far side. The centre minimises
    the typical (lower 80 %: spots excluded) deviation of the log
    pattern from its ring medians between ``inner_radius`` and
    ``outer_radius`` (Nelder-Mead from ``start``). Patterns larger than
    64 pixels are binned to about 64 first.

    Parameters
    ----------
    pattern : numpy.ndarray
        ``(H, W)`` mean pattern.
    start : (float, float)
        First guess (row, column), e.g. from
        :func:`~stemfuse_hs.features.sdt.find_direct_beam`.
    inner_radius, outer_radius : float, optional
        Radii compared; by default from the centre to the largest circle
        inside the detector.
    width : float, default 0.5
        Ring width of the medians, in (unbinned) pixels.
    max_shift : float, default 1
        Largest move from ``start`` (pixels) that is believed; a search
        that goes further returns ``start``.

    Returns
    -------
    (float, float)
        (row, column) in pixels.

    Examples
    --------
    >>> import numpy as np
    >>> rows, cols = np.mgrid[:32, :32]
    >>> r = np.hypot(rows - 14.3, cols - 16.6)
    >>> pattern = 200 * np.exp(-r) + 20 * np.exp(-0.5 * ((r - 6) / 0.6) ** 2) + 5
    >>> [round(c, 1) for c in symmetric_centre(pattern, (14.0, 17.0), inner_radius=1.5)]
    [14.3, 16.6]
    """
    from scipy import optimize

    pattern = np.nan_to_num(np.asarray(pattern, dtype=np.float64))
    factor = max(1, int(max(pattern.shape) // CENTRE_SEARCH_SIDE))
    if factor > 1:
        h, w = (pattern.shape[0] // factor) * factor, (pattern.shape[1] // factor) * factor
        pattern = pattern[:h, :w].reshape(h // factor, factor, w // factor, factor).mean(axis=(1, 3))
    rows, cols = pattern.shape
    # A binned pixel's centre sits half a binned pixel in from its first unbinned one.
    shift = (factor - 1) / 2.0
    first = np.array([(start[0] - shift) / factor, (start[1] - shift) / factor])
    if outer_radius is None:
        outer = min(first[0] + 0.5, rows - 0.5 - first[0], first[1] + 0.5, cols - 0.5 - first[1])
    else:
        outer = outer_radius / factor
    inner = inner_radius / factor
    step = max(width / factor, 0.1)
    log_pattern = np.log(np.maximum(pattern, 1e-9))
    result = optimize.minimize(
        lambda c: _asymmetry(log_pattern, c, inner, outer, step),
        first,
        method="Nelder-Mead",
        options={
            "xatol": 0.03,
            "fatol": 1e-6,
            "initial_simplex": first + np.array([[0.0, 0.0], [0.4, 0.0], [0.0, 0.4]]),
        },
    )
    best = result.x
    # The direct beam's centroid is off by a fraction of a pixel, never
    # more: a search that wanders further has followed spots, not the
    # symmetric background (a pattern with little of it), so the first
    # guess stands.
    if not np.isfinite(result.fun) or np.hypot(*(best - first)) * factor > max_shift:
        best = first
    return float(best[0] * factor + shift), float(best[1] * factor + shift)


def symmetric_ring_spacings(
    pattern,
    centre,
    *,
    inner_radius,
    outer_radius=None,
    n_positions=1,
    disk_radius=1.0,
    significance=8.0,
    min_prominence=0.05,
    merge_distance=None,
    std=None,
    refine_centre=True,
):
    """Spacings (radii) of the Bragg spots in a segment's mean pattern.

    The rotationally symmetric background (:func:`symmetric_background`,
    about the :func:`symmetric_centre`) is subtracted; what is left is the
    spots. Local maxima that stand ``significance`` standard errors above
    the background and reach ``min_prominence`` of the brightest are
    located to a fraction of a pixel by their centroid, and their distances
    from the centre closer than ``merge_distance`` are one spacing (its
    symmetry mates and Friedel pair). The background is found twice, the
    second time without the spots of the first. Where a spot falls on its
    ring (the grain's orientation) and how bright the background is (the
    thickness) do not move a spacing.

    Parameters and returns as
    :func:`stemfuse_hs.clustering.phases.ring_spacings`, and: ``std``
    (``(H, W)``, the standard deviation of the patterns the mean pools:
    the standard error is the larger of the Poisson one and
    ``std / sqrt(n_positions)``) and ``refine_centre`` (refine ``centre``
    with :func:`symmetric_centre` first, default True).

    Examples
    --------
    >>> import numpy as np
    >>> rows, cols = np.mgrid[:64, :64]
    >>> pattern = 1 + 500 * np.exp(-np.hypot(rows - 32, cols - 32) / 1.5)  # the beam and its halo
    >>> for angle, radius in ((0.3, 12), (1.9, 12), (3.4, 12), (0.8, 20)):
    ...     y, x = 32 + radius * np.sin(angle), 32 + radius * np.cos(angle)
    ...     pattern += 50 * np.exp(-((rows - y) ** 2 + (cols - x) ** 2) / 2)
    >>> radii, strengths = symmetric_ring_spacings(pattern, (32, 32), inner_radius=4)
    >>> np.round(radii).tolist(), np.round(strengths, 2).tolist()
    ([12.0, 20.0], [0.74, 0.26])
    """
    from scipy import ndimage

    pattern = np.nan_to_num(np.asarray(pattern, dtype=np.float64))
    rows, cols = pattern.shape
    cy, cx = float(centre[0]), float(centre[1])
    if refine_centre:
        cy, cx = symmetric_centre(
            pattern, (cy, cx), inner_radius=0.5 * inner_radius, outer_radius=outer_radius, max_shift=max(1.0, disk_radius / 2)
        )
    if outer_radius is None:
        outer_radius = min(cy + 0.5, rows - 0.5 - cy, cx + 0.5, cols - 0.5 - cx)
    yy, xx = np.indices(pattern.shape)
    r = np.hypot(yy - cy, xx - cx)
    searched = (r >= inner_radius) & (r <= outer_radius)
    if not searched.any():
        return np.zeros(0), np.zeros(0)
    n_positions = max(float(n_positions), 1.0)

    def smoothed(values):
        return ndimage.gaussian_filter(values, disk_radius / 2.0) if disk_radius > 1.5 else values

    def standard_error(level):
        poisson = np.maximum(level, 1e-12) / n_positions
        if std is None:
            return np.sqrt(poisson)
        return np.sqrt(np.maximum(poisson, np.asarray(std, dtype=np.float64) ** 2 / n_positions))

    level = symmetric_background(pattern, (cy, cx))
    first = smoothed(pattern - level) >= significance * standard_error(level)
    level = symmetric_background(pattern, (cy, cx), exclude=ndimage.binary_dilation(first))
    residual = smoothed(pattern - level)
    noise = standard_error(level)
    if merge_distance is None:
        merge_distance = max(0.5, disk_radius / 3.0)
    return spot_spacings(
        residual,
        noise,
        (cy, cx),
        searched,
        disk_radius=disk_radius,
        significance=significance,
        min_prominence=min_prominence,
        merge_distance=merge_distance,
    )

def package_detector(pattern, std, n_positions, friedel_centre=False):
    from stemfuse_hs.clustering.phases import ring_spacings
    from stemfuse_hs.features.sdt import find_direct_beam

    centre, beam = find_direct_beam(pattern)
    return ring_spacings(
        pattern, centre, inner_radius=beam + 1.0, n_positions=n_positions, disk_radius=beam / 1.25,
        friedel_centre=friedel_centre,
    )[0]


def friedel_detector(pattern, std, n_positions):
    return package_detector(pattern, std, n_positions, friedel_centre=True)


def symmetric_detector(pattern, std, n_positions):
    from stemfuse_hs.features.sdt import find_direct_beam

    centre, beam = find_direct_beam(pattern)
    return symmetric_ring_spacings(
        pattern, centre, inner_radius=beam + 1.0, n_positions=n_positions, disk_radius=beam / 1.25, std=std
    )[0]


DETECTORS = {"package": package_detector, "package, Friedel centre": friedel_detector, "symmetric": symmetric_detector}


def measure(detector, size, seeds, tolerance=0.3):
    """False spacings, reflections found and errors of one detector over the polycrystals' grains."""
    from stemfuse_hs.data import POLY_SCENARIOS, synthetic_scan

    false = found = strong = 0
    errors = []
    for scenario in POLY_SCENARIOS:
        for seed in seeds:
            scan = synthetic_scan(scenario, size=size, seed=seed)
            patterns = np.asarray(scan.dp.data, np.float64).reshape(-1, *scan.dp.data.shape[-2:])
            scale = scan.dp.axes_manager.signal_axes[0].scale
            for grain in range(len(scan.grain_phases)):
                inside = np.flatnonzero(ndimage.binary_erosion(scan.grains == grain).ravel())[:150]
                if inside.size < 15 or len(scan.grain_g_vectors[grain]) == 0:
                    continue
                spacings = np.asarray(detector(patterns[inside].mean(0), patterns[inside].std(0), inside.size))
                counts = scan.grain_spot_intensities(grain).reshape(-1, len(scan.grain_g_vectors[grain]))[inside].mean(0)
                radii = np.hypot(*scan.grain_g_vectors[grain].T) / scale
                present = radii[counts > 3]
                wanted = np.unique(np.round(radii[(counts > 20) & (radii < 14.5 * scan.dp.data.shape[-1] / 32)], 1))
                for spacing in spacings:
                    if present.size == 0 or np.abs(present - spacing).min() > tolerance:
                        false += 1
                    if present.size:
                        errors.append(spacing - present[np.abs(present - spacing).argmin()])
                found += sum(spacings.size > 0 and np.abs(spacings - w).min() <= tolerance for w in wanted)
                strong += wanted.size
    errors = np.abs(np.asarray(errors))
    return {
        "false": false,
        "found": found,
        "strong": strong,
        "median_error": float(np.median(errors)),
        "p90_error": float(np.percentile(errors, 90)),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", default="tiny")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    print("| detector | false spacings | reflections found | median error (px) | 90th percentile (px) |")
    print("|---|---|---|---|---|")
    for name, detector in DETECTORS.items():
        r = measure(detector, args.size, args.seeds)
        print(f"| {name} | {r['false']} | {r['found']} of {r['strong']} | {r['median_error']:.3f} | {r['p90_error']:.3f} |", flush=True)


if __name__ == "__main__":
    main()
