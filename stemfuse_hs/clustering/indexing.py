"""Ring-ratio indexing: do a scan's spot spacings belong to one cubic lattice?

A polycrystal shows each grain's lattice in its own orientation, so two
grains of one lattice light different subsets of its spacings and the
subsets need not overlap. Which subsets a lattice can show is known once
the lattice is: its reflections lie at radii ``k * sqrt(N)`` with
``N = h^2 + k^2 + l^2`` allowed by the Bravais lattice (face-centred cubic:
3, 4, 8, 11, 12, ...; body-centred: 2, 4, 6, 8, ...). The ratios of the
radii index the lattice as microscopists index a ring pattern, with one
unknown, the scale ``k``.

* :func:`spacing_lines` merges spacings closer than a relative tolerance.
* :func:`index_cubic` finds the cubic lattice (F or I) whose reflections
  explain every line, the smallest line being its first reflection.
* :func:`scan_lattice` indexes the lines that at least two segments of a
  scan show: when they index, the scan shows one lattice.
* :func:`scan_lattices` finds one lattice, or two where the scan holds
  two (fcc and bcc of one composition; a cubic lattice and hcp, such as
  fcc and hcp Co; a second lattice whose own lines each lie in a single
  grain), and :func:`segment_lattices` which one each segment
  shows.
* :func:`explained_by_lattice` says which spacings are reflections of it,
  and :func:`lattice_members` which segments show that lattice.
* :func:`spot_angles_agree` checks the angles between a pattern's spots
  against those between the reflections they are indexed as (ratio and
  angle, as a zone-axis pattern is indexed): :func:`scan_lattices` keeps
  only lattices the angles bear out.

Indexing needs spacings measured to about 1 %: the beam centre refined on
the Friedel pairs of the spots (``ring_spacings(..., friedel_centre=True)``).
"""

import functools
import itertools

import numpy as np

from .._validation import check_real

__all__ = [
    "CUBIC_LATTICES",
    "HCP_AXIAL_RATIOS",
    "DEFAULT_INDEX_TOLERANCE",
    "claimed_by_lattices",
    "explained_by_lattice",
    "index_cubic",
    "lattice_members",
    "nearest_reflections",
    "refined_lattice",
    "scan_lattice",
    "scan_lattices",
    "segment_lattices",
    "shared_reflection_shares",
    "spacing_lines",
    "spot_angles_agree",
]

#: Relative tolerance of the indexing: accurate fcc 111 and bcc 110 of one
#: composition lie 2.4 % apart, and a line between them must fit neither.
DEFAULT_INDEX_TOLERANCE = 0.012
#: Relative tolerance of one spacing of a segment whose other spacings (two
#: or more) a lattice explains within :data:`DEFAULT_INDEX_TOLERANCE`: a spot
#: of a bent grain's mean pattern is measured up to about 2 % off (ferrite
#: 110 at 6.30 px against 6.17 px, tiny ``poly_precipitates`` seed 0).
LOOSE_INDEX_TOLERANCE = 0.025
#: Fewest lines that make an indexing: three radii of one lattice always fit
#: some scale of a dense enough set of ``N``.
MIN_INDEXED_LINES = 4
#: Segments that must show a spacing before it is a line of the scan: one
#: segment alone can show a false one (a boundary, the support film's ring).
MIN_SEGMENTS_SHOWING_LINE = 2


def _allowed_indices(centring, max_index=7):
    values = set()
    for h, k, l in itertools.product(range(max_index), repeat=3):
        if h == k == l == 0:
            continue
        if centring == "F" and len({h % 2, k % 2, l % 2}) != 1:
            continue
        if centring == "I" and (h + k + l) % 2:
            continue
        values.add(h * h + k * k + l * l)
    return np.array(sorted(values))


#: ``h^2 + k^2 + l^2`` of the reflections of face-centred (F) and
#: body-centred (I) cubic lattices. Primitive cubic is left out: it allows
#: every N but 7, 15, 23, ..., so dense a set that unrelated lines fit it.
CUBIC_LATTICES = {"F": _allowed_indices("F"), "I": _allowed_indices("I")}

#: Axial ratios ``c/a`` searched for a hexagonal close-packed lattice, in
#: steps of 0.005: those of the hcp metals from Be (1.57) through Ti, Zr,
#: Mg and Co (1.59-1.63) to Re (1.61); Zn and Cd (1.86-1.89) are left out,
#: a wider range fitting unrelated lines by chance.
HCP_AXIAL_RATIOS = np.round(np.arange(1.55, 1.7001, 0.005), 3)


@functools.lru_cache(maxsize=1024)
def _hcp_reflections(c_over_a, max_index=4, max_l=6):
    """Radii (units of ``1/a``) of the reflections of an hcp lattice, and their ``hkl``, sorted by radius.

    ``1/d^2 = 4/3 (h^2 + hk + k^2) / a^2 + l^2 / c^2``; the two atoms of the
    cell extinguish odd ``l`` where ``h - k`` is a multiple of 3. Cached
    (every candidate lattice's spacings are indexed against them): the
    radii are read-only and the names a tuple.
    """
    radii = {}
    for h, k, l in itertools.product(range(max_index + 1), range(max_index + 1), range(max_l + 1)):
        if k > h or h == k == l == 0 or ((h - k) % 3 == 0 and l % 2):
            continue  # (kh l) is (hk l) again
        radius = round(float(np.sqrt(4.0 / 3.0 * (h * h + h * k + k * k) + (l / c_over_a) ** 2)), 9)
        radii.setdefault(radius, f"{h}{k}{l}")
    order = sorted(radii)
    radii_array = np.array(order)
    radii_array.setflags(write=False)
    return radii_array, tuple(radii[r] for r in order)


def _relative_radii(lattice):
    """Radii of a fitted lattice's reflections in units of its ``"scale"``."""
    if lattice["centring"] == "hcp":
        return _hcp_reflections(lattice["c_over_a"])[0]
    return np.sqrt(CUBIC_LATTICES[lattice["centring"]])


def spacing_lines(radii, rel_tolerance):
    """Distinct lines among spacings: chains closer than ``rel_tolerance`` of their radius are one (their mean).

    Examples
    --------
    >>> spacing_lines([6.0, 6.05, 9.8, 6.95], 0.012).round(3).tolist()
    [6.025, 6.95, 9.8]
    """
    radii = np.sort(np.asarray(radii, dtype=np.float64).ravel())
    if radii.size == 0:
        return radii
    breaks = np.flatnonzero(np.diff(radii) > rel_tolerance * radii[1:]) + 1
    return np.array([chain.mean() for chain in np.split(radii, breaks)])


