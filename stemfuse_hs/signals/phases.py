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
from .._validation import check_fraction, check_optional_bool, check_real
from ..clustering.cluster import ClusterResult
from ..clustering.means import cluster_statistics, cluster_weights
from ..clustering.phases import (
    DEFAULT_ALPHA,
    DEFAULT_MIN_COMPOSITION_DIFFERENCE,
    DEFAULT_MIN_LATTICE_OVERLAP,
    composition_windows,
    merge_phases as merge_segments,
    ring_spacings,
)

__all__ = ["DEFAULT_GRID_LINES", "map_phases", "merge_phases"]

#: Lines of a Cu grid: their counts do not scale with the specimen's
#: thickness, so they would make two thicknesses of one phase look like two
#: compositions. Pass ``exclude_lines=()`` for a specimen that holds Cu.
DEFAULT_GRID_LINES = ("Cu_Ka", "Cu_Kb", "Cu_La")

#: Positions whose largest membership is below this do not enter the
#: segment statistics (boundaries mix two segments' patterns and spectra).
SEGMENT_MIN_MEMBERSHIP = 0.5


def _energies_kev(eds):
    axis = eds.axes_manager.signal_axes[0]
    units = str(getattr(axis, "units", "") or "").strip()
    energies = np.asarray(axis.axis, dtype=np.float64)
    if units == "eV":
        return energies / 1000.0
    if units != "keV":
        raise ValueError(
            f"merge_phases: the spectra's energy axis has units {units!r}; X-ray line windows need 'keV' or 'eV'. "
            "Calibrate it (e.g. eds.axes_manager.signal_axes[0].units = 'keV')."
        )
    return energies


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
    spacing_tolerance=None,
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
        that counts as a different composition.
    min_lattice_overlap : float, default 0.6
        Share of spot spacings two segments must share to be one lattice.
    spacing_tolerance : float, optional
        Spot spacings closer than this (pixels) are the same; by default a
        quarter pixel or a tenth of the direct beam's radius, whichever is larger.
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
    from .labels import ClusterLabels, build_cluster_labels_like

    if not isinstance(labels, ClusterLabels):
        raise TypeError(f"merge_phases expects a ClusterLabels map, got {type(labels).__name__}.")
    if dp is None and eds is None:
        raise ValueError("merge_phases needs dp, eds or both: the segments' patterns or spectra to compare.")
    if isinstance(exclude_lines, str):
        exclude_lines = [exclude_lines]
    alpha = check_fraction("alpha", alpha)
    min_composition_difference = check_real("min_composition_difference", min_composition_difference, minimum=0)
    min_lattice_overlap = check_fraction("min_lattice_overlap", min_lattice_overlap, closed_low=True)
    if spacing_tolerance is not None:
        spacing_tolerance = check_real("spacing_tolerance", spacing_tolerance, minimum=0, strict_minimum=True)
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
        from ..features.variance import line_windows

        energies = _energies_kev(eds)
        resolution = eds.metadata.get_item("Acquisition_instrument.TEM.Detector.EDS.energy_resolution_MnKa", 130.0)
        from ..features.variance import fwhm_at_energy

        windows = composition_windows(
            energies, fwhm_at_energy(5.8987, float(resolution)), exclude=line_windows(list(exclude_lines), resolution)
        )

    k = labels.n_clusters
    n = int(np.prod(labels.data.shape))
    memberships = np.moveaxis(np.asarray(labels.memberships.data), 0, -1).reshape(n, -1)
    flat_labels = np.asarray(labels.data).reshape(n).astype(np.int64)
    weights = cluster_weights(flat_labels, memberships, "hard", SEGMENT_MIN_MEMBERSHIP)
    sizes = weights.sum(axis=0)
    spectra = spacings = None
    tolerance = spacing_tolerance
    with dask_progress(show_progressbar):
        if eds is not None and k:
            mean, _ = cluster_statistics(eds.data, 1, weights)
            spectra = np.nan_to_num(mean.astype(np.float64)) * sizes[:, None]
        if dp is not None and k:
            from ..features.sdt import find_direct_beam

            patterns, _ = cluster_statistics(dp.data, 2, weights)
            spacings, radii = [], []
            for pattern, size in zip(patterns, sizes):
                if size == 0:
                    spacings.append(np.zeros(0))
                    continue
                centre, beam_radius = find_direct_beam(pattern)
                radii.append(beam_radius)
                found, _ = ring_spacings(
                    pattern, centre, inner_radius=beam_radius + 1.0, n_positions=size, disk_radius=beam_radius / 1.25
                )
                spacings.append(found)
            if tolerance is None:
                tolerance = max(0.25, 0.1 * float(np.median(radii))) if radii else 0.25
    if k == 0:
        raise ValueError("merge_phases: the label map has no clusters (every position is noise).")
    merge = merge_segments(
        spectra,
        windows if eds is not None else None,
        spacings,
        tolerance=tolerance if tolerance is not None else 0.25,
        alpha=alpha,
        min_composition_difference=min_composition_difference,
        min_lattice_overlap=min_lattice_overlap,
    )
    phase_memberships = np.stack([memberships[:, g].sum(axis=1) for g in merge.groups], axis=1).astype(np.float32)
    segment_phase = merge.segment_phase()
    phase_labels = np.where(flat_labels >= 0, segment_phase[np.maximum(flat_labels, 0)], -1)
    parameters = dict(labels.parameters)
    record = {
        "groups": [list(map(int, g)) for g in merge.groups],
        "segment_phase": segment_phase,
        "alpha": alpha,
        "min_composition_difference": min_composition_difference,
        "min_lattice_overlap": min_lattice_overlap,
        "spacing_tolerance": float(tolerance if tolerance is not None else 0.25),
        "exclude_lines": list(exclude_lines),
        "used": [name for name, s in (("eds", eds), ("dp", dp)) if s is not None],
        "tests": _tests_table(merge.tests),
        "spacings": _spacings_table(merge.spacings),
    }
    result = ClusterResult(phase_labels.astype(np.int64), phase_memberships, parameters)
    phases = build_cluster_labels_like(labels, result, record)
    return phases


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
        "lattice_overlap": np.array([t["lattice_overlap"] for t in tests], dtype=np.float64),
        "same_composition": np.array([t["same_composition"] for t in tests], dtype=bool),
        "same_lattice": np.array([t["same_lattice"] for t in tests], dtype=bool),
        "merged": np.array([t["merged"] for t in tests], dtype=bool),
    }


