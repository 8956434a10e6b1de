"""Positions at phase boundaries given to the phase that fills most of their probe, by their diffraction.

At a grain boundary the probe lights two grains: the pattern there is a
sum of the two grains' patterns, and the ground truth a microscopist
wants (the phase under most of the probe) is the larger share. The fused
embedding does not measure shares: boundary positions sit between two
clusters and go to whichever HDBSCAN's memberships favour. For a minor
phase of grains 15-20 positions large half of the positions are boundary
positions (tiny ``poly_minor_phase``: 14-35 of 41-58 delta-ferrite
positions in the wrong phase, all at its edge).

Two grains of different orientations diffract into different spots, so a
boundary position's pattern is split between the two sides' patterns
(weighted least squares, Poisson weights), each side's pattern the mean of
the nearby positions of the same segment and phase away from the boundary
(the same grain, at about the same thickness and bending; the phase's
interior segment nearby when the position's own segment is a boundary
strip with no interior of its own). A position
moves to the other phase when its share there is past one half by
``margin`` standard errors, the misfit of the two-pattern model included.

Where the two sides diffract alike (one orientation, one lattice; phases
told apart by their X-rays alone) the split would follow thickness, not
the boundary: such pairs are left alone. Two sides diffract alike when
their patterns differ by less than ``min_difference`` (the L1 distance of
the normalised patterns) and their Bragg spots lie in the same places
(:func:`spot_correlation` at least ``max_spot_correlation``). The L1
distance alone mixes the spots with the direct beam and the diffuse
background, which thickness changes: measured on the built-in tiny scans
(2026-12-06), pairs of one orientation 0.06-0.29 (5-95 %), pairs of two
orientations 0.3-1.3, but an off-zone grain beside a small delta-ferrite
grain (tiny ``poly_minor_phase`` seed 1) only 0.25-0.32, as
weakly diffracting grains do. Their spots tell them apart (2026-12-07,
pairs judged on tiny ``chemistry_only`` seeds 0 / 3 / 4 and
``four_phases`` seeds 0 / 1, one orientation: spot correlation
0.76-1.00; ``poly_minor_phase`` seeds 1 / 2 and ``poly_structure``
seeds 0 / 4, two orientations: -0.02-0.56).
"""

import numpy as np

from .._validation import check_array, check_int, check_real

__all__ = [
    "DEFAULT_BOUNDARY_MARGIN",
    "DEFAULT_BOUNDARY_RADIUS",
    "DEFAULT_MIN_PATTERN_DIFFERENCE",
    "DEFAULT_MAX_SPOT_CORRELATION",
    "boundary_positions",
    "pattern_difference",
    "probe_share",
    "refine_boundaries",
    "spot_correlation",
]

#: Standard errors past one half a boundary position's share in the other
#: phase must be. Tiny scans, seeds 0-4 (2026-12-06, before the counts'
#: veto): 3 gave per-scenario means within 0.004 of 2's on the seven
#: scenarios tried (``poly_minor_phase`` 0.759 against 0.763).
DEFAULT_BOUNDARY_MARGIN = 2.0
#: Half-width (positions) of the square a side's pattern is pooled from.
DEFAULT_BOUNDARY_RADIUS = 5
#: Smallest L1 distance between the two sides' normalised patterns at which
#: the diffraction is allowed to split a position (see the module's notes).
DEFAULT_MIN_PATTERN_DIFFERENCE = 0.35
#: Spot correlation (:func:`spot_correlation`) from which two sides whose
#: patterns differ by less than ``min_difference`` count as one
#: orientation: between the two orientations' largest (0.56) and one
#: orientation's smallest (0.76) measured (see the module's notes).
DEFAULT_MAX_SPOT_CORRELATION = 0.65
#: Half-width (bins) of the square about the direct beam that
#: :func:`spot_correlation` leaves out: the beam is the same on both sides.
DIRECT_BEAM_HALF_WIDTH = 2
#: Natural log of the likelihood ratio by which a position's own X-ray
#: counts may favour its phase over another composition it moves to. Tiny
#: scans (2026-12-06): with 0 (the counts must not disagree at all) the
#: delta ferrite's edges, a mixture of two compositions close to each
#: other, mostly stayed (``poly_minor_phase`` seeds 0 / 3 / 4: 0.84 / 0.88
#: / 0.70; 3: 0.92 / 0.96 / 0.78; 10: 0.96 / 0.98 / 0.80, as with no
#: veto); with no veto ``poly_chemistry`` (random_state 3) fell from 0.969
#: to 0.945, grain positions 90 % of one composition moving to the other
#: (10: 0.963).
MAX_COUNTS_AGAINST = 10.0
#: Fewest positions away from the boundary a side's pattern is pooled from;
#: with fewer, every position of that side nearby is pooled.
MIN_INTERIOR_POSITIONS = 3
#: Fewest positions a side's pattern is pooled from at all.
MIN_SIDE_POSITIONS = 2


