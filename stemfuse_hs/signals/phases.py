"""Phase maps from segment maps: the physics merge at the signal level.

:func:`merge_phases` reads, in one pass each, the pooled X-ray counts and
the mean diffraction pattern of every segment of a
:class:`~stemfuse_hs.signals.labels.ClusterLabels` and hands them to
:func:`stemfuse_hs.clustering.phases.merge_phases`; :func:`map_phases`
runs the whole pipeline from the two raw signals to a phase map that
carries its segment (grain) map.
"""

import numpy as np

from .._progress import dask_progress
from .._validation import check_choice, check_fraction, check_int, check_optional_bool, check_real
from ..clustering.cluster import ClusterResult
from ..clustering.means import cluster_statistics, cluster_weights, interior_weights
from ..clustering.phases import (
    DEFAULT_ALPHA,
    DEFAULT_MIN_COMPOSITION_DIFFERENCE,
    DEFAULT_LATTICE_LINKAGE,
    DEFAULT_MIN_LATTICE_OVERLAP,
    DEFAULT_MIN_LOG_RATIO,
    DEFAULT_POOL_WIDTH,
    DEFAULT_MIN_PIECE_SIZE,
    DEFAULT_MIN_SPACINGS,
    LATTICE_LINKAGES,
    check_pool_width,
    composition_windows,
    merge_phases as merge_segments,
    reassign_by_composition,
    reassignment_allowed,
    ring_spacings,
    same_composition_matrix,
    window_matrix,
    window_shares,
)
from ..clustering.indexing import scan_lattices, segment_lattices
from ..clustering.boundaries import DEFAULT_BOUNDARY_MARGIN
from ..clustering.grains import DEFAULT_GRAIN_THRESHOLD
from ..clustering.unmixing import DEFAULT_MAX_UNMIXED_SHARE
from ..cluster_parameters import fill_cluster_doc
from .label_factory import build_cluster_labels_like, is_cluster_labels, relabel_cluster_labels

__all__ = ["DEFAULT_GRID_LINES", "map_phases", "merge_phases"]

#: Lines of a Cu grid: their counts do not scale with the specimen's
#: thickness, so they would make two thicknesses of one phase look like two
#: compositions. Pass ``exclude_lines=()`` for a specimen that holds Cu.
DEFAULT_GRID_LINES = ("Cu_Ka", "Cu_Kb", "Cu_La")

#: Smallest cluster of the finer map in which :func:`map_phases` looks for
#: minor phases, in positions. It was 0.5 % of the scan (8 positions of a
#: 32 x 48 scan) until 2026-12-05; a precipitate covers as many positions
#: on a larger scan, and at 0.5 % of a published-size scan (37 positions)
#: the finer map was no finer than the segments.
DEFAULT_MINOR_CLUSTER_SIZE = 8

#: Most positions the segments of :func:`map_phases` need by default: their
#: HDBSCAN ``min_cluster_size`` is 2 % of the scan up to this many positions.
#: A grain covers about as many positions at any scan size, so a share of a
#: large scan would pool several grains, of several phases, into one
#: segment, which no merge can part again (published-size polycrystals:
#: 74 grains in 18 segments at 2 %, 60 segments at 40 positions).
DEFAULT_MAX_SEGMENT_SIZE = 40

#: Natural log of the likelihood ratio from which one position's own X-ray
#: counts move it, last in :func:`map_phases`, to a phase of another
#: composition (a ratio of about 5e8). Chosen on the built-in tiny scans
#: (seeds 0-4, 2026-12-05): 20 lifted ``poly_precipitates`` from 0.50 to
#: 0.64 and lowered no scenario; 10 gave 0.61 and 3 (the merge's own
#: threshold, for pooled counts) 0.59 with ``poly_minor_phase`` lower.
DEFAULT_MIN_POSITION_LOG_RATIO = 20.0

#: Natural log of the likelihood ratio from which a grain's pooled X-ray
#: counts move it, in the grain step of :func:`map_phases`, to a phase of
#: another composition. A grain is one crystal, so one phase, and there are
#: a hundred times fewer grains than positions to test. Published
#: ``poly_minor_phase`` seed 1 (2026-12-07): delta-ferrite particles of
#: 15-24 positions inside austenite grains scored exp(17) to exp(61), every
#: austenite grain exp(-60) to exp(-250); with grains of 15 positions or
#: more, 10 moved two particles (0.68 to 0.77), 20 one (0.73), 3 the same
#: as 10; no tiny map (seeds 0-4) moved.
DEFAULT_MIN_GRAIN_LOG_RATIO = 10.0
#: Smallest grain moved by its pooled counts (the finer map's smallest
#: cluster, :data:`DEFAULT_MINOR_CLUSTER_SIZE`): the Ward split leaves a
#: minor phase's particle of 17-18 positions in parts of 8-14 (published
#: ``poly_minor_phase`` seed 1: two of 13 particles), and pooled counts
#: decide for fewer positions than a mean pattern's spacings do. 8 against
#: 15 (the lattices' smallest grain) on that map: 0.77 to 0.83.
MIN_COMPOSITION_GRAIN_SIZE = DEFAULT_MINOR_CLUSTER_SIZE

#: Patterns are binned to about this many pixels a side before boundary
#: positions are split between their two sides (:func:`map_phases`,
#: ``boundary_margin``): one pattern's few thousand electrons spread over a
#: 256 x 256 detector leave most pixels empty, and the distance between the
#: two sides' patterns would measure that noise.
BOUNDARY_BINNED_SIDE = 16
#: Largest band of binned patterns (bytes, float32) held at once when
#: boundary positions are split (a lazy signal is binned chunk by chunk).
BOUNDARY_BAND_BYTES = 256 * 2**20


def default_segment_size(n_positions):
    """The segments' smallest size by default: 2 % of the scan, at most 40 positions.

    Examples
    --------
    >>> default_segment_size(32 * 48), default_segment_size(50 * 150)
    (31, 40)
    """
    from ..clustering.cluster import resolve_min_cluster_size

    return min(resolve_min_cluster_size(0.02, n_positions), DEFAULT_MAX_SEGMENT_SIZE)


def _resolve_segment_size(segment_size, n_positions):
    """``map_phases``' ``segment_size`` as a count of positions (None: the default)."""
    if segment_size is None:
        return default_segment_size(n_positions)
    from ..clustering.cluster import resolve_min_cluster_size

    return resolve_min_cluster_size(segment_size, n_positions, name="segment_size")


#: Positions whose largest membership is below this do not enter the
#: segment statistics (boundaries mix two segments' patterns and spectra).
SEGMENT_MIN_MEMBERSHIP = 0.5


def _check_same_scan(labels, signal, what):
    scan = signal.axes_manager.navigation_shape
    own = tuple(a.size for a in labels.axes_manager.signal_axes)
    if tuple(s for s in scan if s != 1) != tuple(s for s in own if s != 1):
        raise ValueError(f"merge_phases: {what}'s scan (navigation shape {scan}) is not the label map's scan {own}.")


