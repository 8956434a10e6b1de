"""Grains of every segment, each judged by the lattice its own interior shows.

A segment (a cluster of the fused embedding) can pool grains of two phases
that share a composition (fcc and bcc steel of one chemistry): off-zone
grains show a few spots, and the embedding sees orientations, not lattices.
The merge judges a segment's lattice from its mean pattern, which then
holds both; the pieces step (:func:`~stemfuse_hs.clustering.phases.move_pieces_by_lattice`)
only reaches grains that lie apart on the scan.

Here every connected piece (side by side) of a segment is split into grains by its
patterns (Ward linkage of neighbouring positions on the variance-stabilised
patterns, cut where joining two parts costs ``threshold`` times the median
distance of two neighbouring positions of one segment: a scale the data set
themselves, whatever the detector's gain), and each grain is judged on its
*interior*: the positions one step in from its edge, whose probe does not
reach a neighbouring grain. Measured on the tiny ``poly_four_phases`` scans
(2026-12-06): the grains' mean patterns with their edges showed spacings of
their neighbours (an off-zone bcc grain with one row of 200 spots showed
five lines, three of fcc) and the verdicts moved whole grains the wrong
way (mean 0.63 to 0.61); their interiors moved only right ones (0.63 to
0.81).

A grain no lattice explains can still pool parts of two grains (the
threshold is a compromise: 10 left grains of two phases together, 3 split
grains to below the smallest judged); it is split again at half the
threshold (:func:`split_undecided_grains`) and its parts judged.

Before any lattice judges it, a grain whose pooled X-ray counts a phase
of another composition explains far better moves there
(:func:`move_grains_by_composition`): a grain is one crystal, and a
minor phase's particles can sit in the matrix's segments.

A grain's lattice is the indexed lattice of the scan
(:func:`~stemfuse_hs.clustering.indexing.scan_lattices`) that explains all
its spacings, at least ``margin`` of them lines the other lattice does not
explain; a phase's lattice is the one most of its judged grains' positions show. A
grain whose lattice is not its phase's moves to the phase of its
composition that has it, if there is exactly one; if there is none, the
phase's grains of that lattice become a new phase
(:func:`move_grains_by_lattice`). The map split into grains is the phase
map, not the segment map (a phase's connected pieces): segments can
interleave over the same grains and leave pieces too small to judge.
"""

import numpy as np

from .._validation import check_array, check_int, check_real
from .boundaries import MAX_COUNTS_AGAINST

__all__ = [
    "DEFAULT_GRAIN_THRESHOLD",
    "DEFAULT_LATTICE_MARGIN",
    "MAX_WEAKLY_JUDGED_SPACINGS",
    "MIN_REJUDGING_SHARE",
    "grain_interiors",
    "grain_lattices",
    "grains_with_loose_positions",
    "lattices_indexed_on_grains",
    "lattices_refined_on_grains",
    "loose_positions_to_grains",
    "move_grains_by_composition",
    "move_grains_by_lattice",
    "move_patches_by_composition",
    "neighbour_distance",
    "phases_of_one_lattice",
    "spot_images",
    "split_grains",
    "split_undecided_grains",
    "verdicts_of_parts",
    "verdicts_of_same_crystals",
    "verdicts_of_weak_grains",
]

#: Ward distance, in median distances of two neighbouring positions of one
#: segment, past which two parts of a segment are two grains. Tiny
#: ``poly_four_phases`` (seed 0, 2026-12-06): 3 left 130 parts of 1536
#: positions (most below the smallest judged), 5 left 36 (22 of 15 or more
#: positions) that were 95 % of one grain each, 10 left grains of two phases
#: together.
DEFAULT_GRAIN_THRESHOLD = 5.0
#: Lines of its grain's that a lattice must explain and no other does for
#: the grain's verdict.
DEFAULT_LATTICE_MARGIN = 1
#: A grain whose interior no lattice explains is split once more at this
#: share of the threshold: it can pool parts of two grains of one
#: composition (tiny ``poly_structure`` seed 0, 2026-12-06: 74 positions of
#: a bcc grain with 28 of an fcc one, whose mean showed bcc 110 and fcc
#: 220). Half the threshold: phase maps 0.74 to 0.88 there, no map lower.
UNDECIDED_SPLIT_SHARE = 0.5


def _stabilised(patterns):
    """Anscombe's transform: Poisson counts to values of variance about 1/4 (float32)."""
    return np.sqrt(np.clip(np.asarray(patterns, dtype=np.float32), 0, None) + np.float32(0.375))


def neighbour_distance(patterns, segment_map):
    """Median Euclidean distance between the stabilised patterns of two side-by-side positions of one segment.

    The noise of one pattern, plus what changes within a grain from one
    position to the next: the unit :func:`split_grains` measures its
    threshold in.

    Parameters
    ----------
    patterns : numpy.ndarray
        ``(rows, cols, n_pixels)`` counts (binned patterns).
    segment_map : numpy.ndarray
        ``(rows, cols)`` segment of every position, -1 for none.

    Returns
    -------
    float
        NaN when no two neighbours share a segment.

    Examples
    --------
    >>> import numpy as np
    >>> patterns = np.random.default_rng(0).poisson(100.0, (4, 4, 64))
    >>> 5 < neighbour_distance(patterns, np.zeros((4, 4), int)) < 6.5  # sqrt(64 / 2): variance 1/4 per pixel and pattern
    True
    """
    patterns = check_array("patterns", patterns, ndim=3)
    segment_map = np.asarray(segment_map)
    if segment_map.shape != patterns.shape[:2]:
        raise ValueError(f"neighbour_distance: segment_map has shape {segment_map.shape}, the scan {patterns.shape[:2]}.")
    values = _stabilised(patterns)
    distances = []
    for axis in (0, 1):
        first = [slice(None)] * 2
        second = [slice(None)] * 2
        first[axis], second[axis] = slice(1, None), slice(None, -1)
        first, second = tuple(first), tuple(second)
        same = (segment_map[first] == segment_map[second]) & (segment_map[first] >= 0)
        distances.append(np.linalg.norm(values[first] - values[second], axis=-1)[same])
    distances = np.concatenate(distances)
    return float(np.median(distances)) if distances.size else float("nan")


def split_grains(patterns, segment_map, *, threshold=DEFAULT_GRAIN_THRESHOLD, min_size=15):
    """Split every segment's connected pieces (side by side) into grains by their patterns.

    Parameters
    ----------
    patterns : numpy.ndarray
        ``(rows, cols, n_pixels)`` counts (binned patterns; Poisson noise
        assumed for the transform, any gain for the threshold).
    segment_map : numpy.ndarray
        ``(rows, cols)`` segment of every position, -1 for none.
    threshold : float, default 5.0
        Ward distance at which two parts stay apart, in units of
        :func:`neighbour_distance`.
    min_size : int, default 15
        Grains with fewer positions are left out (-1): too few for a
        pattern of their own.

    Returns
    -------
    grains : numpy.ndarray
        ``(rows, cols)`` grain of every position (0, 1, ...), -1 for none.
    grain_segment : numpy.ndarray
        The segment of every grain.

    Examples
    --------
    Two halves of one segment diffract into different pixels:

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> expected = np.full((8, 16, 32), 20.0)
    >>> expected[:, :8, :4] += 200.0
    >>> expected[:, 8:, 4:8] += 200.0
    >>> grains, of = split_grains(rng.poisson(expected), np.zeros((8, 16), int))
    >>> np.unique(grains[:, :8]).size, np.unique(grains[:, 8:]).size, int(grains[0, 0] != grains[0, 15]), of.tolist()
    (1, 1, 1, [0, 0])
    """
    from scipy import ndimage
    from sklearn.cluster import AgglomerativeClustering
    from sklearn.feature_extraction.image import grid_to_graph

    patterns = check_array("patterns", patterns, ndim=3)
    threshold = check_real("threshold", threshold, minimum=0, strict_minimum=True)
    min_size = check_int("min_size", min_size, minimum=1)
    segment_map = np.asarray(segment_map)
    rows, cols = segment_map.shape
    if patterns.shape[:2] != (rows, cols):
        raise ValueError(f"split_grains: segment_map has shape {segment_map.shape}, the scan {patterns.shape[:2]}.")
    grains = np.full(rows * cols, -1, dtype=np.int64)
    grain_segment = []
    scale = neighbour_distance(patterns, segment_map)
    if not np.isfinite(scale) or scale <= 0:
        return grains.reshape(rows, cols), np.zeros(0, dtype=np.int64)
    values = _stabilised(patterns).reshape(rows * cols, -1)
    for segment in np.unique(segment_map[segment_map >= 0]):
        # Pieces and Ward's links both by the four side neighbours: a piece
        # is then one connected graph, which the linkage needs whole.
        pieces, n_pieces = ndimage.label(segment_map == segment)
        for piece in range(1, n_pieces + 1):
            inside = pieces == piece
            rows_of = np.flatnonzero(inside.ravel())
            if rows_of.size < min_size:
                continue
            if rows_of.size < 2 * min_size:
                parts = np.zeros(rows_of.size, dtype=np.int64)  # cannot hold two grains worth judging
            else:
                ward = AgglomerativeClustering(
                    n_clusters=None, distance_threshold=threshold * scale, linkage="ward",
                    connectivity=grid_to_graph(rows, cols, mask=inside),
                )
                parts = ward.fit_predict(values[rows_of])
            for part in range(parts.max() + 1):
                members = rows_of[parts == part]
                if members.size >= min_size:
                    grains[members] = len(grain_segment)
                    grain_segment.append(int(segment))
    return grains.reshape(rows, cols), np.asarray(grain_segment, dtype=np.int64)


