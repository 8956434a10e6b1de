"""From segments to phases: merge clusters that both modalities call one phase.

A polycrystal puts one phase in many grains, each in its own orientation,
and thickness and bending change every pattern within a grain. The fused
embedding separates what looks different, so its clusters are *segments*:
grains, families of similarly oriented grains, thickness bands. Whether two
segments are one phase is a question of physics, not of distance in
feature space:

* **Composition** — the pooled X-ray counts of two segments of one phase
  differ only by Poisson noise once each is scaled to its own total
  (thickness scales every count; a constant grid signal does not, so its
  lines are left out). :func:`composition_test` is a G-test of
  homogeneity on line-width energy windows, with an effect size (the total
  variation distance of the two normalised spectra, above what Poisson
  noise alone gives) so that a difference too small to be a different
  phase does not count however many counts are pooled.
* **Lattice** — every orientation of a crystal shows a subset of the same
  set of lattice spacings, wherever the spots fall on the detector.
  :func:`ring_spacings` finds, in a segment's mean pattern, the radii at
  which Bragg spots stand out of the azimuthal background (the largest
  intensity on a ring against its median); :func:`lattice_overlap` says
  how much of one segment's spot intensity lies at spacings the other
  shows too. Orientation and thickness change which spacings are lit and
  how brightly, not where they are.

:func:`merge_phases` joins, most alike first, the groups that pass both
tests, testing groups (pooled counts, the union of their spacings) rather
than single segments, so that a chain of weak links cannot join two
phases. Every test and every merge is returned for the record.
A segment can still pool off-zone grains of two phases from all over the
scan: :func:`segment_pieces` cuts it into its connected pieces, and
:func:`move_pieces_by_lattice` moves a piece to the phase of its
composition whose spacings (:func:`phase_spacings`) its own mean pattern
shows.

All functions work on small per-segment arrays (pooled spectra, mean
patterns): the pass over the scan that makes them is
:func:`stemfuse_hs.clustering.means.cluster_statistics`.
"""

from dataclasses import dataclass, field

import numpy as np

from .._validation import check_array, check_bool, check_choice, check_fraction, check_int, check_real
from .._kernels import ring_medians

__all__ = [
    "PhaseMerge",
    "carve_minor_phases",
    "carved_pieces_of_the_host",
    "grow_phases",
    "mixture_test",
    "reassign_by_composition",
    "reassignment_allowed",
    "window_matrix",
    "window_shares",
    "composition_test",
    "composition_windows",
    "LATTICE_LINKAGES",
    "WITNESS_COVERAGE",
    "lattice_overlap",
    "merge_phases",
    "move_pieces_by_lattice",
    "phase_spacings",
    "beam_centroid",
    "friedel_centre",
    "ring_spacings",
    "same_composition_matrix",
    "segment_pieces",
    "spot_spacings",
    "radial_background",
]

#: Significance below which two pooled spectra are different (G-test).
DEFAULT_ALPHA = 1e-3
#: Total variation distance of two normalised spectra (above the noise
#: floor) below which a significant difference is still too small to be
#: another phase.
DEFAULT_MIN_COMPOSITION_DIFFERENCE = 0.03
#: Share of spot intensity at shared spacings from which two segments can
#: be one lattice.
DEFAULT_MIN_LATTICE_OVERLAP = 0.6
#: Natural log of the likelihood ratio (about 20) from which a position's counts move it
#: to another phase (chosen on the built-in scans: 1.0 and 0 moved too many).
DEFAULT_MIN_LOG_RATIO = 3.0
#: Side, in scan positions, of the square whose pooled counts decide a move
#: (the position and its 8 neighbours): chosen on the built-in scans, where
#: 3 beat 1 and 5 (see the workflow page).
DEFAULT_POOL_WIDTH = 3
#: Largest share of the scan a phase of the finer map may cover to be carved out
#: as a minor phase (the issue's minor phases cover 2-5 %).
DEFAULT_MAX_MINOR_SHARE = 0.1
#: Spacings each segment must show for the lattice test to judge a pair.
DEFAULT_MIN_SPACINGS = 3
#: How the lattice judgements of the member pairs of two groups combine:
#: ``"average"`` keeps the groups apart when the pairs' lattice overlaps
#: average below ``min_lattice_overlap``, ``"complete"`` when any one pair's
#: does. Average: on the built-in scans one pair of segments whose grains
#: light different subsets of one lattice kept whole phases apart under
#: complete linkage (see the workflow page).
LATTICE_LINKAGES = ("average", "complete")
DEFAULT_LATTICE_LINKAGE = "average"
#: Share of each group's spacings a segment of another composition must show
#: to witness that two groups the lattice test parts are one lattice.
WITNESS_COVERAGE = 0.75
#: A group that shows at least this many spacings, every one of them shown
#: by two segments of another group, is of that group's lattice whatever
#: its member pairs say (see :func:`merge_phases`).
MIN_CONTAINED_SPACINGS = 4
# Width (pixels) of the rings whose median is a pattern's background: a
# support film's amorphous ring is a few tenths of a pixel wide, and half
# pixel rings left its slope as false spots (see ring_spacings).
BACKGROUND_RING_WIDTH = 0.25
#: Largest Bragg disk radius (pixels) of a *small* spot, located by the
#: Gaussian through its 3 x 3 row and column sums on a background taken
#: without the spots (see ring_spacings). Broader disks (the published
#: size's 256-pixel detector, about 5 px) keep their centroid and a
#: one-pass background: there the Gaussian located spots better (spacing
#: error median 0.12 % to 0.03 %, 90th percentile 0.32 % to 0.14 %) but
#: moved maps both ways (published ``poly_hcp`` seed 1 0.66 to 0.26,
#: ``poly_minor_phase`` seed 1 0.68 to 0.85; 2026-12-06, not traced), and
#: the background without the spots took ``poly_minor_phase`` seed 0 to
#: 0.32 with it.
SMALL_DISK_RADIUS = 3.0


@dataclass
class PhaseMerge:
    """Which segments form which phase, and why.

    Attributes
    ----------
    groups : list of list of int
        Segment indices of every phase, each sorted, phases ordered by
        their first segment.
    tests : list of dict
        One entry per pair of groups tested when the merge was decided:
        ``"a"``, ``"b"`` (segment lists), ``"composition"`` (the
        :func:`composition_test` result), ``"lattice_overlap"`` (NaN when a
        side shows no spots), ``"same_phase"``, ``"merged"`` and
        ``"witness"`` (the segment of another composition that showed the
        two groups' spacings in one lattice, -1 for none).
    spacings : list of numpy.ndarray
        Per segment, the spot radii found (pixels of the patterns).
    lattice_differs : numpy.ndarray
        ``(n_phases, n_phases)`` bool: the lattice overlaps of the two
        phases' member pairs, combined as ``lattice_linkage`` says (the
        average weighted by the product of the two segments' ``sizes``),
        are below ``min_lattice_overlap`` (False where no pair could be
        judged). Positions move between phases by composition where this
        is False, and out of a small phase where
        :func:`reassignment_allowed` says so.
    """

    groups: list
    tests: list = field(default_factory=list)
    spacings: list = field(default_factory=list)
    lattice_differs: np.ndarray = None

    @property
    def n_phases(self):
        return len(self.groups)

    def segment_phase(self):
        """``(n_segments,)`` phase index of every segment."""
        out = np.empty(sum(len(g) for g in self.groups), dtype=np.int64)
        for phase, group in enumerate(self.groups):
            out[group] = phase
        return out


def composition_windows(energies, fwhm, exclude=(), min_energy=0.2):
    """Contiguous channel windows about one detector FWHM wide.

    Parameters
    ----------
    energies : numpy.ndarray
        ``(n_channels,)`` channel energies (any unit; ``fwhm``, ``exclude``
        and ``min_energy`` in the same).
    fwhm : float
        Window width.
    exclude : sequence of (float, float), optional
        Energy ranges whose channels are left out (e.g. grid lines).
    min_energy : float, default 0.2
        Channels below (the noise peak, the window's absorption) are left out.

    Returns
    -------
    numpy.ndarray
        ``(n_channels,)`` int window of every channel, -1 where left out.

    Examples
    --------
    >>> import numpy as np
    >>> composition_windows(np.arange(10) * 0.1, 0.3, exclude=[(0.55, 0.75)]).tolist()
    [-1, -1, 0, 0, 0, 1, -1, -1, 2, 2]
    """
    energies = np.asarray(check_array("energies", energies, ndim=1, finite=True), dtype=np.float64)
    fwhm = check_real("fwhm", fwhm, minimum=0, strict_minimum=True)
    keep = energies >= min_energy
    for low, high in exclude:
        keep &= ~((energies >= low) & (energies <= high))
    window = np.full(energies.shape, -1, dtype=np.int64)
    if not keep.any():
        return window
    start = energies[keep][0]
    index = np.floor((energies - start) / fwhm).astype(np.int64)
    window[keep] = index[keep]
    # Number the windows that hold channels 0, 1, 2, ...
    used, dense = np.unique(window[keep], return_inverse=True)
    window[keep] = dense.ravel()
    return window


def _window_counts(counts, windows):
    counts = np.asarray(counts, dtype=np.float64)
    windows = np.asarray(windows)
    n_windows = int(windows.max()) + 1 if windows.size and windows.max() >= 0 else 0
    keep = np.flatnonzero(windows >= 0)
    if n_windows == 0 or keep.size == 0:
        return np.zeros(counts.shape[:-1] + (n_windows,))
    kept = windows[keep]
    if np.all(np.diff(kept) >= 0):
        # composition_windows numbers windows in channel order: one
        # reduceat sums them all (the merge calls this for every pair tested).
        starts = np.searchsorted(kept, np.arange(n_windows))
        sums = np.add.reduceat(counts[..., keep], starts, axis=-1)
        return np.where(np.bincount(kept, minlength=n_windows) > 0, sums, 0.0)
    out = np.zeros(counts.shape[:-1] + (n_windows,))
    for w in range(n_windows):
        out[..., w] = counts[..., keep[kept == w]].sum(axis=-1)
    return out


def composition_test(counts_a, counts_b, windows, *, min_expected=5.0):
    """Are two pooled spectra the same composition? A G-test of homogeneity.

    Each spectrum is summed in ``windows``; windows where either expected
    count is below ``min_expected`` are pooled into one (the test's
    approximation needs counts). Thickness scales all counts of a
    position alike, so the null hypothesis is that both spectra are
    draws from one distribution over the windows, whatever their totals.

    Parameters
    ----------
    counts_a, counts_b : numpy.ndarray
        ``(n_channels,)`` pooled X-ray counts (sums over positions).
    windows : numpy.ndarray
        From :func:`composition_windows`.
    min_expected : float, default 5

    Returns
    -------
    dict
        ``"g"`` (statistic), ``"dof"``, ``"p_value"``, ``"difference"``
        (the effect size: the total variation distance of the normalised
        window counts, 0 to 1, with the distance Poisson noise alone would
        give, ``"noise_floor"``, taken out in quadrature),
        ``"observed_difference"`` (the distance itself) and ``"counts"``
        (the two totals). Taking out the floor lets one threshold on the
        difference mean the same for a precipitate of twenty positions and
        a phase of thousands: the noise alone puts 0.02 between two
        segments of 40,000 counts each spread over 150 windows, and 0.06
        between twenty positions and their matrix.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> shape = np.array([5.0, 1.0, 3.0, 1.0])
    >>> a, b = rng.poisson(shape * 500), rng.poisson(shape * 2000)
    >>> windows = np.arange(4)
    >>> composition_test(a, b, windows)["p_value"] > 1e-3
    True
    >>> other = rng.poisson(np.array([3.0, 3.0, 3.0, 1.0]) * 500)
    >>> result = composition_test(a, other, windows)
    >>> result["p_value"] < 1e-3, round(result["difference"], 1)
    (True, 0.2)
    """
    from scipy.special import chdtrc

    table = _window_counts(np.stack([counts_a, counts_b]), np.asarray(windows))
    totals = table.sum(axis=1)
    if table.shape[1] < 2 or np.any(totals <= 0):
        return _untestable(totals)
    expected = np.outer(totals, table.sum(axis=0)) / totals.sum()
    small = (expected < min_expected).any(axis=0)
    if small.any():
        table = np.concatenate([table[:, ~small], table[:, small].sum(axis=1, keepdims=True)], axis=1)
        table = table[:, table.sum(axis=0) > 0]
        expected = np.outer(totals, table.sum(axis=0)) / totals.sum()
    dof = table.shape[1] - 1
    if dof < 1:
        return _untestable(totals)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(table > 0, table * np.log(table / expected), 0.0)
    g = float(2.0 * terms.sum())
    shares = table / totals[:, None]
    pooled = table.sum(axis=0) / totals.sum()
    observed = float(0.5 * np.abs(shares[0] - shares[1]).sum())
    floor = _noise_floor(pooled * (1.0 / totals[0] + 1.0 / totals[1]))
    return {
        "g": g,
        "dof": int(dof),
        # chi2.sf(g, dof), without scipy.stats' per-call overhead (30 us
        # of the merge's tens of thousands of tests).
        "p_value": float(chdtrc(dof, g)),
        "difference": _above_noise(observed, floor),
        "observed_difference": observed,
        "noise_floor": floor,
        "counts": totals.tolist(),
    }