def _spacings_table(spacings):
    return {f"segment_{i}": np.asarray(s, dtype=np.float64) for i, s in enumerate(spacings)}


def map_phases(dp, eds, *, random_state=None, fuse_kwargs=None, cluster_kwargs=None, show_progressbar=None, **merge_kwargs):
    """From raw 4D-STEM and EDS signals to a phase map with its segment map.

    Default features (:func:`~stemfuse_hs.sdt_features`,
    :func:`~stemfuse_hs.variance_features`), :func:`~stemfuse_hs.fuse`,
    :meth:`~stemfuse_hs.signals.features.FusedSTEMSignal.cluster` keeping
    every HDBSCAN leaf (``merge_threshold=0``: the segments), then
    :func:`merge_phases` on the raw signals.

    Parameters
    ----------
    dp, eds : hyperspy signals
        The two modalities of one scan (raw counts), eager or lazy.
    random_state : int, optional
    fuse_kwargs, cluster_kwargs : dict, optional
        Passed to :func:`~stemfuse_hs.fuse` and ``cluster``.
    show_progressbar : bool, optional
    **merge_kwargs
        Passed to :func:`merge_phases`.

    Returns
    -------
    ClusterLabels
        The phase map; ``.segments`` is the segment (grain) map.

    Examples
    --------
    >>> import stemfuse_hs
    >>> scan = stemfuse_hs.data.synthetic_scan("structure_only", size="tiny", seed=1)
    >>> phases = stemfuse_hs.map_phases(scan.dp, scan.eds, random_state=1)  # doctest: +SKIP
    >>> phases.n_clusters  # doctest: +SKIP
    2
    """
    from .extract import sdt_features, variance_features
    from .fuse import fuse

    cluster_kwargs = dict(cluster_kwargs or {})
    cluster_kwargs.setdefault("merge_threshold", 0.0)
    fused = fuse(sdt_features(dp), variance_features(eds), **(fuse_kwargs or {}))
    segments = fused.cluster(random_state=random_state, show_progressbar=show_progressbar, **cluster_kwargs)
    return merge_phases(segments, dp, eds, show_progressbar=show_progressbar, **merge_kwargs)