def merge_phases(
    labels,
    dp=None,
    eds=None,
    *,
    exclude_lines=DEFAULT_GRID_LINES,
    alpha=DEFAULT_ALPHA,
    min_composition_difference=DEFAULT_MIN_COMPOSITION_DIFFERENCE,
    min_lattice_overlap=DEFAULT_MIN_LATTICE_OVERLAP,
    min_spacings=DEFAULT_MIN_SPACINGS,
    lattice_linkage=DEFAULT_LATTICE_LINKAGE,
    lattice_witnesses=True,
    spacing_tolerance=None,
    min_judged_fraction=0.02,
    index_lattice=True,
    reassign=True,
    min_log_ratio=DEFAULT_MIN_LOG_RATIO,
    pool_width=DEFAULT_POOL_WIDTH,
    show_progressbar=None,
):
    """Merge the segments of a label map that are one phase by composition and lattice.

    Parameters
    ----------
    labels : ClusterLabels
        The segment map, e.g. from :meth:`FusedSTEMSignal.cluster
        <stemfuse_hs.signals.features.FusedSTEMSignal.cluster>` (best with
        ``merge_threshold=0``, which keeps every HDBSCAN leaf: the physics
        decides what to join).
    dp : hyperspy signal, optional
        The 4D-STEM data of the scan (raw patterns, eager or lazy).
    eds : hyperspy signal, optional
        The spectrum image of the scan, in counts (the test is a Poisson
        one), energy axis in keV or eV. At least one of ``dp`` and ``eds``.
    exclude_lines : sequence of str, default ("Cu_Ka", "Cu_Kb", "Cu_La")
        X-ray lines left out of the composition test (a grid's signal).
    alpha : float, default 1e-3
        Significance of the composition test.
    min_composition_difference : float, default 0.03
        Smallest total-variation distance between two normalised spectra
        that counts as a different composition, once the distance Poisson
        noise alone gives is taken out (in quadrature; see
        :func:`~stemfuse_hs.clustering.phases.composition_test`).
    min_lattice_overlap : float, default 0.6
        Share of spot spacings two segments must share to be one lattice.
    min_spacings : int, default 3
        Segments showing fewer spot spacings than this never keep two
        groups apart by their lattice (composition decides): two
        orientations of one lattice can light disjoint subsets of its
        spacings. Raise it where the phases are known to share a lattice
        and differ in composition only: on the tiny ``poly_chemistry``
        scans 4 gives a mean ARI of 0.97 over seeds 0-4 (0.84 with 3), but
        it costs the phases that differ in structure only
        (``structure_only`` 0.92 to 0.54, see :doc:`/workflow`).
    lattice_linkage : {"average", "complete"}, default "average"
        Two groups of segments stay apart by their lattices when the
        lattice overlaps of their member pairs (those that both show
        ``min_spacings``) average below ``min_lattice_overlap``
        (``"average"``) or when any one pair's does (``"complete"``). On
        the built-in tiny scans average lifted the phase map's mean ARI
        from 0.65 to 0.67 (``poly_minor_phase`` 0.41 to 0.61) and on the
        small ones from 0.54 to 0.60 (``poly_chemistry`` 0.56 to 0.84),
        see :doc:`/workflow`.
    lattice_witnesses : bool, default True
        Two groups of one composition that the lattice test parts are one
        lattice after all when a segment of another composition (not the
        mixed boundary of two neighbours) shows at least 75 % of each
        group's spacings: which spacings make one lattice does not depend
        on the composition. On the published-size ``poly_chemistry`` scan
        (seed 0) it lifted the phase map from 0.71 to 0.91; the tiny and
        small scans' means moved by less than 0.01 (see :doc:`/workflow`).
    spacing_tolerance : float, optional
        Spot spacings closer than this (pixels) are the same; by default
        0.15 px or a tenth of the direct beam's radius, whichever is larger
        (spots are located to a few hundredths of a pixel; fcc 111 and bcc
        110 of one steel lie 0.15 px apart on a 32-pixel detector).
    min_judged_fraction : float, default 0.02
        Segments smaller than this share of the scan never keep two groups
        apart by their lattice: small segments lie mostly on boundaries,
        where patterns mix two lattices.
    index_lattice : bool, default True
        Index the spacings that at least two segments show, measured about
        the centre of their Friedel pairs, as one cubic lattice, or as two
        (:func:`stemfuse_hs.clustering.indexing.scan_lattices`: face- or
        body-centred, every ratio within 1.2 %). When they index, segments
        whose every spacing is a reflection of one lattice (and not of the
        other) are never kept apart by their lattice from segments of the
        same: grains of one lattice in different orientations show
        different subsets of its reflections, and the indexing knows them
        all; groups of two different lattices never join. Scans whose
        lattices are not F or I cubic, or more than two, do not index and
        are merged as without it. The spacings indexed come from each
        segment's interior
        (:func:`stemfuse_hs.clustering.means.interior_weights`): the probe
        at a grain boundary lights the neighbouring grain too.
        ``phase_merge["scan_lattice"]`` and ``["second_lattice"]`` record
        the lattices. See :doc:`/workflow` for what it gave.
    reassign : bool, default True
        Then move every position whose X-ray counts are at least
        ``exp(min_log_ratio)`` times likelier under another phase's
        composition to that phase, between phases whose lattices are not
        known to differ, and out of a small phase into one of a lattice
        its own lattice has no phase of that composition in
        (:func:`stemfuse_hs.clustering.phases.reassignment_allowed`;
        :func:`stemfuse_hs.clustering.phases.reassign_by_composition`):
        a noisy spectrum can land a position in its neighbour's segment.
        ``phase_merge["reassigned"]`` maps the positions moved; there the
        phase map is not its segment's phase.
    min_log_ratio : float, default 3
        Natural log of that likelihood ratio (about 20).
    pool_width : int, default 3
        The counts that decide a move are those of the ``pool_width`` x
        ``pool_width`` square of scan positions centred on the position
        (odd; 1 for its own counts alone): a spectrum of a few tens of
        counts rarely decides alone. On the built-in tiny scans 3 lifted
        the phase map's mean ARI from 0.63 to 0.65 (``chemistry_only``
        0.84 to 0.92), see :doc:`/workflow`.
    show_progressbar : bool, optional

    Returns
    -------
    ClusterLabels
        The phase map. ``phases.segments`` is the segment map it was made
        from; ``metadata.Clustering.phase_merge`` records the groups,
        every test (G statistic, p-value, difference, lattice overlap) and
        the spacings found per segment.

    Examples
    --------
    >>> import stemfuse_hs
    >>> scan = stemfuse_hs.data.synthetic_scan("structure_only", size="tiny", seed=1)
    >>> fused = stemfuse_hs.fuse(scan.dp, scan.eds)
    >>> segments = fused.cluster(random_state=1, merge_threshold=0)  # doctest: +SKIP
    >>> phases = segments.merge_phases(scan.dp, scan.eds)  # doctest: +SKIP
    >>> phases.n_clusters, phases.segments.n_clusters  # doctest: +SKIP
    (2, 12)
    """
    if not is_cluster_labels(labels):
        raise TypeError(f"merge_phases expects a ClusterLabels map, got {type(labels).__name__}.")
    if dp is None and eds is None:
        raise ValueError("merge_phases needs dp, eds or both: the segments' patterns or spectra to compare.")
    exclude_lines, alpha, min_composition_difference, min_lattice_overlap, spacing_tolerance = _check_merge_parameters(
        exclude_lines=exclude_lines,
        alpha=alpha,
        min_composition_difference=min_composition_difference,
        min_lattice_overlap=min_lattice_overlap,
        min_spacings=min_spacings,
        lattice_linkage=lattice_linkage,
        lattice_witnesses=lattice_witnesses,
        spacing_tolerance=spacing_tolerance,
        min_judged_fraction=min_judged_fraction,
        index_lattice=index_lattice,
        reassign=reassign,
        min_log_ratio=min_log_ratio,
        pool_width=pool_width,
    )
    check_optional_bool("show_progressbar", show_progressbar)
    for signal, what, ndim in ((dp, "dp", 2), (eds, "eds", 1)):
        if signal is not None:
            if signal.axes_manager.signal_dimension != ndim:
                raise ValueError(
                    f"merge_phases: {what} must have {ndim} signal dimension(s), got "
                    f"{signal.axes_manager.signal_dimension} (signal shape {signal.axes_manager.signal_shape})."
                )
            _check_same_scan(labels, signal, what)
    if eds is not None:
        windows = _composition_windows(eds, exclude_lines)

    k = labels.n_clusters
    n = int(np.prod(labels.data.shape))
    memberships = np.moveaxis(np.asarray(labels.memberships.data), 0, -1).reshape(n, -1)
    flat_labels = np.asarray(labels.data).reshape(n).astype(np.int64)
    weights = cluster_weights(flat_labels, memberships, "hard", SEGMENT_MIN_MEMBERSHIP)
    sizes = weights.sum(axis=0)
    spectra = spacings = scan_beam = lattice = second_lattice = one_lattice = None
    tolerance = spacing_tolerance
    with dask_progress(show_progressbar):
        if eds is not None and k:
            mean, _ = cluster_statistics(eds.data, 1, weights, std=False)
            spectra = np.nan_to_num(mean.astype(np.float64)) * sizes[:, None]
        if dp is not None and k:
            from ..features.sdt import find_direct_beam

            if index_lattice:
                # Indexing compares spacings to 1 %: the segments' interiors
                # give them without their border's weak neighbouring spots.
                # Both means come from one pass over the patterns.
                inner = interior_weights(weights, np.asarray(labels.data))
                both, _ = cluster_statistics(dp.data, 2, np.concatenate([weights, inner], axis=1), std=False)
                patterns, inner_patterns = both[:k], both[k:]
            else:
                patterns, _ = cluster_statistics(dp.data, 2, weights, std=False)
            # A few grains' mean can hold a Bragg disk brighter than the beam;
            # the scan's mean cannot, and the beam drifts (descan) by less
            # than its radius, so each segment's beam is looked for there.
            scan_centre, scan_radius = find_direct_beam(np.tensordot(sizes, np.nan_to_num(patterns), axes=1))
            scan_beam = [float(scan_centre[0]), float(scan_centre[1]), float(scan_radius)]
            spacings, radii = _pattern_spacings(patterns, sizes, scan_beam)
            if tolerance is None:
                tolerance = max(0.15, 0.1 * float(np.median(radii))) if radii else 0.15
            if index_lattice:
                # The overlap tests' tolerance was set on the beam-centroid
                # spacings; indexing needs 1 %, so it gets its own measurement.
                precise, _, spots = _pattern_spacings(inner_patterns, inner.sum(axis=0), scan_beam, friedel_centre=True, with_spots=True)
                lattices = scan_lattices(precise, spots=spots)
                if lattices:
                    lattice = lattices[0]
                    second_lattice = lattices[1] if len(lattices) > 1 else None
                    one_lattice = segment_lattices(precise, lattices)
    if k == 0:
        raise ValueError("merge_phases: the label map has no clusters (every position is noise).")
    merge = merge_segments(
        spectra,
        windows if eds is not None else None,
        spacings,
        tolerance=tolerance if tolerance is not None else 0.15,
        alpha=alpha,
        min_composition_difference=min_composition_difference,
        min_lattice_overlap=min_lattice_overlap,
        min_spacings=int(min_spacings),
        lattice_linkage=lattice_linkage,
        lattice_witnesses=lattice_witnesses,
        segment_map=np.asarray(labels.data),
        sizes=sizes,
        min_judged_size=min_judged_fraction * float(np.sum(sizes)),
        one_lattice=one_lattice,
    )
    phase_memberships = np.stack([memberships[:, g].sum(axis=1) for g in merge.groups], axis=1).astype(np.float32)
    segment_phase = merge.segment_phase()
    phase_labels = np.where(flat_labels >= 0, segment_phase[np.maximum(flat_labels, 0)], -1)
    moved = np.zeros(n, dtype=bool)
    if reassign and eds is not None and merge.n_phases > 1:
        phase_counts = np.stack([spectra[g].sum(axis=0) for g in merge.groups])
        shares = window_shares(phase_counts, windows)
        same = same_composition_matrix(phase_counts, windows, alpha=alpha, min_difference=min_composition_difference)
        phase_sizes = np.array([sizes[g].sum() for g in merge.groups])
        allowed = reassignment_allowed(merge.lattice_differs, same, phase_sizes / phase_sizes.sum())
        with dask_progress(show_progressbar):
            counts = _window_counts_per_position(eds, windows)
        new_labels = reassign_by_composition(
            counts, phase_labels, shares, allowed, min_log_ratio=min_log_ratio,
            scan_shape=np.asarray(labels.data).shape, pool_width=pool_width,
        )
        moved = new_labels != phase_labels
        rows = np.flatnonzero(moved)
        old, new = phase_labels[rows], new_labels[rows]
        swapped = phase_memberships[rows, old].copy()
        phase_memberships[rows, old] = phase_memberships[rows, new]
        phase_memberships[rows, new] = swapped
        phase_labels = new_labels
    parameters = dict(labels.parameters)
    record = {
        "groups": [list(map(int, g)) for g in merge.groups],
        "segment_phase": segment_phase,
        "alpha": alpha,
        "min_composition_difference": min_composition_difference,
        "min_lattice_overlap": min_lattice_overlap,
        "min_spacings": int(min_spacings),
        "lattice_linkage": lattice_linkage,
        "lattice_witnesses": bool(lattice_witnesses),
        "spacing_tolerance": float(tolerance if tolerance is not None else 0.15),
        "min_judged_fraction": float(min_judged_fraction),
        "index_lattice": bool(index_lattice),
        "scan_lattice": _lattice_record(lattice),
        "second_lattice": _lattice_record(second_lattice),
        "exclude_lines": list(exclude_lines),
        "used": [name for name, s in (("eds", eds), ("dp", dp)) if s is not None],
        "tests": _tests_table(merge.tests),
        "spacings": _spacings_table(merge.spacings),
        "reassigned": moved.reshape(labels.data.shape),
        "min_log_ratio": float(min_log_ratio),
        "pool_width": int(pool_width),
    }
    if scan_beam is not None:
        record["direct_beam"] = np.asarray(scan_beam, dtype=np.float64)
    result = ClusterResult(phase_labels.astype(np.int64), phase_memberships, parameters)
    phases = build_cluster_labels_like(labels, result, record)
    return phases