def boundary_positions(labels):
    """Positions with a position of another label among their eight neighbours.

    Parameters
    ----------
    labels : numpy.ndarray
        ``(rows, cols)`` integer labels.

    Returns
    -------
    numpy.ndarray
        ``(rows, cols)`` bool.

    Examples
    --------
    >>> import numpy as np
    >>> labels = np.zeros((4, 5), int); labels[:, 3:] = 1
    >>> boundary_positions(labels).astype(int).tolist()[0]
    [0, 0, 1, 1, 0]
    """
    from scipy import ndimage

    labels = np.asarray(check_array("labels", labels, ndim=2))
    return ndimage.maximum_filter(labels, 3, mode="nearest") != ndimage.minimum_filter(labels, 3, mode="nearest")


def pattern_difference(a, b):
    """L1 distance between two patterns, each normalised to unit sum (0 to 2).

    Examples
    --------
    >>> import numpy as np
    >>> float(pattern_difference(np.array([1.0, 1.0, 0.0]), np.array([2.0, 2.0, 0.0])))
    0.0
    >>> float(pattern_difference(np.array([1.0, 0.0]), np.array([0.0, 3.0])))
    2.0
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return float(np.abs(a / a.sum() - b / b.sum()).sum())


def spot_correlation(a, b, shape):
    """Correlation of two patterns' Bragg spots: their excess over a local median, the direct beam left out.

    Each pattern is normalised to unit sum and its excess over its 3 x 3
    median kept (spots, not the direct beam's plateau nor the diffuse
    background, which thickness scales); the square of half-width
    :data:`DIRECT_BEAM_HALF_WIDTH` about the brightest 3 x 3 block of the
    two patterns (the direct beam, common to both) is left out. Two sides
    of one orientation correlate near 1 whatever their thickness; two
    orientations near 0. It asks what
    :func:`~stemfuse_hs.clustering.grains.spot_images` asks of grains'
    mean patterns, but of the boundary step's binned sides (about 16 bins
    a side), whose beam is not known: that needs the scan's beam and a
    radial background, which a few bins a ring do not give.

    Parameters
    ----------
    a, b : numpy.ndarray
        ``(n_pixels,)`` counts of two patterns, flattened.
    shape : tuple of int
        ``(height, width)`` of the patterns, ``height * width == n_pixels``.

    Returns
    -------
    float
        Pearson correlation, 1.0 when either pattern shows no spot to
        correlate (nothing tells the two apart).

    Examples
    --------
    >>> import numpy as np
    >>> beam = np.zeros((16, 16)); beam[7:9, 7:9] = 100.0
    >>> a, b, c = beam + 1, beam + 1, beam + 1
    >>> a[3, 3] = a[12, 12] = 20; b[3, 3] = b[12, 12] = 35      # one orientation, two thicknesses
    >>> c[3, 12] = c[12, 3] = 20                                # another orientation
    >>> round(spot_correlation(a.ravel(), b.ravel(), (16, 16)), 2), round(spot_correlation(a.ravel(), c.ravel(), (16, 16)), 2)
    (1.0, -0.01)
    """
    from scipy import ndimage

    a = np.asarray(a, dtype=np.float64).reshape(shape)
    b = np.asarray(b, dtype=np.float64).reshape(shape)
    a, b = a / max(a.sum(), 1e-300), b / max(b.sum(), 1e-300)
    spots_a = a - ndimage.median_filter(a, 3, mode="nearest")
    spots_b = b - ndimage.median_filter(b, 3, mode="nearest")
    row, col = np.unravel_index(np.argmax(ndimage.uniform_filter(a + b, 3, mode="constant")), a.shape)
    outside = np.ones(a.shape, dtype=bool)
    half = DIRECT_BEAM_HALF_WIDTH
    outside[max(0, row - half):row + half + 1, max(0, col - half):col + half + 1] = False
    spots_a, spots_b = spots_a[outside] - spots_a[outside].mean(), spots_b[outside] - spots_b[outside].mean()
    norm = np.sqrt((spots_a**2).sum() * (spots_b**2).sum())
    if norm <= 0:
        return 1.0
    return float((spots_a * spots_b).sum() / norm)


def probe_share(pattern, own, other):
    """Share of a pattern in ``other`` against ``own``, and its standard error.

    ``pattern ≈ a * own + b * other`` by least squares weighted by the
    inverse of the expected counts (Poisson); the share is ``b / (a + b)``
    and its standard error comes from the fit's covariance, scaled up by
    the reduced chi-square when the two patterns do not explain the
    pattern to its counting noise.

    Parameters
    ----------
    pattern, own, other : numpy.ndarray
        ``(n_pixels,)`` counts.

    Returns
    -------
    share, error : float
        NaN when the two patterns do not determine a share.

    Examples
    --------
    >>> import numpy as np
    >>> own, other = np.array([100.0, 100, 0, 0]), np.array([0.0, 0, 100, 100])
    >>> share, error = probe_share(0.3 * own + 0.7 * other, own, other)
    >>> round(share, 3)
    0.7
    """
    y = np.asarray(pattern, dtype=np.float64)
    design = np.stack([np.asarray(own, np.float64), np.asarray(other, np.float64)], axis=1)
    weight = 1.0 / np.maximum(design.mean(axis=1), 1.0)
    weighted = design.T * weight
    try:
        covariance = np.linalg.inv(weighted @ design)
    except np.linalg.LinAlgError:
        return float("nan"), float("nan")
    amplitudes = covariance @ (weighted @ y)
    total = amplitudes.sum()
    if not np.isfinite(total) or total <= 0:
        return float("nan"), float("nan")
    residual = y - design @ amplitudes
    chi_square = float(weight @ residual**2) / max(y.size - 2, 1)
    covariance = covariance * max(chi_square, 1.0)
    gradient = np.array([-amplitudes[1], amplitudes[0]]) / total**2
    return float(amplitudes[1] / total), float(np.sqrt(max(gradient @ covariance @ gradient, 1e-24)))


def _square(shape, row, col, radius):
    """The slices of the square of half-width ``radius`` about (row, col), cut at the scan's edges."""
    rows, cols = shape
    return slice(max(0, row - radius), min(rows, row + radius + 1)), slice(max(0, col - radius), min(cols, col + radius + 1))