def split_undecided_grains(patterns, grains, verdicts, *, threshold, min_size=15):
    """Split every grain no lattice was found for into smaller grains, numbered after the others.

    Each undecided grain is split by :func:`split_grains` on its own, at
    ``threshold`` (in units of the undecided grains' own
    :func:`neighbour_distance`).

    Parameters
    ----------
    patterns : numpy.ndarray
        ``(rows, cols, n_pixels)`` counts, as for :func:`split_grains`.
    grains : numpy.ndarray
        ``(rows, cols)`` from :func:`split_grains`, -1 for none.
    verdicts : numpy.ndarray
        ``(n_grains,)`` from :func:`grain_lattices`, -1 when undecided.
    threshold : float
        As in :func:`split_grains`.
    min_size : int, default 15
        As in :func:`split_grains`.

    Returns
    -------
    numpy.ndarray
        ``(rows, cols)``: the decided grains as they were, the undecided
        ones' parts numbered from ``len(verdicts)`` on, -1 where an
        undecided grain's part was smaller than ``min_size``.

    Examples
    --------
    Grain 0 is decided; grain 1 pools two patterns and splits in two:

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> expected = np.full((8, 24, 32), 20.0)
    >>> expected[:, :16, :4] += 200.0
    >>> expected[:, 16:, 4:8] += 200.0
    >>> grains = np.repeat([0] * 8 + [1] * 16, 8).reshape(24, 8).T
    >>> parts = split_undecided_grains(rng.poisson(expected), grains, np.array([0, -1]), threshold=5.0)
    >>> np.unique(parts[:, :8]).tolist(), np.unique(parts[:, 8:16]).size, np.unique(parts[:, 16:]).size, int(parts[0, 8] != parts[0, 23])
    ([0], 1, 1, 1)
    """
    grains = np.asarray(grains).astype(np.int64)
    verdicts = np.asarray(verdicts).astype(np.int64).ravel()
    if grains.size and grains.max() >= verdicts.size:
        raise ValueError(f"split_undecided_grains: {verdicts.size} verdicts for {int(grains.max()) + 1} grains.")
    undecided = np.append(verdicts < 0, False)  # index -1 (no grain) reads the appended False
    parents = np.where(undecided[grains], grains, -1)
    if not (parents >= 0).any():
        return grains
    parts, _ = split_grains(patterns, parents, threshold=threshold, min_size=min_size)
    return np.where(parts >= 0, parts + verdicts.size, np.where(parents >= 0, -1, grains))


#: A grain judged on this many spot spacings or fewer is split like an
#: undecided one (:func:`split_undecided_grains`): one spacing between two
#: lattices' lines (fcc 111 and bcc 110 of one steel, 2.4 % apart) is weak
#: evidence, and such a grain can pool two crystals whose spots the mean
#: pattern measures as one line (tiny ``poly_structure`` seed 4: 44 fcc and
#: 76 bcc positions at 6.1 px, between the two).
MAX_WEAKLY_JUDGED_SPACINGS = 1


def verdicts_of_parts(parts, grains, part_verdicts, verdicts, weak):
    """The parts' verdicts, an undecided part of a weakly judged grain keeping its grain's.

    Parameters
    ----------
    parts : numpy.ndarray
        ``(rows, cols)`` from :func:`split_undecided_grains` (parts
        numbered from ``len(verdicts)`` on).
    grains : numpy.ndarray
        ``(rows, cols)`` the grains that were split, -1 for none.
    part_verdicts : numpy.ndarray
        ``(n_parts,)`` each part's lattice (:func:`grain_lattices`), -1
        when undecided.
    verdicts : numpy.ndarray
        ``(n_grains,)`` the grains' lattices.
    weak : numpy.ndarray
        ``(n_grains,)`` bool: grains that were judged, but split anyway.

    Returns
    -------
    numpy.ndarray
        ``(n_parts,)``.

    Examples
    --------
    >>> import numpy as np
    >>> grains = np.array([[0, 0, 1, 1]]); parts = np.array([[2, 3, 4, 4]])
    >>> verdicts_of_parts(parts, grains, np.array([-1, 0, -1]), np.array([1, -1]), np.array([True, False])).tolist()
    [1, 0, -1]
    """
    parts = np.asarray(parts).ravel()
    grains = np.asarray(grains).ravel()
    verdicts = np.asarray(verdicts).astype(np.int64).ravel()
    result = np.asarray(part_verdicts).astype(np.int64).ravel().copy()
    if parts.shape != grains.shape:
        raise ValueError(f"verdicts_of_parts: parts has {parts.size} positions, grains {grains.size}.")
    held = parts >= verdicts.size
    parent = np.full(result.size, -1, dtype=np.int64)
    parent[parts[held] - verdicts.size] = grains[held]
    keeps = (result < 0) & (parent >= 0)
    keeps[keeps] = np.asarray(weak, dtype=bool)[parent[keeps]]
    result[keeps] = verdicts[parent[keeps]]
    return result


def grain_interiors(grains, *, min_interior=6):
    """Weights of every grain's interior: its positions one step in from its edge.

    A position at a grain's edge sees its neighbour's spots in the probe's
    tails. A grain too thin to have ``min_interior`` interior positions is
    pooled whole.

    Parameters
    ----------
    grains : numpy.ndarray
        ``(rows, cols)`` from :func:`split_grains`.
    min_interior : int, default 6

    Returns
    -------
    numpy.ndarray
        ``(n_positions, n_grains)`` float32, 1 inside a grain's interior.

    Examples
    --------
    >>> import numpy as np
    >>> grains = np.zeros((5, 5), int)
    >>> grain_interiors(grains).sum(axis=0).tolist()  # the 3 x 3 inside
    [9.0]
    """
    from scipy import ndimage

    grains = np.asarray(grains)
    if grains.ndim != 2:
        raise ValueError(f"grain_interiors: grains must be 2-D (the scan), got shape {grains.shape}.")
    min_interior = check_int("min_interior", min_interior, minimum=1)
    n_grains = int(grains.max()) + 1 if grains.size else 0
    weights = np.zeros((grains.size, n_grains), dtype=np.float32)
    for grain in range(n_grains):
        inside = grains == grain
        core = ndimage.binary_erosion(inside, structure=np.ones((3, 3), dtype=bool))
        weights[np.flatnonzero((core if core.sum() >= min_interior else inside).ravel()), grain] = 1.0
    return weights


def grain_lattices(spacings, lattices, *, margin=DEFAULT_LATTICE_MARGIN, spots=None):
    """Which lattice each grain shows: the one that explains all its spacings, with ``margin`` lines it alone claims.

    "All" as :func:`~stemfuse_hs.clustering.indexing.segment_lattices` has
    it (every spacing within 1.2 %, or all but one and that one within 2.5
    %); "claims" as :func:`~stemfuse_hs.clustering.indexing.claimed_by_lattices`
    has it (explained by no other lattice, or clearly nearer its reflection
    than the other's). A grain whose spacings two lattices both explain
    is of the one that claims some of them, when the other claims none.
    When each of two lattices claims some, the one whose claims lie
    clearly farther from the other's reflections than from its own, in
    pixels, takes the grain (:func:`_clearer_claims`). A spacing no
    lattice explains leaves the grain undecided: the
    scan's lattices can be indexed wrong (tiny ``four_phases`` seed 1, one
    orientation per phase: a body-centred lattice fitted to fcc and bcc
    lines together), and then a grain's lines fit each only in part.

    With ``spots``, a grain whose every spacing two lattices explain is
    first judged by the angles between its spots
    (:func:`~stemfuse_hs.clustering.indexing.spot_angles_agree`): a
    lattice whose reflections cannot make most of them is not the
    grain's, and when one lattice is left that the angles bear out, it is
    (fcc 111 spots 70.5 degrees apart are not hcp 002, whose family is
    one line; hcp 002 beside 110 makes 90 degrees, fcc 111 and 220 make
    35 or 90, and 311 with either of them 30, 59 or 80, the same as hcp
    112: hcp [1-100] shows fcc [11-2]'s net, which angles cannot tell).

    Parameters
    ----------
    spacings : list of numpy.ndarray
        Every grain's spot spacings (pixels).
    lattices : list of dict
        Indexed lattices (:func:`~stemfuse_hs.clustering.indexing.scan_lattices`,
        or their records in ``phase_merge``), at least two.
    margin : int, default 1
    spots : list of numpy.ndarray, optional
        Every grain's ``(n_spots, 2)`` spot offsets from the centre its
        spacings were measured about (pixels).

    Returns
    -------
    numpy.ndarray
        ``(n_grains,)`` index into ``lattices``, -1 when undecided.

    Examples
    --------
    >>> from stemfuse_hs.clustering.indexing import index_cubic
    >>> fcc, bcc = index_cubic([6.03, 6.96, 9.85, 11.55]), index_cubic([6.17, 8.72, 10.68, 12.34])
    >>> grain_lattices([[6.1, 8.72, 10.68], [6.96, 9.85], [6.1], [6.96, 8.72]], [fcc, bcc]).tolist()
    [1, 0, -1, -1]
    """
    from .indexing import (
        DEFAULT_INDEX_TOLERANCE,
        claimed_by_lattices,
        explained_by_lattice,
        segment_lattices,
        shared_reflection_shares,
    )

    margin = check_int("margin", margin, minimum=1)
    if len(lattices) < 2:
        raise ValueError(f"grain_lattices needs two lattices or more, got {len(lattices)}.")
    if spots is not None and len(spots) != len(spacings):
        raise ValueError(f"grain_lattices: spots has {len(spots)} entries for {len(spacings)} grains.")
    spacings = [np.asarray(v, dtype=np.float64).ravel() for v in spacings]
    verdicts = segment_lattices(spacings, lattices)
    largest = max((float(v.max()) for v in spacings if v.size), default=0.0)
    shares = shared_reflection_shares(lattices, largest * (1 + DEFAULT_INDEX_TOLERANCE))
    for grain, radii in enumerate(spacings):
        if radii.size == 0:
            continue
        claimed = claimed_by_lattices(radii, lattices)
        if verdicts[grain] < 0:
            # Every spacing explained by two lattices (bcc 310 and fcc 400 of
            # one steel): the one whose reflections they lie clearly nearer.
            explains_all = [j for j, lattice in enumerate(lattices) if explained_by_lattice(radii, lattice).all()]
            if len(explains_all) > 1 and spots is not None:
                singled_out = _lattice_the_angles_single_out(spots[grain], [lattices[j] for j in explains_all])
                if singled_out is not None:
                    verdicts[grain] = explains_all[singled_out]
                    continue  # the angles decide; no line of its own is needed
            if len(explains_all) > 1:
                claiming = [j for j in explains_all if claimed[j].any()]
                if len(claiming) == 1 and claimed.sum() == claimed[claiming[0]].sum():
                    verdicts[grain] = claiming[0]
                elif len(claiming) == 2:
                    verdicts[grain] = _clearer_claims(radii, [lattices[j] for j in claiming], claimed[claiming], claiming)
                elif not claimed.any():
                    verdicts[grain] = _likelier_to_show_only_shared(radii, [lattices[j] for j in explains_all], [shares[j] for j in explains_all], explains_all)
                    continue  # no line of its own to count towards the margin
        if verdicts[grain] >= 0 and claimed[verdicts[grain]].sum() < margin:
            verdicts[grain] = -1
    return verdicts