def _untestable(totals):
    """The result of a composition test that has nothing to test (one window, or no counts)."""
    return {
        "g": 0.0, "dof": 0, "p_value": 1.0, "difference": 0.0, "observed_difference": 0.0, "noise_floor": 0.0,
        "counts": totals.tolist(),
    }


def _noise_floor(variances):
    """The total variation distance Poisson noise alone gives, from each window's share variance.

    Two spectra of one composition differ in every window by a difference
    of shares whose mean absolute value is ``sqrt(2 / pi)`` times its
    standard deviation: summed over a hundred windows of a few tens of
    counts each, that is 0.02-0.08 of distance with no difference in
    composition at all.
    """
    return float(0.5 * np.sqrt(2.0 / np.pi) * np.sqrt(np.maximum(variances, 0.0)).sum())


def _above_noise(observed, floor):
    """The distance once the noise floor is taken out, in quadrature.

    Noise and a real difference add about in quadrature, not linearly:
    where a window's difference is comparable to its noise, the two
    partly cancel. Simulated from the pure phases' spectra of the
    ``poly_minor_phase`` scan (75 windows), a true distance of 0.071
    between 3,000 and 30,000 counts is observed as 0.088, is 0.042 with
    the floor subtracted and 0.074 +- 0.009 in quadrature; 0.035 is
    0.032 +- 0.012; none is 0.007 +- 0.011.
    """
    return float(np.sqrt(max(observed**2 - floor**2, 0.0)))


def _same_composition(result, alpha, min_difference):
    return result["p_value"] >= alpha or result["difference"] < min_difference


def ring_spacings(
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
    friedel_centre=False,
    return_spots=False,
    faint_disks=False,
):
    """Spacings (radii) of the Bragg spots in a segment's mean pattern.

    The diffuse background of each ring (its median over the azimuth,
    :func:`radial_background`) is subtracted; what is left is the spots. Local maxima that stand
    ``significance`` Poisson standard deviations above the background (for
    a mean of ``n_positions`` patterns) and reach ``min_prominence`` of the
    brightest are located to a fraction of a pixel by their centroid, and
    their distances from the beam closer than ``merge_distance`` are one
    spacing (its symmetry mates and Friedel pair). Where a spot falls on
    its ring (the grain's orientation) and how bright the background is
    (the thickness) do not move a spacing.

    Parameters
    ----------
    pattern : numpy.ndarray
        ``(H, W)`` mean diffraction pattern of a segment, counts per pattern.
    centre : (float, float)
        (row, column) of the direct beam, pixels.
    inner_radius : float
        Spots inside (the direct beam) are not searched.
    outer_radius : float, optional
        Largest radius; by default the largest circle inside the detector.
    n_positions : float, default 1
        How many patterns the mean pools (its noise).
    disk_radius : float, default 1
        Radius of a Bragg disk in pixels: disks wider than a pixel are
        smoothed to one peak each and centred over their own width.
    significance : float, default 8
    min_prominence : float, default 0.05
    merge_distance : float, optional
        Radii closer than this (pixels) are one spacing; by default a quarter
        of a pixel or a sixth of ``disk_radius``, whichever is larger.
    friedel_centre : bool, default False
        Measure the radii about the centre of the spots' Friedel pairs
        (:func:`friedel_centre`) instead of ``centre``: a kinematic pattern
        is centrosymmetric, and the beam's centroid can be a fraction of a
        pixel off. The background is then taken about that centre too and
        the spots found again. Needed where spacings are compared to 1 %
        (:mod:`stemfuse_hs.clustering.indexing`).
    return_spots : bool, default False
        Also return every spot's offset from the centre the radii are
        measured about (the angles between spots index a pattern too:
        :func:`~stemfuse_hs.clustering.indexing.spot_angles_agree`).
    faint_disks : bool, default False
        Test wide disks (``disk_radius`` above 1.5 pixels, smoothed over
        their width by a Gaussian of ``disk_radius / 2``) against the noise
        of the smoothed pattern, a pixel's times ``1 / (2 sqrt(pi) sigma)``,
        instead of one pixel's: disks about ten times fainter (per pixel)
        are found, such as an off-zone grain's (:ref:`faint-disks`). Small
        disks are tested pixel by pixel either way.

    Returns
    -------
    radii : numpy.ndarray
        Spacings as radii in pixels, ascending.
    strengths : numpy.ndarray
        The spots' summed intensity above background at each, normalised to
        sum to 1 (empty when there is no spot).
    spots : numpy.ndarray
        ``(n_spots, 2)`` (row, column) offsets, pixels; only with
        ``return_spots``.

    Examples
    --------
    >>> import numpy as np
    >>> rows, cols = np.mgrid[:64, :64]
    >>> pattern = np.ones((64, 64))
    >>> for angle, radius in ((0.3, 12), (1.9, 12), (3.4, 12), (0.8, 20)):
    ...     y, x = 32 + radius * np.sin(angle), 32 + radius * np.cos(angle)
    ...     pattern += 50 * np.exp(-((rows - y) ** 2 + (cols - x) ** 2) / 2)
    >>> radii, strengths = ring_spacings(pattern, (32, 32), inner_radius=4)
    >>> np.round(radii).tolist(), np.round(strengths, 2).tolist()
    ([12.0, 20.0], [0.75, 0.25])
    """
    from scipy import ndimage

    pattern = np.nan_to_num(np.asarray(check_array("pattern", pattern, ndim=2), dtype=np.float64))
    rows, cols = pattern.shape
    cy, cx = float(centre[0]), float(centre[1])
    if outer_radius is None:
        outer_radius = min(cy + 0.5, rows - 0.5 - cy, cx + 0.5, cols - 0.5 - cx)
    yy, xx = np.mgrid[0:rows, 0:cols]
    r = np.hypot(yy - cy, xx - cx)
    small = disk_radius <= SMALL_DISK_RADIUS
    if merge_distance is None:
        merge_distance = max(0.25, disk_radius / 6.0)
    searched = (r >= inner_radius) & (r <= outer_radius)
    if not searched.any():
        return (np.zeros(0), np.zeros(0), np.zeros((0, 2))) if return_spots else (np.zeros(0), np.zeros(0))

    def spots_on(level):
        residual = pattern - level
        noise = np.sqrt(np.maximum(level, 1e-12) / max(float(n_positions), 1.0))
        if disk_radius > 1.5:
            sigma = disk_radius / 2.0
            residual = ndimage.gaussian_filter(residual, sigma)
            if faint_disks:
                # The standard deviation of white noise smoothed by a
                # normalised 2-D Gaussian of width sigma.
                noise = noise / (2.0 * np.sqrt(np.pi) * sigma)
        return _find_spots(residual, noise, searched, disk_radius, significance, min_prominence)

    def spots_about(background_centre):
        positions, weights = spots_on(radial_background(pattern, background_centre))
        if small and len(positions):
            # A thin ring holds few pixels, and a zone's spots can be most
            # of them: its median then lifts the background beside the
            # spots and pushes the next ring's spots outwards (fcc 200 by
            # 1.7 % on a 32-pixel detector). The background is taken again
            # without the pixels of the spots found.
            spot_pixels = _disks_mask(positions, disk_radius + 1.0, pattern.shape)
            positions, weights = spots_on(radial_background(pattern, background_centre, exclude=spot_pixels))
        return positions, weights

    positions, weights = spots_about((cy, cx))
    if friedel_centre and len(positions):
        # The rings are centred where the spots pair up, which can be a
        # fraction of a pixel from the beam's centroid: the background is
        # taken about that centre and the spots found again.
        positions, weights = spots_about(_spots_centre(positions, weights, (cy, cx), disk_radius))
    radii, strengths, offsets = _spacings_of_spots(positions, weights, (cy, cx), disk_radius, merge_distance, friedel_centre)
    return (radii, strengths, offsets) if return_spots else (radii, strengths)


def _disks_mask(positions, radius, shape):
    """Pixels within ``radius`` of any of ``positions`` ((row, column) pairs), each disk painted in its own box."""
    mask = np.zeros(shape, dtype=bool)
    reach = int(np.ceil(radius))
    for y, x in positions:
        y0, x0 = max(int(np.floor(y)) - reach, 0), max(int(np.floor(x)) - reach, 0)
        y1, x1 = min(int(np.floor(y)) + reach + 2, shape[0]), min(int(np.floor(x)) + reach + 2, shape[1])
        if y0 >= y1 or x0 >= x1:
            continue
        rows, cols = np.ogrid[y0:y1, x0:x1]
        mask[y0:y1, x0:x1] |= np.hypot(rows - y, cols - x) <= radius
    return mask


def radial_background(pattern, centre, ring_width=BACKGROUND_RING_WIDTH, *, exclude=None):
    """A pattern's round background: the median of each ring about ``centre``, interpolated in radius.

    The median of the pixels in each ``ring_width`` wide ring is placed at
    the ring's median radius and interpolated linearly to every pixel's
    own radius. A narrow ring (a support film's amorphous ring is a few
    tenths of a pixel wide on a coarse detector) is steep across a pixel:
    one value per ring left its slope in the residual as false spots.

    Parameters
    ----------
    pattern : numpy.ndarray
        ``(H, W)``.
    centre : (float, float)
        (row, column) about which the background is round, pixels.
    ring_width : float, default 0.25
        Pixels.
    exclude : numpy.ndarray of bool, optional
        ``(H, W)``: pixels left out of the medians (the spots), their
        background interpolated from the rings' other pixels.

    Returns
    -------
    numpy.ndarray
        ``(H, W)`` background.

    Examples
    --------
    >>> import numpy as np
    >>> rows, cols = np.mgrid[:33, :33]
    >>> r = np.hypot(rows - 16.3, cols - 15.8)
    >>> halo = 100 * np.exp(-0.5 * ((r - 8) / 0.5) ** 2)
    >>> pattern = halo.copy(); pattern[16, 24] += 40.0  # a spot on the ring
    >>> residual = pattern - radial_background(pattern, (16.3, 15.8))
    >>> int(np.argmax(residual)) == 16 * 33 + 24, bool(np.abs(halo - radial_background(halo, (16.3, 15.8))).max() < 25)
    (True, True)
    """
    pattern = np.asarray(pattern, dtype=np.float64)
    rows, cols = pattern.shape
    r = np.hypot(np.arange(rows, dtype=np.float64)[:, None] - float(centre[0]), np.arange(cols) - float(centre[1]))
    # Radii are not negative: truncation is the floor.
    ring = (r / float(ring_width)).astype(np.int64).ravel()
    kept = slice(None) if exclude is None else ~np.asarray(exclude, dtype=bool).ravel()
    radii, values = r.ravel()[kept], pattern.ravel()[kept]
    if radii.size == 0:
        radii, values, kept = r.ravel(), pattern.ravel(), slice(None)
    radius_medians, value_medians = ring_medians(np.stack([radii, values]), ring[kept])
    return np.interp(r, radius_medians, value_medians)