def _side_pattern(patterns, segments, phases, interior, row, col, segment, phase, radius):
    """Mean pattern of the positions of ``segment`` and ``phase`` near (row, col), the position itself left out."""
    square = _square(segments.shape, row, col, radius)
    side = (segments[square] == segment) & (phases[square] == phase)
    side[row - square[0].start, col - square[1].start] = False
    chosen = side & interior[square]
    if chosen.sum() < MIN_INTERIOR_POSITIONS:
        chosen = side
    if chosen.sum() < MIN_SIDE_POSITIONS:
        return None
    return patterns[square][chosen].mean(axis=0)


def _side_segment(segments, phases, interior, row, col, segment, phase, radius):
    """The segment a side of a boundary position is pooled from: ``segment``, unless it has no interior nearby.

    A segment that holds fewer than ``MIN_INTERIOR_POSITIONS`` positions
    of ``phase`` away from the boundary within ``radius`` is a boundary
    class itself (the clustering gathered the positions whose probe lights
    two grains): its mean pattern is the mixture to be split, and a share
    against it says nothing. The side is then the segment most of the
    interior positions of ``phase`` nearby hold (tiny ``structure_only``
    seed 4: a one-position strip of 78 fcc positions along the bcc matrix,
    one segment of its own, stayed bcc; ARI 0.81, 0.96 with this).
    """
    square = _square(segments.shape, row, col, radius)
    near = segments[square][interior[square] & (phases[square] == phase)]
    near = near[near >= 0]
    if (near == segment).sum() >= MIN_INTERIOR_POSITIONS or near.size == 0:
        return segment
    counts = np.bincount(near)
    return int(counts.argmax()) if counts.max() >= MIN_INTERIOR_POSITIONS else segment