#: How many times the pixels by which one lattice's claimed spacings lie
#: nearer its reflections than the other lattice's must exceed the other's
#: for a grain that both claim (:func:`_clearer_claims`).
MIN_CLAIM_SEPARATION_RATIO = 2.0


def _clearer_claims(radii, lattices, claimed, indices):
    """Of two lattices that each claim some of a grain's spacings, the index (from ``indices``) whose claims separate it clearly more; or -1.

    A spot's radius is measured to about the same fraction of a pixel at
    any radius, so a pair of reflections a fixed fraction apart is told
    apart better the farther out it lies: published ``poly_hcp`` seed 0's
    grains show hcp 004 at 98.0-98.5 px and fcc 222 at 97.3-97.9, cleanly
    apart, where hcp 002 (49.0-49.4) and fcc 111 (48.6-49.1) overlap. A
    grain of 106 fcc positions showed 49.14 (claimed by hcp 002, 0.26 px
    nearer it than fcc 111) and 97.41 (claimed by fcc 222, 0.70 px nearer
    it than hcp 004): each lattice's separation is the sum over its claimed
    spacings of (distance to the other's nearest reflection - distance to
    its own), and the larger must be :data:`MIN_CLAIM_SEPARATION_RATIO`
    times the smaller.

    Examples
    --------
    >>> import numpy as np
    >>> hcp = {"centring": "hcp", "scale": 39.879, "c_over_a": 1.6224}
    >>> fcc = {"centring": "F", "scale": 28.188}
    >>> radii = np.array([49.14, 93.62, 97.41])
    >>> claimed = np.array([[True, False, False], [False, False, True]])
    >>> _clearer_claims(radii, [hcp, fcc], claimed, [0, 1])
    1
    """
    from .indexing import nearest_reflections

    nearest = [nearest_reflections(radii, lattice) for lattice in lattices]
    separation = [
        float(np.sum(np.abs(radii - nearest[1 - own])[claimed[own]] - np.abs(radii - nearest[own])[claimed[own]]))
        for own in (0, 1)
    ]
    for own in (0, 1):
        if separation[own] > MIN_CLAIM_SEPARATION_RATIO * max(separation[1 - own], 0.0):
            return int(indices[own])
    return -1


def _lattice_the_angles_single_out(spots, lattices):
    """Index of the one lattice whose reflections make most angles between the ``spots``, when every other's make fewer than half; or None."""
    from .indexing import _angles_bear_out

    verdicts = [_angles_bear_out(spots, lattice) for lattice in lattices]
    agreeing = [j for j, verdict in enumerate(verdicts) if verdict is True]
    contradicted = [j for j, verdict in enumerate(verdicts) if verdict is False]
    if len(agreeing) == 1 and len(contradicted) == len(lattices) - 1:
        return agreeing[0]
    return None


def lattices_refined_on_grains(spacings, lattices, verdicts):
    """Each lattice refitted on the grains judged to show it by a spacing it alone claims.

    The scan's lattices come from lines pooled over segments, where a line
    two lattices share is the mean of both lattices' spots; a grain
    showing a spacing only one lattice claims is that lattice's, and so are
    its shared spacings (:func:`~stemfuse_hs.clustering.indexing.refined_lattice`).
    Grains judged only by which lattice is likelier to show their shared
    spacings (:func:`grain_lattices`) do not refit.

    Parameters
    ----------
    spacings : list of numpy.ndarray
        Every grain's spot spacings (pixels).
    lattices : list of dict
        Indexed lattices.
    verdicts : numpy.ndarray
        ``(n_grains,)`` from :func:`grain_lattices`.

    Returns
    -------
    list of dict
        The lattices, refitted where their grains allow.

    Examples
    --------
    fcc and hcp Co, the hcp ``c/a`` fitted 0.5 % small: its 002 came out at
    fcc 111. Refitted on the grains that show hcp 100 or 101 beside 002, it
    lies 0.6 % beyond, and a grain showing 002 and 004 alone is hcp's:

    >>> import numpy as np
    >>> fcc = {"centring": "F", "scale": 3.525, "lines": np.array([6.105]), "n": [3], "max_error": 0.0}
    >>> hcp = {"centring": "hcp", "scale": 4.99, "c_over_a": 1.616, "lines": np.array([5.76]), "n": [1.3333],
    ...        "hkl": ["100"], "max_error": 0.0}
    >>> grains = [np.array([5.76, 6.142, 6.53]), np.array([6.145, 6.535, 11.93]), np.array([6.104, 7.05]),
    ...           np.array([6.144, 12.288])]
    >>> verdicts = grain_lattices(grains, [fcc, hcp])
    >>> verdicts.tolist()
    [1, 1, 0, 0]
    >>> refined = lattices_refined_on_grains(grains, [fcc, hcp], verdicts)
    >>> round(refined[1]["c_over_a"], 3)
    1.625
    >>> grain_lattices(grains, refined).tolist()
    [1, 1, 0, 1]
    """
    from .indexing import claimed_by_lattices, refined_lattice

    verdicts = np.asarray(verdicts)
    if verdicts.shape != (len(spacings),):
        raise ValueError(f"lattices_refined_on_grains: {verdicts.size} verdicts for {len(spacings)} grains.")
    spacings = [np.asarray(v, dtype=np.float64).ravel() for v in spacings]
    refined = []
    for j, lattice in enumerate(lattices):
        members = [
            radii for radii, verdict in zip(spacings, verdicts)
            if verdict == j and radii.size and claimed_by_lattices(radii, lattices)[j].any()
        ]
        refined.append(refined_lattice(members, lattice))
    return refined