def index_cubic(radii, rel_tolerance=DEFAULT_INDEX_TOLERANCE, *, min_lines=MIN_INDEXED_LINES, max_n=50):
    """Index spacings as one face- or body-centred cubic lattice, or None.

    The smallest line is taken as the lattice's first reflection (F: 111,
    I: 110), which fixes the scale; every line is then given the nearest
    allowed ``N``, the scale is refitted by least squares and every line
    must lie within ``rel_tolerance`` of ``scale * sqrt(N)``, no two lines
    on one ``N``.

    Parameters
    ----------
    radii : array_like
        Spacings (pixels or any unit of ``|g|``).
    rel_tolerance : float, default 0.012
    min_lines : int, default 4
        Fewer distinct lines than this do not index.
    max_n : int, default 50

    Returns
    -------
    dict or None
        ``"centring"`` (``"F"`` or ``"I"``), ``"lines"``, ``"n"`` (their
        ``h^2 + k^2 + l^2``), ``"scale"`` (the radius of ``N = 1``) and
        ``"max_error"`` (relative); the better fitting centring when both
        fit.

    Examples
    --------
    fcc (111, 200, 220, 311) indexes; fcc and bcc of one composition
    together do not:

    >>> fit = index_cubic([6.0, 6.93, 9.8, 11.49])
    >>> fit["centring"], fit["n"]
    ('F', [3, 4, 8, 11])
    >>> index_cubic([6.0, 6.93, 9.8, 6.15, 8.7, 10.65]) is None
    True
    """
    rel_tolerance = check_real("rel_tolerance", rel_tolerance, minimum=0, strict_minimum=True)
    lines = spacing_lines(radii, rel_tolerance)
    if lines.size < max(1, int(min_lines)) or lines[0] <= 0:
        return None
    best = None
    for centring, allowed in CUBIC_LATTICES.items():
        allowed = allowed[allowed <= max_n]
        scale = lines[0] / np.sqrt(allowed[0])
        for _ in range(3):
            n = allowed[np.argmin(np.abs(lines[:, None] - scale * np.sqrt(allowed[None, :])), axis=1)]
            scale = float((lines * np.sqrt(n)).sum() / n.sum())
        error = float((np.abs(lines - scale * np.sqrt(n)) / lines).max())
        if error > rel_tolerance or np.unique(n).size < n.size:
            continue
        if best is None or error < best["max_error"]:
            best = {"centring": centring, "lines": lines, "n": [int(v) for v in n], "scale": scale, "max_error": error}
    return best


def _shown_by(lines, measured, rel_tolerance):
    """How many of the segments' spacing sets hold each line."""
    return np.array([sum(v.size > 0 and np.abs(v - line).min() <= rel_tolerance * line for v in measured) for line in lines])


def scan_lattice(spacings, rel_tolerance=DEFAULT_INDEX_TOLERANCE, *, min_segments=MIN_SEGMENTS_SHOWING_LINE):
    """The one cubic lattice of a scan: the lines ``min_segments`` segments show, indexed; or None.

    When all the lines do not index, each one is left out in turn (the
    support film's amorphous ring, where fcc 111 and bcc 110 lie, can put a
    false line into two segments); a line of a second lattice left out
    keeps every segment that shows it out of the lattice
    (:func:`lattice_members`), and a second lattice shows more than one.

    Parameters
    ----------
    spacings : list of numpy.ndarray
        Per segment, its spacings (measured about the Friedel-pair centre).
    rel_tolerance : float, default 0.012
    min_segments : int, default 2

    Returns
    -------
    dict or None
        As :func:`index_cubic`, and ``"left_out"``: the line that did not
        index (NaN when all did).

    Examples
    --------
    Four grains of one fcc lattice in different orientations, one showing a
    false spacing:

    >>> import numpy as np
    >>> grains = [np.array([6.0, 9.8, 11.49]), np.array([6.93, 9.8, 13.86]), np.array([6.0, 6.93, 12.0]),
    ...           np.array([11.49, 12.0, 7.6])]
    >>> scan_lattice(grains)["n"]
    [3, 4, 8, 11, 12]
    """
    measured = [np.asarray(v, dtype=np.float64).ravel() for v in spacings]
    if not any(v.size for v in measured):
        return None
    lines = spacing_lines(np.concatenate(measured), rel_tolerance)
    lines = lines[_shown_by(lines, measured, rel_tolerance) >= min_segments]
    fit = index_cubic(lines, rel_tolerance)
    if fit is not None:
        return dict(fit, left_out=float("nan"))
    best = None
    for i in range(lines.size):
        trial = index_cubic(np.delete(lines, i), rel_tolerance)
        if trial is not None and (best is None or trial["max_error"] < best["max_error"]):
            best = dict(trial, left_out=float(lines[i]))
    return best


def nearest_reflections(radii, lattice):
    """Each spacing's nearest reflection of ``lattice`` (the unit of its scale).

    Examples
    --------
    >>> fcc = {"centring": "F", "scale": 3.5}
    >>> nearest_reflections([6.1, 7.05], fcc).round(3).tolist()
    [6.062, 7.0]
    """
    radii = np.asarray(radii, dtype=np.float64).ravel()
    predicted = lattice["scale"] * _relative_radii(lattice)
    if radii.size == 0:
        return radii
    return predicted[np.argmin(np.abs(radii[:, None] - predicted[None, :]), axis=1)]


def explained_by_lattice(radii, lattice, rel_tolerance=DEFAULT_INDEX_TOLERANCE):
    """Which spacings are reflections of ``lattice`` (from :func:`index_cubic`), within ``rel_tolerance``.

    Examples
    --------
    >>> fcc = index_cubic([6.0, 6.93, 9.8, 11.49])
    >>> explained_by_lattice([6.93, 8.7, 13.86], fcc).tolist()
    [True, False, True]
    """
    radii = np.asarray(radii, dtype=np.float64).ravel()
    if radii.size == 0 or lattice is None:
        return np.zeros(radii.size, dtype=bool)
    return np.abs(radii - nearest_reflections(radii, lattice)) <= rel_tolerance * radii


#: Smallest relative gap between two lattices' reflections that a spacing
#: explained by both can tell apart: the mean pattern of a grain's interior
#: puts a spot within about 0.3 % of where the scan's lattice has it, so a
#: spot claimed within a quarter of a 0.4 % gap lies 0.3 % from the other.
#: 0.5 % left a bcc 310 grain of tiny ``poly_four_phases`` seed 1 (gap 0.47
#: %) undecided: 0.84 against 0.93.
MIN_RESOLVED_GAP = 0.004
#: With lattices refitted on their grains (``"spread"``, the robust relative
#: spread of their spacings), the gap must also reach this many spreads:
#: tiny ``poly_hcp`` seed 1's hcp lattice, refitted with a spread of 0.46 %
#: on three grains (one bent), put 110 0.46 % beyond fcc 220, where Co has
#: them 0.04 % apart, and a 220 grain measured 0.7 % long was claimed hcp.
RESOLVING_SPREADS = 2.0