def _move_as_new_segment(rows, source, target, seg_labels, seg_memberships, phase_memberships, groups, segment_phase):
    """Positions ``rows`` leave phase ``source`` for ``target`` as one more segment of it.

    Their segment memberships become the new segment's column and their
    two phase memberships are swapped, so that every position stays its
    segment's phase. ``seg_labels``, ``phase_memberships``, ``groups`` and
    ``segment_phase`` are updated in place (the result's own arrays); the
    widened segment memberships are returned.
    """
    new_segment = seg_memberships.shape[1]
    column = np.zeros(seg_memberships.shape[0], dtype=seg_memberships.dtype)
    old_segments = seg_labels[rows]
    held = old_segments >= 0
    column[rows[held]] = seg_memberships[rows[held], old_segments[held]]
    seg_memberships[rows[held], old_segments[held]] = 0
    swapped = phase_memberships[rows, source].copy()
    phase_memberships[rows, source] = phase_memberships[rows, target]
    phase_memberships[rows, target] = swapped
    seg_labels[rows] = new_segment
    groups[target].append(new_segment)
    segment_phase.append(target)
    return np.column_stack([seg_memberships, column])


def _lattice_record(lattice):
    """The scan's indexed lattice for the metadata: empty when the scan's spacings did not index."""
    if lattice is None:
        return {}
    hcp = lattice["centring"] == "hcp"
    record = {
        "centring": lattice["centring"],
        "lines": np.asarray(lattice["lines"], dtype=np.float64),
        # hcp: (d_100 / d)^2 * 4/3 of each line, as N of a cubic lattice.
        "n": np.asarray(lattice["n"], dtype=np.float64 if hcp else np.int64),
        "scale": float(lattice["scale"]),
        "max_error": float(lattice["max_error"]),
        "left_out": float(lattice["left_out"]),
    }
    if hcp:
        record.update(c_over_a=float(lattice["c_over_a"]), hkl=[str(v) for v in lattice["hkl"]])
    if "refined_on" in lattice:
        record.update(refined_on=int(lattice["refined_on"]), spread=float(lattice["spread"]))
    if "indexed_on" in lattice:
        # How many grains the segments' pair and the grains' pair explain whole.
        record.update(indexed_on=str(lattice["indexed_on"]), grains_explained=np.asarray(lattice["grains_explained"], dtype=np.int64))
    return record


def _pattern_spacings(patterns, sizes, scan_beam, friedel_centre=False, with_spots=False, faint_disks=False):
    """Spot spacings of mean patterns, each one's beam looked for near the scan's; and the beam radii found.

    With ``friedel_centre`` (the indexing's measurement) the beam's centre
    is refined (:func:`~stemfuse_hs.clustering.phases.beam_centroid`) and
    the spots' Friedel pairs centre them again. With ``with_spots``, also
    each pattern's spot offsets from that centre. ``faint_disks`` is
    :func:`~stemfuse_hs.clustering.phases.ring_spacings`'.
    """
    from ..clustering.phases import beam_centroid
    from ..features.sdt import find_direct_beam

    scan_centre, scan_radius = (scan_beam[0], scan_beam[1]), scan_beam[2]
    spacings, radii, spots = [], [], []
    for pattern, size in zip(patterns, sizes):
        if size == 0:
            spacings.append(np.zeros(0))
            spots.append(np.zeros((0, 2)))
            continue
        centre, beam_radius = find_direct_beam(pattern, near=scan_centre, within=scan_radius)
        if friedel_centre:
            # Indexing compares spacings to 1.2 %: the half-maximum region's
            # centroid can be a tenth of a pixel off, a spot without its
            # Friedel mate then 1.5 % (see beam_centroid).
            centre = beam_centroid(pattern, centre, beam_radius / 1.25)
        radii.append(beam_radius)
        found, _, offsets = ring_spacings(
            pattern, centre, inner_radius=beam_radius + 1.0, n_positions=size, disk_radius=beam_radius / 1.25,
            friedel_centre=friedel_centre, return_spots=True, faint_disks=faint_disks,
        )
        spacings.append(found)
        spots.append(offsets)
    return (spacings, radii, spots) if with_spots else (spacings, radii)


def _check_merge_parameters(
    *,
    exclude_lines,
    alpha,
    min_composition_difference,
    min_lattice_overlap,
    min_spacings,
    lattice_linkage,
    lattice_witnesses,
    spacing_tolerance,
    min_judged_fraction,
    index_lattice,
    reassign,
    min_log_ratio,
    pool_width,
):
    """Validate :func:`merge_phases`' parameters before any data is read (its signature holds the defaults)."""
    from .._validation import check_bool
    from ..features.variance import xray_line_energy

    if isinstance(exclude_lines, str):
        exclude_lines = [exclude_lines]
    exclude_lines = list(exclude_lines)
    for line in exclude_lines:
        xray_line_energy(line)  # names the line and what is wrong with it
    alpha = check_fraction("alpha", alpha)
    min_composition_difference = check_real("min_composition_difference", min_composition_difference, minimum=0)
    min_lattice_overlap = check_fraction("min_lattice_overlap", min_lattice_overlap, closed_low=True)
    check_int("min_spacings", min_spacings, minimum=1)
    check_choice("lattice_linkage", lattice_linkage, LATTICE_LINKAGES)
    check_bool("lattice_witnesses", lattice_witnesses)
    check_bool("index_lattice", index_lattice)
    if spacing_tolerance is not None:
        spacing_tolerance = check_real("spacing_tolerance", spacing_tolerance, minimum=0, strict_minimum=True)
    check_fraction("min_judged_fraction", min_judged_fraction, closed_low=True)
    check_bool("reassign", reassign)
    check_real("min_log_ratio", min_log_ratio, minimum=0)
    check_pool_width(pool_width)
    return exclude_lines, alpha, min_composition_difference, min_lattice_overlap, spacing_tolerance


def _composition_windows(eds, exclude_lines):
    """FWHM-wide windows of the spectra's channels, the excluded lines left out."""
    from ..features.variance import fwhm_at_energy, line_windows

    from .extract import _energies_kev

    resolution = float(eds.metadata.get_item("Acquisition_instrument.TEM.Detector.EDS.energy_resolution_MnKa", 130.0))
    energies, _ = _energies_kev(eds, "merge_phases", uses="the composition test's X-ray line windows need")
    return composition_windows(
        energies, fwhm_at_energy(5.8987, resolution), exclude=line_windows(list(exclude_lines), resolution)
    )


def _window_counts_per_position(eds, windows):
    """``(n_positions, n_windows)`` float32 counts of every spectrum, read once (lazily for lazy data)."""
    from .._arrays import is_lazy_array

    matrix = window_matrix(windows)
    n = int(np.prod(eds.axes_manager.navigation_shape))
    data = eds.data.reshape((n, eds.data.shape[-1]))
    if is_lazy_array(data):
        import dask.array as da

        product = data.astype(np.float32) @ da.from_array(matrix, chunks=matrix.shape)
        return np.asarray(product.compute(), dtype=np.float64)
    return np.asarray(data, dtype=np.float32) @ matrix


def _tests_table(tests):
    """The merge's tests as columns (metadata stores arrays, not lists of dicts)."""
    def comp(entry, key, default):
        return entry["composition"][key] if entry["composition"] is not None else default

    return {
        "a": [" ".join(map(str, t["a"])) for t in tests],
        "b": [" ".join(map(str, t["b"])) for t in tests],
        "g": np.array([comp(t, "g", np.nan) for t in tests], dtype=np.float64),
        "p_value": np.array([comp(t, "p_value", np.nan) for t in tests], dtype=np.float64),
        "composition_difference": np.array([comp(t, "difference", np.nan) for t in tests], dtype=np.float64),
        "composition_noise_floor": np.array([comp(t, "noise_floor", np.nan) for t in tests], dtype=np.float64),
        "lattice_overlap": np.array([t["lattice_overlap"] for t in tests], dtype=np.float64),
        "same_composition": np.array([t["same_composition"] for t in tests], dtype=bool),
        "same_lattice": np.array([t["same_lattice"] for t in tests], dtype=bool),
        "merged": np.array([t["merged"] for t in tests], dtype=bool),
        "indexed": np.array([t.get("indexed", False) for t in tests], dtype=bool),
        "indexed_apart": np.array([t.get("indexed_apart", False) for t in tests], dtype=bool),
        "witness": np.array([t.get("witness", -1) for t in tests], dtype=np.int64),
        "contained": np.array([t.get("contained", False) for t in tests], dtype=bool),
    }