def friedel_centre(positions, weights, centre, *, max_shift, match_distance, n_iterations=3):
    """The centre about which a pattern's spots pair up as Friedel mates (g and -g), near ``centre``.

    Every spot whose mirror image through the current centre lies within
    ``match_distance`` of another spot forms a pair; the centre moves to
    the pairs' midpoints (weighted by the fainter spot of each pair), a few
    times over. Without a pair, or if the centre would move farther than
    ``max_shift`` from ``centre``, ``centre`` stands.

    Parameters
    ----------
    positions : numpy.ndarray
        ``(n_spots, 2)`` (row, column) of the spots.
    weights : numpy.ndarray
        ``(n_spots,)`` their intensities.
    centre : (float, float)
        First guess, e.g. the direct beam's centroid.
    max_shift, match_distance : float
        Pixels.
    n_iterations : int, default 3

    Returns
    -------
    (float, float)

    Examples
    --------
    >>> import numpy as np
    >>> spots = np.array([[10.2, 16.1], [10.2, 4.1], [16.2, 10.1], [4.2, 10.1]])
    >>> [round(c, 2) for c in friedel_centre(spots, np.ones(4), (10.0, 10.0), max_shift=1.0, match_distance=1.0)]
    [10.2, 10.1]
    """
    positions = np.asarray(positions, dtype=np.float64).reshape(-1, 2)
    weights = np.asarray(weights, dtype=np.float64).ravel()
    first = np.asarray(centre, dtype=np.float64)
    current = first.copy()
    index = np.arange(len(positions))
    for _ in range(int(n_iterations)):
        mirrors = 2.0 * current - positions
        distance = np.hypot(*(positions[:, None, :] - mirrors[None, :, :]).transpose(2, 0, 1))
        np.fill_diagonal(distance, np.inf)
        partner = distance.argmin(axis=0) if len(positions) > 1 else index
        # Each pair once: the spot with the lower index holds it.
        paired = (distance[partner, index] <= match_distance) & (partner > index)
        if not paired.any():
            break
        mates = partner[paired]
        midpoints = 0.5 * (positions[paired] + positions[mates])
        updated = np.average(midpoints, axis=0, weights=np.minimum(weights[paired], weights[mates]) + 1e-300)
        if np.hypot(*(updated - first)) > max_shift:
            break
        current = updated
    return float(current[0]), float(current[1])


# spot_spacings' flag of the same name hides the function inside it.
_friedel_centre = friedel_centre


def beam_centroid(pattern, centre, width, *, n_iterations=20, tolerance=1e-4):
    """The direct beam's centre: the centroid of the pattern above its median under a Gaussian window, iterated.

    The window (standard deviation ``width`` pixels) moves to the centroid
    it weighs until it stops; for a round beam its fixed point is the
    beam's centre to a few hundredths of a pixel, where the centroid of the
    region above half the peak (:func:`~stemfuse_hs.features.sdt.find_direct_beam`)
    is off by up to a tenth: which pixels pass the threshold depends on
    where the centre falls within its pixel. A tenth of a pixel is 1.5 % of
    a 7 px spacing measured about the beam, more than the 1.2 % the
    indexing allows (:mod:`stemfuse_hs.clustering.indexing`).

    Parameters
    ----------
    pattern : numpy.ndarray
        ``(H, W)``.
    centre : (float, float)
        (row, column) to start from, within about ``width`` of the beam.
    width : float
        Pixels; about the beam's radius.
    n_iterations : int, default 20
    tolerance : float, default 1e-4
        Pixels: the window has stopped.

    Returns
    -------
    (float, float)

    Examples
    --------
    >>> import numpy as np
    >>> rows, cols = np.mgrid[:32, :32]
    >>> beam = 1000.0 / (1 + np.exp((np.hypot(rows - 16.37, cols - 14.81) - 1.8) / 0.3))
    >>> [round(c, 2) for c in beam_centroid(beam + 2.0, (16.0, 15.0), 1.5)]
    [16.37, 14.81]
    """
    pattern = np.asarray(check_array("pattern", pattern, ndim=2), dtype=np.float64)
    above = np.maximum(pattern - np.median(pattern), 0.0)
    rows, cols = np.indices(pattern.shape)
    cy, cx = float(centre[0]), float(centre[1])
    for _ in range(int(n_iterations)):
        weight = above * np.exp(-0.5 * ((rows - cy) ** 2 + (cols - cx) ** 2) / float(width) ** 2)
        total = weight.sum()
        if total <= 0:
            break
        ny, nx = float((weight * rows).sum() / total), float((weight * cols).sum() / total)
        moved = np.hypot(ny - cy, nx - cx)
        cy, cx = ny, nx
        if moved < tolerance:
            break
    return cy, cx


def spot_spacings(
    residual, noise, centre, searched, *, disk_radius, significance, min_prominence, merge_distance, friedel_centre=False
):
    """Spacings of the spots in a background-free pattern: the part of :func:`ring_spacings` after the background.

    Local maxima of ``residual`` (in a window of the disk's size) inside
    ``searched`` that reach ``significance * noise`` and ``min_prominence``
    of the brightest are centred on their positive residual; their
    distances from ``centre`` closer than ``merge_distance`` are one
    spacing, weighted by the spots' summed residual.

    Parameters
    ----------
    residual, noise : numpy.ndarray
        ``(H, W)`` pattern minus its background, and the background's
        standard error.
    centre : (float, float)
        (row, column) of the direct beam.
    searched : numpy.ndarray
        ``(H, W)`` bool: where spots are looked for.
    disk_radius, significance, min_prominence, merge_distance : float
        As in :func:`ring_spacings` (``merge_distance`` given).
    friedel_centre : bool, default False
        As in :func:`ring_spacings`: the radii are measured about the
        centre of the Friedel pairs, within a pixel or half a disk radius
        of ``centre``.

    Returns
    -------
    radii, strengths : numpy.ndarray
        As :func:`ring_spacings`.

    Examples
    --------
    >>> import numpy as np
    >>> residual = np.zeros((21, 21)); residual[10, 16] = residual[10, 4] = 5.0
    >>> radii, strengths = spot_spacings(residual, np.ones((21, 21)), (10, 10), np.ones((21, 21), bool),
    ...                                  disk_radius=1, significance=3, min_prominence=0.05, merge_distance=0.5)
    >>> radii.tolist(), strengths.tolist()
    ([6.0], [1.0])
    """
    positions, weights = _find_spots(residual, noise, searched, disk_radius, significance, min_prominence)
    return _spacings_of_spots(positions, weights, centre, disk_radius, merge_distance, friedel_centre)[:2]


def _find_spots(residual, noise, searched, disk_radius, significance, min_prominence):
    """(row, column) and summed residual of the significant local maxima of ``residual`` (see :func:`spot_spacings`)."""
    from scipy import ndimage

    rows, cols = residual.shape
    yy, xx = np.mgrid[0:rows, 0:cols]
    half = max(1, int(round(disk_radius)))
    none = np.zeros((0, 2)), np.zeros(0)
    if not searched.any():
        return none
    peak = residual == ndimage.maximum_filter(residual, size=2 * half + 1, mode="constant", cval=-np.inf)
    top = residual[searched].max()
    if top <= 0:
        return none
    peak &= searched & (residual >= significance * noise) & (residual >= min_prominence * top)
    positions, weights = [], []
    positive = np.maximum(residual, 0.0)
    # A small spot is located by the Gaussian through the three row sums and the
    # three column sums of the 3 x 3 pixels about its peak (sums, so that a
    # weak spot's noise counts less): its centroid is pulled towards the peak pixel
    # (noise clipped at zero weighs the whole window alike), by up to a tenth
    # of a pixel, 1.5 % of a first ring's radius on a 32-pixel detector.
    for py, px in zip(*np.nonzero(peak)):
        y0, y1, x0, x1 = max(py - half, 0), min(py + half + 1, rows), max(px - half, 0), min(px + half + 1, cols)
        w = positive[y0:y1, x0:x1]
        total = w.sum()
        if total <= 0:
            continue
        if disk_radius <= SMALL_DISK_RADIUS and 0 < py < rows - 1 and 0 < px < cols - 1:
            box = residual[py - 1 : py + 2, px - 1 : px + 2]
            positions.append(
                (py + _gaussian_peak_offset(*box.sum(axis=1)), px + _gaussian_peak_offset(*box.sum(axis=0)))
            )
        else:
            positions.append(((w * yy[y0:y1, x0:x1]).sum() / total, (w * xx[y0:y1, x0:x1]).sum() / total))
        weights.append(total)
    if not positions:
        return none
    return np.asarray(positions), np.asarray(weights)


def _gaussian_peak_offset(before, peak, after):
    """Offset (pixels, within half a pixel) of the vertex of the Gaussian through three samples of a peak.

    The logarithms of the samples lie on a parabola for a Gaussian spot;
    samples at or below zero (noise) count as a thousandth of the peak.

    Examples
    --------
    >>> import numpy as np
    >>> samples = np.exp(-0.5 * ((np.arange(-1, 2) - 0.3) / 0.6) ** 2)
    >>> round(_gaussian_peak_offset(*samples), 6)
    0.3
    """
    if peak <= 0:
        return 0.0
    floor = 1e-3 * peak
    before, peak, after = np.log(max(before, floor)), np.log(peak), np.log(max(after, floor))
    curvature = before - 2.0 * peak + after
    if curvature >= 0:
        return 0.0
    return float(np.clip(0.5 * (before - after) / curvature, -0.5, 0.5))


def _spots_centre(positions, weights, centre, disk_radius):
    """The spots' Friedel centre, within a pixel or half a disk radius of ``centre``."""
    reach = max(1.0, disk_radius / 2.0)
    return _friedel_centre(positions, weights, centre, max_shift=reach, match_distance=reach)


def _spacings_of_spots(positions, weights, centre, disk_radius, merge_distance, friedel_centre):
    """Spots' distances from ``centre`` (or their Friedel centre), chains closer than ``merge_distance`` one spacing; and the spots' offsets from it."""
    if len(positions) == 0:
        return np.zeros(0), np.zeros(0), np.zeros((0, 2))
    cy, cx = float(centre[0]), float(centre[1])
    if friedel_centre:
        cy, cx = _spots_centre(positions, weights, (cy, cx), disk_radius)
    offsets = np.asarray(positions, dtype=np.float64) - np.array([cy, cx])
    spots_r = np.hypot(positions[:, 0] - cy, positions[:, 1] - cx)
    order = np.argsort(spots_r)
    spots_r, spots_s = spots_r[order], weights[order]
    # Chains of radii closer than merge_distance are one spacing.
    breaks = np.flatnonzero(np.diff(spots_r) > merge_distance) + 1
    radii, strengths = [], []
    for group_r, group_s in zip(np.split(spots_r, breaks), np.split(spots_s, breaks)):
        radii.append(float((group_r * group_s).sum() / group_s.sum()))
        strengths.append(float(group_s.sum()))
    strengths = np.asarray(strengths)
    return np.asarray(radii), strengths / strengths.sum(), offsets