def lattices_indexed_on_grains(spacings, lattices, *, spots=None):
    """The scan's two lattices indexed again on its grains' spacings, when they explain more grains whole.

    The scan's lattices are indexed on the segments of the fused
    clustering (:func:`~stemfuse_hs.clustering.indexing.scan_lattices`),
    and a segment can pool grains of two phases: on published
    ``poly_four_phases`` seed 0, five segments over four phases showed 8-13
    spacings each, fcc and bcc lines together and averaged 1 % off their
    reflections, and the pair indexed on them was fcc with an hcp lattice
    of ``c/a`` 1.685 whose basal net (100, 110, 200) is the hexagon of bcc
    [111] (110, 211, 220); the steel has no hcp phase. A grain is one
    crystal: its spacings index cleanly. The grains' pair replaces
    ``lattices`` when a lattice of it explains every spacing of more
    grains than a lattice of ``lattices`` does (the way
    :func:`~stemfuse_hs.clustering.indexing.scan_lattices` chooses between
    pairs); otherwise ``lattices`` stand, so that a scan its segments
    index well keeps its lattices to the last digit.

    Parameters
    ----------
    spacings : list of numpy.ndarray
        Every grain's spot spacings (pixels), measured about the
        Friedel-pair centre.
    lattices : list of dict
        The lattices indexed on the segments, two.
    spots : list of numpy.ndarray, optional
        Every grain's ``(n_spots, 2)`` spot offsets (the angles between
        them bear a candidate lattice out or not).

    Returns
    -------
    lattices : list of dict
        The grains' pair, each with ``"indexed_on": "grains"`` and
        ``"grains_explained"`` (``explained``), or ``lattices`` themselves.
    explained : (int, int)
        How many grains a lattice of ``lattices`` and of the grains' pair
        explains whole (0 for a pair the grains do not give).

    Examples
    --------
    Grains of fcc and bcc Fe (pixels), indexed on segments as fcc and a
    chance hcp lattice whose basal lines are bcc 110, 211 and 220:

    >>> import numpy as np
    >>> fcc = {"centring": "F", "scale": 27.77, "lines": np.array([48.1]), "n": [3], "max_error": 0.0}
    >>> hcp = {"centring": "hcp", "scale": 42.66, "c_over_a": 1.685, "lines": np.array([49.26]), "n": [1.3333],
    ...        "hkl": ["100"], "max_error": 0.0}
    >>> grains = [np.array([48.1, 55.54]), np.array([78.54, 92.1]), np.array([48.1, 92.1]),
    ...           np.array([49.34, 69.78]), np.array([69.78, 85.47]), np.array([49.34, 98.69, 110.33]),
    ...           np.array([55.54, 78.54]), np.array([49.34, 85.47])]
    >>> indexed, explained = lattices_indexed_on_grains(grains, [fcc, hcp])
    >>> sorted(lattice["centring"] for lattice in indexed), explained
    (['F', 'I'], (6, 8))
    """
    from .indexing import DEFAULT_INDEX_TOLERANCE, _segments_explained, scan_lattices

    if len(lattices) != 2:
        raise ValueError(f"lattices_indexed_on_grains needs two lattices, got {len(lattices)}.")
    if spots is not None and len(spots) != len(spacings):
        raise ValueError(f"lattices_indexed_on_grains: spots has {len(spots)} entries for {len(spacings)} grains.")
    spacings = [np.asarray(v, dtype=np.float64).ravel() for v in spacings]
    before = _segments_explained(spacings, lattices, DEFAULT_INDEX_TOLERANCE)
    indexed = scan_lattices(spacings, spots=spots)
    if len(indexed) != 2:
        return list(lattices), (before, 0)
    after = _segments_explained(spacings, indexed, DEFAULT_INDEX_TOLERANCE)
    if after <= before:
        return list(lattices), (before, after)
    return [dict(lattice, indexed_on="grains", grains_explained=(before, after)) for lattice in indexed], (before, after)


#: How many times likelier one lattice must be than the other to show a
#: grain's spacings when every one is a reflection of both and neither
#: claims any (:func:`_likelier_to_show_only_shared`).
MIN_SHARED_LIKELIHOOD_RATIO = 2.0


def _likelier_to_show_only_shared(radii, lattices, shares, candidates):
    """Of lattices that all explain a grain's spacings ``radii``, the one likelier to show them, or -1.

    A lattice most of whose reflections another lattice has too shows only
    those more often than one with many reflections of its own: fcc Co
    shares 111, 220, 311 and 222 of its five first reflections with hcp
    Co, hcp Co 4 of its ten; fcc [111] shows 220 alone, hcp 110 comes with
    100 in [001]. Each spacing is taken as one reflection drawn at random,
    so a lattice sharing ``share`` of its reflections shows ``k`` shared
    ones with probability ``share ** k``. When every lattice was refitted
    on its grains (``"spread"``, :func:`lattices_refined_on_grains`), each
    spacing's relative distance to the lattice's reflection counts too, as
    a normal error of the larger spread: hcp Co 002 lies 0.6 % beyond fcc
    111, and hcp [1-100] shows exactly fcc [11-2]'s net (002, 110, 112 and
    004 for 111, 220, 311 and 222). The likelier lattice is kept when it is
    :data:`MIN_SHARED_LIKELIHOOD_RATIO` times likelier than every other.
    """
    from .indexing import nearest_reflections

    with np.errstate(divide="ignore"):
        log_likelihood = radii.size * np.log(np.asarray(shares, dtype=np.float64))
    if all("spread" in lattice for lattice in lattices):
        spread = max(float(lattice["spread"]) for lattice in lattices)
        for j, lattice in enumerate(lattices):
            error = np.abs(radii - nearest_reflections(radii, lattice)) / radii
            log_likelihood[j] -= float((error**2).sum()) / (2.0 * spread**2)
    order = np.argsort(-log_likelihood)
    if np.isfinite(log_likelihood[order[0]]) and log_likelihood[order[0]] - log_likelihood[order[1]] >= np.log(MIN_SHARED_LIKELIHOOD_RATIO):
        return candidates[order[0]]
    return -1


#: Smallest cosine similarity of two neighbouring grains' spot images
#: (:func:`spot_images`) at which they are one crystal. Tiny ``poly_hcp``,
#: ``poly_structure`` and ``poly_four_phases`` (2026-12-07): neighbouring
#: grains of two true grains reached 0.66, parts of one true grain 0.52 to
#: 1.0, most above 0.8.
MIN_SAME_CRYSTAL_SIMILARITY = 0.8
#: Positions between two grains that still make them neighbours: the
#: parts of a split grain too small to judge leave gaps.
SAME_CRYSTAL_REACH = 2


def spot_images(patterns, direct_beam, *, smoothing=1.0):
    """Each mean pattern's spots, as a unit vector: where they lie says the crystal's orientation.

    A pattern less its round background about its own direct beam
    (:func:`~stemfuse_hs.clustering.phases.radial_background`; the beam
    found near the scan's, as the descan moves it), smoothed by a Gaussian
    of ``smoothing`` pixels (a bent grain's spots move), clipped at zero,
    with the beam and its rim (1.5 beam radii and a pixel) set to zero.
    Two grains of one crystal, cut apart by their thickness or bending,
    show their spots in the same places; two crystals rarely do, even of
    one lattice.

    Parameters
    ----------
    patterns : numpy.ndarray
        ``(n_grains, H, W)`` mean patterns (all zero for a grain without
        positions).
    direct_beam : sequence of float
        The scan's beam (row, column, radius), pixels.
    smoothing : float, default 1
        Pixels.

    Returns
    -------
    numpy.ndarray
        ``(n_grains, H * W)`` float32, each row of unit length (zero without spots).

    Examples
    --------
    >>> import numpy as np
    >>> rows, cols = np.mgrid[:32, :32]
    >>> def pattern(*spots):
    ...     image = 200 * np.exp(-((rows - 16) ** 2 + (cols - 16) ** 2) / 4.0) + 5.0
    ...     for y, x in spots:
    ...         image += 40 * np.exp(-((rows - y) ** 2 + (cols - x) ** 2) / 2.0)
    ...     return image
    >>> images = spot_images(np.stack([pattern((16, 24), (16, 8)), pattern((16, 24), (16, 8)), pattern((24, 16), (8, 16))]),
    ...                      (16.0, 16.0, 2.0))
    >>> np.round(images @ images.T, 2).tolist()
    [[1.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
    """
    from scipy import ndimage

    from ..features.sdt import find_direct_beam
    from .phases import radial_background

    patterns = check_array("patterns", patterns, ndim=3)
    smoothing = check_real("smoothing", smoothing, minimum=0)
    scan_centre, scan_radius = (float(direct_beam[0]), float(direct_beam[1])), float(direct_beam[2])
    n_grains, rows, cols = patterns.shape
    yy, xx = np.mgrid[0:rows, 0:cols]
    images = np.zeros((n_grains, rows * cols), dtype=np.float32)  # a published scan's hundred grains: 26 MB
    for grain, pattern in enumerate(np.nan_to_num(np.asarray(patterns, dtype=np.float64))):
        if not pattern.any():
            continue
        centre, radius = find_direct_beam(pattern, near=scan_centre, within=scan_radius)
        spots = pattern - radial_background(pattern, centre)
        if smoothing > 0:
            spots = ndimage.gaussian_filter(spots, smoothing)
        spots[np.hypot(yy - centre[0], xx - centre[1]) < 1.5 * radius + 1.0] = 0.0
        spots = np.maximum(spots, 0.0).ravel()
        norm = np.linalg.norm(spots)
        if norm > 0:
            images[grain] = spots / norm
    return images