def _spacings_table(spacings):
    return {f"segment_{i}": np.asarray(s, dtype=np.float64) for i, s in enumerate(spacings)}


@fill_cluster_doc
def map_phases(
    dp,
    eds,
    *,
    random_state=None,
    segment_size=None,
    minor_cluster_size=DEFAULT_MINOR_CLUSTER_SIZE,
    min_piece_size=DEFAULT_MIN_PIECE_SIZE,
    grain_threshold=DEFAULT_GRAIN_THRESHOLD,
    min_grain_log_ratio=DEFAULT_MIN_GRAIN_LOG_RATIO,
    min_position_log_ratio=DEFAULT_MIN_POSITION_LOG_RATIO,
    max_unmixed_share=DEFAULT_MAX_UNMIXED_SHARE,
    boundary_margin=DEFAULT_BOUNDARY_MARGIN,
    fused=None,
    fuse_kwargs=None,
    cluster_kwargs=None,
    show_progressbar=None,
    **merge_kwargs,
):
    """From raw 4D-STEM and EDS signals to a phase map with its segment map.

    Default features (:func:`~stemfuse_hs.sdt_features`,
    :func:`~stemfuse_hs.variance_features`), :func:`~stemfuse_hs.fuse`,
    :meth:`~stemfuse_hs.signals.features.FusedSTEMSignal.cluster` keeping
    every HDBSCAN leaf (``merge_threshold=0``: the segments), then
    :func:`merge_phases` on the raw signals. The same embedding clustered
    again with ``minor_cluster_size`` and merged the same way gives a finer
    phase map; its small phases of another composition than their
    surroundings are carved out as phases of their own
    (:func:`stemfuse_hs.clustering.phases.carve_minor_phases`), each
    becoming one more segment; before that, a small phase of the finer map
    that lies mostly in one phase of the same composition takes its
    positions in other phases, whose composition is not theirs, into it
    (:func:`stemfuse_hs.clustering.phases.grow_phases`; the moved positions
    of each become one more segment of that phase). Last, the connected
    pieces of every segment on the scan are judged by their own mean
    pattern: a piece that shows spacings of another phase of its
    composition and none of its own phase's moves there (``min_piece_size``).
    Then every phase's connected pieces are split into grains by their
    patterns; a grain whose pooled X-ray counts another phase's
    composition explains far better moves there, and so does a patch of
    positions whose neighbourhoods count like it (``min_grain_log_ratio``),
    and a grain whose interior shows the other indexed lattice
    than its phase moves to the phase of its composition with that
    lattice, or, when there is none, the phase's grains of that lattice
    become a new phase (``grain_threshold``).
    Very last, a position whose own X-ray counts another phase's
    composition explains far better moves to that phase
    (``min_position_log_ratio``). And at the very end, a small phase that
    holds elements its host lacks gives the positions at its edge whose
    probe lies mostly in the host to the host, and takes those of the
    host whose probe lies mostly in it (``max_unmixed_share``). Finally,
    every position at a boundary between two phases whose sides diffract
    differently (two orientations) goes to the side its pattern is mostly
    made of (``boundary_margin``).

    Parameters
    ----------
    dp, eds : hyperspy signals
        The two modalities of one scan (raw counts), eager or lazy.
    random_state : int, optional
    segment_size : int or float, optional
        Smallest segment (HDBSCAN ``min_cluster_size`` of the segment map),
        a count or a share of the scan; by default 2 % of the scan, at most
        40 positions (:func:`~stemfuse_hs.signals.phases.default_segment_size`): a grain smaller than
        this is pooled with its neighbours.
    minor_cluster_size : int or float or None, default 8
        Smallest cluster of the finer map (count or share of the scan);
        None skips the search for minor phases. A carved phase's connected
        pieces whose pooled counts its host's composition explains better
        go back to the host.
    min_piece_size : int or None, default 15
        Smallest connected piece of a segment whose lattice is judged on
        its own: a segment can pool off-zone grains of two phases of one
        composition from all over the scan, and a piece of it (at most
        half of the segment) that shows spacings of another phase of its
        composition and none of its own moves there
        (:func:`stemfuse_hs.clustering.phases.move_pieces_by_lattice`;
        each move becomes one more segment, listed in
        ``phase_merge["pieces"]``). None skips it.
    grain_threshold : float or None, default 5.0
        When the scan indexes two lattices (or ``min_grain_log_ratio`` is
        not None): every connected piece of a
        phase is split into grains where joining two parts of it (Ward
        linkage of the variance-stabilised patterns, binned to about 16
        pixels a side) costs this many times the median distance of two
        neighbouring positions' patterns
        (:func:`stemfuse_hs.clustering.grains.split_grains`); each grain of
        at least ``min_piece_size`` positions (15 when that is None) is
        judged on its interior, one position in from its edge, whose probe
        does not reach the neighbouring grains: the lattice explaining more
        of its spacings is its lattice. The two lattices are indexed again on
        the grains' spacings first, and that pair is used when it explains
        every spacing of more grains than the segments' pair does (segments
        can pool grains of two phases;
        :func:`stemfuse_hs.clustering.grains.lattices_indexed_on_grains`;
        ``"indexed_on"`` in ``phase_merge["grain_lattices"]``). Each lattice is then refitted on
        every spacing of the grains judged to it by a spacing it alone
        claims, and the grains judged again
        (:func:`stemfuse_hs.clustering.grains.lattices_refined_on_grains`;
        ``phase_merge["grain_lattices"]``). A grain no lattice explains, or one
        judged on a single spacing (it may pool two crystals;
        ``phase_merge["weakly_judged_grains"]`` counts them), is split
        once more at half the threshold and its parts judged
        (:func:`stemfuse_hs.clustering.grains.split_undecided_grains`; one
        more pass over ``dp`` when there is one; a part of a weakly judged
        grain showing no lattice keeps the grain's). A grain judged on
        one spacing that shows the spots of neighbouring grains judged on
        more (at least half its size) takes their lattice when they agree
        (:func:`stemfuse_hs.clustering.grains.verdicts_of_weak_grains`;
        ``phase_merge["weak_grains_rejudged"]``). A grain whose lattice is not the one
        most of its phase's judged grains show moves to the one phase of its
        composition that shows it; when no phase of its composition does,
        the phase's grains of that lattice (two or more, a tenth of its
        positions or more) become a new phase
        (:func:`stemfuse_hs.clustering.grains.move_grains_by_lattice`).
        Phases of one composition whose remaining judged grains all show
        one lattice are then one phase
        (:func:`stemfuse_hs.clustering.grains.phases_of_one_lattice`;
        ``phase_merge["joined_phases"]``: numbers before and after) and
        the grains are moved once more. A position in no grain (a grain
        boundary, a piece too small to judge) then takes the phase of the
        grain within two positions whose pattern fills most of its probe
        (:func:`stemfuse_hs.clustering.grains.loose_positions_to_grains`;
        ``phase_merge["loose_positions_joined"]``), unless its phase's
        positions nearby away from any boundary explain its pattern better
        or its counts speak against that grain's composition. The
        positions moved between two phases become one more segment, listed
        in ``phase_merge["grains"]`` (in the numbers after any join);
        ``phase_merge["phase_lattice"]`` holds
        every phase's lattice (0 the scan's, 1 the second, -1 none). One
        more pass over ``dp`` for the binned patterns (which the boundary
        step then reuses instead of reading ``dp`` again) and one for the
        grains' means; the binned patterns of the whole scan are held in
        memory (rows x cols x about 256 x 4 bytes: 268 MB for 512 x 512
        positions). None skips it.
    min_grain_log_ratio : float or None, default 10
        Before the lattices judge them, a grain of at least 8 positions
        (the phases split as for the lattices, keeping smaller parts)
        whose pooled counts in the composition
        windows are at least ``exp(min_grain_log_ratio)`` times likelier
        under the pooled composition of a phase of another composition
        moves there
        (:func:`~stemfuse_hs.clustering.grains.move_grains_by_composition`):
        a minor phase's particles a few positions across can sit in the
        matrix's segments, where one position's counts do not decide but
        the particle's pooled counts do. Then a patch of 8 positions or
        more whose 3 x 3 neighbourhoods count like a phase of another
        composition moves there when its pooled counts reach the same
        ratio (:func:`~stemfuse_hs.clustering.grains.move_patches_by_composition`;
        a particle left inside a grain of its host). Also with one lattice indexed;
        needs ``grain_threshold``. The positions moved between two phases
        become one more segment, listed in
        ``phase_merge["grains_by_composition"]``. None skips it.
    min_position_log_ratio : float or None, default 20
        A position whose own counts in the composition windows are at least
        ``exp(min_position_log_ratio)`` times likelier under the pooled
        composition of another phase, one of another composition
        (:func:`~stemfuse_hs.clustering.phases.same_composition_matrix`),
        moves there
        (:func:`~stemfuse_hs.clustering.phases.reassign_by_composition`
        with ``pool_width=1``). The merge's own reassignment pools a
        position's neighbours and comes before the carving, so it cannot
        move a precipitate a few positions across into a phase carved out
        after it. The positions moved from one phase into another become
        one more segment of it, listed in ``phase_merge["positions_moved"]``.
        None skips it.
    max_unmixed_share : float or None, default 0.2
        Phases covering at most this share of the scan are unmixed from
        their host (the phase around them) position by position
        (:func:`stemfuse_hs.clustering.unmixing.unmix_small_phases`): the
        host's spectrum is subtracted from the phase's pooled counts as far
        as non-negativity allows, and when at least half of what is left
        lies in windows the host lacks (elements of its own), each
        position's counts are split between the two; a position moves to
        the phase that fills most of its probe (by half a standard error).
        Where more than a tenth of the phase's positions are measured
        mostly in the host (it pooled its particles' halos), the positions
        around each small particle are judged together instead, by the
        soft-edged disk fitted to all their shares
        (:func:`stemfuse_hs.clustering.unmixing.fit_particle`).
        A precipitate a few positions across pools its halo, the matrix
        positions its probe tails reach, without this. Each move becomes
        one more segment, listed in ``phase_merge["unmixed"]`` (with the
        ``"halo"`` share and the number of ``"particles"`` judged whole).
        None skips it.
    boundary_margin : float or None, default 2.0
        A position with a position of another phase among its eight
        neighbours is split between the two sides' patterns (each the mean
        pattern of the nearby positions of the same segment and phase away
        from the boundary; patterns binned to about 16 pixels a side) and
        moves to the other side when its share there is past one half by
        this many standard errors
        (:func:`stemfuse_hs.clustering.boundaries.refine_boundaries`).
        Sides whose patterns hardly differ (one orientation: phases told
        apart by their X-rays) and pairs unmixed by their X-rays are left
        alone. The positions moved between two phases become one more
        segment, listed in ``phase_merge["boundaries"]``. One more pass
        over ``dp``, in bands of rows. None skips it.
    fused : FusedSTEMSignal, optional
        Fused features of ``dp`` and ``eds`` made already (other extractors
        or parameters); by default the default ones.
    fuse_kwargs : dict, optional
        Passed to :func:`~stemfuse_hs.fuse` (when ``fused`` is not given).
    cluster_kwargs : dict, optional
        Passed to ``cluster`` (``merge_threshold`` defaults to 0 here: the
        segments keep every HDBSCAN leaf). Its keywords, with ``cluster``'s defaults:

        {cluster_keywords}
    show_progressbar : bool, optional
    **merge_kwargs
        Passed to :func:`merge_phases`.

    Returns
    -------
    ClusterLabels
        The phase map; ``.segments`` is the segment (grain) map;
        ``phase_merge["minor_phases"]`` lists the carved phases,
        ``phase_merge["carved_pieces_returned"]`` their connected pieces
        given back to the host, whose composition explains their pooled
        counts better
        (:func:`stemfuse_hs.clustering.phases.carved_pieces_of_the_host`),
        ``phase_merge["grown"]`` the positions moved by ``grow_phases``,
        ``phase_merge["pieces"]`` the pieces moved by their lattice,
        ``phase_merge["grains_by_composition"]`` the grains and patches
        moved by their pooled counts, ``phase_merge["grains"]`` those moved by their lattice and
        ``phase_merge["positions_moved"]`` the positions moved by their
        own counts, ``phase_merge["unmixed"]`` those moved between a
        small phase and its host and ``phase_merge["boundaries"]`` those
        moved across a boundary by their patterns.

    Examples
    --------
    >>> import stemfuse_hs
    >>> scan = stemfuse_hs.data.synthetic_scan("structure_only", size="tiny", seed=1)
    >>> phases = stemfuse_hs.map_phases(scan.dp, scan.eds, random_state=1)  # doctest: +SKIP
    >>> phases.n_clusters  # doctest: +SKIP
    2
    """
    from ..clustering.embed import reuse_embeddings
    from .extract import sdt_features, variance_features
    from .fuse import fuse

    # A typo must not cost a UMAP run: every merge parameter is checked first.
    import inspect

    # Unknown names raise TypeError here, with merge_phases' own defaults filled in.
    bound = inspect.signature(merge_phases).bind(None, **merge_kwargs)
    bound.apply_defaults()
    checked = {k: v for k, v in bound.arguments.items() if k not in ("labels", "dp", "eds", "show_progressbar")}
    _check_merge_parameters(**checked)
    from ..clustering.cluster import resolve_min_cluster_size

    n_positions = int(np.prod(dp.axes_manager.navigation_shape))
    if minor_cluster_size is not None:
        resolve_min_cluster_size(minor_cluster_size, n_positions)
    if min_piece_size is not None:
        check_int("min_piece_size", min_piece_size, minimum=2)
    if grain_threshold is not None:
        check_real("grain_threshold", grain_threshold, minimum=0, strict_minimum=True)
    if min_grain_log_ratio is not None:
        check_real("min_grain_log_ratio", min_grain_log_ratio, minimum=0)
    if min_position_log_ratio is not None:
        check_real("min_position_log_ratio", min_position_log_ratio, minimum=0)
    if max_unmixed_share is not None:
        check_fraction("max_unmixed_share", max_unmixed_share)
    if boundary_margin is not None:
        check_real("boundary_margin", boundary_margin, minimum=0)
    cluster_kwargs = dict(cluster_kwargs or {})
    if "min_cluster_size" in cluster_kwargs:
        raise ValueError("map_phases sizes its segments with segment_size; cluster_kwargs may not hold min_cluster_size.")
    cluster_kwargs["min_cluster_size"] = _resolve_segment_size(segment_size, n_positions)
    cluster_kwargs.setdefault("merge_threshold", 0.0)
    if fused is None:
        fused = fuse(sdt_features(dp), variance_features(eds), **(fuse_kwargs or {}))
    with reuse_embeddings():
        segments = fused.cluster(random_state=random_state, show_progressbar=show_progressbar, **cluster_kwargs)
        phases = merge_phases(segments, dp, eds, show_progressbar=show_progressbar, **merge_kwargs)
        if minor_cluster_size is not None:
            fine_kwargs = dict(cluster_kwargs, min_cluster_size=minor_cluster_size)
            fine_segments = fused.cluster(random_state=random_state, show_progressbar=show_progressbar, **fine_kwargs)
    steps = (minor_cluster_size, min_piece_size, grain_threshold, min_position_log_ratio, max_unmixed_share, boundary_margin)
    if all(step is None for step in steps):
        return phases
    # One pass over the spectra serves the carving and the pieces.
    windows = _composition_windows(eds, phases.phase_merge["exclude_lines"])
    with dask_progress(show_progressbar):
        counts = _window_counts_per_position(eds, windows)
    if minor_cluster_size is not None:
        fine = merge_phases(fine_segments, dp, eds, show_progressbar=show_progressbar, **merge_kwargs)
        phases = _carve(phases, fine, counts)
        phases = _return_carved_pieces(phases, counts)
    if min_piece_size is not None:
        phases = _move_pieces(phases, dp, counts, show_progressbar, min_piece_size)
    binned = None  # the scan's binned patterns, once read, serve the boundary step too
    if grain_threshold is not None:
        grain_size = min_piece_size if min_piece_size is not None else DEFAULT_MIN_PIECE_SIZE
        phases, binned = _move_grains(
            phases, dp, counts, grain_threshold, grain_size, min_grain_log_ratio, show_progressbar
        )
    if min_position_log_ratio is not None:
        phases = _move_positions(phases, counts, min_position_log_ratio)
    if max_unmixed_share is not None:
        phases = _unmix(phases, counts, max_unmixed_share)
    if boundary_margin is not None:
        phases = _refine_boundaries(phases, segments.data, dp, counts, boundary_margin, show_progressbar, binned)
    return phases