def lattice_overlap(radii_a, radii_b, tolerance, min_spacings=1):
    """How far two sets of spot spacings can belong to one lattice, 0 to 1.

    The share of one side's spacings that lie within ``tolerance`` of a
    spacing of the other side, the larger of the two directions: another
    orientation of the same crystal lights a subset of the same spacings,
    so one side being explained by the other is enough. Every spacing
    counts alike: how bright a reflection is depends on the orientation and
    the thickness, whether it exists does not.

    Returns NaN when either side shows fewer than ``min_spacings``
    spacings: an off-zone grain lights one or two rings, and two such
    subsets of one lattice need not share any.

    Examples
    --------
    >>> import numpy as np
    >>> lattice_overlap(np.array([6.0, 7.0]), np.array([6.1, 7.0, 9.8]), 0.3)
    1.0
    >>> round(lattice_overlap(np.array([6.0, 7.0, 9.8]), np.array([6.2, 8.7, 12.4]), 0.3), 2)
    0.33
    """
    tolerance = check_real("tolerance", tolerance, minimum=0)
    radii_a, radii_b = np.asarray(radii_a, float), np.asarray(radii_b, float)
    if min(radii_a.size, radii_b.size) < max(1, int(min_spacings)):
        return float("nan")
    near = np.abs(radii_a[:, None] - radii_b[None, :]) <= tolerance
    return float(max(near.any(axis=1).mean(), near.any(axis=0).mean()))


def _lattices_differ(pair_overlaps, linkage, min_lattice_overlap, pair_weights=None):
    """Whether the lattice overlaps of two groups' member pairs (NaN: not judged) part the groups.

    ``"average"`` weighs every pair by ``pair_weights`` (the product of the
    two segments' sizes): the verdict is that of pairs of positions, so a
    small segment mixing two phases at their boundary cannot outvote the
    grains on either side.
    """
    overlaps = np.asarray(pair_overlaps, dtype=np.float64)
    judged = ~np.isnan(overlaps)
    if not judged.any():
        return False
    if linkage == "average":
        weights = np.ones(overlaps.size) if pair_weights is None else np.asarray(pair_weights, dtype=np.float64)
        combined = float(np.average(overlaps[judged], weights=weights[judged])) if weights[judged].sum() > 0 else float(np.mean(overlaps[judged]))
    else:
        combined = float(overlaps[judged].min())
    return combined < min_lattice_overlap


def _shown_twice(a, b, spacings, tolerance, min_spacings=MIN_CONTAINED_SPACINGS):
    """Whether one group shows at least ``min_spacings`` spacings, each shown by two segments of the other.

    Every spacing must stay in the other group's union when any one of its
    segments is left out, so that a single segment mixing two lattices (at
    their boundary) cannot make one group contain the other.
    """
    for inner, outer in ((a, b), (b, a)):
        shown = _union(inner, spacings, tolerance)
        if shown.size < min_spacings or len(outer) < 2:
            continue
        for left_out in outer:
            rest = _union([m for m in outer if m != left_out], spacings, tolerance)
            if rest.size == 0 or np.abs(shown[:, None] - rest[None, :]).min(axis=1).max() > tolerance:
                break
        else:
            return True
    return False


def _union(members, spacings, tolerance):
    """The distinct spacings of a group of segments (closer than ``tolerance`` are one)."""
    radii = np.sort(np.concatenate([np.asarray(spacings[m], float) for m in members]))
    if radii.size == 0:
        return radii
    breaks = np.flatnonzero(np.diff(radii) > tolerance) + 1
    return np.array([group.mean() for group in np.split(radii, breaks)])


def mixture_test(counts, counts_a, counts_b, windows, *, min_expected=5.0, n_steps=101):
    """Is a pooled spectrum a mixture of two others? The best mixing share and its G-test.

    The shares of ``counts`` over the windows are compared with
    ``f * shares_a + (1 - f) * shares_b`` for ``f`` on a grid from 0 to 1;
    the best ``f`` is kept. Columns that mix two phases (a boundary
    inclined through the foil, a precipitate embedded in a matrix) give
    such spectra.

    Parameters
    ----------
    counts, counts_a, counts_b : numpy.ndarray
        ``(n_channels,)`` pooled counts.
    windows : numpy.ndarray
        From :func:`composition_windows`.

    Returns
    -------
    dict
        ``"fraction"`` (share of ``a``), ``"g"``, ``"dof"``, ``"p_value"``,
        ``"difference"`` (total variation distance to the best mixture with
        what Poisson noise in the three spectra alone gives taken out, as in
        :func:`composition_test`), ``"observed_difference"`` and
        ``"noise_floor"``.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> a, b = np.array([50.0, 5, 5, 40]), np.array([5.0, 50, 40, 5])
    >>> mixed = rng.poisson(0.3 * a * 40 + 0.7 * b * 40)
    >>> result = mixture_test(mixed, rng.poisson(a * 200), rng.poisson(b * 200), np.arange(4))
    >>> round(result["fraction"], 1), result["p_value"] > 1e-3
    (0.3, True)
    """
    from scipy.stats import chi2

    table = _window_counts(np.stack([counts, counts_a, counts_b]), np.asarray(windows))
    totals = table.sum(axis=1)
    if table.shape[1] < 2 or np.any(totals <= 0):
        return {"fraction": 0.5, "g": 0.0, "dof": 0, "p_value": 1.0, "difference": 0.0, "observed_difference": 0.0,
                "noise_floor": 0.0}
    shares = table / totals[:, None]
    fractions = np.linspace(0.0, 1.0, n_steps)
    model = fractions[:, None] * shares[1] + (1 - fractions[:, None]) * shares[2]
    expected = totals[0] * model
    keep = expected.min(axis=0) >= min_expected
    observed = table[0]
    if keep.sum() < 2:
        keep = np.ones(table.shape[1], dtype=bool)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(observed[keep] > 0, observed[keep] * np.log(observed[keep] / expected[:, keep]), 0.0)
    g = 2.0 * (terms.sum(axis=1) - (observed[keep].sum() - expected[:, keep].sum(axis=1)))
    best = int(np.argmin(g))
    dof = int(keep.sum()) - 2
    return {
        "fraction": float(fractions[best]),
        "g": float(g[best]),
        "dof": max(dof, 0),
        "p_value": float(chi2.sf(g[best], dof)) if dof >= 1 else 1.0,
        **_mixture_difference(shares, totals, fractions[best], keep),
    }


def _mixture_difference(shares, totals, fraction, keep):
    """Distance of a spectrum to its best mixture, above the noise floor.

    On the windows the test kept, the rest pooled into one.
    """
    model = fraction * shares[1] + (1 - fraction) * shares[2]
    variances = model / totals[0] + fraction**2 * shares[1] / totals[1] + (1 - fraction) ** 2 * shares[2] / totals[2]

    def pool(values):
        return np.append(values[keep], values[~keep].sum()) if (~keep).any() else values

    observed = float(0.5 * np.abs(pool(shares[0]) - pool(model)).sum())
    floor = _noise_floor(pool(variances))
    return {"difference": _above_noise(observed, floor), "observed_difference": observed, "noise_floor": floor}


def _neighbourhood(mask, width=2):
    """Positions within ``width`` steps (8-connected) of ``mask``."""
    from scipy import ndimage

    return ndimage.binary_dilation(mask, structure=np.ones((3, 3), bool), iterations=width)


def _absorb_boundaries(
    groups, spectra, windows, segment_map, alpha, min_difference, tests, min_border_share=0.8, lattice_check=None,
):
    """Let groups that are the mixed boundary of two others join the one they hold most of.

    ``lattice_check`` (``spacings``, ``tolerance``, ``min_spacings``,
    ``min_lattice_overlap``): a group whose spacings the group it would
    join does not share is no boundary of it. A probe mostly in one grain
    shows that grain's spots; a grain of a third phase whose composition
    happens to lie between its two neighbours' does not (tiny
    ``four_phases`` seed 2: 276 bcc positions joined an fcc phase).
    """
    segment_map = np.asarray(segment_map)
    if segment_map.ndim == 1:
        segment_map = segment_map[None, :]
    changed = True
    while changed and len(groups) > 2:
        changed = False
        masks = [np.isin(segment_map, g) for g in groups]
        counts = [spectra[g].sum(axis=0) for g in groups]
        sizes = [int(m.sum()) for m in masks]
        # Smallest first: boundaries are thin.
        for gi in sorted(range(len(groups)), key=lambda i: sizes[i]):
            near = _neighbourhood(masks[gi])
            neighbours = [
                j for j in range(len(groups)) if j != gi and (masks[j] & near).any() and sizes[j] > 0
            ]
            best = None
            for ai in range(len(neighbours)):
                for bi in range(ai + 1, len(neighbours)):
                    a, b = neighbours[ai], neighbours[bi]
                    if sizes[gi] >= max(sizes[a], sizes[b]):
                        continue
                    border = masks[gi] & (_neighbourhood(masks[a]) | _neighbourhood(masks[b]))
                    if border.sum() < min_border_share * sizes[gi]:
                        continue
                    ab = composition_test(counts[a], counts[b], windows)
                    if _same_composition(ab, alpha, min_difference):
                        continue  # two alike groups: no mixture to tell
                    mix = mixture_test(counts[gi], counts[a], counts[b], windows)
                    if not (0.0 < mix["fraction"] < 1.0):
                        continue
                    if lattice_check is not None and _lattice_contradicts(
                        groups[gi], groups[a if mix["fraction"] >= 0.5 else b], *lattice_check
                    ):
                        continue
                    if _same_composition(mix, alpha, min_difference):  # the best mixture explains it
                        if best is None or mix["g"] < best[0]["g"]:
                            best = (mix, a, b)
            if best is not None:
                mix, a, b = best
                target = a if mix["fraction"] >= 0.5 else b
                tests.append(
                    {
                        "a": list(groups[gi]),
                        "b": list(groups[target]),
                        "composition": {
                            key: mix[key]
                            for key in ("g", "dof", "p_value", "difference", "observed_difference", "noise_floor")
                        },
                        "lattice_overlap": float("nan"),
                        "same_composition": False,
                        "same_lattice": True,
                        "same_phase": False,
                        "merged": True,
                        "boundary_of": [list(groups[a]), list(groups[b])],
                        "mixing_fraction": mix["fraction"] if target == a else 1 - mix["fraction"],
                    }
                )
                merged = sorted(groups[gi] + groups[target])
                groups = [g for k, g in enumerate(groups) if k not in (gi, target)] + [merged]
                changed = True
                break
    return groups


def _lattice_contradicts(group, target, spacings, tolerance, min_spacings, min_lattice_overlap):
    """Whether two groups that each show ``min_spacings`` spacings share too few of them to be one lattice."""
    overlap = lattice_overlap(_union(group, spacings, tolerance), _union(target, spacings, tolerance), tolerance, min_spacings)
    return not np.isnan(overlap) and overlap < min_lattice_overlap


def _is_mixed_boundary(w, spectra, windows, segment_map, alpha, min_difference):
    """Whether segment ``w``'s pooled spectrum is a mixture of two neighbouring segments of different compositions."""
    if segment_map is not None:
        segment_map = np.asarray(segment_map)
        if segment_map.ndim == 1:
            segment_map = segment_map[None, :]
        near = _neighbourhood(segment_map == w)
        neighbours = [int(v) for v in np.unique(segment_map[near]) if v >= 0 and v != w]
    else:
        neighbours = [v for v in range(len(spectra)) if v != w]
    for i, a in enumerate(neighbours):
        for b in neighbours[i + 1:]:
            if _same_composition(composition_test(spectra[a], spectra[b], windows), alpha, min_difference):
                continue
            mix = mixture_test(spectra[w], spectra[a], spectra[b], windows)
            if 0.1 < mix["fraction"] < 0.9 and _same_composition(mix, alpha, min_difference):
                return True
    return False