def verdicts_of_same_crystals(images, grains, verdicts, *, min_similarity=MIN_SAME_CRYSTAL_SIMILARITY, reach=SAME_CRYSTAL_REACH):
    """Undecided grains given the verdict of the neighbouring grains that show the same spots.

    A grain whose spacings both lattices explain (hcp 002, 110 and 112 are
    fcc 111, 220 and 311 to 0.6 %) is undecided, but a neighbouring part
    of the same crystal, cut from it by thickness or bending, can show a
    spot that decides (tiny ``poly_hcp`` seed 0, 2026-12-07: three parts
    of an fcc grain showing only 220 and 311 beside two parts of it that
    also showed 111). An undecided grain takes the verdict of the
    neighbours (within ``reach`` positions) whose spot images
    (:func:`spot_images`) it matches to ``min_similarity``, when they
    agree; parts so decided pass their verdict on in turn.

    Parameters
    ----------
    images : numpy.ndarray
        ``(n_grains, n_pixels)`` from :func:`spot_images`.
    grains : numpy.ndarray
        ``(rows, cols)`` grain of every position, -1 for none.
    verdicts : numpy.ndarray
        ``(n_grains,)`` lattice of every grain, -1 when undecided.
    min_similarity : float, default 0.8
    reach : int, default 2

    Returns
    -------
    verdicts : numpy.ndarray
        ``(n_grains,)`` with the undecided grains that matched decided.
    source : numpy.ndarray
        ``(n_grains,)`` the neighbour each took its verdict from (the most
        similar), -1 for the others.
    similarity : numpy.ndarray
        ``(n_grains,)`` that neighbour's similarity, NaN for the others.

    Examples
    --------
    Grain 1 shows grain 0's spots, grain 2 other ones:

    >>> import numpy as np
    >>> images = np.array([[1.0, 0.0], [0.96, 0.28], [0.0, 1.0]])
    >>> grains = np.repeat([[0, 0, 1, 1, 2, 2]], 4, axis=0)
    >>> new, source, similarity = verdicts_of_same_crystals(images, grains, np.array([1, -1, -1]))
    >>> new.tolist(), source.tolist(), similarity.round(2).tolist()
    ([1, 1, -1], [-1, 0, -1], [nan, 0.96, nan])
    """
    images, grains, verdicts, min_similarity, reach = _checked_crystal_inputs(
        "verdicts_of_same_crystals", images, grains, verdicts, min_similarity, reach
    )
    new = verdicts.copy()
    source = np.full(verdicts.size, -1, dtype=np.int64)
    similarity = np.full(verdicts.size, np.nan)
    neighbours = _similar_neighbours(images, grains, np.flatnonzero(verdicts < 0), min_similarity, reach)
    changed = True
    while changed:
        changed = False
        for grain, (others, matches) in neighbours.items():
            if new[grain] >= 0:
                continue
            decided = new[others] >= 0
            if decided.any() and np.unique(new[others[decided]]).size == 1:
                best = np.argmax(np.where(decided, matches, -np.inf))
                new[grain], source[grain], similarity[grain] = new[others[best]], others[best], matches[best]
                changed = True
    return new, source, similarity


#: Smallest size, as a share of a grain judged on one spacing, of a part of
#: its crystal judged on more that can give it its lattice
#: (:func:`verdicts_of_weak_grains`): a much smaller part lies mostly on
#: boundaries, and its mean pattern adds a neighbour's spots (published
#: ``poly_structure`` seed 1, 2026-12-07: a part of 16 positions of three
#: crystals, judged on two spacings, turned a correctly judged grain of 75
#: positions, 0.80 to 0.76).
MIN_REJUDGING_SHARE = 0.5


def verdicts_of_weak_grains(
    images, grains, verdicts, n_spacings, *, max_weak_spacings=MAX_WEAKLY_JUDGED_SPACINGS,
    min_similarity=MIN_SAME_CRYSTAL_SIMILARITY, reach=SAME_CRYSTAL_REACH, min_share=MIN_REJUDGING_SHARE,
):
    """Grains judged on a single spacing given the lattice of a neighbouring part of their crystal judged on more.

    One spacing is weak evidence: a bent crystal's mean pattern can put a
    spot 2 % off, as far as fcc 111 lies from bcc 110 (tiny
    ``poly_four_phases`` seed 4, 2026-12-07: 49 positions of a bcc crystal
    showed only 110, measured at 6.06 px against 6.18, and were judged fcc,
    while the crystal's other part, 30 positions, showed 110 and 211 and
    was judged bcc; their spot images matched to 0.98). A grain judged on
    ``max_weak_spacings`` spacings or fewer whose spot image
    (:func:`spot_images`) matches, to ``min_similarity``, those of
    neighbours (within ``reach`` positions) judged on more and holding at
    least ``min_share`` of its positions, which agree on another lattice,
    takes theirs.

    Parameters
    ----------
    images : numpy.ndarray
        ``(n_grains, n_pixels)`` from :func:`spot_images`.
    grains : numpy.ndarray
        ``(rows, cols)`` grain of every position, -1 for none.
    verdicts : numpy.ndarray
        ``(n_grains,)`` lattice of every grain, -1 when undecided.
    n_spacings : numpy.ndarray
        ``(n_grains,)`` spacings each grain's verdict rests on.
    max_weak_spacings : int, default 1
    min_similarity : float, default 0.8
    reach : int, default 2
    min_share : float, default 0.5

    Returns
    -------
    verdicts : numpy.ndarray
        ``(n_grains,)`` with the weak grains that matched judged anew.
    source : numpy.ndarray
        ``(n_grains,)`` the neighbour each took its verdict from (the most
        similar), -1 for the others.
    similarity : numpy.ndarray
        ``(n_grains,)`` that neighbour's similarity, NaN for the others.

    Examples
    --------
    Grain 1 shows one spacing and the spots of grain 0, which shows more:

    >>> import numpy as np
    >>> images = np.array([[1.0, 0.0], [0.98, 0.2], [0.0, 1.0]])
    >>> grains = np.repeat([[0, 0, 1, 1, 2, 2]], 4, axis=0)
    >>> new, source, _ = verdicts_of_weak_grains(images, grains, np.array([1, 0, 0]), np.array([3, 1, 1]))
    >>> new.tolist(), source.tolist()
    ([1, 1, 0], [-1, 0, -1])
    """
    images, grains, verdicts, min_similarity, reach = _checked_crystal_inputs(
        "verdicts_of_weak_grains", images, grains, verdicts, min_similarity, reach
    )
    n_spacings = np.asarray(n_spacings).astype(np.int64).ravel()
    if n_spacings.size != verdicts.size:
        raise ValueError(f"verdicts_of_weak_grains: {n_spacings.size} spacing counts for {verdicts.size} verdicts.")
    max_weak_spacings = check_int("max_weak_spacings", max_weak_spacings, minimum=0)
    min_share = check_real("min_share", min_share, minimum=0)
    weak = (verdicts >= 0) & (n_spacings <= max_weak_spacings)
    strong = (verdicts >= 0) & ~weak
    sizes = np.bincount(grains[grains >= 0], minlength=verdicts.size)
    new = verdicts.copy()
    source = np.full(verdicts.size, -1, dtype=np.int64)
    similarity = np.full(verdicts.size, np.nan)
    for grain, (others, matches) in _similar_neighbours(images, grains, np.flatnonzero(weak), min_similarity, reach).items():
        judged = strong[others] & (sizes[others] >= min_share * sizes[grain])
        if not judged.any() or np.unique(verdicts[others[judged]]).size != 1 or verdicts[others[judged][0]] == verdicts[grain]:
            continue
        best = np.argmax(np.where(judged, matches, -np.inf))
        new[grain], source[grain], similarity[grain] = verdicts[others[best]], others[best], matches[best]
    return new, source, similarity


def _checked_crystal_inputs(name, images, grains, verdicts, min_similarity, reach):
    images = check_array("images", images, ndim=2)
    grains = np.asarray(grains).astype(np.int64)
    verdicts = np.asarray(verdicts).astype(np.int64).ravel()
    if grains.ndim != 2:
        raise ValueError(f"{name}: grains must be a (rows, cols) map, got shape {grains.shape}.")
    if images.shape[0] != verdicts.size or (grains.size and grains.max() >= verdicts.size):
        raise ValueError(
            f"{name}: {images.shape[0]} spot images and {verdicts.size} verdicts "
            f"for {int(grains.max()) + 1 if grains.size else 0} grains."
        )
    min_similarity = check_real("min_similarity", min_similarity, minimum=-1, maximum=1)
    reach = check_int("reach", reach, minimum=1)
    return images, grains, verdicts, min_similarity, reach


def _similar_neighbours(images, grains, of, min_similarity, reach):
    """For each grain in ``of``: the grains within ``reach`` positions whose spot images match its own to ``min_similarity``, and how well."""
    from scipy import ndimage

    boxes = ndimage.find_objects(grains + 1)
    neighbours = {}
    for grain in of:
        if grain >= len(boxes) or boxes[grain] is None:
            continue
        box = tuple(slice(max(sl.start - reach, 0), sl.stop + reach) for sl in boxes[grain])
        own = grains[box] == grain
        near = ndimage.binary_dilation(own, iterations=reach) & ~own
        others = np.unique(grains[box][near])
        others = others[others >= 0]
        matches = images[others] @ images[grain]
        neighbours[grain] = (others[matches >= min_similarity], matches[matches >= min_similarity])
    return neighbours


#: Fewest grains of a second lattice that make a new phase of their
#: composition (one grain can be judged wrong).
MIN_NEW_PHASE_GRAINS = 2
#: Smallest share of their phase's positions that the grains of a second
#: lattice must hold to become a new phase.
MIN_NEW_PHASE_SHARE = 0.1