def claimed_by_lattices(radii, lattices, rel_tolerance=DEFAULT_INDEX_TOLERANCE):
    """Which spacings each lattice alone claims: it explains them and no other does, or its reflection is clearly the nearer.

    A spacing that two lattices explain (martensite 310 and austenite 400
    of one steel lie 0.6 % apart, both within the 1.2 % tolerance) is
    claimed by the one whose reflection it lies within a quarter of the gap
    of, or beyond it from the other, when the gap is at least
    ``MIN_RESOLVED_GAP`` (0.4 %) of the spacing and ``RESOLVING_SPREADS``
    (2) times the larger ``"spread"`` of the two lattices (when refitted,
    :func:`refined_lattice`); otherwise by none.

    Parameters
    ----------
    radii : array_like
        Spacings (the unit of the lattices' scale).
    lattices : list of dict
        Indexed lattices (:func:`scan_lattices`).
    rel_tolerance : float, default 0.012

    Returns
    -------
    numpy.ndarray
        ``(n_lattices, n_radii)`` bool.

    Examples
    --------
    Austenite 400 at 11.11 and martensite 310 at 11.05 (pixels): 11.04
    is martensite's, 11.08 neither's, 11.5 austenite's alone (its 311):

    >>> fcc, bcc = index_cubic([4.81, 5.56, 7.86, 9.21]), index_cubic([4.94, 6.99, 8.56, 9.88])
    >>> claimed_by_lattices([11.04, 11.08, 9.21], [fcc, bcc]).tolist()
    [[False, False, True], [True, False, False]]
    """
    radii = np.asarray(radii, dtype=np.float64).ravel()
    claimed = np.array([explained_by_lattice(radii, lattice, rel_tolerance) for lattice in lattices]).reshape(len(lattices), radii.size)
    nearest = np.array([nearest_reflections(radii, lattice) for lattice in lattices]).reshape(claimed.shape)
    shared = claimed.sum(axis=0) > 1
    for i in np.flatnonzero(shared):
        by = np.flatnonzero(claimed[:, i])
        claimed[:, i] = False
        if by.size != 2:
            continue
        own, other = nearest[by[0], i], nearest[by[1], i]
        gap = abs(other - own)
        spread = max(float(lattices[j].get("spread", 0.0)) for j in by)
        if gap < max(MIN_RESOLVED_GAP, RESOLVING_SPREADS * spread) * radii[i]:
            continue
        for this, that, winner in ((own, other, by[0]), (other, own, by[1])):
            beyond = (radii[i] - this) * (that - this) < 0
            if beyond or abs(radii[i] - this) <= gap / 4:
                claimed[winner, i] = True
    return claimed


def shared_reflection_shares(lattices, max_radius, rel_tolerance=DEFAULT_INDEX_TOLERANCE):
    """Per lattice, the share of its reflections out to ``max_radius`` that another lattice has too (within ``rel_tolerance``).

    Examples
    --------
    fcc and hcp Co out to fcc 222: fcc shares 111, 220, 311 and 222 of its
    five reflections, hcp 002, 110, 112 and 004 of its ten.

    >>> fcc = {"centring": "F", "scale": 3.527}
    >>> hcp = {"centring": "hcp", "scale": 4.98, "c_over_a": 1.623}
    >>> [round(share, 2) for share in shared_reflection_shares([fcc, hcp], 12.4)]
    [0.8, 0.4]
    """
    reflections = []
    for lattice in lattices:
        radii = lattice["scale"] * _relative_radii(lattice)
        reflections.append(radii[radii <= max_radius])
    shares = []
    for j, radii in enumerate(reflections):
        others = [explained_by_lattice(radii, lattice, rel_tolerance) for k, lattice in enumerate(lattices) if k != j]
        shared = np.any(others, axis=0) if others else np.zeros(radii.size, dtype=bool)
        shares.append(float(shared.mean()) if radii.size else 0.0)
    return shares


def lattice_members(spacings, lattice, rel_tolerance=DEFAULT_INDEX_TOLERANCE):
    """Per segment, whether it shows spacings and every one is a reflection of ``lattice``.

    One spacing that is not, even one no other segment shows, keeps the
    segment out: it can be a false spacing of one pattern (the support
    film's ring), but it is also what a grain of a second lattice shows
    when its other spacings coincide with the first's (hcp 002, 110 and 112
    with fcc 111, 220 and 311). Letting one such spacing pass joined an
    hcp segment to the fcc phase (tiny ``poly_hcp`` seed 8, 0.74 to 0.00;
    see :doc:`/workflow`). Only a spacing within ``LOOSE_INDEX_TOLERANCE``
    (2.5 %) of a reflection passes, beside two or more that fit
    (:func:`segment_lattices`): hcp 100 and 101 lie 6 % and 7 % from fcc 111.

    Examples
    --------
    >>> import numpy as np
    >>> fcc = index_cubic([6.0, 6.93, 9.8, 11.49])
    >>> segments = [np.array([6.0, 9.8]), np.array([5.4, 6.0, 12.0]), np.array([6.15, 8.7, 10.65]), np.zeros(0)]
    >>> lattice_members(segments, fcc).tolist()
    [True, False, False, False]
    """
    return segment_lattices(spacings, [] if lattice is None else [lattice], rel_tolerance) == 0



#: Each of two lattices must explain at least this many lines the other does
#: not: a pair of lattices explains more lines by chance than one does.
MIN_OWN_LINES = 3


def _explained(lines, relative, scale, rel_tolerance):
    """Which lines a lattice (reflections at ``scale * relative``) explains, each reflection the nearest line only.

    Also each line's nearest reflection (index into ``relative``) and relative error.
    """
    predicted = scale * relative
    nearest = np.argmin(np.abs(lines[:, None] - predicted[None, :]), axis=1)
    error = np.abs(lines - predicted[nearest]) / lines
    ok = error <= rel_tolerance
    for n in np.unique(nearest[ok]):
        rivals = np.flatnonzero(ok & (nearest == n))
        ok[rivals[rivals != rivals[np.argmin(error[rivals])]]] = False
    return ok, nearest, error


def _fit_scale(lines, relative, scale, rel_tolerance):
    """The scale refitted on the lines a lattice near ``scale`` explains, those lines, their reflections and largest error; or None."""
    for _ in range(4):
        ok, nearest, _ = _explained(lines, relative, scale, rel_tolerance)
        if ok.sum() < 2:
            return None
        fitted = relative[nearest[ok]]
        scale = float((lines[ok] * fitted).sum() / (fitted**2).sum())
    ok, nearest, error = _explained(lines, relative, scale, rel_tolerance)
    # A lattice shows one of its first two reflections; at half its scale
    # (every N four times larger) it would explain more lines by chance.
    first = ok & (nearest < 2)
    if ok.sum() < 2 or not first.any():
        return None
    return scale, ok, nearest, float(error[ok].max())


#: Largest difference (degrees) between the angle two spots make at the
#: beam and an angle between the reflections they are indexed as: a spot
#: measured a fifth of a pixel off at 6 pixels turns by 2 degrees, and a
#: chance fit's angles miss by 5-50 (tiny ``poly_hcp`` seed 1).
ANGLE_TOLERANCE = 3.0