def _witness(a, b, candidates, spectra, windows, spacings, tolerance, alpha, min_difference, is_boundary, differ):
    """The first candidate of another composition that shows most spacings of both groups and is no boundary, or -1."""
    union_a, union_b = _union(a, spacings, tolerance), _union(b, spacings, tolerance)
    if union_a.size == 0 or union_b.size == 0:
        return -1
    pooled = None
    for w in candidates:
        if w in a or w in b or not (differ(w, a[0]) or differ(w, b[0])):
            continue
        shown = np.asarray(spacings[w], float)
        covers = [np.mean(np.abs(u[:, None] - shown[None, :]).min(axis=1) <= tolerance) for u in (union_a, union_b)]
        if min(covers) < WITNESS_COVERAGE:
            continue
        if pooled is None:
            pooled = spectra[list(a) + list(b)].sum(axis=0)
        if _same_composition(composition_test(spectra[w], pooled, windows), alpha, min_difference):
            continue  # one of the groups' own kind: it could be their boundary
        if is_boundary(w):
            continue
        return int(w)
    return -1


def _indexed_lattices(members, spacings, one_lattice):
    """The indexed lattices of the members that show spacings (-1: none or several fit)."""
    return {int(one_lattice[m]) for m in members if np.asarray(spacings[m]).size}


def _all_of_one_lattice(members, spacings, one_lattice):
    """Whether every member that shows spacings is of one indexed lattice (and one does)."""
    found = _indexed_lattices(members, spacings, one_lattice)
    return len(found) == 1 and min(found) >= 0


def _indexed_together(a, b, spacings, one_lattice):
    """Whether two groups are of one indexed lattice: every member of both, or every member of one and every indexed member of the other.

    A group can hold a member of no lattice (a false spacing, a segment
    joined by its overlap); a segment wholly of the lattice that all the
    group's indexed members show is still of the group's lattice.
    """
    found_a = _indexed_lattices(a, spacings, one_lattice)
    found_b = _indexed_lattices(b, spacings, one_lattice)
    if _all_of_one_lattice(list(a) + list(b), spacings, one_lattice):
        return True
    for whole, other in ((found_a, found_b), (found_b, found_a)):
        if len(whole) == 1 and min(whole) >= 0 and other - {-1} == whole:
            return True
    return False


def _indexed_apart(a, b, spacings, one_lattice):
    """Whether the members of each group that are of an indexed lattice are all of one, and the two differ.

    Members of no lattice (-1) say nothing: a group that took one in keeps
    its lattice.
    """
    found_a = _indexed_lattices(a, spacings, one_lattice) - {-1}
    found_b = _indexed_lattices(b, spacings, one_lattice) - {-1}
    return len(found_a) == 1 and len(found_b) == 1 and found_a != found_b


def _rejoin_poor_groups(groups, judge, spacings, tolerance, min_spacings):
    """Join groups that show too few spacings to claim a lattice of their own.

    A group whose segments together show fewer than ``min_spacings``
    spacings was kept apart only because its one or two spacings are not
    among another group's, which an incomplete set of spacings does not
    prove. It joins the group of the same composition that explains most of
    its spacings (the most alike composition on a tie).
    """
    while True:
        poor = [g for g in groups if _union(g, spacings, tolerance).size < min_spacings]
        moves = []
        for g in poor:
            for h in groups:
                if h is g:
                    continue
                entry, _ = judge(*sorted((g, h)))
                if not entry["same_composition"] or entry["indexed_apart"]:
                    continue
                overlap = entry["lattice_overlap"]
                comp = entry["composition"]
                moves.append(
                    (-(0.0 if np.isnan(overlap) else overlap), comp["observed_difference"] if comp else 0.0, groups.index(g), groups.index(h), entry)
                )
        if not moves:
            return groups
        _, _, i, j, entry = min(moves, key=lambda m: m[:2])
        entry["merged"] = True
        merged = sorted(groups[i] + groups[j])
        groups = [g for k, g in enumerate(groups) if k not in (i, j)] + [merged]


def merge_phases(
    spectra,
    windows,
    spacings,
    *,
    tolerance,
    alpha=DEFAULT_ALPHA,
    min_composition_difference=DEFAULT_MIN_COMPOSITION_DIFFERENCE,
    min_lattice_overlap=DEFAULT_MIN_LATTICE_OVERLAP,
    min_spacings=DEFAULT_MIN_SPACINGS,
    lattice_linkage=DEFAULT_LATTICE_LINKAGE,
    lattice_witnesses=True,
    segment_map=None,
    sizes=None,
    min_judged_size=0,
    one_lattice=None,
):
    """Group segments into phases: same composition and a compatible lattice.

    Starting from one group per segment, the two groups that pass both
    tests and are most alike (smallest composition difference, then
    largest lattice overlap) are joined, and the tests are made again
    between the new group and the others, until no pair passes. The
    composition test pools the groups' counts; the lattice test compares
    the union of the groups' spacings and, as ``lattice_linkage`` says,
    the pairs of members across the two groups that can both be judged: by
    default the groups stay apart when those pairs' overlaps *average*
    below ``min_lattice_overlap``, so that one pair of grains lighting
    different subsets of one lattice does not keep a phase in two, while
    groups of two lattices, whose pairs mostly disagree, stay apart. A
    pair without spots on one side is decided by composition alone, after
    every pair that both tests could judge.

    Which spacings belong to one lattice does not depend on the
    composition: with ``lattice_witnesses``, two groups of one composition
    that the lattice test parts are one lattice after all when a segment of
    *another* composition (one that shows at least ``min_spacings``
    spacings, is not smaller than ``min_judged_size`` and is not the mixed
    boundary of two neighbouring segments) shows at least
    ``WITNESS_COVERAGE`` (75 %) of each group's spacings: it has seen them
    in one lattice.

    Grains of one lattice near different zone axes can share a single
    spacing (fcc near [001] shows 200, 220 and 400; near [112], 111, 220,
    311 and 222), so their pairs disagree however many grains there are.
    The member pairs do not keep two groups apart when one group shows at
    least ``MIN_CONTAINED_SPACINGS`` (4) spacings and the other has shown
    every one of them, each in at least two of its segments (so that one
    segment mixing two lattices at their boundary cannot); the test entry
    records it as ``"contained"``.

    Parameters
    ----------
    spectra : numpy.ndarray or None
        ``(n_segments, n_channels)`` pooled X-ray counts; None when there is
        no spectrum image (composition then never separates).
    windows : numpy.ndarray or None
        From :func:`composition_windows`.
    spacings : list of numpy.ndarray or None
        Per segment, the radii from :func:`ring_spacings`; None when there
        are no patterns (the lattice then never separates).
    tolerance : float
        Spacings closer than this (pixels) are the same.
    alpha : float, default 1e-3
    min_composition_difference : float, default 0.03
    min_lattice_overlap : float, default 0.6
    min_spacings : int, default 3
        The lattice test judges only pairs of segments that each show at
        least this many spacings (see :func:`lattice_overlap`); others are
        decided by composition.
    lattice_linkage : {"average", "complete"}, default "average"
        How the member pairs' lattice overlaps combine into the groups'
        verdict: their mean below ``min_lattice_overlap`` keeps the groups
        apart (``"average"``), or any one pair below it does
        (``"complete"``, which also stops a segment mixing two phases at
        their boundary from joining them, and keeps more grains of one
        lattice apart).
    lattice_witnesses : bool, default True
        Let a segment of another composition witness that two groups of
        one composition are one lattice (above); the test entry records it
        as ``"witness"``.
    segment_map : numpy.ndarray, optional
        The segment of every scan position (-1 for none), on the scan grid.
        With it, a group that lies along the boundary of two groups of
        other compositions and whose pooled spectrum is a mixture of theirs
        (:func:`mixture_test`) is the boundary, not a phase: it joins the
        group that makes up most of it, unless both show ``min_spacings``
        spacings and share less than ``min_lattice_overlap`` of them (a
        grain of a third lattice, not a probe mostly in that group).
    sizes : numpy.ndarray, optional
        Positions in every segment.
    min_judged_size : float, default 0
        Segments with fewer positions never veto a merge by their lattice
        (they are placed against groups like segments with few spacings).
    one_lattice : numpy.ndarray, optional
        ``(n_segments,)``: which of the scan's indexed lattices each
        segment shows (:func:`stemfuse_hs.clustering.indexing.segment_lattices`;
        -1 for none or several), or bool: whether it shows the scan's one
        lattice (:func:`stemfuse_hs.clustering.indexing.lattice_members`).
        Two groups whose segments with spacings are all of one lattice are
        one lattice, however little their spacings overlap: the test entry
        records it as ``"indexed"``. Two groups wholly of two different
        lattices are two, however much their spacings overlap (fcc 111 and
        bcc 110 of one steel lie 2.4 % apart, within the overlap test's
        tolerance), and nothing joins them: ``"indexed_apart"`` (members of
        no lattice, -1, do not count).

    Returns
    -------
    PhaseMerge

    Examples
    --------
    Three segments: two of one composition and one lattice, one other.

    >>> import numpy as np
    >>> rng = np.random.default_rng(1)
    >>> spectra = np.stack([rng.poisson([400, 100, 300]), rng.poisson([800, 200, 600]), rng.poisson([300, 300, 300])])
    >>> radii = [np.array([6.0, 7.0, 9.8]), np.array([6.0, 7.0, 9.8, 11.5]), np.array([6.0, 7.0, 9.8])]
    >>> merge_phases(spectra, np.arange(3), radii, tolerance=0.3).groups
    [[0, 1], [2]]
    """
    alpha = check_fraction("alpha", alpha)
    min_composition_difference = check_real("min_composition_difference", min_composition_difference, minimum=0)
    min_lattice_overlap = check_fraction("min_lattice_overlap", min_lattice_overlap, closed_low=True)
    check_choice("lattice_linkage", lattice_linkage, LATTICE_LINKAGES)
    check_bool("lattice_witnesses", lattice_witnesses)
    if spectra is None and spacings is None:
        raise ValueError("merge_phases needs spectra, spacings or both.")
    n = len(spectra) if spectra is not None else len(spacings)
    if spectra is not None:
        spectra = np.asarray(spectra, dtype=np.float64)
    if spacings is not None:
        pair_overlap = np.array(
            [[lattice_overlap(spacings[i], spacings[j], tolerance, min_spacings) for j in range(n)] for i in range(n)]
        )
        if sizes is not None and min_judged_size:
            # Small segments sit mostly on boundaries: their mean patterns mix
            # two lattices, so they may join a group but never keep two apart.
            small = np.asarray(sizes) < min_judged_size
            pair_overlap[small, :] = np.nan
            pair_overlap[:, small] = np.nan
    if one_lattice is not None:
        one_lattice = np.asarray(one_lattice).ravel()
        if one_lattice.dtype == bool:
            one_lattice = np.where(one_lattice, 0, -1)
        one_lattice = one_lattice.astype(np.int64)
        if spacings is None or one_lattice.size != n:
            raise ValueError(f"merge_phases: one_lattice needs spacings and one value per segment ({n}), got {one_lattice.size}.")
    weight = np.ones(n) if sizes is None else np.asarray(sizes, dtype=np.float64)
    groups = [[i] for i in range(n)]
    tests = []
    cache = {}
    if spacings is not None and spectra is not None and lattice_witnesses:
        witness_candidates = [
            w for w in range(n)
            if np.asarray(spacings[w]).size >= min_spacings and (sizes is None or sizes[w] >= min_judged_size)
        ]
    else:
        witness_candidates = []
    boundaries, segment_differs = {}, {}

    def differ(i, j):
        # Segment against segment, cached: a cheap first sieve before the pooled test.
        if (i, j) not in segment_differs:
            test = composition_test(spectra[i], spectra[j], windows)
            segment_differs[i, j] = not _same_composition(test, alpha, min_composition_difference)
        return segment_differs[i, j]

    def is_boundary(w):
        if w not in boundaries:
            boundaries[w] = _is_mixed_boundary(w, spectra, windows, segment_map, alpha, min_composition_difference)
        return boundaries[w]

    group_spectra, group_spacings = {}, {}
    if spectra is not None:
        # The groups' tests need only the windows' counts: summed once per
        # segment, the pooled sums add a few hundred numbers, not channels.
        segment_windows = _window_counts(spectra, windows)
        window_index = np.arange(segment_windows.shape[1])

    def pooled(group):
        # Every group meets every other, and again after each merge: its sums once.
        key = tuple(group)
        if key not in group_spectra:
            group_spectra[key] = segment_windows[group].sum(axis=0)
        return group_spectra[key]

    def union(group):
        key = tuple(group)
        if key not in group_spacings:
            group_spacings[key] = _union(group, spacings, tolerance)
        return group_spacings[key]

    def judge(a, b):
        key = (tuple(a), tuple(b))
        if key not in cache:
            if spectra is not None:
                comp = composition_test(pooled(a), pooled(b), window_index)
                same_comp = _same_composition(comp, alpha, min_composition_difference)
            else:
                comp, same_comp = None, True
            contained = False
            if spacings is None:
                overlap, vetoed = float("nan"), False
            else:
                # The groups' spacings together approach each lattice's full
                # set, so a segment that shows a single spacing can be placed
                # against a group that shows enough of them...
                poor, rich = sorted((union(a), union(b)), key=len)
                if rich.size < min_spacings or poor.size == 0:
                    overlap = float("nan")
                elif poor.size < min_spacings:
                    overlap = float(np.mean(np.abs(poor[:, None] - rich[None, :]).min(axis=1) <= tolerance))
                else:
                    overlap = lattice_overlap(poor, rich, tolerance)
                # ...while the members that each show enough spacings to be
                # judged keep their groups apart when they disagree.
                vetoed = _lattices_differ([pair_overlap[i, j] for i in a for j in b], lattice_linkage, min_lattice_overlap)
                # Grains of one lattice in different orientations show
                # different subsets of its spacings, so their pairs can
                # disagree; a group whose many spacings the other group has
                # shown in full, every one by at least two of its segments,
                # is of that group's lattice.
                contained = vetoed and _shown_twice(a, b, spacings, tolerance)
                vetoed = vetoed and not contained
            same_lattice = not vetoed and (np.isnan(overlap) or overlap >= min_lattice_overlap)
            indexed = apart = False
            if one_lattice is not None:
                apart = _indexed_apart(a, b, spacings, one_lattice)
                if apart:
                    same_lattice = False
                elif not same_lattice:
                    # Which spacings a grain shows depends on its orientation;
                    # which ones its lattice has does not, once it is indexed.
                    indexed = same_lattice = _indexed_together(a, b, spacings, one_lattice)
            witness = -1
            if witness_candidates and same_comp and not same_lattice and not apart:
                witness = _witness(
                    a, b, witness_candidates, spectra, windows, spacings, tolerance, alpha, min_composition_difference,
                    is_boundary, differ,
                )
                same_lattice = witness >= 0
            entry = {
                "a": list(a),
                "b": list(b),
                "composition": comp,
                "lattice_overlap": overlap,
                "same_composition": bool(same_comp),
                "same_lattice": bool(same_lattice),
                "same_phase": bool(same_comp and same_lattice),
                "merged": False,
                "witness": int(witness),
                "contained": bool(contained),
                "indexed": bool(indexed),
                "indexed_apart": bool(apart),
            }
            # Most alike first by the observed distance: its noise floor is
            # lowest for the segments with the most counts, whose verdicts
            # are the surest.
            rank = (
                bool(np.isnan(overlap)),
                comp["observed_difference"] if comp is not None else 0.0,
                -(0.0 if np.isnan(overlap) else overlap),
            )
            cache[key] = (entry, rank)
            tests.append(entry)
        return cache[key]

    while len(groups) > 1:
        candidates = []
        for i in range(len(groups)):
            for j in range(i + 1, len(groups)):
                entry, rank = judge(groups[i], groups[j])
                if entry["same_phase"]:
                    candidates.append((rank, i, j, entry))
        if not candidates:
            break
        _, i, j, entry = min(candidates, key=lambda c: c[0])
        entry["merged"] = True
        merged = sorted(groups[i] + groups[j])
        groups = [g for k, g in enumerate(groups) if k not in (i, j)] + [merged]
    if spectra is not None and segment_map is not None:
        lattice_check = None if spacings is None else (spacings, tolerance, min_spacings, min_lattice_overlap)
        groups = _absorb_boundaries(
            groups, spectra, windows, segment_map, alpha, min_composition_difference, tests, lattice_check=lattice_check,
        )
    if spacings is not None:
        groups = _rejoin_poor_groups(groups, judge, spacings, tolerance, min_spacings)
    groups.sort(key=lambda g: g[0])
    k = len(groups)
    differs = np.zeros((k, k), dtype=bool)
    if spacings is not None:
        for a in range(k):
            for b in range(k):
                pairs = [pair_overlap[i, j] for i in groups[a] for j in groups[b]]
                pair_weights = [weight[i] * weight[j] for i in groups[a] for j in groups[b]]
                differs[a, b] = _lattices_differ(pairs, lattice_linkage, min_lattice_overlap, pair_weights)
                if one_lattice is not None and differs[a, b]:
                    differs[a, b] = not _indexed_together(groups[a], groups[b], spacings, one_lattice)
                if one_lattice is not None and not differs[a, b]:
                    differs[a, b] = _indexed_apart(groups[a], groups[b], spacings, one_lattice)
    return PhaseMerge(
        groups=groups,
        tests=tests,
        spacings=[] if spacings is None else [np.asarray(v) for v in spacings],
        lattice_differs=differs,
    )