def _carve(phases, fine, counts):
    """``phases`` with the minor phases of ``fine`` carved out (each one more segment).

    ``counts`` are every position's X-ray counts in the composition windows.
    """
    from ..clustering.phases import carve_minor_phases, grow_phases

    record = phases.phase_merge
    n = phases.data.size
    labels = np.asarray(phases.data).reshape(n)
    fine_labels = np.asarray(fine.data).reshape(n)
    tests = {"alpha": record["alpha"], "min_composition_difference": record["min_composition_difference"]}
    grown_labels, grown = grow_phases(labels, fine_labels, counts, **tests)
    new_labels, carved = carve_minor_phases(grown_labels, fine_labels, counts, **tests)
    record["grown"] = {
        "fine_phase": np.array([g["fine_phase"] for g in grown], dtype=np.int64),
        "from_phase": np.array([g["from"] for g in grown], dtype=np.int64),
        "into_phase": np.array([g["into"] for g in grown], dtype=np.int64),
        "positions": np.array([g["positions"] for g in grown], dtype=np.int64),
        "p_value": np.array([g["composition"]["p_value"] for g in grown], dtype=np.float64),
        "composition_difference": np.array([g["composition"]["difference"] for g in grown], dtype=np.float64),
    }
    record["minor_phases"] = {
        "fine_phase": np.array([c["fine_phase"] for c in carved], dtype=np.int64),
        "host": np.array([c["host"] for c in carved], dtype=np.int64),
        "positions": np.array([c["positions"] for c in carved], dtype=np.int64),
        "p_value": np.array([c["composition"]["p_value"] for c in carved], dtype=np.float64),
        "composition_difference": np.array([c["composition"]["difference"] for c in carved], dtype=np.float64),
        "min_cluster_size": fine.segments.parameters["min_cluster_size_given"],
    }
    segments = phases.segments
    k_phase, k_seg = phases.n_clusters, segments.n_clusters
    phase_memberships = np.moveaxis(np.asarray(phases.memberships.data), 0, -1).reshape(n, -1)
    fine_memberships = np.moveaxis(np.asarray(fine.memberships.data), 0, -1).reshape(n, -1)
    seg_labels = np.asarray(segments.data).reshape(n).copy()
    seg_memberships = np.moveaxis(np.asarray(segments.memberships.data), 0, -1).reshape(n, -1)
    new_phase_columns, new_seg_columns = [], []
    groups = [list(g) for g in record["groups"]]
    segment_phase = list(np.asarray(record["segment_phase"]))
    # Moved positions become one more segment of the phase they joined.
    for entry in grown:
        rows = np.flatnonzero((fine_labels == entry["fine_phase"]) & (labels == entry["from"]) & (grown_labels == entry["into"]))
        seg_memberships = _move_as_new_segment(
            rows, entry["from"], entry["into"], seg_labels, seg_memberships, phase_memberships, groups, segment_phase
        )
        k_seg += 1
    for index, entry in enumerate(carved):
        column = fine_memberships[:, [entry["fine_phase"]] + entry.get("joined", [])].sum(axis=1)
        phase_memberships[:, entry["host"]] = np.clip(phase_memberships[:, entry["host"]] - column, 0, None)
        new_phase_columns.append(column)
        new_seg_columns.append(column)
        seg_labels[new_labels == k_phase + index] = k_seg + index
        groups.append([k_seg + index])
        segment_phase.append(k_phase + index)
    if carved:
        phase_memberships = np.column_stack([phase_memberships] + new_phase_columns)
        seg_memberships = np.column_stack([seg_memberships] + new_seg_columns)
    if carved or grown:
        segments = relabel_cluster_labels(segments, seg_labels, seg_memberships)
    record["groups"] = groups
    record["segment_phase"] = np.asarray(segment_phase, dtype=np.int64)
    result = ClusterResult(new_labels, phase_memberships.astype(np.float32), phases.parameters)
    return build_cluster_labels_like(segments, result, record)