def move_grains_by_lattice(labels, grains, verdicts, same_composition):
    """Move grains whose lattice is not their phase's to the phase of their composition that has it, or to a new phase.

    A phase's lattice is the verdict most of its judged grains' positions
    carry (none when none is judged). A grain moves (its positions in the
    phase most of them hold) when its verdict is another lattice than its
    phase's and exactly one other phase of the same composition has that
    lattice. When no phase of its composition has that lattice, the grains
    of the phase judged that lattice become a new phase (numbered after
    the others) if they are ``MIN_NEW_PHASE_GRAINS`` (2) or more and hold
    at least ``MIN_NEW_PHASE_SHARE`` (10 %) of the phase's positions: the
    clustering can pool grains of two lattices of one composition into
    every segment (published ``poly_four_phases`` seed 0: five segments
    for four phases, each holding fcc and bcc grains of one composition),
    and then no phase of that lattice exists to move them to.

    Parameters
    ----------
    labels : numpy.ndarray
        ``(n_positions,)`` phase of every position, -1 for none.
    grains : numpy.ndarray
        ``(n_positions,)`` grain of every position, -1 for none.
    verdicts : numpy.ndarray
        ``(n_grains,)`` from :func:`grain_lattices`.
    same_composition : numpy.ndarray
        ``(n_phases, n_phases)`` bool.

    Returns
    -------
    labels : numpy.ndarray
    phase_lattice : numpy.ndarray
        ``(n_phases,)`` every phase's lattice, -1 for none.
    moves : list of dict
        Per move: ``"grain"``, ``"from"``, ``"into"``, ``"positions"``.

    Examples
    --------
    Phases 0 and 1 share a composition; grain 2 (lattice 1) sits in phase 0:

    >>> import numpy as np
    >>> labels = np.array([0, 0, 0, 0, 0, 0, 1, 1])
    >>> grains = np.array([0, 0, 1, 1, 2, 2, 3, 3])
    >>> new, lattice_of, moves = move_grains_by_lattice(labels, grains, np.array([0, 0, 1, 1]), np.ones((2, 2), bool))
    >>> new.tolist(), lattice_of.tolist(), moves[0]["positions"]
    ([0, 0, 0, 0, 1, 1, 1, 1], [0, 1], 2)

    One phase holds grains 0 and 1 of lattice 0 and grains 2 and 3 of
    lattice 1, and no other phase has lattice 1: grains 2 and 3 become
    phase 2.

    >>> labels = np.array([0, 0, 0, 0, 0, 0, 0, 0, 1, 1])
    >>> grains = np.array([0, 0, 1, 1, 2, 2, 3, 3, 4, 4])
    >>> new, lattice_of, moves = move_grains_by_lattice(labels, grains, np.array([0, 0, 1, 1, 0]), np.eye(2, dtype=bool))
    >>> new.tolist(), lattice_of.tolist()
    ([0, 0, 0, 0, 2, 2, 2, 2, 1, 1], [0, 0, 1])
    """
    labels = np.asarray(labels).astype(np.int64).ravel()
    grains = np.asarray(grains).astype(np.int64).ravel()
    verdicts = np.asarray(verdicts).astype(np.int64).ravel()
    same_composition = np.asarray(same_composition, dtype=bool)
    if grains.size != labels.size:
        raise ValueError(f"move_grains_by_lattice: {grains.size} grain labels for {labels.size} positions.")
    n_phases = int(labels.max()) + 1 if labels.size else 0
    if same_composition.shape != (n_phases, n_phases):
        raise ValueError(f"move_grains_by_lattice: same_composition is {same_composition.shape} for {n_phases} phases.")
    n_lattices = int(verdicts.max()) + 1 if verdicts.size else 0
    own_phase = np.full(verdicts.size, -1, dtype=np.int64)
    size = np.zeros(verdicts.size, dtype=np.int64)
    for grain in range(verdicts.size):
        held = labels[(grains == grain) & (labels >= 0)]
        if held.size:
            own_phase[grain] = int(np.bincount(held).argmax())
            size[grain] = held.size
    votes = np.zeros((n_phases, max(n_lattices, 1)))
    for grain in np.flatnonzero((verdicts >= 0) & (own_phase >= 0)):
        votes[own_phase[grain], verdicts[grain]] += size[grain]
    phase_lattice = np.where(votes.sum(axis=1) > 0, votes.argmax(axis=1), -1)
    new = labels.copy()
    moves = []
    held_lattice = np.append(phase_lattice, -1)[labels]  # -1 (no phase) reads the appended -1
    for grain in np.flatnonzero((verdicts >= 0) & (own_phase >= 0)):
        own = own_phase[grain]
        if phase_lattice[own] < 0:
            continue
        if phase_lattice[own] == verdicts[grain]:
            target = own
        else:
            targets = [q for q in range(n_phases) if q != own and same_composition[own, q] and phase_lattice[q] == verdicts[grain]]
            if len(targets) != 1:
                continue
            target = targets[0]
        # A grain can hold positions of several phases of its composition
        # (split by composition, not by phase): those in a phase of another
        # lattice move, those in a phase of no lattice or of its own stay.
        of_composition = np.append(same_composition[own], False)[labels]
        for source in range(n_phases):
            rows = (grains == grain) & (labels == source) & of_composition & (held_lattice >= 0) & (held_lattice != verdicts[grain])
            if source == target or not rows.any():
                continue
            new[rows] = target
            moves.append({"grain": int(grain), "from": int(source), "into": int(target), "positions": int(rows.sum())})
    phase_size = np.bincount(labels[labels >= 0], minlength=n_phases)
    new_lattices = []
    for own in np.flatnonzero(phase_lattice >= 0):
        for lattice in range(n_lattices):
            if lattice == phase_lattice[own] or any(
                q != own and same_composition[own, q] and phase_lattice[q] == lattice for q in range(n_phases)
            ):
                continue
            judged = np.flatnonzero((verdicts == lattice) & (own_phase == own))
            rows = np.isin(grains, judged) & (labels == own)
            if judged.size < MIN_NEW_PHASE_GRAINS or rows.sum() < MIN_NEW_PHASE_SHARE * phase_size[own]:
                continue
            target = n_phases + len(new_lattices)
            new_lattices.append(lattice)
            for grain in judged:
                held = (grains == grain) & (labels == own)
                new[held] = target
                moves.append({"grain": int(grain), "from": int(own), "into": target, "positions": int(held.sum())})
    phase_lattice = np.concatenate([phase_lattice, np.array(new_lattices, dtype=phase_lattice.dtype)])
    return new, phase_lattice, moves


def grains_with_loose_positions(patterns, labels, grains, same_composition, *, threshold=DEFAULT_GRAIN_THRESHOLD, min_size=15):
    """Grains taking in the positions left out of every grain that the patterns, read across phases of one composition, put in them.

    The phase map can speckle a crystal with positions of another phase of
    its composition (the clustering's noise: published
    ``poly_four_phases`` seed 1, 2026-12-07: 361 of its 535 wrong
    positions in pieces of a phase under 15 positions). Split by phase
    (:func:`split_grains`), those pieces are too small to be grains, and
    the crystal around them loses them too. Here the scan is split again
    by its patterns alone within every composition (phases of one
    composition, by ``same_composition`` chained, one map), and a
    position in no grain joins the grain that holds most of the positions
    of its part of that split. Only the left-out positions move between
    grains: the split across phases merges grains that diffract alike,
    and fcc and hcp Co grains on a shared net would become one (tiny
    ``poly_hcp`` seeds 2 and 3: 0.93 / 0.68 to 0.77 / 0.51 when that split
    replaced the phase's own).

    Parameters
    ----------
    patterns : numpy.ndarray
        ``(rows, cols, n_pixels)`` counts, as for :func:`split_grains`.
    labels : numpy.ndarray
        ``(rows, cols)`` phase of every position, -1 for none.
    grains : numpy.ndarray
        ``(rows, cols)`` grain of every position (from :func:`split_grains`
        of ``labels``), -1 for none.
    same_composition : numpy.ndarray
        ``(n_phases, n_phases)`` bool.
    threshold, min_size
        As in :func:`split_grains`.

    Returns
    -------
    numpy.ndarray
        ``(rows, cols)`` int64: ``grains`` with the positions taken in.

    Examples
    --------
    Phases 0 and 1 are one composition; position (2, 2) of phase 1 sits
    in grain 0 of phase 0 and shows its pattern:

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> expected = np.full((6, 12, 32), 20.0)
    >>> expected[:, :6, :4] += 200.0
    >>> expected[:, 6:, 4:8] += 200.0
    >>> labels = np.repeat([[0] * 6 + [1] * 6], 6, axis=0)
    >>> labels[2, 2] = 1
    >>> grains = np.where(labels == 0, 0, 1)
    >>> grains[2, 2] = -1
    >>> out = grains_with_loose_positions(rng.poisson(expected), labels, grains, np.ones((2, 2), bool), min_size=4)
    >>> int(out[2, 2])
    0
    """
    from scipy.sparse.csgraph import connected_components

    labels = np.asarray(labels).astype(np.int64)
    grains = np.asarray(grains).astype(np.int64)
    same_composition = np.asarray(same_composition, dtype=bool)
    if grains.shape != labels.shape:
        raise ValueError(f"grains_with_loose_positions: grains have shape {grains.shape}, the phase map {labels.shape}.")
    n_phases = int(labels.max()) + 1 if labels.size else 0
    if same_composition.shape != (n_phases, n_phases):
        raise ValueError(
            f"grains_with_loose_positions: same_composition is {same_composition.shape} for {n_phases} phases."
        )
    loose = (grains < 0) & (labels >= 0)
    if not loose.any() or n_phases == 0:
        return grains.copy()
    _, composition_of = connected_components(same_composition.astype(np.int8), directed=False)
    compositions = np.where(labels >= 0, composition_of[np.maximum(labels, 0)], -1)
    parts, _ = split_grains(patterns, compositions, threshold=threshold, min_size=min_size)
    out = grains.copy()
    for part in np.unique(parts[loose & (parts >= 0)]):
        inside = parts == part
        members = grains[inside & (grains >= 0)]
        if members.size:
            out[inside & loose] = np.bincount(members).argmax()
    return out