@functools.lru_cache(maxsize=256)
def _reflection_vectors(centring, c_over_a=None):
    """Every reflection of a lattice as a Cartesian vector (units of its scale) and its radius, out to ``sqrt(max N)`` 8."""
    reach = range(-8, 9)
    indices = np.array(list(itertools.product(reach, reach, reach)), dtype=np.float64)
    h, k, l = indices.T
    if centring == "hcp":
        allowed = ~(((h - k) % 3 == 0) & (l % 2 == 1))
        vectors = np.stack([h, (h + 2.0 * k) / np.sqrt(3.0), l / float(c_over_a)], axis=1)
    else:
        parity = indices % 2
        allowed = (parity == parity[:, :1]).all(axis=1) if centring == "F" else (h + k + l) % 2 == 0
        vectors = indices.copy()
    radii = np.linalg.norm(vectors, axis=1)
    keep = allowed & (radii > 0) & (radii <= 8.0)
    return vectors[keep], radii[keep]


@functools.lru_cache(maxsize=65536)
def _family_angles(centring, c_over_a, radius_a, radius_b):
    """Every angle (degrees) between a reflection at relative radius ``radius_a`` and one at ``radius_b``."""
    vectors, radii = _reflection_vectors(centring, c_over_a)
    a = vectors[np.abs(radii - radius_a) <= 1e-6 * radius_a]
    b = vectors[np.abs(radii - radius_b) <= 1e-6 * radius_b]
    cosines = (a @ b.T) / (radius_a * radius_b)
    return np.unique(np.round(np.degrees(np.arccos(np.clip(cosines, -1.0, 1.0))), 3))


def spot_angles_agree(spots, lattice, rel_tolerance=DEFAULT_INDEX_TOLERANCE, angle_tolerance=ANGLE_TOLERANCE):
    """How many pairs of a pattern's spots make an angle their reflections of ``lattice`` can make, of how many judged.

    A ring pattern tells a lattice by the ratios of its radii alone, and an
    hcp lattice (two parameters) fits four lines of another by chance. A
    grain's pattern also fixes the angles between its spots: two spots
    indexed as reflections ``g1`` and ``g2`` must make, at the beam, one of
    the angles between the members of their families (the indexing of a
    zone-axis pattern by ratio and angle). Each spot is given its nearest
    reflection; a pair is judged when both lie within ``rel_tolerance``
    of them, unless the two are Friedel mates (one family, opposite).

    Parameters
    ----------
    spots : numpy.ndarray
        ``(n_spots, 2)`` offsets of the spots from the pattern's centre
        (pixels, the unit of ``lattice["scale"]``).
    lattice : dict
        ``"centring"`` (``"F"``, ``"I"`` or ``"hcp"``), ``"scale"`` and,
        for hcp, ``"c_over_a"``.
    rel_tolerance : float, default 0.012
    angle_tolerance : float, default 3
        Degrees.

    Returns
    -------
    (int, int)
        The pairs that agree and the pairs judged.

    Examples
    --------
    fcc 111 and 200 spots make 54.7 degrees (a [01-1] zone); indexed as hcp
    100 and 002 they would make 90:

    >>> import numpy as np
    >>> g111, g200 = np.array([1.0, 1.0, 1.0]) * 3.5, np.array([2.0, 0.0, 0.0]) * 3.5
    >>> angle = np.arccos(g111 @ g200 / np.linalg.norm(g111) / np.linalg.norm(g200))
    >>> spots = np.array([[0.0, np.linalg.norm(g111)], [np.linalg.norm(g200) * np.sin(angle), np.linalg.norm(g200) * np.cos(angle)]])
    >>> spot_angles_agree(spots, {"centring": "F", "scale": 3.5})
    (1, 1)
    >>> spot_angles_agree(spots, {"centring": "hcp", "scale": 5.25, "c_over_a": 1.5})
    (0, 1)
    """
    spots = np.asarray(spots, dtype=np.float64).reshape(-1, 2)
    radii = np.hypot(spots[:, 0], spots[:, 1])
    if radii.size < 2:
        return 0, 0
    relative = _relative_radii(lattice)
    predicted = float(lattice["scale"]) * relative
    nearest = np.argmin(np.abs(radii[:, None] - predicted[None, :]), axis=1)
    indexed = np.abs(radii - predicted[nearest]) <= rel_tolerance * radii
    c_over_a = float(lattice["c_over_a"]) if lattice["centring"] == "hcp" else None
    unit = spots / np.maximum(radii, 1e-12)[:, None]
    measured = np.degrees(np.arccos(np.clip(unit @ unit.T, -1.0, 1.0)))
    agreeing = judged = 0
    for i, j in itertools.combinations(np.flatnonzero(indexed), 2):
        if nearest[i] == nearest[j] and measured[i, j] > 180.0 - angle_tolerance:
            continue
        allowed = _family_angles(lattice["centring"], c_over_a, round(float(relative[nearest[i]]), 9), round(float(relative[nearest[j]]), 9))
        judged += 1
        agreeing += int(np.abs(allowed - measured[i, j]).min() <= angle_tolerance)
    return agreeing, judged


def _angles_bear_out(spots, lattice, rel_tolerance=DEFAULT_INDEX_TOLERANCE):
    """Whether at least half the judged pairs of ``spots`` agree with ``lattice`` (:func:`spot_angles_agree`); None when no pair is judged."""
    agreeing, judged = spot_angles_agree(spots, lattice, rel_tolerance)
    return None if judged == 0 else 2 * agreeing >= judged


def _angle_verdicts(lattice, measured, spots, rel_tolerance):
    """Of the segments whose every spacing ``lattice`` explains, how many its spots' angles bear out and how many they contradict."""
    agree = contradict = 0
    for radii, offsets in zip(measured, spots):
        if radii.size == 0 or len(offsets) < 2 or not explained_by_lattice(radii, lattice, rel_tolerance).all():
            continue
        verdict = _angles_bear_out(offsets, lattice, rel_tolerance)
        agree += int(verdict is True)
        contradict += int(verdict is False)
    return agree, contradict


def _borne_out_by_angles(candidates, measured, spots, rel_tolerance):
    """The fitted candidates that the spots' angles contradict on no more segments than they bear them out on.

    A segment is judged by the lattice when it explains all its spacings,
    and bears the lattice out when at least half its judged pairs of spots
    agree (:func:`spot_angles_agree`). Without ``spots``, all.
    """
    if spots is None:
        return list(candidates)
    kept, verdicts = [], {}
    for candidate in candidates:
        centring, extra, scale = candidate[:3]
        key = (centring, extra.get("c_over_a"), round(float(scale), 4))
        if key not in verdicts:
            verdicts[key] = _angle_verdicts({"centring": centring, "scale": scale, **extra}, measured, spots, rel_tolerance)
        agree, contradict = verdicts[key]
        if contradict <= agree:
            kept.append(candidate)
    return kept


def _candidate_lattices(max_n):
    """Face- and body-centred cubic, and hcp at every :data:`HCP_AXIAL_RATIOS`: (centring, extra, radii, names)."""
    for centring, allowed in CUBIC_LATTICES.items():
        allowed = allowed[allowed <= max_n]
        yield centring, {}, np.sqrt(allowed), [int(v) for v in allowed]
    for c_over_a in HCP_AXIAL_RATIOS:
        radii, hkl = _hcp_reflections(float(c_over_a))
        keep = radii**2 <= max_n
        yield "hcp", {"c_over_a": float(c_over_a)}, radii[keep], [name for name, k in zip(hkl, keep) if k]