def window_shares(counts, windows, pseudo_count=0.5):
    """Share of each window in pooled ``counts`` (rows), a pseudo-count keeping logarithms finite.

    Examples
    --------
    >>> import numpy as np
    >>> window_shares(np.array([[3.0, 1.0, 0.0]]), np.array([0, 0, 1])).round(3).tolist()
    [[0.9, 0.1]]
    """
    table = _window_counts(np.atleast_2d(counts), np.asarray(windows)) + pseudo_count
    return table / table.sum(axis=1, keepdims=True)


def window_matrix(windows):
    """``(n_channels, n_windows)`` float32 0/1 matrix summing channels into windows."""
    windows = np.asarray(windows)
    n_windows = int(windows.max()) + 1 if windows.size and windows.max() >= 0 else 0
    out = np.zeros((windows.size, n_windows), dtype=np.float32)
    used = np.flatnonzero(windows >= 0)
    out[used, windows[used]] = 1.0
    return out


def reassign_by_composition(
    window_counts,
    labels,
    shares,
    allowed,
    min_log_ratio=DEFAULT_MIN_LOG_RATIO,
    *,
    scan_shape=None,
    pool_width=DEFAULT_POOL_WIDTH,
):
    """Move positions to the phase whose composition explains their counts far better.

    A position's counts in the composition windows are a multinomial draw
    from its phase's window shares whatever its thickness; the log
    likelihood ratio of another phase against its own is
    ``sum_w counts_w * (log share'_w - log share_w)``. The counts that
    decide are those of the ``pool_width`` x ``pool_width`` square of scan
    positions centred on the position (its 8 neighbours for 3): one
    spectrum of a few tens of counts rarely decides, and a phase is
    seldom a single position wide. Where the ratio exceeds
    ``min_log_ratio`` for a phase the position may belong to (``allowed``,
    e.g. not of a lattice known to differ), the position moves to the best
    such phase: the segments are drawn in the fused feature space, where a
    noisy spectrum can land a position in its neighbour's segment.

    Parameters
    ----------
    window_counts : numpy.ndarray
        ``(n_positions, n_windows)`` counts of every position.
    labels : numpy.ndarray
        ``(n_positions,)`` phase of every position, -1 for none (never moved).
    shares : numpy.ndarray
        ``(n_phases, n_windows)`` from :func:`window_shares`.
    allowed : numpy.ndarray
        ``(n_phases, n_phases)`` bool, ``allowed[k, j]``: a position of ``k``
        may move to ``j``.
    min_log_ratio : float, default 3 (a likelihood ratio of about 20)
    scan_shape : tuple of int, optional
        Shape of the scan grid the positions fill in C order (its product
        ``n_positions``); without it every position's own counts decide.
    pool_width : int, default 3
        Side of the square of positions pooled (odd; 1 for the position
        alone). Positions outside the scan add nothing.

    Returns
    -------
    numpy.ndarray
        The new labels.

    Examples
    --------
    >>> import numpy as np
    >>> shares = np.array([[0.8, 0.2], [0.2, 0.8]])
    >>> counts = np.array([[40, 10], [12, 38], [25, 25]])
    >>> reassign_by_composition(counts, np.array([0, 0, 1]), shares, np.ones((2, 2), bool), pool_width=1).tolist()
    [0, 1, 1]

    On a line of positions, three with few counts are moved together by
    their neighbours' counts, which alone each would not be:

    >>> counts = np.array([[3, 1], [1, 3], [1, 3], [1, 3], [3, 1]])
    >>> labels = np.array([0, 0, 0, 0, 0])
    >>> reassign_by_composition(counts, labels, shares, np.ones((2, 2), bool), pool_width=1).tolist()
    [0, 0, 0, 0, 0]
    >>> reassign_by_composition(counts, labels, shares, np.ones((2, 2), bool), scan_shape=(5,)).tolist()
    [0, 0, 1, 0, 0]
    """
    window_counts = np.asarray(window_counts, dtype=np.float64)
    labels = np.asarray(labels).astype(np.int64)
    pool_width = check_pool_width(pool_width)
    if scan_shape is not None and pool_width > 1:
        scan_shape = tuple(int(v) for v in scan_shape)
        if int(np.prod(scan_shape)) != window_counts.shape[0]:
            raise ValueError(
                f"scan_shape {scan_shape} holds {int(np.prod(scan_shape))} positions, window_counts {window_counts.shape[0]}."
            )
        window_counts = _pool_neighbours(window_counts, scan_shape, pool_width)
    log_shares = np.log(np.asarray(shares, dtype=np.float64))
    loglik = window_counts @ log_shares.T  # (n, k)
    out = labels.copy()
    placed = np.flatnonzero(labels >= 0)
    if placed.size == 0 or log_shares.shape[0] < 2:
        return out
    own = loglik[placed, labels[placed]]
    ratio = loglik[placed] - own[:, None]
    ratio[~np.asarray(allowed, dtype=bool)[labels[placed]]] = -np.inf
    ratio[np.arange(placed.size), labels[placed]] = -np.inf
    best = ratio.argmax(axis=1)
    move = ratio[np.arange(placed.size), best] > min_log_ratio
    out[placed[move]] = best[move]
    return out


def check_pool_width(pool_width):
    """``pool_width`` as an int, or the error a user needs (an odd side of at least 1)."""
    pool_width = check_int("pool_width", pool_width, minimum=1)
    if pool_width % 2 == 0:
        raise ValueError(f"pool_width must be odd (a square centred on the position), got {pool_width}.")
    return pool_width


def _pool_neighbours(window_counts, scan_shape, width):
    """Counts of every position summed over the ``width``-wide square (cube) of scan positions about it."""
    from scipy import ndimage

    grid = window_counts.reshape(tuple(scan_shape) + (-1,))
    kernel = np.ones((width,) * len(scan_shape) + (1,))
    return ndimage.correlate(grid, kernel, mode="constant", cval=0.0).reshape(window_counts.shape)