#: Positions (Chebyshev distance) within which a grain is a candidate for a
#: position in no grain (:func:`loose_positions_to_grains`).
LOOSE_POSITION_REACH = 2
#: Half-width (positions) of the square a candidate grain's pattern is
#: pooled from about the position it is offered to: the same part of the
#: grain, at about the same thickness and bending.
LOOSE_POSITION_POOL_RADIUS = 5


def loose_positions_to_grains(
    patterns, labels, grains, *, reach=LOOSE_POSITION_REACH, pool_radius=LOOSE_POSITION_POOL_RADIUS,
    log_likelihood=None, same_composition=None, max_counts_against=MAX_COUNTS_AGAINST,
):
    """Every position in no grain given the phase of the grain nearby that fills most of its probe.

    Positions in no grain (a grain boundary a position or two wide, where
    the probe lights two crystals; pieces too small to be grains) keep the
    phase the clustering gave them while the grains around them move by
    their lattice. Where a segment pooled grains of two phases, that phase
    is wrong for many of them: published ``poly_four_phases`` seed 0
    (2026-12-08) had 208 of its 366 wrong positions in no grain, 25 % of
    such positions, most at boundaries between grains of two other
    phases. A position's pattern is split between the patterns of the
    grains within ``reach`` of it (weighted non-negative least squares,
    Poisson weights; each grain's pattern the mean of its positions within
    ``pool_radius``) and the position takes the phase of the grain with
    the largest share. With ``log_likelihood``, a position does not move to
    a phase of another composition (``same_composition``) whose window
    composition explains its own X-ray counts worse by more than
    ``max_counts_against`` (natural log): a precipitate of its own
    chemistry, too small to be a grain, stays.

    Parameters
    ----------
    patterns : numpy.ndarray
        ``(rows, cols, n_pixels)`` binned patterns.
    labels : numpy.ndarray
        ``(rows, cols)`` phase of every position, -1 for none.
    grains : numpy.ndarray
        ``(rows, cols)`` grain of every position, -1 for none; a grain's
        phase is the phase of most of its positions.
    reach : int, default 2
    pool_radius : int, default 5
    log_likelihood : numpy.ndarray, optional
        ``(rows, cols, n_phases)`` log-likelihood of every position's
        window counts under every phase's pooled composition.
    same_composition : numpy.ndarray, optional
        ``(n_phases, n_phases)`` bool; required with ``log_likelihood``.
    max_counts_against : float, default 10
        :data:`~stemfuse_hs.clustering.boundaries.MAX_COUNTS_AGAINST`, the
        boundary step's own veto.

    Returns
    -------
    numpy.ndarray
        ``(rows, cols)`` int64: ``labels`` with the loose positions' phases.

    Examples
    --------
    Two grains of phases 0 and 2; the column between them is in no grain,
    labelled 1, and diffracts mostly as the right-hand grain:

    >>> import numpy as np
    >>> left, right = np.r_[200.0, 10, 10, 10], np.r_[10.0, 10, 200, 10]
    >>> patterns = np.concatenate([np.tile(left, (6, 4, 1)), np.tile(0.3 * left + 0.7 * right, (6, 1, 1)),
    ...                            np.tile(right, (6, 4, 1))], axis=1)
    >>> labels = np.repeat([[0] * 4 + [1] + [2] * 4], 6, axis=0)
    >>> grains = np.repeat([[0] * 4 + [-1] + [1] * 4], 6, axis=0)
    >>> loose_positions_to_grains(patterns, labels, grains)[:, 4].tolist()
    [2, 2, 2, 2, 2, 2]
    """
    from scipy.optimize import nnls

    from .boundaries import boundary_positions

    patterns = check_array("patterns", patterns, ndim=3)
    reach = check_int("reach", reach, minimum=1)
    pool_radius = check_int("pool_radius", pool_radius, minimum=reach)
    labels = np.asarray(labels).astype(np.int64)
    grains = np.asarray(grains).astype(np.int64)
    rows, cols = labels.shape
    if grains.shape != labels.shape or patterns.shape[:2] != labels.shape:
        raise ValueError(
            f"loose_positions_to_grains: patterns {patterns.shape[:2]}, labels {labels.shape} and grains "
            f"{grains.shape} must cover one scan."
        )
    if log_likelihood is not None:
        log_likelihood = np.asarray(log_likelihood, dtype=np.float64)
        if same_composition is None or log_likelihood.shape[:2] != labels.shape:
            raise ValueError(
                "loose_positions_to_grains: log_likelihood needs same_composition and must cover the scan."
            )
        same_composition = np.asarray(same_composition, dtype=bool)
    inside = (grains >= 0) & (labels >= 0)
    if not inside.any():
        return labels.copy()
    tally = np.zeros((int(grains.max()) + 1, int(labels.max()) + 1), dtype=np.int64)
    np.add.at(tally, (grains[inside], labels[inside]), 1)
    grain_phase = np.argmax(tally, axis=1)  # the phase of most of its positions
    # Away from its edges a phase's pattern is its own, not a boundary's mixture.
    interior = ~boundary_positions(labels)
    out = labels.copy()
    for row, col in zip(*np.nonzero((grains < 0) & (labels >= 0))):
        near = grains[max(row - reach, 0):row + reach + 1, max(col - reach, 0):col + reach + 1]
        candidates = np.unique(near[near >= 0])
        if candidates.size == 0:
            continue
        window = (slice(max(row - pool_radius, 0), row + pool_radius + 1), slice(max(col - pool_radius, 0), col + pool_radius + 1))
        pooled_grains, pooled = grains[window], patterns[window]
        sides = np.stack([pooled[pooled_grains == grain].mean(axis=0) for grain in candidates], axis=1)
        own = np.asarray(patterns[row, col], dtype=np.float64)
        weight = 1.0 / np.sqrt(np.maximum(own, 1.0))
        shares, misfit = nnls(sides * weight[:, None], own * weight)
        phase, target = labels[row, col], grain_phase[candidates[int(np.argmax(shares))]]
        if target == phase or not shares.any():
            continue
        # A piece of its phase too small to be a grain (or one the split left
        # in pieces) diffracts as its phase's positions nearby away from any
        # boundary, not as the grains around it: it stays when they explain
        # it better.
        same_phase = (labels[window] == phase) & interior[window]
        if same_phase.any():
            _, own_misfit = nnls((pooled[same_phase].mean(axis=0) * weight)[:, None], own * weight)
            if own_misfit < misfit:
                continue
        if log_likelihood is not None and not same_composition[phase, target] and (
            log_likelihood[row, col, phase] - log_likelihood[row, col, target] > max_counts_against
        ):
            continue
        out[row, col] = target
    return out


def phases_of_one_lattice(labels, grains, verdicts, same_composition):
    """Which phases are one phase once their grains have moved: one composition, one lattice, no grain of another.

    The merge keeps apart segments whose mean patterns hold two lattices;
    once :func:`move_grains_by_lattice` has moved the grains of the other
    lattice out, what remains is a phase that another phase of its
    composition and lattice already is (tiny ``poly_four_phases`` seed 3,
    2026-12-07: a segment of a bcc and an fcc grain of one composition
    stayed a fifth phase after its fcc grain left, and a third bcc grain
    could not move, having two bcc phases to go to). Phases join when their
    compositions agree pairwise and every judged grain each holds (most of
    whose positions it holds) shows the same lattice.

    Parameters
    ----------
    labels : numpy.ndarray
        ``(n_positions,)`` phase of every position, -1 for none.
    grains : numpy.ndarray
        ``(n_positions,)`` grain of every position, -1 for none.
    verdicts : numpy.ndarray
        ``(n_grains,)`` from :func:`grain_lattices`.
    same_composition : numpy.ndarray
        ``(n_phases, n_phases)`` bool, on ``labels`` (phases past the last
        one ``labels`` holds are empty and stay apart).

    Returns
    -------
    numpy.ndarray
        ``(n_phases,)`` int64: the number every phase has once phases of one
        composition and lattice are one (numbered in order of their first
        phase; ``arange(n_phases)`` when none join).

    Examples
    --------
    Phases 0 and 2 share a composition and show only lattice 1:

    >>> import numpy as np
    >>> labels = np.array([0, 0, 1, 1, 2, 2])
    >>> grains = np.array([0, 0, 1, 1, 2, 2])
    >>> same = np.array([[1, 0, 1], [0, 1, 0], [1, 0, 1]], bool)
    >>> phases_of_one_lattice(labels, grains, np.array([1, 0, 1]), same).tolist()
    [0, 1, 0]
    """
    labels = np.asarray(labels).astype(np.int64).ravel()
    grains = np.asarray(grains).astype(np.int64).ravel()
    verdicts = np.asarray(verdicts).astype(np.int64).ravel()
    same_composition = np.asarray(same_composition, dtype=bool)
    if grains.size != labels.size:
        raise ValueError(f"phases_of_one_lattice: {grains.size} grain labels for {labels.size} positions.")
    # Phases numbered past the last one holding positions (emptied by the
    # moves) count: they keep their numbers.
    n_phases = same_composition.shape[0] if same_composition.ndim == 2 else -1
    if same_composition.shape != (n_phases, n_phases) or (labels.size and labels.max() >= n_phases):
        n_held = int(labels.max()) + 1 if labels.size else 0
        raise ValueError(f"phases_of_one_lattice: same_composition is {same_composition.shape} for {n_held} phases.")
    shown = [set() for _ in range(n_phases)]
    for grain in np.flatnonzero(verdicts >= 0):
        held = labels[(grains == grain) & (labels >= 0)]
        if held.size:
            shown[int(np.bincount(held).argmax())].add(int(verdicts[grain]))
    lattice = np.array([next(iter(s)) if len(s) == 1 else -1 for s in shown], dtype=np.int64)
    number = np.full(n_phases, -1, dtype=np.int64)
    n_joined = 0
    for phase in range(n_phases):
        if number[phase] >= 0:
            continue
        members = [phase]
        if lattice[phase] >= 0:
            for other in range(phase + 1, n_phases):
                if number[other] < 0 and lattice[other] == lattice[phase] and same_composition[other, members].all():
                    members.append(other)
        number[members] = n_joined
        n_joined += 1
    return number