def scan_lattices(spacings, rel_tolerance=DEFAULT_INDEX_TOLERANCE, *, min_segments=MIN_SEGMENTS_SHOWING_LINE, max_n=50, spots=None):
    """The one or two lattices of a scan's spacings, the one explaining more spacings first; or none.

    When :func:`scan_lattice` indexes every line that ``min_segments``
    segments show, that lattice, and a second one only when the segments
    it leaves out show one (a minor phase whose own lines each lie in one
    grain; see ``_lattice_of_the_rest``); one lattice too when it leaves
    out fewer than ``MIN_OWN_LINES`` of all the scan's lines (a line
    measured off in a bent grain is no second lattice). Otherwise (two
    phases of one composition, such as austenite and martensite) the pair of face- or
    body-centred cubic lattices that explains all those lines but at most
    one, each lattice explaining at least ``MIN_OWN_LINES`` (3) lines of
    the scan that the other does not, and between them the most spacings
    of the segments (then the smaller indices: a body-centred lattice is
    also face-centred at ``1/sqrt(2)`` of its scale); if no pair does,
    :func:`scan_lattice`'s lattice with a line left out, if any. Every
    lattice shows its first or second reflection. A cubic lattice and a
    hexagonal close-packed one (``c/a`` searched in
    :data:`HCP_AXIAL_RATIOS`, then ``a`` and ``c`` refined by least
    squares) take the place of two cubic ones only when no two cubic
    lattices qualify or, where :func:`scan_lattice` found the scan's
    lattice (the cubic one of the pair, which then needs one line of its
    own: fcc and hcp Co share 111 / 002, 220 / 110 and 311 / 112), when
    they explain every spacing of more segments: hcp has two parameters
    and fits more lines by chance. Of such pairs explaining as many lines,
    the one explaining more segments whole, then more lines, is taken. An
    hcp fit also gives ``"c_over_a"`` and ``"hkl"``, its ``"n"`` being
    ``4/3 (h^2 + hk + k^2) + (l a / c)^2``.

    With ``spots``, a lattice fitted to the lines is a candidate only when
    the angles between the spots of the segments it explains bear it out
    on at least as many segments as they contradict it
    (:func:`spot_angles_agree`): tiny ``poly_hcp`` seed 1's hcp lattice
    had been fitted at the wrong scale to lines 1.7 % and 0.8 % off
    (a bent grain's 002 and 101 as 100 and 002, 103 and 203 as 110 and
    104), whose spots make angles 10-56 degrees from those reflections'.

    Parameters
    ----------
    spacings : list of numpy.ndarray
        Per segment, its spacings (measured about the Friedel-pair centre).
    rel_tolerance : float, default 0.012
    min_segments : int, default 2
    max_n : int, default 50
        Largest ``h^2 + k^2 + l^2`` considered.
    spots : list of numpy.ndarray, optional
        Per segment, the ``(n_spots, 2)`` offsets of its spots from the
        centre its spacings were measured about (pixels;
        ``ring_spacings(..., return_spots=True)``).

    Returns
    -------
    list of dict
        As :func:`scan_lattice` (``"lines"`` the lines each lattice explains;
        ``"centring"`` is ``"hcp"`` for a hexagonal close-packed lattice).

    Examples
    --------
    Grains of austenite (fcc) and martensite (bcc) of one steel, each
    showing a few of its lattice's spacings (pixels):

    >>> import numpy as np
    >>> grains = [np.array([6.03, 9.85, 11.61]), np.array([6.02, 9.84, 11.54]), np.array([6.97]),
    ...           np.array([6.03, 12.01]), np.array([6.14, 8.74, 10.7]), np.array([6.16, 12.34]),
    ...           np.array([6.19, 8.77, 10.67]), np.array([8.76])]
    >>> [(fit["centring"], fit["n"]) for fit in scan_lattices(grains)]
    [('F', [3, 4, 8, 11, 12]), ('I', [2, 4, 6, 8])]
    >>> segment_lattices(grains, scan_lattices(grains)).tolist()
    [0, 0, 0, 0, 1, 1, 1, 1]
    """
    rel_tolerance = check_real("rel_tolerance", rel_tolerance, minimum=0, strict_minimum=True)
    if spots is not None:
        if len(spots) != len(spacings):
            raise ValueError(f"scan_lattices: spots has {len(spots)} entries for {len(spacings)} segments.")
        spots = [np.asarray(v, dtype=np.float64).reshape(-1, 2) for v in spots]
    first = scan_lattice(spacings, rel_tolerance, min_segments=min_segments)
    if first is not None and np.isnan(first["left_out"]):
        second = _lattice_of_the_rest(spacings, first, rel_tolerance, max_n, spots)
        if second is None:
            return [first]
        return [_rescaled_on_own_lines(first, ~explained_by_lattice(first["lines"], second, rel_tolerance), rel_tolerance), second]
    measured = [np.asarray(v, dtype=np.float64).ravel() for v in spacings]
    if not any(v.size for v in measured):
        return []
    lines = spacing_lines(np.concatenate(measured), rel_tolerance)
    # A second lattice needs lines of its own: one line the first leaves out
    # is a spacing measured off (a bent grain), and two lattices fitted to
    # one lattice's scattered lines are chance (tiny poly_minor_phase seed 2).
    if first is not None and (~explained_by_lattice(lines, first, rel_tolerance)).sum() < MIN_OWN_LINES:
        return [first]
    counts = _shown_by(lines, measured, rel_tolerance)
    strong = counts >= min_segments
    # hcp has two parameters (scale and c/a) to a cubic lattice's one and
    # fits more lines by chance: two hcp lattices are never tried, and the
    # cubic one beside an hcp one is the scan's lattice when it has one (an
    # hcp lattice adds to it, never replaces it, or false lines would make one).
    cubic = _borne_out_by_angles(_fitted_candidates(lines, rel_tolerance, max_n, hcp=False), measured, spots, rel_tolerance)
    best = _best_pair(itertools.combinations(cubic, 2), strong, counts, rel_tolerance, cubic, lines.max())
    fits = None if best is None else _pair_records(*best[1:], lines, rel_tolerance)
    if best is None or first is not None:
        hcp = _borne_out_by_angles(_fitted_candidates(lines, rel_tolerance, max_n, hcp=True), measured, spots, rel_tolerance)
        if first is not None:
            cubic = [c for c in cubic if c[0] == first["centring"] and abs(c[2] - first["scale"]) <= rel_tolerance * c[2]]

        def explained_whole(a, b):
            return _segments_explained(measured, _pair_records(a, b, lines, rel_tolerance), rel_tolerance)

        with_hcp = _best_pair(
            itertools.product(cubic, hcp), strong, counts, rel_tolerance, cubic, lines.max(), explained_whole,
            min_own_a=1 if first is not None else MIN_OWN_LINES,
        )
        # Two cubic lattices fitted by chance explain the scan's lines but
        # not its segments (tiny poly_hcp seed 4: hcp 100, 103 and 200 made
        # an fcc lattice of 111, 311 and 222, and the segments showing hcp
        # 100 with 110 fitted neither lattice of that pair).
        if with_hcp is not None and (fits is None or explained_whole(*with_hcp[1:]) > _segments_explained(measured, fits, rel_tolerance)):
            fits = _pair_records(*with_hcp[1:], lines, rel_tolerance)
    if fits is None:
        return [] if first is None else [first]
    fits.sort(key=lambda fit: -sum(int(explained_by_lattice(v, fit, rel_tolerance).sum()) for v in measured))
    return fits