def _return_carved_pieces(phases, counts):
    """``phases`` with the pieces of each carved minor phase that its host's composition explains better given back (:func:`~stemfuse_hs.clustering.phases.carved_pieces_of_the_host`)."""
    from ..clustering.phases import carved_pieces_of_the_host

    record = phases.phase_merge
    minor = record["minor_phases"]
    first = phases.n_clusters - len(minor["host"])
    carved = [(first + i, int(host)) for i, host in enumerate(minor["host"])]
    labels = np.asarray(phases.data).reshape(-1).astype(np.int64)
    new_labels = carved_pieces_of_the_host(labels, carved, counts, np.asarray(phases.data).shape)
    return _apply_moves(phases, labels, new_labels, record, "carved_pieces_returned")


def _phase_compositions(labels, counts, n_phases, record):
    """Every phase's pooled window counts and which pairs of phases are one composition (the merge's own test).

    ``labels`` are the flat phase labels, ``counts`` every position's X-ray
    counts in the composition windows.
    """
    pooled = np.stack([counts[labels == p].sum(axis=0) for p in range(n_phases)])
    same = same_composition_matrix(
        pooled, np.arange(counts.shape[1]), alpha=record["alpha"], min_difference=record["min_composition_difference"]
    )
    return pooled, same


def _counts_log_likelihood(labels, counts, n_phases, record, shape):
    """Every position's log-likelihood of its window counts under every phase's pooled composition, ``shape + (n_phases,)``; and which phases are one composition.

    ``labels`` are the flat phase labels, ``counts`` every position's X-ray
    counts in the composition windows.
    """
    pooled, same = _phase_compositions(labels, counts, n_phases, record)
    shares = window_shares(pooled, np.arange(counts.shape[1]))
    return (counts @ np.log(shares).T).reshape(tuple(shape) + (n_phases,)), same


def _move_pieces(phases, dp, counts, show_progressbar, min_piece_size):
    """``phases`` with the pieces of segments that show another phase's lattice moved there (each one more segment).

    ``counts`` are every position's X-ray counts in the composition windows.
    """
    from ..clustering.phases import move_pieces_by_lattice, phase_spacings, segment_pieces

    record = phases.phase_merge
    segments = phases.segments
    shape = np.asarray(phases.data).shape
    n = int(np.prod(shape))
    labels = np.asarray(phases.data).reshape(n).astype(np.int64)
    seg_labels = np.asarray(segments.data).reshape(n).astype(np.int64).copy()
    record["pieces"] = {key: np.zeros(0, dtype=np.int64) for key in ("segment", "from_phase", "into_phase", "positions")}
    record["min_piece_size"] = int(min_piece_size)
    pieces, piece_segment = segment_pieces(seg_labels.reshape(shape), min_size=min_piece_size)
    n_phases = phases.n_clusters
    if piece_segment.size == 0 or n_phases < 2 or "direct_beam" not in record:
        return _with_record(phases, record)
    _, same = _phase_compositions(labels, counts, n_phases, record)
    if not (same & ~np.eye(n_phases, dtype=bool)).any():
        return _with_record(phases, record)  # no two phases of one composition: nothing a lattice could move
    flat_pieces = pieces.reshape(n)
    weights = np.zeros((n, piece_segment.size), dtype=np.float32)
    inside = flat_pieces >= 0
    weights[np.flatnonzero(inside), flat_pieces[inside]] = 1.0
    with dask_progress(show_progressbar):
        patterns, _ = cluster_statistics(dp.data, 2, weights, std=False)
    piece_spacings, _ = _pattern_spacings(np.nan_to_num(patterns), weights.sum(axis=0), record["direct_beam"])
    sizes = np.bincount(seg_labels[seg_labels >= 0], minlength=segments.n_clusters)
    segment_phase = list(np.asarray(record["segment_phase"]))
    spacing_table = record["spacings"]
    segment_spacings = [np.asarray(spacing_table.get(f"segment_{k}", np.zeros(0))) for k in range(segments.n_clusters)]
    judged = sizes >= record.get("min_judged_fraction", 0.02) * n
    tolerance = record["spacing_tolerance"]
    of_phase = phase_spacings(segment_spacings, segment_phase, judged, n_phases, tolerance)
    new_labels, moves = move_pieces_by_lattice(labels, flat_pieces, piece_spacings, of_phase, same, tolerance)
    if not moves:
        return _with_record(phases, record)
    phase_memberships = np.moveaxis(np.asarray(phases.memberships.data), 0, -1).reshape(n, -1).copy()
    seg_memberships = np.moveaxis(np.asarray(segments.memberships.data), 0, -1).reshape(n, -1).copy()
    groups = [list(g) for g in record["groups"]]
    for move in moves:
        rows = np.flatnonzero((flat_pieces == move["piece"]) & (labels == move["from"]))
        seg_memberships = _move_as_new_segment(
            rows, move["from"], move["into"], seg_labels, seg_memberships, phase_memberships, groups, segment_phase
        )
    record["pieces"] = {
        "segment": np.array([piece_segment[m["piece"]] for m in moves], dtype=np.int64),
        "from_phase": np.array([m["from"] for m in moves], dtype=np.int64),
        "into_phase": np.array([m["into"] for m in moves], dtype=np.int64),
        "positions": np.array([m["positions"] for m in moves], dtype=np.int64),
    }
    record["groups"] = groups
    record["segment_phase"] = np.asarray(segment_phase, dtype=np.int64)
    segments = relabel_cluster_labels(segments, seg_labels, seg_memberships)
    result = ClusterResult(new_labels, phase_memberships.astype(np.float32), phases.parameters)
    return build_cluster_labels_like(segments, result, record)