def _fine_map_inputs(labels, fine_labels, window_counts):
    """A copy of ``labels`` to change, the finer map, the counts as floats and their window indices."""
    window_counts = np.asarray(window_counts, dtype=np.float64)
    return (
        np.asarray(labels).astype(np.int64).copy(),
        np.asarray(fine_labels).astype(np.int64),
        window_counts,
        np.arange(window_counts.shape[1]),
    )


def _small_fine_phases(labels, fine_labels, max_share, min_host_share):
    """The finer map's small phases, each lying mostly in one phase of ``labels``.

    Yields ``(fine, inside, hosts, host)`` for every phase of ``fine_labels``
    that covers at most ``max_share`` of the labelled positions and lies
    for at least ``min_host_share`` in one phase (``host``); ``hosts`` are
    the phases of its labelled positions.
    """
    n_labelled = max(int((labels >= 0).sum()), 1)
    for fine in np.unique(fine_labels[fine_labels >= 0]):
        inside = fine_labels == fine
        size = int(inside.sum())
        if size == 0 or size > max_share * n_labelled:
            continue
        hosts = labels[inside]
        hosts = hosts[hosts >= 0]
        if hosts.size == 0:
            continue
        host = int(np.bincount(hosts).argmax())
        if (hosts == host).sum() < min_host_share * size:
            continue
        yield int(fine), inside, hosts, host


def grow_phases(
    labels,
    fine_labels,
    window_counts,
    *,
    max_share=DEFAULT_MAX_MINOR_SHARE,
    min_host_share=0.7,
    alpha=DEFAULT_ALPHA,
    min_composition_difference=DEFAULT_MIN_COMPOSITION_DIFFERENCE,
):
    """Move the positions of a small phase of a finer map into the phase that holds most of it.

    The finer map separates a small phase more cleanly than the segments
    of the phase map do: a minor phase found as a phase of its own may
    have lost some of its positions to the segments of its surroundings.
    A phase of the finer map that covers at most ``max_share`` of the
    positions and lies for at least ``min_host_share`` inside one phase of
    ``labels`` (its home) of the same composition (:func:`composition_test`
    of the pooled counts) takes its positions in any other phase along
    into its home where their pooled counts differ from the rest of that
    other phase and not from the home: the composition says they do not
    belong where they are.

    Parameters
    ----------
    labels, fine_labels : numpy.ndarray
        ``(n_positions,)`` the phase map and the finer one (-1 for none).
    window_counts : numpy.ndarray
        ``(n_positions, n_windows)`` X-ray counts in the composition windows.
    max_share, min_host_share, alpha, min_composition_difference : float
        As in :func:`carve_minor_phases`.

    Returns
    -------
    labels : numpy.ndarray
        With the moved positions in their new phase.
    moves : list of dict
        Per move: ``"fine_phase"``, ``"from"`` and ``"into"`` (phases of
        ``labels``), ``"positions"`` and the :func:`composition_test` result
        of the moved positions against the rest of the phase they leave.

    Examples
    --------
    Twelve positions of a small phase, three of them inside its surroundings:

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> counts = rng.poisson([60.0, 30.0, 10.0], size=(200, 3))
    >>> counts[:12] = rng.poisson([20.0, 30.0, 50.0], size=(12, 3))
    >>> labels = np.where(np.arange(200) < 9, 1, 0)
    >>> fine = np.where(np.arange(200) < 12, 1, 0)
    >>> new, moves = grow_phases(labels, fine, counts)
    >>> np.bincount(new).tolist(), moves[0]["positions"]
    ([188, 12], 3)
    """
    labels, fine_labels, window_counts, windows = _fine_map_inputs(labels, fine_labels, window_counts)
    original = labels.copy()
    moves = []
    for fine, inside, hosts, home in _small_fine_phases(original, fine_labels, max_share, min_host_share):
        if (hosts == home).all():
            continue
        counts_home = window_counts[original == home].sum(axis=0)
        same_as_home = composition_test(window_counts[inside].sum(axis=0), counts_home, windows)
        if not _same_composition(same_as_home, alpha, min_composition_difference):
            continue  # a phase of its own: carve_minor_phases' case
        for other in np.unique(hosts[hosts != home]):
            rest = (original == other) & ~inside
            if not rest.any():
                continue
            # The moving positions' own counts decide, not the whole fine
            # phase's: at its edge they may hold more of their surroundings.
            moving = inside & (original == other)
            counts_moving = window_counts[moving].sum(axis=0)
            test = composition_test(counts_moving, window_counts[rest].sum(axis=0), windows)
            if _same_composition(test, alpha, min_composition_difference):
                continue
            if not _same_composition(composition_test(counts_moving, counts_home, windows), alpha, min_composition_difference):
                continue
            labels[moving] = home
            moves.append(
                {
                    "fine_phase": int(fine),
                    "from": int(other),
                    "into": home,
                    "positions": int(moving.sum()),
                    "composition": test,
                }
            )
    return labels, moves


def carve_minor_phases(
    labels,
    fine_labels,
    window_counts,
    *,
    max_share=DEFAULT_MAX_MINOR_SHARE,
    min_host_share=0.7,
    alpha=DEFAULT_ALPHA,
    min_composition_difference=DEFAULT_MIN_COMPOSITION_DIFFERENCE,
):
    """Give small phases of a finer map their own label where their composition differs.

    A phase map made from segments of at least ``min_cluster_size``
    positions cannot hold a phase that covers less: a minor phase, or
    precipitates a few positions across, fall inside the segments of their
    surroundings. A finer map of the same embedding does separate them.
    Each of its phases that covers at most ``max_share`` of the positions,
    lies for at least ``min_host_share`` inside one phase of ``labels`` (its
    host) and whose pooled counts differ from the rest of the host
    (:func:`composition_test`) becomes a phase of its own — unless its
    spectrum is a mixture of the host and another phase
    (:func:`mixture_test`), which is a boundary, not a phase.

    Parameters
    ----------
    labels, fine_labels : numpy.ndarray
        ``(n_positions,)`` the phase map and the finer one (-1 for none).
    window_counts : numpy.ndarray
        ``(n_positions, n_windows)`` X-ray counts in the composition windows.
    max_share : float, default 0.1
    min_host_share : float, default 0.7
    alpha, min_composition_difference : float
        As in :func:`merge_phases`.

    Returns
    -------
    labels : numpy.ndarray
        With the carved phases numbered after the existing ones.
    carved : list of dict
        Per carved phase: ``"fine_phase"`` (and ``"joined"``, the finer
        map's phases joined to it: one phase cut by how much of its host
        its columns hold), ``"host"``, ``"positions"``, ``"label"`` and the
        :func:`composition_test` result against the rest of the host.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> counts = rng.poisson([60.0, 30.0, 10.0], size=(200, 3))
    >>> counts[:12] = rng.poisson([20.0, 30.0, 50.0], size=(12, 3))  # a small phase of its own
    >>> fine = np.where(np.arange(200) < 12, 1, 0)
    >>> new, carved = carve_minor_phases(np.zeros(200, int), fine, counts)
    >>> np.bincount(new).tolist(), carved[0]["host"]
    ([188, 12], 0)
    """
    labels, fine_labels, window_counts, windows = _fine_map_inputs(labels, fine_labels, window_counts)
    original = labels.copy()
    carved = []
    next_label = int(labels.max()) + 1 if labels.size else 0
    for fine, inside, _, host in _small_fine_phases(original, fine_labels, max_share, min_host_share):
        rest = (original == host) & ~inside
        if not rest.any():
            continue
        counts_fine, counts_rest = window_counts[inside].sum(axis=0), window_counts[rest].sum(axis=0)
        test = composition_test(counts_fine, counts_rest, windows)
        if _same_composition(test, alpha, min_composition_difference):
            continue
        boundary = False
        for other in np.unique(original[(original >= 0) & (original != host)]):
            mix = mixture_test(counts_fine, counts_rest, window_counts[original == other].sum(axis=0), windows)
            if 0.0 < mix["fraction"] < 1.0 and _same_composition(mix, alpha, min_composition_difference):
                boundary = True
                break
        if boundary:
            continue
        labels[inside] = next_label
        carved.append(
            {"fine_phase": fine, "host": host, "positions": int(inside.sum()), "composition": test, "label": next_label}
        )
        next_label += 1
    return _join_carved(labels, carved, original, window_counts, alpha, min_composition_difference)


#: Log-likelihood ratio, a carved phase's composition against its host's,
#: below which a connected piece of the carved phase goes back to the host.
MIN_CARVED_PIECE_LOG_RATIO = 0.0


def carved_pieces_of_the_host(labels, carved, window_counts, scan_shape, *, min_log_ratio=MIN_CARVED_PIECE_LOG_RATIO):
    """Give back to its host every connected piece of a carved phase whose pooled counts the host's composition explains better.

    :func:`carve_minor_phases` carves a finer map's phase whole: its
    particles, and any piece of the matrix the finer clustering put with
    them (published ``poly_minor_phase`` seed 1: pieces of 3-9 austenite
    positions, with no ferrite in their probes, inside the delta-ferrite
    phase). The phase's pooled counts differ from its host's; each piece
    (8-connected in the scan) stays only when its own pooled counts are at
    least ``exp(min_log_ratio)`` times likelier under the phase's
    composition (window shares of the pooled counts,
    :func:`window_shares`) than under its host's. The phase as a whole
    favours its own composition, so some piece of it always stays.

    Parameters
    ----------
    labels : numpy.ndarray
        ``(n_positions,)`` phase of every position after the carving.
    carved : list of tuple
        ``(phase, host)`` of every carved phase.
    window_counts : numpy.ndarray
        ``(n_positions, n_windows)`` X-ray counts in the composition windows.
    scan_shape : tuple of int
        ``(rows, cols)`` of the scan.
    min_log_ratio : float, default 0.0

    Returns
    -------
    numpy.ndarray
        The new labels.

    Examples
    --------
    A carved phase of two pieces, a particle and three positions of the
    host's composition:

    >>> import numpy as np
    >>> rng = np.random.default_rng(1)
    >>> counts = rng.poisson([60.0, 30.0, 10.0], size=(100, 3))
    >>> counts[:6] = rng.poisson([20.0, 30.0, 50.0], size=(6, 3))
    >>> labels = np.zeros(100, int)
    >>> labels[[0, 1, 2, 3, 4, 5, 55, 56, 57]] = 1
    >>> new = carved_pieces_of_the_host(labels, [(1, 0)], counts, (10, 10))
    >>> np.flatnonzero(new == 1).tolist()
    [0, 1, 2, 3, 4, 5]
    """
    from scipy import ndimage

    labels = np.asarray(labels).ravel()
    window_counts = np.asarray(window_counts, dtype=np.float64)
    if window_counts.shape[0] != labels.size:
        raise ValueError(
            f"carved_pieces_of_the_host: window_counts has {window_counts.shape[0]} rows for {labels.size} positions."
        )
    if int(np.prod(scan_shape)) != labels.size:
        raise ValueError(f"carved_pieces_of_the_host: scan_shape {tuple(scan_shape)} does not hold {labels.size} positions.")
    new = labels.copy()
    windows = np.arange(window_counts.shape[1])
    for phase, host in carved:
        inside = labels == phase
        if not inside.any() or not (labels == host).any():
            continue
        shares = window_shares(np.stack([window_counts[inside].sum(axis=0), window_counts[labels == host].sum(axis=0)]), windows)
        log_ratio = np.log(shares[0] / shares[1])
        pieces, n_pieces = ndimage.label(inside.reshape(scan_shape), structure=np.ones((3, 3), dtype=bool))
        pieces = pieces.ravel()
        for piece in range(1, n_pieces + 1):
            rows = pieces == piece
            if float(window_counts[rows].sum(axis=0) @ log_ratio) < min_log_ratio:
                new[rows] = host
    return new