def _pair_records(a, b, lines, rel_tolerance):
    """The records (:func:`_fit_record`) of a pair of fitted candidates, each refined on the lines the other does not explain.

    Twice: the lines the other explains once it is refined (an hcp lattice
    at the searched ``c/a`` can miss a line it shares with the cubic one).
    """
    records = [_fit_record(a, lines, rel_tolerance, b[3]), _fit_record(b, lines, rel_tolerance, a[3])]
    return [
        _fit_record(candidate, lines, rel_tolerance, explained_by_lattice(lines, other, rel_tolerance))
        for candidate, other in ((a, records[1]), (b, records[0]))
    ]


def _segments_explained(measured, fits, rel_tolerance):
    """How many segments with spacings a lattice of ``fits`` explains every spacing of."""
    return sum(
        any(explained_by_lattice(radii, fit, rel_tolerance).all() for fit in fits) for radii in measured if radii.size
    )


def _lattice_of_the_rest(spacings, first, rel_tolerance, max_n, spots=None):
    """A second lattice for the segments that ``first``, the lattice of every line two segments show, leaves out; or None.

    A second phase of one composition that covers few grains shows its own
    lines each in one grain (tiny ``poly_hcp`` seed 0: hcp 100, 102, 103,
    200 and 201), so they never become lines of the scan. Of the lattices
    with ``MIN_OWN_LINES`` lines that ``first`` does not have, cubic ones
    first, then hcp (two parameters fit more by chance), the one that
    explains every spacing of the most left-out segments (at least two)
    with two or more spacings, and that their spots' angles do not
    contradict (:func:`_borne_out_by_angles`).
    """
    measured = [np.asarray(v, dtype=np.float64).ravel() for v in spacings]
    left_out = [i for i, found in enumerate(segment_lattices(measured, [first], rel_tolerance)) if found < 0 and measured[i].size >= 2]
    outside = [measured[i] for i in left_out]
    outside_spots = None if spots is None else [spots[i] for i in left_out]
    if len(outside) < MIN_SEGMENTS_SHOWING_LINE:
        return None
    lines = spacing_lines(np.concatenate(outside), rel_tolerance)
    own = ~explained_by_lattice(lines, first, rel_tolerance)
    if own.sum() < MIN_OWN_LINES:
        return None
    for hcp in (False, True):
        best = None
        candidates = _borne_out_by_angles(_fitted_candidates(lines, rel_tolerance, max_n, hcp=hcp), outside, outside_spots, rel_tolerance)
        for centring, extra, scale, shown, n, error, nearest, names in candidates:
            if centring == first["centring"] and abs(scale - first["scale"]) <= rel_tolerance * scale:
                continue
            if (shown & own).sum() < MIN_OWN_LINES:
                continue
            fit = _fit_record((centring, extra, scale, shown, n, error, nearest, names), lines, rel_tolerance, ~own)
            members = int((segment_lattices(outside, [fit], rel_tolerance) == 0).sum())
            if members < MIN_SEGMENTS_SHOWING_LINE:
                continue
            score = (members, int(shown.sum()), -round(float(n[shown].sum()), 6), -error)
            if best is None or score > best[0]:
                best = (score, fit)
        if best is not None:
            return best[1]
    return None


def _fit_record(candidate, lines, rel_tolerance, shared=None):
    """A fitted candidate of :func:`_fitted_candidates` as :func:`scan_lattices` returns it.

    Refined on its lines outside ``shared`` (bool per line: those another
    lattice explains too; a shared line is the mean of both lattices'
    spots): an hcp fit by :func:`_refined_hcp`, a cubic one by
    :func:`_rescaled_on_own_lines`.
    """
    centring, extra, scale, shown, n, error, nearest, names = candidate
    fit = {"centring": centring, "lines": lines[shown], "scale": scale, "max_error": error, "left_out": float("nan")}
    own = np.ones(int(shown.sum()), dtype=bool) if shared is None else ~np.asarray(shared, dtype=bool)[shown]
    if centring == "hcp":
        fit.update(extra, n=[round(float(v), 4) for v in n[shown]], hkl=[names[i] for i in nearest[shown]])
        return _refined_hcp(fit, rel_tolerance, own)
    fit["n"] = [int(round(float(v))) for v in n[shown]]
    return _rescaled_on_own_lines(fit, own, rel_tolerance)


#: Fewest lines of its own that rescale a cubic lattice of a pair.
MIN_RESCALING_LINES = 2


def _rescaled_on_own_lines(fit, own, rel_tolerance):
    """A cubic fit's scale refitted on its ``own`` lines (bool per line) when most of its lines are shared; else ``fit``.

    A line two lattices explain is the mean of both lattices' spots (fcc
    Co 111 and hcp Co 002, 0.5 % apart, one line of published ``poly_hcp``
    seed 1): fitted on it, each lattice's reflection is pulled towards the
    other's and the gap the claims need (:func:`claimed_by_lattices`)
    shrinks. fcc Co shares four of its six lines with hcp Co, so its scale
    is refitted on the other two (200 and 400; published ``poly_hcp`` seed
    1 0.57 to 0.69); a lattice sharing fewer lines than it has of its own
    keeps the fit on all, whose precision the one shared line helps more
    than it biases it (fcc 400 and bcc 310 of tiny ``poly_four_phases``
    seed 1, refitted: a 310 grain at 13.84 px, bcc 310 at 13.80 and fcc
    400 at 13.90 px, went undecided and the map 0.93 to 0.84). The scale
    minimises the lines' relative errors; the refitted lattice must still
    explain every line.
    """
    if int(own.sum()) < MIN_RESCALING_LINES or int(own.sum()) > int((~own).sum()):
        return fit
    radii = np.sqrt(np.asarray(fit["n"], dtype=np.float64))
    lines = fit["lines"]
    scale = float((radii[own] / lines[own]).sum() / (radii[own] ** 2 / lines[own] ** 2).sum())
    error = np.abs(lines - scale * radii) / lines
    if not (error <= rel_tolerance).all():
        return fit
    return dict(fit, scale=scale, max_error=float(error.max()))