def _move_grains(phases, dp, counts, threshold, min_size, min_log_ratio, show_progressbar):
    """``phases`` with grains and patches moved by their pooled counts, then grains whose interior shows another lattice than their phase to the phase of their composition with it (or a new one).

    ``counts`` are every position's X-ray counts in the composition windows;
    ``min_log_ratio`` (None: no move by counts) the log-likelihood ratio
    a grain's pooled counts need to move to a phase of another composition.
    The positions moved from one phase into another become one more segment
    of it. Also returns the scan's patterns binned as the boundary step
    bins them (``(rows, cols, pixels)`` float32), or None when the step had
    no need to read them.
    """
    from ..clustering.grains import (
        MAX_WEAKLY_JUDGED_SPACINGS,
        UNDECIDED_SPLIT_SHARE,
        grains_with_loose_positions,
        loose_positions_to_grains,
        move_grains_by_composition,
        move_grains_by_lattice,
        move_patches_by_composition,
        phases_of_one_lattice,
        split_grains,
        split_undecided_grains,
        spot_images,
        verdicts_of_parts,
        verdicts_of_same_crystals,
        verdicts_of_weak_grains,
    )
    from ..clustering.phases import window_shares

    record = phases.phase_merge
    shape = np.asarray(phases.data).shape
    n = int(np.prod(shape))
    labels = np.asarray(phases.data).reshape(n).astype(np.int64)
    n_phases = phases.n_clusters
    record["grain_threshold"] = float(threshold)
    if min_log_ratio is not None:
        record["min_grain_log_ratio"] = float(min_log_ratio)
    for key in ("grains_by_composition", "grains"):
        record[key] = {name: np.zeros(0, dtype=np.int64) for name in ("from_phase", "into_phase", "positions")}
    record["joined_phases"] = {"phase": np.zeros(0, dtype=np.int64), "into": np.zeros(0, dtype=np.int64)}
    record["loose_positions"] = 0
    record["loose_positions_joined"] = 0
    record["weakly_judged_grains"] = 0
    record["same_crystal"] = {"positions": np.zeros(0, dtype=np.int64), "lattice": np.zeros(0, dtype=np.int64),
                              "similarity": np.zeros(0)}
    record["weak_grains_rejudged"] = {key: value.copy() for key, value in record["same_crystal"].items()}
    record["phase_lattice"] = np.full(n_phases, -1, dtype=np.int64)
    record["grain_lattices"] = []
    lattices = [record.get("scan_lattice"), record.get("second_lattice")]
    by_lattice = all(lattices) and "direct_beam" in record
    if n_phases < 2 or not (by_lattice or min_log_ratio is not None):
        return _with_record(phases, record), None
    pooled, same = _phase_compositions(labels, counts, n_phases, record)
    factor = _binning_factor(dp)
    with dask_progress(show_progressbar):
        binned = _binned_band(dp.data, slice(None), factor)
    # Split the phases', not the segments', connected pieces: segments that
    # interleave (published poly_four_phases seed 0: three segments over
    # the same grains) leave pieces too small to be grains (29 % of the
    # positions in one against 89 %).
    if min_log_ratio is not None:
        # Pooled counts decide for smaller grains than a mean pattern's
        # spacings do: split apart, keeping parts of a minor particle's size.
        small_grains, _ = split_grains(binned, labels.reshape(shape), threshold=threshold, min_size=MIN_COMPOSITION_GRAIN_SIZE)
        shares = window_shares(pooled, np.arange(counts.shape[1]))
        moved = move_grains_by_composition(labels, small_grains.reshape(n), counts, shares, ~same, min_log_ratio)
        # A particle the split left inside a grain of its host moves as a
        # patch of positions whose neighbourhoods count like it.
        moved = move_patches_by_composition(
            moved, counts, shares, ~same, min_log_ratio, shape, min_size=MIN_COMPOSITION_GRAIN_SIZE
        )
        if (moved != labels).any():
            phases = _apply_moves(phases, labels, moved, record, "grains_by_composition")
            labels = moved
            _, same = _phase_compositions(labels, counts, n_phases, record)
    if not by_lattice:
        return _with_record(phases, record), binned  # one lattice (or none) indexed: nothing to tell grains apart by
    grains, _ = split_grains(binned, labels.reshape(shape), threshold=threshold, min_size=min_size)
    if grains.max() < 0:
        return _with_record(phases, record), binned
    verdicts, patterns, n_spacings, lattices = _grain_verdicts(
        grains, dp, record["direct_beam"], lattices, show_progressbar, refine=True
    )
    record["grain_lattices"] = [_lattice_record(lattice) for lattice in lattices]
    # A grain judged on a single spacing may pool two crystals: split too.
    weak = (verdicts >= 0) & (n_spacings <= MAX_WEAKLY_JUDGED_SPACINGS)
    record["weakly_judged_grains"] = int(weak.sum())
    parts = split_undecided_grains(
        binned, grains, np.where(weak, -1, verdicts), threshold=threshold * UNDECIDED_SPLIT_SHARE, min_size=min_size
    )
    if parts.max() >= verdicts.size:
        # Only the new parts are judged (one more pass over dp).
        new_parts = np.where(parts >= verdicts.size, parts - verdicts.size, -1)
        part_verdicts, part_patterns, part_spacings, _ = _grain_verdicts(
            new_parts, dp, record["direct_beam"], lattices, show_progressbar
        )
        part_verdicts = verdicts_of_parts(parts, grains, part_verdicts, verdicts, weak)
        verdicts = np.concatenate([verdicts, part_verdicts])
        patterns = np.concatenate([patterns, part_patterns])
        n_spacings = np.concatenate([n_spacings, part_spacings])
        grains = parts
    images = spot_images(patterns, record["direct_beam"])
    sizes = np.bincount(grains.reshape(n)[grains.reshape(n) >= 0], minlength=verdicts.size)
    # A grain judged on one spacing that shows the spots of a neighbouring
    # part of its crystal judged on more is of that part's lattice.
    rejudged, _, weak_similarity = verdicts_of_weak_grains(images, grains.reshape(shape), verdicts, n_spacings)
    changed = np.flatnonzero(rejudged != verdicts)
    record["weak_grains_rejudged"] = {
        "positions": sizes[changed].astype(np.int64), "lattice": rejudged[changed].astype(np.int64),
        "similarity": weak_similarity[changed].astype(np.float64),
    }
    verdicts = rejudged
    judged = verdicts >= 0
    verdicts, _, similarity = verdicts_of_same_crystals(images, grains.reshape(shape), verdicts)
    # Undecided grains that show a judged neighbour's spots are of its crystal.
    took = np.flatnonzero(~judged & (verdicts >= 0))
    record["same_crystal"] = {
        "positions": sizes[took].astype(np.int64), "lattice": verdicts[took].astype(np.int64),
        "similarity": similarity[took].astype(np.float64),
    }
    # Judged, the grains take in the positions left out of them (specks of
    # another phase inside a crystal) that the patterns put in them.
    extended = grains_with_loose_positions(binned, labels.reshape(shape), grains, same, threshold=threshold, min_size=min_size)
    record["loose_positions"] = int(((extended >= 0) & (grains < 0)).sum())
    grains = extended.reshape(n)
    new_labels, phase_lattice, _ = move_grains_by_lattice(labels, grains, verdicts, same)
    phases = _with_empty_phases(phases, record, int(new_labels.max()) + 1)
    # Phases the merge kept apart for the other lattice's grains in them
    # are, once those left, one phase: joined, the grains that had two
    # phases of their lattice to go to move too.
    _, same = _phase_compositions(new_labels, counts, phases.n_clusters, record)
    number = phases_of_one_lattice(new_labels, grains, verdicts, same)
    shared_number = np.bincount(number)[number] > 1
    record["joined_phases"] = {
        "phase": np.flatnonzero(shared_number).astype(np.int64),
        "into": number[shared_number].astype(np.int64),
    }
    if record["joined_phases"]["phase"].size:
        phases = _join_phases(phases, number, record)
        labels = np.where(labels >= 0, number[np.maximum(labels, 0)], -1)
        joined = np.where(new_labels >= 0, number[np.maximum(new_labels, 0)], -1)
        n_joined = int(joined.max()) + 1
        _, same = _phase_compositions(joined, counts, n_joined, record)
        new_labels, phase_lattice, _ = move_grains_by_lattice(joined, grains, verdicts, same)
        phases = _with_empty_phases(phases, record, int(new_labels.max()) + 1)
    record["phase_lattice"] = np.concatenate(
        [phase_lattice, np.full(phases.n_clusters - phase_lattice.size, -1)]
    ).astype(np.int64)
    # The positions in no grain keep the clustering's phase while the grains
    # around them moved: each takes the phase of the grain nearby that
    # fills most of its probe, unless its counts speak against it.
    log_likelihood, same = _counts_log_likelihood(new_labels, counts, phases.n_clusters, record, shape)
    joined_loose = loose_positions_to_grains(
        binned, new_labels.reshape(shape), grains.reshape(shape), log_likelihood=log_likelihood, same_composition=same
    ).reshape(n)
    record["loose_positions_joined"] = int((joined_loose != new_labels).sum())
    return _apply_moves(phases, labels, joined_loose, record, "grains"), binned


def _with_empty_phases(phases, record, n_phases):
    """``phases`` with empty phases added up to ``n_phases``: new phases (grains of a lattice no phase of their composition had) start empty, and the moves fill them."""
    added = n_phases - phases.n_clusters
    if added <= 0:
        return phases
    n = phases.data.size
    labels = np.asarray(phases.data).reshape(n).astype(np.int64)
    memberships = np.moveaxis(np.asarray(phases.memberships.data), 0, -1).reshape(n, -1).astype(np.float32)
    memberships = np.column_stack([memberships, np.zeros((n, added), np.float32)])
    record["groups"] = [list(g) for g in record["groups"]] + [[] for _ in range(added)]
    return build_cluster_labels_like(phases.segments, ClusterResult(labels, memberships, phases.parameters), record)


def _join_phases(phases, number, record):
    """``phases`` with every phase renumbered to ``number[phase]``: phases of one number become one, their segments and memberships pooled."""
    n = phases.data.size
    labels = np.asarray(phases.data).reshape(n).astype(np.int64)
    n_joined = int(number.max()) + 1
    memberships = np.moveaxis(np.asarray(phases.memberships.data), 0, -1).reshape(n, -1).astype(np.float32)
    pooled = np.zeros((n, n_joined), np.float32)
    groups = [[] for _ in range(n_joined)]
    for phase, into in enumerate(number):
        pooled[:, into] += memberships[:, phase]
        groups[into] += list(record["groups"][phase])
    record["groups"] = groups
    record["segment_phase"] = number[np.asarray(record["segment_phase"], dtype=np.int64)]
    joined = np.where(labels >= 0, number[np.maximum(labels, 0)], -1)
    return build_cluster_labels_like(phases.segments, ClusterResult(joined, pooled, phases.parameters), record)


def _grain_verdicts(grains, dp, direct_beam, lattices, show_progressbar, refine=False):
    """The lattice (index into ``lattices``, -1 undecided) every grain's interior shows (:func:`~stemfuse_hs.clustering.grains.grain_lattices`), the interiors' mean patterns, how many spot spacings each shows, and the lattices.

    With ``refine``, the lattices are first indexed again on the grains when
    the grains' pair explains more of them
    (:func:`~stemfuse_hs.clustering.grains.lattices_indexed_on_grains`), then
    refitted on the grains they are judged in
    (:func:`~stemfuse_hs.clustering.grains.lattices_refined_on_grains`)
    and the grains judged again: the lattices returned are the ones used.
    """
    from ..clustering.grains import (
        grain_interiors,
        grain_lattices,
        lattices_indexed_on_grains,
        lattices_refined_on_grains,
    )

    weights = grain_interiors(grains)
    with dask_progress(show_progressbar):
        patterns, _ = cluster_statistics(dp.data, 2, weights, std=False)
    patterns = np.nan_to_num(patterns)
    # An off-zone grain's disks are faint; the scan's indexing, which
    # fainter spots would offer chance lattices, keeps a pixel's noise.
    spacings, _, spots = _pattern_spacings(
        patterns, weights.sum(axis=0), direct_beam, friedel_centre=True, with_spots=True, faint_disks=True
    )
    if refine:
        lattices, _ = lattices_indexed_on_grains(spacings, lattices, spots=spots)
    verdicts = grain_lattices(spacings, lattices, spots=spots)
    if refine:
        lattices = lattices_refined_on_grains(spacings, lattices, verdicts)
        if any("refined_on" in lattice for lattice in lattices):
            verdicts = grain_lattices(spacings, lattices, spots=spots)
    return verdicts, patterns, np.array([np.size(v) for v in spacings], dtype=np.int64), lattices


def _move_positions(phases, counts, min_log_ratio):
    """``phases`` with every position that its own counts place in a phase of another composition moved there.

    ``counts`` are every position's X-ray counts in the composition windows.
    The positions moved from one phase into another become one more segment
    of it.
    """
    record = phases.phase_merge
    n = phases.data.size
    labels = np.asarray(phases.data).reshape(n).astype(np.int64)
    n_phases = phases.n_clusters
    record["min_position_log_ratio"] = float(min_log_ratio)
    record["positions_moved"] = {key: np.zeros(0, dtype=np.int64) for key in ("from_phase", "into_phase", "positions")}
    if n_phases < 2:
        return _with_record(phases, record)
    window_index = np.arange(counts.shape[1])
    pooled, same = _phase_compositions(labels, counts, n_phases, record)
    other_composition = ~same
    new_labels = reassign_by_composition(
        counts, labels, window_shares(pooled, window_index), other_composition, min_log_ratio, pool_width=1
    )
    return _apply_moves(phases, labels, new_labels, record, "positions_moved")