def _join_carved(labels, carved, original, window_counts, alpha, min_difference):
    """Carved phases of one host are one phase when alike, or one a mixture of the other and the host.

    Precipitates embedded in a matrix carry more or less of the matrix in
    their columns: the finer map may cut one phase by that share.
    """
    windows = np.arange(window_counts.shape[1])
    joined = True
    while joined and len(carved) > 1:
        joined = False
        for i in range(len(carved)):
            for j in range(i + 1, len(carved)):
                a, b = carved[i], carved[j]
                if a["host"] != b["host"]:
                    continue
                counts_a = window_counts[labels == a["label"]].sum(axis=0)
                counts_b = window_counts[labels == b["label"]].sum(axis=0)
                same = _same_composition(composition_test(counts_a, counts_b, windows), alpha, min_difference)
                if not same:
                    host = window_counts[(original == a["host"]) & (labels == a["host"])].sum(axis=0)
                    for mixed, pure in ((counts_a, counts_b), (counts_b, counts_a)):
                        mix = mixture_test(mixed, pure, host, windows)
                        if 0.0 < mix["fraction"] < 1.0 and _same_composition(mix, alpha, min_difference):
                            same = True
                            break
                if same:
                    labels[labels == b["label"]] = a["label"]
                    a["positions"] += b["positions"]
                    a.setdefault("joined", []).append(b["fine_phase"])
                    carved.pop(j)
                    joined = True
                    break
            if joined:
                break
    # Number the carved phases after the existing ones again, without gaps.
    first = int(original.max()) + 1 if original.size else 0
    for index, entry in enumerate(carved):
        labels[labels == entry["label"]] = first + index
        entry["label"] = first + index
    return labels, carved


#: Smallest connected piece of a segment (positions) whose lattice is judged on its own.
DEFAULT_MIN_PIECE_SIZE = 15
#: A piece holding more of its segment than this share is the segment, which the merge has judged.
MAX_PIECE_SHARE = 0.5
#: Segments of a phase that must show a spacing for it to count as the phase's.
MIN_SEGMENTS_SHOWING = 2


def segment_pieces(segment_map, min_size=DEFAULT_MIN_PIECE_SIZE, max_share=MAX_PIECE_SHARE):
    """The connected pieces of every segment on the scan that are worth judging on their own.

    A segment is a cluster of the fused embedding: it can pool grains from
    all over the scan, of two phases whose patterns look alike (off-zone
    grains show few spots). Its 8-connected pieces on the scan are closer
    to single grains. Pieces smaller than ``min_size`` positions show too
    few spots; a piece holding more than ``max_share`` of its segment is
    the segment, whose lattice the merge has already judged.

    Parameters
    ----------
    segment_map : numpy.ndarray
        ``(rows, cols)`` segment of every position, -1 for none.
    min_size : int, default 15
    max_share : float, default 0.5

    Returns
    -------
    pieces : numpy.ndarray
        ``(rows, cols)`` piece of every position (0, 1, ...), -1 outside
        the pieces kept.
    piece_segment : numpy.ndarray
        The segment of every piece.

    Examples
    --------
    >>> import numpy as np
    >>> segments = np.zeros((6, 30), int)
    >>> segments[:, 10:20] = 1  # segment 0 in two pieces of 60 positions, segment 1 in one
    >>> pieces, of = segment_pieces(segments)
    >>> np.bincount(pieces[pieces >= 0]).tolist(), of.tolist()
    ([60, 60], [0, 0])
    """
    from scipy import ndimage

    segment_map = np.asarray(segment_map)
    if segment_map.ndim != 2:
        raise ValueError(f"segment_pieces: segment_map must be 2-D (the scan), got shape {segment_map.shape}.")
    pieces = np.full(segment_map.shape, -1, dtype=np.int64)
    piece_segment = []
    for segment in np.unique(segment_map[segment_map >= 0]):
        inside = segment_map == segment
        labelled, n_pieces = ndimage.label(inside, structure=np.ones((3, 3), bool))
        if n_pieces < 2:
            continue
        sizes = np.bincount(labelled.ravel(), minlength=n_pieces + 1)
        for piece in np.flatnonzero((sizes >= min_size) & (sizes <= max_share * inside.sum())):
            if piece == 0:
                continue
            pieces[labelled == piece] = len(piece_segment)
            piece_segment.append(int(segment))
    return pieces, np.asarray(piece_segment, dtype=np.int64)


def phase_spacings(spacings, segment_phase, judged, n_phases, tolerance, min_segments=MIN_SEGMENTS_SHOWING):
    """Per phase, the spacings at least ``min_segments`` of its judged segments show.

    One segment alone can show a false spacing (a boundary mixing two
    lattices, the support film's amorphous ring); two are a pattern. A
    phase of a single judged segment (one zone axis, one grain) has that
    segment's spacings; a phase without one has none.

    Examples
    --------
    >>> import numpy as np
    >>> spacings = [np.array([6.0, 9.8]), np.array([6.1, 11.5]), np.array([8.7])]
    >>> [v.round(2).tolist() for v in phase_spacings(spacings, [0, 0, 1], [True] * 3, 2, 0.25)]
    [[6.05], [8.7]]
    """
    out = []
    for phase in range(n_phases):
        members = [np.asarray(spacings[k], float) for k in range(len(spacings)) if segment_phase[k] == phase and judged[k]]
        centres = _union(range(len(members)), members, tolerance) if members else np.zeros(0)
        shown = np.array([sum(v.size > 0 and np.abs(v - c).min() <= tolerance for v in members) for c in centres])
        out.append(centres[shown >= min(min_segments, len(members))] if centres.size else centres)
    return out


def same_composition_matrix(counts, windows, *, alpha=DEFAULT_ALPHA, min_difference=DEFAULT_MIN_COMPOSITION_DIFFERENCE):
    """Which pairs of pooled spectra are one composition (:func:`composition_test`), as a bool matrix.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> counts = np.stack([rng.poisson([500, 100, 300]), rng.poisson([1000, 200, 600]), rng.poisson([300, 300, 300])])
    >>> same_composition_matrix(counts, np.arange(3)).astype(int).tolist()
    [[1, 1, 0], [1, 1, 0], [0, 0, 1]]
    """
    counts = np.asarray(counts, dtype=np.float64)
    k = counts.shape[0]
    same = np.eye(k, dtype=bool)
    for a in range(k):
        for b in range(a + 1, k):
            same[a, b] = same[b, a] = _same_composition(composition_test(counts[a], counts[b], windows), alpha, min_difference)
    return same


def reassignment_allowed(lattice_differs, same_composition, shares, max_minor_share=DEFAULT_MAX_MINOR_SHARE):
    """Between which phases positions may move by their composition, as a bool matrix ``[from, into]``.

    Positions move between phases whose lattices are not known to differ.
    Out of a small phase (at most ``max_minor_share`` of the positions: a
    minor phase, precipitates) they may also move into a phase of another
    lattice, when no phase of the small phase's lattice has that
    composition: the segments that make a small phase hold positions of
    its surroundings along its edges, and their counts give them back. A
    minor phase kept clean this way is carved out of the finer map whole
    (:func:`carve_minor_phases` and :func:`grow_phases` need it to lie
    mostly in one phase). Not the other way: pooled over a few neighbours,
    the counts next to a precipitate smaller than the pool look like the
    precipitate's.

    Parameters
    ----------
    lattice_differs : numpy.ndarray
        ``(n_phases, n_phases)`` bool: the phases' lattices are known to
        differ (:attr:`PhaseMerge.lattice_differs`).
    same_composition : numpy.ndarray
        ``(n_phases, n_phases)`` bool from :func:`same_composition_matrix`.
    shares : numpy.ndarray
        ``(n_phases,)`` each phase's share of the positions.
    max_minor_share : float, default 0.1

    Returns
    -------
    numpy.ndarray
        ``(n_phases, n_phases)`` bool.

    Examples
    --------
    An fcc matrix of one composition, a small bcc phase of another:

    >>> import numpy as np
    >>> differs = np.array([[False, True], [True, False]])
    >>> reassignment_allowed(differs, np.eye(2, dtype=bool), [0.97, 0.03]).astype(int).tolist()
    [[1, 0], [1, 1]]
    """
    differs = np.asarray(lattice_differs, dtype=bool)
    same = np.asarray(same_composition, dtype=bool)
    # own_lattice_has[a, b]: some phase not known to differ from a in
    # lattice has b's composition.
    own_lattice_has = (~differs).astype(np.int64) @ same.astype(np.int64) > 0
    small = np.asarray(shares, dtype=np.float64) <= max_minor_share
    return ~differs | (~own_lattice_has & small[:, None])


def move_pieces_by_lattice(labels, pieces, piece_spacings, spacings_of_phase, same_composition, tolerance):
    """Move pieces of segments to the phase of their composition whose lattice they show.

    Each spacing a piece shows is given to the phase (of those its own
    phase is compared with) whose spacing is nearest, within
    ``tolerance``. The piece's positions in its phase (the phase most of
    them hold) move to another phase of the same composition when at least
    one of the piece's spacings is that phase's and none is its own phase's.
    Two phases are compared only when both have spacings: a phase whose
    spacings are unknown cannot be told apart from another by them.

    Parameters
    ----------
    labels : numpy.ndarray
        ``(n_positions,)`` phase of every position, -1 for none.
    pieces : numpy.ndarray
        ``(n_positions,)`` piece of every position, -1 for none
        (:func:`segment_pieces`, flattened).
    piece_spacings : list of numpy.ndarray
        Spacings of every piece's mean pattern (:func:`ring_spacings`).
    spacings_of_phase : list of numpy.ndarray
        From :func:`phase_spacings`.
    same_composition : numpy.ndarray
        ``(n_phases, n_phases)`` bool.
    tolerance : float

    Returns
    -------
    labels : numpy.ndarray
    moves : list of dict
        Per move: ``"piece"``, ``"from"``, ``"into"``, ``"positions"`` and
        ``"spacings"``.

    Examples
    --------
    >>> import numpy as np
    >>> labels = np.array([0, 0, 0, 0, 1, 1])
    >>> pieces = np.array([-1, -1, 0, 0, -1, -1])
    >>> fcc, bcc = np.array([6.0, 6.9, 9.8]), np.array([6.2, 8.7, 10.7])
    >>> new, moves = move_pieces_by_lattice(labels, pieces, [np.array([8.7])], [fcc, bcc], np.ones((2, 2), bool), 0.25)
    >>> new.tolist(), moves[0]["into"]
    ([0, 0, 1, 1, 1, 1], 1)
    """
    labels = np.asarray(labels).astype(np.int64)
    pieces = np.asarray(pieces)
    new = labels.copy()
    moves = []

    def distance(value, phase):
        theirs = spacings_of_phase[phase]
        return float(np.abs(theirs - value).min()) if theirs.size else np.inf

    for piece, found in enumerate(piece_spacings):
        inside = pieces == piece
        held = labels[inside]
        held = held[held >= 0]
        if held.size == 0 or np.asarray(found).size == 0:
            continue
        own = int(np.bincount(held).argmax())
        if own >= len(spacings_of_phase) or spacings_of_phase[own].size == 0:
            continue
        for other in range(len(spacings_of_phase)):
            if other == own or not same_composition[own, other] or spacings_of_phase[other].size == 0:
                continue
            theirs = [v for v in found if distance(v, other) <= tolerance and distance(v, other) < distance(v, own)]
            ours = [v for v in found if distance(v, own) <= tolerance and distance(v, own) <= distance(v, other)]
            if theirs and not ours:
                rows = inside & (labels == own)
                new[rows] = other
                moves.append(
                    {"piece": piece, "from": own, "into": other, "positions": int(rows.sum()),
                     "spacings": np.asarray(found, dtype=np.float64)}
                )
                break
    return new, moves