def move_grains_by_composition(labels, grains, window_counts, shares, allowed, min_log_ratio):
    """Move every grain whose pooled X-ray counts another phase's composition explains far better to that phase.

    A grain is one crystal, so one phase: its positions' counts pooled
    decide where one position's few tens of counts cannot. A minor phase's
    particles a few positions across can land in the clustering's
    segments of the matrix around them (published ``poly_minor_phase``
    seed 1: 6 of 13 delta-ferrite particles, 17-24 positions each, in the
    austenite, whose pooled counts were exp(17) to exp(61) times likelier
    under the ferrite's composition; every austenite grain's exp(-60) to
    exp(-250)). The test is
    :func:`~stemfuse_hs.clustering.phases.reassign_by_composition` on
    the grains' pooled counts.

    Parameters
    ----------
    labels : numpy.ndarray
        ``(n_positions,)`` phase of every position, -1 for none.
    grains : numpy.ndarray
        ``(n_positions,)`` grain of every position, -1 for none (never
        moved); a grain lies within one phase (:func:`split_grains` of the
        phase map).
    window_counts : numpy.ndarray
        ``(n_positions, n_windows)`` counts of every position.
    shares : numpy.ndarray
        ``(n_phases, n_windows)`` every phase's composition
        (:func:`~stemfuse_hs.clustering.phases.window_shares`).
    allowed : numpy.ndarray
        ``(n_phases, n_phases)`` bool, ``allowed[k, j]``: a grain of ``k``
        may move to ``j`` (phases of another composition).
    min_log_ratio : float
        Log-likelihood ratio of the grain's pooled counts, the other phase
        against its own, that moves it.

    Returns
    -------
    numpy.ndarray
        The new labels.

    Examples
    --------
    Grain 1 (two positions of phase 0) counts like phase 1:

    >>> import numpy as np
    >>> shares = np.array([[0.8, 0.2], [0.2, 0.8]])
    >>> counts = np.array([[40, 10], [38, 12], [12, 38], [10, 40], [11, 39]])
    >>> labels, grains = np.array([0, 0, 0, 0, 1]), np.array([0, 0, 1, 1, 2])
    >>> move_grains_by_composition(labels, grains, counts, shares, ~np.eye(2, dtype=bool), 20.0).tolist()
    [0, 0, 1, 1, 1]
    """
    from .phases import reassign_by_composition

    labels = np.asarray(labels).astype(np.int64).ravel()
    grains = np.asarray(grains).astype(np.int64).ravel()
    window_counts = check_array("window_counts", window_counts, ndim=2)
    if grains.size != labels.size or window_counts.shape[0] != labels.size:
        raise ValueError(
            f"move_grains_by_composition: {labels.size} labels, {grains.size} grain labels and "
            f"{window_counts.shape[0]} rows of counts; they must be one per position."
        )
    min_log_ratio = check_real("min_log_ratio", min_log_ratio, minimum=0)
    in_grain = (grains >= 0) & (labels >= 0)
    if not in_grain.any():
        return labels.copy()
    pooled = np.zeros((int(grains.max()) + 1, window_counts.shape[1]))
    np.add.at(pooled, grains[in_grain], window_counts[in_grain])
    grain_counts = np.where(in_grain[:, None], pooled[np.clip(grains, 0, None)], 0.0)
    moved = reassign_by_composition(grain_counts, np.where(in_grain, labels, -1), shares, allowed, min_log_ratio, pool_width=1)
    return np.where(in_grain, moved, labels)


def move_patches_by_composition(labels, window_counts, shares, allowed, min_log_ratio, scan_shape, *, min_size=8):
    """Move every patch of a phase whose counts another phase's composition explains far better to that phase.

    A patch is a connected set of positions of one phase where the counts
    of every position's 3 x 3 square of neighbours are likelier under
    another phase's composition (``allowed``) than under its own; a patch
    of ``min_size`` positions or more whose own counts pooled give a log
    likelihood ratio of ``min_log_ratio`` or more moves. It reaches what
    :func:`move_grains_by_composition` cannot: a minor phase's particle that
    the split by patterns left inside a grain of its host (published
    ``poly_minor_phase`` seed 1: two delta-ferrite particles of 22 and 9
    positions in a grain of 149 positions whose pooled counts, host and
    particles, were exp(-156) times likelier under the ferrite's
    composition; each particle's own about exp(44) and exp(20) likelier).

    Parameters
    ----------
    labels : numpy.ndarray
        ``(n_positions,)`` phase of every position, -1 for none (never moved).
    window_counts : numpy.ndarray
        ``(n_positions, n_windows)`` counts of every position.
    shares : numpy.ndarray
        ``(n_phases, n_windows)`` every phase's composition.
    allowed : numpy.ndarray
        ``(n_phases, n_phases)`` bool, ``allowed[k, j]``: positions of ``k``
        may move to ``j``.
    min_log_ratio : float
        Log-likelihood ratio of a patch's pooled counts, the other phase
        against its own, that moves it.
    scan_shape : tuple of int
        The scan grid the positions fill in C order.
    min_size : int, default 8
        Fewest positions of a patch that moves.

    Returns
    -------
    numpy.ndarray
        The new labels.

    Examples
    --------
    A 3 x 3 particle counting like phase 1 inside phase 0:

    >>> import numpy as np
    >>> shares = np.array([[0.8, 0.2], [0.2, 0.8]])
    >>> counts = np.tile([8, 2], (49, 1))
    >>> particle = np.zeros((7, 7), bool); particle[2:5, 2:5] = True
    >>> counts[particle.ravel()] = [3, 7]
    >>> labels = np.zeros(49, int); labels[-1] = 1
    >>> moved = move_patches_by_composition(labels, counts, shares, ~np.eye(2, dtype=bool), 10.0, (7, 7))
    >>> moved.reshape(7, 7)[1:6, 1:6].astype(int).tolist()
    [[0, 0, 0, 0, 0], [0, 1, 1, 1, 0], [0, 1, 1, 1, 0], [0, 1, 1, 1, 0], [0, 0, 0, 0, 0]]
    """
    from scipy import ndimage

    from .phases import _pool_neighbours

    labels = np.asarray(labels).astype(np.int64).ravel()
    window_counts = check_array("window_counts", window_counts, ndim=2).astype(np.float64)
    scan_shape = tuple(int(v) for v in scan_shape)
    if window_counts.shape[0] != labels.size or int(np.prod(scan_shape)) != labels.size:
        raise ValueError(
            f"move_patches_by_composition: {labels.size} labels, {window_counts.shape[0]} rows of counts and a "
            f"scan of {int(np.prod(scan_shape))} positions; they must be one per position."
        )
    min_log_ratio = check_real("min_log_ratio", min_log_ratio, minimum=0)
    min_size = check_int("min_size", min_size, minimum=1)
    loglik = window_counts @ np.log(np.asarray(shares, dtype=np.float64)).T
    pooled = _pool_neighbours(loglik, scan_shape, 3)
    new = labels.copy()
    best = np.full(labels.size, -np.inf)
    for own, target in zip(*np.nonzero(np.asarray(allowed, dtype=bool))):
        ratio = loglik[:, target] - loglik[:, own]
        favoured = (labels == own) & (pooled[:, target] > pooled[:, own])
        patches, _ = ndimage.label(favoured.reshape(scan_shape))
        joinable = ((ratio > 0) & (labels == own)).reshape(scan_shape)
        index = np.arange(labels.size).reshape(scan_shape)
        for patch, box in enumerate(ndimage.find_objects(patches), start=1):
            box = tuple(slice(max(b.start - 1, 0), b.stop + 1) for b in box)
            seed = patches[box] == patch
            # The squares at a particle's edge hold the host's counts too:
            # its edge positions whose own counts favour the other phase
            # join the patch.
            rows = index[box][seed | (ndimage.binary_dilation(seed) & joinable[box])]
            total = ratio[rows].sum()
            if rows.size < min_size or total < min_log_ratio:
                continue
            rows = rows[total > best[rows]]
            new[rows] = target
            best[rows] = total
    return new