def _apply_moves(phases, labels, new_labels, record, key):
    """``phases`` with the flat ``labels`` changed to ``new_labels``, the positions moved between each pair of phases one more segment.

    ``record[key]`` lists the pairs (``from_phase``, ``into_phase``) and
    how many positions each moved.
    """
    segments = phases.segments
    n = labels.size
    pairs = sorted({(int(a), int(b)) for a, b in zip(labels[new_labels != labels], new_labels[new_labels != labels])})
    phase_memberships = np.moveaxis(np.asarray(phases.memberships.data), 0, -1).reshape(n, -1).copy()
    seg_labels = np.asarray(segments.data).reshape(n).astype(np.int64).copy()
    seg_memberships = np.moveaxis(np.asarray(segments.memberships.data), 0, -1).reshape(n, -1).copy()
    groups = [list(g) for g in record["groups"]]
    segment_phase = list(np.asarray(record["segment_phase"]))
    sizes = []
    for source, target in pairs:
        rows = np.flatnonzero((labels == source) & (new_labels == target))
        sizes.append(rows.size)
        seg_memberships = _move_as_new_segment(
            rows, source, target, seg_labels, seg_memberships, phase_memberships, groups, segment_phase
        )
    record[key] = {
        "from_phase": np.array([a for a, _ in pairs], dtype=np.int64),
        "into_phase": np.array([b for _, b in pairs], dtype=np.int64),
        "positions": np.array(sizes, dtype=np.int64),
    }
    if not pairs:
        return _with_record(phases, record)
    record["groups"] = groups
    record["segment_phase"] = np.asarray(segment_phase, dtype=np.int64)
    segments = relabel_cluster_labels(segments, seg_labels, seg_memberships)
    result = ClusterResult(new_labels, phase_memberships.astype(np.float32), phases.parameters)
    return build_cluster_labels_like(segments, result, record)


def _unmix(phases, counts, max_share):
    """``phases`` with the positions at the edge of small phases given to the phase that fills most of their probe.

    ``counts`` are every position's X-ray counts in the composition windows.
    The positions moved each way become one more segment of the phase they
    join.
    """
    from ..clustering.unmixing import unmix_small_phases

    record = phases.phase_merge
    shape = np.asarray(phases.data).shape
    n = int(np.prod(shape))
    labels = np.asarray(phases.data).reshape(shape).astype(np.int64)
    record["max_unmixed_share"] = float(max_share)
    n_phases = phases.n_clusters
    flat = labels.reshape(n)
    _, same = _phase_compositions(flat, counts, n_phases, record)
    new_labels, moves = unmix_small_phases(labels, counts, max_share=max_share, same_composition=same)
    new_labels = new_labels.reshape(n)
    labels = labels.reshape(n)
    record["unmixed"] = {
        "phase": np.array([m["phase"] for m in moves], dtype=np.int64),
        "host": np.array([m["host"] for m in moves], dtype=np.int64),
        "moved_out": np.array([m["out"].size for m in moves], dtype=np.int64),
        "moved_in": np.array([m["in"].size for m in moves], dtype=np.int64),
        "host_share": np.array([m["host_share"] for m in moves], dtype=np.float64),
        "own_share": np.array([m["own_share"] for m in moves], dtype=np.float64),
        "halo": np.array([m["halo"] for m in moves], dtype=np.float64),
        "particles": np.array([m["particles"] for m in moves], dtype=np.int64),
    }
    if not (new_labels != labels).any():
        return _with_record(phases, record)
    segments = phases.segments
    phase_memberships = np.moveaxis(np.asarray(phases.memberships.data), 0, -1).reshape(n, -1).copy()
    seg_labels = np.asarray(segments.data).reshape(n).astype(np.int64).copy()
    seg_memberships = np.moveaxis(np.asarray(segments.memberships.data), 0, -1).reshape(n, -1).copy()
    groups = [list(g) for g in record["groups"]]
    segment_phase = list(np.asarray(record["segment_phase"]))
    for move in moves:
        for rows, source, target in ((move["out"], move["phase"], move["host"]), (move["in"], move["host"], move["phase"])):
            if rows.size:
                seg_memberships = _move_as_new_segment(
                    rows, source, target, seg_labels, seg_memberships, phase_memberships, groups, segment_phase
                )
    record["groups"] = groups
    record["segment_phase"] = np.asarray(segment_phase, dtype=np.int64)
    segments = relabel_cluster_labels(segments, seg_labels, seg_memberships)
    result = ClusterResult(new_labels, phase_memberships.astype(np.float32), phases.parameters)
    return build_cluster_labels_like(segments, result, record)


def _binning_factor(dp):
    """Pixels a side summed into one bin, so that a pattern is about ``BOUNDARY_BINNED_SIDE`` bins a side.

    One place for the grain and boundary steps: the boundary step cuts its
    bands from the grain step's binned patterns when it ran.
    """
    return max(1, min(dp.data.shape[-2:]) // BOUNDARY_BINNED_SIDE)


def _binned_band(data, rows, factor):
    """Rows ``rows`` (a slice) of a 4D-STEM array, patterns summed in ``factor`` x ``factor`` bins and flattened (float32)."""
    from .._arrays import is_lazy_array

    band = data[rows]
    height, width = band.shape[-2:]
    height, width = height // factor * factor, width // factor * factor
    band = band[..., :height, :width]
    if is_lazy_array(band):
        import dask.array as da

        # coarsen needs chunks that hold whole bins: the pattern in one chunk.
        band = band.rechunk({2: -1, 3: -1}).astype(np.float32)
        band = da.coarsen(np.sum, band, {2: factor, 3: factor}).compute()
    else:
        shape = band.shape[:2] + (height // factor, factor, width // factor, factor)
        band = np.asarray(band).reshape(shape).sum(axis=(3, 5), dtype=np.float32)
    return np.asarray(band, dtype=np.float32).reshape(band.shape[:2] + (-1,))


def _band_rows(row_bytes, radius):
    """Rows of the scan judged per band: ``BOUNDARY_BAND_BYTES`` of binned patterns, halo included.

    Each band reads ``radius`` rows either side again, so it holds at least
    four times as many rows of its own.
    """
    return max(8 * radius, BOUNDARY_BAND_BYTES // row_bytes - 2 * radius)


def _refine_boundaries(phases, segment_labels, dp, counts, margin, show_progressbar, binned=None):
    """``phases`` with the positions at phase boundaries given to the phase their pattern is mostly of.

    ``segment_labels`` is the segment map the sides' patterns are pooled
    by (the clustering's own, before any move); ``counts`` every position's
    X-ray counts in the composition windows, which must not find the side
    chosen less likely than the position's own phase. The scan is read in bands
    of rows with ``DEFAULT_BOUNDARY_RADIUS`` rows either side, so a lazy
    signal is never loaded whole; every position is judged on the same
    neighbourhood either way (:func:`~stemfuse_hs.clustering.boundaries.refine_boundaries`).
    ``binned``, the whole scan's binned patterns when an earlier step read
    them, is cut into the same bands instead of reading ``dp`` again.
    """
    from tqdm.auto import tqdm

    from .._progress import resolve_show_progressbar
    from ..clustering.boundaries import DEFAULT_BOUNDARY_RADIUS, boundary_positions, refine_boundaries

    record = phases.phase_merge
    shape = np.asarray(phases.data).shape
    labels = np.asarray(phases.data).reshape(shape).astype(np.int64)
    segment_labels = np.asarray(segment_labels).reshape(shape).astype(np.int64)
    record["boundary_margin"] = float(margin)
    unmixed = record.get("unmixed", {})
    excluded = list(zip(np.asarray(unmixed.get("phase", [])).tolist(), np.asarray(unmixed.get("host", [])).tolist()))
    edge = boundary_positions(labels)
    n_phases = phases.n_clusters
    flat = labels.reshape(-1)
    log_likelihood, same = _counts_log_likelihood(flat, counts, n_phases, record, shape)
    radius = DEFAULT_BOUNDARY_RADIUS
    factor = _binning_factor(dp)
    binned_shape = (dp.data.shape[-2] // factor, dp.data.shape[-1] // factor)
    binned_pixels = binned_shape[0] * binned_shape[1]
    band_rows = _band_rows(shape[1] * binned_pixels * 4, radius)
    starts = [r for r in range(0, shape[0], band_rows) if edge[r:r + band_rows].any()]
    new_labels = labels.copy()
    bar = tqdm(total=len(starts), desc="Boundaries", unit="band", disable=not resolve_show_progressbar(show_progressbar))
    with bar:
        for start in starts:
            stop = min(shape[0], start + band_rows)
            lo, hi = max(0, start - radius), min(shape[0], stop + radius)
            judged = np.zeros((hi - lo, shape[1]), dtype=bool)
            judged[start - lo:stop - lo] = True
            patterns = binned[lo:hi] if binned is not None else _binned_band(dp.data, slice(lo, hi), factor)
            _, moves = refine_boundaries(
                patterns, labels[lo:hi], segment_labels[lo:hi], judged=judged, excluded_pairs=excluded,
                log_likelihood=log_likelihood[lo:hi], same_composition=same, margin=margin, radius=radius,
                pattern_shape=binned_shape,
            )
            new_labels[moves[:, 0] + lo, moves[:, 1]] = moves[:, 3]
            bar.update()
    n = labels.size
    return _apply_moves(phases, labels.reshape(n), new_labels.reshape(n), record, "boundaries")


def _with_record(phases, record):
    """``phases`` with its merge record replaced (nothing moved)."""
    result = ClusterResult(
        np.asarray(phases.data).reshape(-1).astype(np.int64),
        np.moveaxis(np.asarray(phases.memberships.data), 0, -1).reshape(phases.data.size, -1).astype(np.float32),
        phases.parameters,
    )
    return build_cluster_labels_like(phases.segments, result, record)