def refine_boundaries(
    patterns,
    phases,
    segments,
    *,
    judged=None,
    excluded_pairs=(),
    log_likelihood=None,
    same_composition=None,
    margin=DEFAULT_BOUNDARY_MARGIN,
    radius=DEFAULT_BOUNDARY_RADIUS,
    min_difference=DEFAULT_MIN_PATTERN_DIFFERENCE,
    max_spot_correlation=DEFAULT_MAX_SPOT_CORRELATION,
    pattern_shape=None,
):
    """Give every position at a phase boundary to the phase that fills most of its probe, by its pattern.

    For a position whose eight neighbours hold another phase, its own
    side's pattern is the mean pattern of the positions within ``radius``
    of the same segment and phase that are not at a boundary themselves
    (all of them when fewer than three are); for each other phase among
    its neighbours, that side's pattern is pooled the same way from the
    segment most of those neighbours hold. A side whose segment holds
    fewer than three such positions nearby (a boundary strip the
    clustering made a segment of its own, whose mean is the mixture) is
    pooled from the segment most of that phase's positions away from the
    boundary nearby hold. The position moves to the other
    phase whose share (:func:`probe_share`) is past one half by the most
    standard errors, at least ``margin`` of them; a pair of sides whose
    patterns differ by less than ``min_difference``
    (:func:`pattern_difference`) and whose spots correlate by at least
    ``max_spot_correlation`` (:func:`spot_correlation`: one orientation)
    cannot move it, and neither can a phase
    of another composition that the position's own X-ray counts find less
    likely than its own (``log_likelihood``). All positions are judged on
    the labels given (the moves do not change one another).

    Parameters
    ----------
    patterns : numpy.ndarray
        ``(rows, cols, n_pixels)`` every position's pattern (counts,
        flattened; binned patterns serve as well).
    phases, segments : numpy.ndarray
        ``(rows, cols)`` phase and segment of every position (-1 for none:
        never judged, never pooled).
    judged : numpy.ndarray, optional
        ``(rows, cols)`` bool: the positions that may move (a window's
        inside when the scan is processed in overlapping windows); by
        default all.
    excluded_pairs : iterable of tuple of int
        Pairs of phases (either order) between which nothing moves (those
        unmixed by their X-rays already).
    log_likelihood : numpy.ndarray, optional
        ``(rows, cols, n_phases)`` log-likelihood of every position's X-ray
        counts under each phase's composition: a position never moves to a
        phase of another composition (``same_composition``) whose
        likelihood is below its own phase's. Its pattern places the
        boundary, its counts confirm the side (two grains of different
        compositions; the pooled pattern of a side can be another grain of
        its segment).
    same_composition : numpy.ndarray, optional
        ``(n_phases, n_phases)`` bool, with ``log_likelihood``: pairs of
        one composition, whose counts say nothing (default: none).
    margin : float, default 2.0
    radius : int, default 5
    min_difference : float, default 0.35
    max_spot_correlation : float, default 0.65
    pattern_shape : tuple of int, optional
        ``(height, width)`` of the patterns, which their spots are compared
        by; without it the L1 distance alone decides whether two sides
        diffract alike.

    Returns
    -------
    labels : numpy.ndarray
        ``(rows, cols)`` the new phase map.
    moves : numpy.ndarray
        ``(n_moves, 4)`` int64: row, column, phase left and phase joined.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> a, b = np.array([400.0, 400, 0, 0, 50]), np.array([0.0, 0, 400, 400, 50])
    >>> share_b = np.array([0, 0, 0, 0, 0, 0.3, 0.7, 1, 1, 1, 1, 1])[None, :].repeat(6, 0)  # the probe's share in b
    >>> patterns = rng.poisson(share_b[..., None] * b + (1 - share_b[..., None]) * a).astype(float)
    >>> phases = np.zeros((6, 12), int); phases[:, 7:] = 1       # the boundary drawn a column too far
    >>> new, moves = refine_boundaries(patterns, phases, phases)
    >>> new[0].tolist()
    [0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1]
    """
    patterns = np.asarray(check_array("patterns", patterns, ndim=3))
    phases = np.asarray(check_array("phases", phases, ndim=2))
    segments = np.asarray(check_array("segments", segments, ndim=2))
    if phases.shape != patterns.shape[:2] or segments.shape != phases.shape:
        raise ValueError(
            f"refine_boundaries: patterns {patterns.shape[:2]}, phases {phases.shape} and segments "
            f"{segments.shape} must cover one scan."
        )
    check_real("margin", margin, minimum=0)
    check_int("radius", radius, minimum=1)
    check_real("min_difference", min_difference, minimum=0)
    check_real("max_spot_correlation", max_spot_correlation, minimum=-1, maximum=1)
    if pattern_shape is not None:
        pattern_shape = tuple(int(v) for v in pattern_shape)
        if len(pattern_shape) != 2 or pattern_shape[0] * pattern_shape[1] != patterns.shape[2]:
            raise ValueError(
                f"refine_boundaries: pattern_shape {pattern_shape} does not hold the patterns' "
                f"{patterns.shape[2]} pixels."
            )
    excluded = {frozenset((int(p), int(q))) for p, q in excluded_pairs}
    if log_likelihood is not None:
        log_likelihood = np.asarray(log_likelihood, dtype=np.float64)
        if log_likelihood.shape[:2] != phases.shape:
            raise ValueError(
                f"refine_boundaries: log_likelihood {log_likelihood.shape[:2]} must cover the scan {phases.shape}."
            )
        n_phases = log_likelihood.shape[2]
        same = np.eye(n_phases, dtype=bool) if same_composition is None else np.asarray(same_composition, dtype=bool)
    edge = boundary_positions(phases)
    interior = ~edge
    if judged is not None:
        edge = edge & np.asarray(judged, dtype=bool)
    new = phases.copy()
    moves = []
    for row, col in zip(*np.nonzero(edge & (phases >= 0) & (segments >= 0))):
        phase = phases[row, col]
        segment = _side_segment(segments, phases, interior, row, col, segments[row, col], phase, radius)
        own = _side_pattern(patterns, segments, phases, interior, row, col, segment, phase, radius)
        if own is None:
            continue
        r0, c0 = max(0, row - 1), max(0, col - 1)
        near_phases = phases[r0:row + 2, c0:col + 2]
        near_segments = segments[r0:row + 2, c0:col + 2]
        best = None
        for other in np.unique(near_phases):
            if other < 0 or other == phase or frozenset((int(phase), int(other))) in excluded:
                continue
            if log_likelihood is not None and not same[phase, other] and (
                log_likelihood[row, col, phase] - log_likelihood[row, col, other] > MAX_COUNTS_AGAINST
            ):
                continue
            held = near_segments[(near_phases == other) & (near_segments >= 0)]
            if held.size == 0:
                continue
            segment = _side_segment(segments, phases, interior, row, col, np.bincount(held).argmax(), other, radius)
            theirs = _side_pattern(patterns, segments, phases, interior, row, col, segment, other, radius)
            if theirs is None:
                continue
            if pattern_difference(own, theirs) < min_difference and (
                pattern_shape is None or spot_correlation(own, theirs, pattern_shape) >= max_spot_correlation
            ):
                continue
            share, error = probe_share(patterns[row, col], own, theirs)
            if not np.isfinite(share):
                continue
            excess = (share - 0.5) / error
            if excess > margin and (best is None or excess > best[0]):
                best = (excess, other)
        if best is not None:
            new[row, col] = best[1]
            moves.append((row, col, phase, best[1]))
    return new, np.array(moves, dtype=np.int64).reshape(-1, 4)