def _refined_hcp(fit, rel_tolerance, own):
    """An hcp fit with ``a`` and ``c`` refined by least squares on its indexed lines, or ``fit`` when they cannot be.

    The search steps ``c/a`` by 0.005 and, of fits explaining the same
    lines, keeps the one with the smallest indices, which favours the
    largest ``c/a`` the tolerance allows: tiny ``poly_hcp`` seed 0 (Co,
    ``c/a`` 1.623) was fitted at 1.67, which put hcp 002 and 004 2.8 % from
    where its grains show them, so those grains looked fcc (111, 222).
    Squared radii are linear in ``1/a^2`` and ``1/c^2``
    (``r^2 = 4/3 (h^2 + hk + k^2) s^2 + l^2 s^2 / (c/a)^2``), so the two
    come from one linear least-squares fit once the lines are indexed:
    first on the ``own`` lines (bool per line), a line another lattice
    shows too being the mean of both lattices' spots (hcp 002 and fcc 111
    of Co lie 0.6 % apart), then on all. The first refined lattice whose
    ``c/a`` lies in the searched range and that still explains every line
    is kept.
    """
    basal, axial = _hcp_index_terms(fit["hkl"])
    for used in (own, np.ones(own.size, dtype=bool)):
        solved = _hcp_least_squares(basal[used], axial[used], fit["lines"][used])
        if solved is None:
            continue
        scale, c_over_a = solved
        n = basal + axial / c_over_a**2
        error = np.abs(fit["lines"] - scale * np.sqrt(n)) / fit["lines"]
        if (error <= rel_tolerance).all():
            return dict(fit, scale=scale, c_over_a=c_over_a, n=[round(float(v), 4) for v in n], max_error=float(error.max()))
    return fit


def _hcp_index_terms(hkl):
    """``4/3 (h^2 + hk + k^2)`` and ``l^2`` of hcp reflections named ``"hkl"``."""
    hkl = np.array([[int(digit) for digit in name] for name in hkl], dtype=np.float64).reshape(-1, 3)
    return 4.0 / 3.0 * (hkl[:, 0] ** 2 + hkl[:, 0] * hkl[:, 1] + hkl[:, 1] ** 2), hkl[:, 2] ** 2


def _hcp_least_squares(basal, axial, radii):
    """``(scale, c/a)`` of the hcp lattice whose reflections (index terms of :func:`_hcp_index_terms`) best fit ``radii``, or None.

    Squared radii are linear in the two unknowns, ``r^2 = basal s^2 +
    axial s^2 / (c/a)^2``; relative errors weigh alike. None when the
    reflections do not measure ``c/a`` (every one basal, or every one
    ``00l``) or it falls outside :data:`HCP_AXIAL_RATIOS`.
    """
    design = np.stack([basal, axial], axis=1)
    if design.shape[0] < 2 or np.linalg.matrix_rank(design) < 2:
        return None
    weight = 1.0 / np.asarray(radii, dtype=np.float64) ** 2
    (basal_scale2, axial_scale2), *_ = np.linalg.lstsq(design * weight[:, None], np.ones(design.shape[0]), rcond=None)
    if basal_scale2 <= 0 or axial_scale2 <= 0:
        return None
    c_over_a = float(np.sqrt(basal_scale2 / axial_scale2))
    if not HCP_AXIAL_RATIOS[0] <= c_over_a <= HCP_AXIAL_RATIOS[-1]:
        return None
    return float(np.sqrt(basal_scale2)), c_over_a


#: Smallest relative spread of the spacings about a refitted lattice's
#: reflections: below it, a few spacings fitting by chance would make the
#: lattice seem more precise than a mean pattern's spot is measured.
MIN_SPACING_SPREAD = 0.001
#: Fewest spacings, and fewest segments showing them, that refit a lattice
#: (:func:`refined_lattice`).
MIN_REFINING_SPACINGS = 4
MIN_REFINING_SEGMENTS = 2


def refined_lattice(spacings, lattice, rel_tolerance=DEFAULT_INDEX_TOLERANCE):
    """``lattice`` refitted by least squares on every spacing of segments known to show it, each indexed to its nearest reflection.

    The scan's lattices are fitted to lines pooled over segments, and a line
    two lattices share is the mean of both lattices' spots: fcc Co 111 and
    hcp Co 002 lie 0.6 % apart, one line of the scan, and hcp ``c/a``
    fitted on the other lines alone comes out 0.4 % off (tiny
    ``poly_hcp`` seed 4: 1.617 for 1.623), which put hcp 002 onto fcc 111
    and left every grain showing only the two lattices' common net
    undecidable. Segments judged to show the lattice by spacings only it
    explains measure its shared reflections too. The scale (and for hcp
    ``c/a``) is refitted on every spacing they show within
    ``rel_tolerance`` of a reflection; the fit is kept when
    ``MIN_REFINING_SPACINGS`` spacings of ``MIN_REFINING_SEGMENTS``
    segments made it and it moves no reflection by more than
    ``rel_tolerance``; else ``lattice`` is returned.

    Parameters
    ----------
    spacings : list of numpy.ndarray
        Spot spacings of each segment showing the lattice.
    lattice : dict
        An indexed lattice (:func:`scan_lattices`).
    rel_tolerance : float, default 0.012

    Returns
    -------
    dict
        ``lattice`` with ``"scale"`` (and ``"c_over_a"``) refitted,
        ``"refined_on"`` (spacings used) and ``"spread"`` (their robust
        relative spread about the reflections, at least
        ``MIN_SPACING_SPREAD``), or ``lattice`` itself.

    Examples
    --------
    An fcc lattice fitted 0.5 % small, refitted on three grains:

    >>> import numpy as np
    >>> fcc = {"centring": "F", "scale": 3.51, "lines": np.array([6.08, 7.02]), "n": [3, 4], "max_error": 0.0}
    >>> grains = [np.array([6.11, 7.05]), np.array([9.97, 11.69]), np.array([6.105, 12.21])]
    >>> round(refined_lattice(grains, fcc)["scale"], 3)
    3.525
    """
    rel_tolerance = check_real("rel_tolerance", rel_tolerance, minimum=0, strict_minimum=True)
    shown = [np.asarray(v, dtype=np.float64).ravel() for v in spacings]
    shown = [v[explained_by_lattice(v, lattice, rel_tolerance)] for v in shown]
    if sum(v.size > 0 for v in shown) < MIN_REFINING_SEGMENTS or sum(v.size for v in shown) < MIN_REFINING_SPACINGS:
        return lattice
    radii = np.concatenate(shown)
    relative = _relative_radii(lattice)
    nearest = np.argmin(np.abs(radii[:, None] - lattice["scale"] * relative[None, :]), axis=1)
    refit = {}
    if lattice["centring"] == "hcp":
        names = _hcp_reflections(lattice["c_over_a"])[1]
        solved = _hcp_least_squares(*_hcp_index_terms([names[i] for i in nearest]), radii)
        if solved is not None:
            basal, axial = _hcp_index_terms(lattice.get("hkl", []))
            n = basal + axial / solved[1] ** 2
            refit = {"scale": solved[0], "c_over_a": solved[1], "n": [round(float(v), 4) for v in n]}
    else:
        fitted = relative[nearest]
        refit = {"scale": float((fitted / radii).sum() / (fitted**2 / radii**2).sum())}
    if not refit:
        return lattice
    refined = dict(lattice, **refit)
    new_relative = _relative_radii(refined)
    moved = np.abs(refined["scale"] * new_relative[nearest] - lattice["scale"] * relative[nearest]) / radii
    if (moved > rel_tolerance).any():
        return lattice
    residuals = (radii - refined["scale"] * new_relative[nearest]) / radii
    spread = max(MIN_SPACING_SPREAD, 1.4826 * float(np.median(np.abs(residuals))))
    return dict(refined, refined_on=int(radii.size), spread=spread)


def _fitted_candidates(lines, rel_tolerance, max_n, *, hcp):
    """Every cubic (or every hcp) lattice fitted with one of the lines as its first or second reflection."""
    candidates = []
    for centring, extra, relative, names in _candidate_lattices(max_n):
        if (centring == "hcp") != hcp:
            continue
        for line in lines:
            for first_radius in relative[:2]:
                fit = _fit_scale(lines, relative, line / first_radius, rel_tolerance)
                if fit is not None:
                    scale, shown, nearest, error = fit
                    candidates.append((centring, extra, scale, shown, relative[nearest] ** 2, error, nearest, names))
    return candidates


def _is_coarser_twin(coarse, fine, rel_tolerance, max_radius):
    """Whether every reflection of ``coarse`` out to ``max_radius`` is one of ``fine``, a lattice of the same centring at a smaller scale.

    A body-centred lattice at ``1/sqrt(2)`` of its scale has every even
    ``N`` twice over: all of its own reflections and as many more.
    """
    (centring_c, extra_c, scale_c, _, _, _, _, _) = coarse
    (centring_f, extra_f, scale_f, _, _, _, _, _) = fine
    if centring_c != centring_f or extra_c != extra_f or scale_c <= scale_f * (1 + rel_tolerance):
        return False
    relative = _relative_radii({"centring": centring_c, **extra_c})
    coarse_radii = scale_c * relative
    fine_radii = scale_f * relative
    coarse_radii = coarse_radii[coarse_radii <= max_radius]
    return bool((np.abs(coarse_radii[:, None] - fine_radii[None, :]).min(axis=1) <= rel_tolerance * coarse_radii).all())


def _qualifies(shown_a, shown_b, strong, min_own_a=MIN_OWN_LINES):
    """Whether two lattices explain all strong lines but at most one, each with lines of its own (``min_own_a`` and ``MIN_OWN_LINES``)."""
    missed = int((strong & ~(shown_a | shown_b)).sum())
    return missed <= 1 and (shown_a & ~shown_b).sum() >= min_own_a and (shown_b & ~shown_a).sum() >= MIN_OWN_LINES


def _has_coarser_twin(pair, candidates, strong, rel_tolerance, max_radius, min_own_a=MIN_OWN_LINES):
    """Whether a lattice of ``pair`` has a coarser twin among ``candidates`` that qualifies with the other.

    A finer twin explains more lines by chance, and the pair's score
    counts every segment's spacings, single false ones included; published
    ``poly_structure`` seed 1: martensite indexed at ``1/sqrt(2)`` of its
    scale took austenite 220 and 311 and one grain's false spacing as its
    own, and the austenite grains showing only 220 or 311 went undecided.
    """
    return any(
        _is_coarser_twin(coarse, x, rel_tolerance, max_radius) and _qualifies(coarse[3], y[3], strong, min_own_a)
        for x, y in (pair, pair[::-1])
        for coarse in candidates
    )


def _best_pair(pairs, strong, counts, rel_tolerance, candidates=(), max_radius=0.0, segments_explained=None, min_own_a=MIN_OWN_LINES):
    """Of candidate lattice pairs, the one missing at most one strong line, each with lines of its own, explaining most.

    A pair whose lattice has a coarser twin among ``candidates`` that
    qualifies with the other is left out (:func:`_has_coarser_twin`).
    With ``segments_explained`` (a pair's number of segments one of its
    lattices explains whole), pairs explaining as many lines are told
    apart by it before their indices.
    """
    if segments_explained is not None:
        scored = []
        for pair in pairs:
            found = _best_pair([pair], strong, counts, rel_tolerance, candidates, max_radius, min_own_a=min_own_a)
            if found is not None:
                scored.append(found)
        if not scored:
            return None
        top = max(score[:2] for score, _, _ in scored)
        ties = [(score, a, b) for score, a, b in scored if score[:2] == top]
        return max(ties, key=lambda found: (segments_explained(found[1], found[2]), int(found[1][3].sum() + found[2][3].sum()), found[0]))
    best = None
    for a, b in pairs:
        (centring_a, _, scale_a, shown_a, n_a, error_a, _, _) = a
        (centring_b, _, scale_b, shown_b, n_b, error_b, _, _) = b
        if centring_a == centring_b and abs(scale_a - scale_b) <= rel_tolerance * scale_a:
            continue
        if not _qualifies(shown_a, shown_b, strong, min_own_a) or _has_coarser_twin(
            (a, b), candidates, strong, rel_tolerance, max_radius, min_own_a
        ):
            continue
        missed = int((strong & ~(shown_a | shown_b)).sum())
        score = (-missed, int(counts[shown_a | shown_b].sum()), -round(float(n_a[shown_a].sum() + n_b[shown_b].sum()), 6),
                 -max(error_a, error_b))
        if best is None or score > best[0]:
            best = (score, a, b)
    return best


def segment_lattices(spacings, lattices, rel_tolerance=DEFAULT_INDEX_TOLERANCE, loose_tolerance=LOOSE_INDEX_TOLERANCE):
    """Per segment, which of ``lattices`` explains every one of its spacings: its index, or -1 for none or several.

    A lattice explains a segment's spacings when it explains every one
    within ``rel_tolerance``, or all but one within it (at least two) and
    that one within ``loose_tolerance`` (a spot of a bent grain measured
    off). A segment that one lattice explains the first way and another
    the second is of the first. With one lattice this is
    :func:`lattice_members` (0 for a member).

    Examples
    --------
    >>> import numpy as np
    >>> fcc, bcc = index_cubic([6.03, 6.96, 9.85, 11.55]), index_cubic([6.17, 8.72, 10.68, 12.34])
    >>> segments = [np.array([6.03, 9.85]), np.array([6.17, 8.72]), np.array([13.9]), np.array([6.1]), np.zeros(0),
    ...             np.array([6.30, 8.72, 13.8])]
    >>> segment_lattices(segments, [fcc, bcc]).tolist()
    [0, 1, -1, -1, -1, 1]
    """
    found = np.full(len(spacings), -1, dtype=np.int64)
    for i, radii in enumerate(spacings):
        if np.size(radii) == 0:
            continue
        strict = [explained_by_lattice(radii, lattice, rel_tolerance) for lattice in lattices]
        fits = [j for j, ok in enumerate(strict) if ok.all()]
        if not fits:
            fits = [
                j
                for j, (lattice, ok) in enumerate(zip(lattices, strict))
                if ok.sum() >= 2 and ok.sum() == ok.size - 1 and explained_by_lattice(radii, lattice, loose_tolerance).all()
            ]
        if len(fits) == 1:
            found[i] = fits[0]
    return found
