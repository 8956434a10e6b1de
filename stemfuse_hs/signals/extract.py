"""Feature extraction on HyperSpy signals: translate, call the array core, translate back.

These functions accept any HyperSpy signal of the right dimension (pyxem's
``Diffraction2D``, exspy's ``EDSTEMSpectrum``, a plain ``Signal2D`` ...), eager
or lazy, and never modify it.
"""

import inspect
import textwrap

import numpy as np

from .._progress import dask_progress
from .._signature import keywords_with_defaults
from .._validation import check_optional_bool
from .._docstrings import fill_doc, parameter_entries
from ..features.annular import annular
from ..features.binary import binarize
from ..features.cepstrum import cepstrum
from ..features.lines import element_lines, line_intensities
from ..features.radial import radial
from ..features.sdt import sdt
from ..features.variance import DEFAULT_RESOLUTION_MNKA, validate_windows, variance_threshold
from ._axes import (
    binned_axis,
    build_features_signal,
    build_signal,
    check_signal,
    index_axis,
    navigation_axes_dicts,
    signal_axes_dicts,
    signal_title,
)

__all__ = [
    "sdt_features",
    "variance_features",
    "radial_features",
    "annular_features",
    "cepstrum_features",
    "binary_features",
    "line_features",
]


#: What the input of each signal dimension holds, recorded as
#: ``metadata.Features.modality``: :func:`~stemfuse_hs.fuse` names and
#: weights its blocks by it.
MODALITIES = {2: "diffraction", 1: "eds"}


# --- The prologue and epilogue every extractor shares ------------------------


# Each extractor calls its array core itself, under ``dask_progress``: a
# wrapper frame in between would make the cores' warnings (stacklevel=3)
# point into this module instead of at the user's call. For the same reason
# ``takes_core_options`` only sets the signature and the docstring: it adds
# no frame.

#: What every ``nan_policy`` entry adds at signal level.
_SIGNAL_NAN_POLICY = (
    "The excluded positions are recorded in ``metadata.Features.excluded_positions``, which :func:`fuse` and "
    ":meth:`~stemfuse_hs.signals.features.FusedSTEMSignal.cluster` honour (they get label -1). Lazy data stays "
    "lazy: only the small per-position mask is computed."
)


def takes_core_options(core, signal_dimension, *, omit=(), replace=None):
    """Give a signal extractor ``f(signal, *, ..., show_progressbar=None, **options)`` its array core's keywords.

    The keyword-only parameters of ``core`` (less ``omit``, which the
    extractor takes from the signal, and less ``f``'s own keywords) become
    ``options``: ``f.__signature__`` lists them with the core's defaults,
    after ``f``'s own keywords and before ``show_progressbar``, and the line
    ``%(core_parameters)s`` of ``f``'s docstring becomes the core's entries
    for them (``replace`` maps a name to its signal-level entry; every
    ``nan_policy`` entry gains the signal-level sentence). The core is thus
    the one home of these parameters' defaults and prose;
    :func:`_checked_options` checks the keywords of a call against the
    signature and fills in the defaults.
    """
    replace = replace or {}

    def decorate(function):
        own = inspect.signature(function).parameters
        keyword_only = inspect.Parameter.KEYWORD_ONLY
        forwarded = [
            p for name, p in inspect.signature(core).parameters.items()
            if p.kind is keyword_only and name not in omit and name not in own
        ]
        own_keywords = [p for name, p in own.items() if p.kind is keyword_only and name != "show_progressbar"]
        function.__signature__ = inspect.Signature(
            [own["signal"], *own_keywords, *forwarded, own["show_progressbar"]]
        )
        function.core_options = tuple(p.name for p in forwarded)
        function.signal_dimension = signal_dimension
        if function.__doc__:
            entries = []
            for names, text in parameter_entries(core.__doc__):
                if not set(names) & set(function.core_options):
                    continue
                text = replace.get(names[0], text)
                if "nan_policy" in names:
                    text += "\n" + textwrap.fill(
                        _SIGNAL_NAN_POLICY, 76, initial_indent=" " * 8, subsequent_indent=" " * 8,
                        break_on_hyphens=False,
                    )
                entries.append(text)
            # Before fill_doc, which refuses names it does not know.
            function.__doc__ = function.__doc__.replace("%(core_parameters)s", "\n    ".join(entries))
        return function

    return decorate


def _checked_options(signal, function, show_progressbar, options):
    """Refuse a bad input or keyword of a call of ``function``; return its core options with the defaults filled in.

    The input must be a scan of ``function.signal_dimension`` with two
    positions or more; an unknown keyword is refused as Python refuses it.
    """
    check_signal(signal, function.signal_dimension, function.__name__, min_positions=2)
    check_optional_bool("show_progressbar", show_progressbar)
    return keywords_with_defaults(function, options, function.core_options)


def _feature_output(signal, result, axis, extractor, title, extra, *, parameters=None, excluded=None):
    """The output signal of an extractor, through the one factory, with its ``metadata.Features``.

    Navigation axes are the input's, ``axis`` the feature axis; the
    metadata records the extractor, the input's modality, the source title,
    the parameters (``result.parameters`` unless given), the excluded
    positions (``result.excluded`` unless given) and the extractor's own
    ``extra`` items.
    """
    source = signal_title(signal)
    features = build_features_signal(
        result.features, navigation_axes_dicts(signal) + [axis], title=f"{title} of {source}".strip()
    )
    metadata = {
        "extractor": extractor,
        "modality": MODALITIES[signal.axes_manager.signal_dimension],
        "source_title": source,
        "parameters": result.parameters if parameters is None else parameters,
        "excluded_positions": np.asarray(result.excluded if excluded is None else excluded, dtype=bool),
    }
    metadata.update(extra)
    features.metadata.set_item("Features", metadata)
    return features


def _detector_signal(data, axes, title):
    from hyperspy.signals import Signal2D

    return build_signal(Signal2D, None, np.asarray(data), axes, title=title)


def _spectrum_signal(values, axes, title):
    from hyperspy.signals import Signal1D

    return build_signal(Signal1D, None, np.asarray(values), axes, title=title)


@fill_doc
@takes_core_options(sdt, 2)
def sdt_features(signal, *, show_progressbar=None, **options):
    """Diffraction features by standard-deviation thresholding (SDT).

    Bins the detector, computes every pixel's standard deviation over the
    scan, excludes a disk around the direct beam and keeps the ``fraction``
    of the remaining pixels that vary most; their ``log1p`` intensities at
    every position are the features.

    Parameters
    ----------
    %(signal_2d)s
    %(core_parameters)s
    %(show_progressbar)s

    Returns
    -------
    FusedSTEMSignal
        ``(*scan | n_features)``, lazy if ``signal`` is. Navigation axes are
        the input's; the signal axis is "feature". ``metadata.Features``
        holds the parameters and, as plottable signals on the binned
        detector grid, ``std_map``, ``beam_mask`` and ``selected_mask``;
        ``excluded_positions`` is a navigation-shaped boolean array (array
        order), all False unless ``nan_policy="exclude"`` left some out.

    Raises
    ------
    MemoryError
        If the signal is in memory and its features would not fit in the
        memory available (load it with ``lazy=True`` instead).

    Warns
    -----
    UserWarning
        For hot pixels in the mean pattern (they could be taken for the
        direct beam), and when no selected pixel varies across the scan.

    See Also
    --------
    variance_features, fuse

    Examples
    --------
    >>> import stemfuse_hs
    >>> scan = stemfuse_hs.data.synthetic_scan("structure_only", size="tiny")
    >>> features = stemfuse_hs.sdt_features(scan.dp, fraction=0.3)
    >>> features.axes_manager.navigation_shape == scan.dp.axes_manager.navigation_shape
    True
    >>> features.metadata.Features.std_map.plot()  # doctest: +SKIP
    """
    options = _checked_options(signal, sdt_features, show_progressbar, options)
    with dask_progress(show_progressbar):
        result = sdt(signal.data, **options)
    detector = _binned_detector_axes(signal, result.parameters["binning"], result.std_map.shape)
    extra = {
        "pixel_indices": result.pixel_indices,
        "std_map": _detector_signal(result.std_map, detector, "Standard deviation map"),
        "mean_pattern": _detector_signal(result.mean_pattern, detector, "Mean pattern"),
        "beam_mask": _detector_signal(result.beam_mask.astype(np.uint8), detector, "Direct-beam mask"),
        "selected_mask": _detector_signal(result.selected_mask.astype(np.uint8), detector, "Selected pixels"),
    }
    axis = index_axis("feature", result.features.shape[-1])
    return _feature_output(signal, result, axis, "sdt", "SDT features", extra)


def _energy_resolution(signal):
    for path in (
        "Acquisition_instrument.TEM.Detector.EDS.energy_resolution_MnKa",
        "Acquisition_instrument.SEM.Detector.EDS.energy_resolution_MnKa",
    ):
        value = signal.metadata.get_item(path, None)
        if value:
            return float(value)
    return DEFAULT_RESOLUTION_MNKA


#: Units of a spectrum's energy axis the extractors understand (lower case)
#: and their factor to keV, the unit of X-ray line energies and of the
#: array-level functions.
ENERGY_UNITS = {"kev": 1.0, "ev": 1e-3}


def _energies_kev(signal, function, uses=None):
    """Channel energies of a spectrum image in keV, and the factor from its axis' units.

    The one place the extractors read energies from a signal: an axis in eV
    (as several converters write) is converted, so that X-ray lines,
    detector-resolution windows and ``exclude_windows`` land on the right
    channels. An axis without energy units (an index axis, units None or
    "<undefined>", or a length) cannot place a line: with ``uses`` (the
    energy-based options asked for, with their verb: "exclude_lines=[...]
    needs") that is refused; otherwise the axis
    values are returned as they are, with factor None.
    """
    axis = signal.axes_manager.signal_axes[0]
    values = np.asarray(axis.axis, dtype=np.float64)
    units = axis.units if isinstance(axis.units, str) and axis.units not in ("", "<undefined>") else None
    factor = ENERGY_UNITS.get(units.strip().lower()) if units else None
    if factor is None:
        if uses:
            raise ValueError(
                f"{function}: {uses} channel energies, but the signal axis {axis.name!r} has units "
                f"{units!r}, not one of 'keV' or 'eV', so no X-ray line can be placed on it. Calibrate the axis "
                "(e.g. axis.scale, axis.offset, axis.units = 0.01, -0.2, 'keV') or leave out the "
                "energy-based options."
            )
        return values, None
    return values * factor, factor


#: The signal-level entries of the energy options: the axis may be in eV.
_SIGNAL_EXCLUDE_WINDOWS = """exclude_windows : sequence of (float, float), optional
        Energy windows, in the signal axis' units (keV or eV), never kept."""
_SIGNAL_EXCLUDE_LINES = """exclude_lines : sequence of str, optional
        X-ray lines never kept, e.g. ``["Cu_Ka", "Cu_Kb", "Cu_La"]`` for grid
        artefacts; windows of one FWHM (from the detector resolution in the
        metadata, else 130 eV at Mn Ka) either side of exspy's line energy.
        The energy axis may be in keV or eV (converted); an axis without
        energy units (an index axis) is refused with a ValueError, as its
        channel numbers would be read as keV."""


@fill_doc
@takes_core_options(
    variance_threshold,
    1,
    omit=("energies", "resolution_mnka"),
    replace={"exclude_windows": _SIGNAL_EXCLUDE_WINDOWS, "exclude_lines": _SIGNAL_EXCLUDE_LINES},
)
def variance_features(signal, *, show_progressbar=None, **options):
    """Spectral features by per-channel variance thresholding.

    Keeps the channels whose variance over the scan exceeds a threshold
    (never those in excluded windows or lines); the features are the
    ``log1p`` counts of the kept channels at every position.

    Parameters
    ----------
    %(signal_1d)s
    %(core_parameters)s
    %(show_progressbar)s

    Returns
    -------
    FusedSTEMSignal
        ``(*scan | n_kept)``, lazy if ``signal`` is; the signal axis holds the
        kept channels' energies (a non-uniform axis), so features plot
        against energy. ``metadata.Features`` holds the parameters and, as
        spectra on the full energy axis, ``variance``, ``threshold``,
        ``kept_channels`` and ``excluded_channels``; ``excluded_positions``
        is a navigation-shaped boolean array (array order), all False unless
        ``nan_policy="exclude"`` left some out.

    Raises
    ------
    stemfuse_hs.features.variance.NoVaryingChannelError
        (a ValueError) if no channel varies above the threshold.
    MemoryError
        If the signal is in memory and its features would not fit in the
        memory available (load it with ``lazy=True`` instead).

    Notes
    -----
    Without ``threshold`` or ``quantile``, the threshold comes from the data:
    a channel is kept when its variance exceeds what Poisson counting noise
    gives (variance = mean) by four standard errors of a sample variance.
    This assumes counts. Inspect ``metadata.Features.variance`` (with
    :func:`stemfuse_hs.plot.plot_variance_selection`) to choose by eye.

    Examples
    --------
    >>> import stemfuse_hs
    >>> scan = stemfuse_hs.data.synthetic_scan("chemistry_only", size="tiny")
    >>> features = stemfuse_hs.variance_features(scan.eds, exclude_lines=["Cu_Ka", "Cu_La"])
    >>> features.axes_manager.signal_axes[0].units
    'keV'
    """
    options = _checked_options(signal, variance_features, show_progressbar, options)
    exclude_lines = options["exclude_lines"]
    if isinstance(exclude_lines, str):
        exclude_lines = [exclude_lines]
    # A malformed exclude_lines is refused by variance_threshold, with its own message.
    listed = list(exclude_lines) if hasattr(exclude_lines, "__iter__") else []
    energies, factor = _energies_kev(signal, "variance_features", f"exclude_lines={listed!r} needs" if listed else None)
    axis_values = np.asarray(signal.axes_manager.signal_axes[0].axis, dtype=np.float64)
    windows = validate_windows(options["exclude_windows"])
    # In the axis' units, as the energies: converted with them.
    options["exclude_windows"] = [(low * (factor or 1.0), high * (factor or 1.0)) for low, high in windows]
    options["exclude_lines"] = exclude_lines
    with dask_progress(show_progressbar):
        result = variance_threshold(signal.data, energies, resolution_mnka=_energy_resolution(signal), **options)
    energy_dict = signal_axes_dicts(signal)[0]
    kept_axis = {
        "_type": "DataAxis",
        "name": energy_dict.get("name") or "Energy",
        "units": energy_dict.get("units"),
        "axis": axis_values[result.kept],
        "navigate": False,
    }
    parameters = dict(result.parameters)
    # As given, in the axis' units.
    parameters["exclude_windows"] = np.asarray(windows, dtype=float).reshape(-1, 2)
    energy = [energy_dict]
    extra = {
        "variance": _spectrum_signal(result.variance, energy, "Channel variance"),
        "threshold": _spectrum_signal(result.threshold, energy, "Variance threshold"),
        "mean": _spectrum_signal(result.mean, energy, "Channel mean"),
        "kept_channels": _spectrum_signal(result.kept.astype(np.uint8), energy, "Kept channels"),
        "excluded_channels": _spectrum_signal(result.excluded.astype(np.uint8), energy, "Excluded channels"),
    }
    return _feature_output(
        signal, result, kept_axis, "variance", "Variance features", extra,
        parameters=parameters, excluded=result.excluded_positions,
    )


# --- Further extractors (radial, annular, cepstrum, binary, X-ray lines) -----


def _uniform_detector_scale(signal, binning=1):
    """(scale, units) of the detector if both axes are uniform with one scale, else (None, None)."""
    axes = signal_axes_dicts(signal)
    if any(a.get("_type", "UniformDataAxis") != "UniformDataAxis" for a in axes):
        return None, None
    scales = [float(a.get("scale", 1.0)) for a in axes]
    if not np.isclose(scales[0], scales[1], rtol=1e-6):
        return None, None
    return scales[0] * binning, axes[0].get("units")


def _binned_detector_axes(signal, binning, shape):
    return [binned_axis(axis, binning, size) for axis, size in zip(signal_axes_dicts(signal), shape)]


@fill_doc
@takes_core_options(radial, 2)
def radial_features(signal, *, show_progressbar=None, **options):
    """Diffraction features from the radial (azimuthally integrated) profile.

    The mean intensity on rings about the direct beam (found in the mean
    pattern), integrated with pyxem's
    :meth:`~pyxem.signals.Diffraction2D.get_azimuthal_integral1d`, lazily
    for lazy data; optionally also the variance within every ring.

    Parameters
    ----------
    %(signal_2d)s
    %(core_parameters)s
    %(show_progressbar)s

    Returns
    -------
    FusedSTEMSignal
        ``(*scan | n_rings)`` (``2 * n_rings`` with ``variance``), lazy if
        ``signal`` is; navigation axes are the input's. Without variance
        and with a uniform square detector calibration the signal axis is
        the radius in the detector's units. ``metadata.Features`` holds the
        parameters, ``radii`` and ``ring_edges`` (unbinned pixels),
        ``mean_profile`` and ``mean_pattern`` (signals) and
        ``excluded_positions``.

    See Also
    --------
    annular_features, sdt_features, fuse

    Notes
    -----
    Radial profiles separate phases with different lattice spacings (on the
    synthetic ``structure_only`` scan, fcc against bcc steel) but are blind
    to the angles: phases with the same spacings and a different
    arrangement of spots look the same (see :doc:`/extractors`).

    Examples
    --------
    >>> import stemfuse_hs
    >>> scan = stemfuse_hs.data.synthetic_scan("structure_only", size="tiny")
    >>> features = stemfuse_hs.radial_features(scan.dp)
    >>> features.axes_manager.navigation_shape == scan.dp.axes_manager.navigation_shape
    True
    >>> features.axes_manager.signal_axes[0].units
    '1/nm'
    """
    options = _checked_options(signal, radial_features, show_progressbar, options)
    with dask_progress(show_progressbar):
        result = radial(signal.data, **options)
    pixel, units = _uniform_detector_scale(signal)
    n_rings = result.radii.size
    if not options["variance"] and pixel is not None:
        step = (result.ring_edges[-1] - result.ring_edges[0]) / n_rings
        axis = {
            "name": "radius",
            "size": n_rings,
            "scale": step * pixel,
            "offset": result.radii[0] * pixel,
            "units": units,
            "navigate": False,
        }
    else:
        axis = index_axis("feature", result.features.shape[-1])
    b = result.parameters["binning"]
    extra = {
        "radii": result.radii,
        "ring_edges": result.ring_edges,
        "mean_profile": _spectrum_signal(result.mean_profile, [index_axis("ring", n_rings)], "Mean radial profile"),
        "mean_pattern": _detector_signal(
            result.mean_pattern, _binned_detector_axes(signal, b, result.mean_pattern.shape), "Mean pattern"
        ),
    }
    return _feature_output(signal, result, axis, "radial", "Radial features", extra)


@fill_doc
@takes_core_options(annular, 2)
def annular_features(signal, *, show_progressbar=None, **options):
    """Diffraction features from angular sectors of rings (annular averages).

    Rings about the direct beam, bounded by the clear minima of the mean
    pattern's radial profile (or by ``ring_edges``), are cut into
    ``n_sectors`` equal sectors; the features are the mean intensities in
    every sector, by default arranged as every ring's mean followed by its
    sectors' deviations from it (``contrast``).

    Parameters
    ----------
    %(signal_2d)s
    %(core_parameters)s
    %(show_progressbar)s

    Returns
    -------
    FusedSTEMSignal
        ``(*scan | n_features)``, lazy if ``signal`` is. ``metadata.Features``
        holds the parameters (with the ring edges used), ``sector_labels``
        (a detector-shaped signal: ``ring * n_sectors + sector``, -1 outside),
        ``mean_profile``, ``mean_pattern`` and ``excluded_positions``.

    See Also
    --------
    radial_features, sdt_features

    Examples
    --------
    >>> import stemfuse_hs
    >>> scan = stemfuse_hs.data.synthetic_scan("structure_only", size="tiny")
    >>> features = stemfuse_hs.annular_features(scan.dp, n_sectors=6)
    >>> features.metadata.Features.parameters.n_sectors
    6
    """
    options = _checked_options(signal, annular_features, show_progressbar, options)
    with dask_progress(show_progressbar):
        result = annular(signal.data, **options)
    b = result.parameters["binning"]
    detector = _binned_detector_axes(signal, b, result.labels.shape)
    extra = {
        "sector_labels": _detector_signal(result.labels.astype(np.int32), detector, "Ring and sector of every pixel"),
        "mean_pattern": _detector_signal(result.mean_pattern, detector, "Mean pattern"),
        "mean_profile": _spectrum_signal(
            result.mean_profile, [index_axis("ring", result.mean_profile.size)], "Mean radial profile (one-pixel rings)"
        ),
        "profile_radii": result.profile_radii,
    }
    axis = index_axis("feature", result.features.shape[-1])
    return _feature_output(signal, result, axis, "annular", "Annular features", extra)


@fill_doc
@takes_core_options(cepstrum, 2)
def cepstrum_features(signal, *, show_progressbar=None, **options):
    """Diffraction features from the cepstrum ``|FFT(log1p(pattern))|``.

    Lattice periods in the pattern become peaks at fixed quefrencies,
    however the spots' intensities change; the method's advice is to try
    the cepstrum when SDT does not work well. The centre of the cepstrum
    (``crop``) is kept, one of every centrosymmetric pair, without the zero
    quefrency; ``fraction`` keeps only the quefrencies that vary most.

    Parameters
    ----------
    %(signal_2d)s
    %(core_parameters)s
    %(show_progressbar)s

    Returns
    -------
    FusedSTEMSignal
        ``(*scan | n_features)``, lazy if ``signal`` is.
        ``metadata.Features`` holds the parameters, ``mean_cepstrum``,
        ``selected_mask`` (and ``std_map`` with ``fraction``) as 2-D signals
        of the cropped quefrencies, ``quefrency_indices`` and
        ``excluded_positions``.

    See Also
    --------
    sdt_features

    Examples
    --------
    >>> import stemfuse_hs
    >>> scan = stemfuse_hs.data.synthetic_scan("structure_only", size="tiny")
    >>> features = stemfuse_hs.cepstrum_features(scan.dp, fraction=0.5)
    >>> features.metadata.Features.mean_cepstrum.data.shape
    (9, 9)
    """
    options = _checked_options(signal, cepstrum_features, show_progressbar, options)
    with dask_progress(show_progressbar):
        result = cepstrum(signal.data, **options)
    ky, kx = result.parameters["max_quefrency"]
    quefrency = [
        {"name": name, "size": 2 * k + 1, "scale": 1.0, "offset": float(-k), "units": "cycles", "navigate": False}
        for name, k in (("qy", ky), ("qx", kx))
    ]
    extra = {
        "mean_cepstrum": _detector_signal(result.mean_cepstrum, quefrency, "Mean cepstrum"),
        "selected_mask": _detector_signal(result.selected_mask.astype(np.uint8), quefrency, "Selected quefrencies"),
        "quefrency_indices": result.quefrency_indices,
    }
    if result.std_map is not None:
        extra["std_map"] = _detector_signal(result.std_map, quefrency, "Standard deviation of the cepstrum")
    axis = index_axis("feature", result.features.shape[-1])
    return _feature_output(signal, result, axis, "cepstrum", "Cepstrum features", extra)


@fill_doc
@takes_core_options(binarize, 2)
def binary_features(signal, *, show_progressbar=None, **options):
    """Binarised diffraction patterns, to be clustered with the Jaccard metric.

    Every binned pixel outside the direct beam becomes 1 where the pattern
    is clearly brighter than the scan's mean pattern there (``sigma``
    Poisson standard deviations) or above ``threshold``, else 0. Cluster with
    ``features.cluster(metric="jaccard")``.

    Parameters
    ----------
    %(signal_2d)s
    %(core_parameters)s
    %(show_progressbar)s

    Returns
    -------
    FusedSTEMSignal
        ``(*scan | n_pixels)`` float32 0/1, lazy if ``signal`` is.
        ``metadata.Features`` holds the parameters, ``threshold_map``,
        ``beam_mask``, ``mean_pattern``, ``pixel_indices`` and
        ``excluded_positions``.

    Notes
    -----
    The Jaccard distance reads any non-zero value as "on". Fused with
    continuous features (:func:`fuse`), binary features are centred and
    weighted like any block and are then no longer 0/1: cluster fused
    signals with a Euclidean metric (on 0/1 vectors it is the square root
    of the Hamming distance) and keep ``metric="jaccard"`` for binary
    features alone.

    Examples
    --------
    >>> import stemfuse_hs
    >>> scan = stemfuse_hs.data.synthetic_scan("structure_only", size="tiny")
    >>> features = stemfuse_hs.binary_features(scan.dp)
    >>> sorted(set(features.data.ravel().tolist()))
    [0.0, 1.0]
    >>> labels = features.cluster(metric="jaccard", random_state=0)  # doctest: +SKIP
    """
    options = _checked_options(signal, binary_features, show_progressbar, options)
    with dask_progress(show_progressbar):
        result = binarize(signal.data, **options)
    b = result.parameters["binning"]
    detector = _binned_detector_axes(signal, b, result.mean_pattern.shape)
    extra = {
        "threshold_map": _detector_signal(result.threshold_map, detector, "Binarisation threshold"),
        "mean_pattern": _detector_signal(result.mean_pattern, detector, "Mean pattern"),
        "beam_mask": _detector_signal(result.beam_mask.astype(np.uint8), detector, "Direct-beam mask"),
        "pixel_indices": result.pixel_indices,
    }
    axis = index_axis("feature", result.features.shape[-1])
    return _feature_output(signal, result, axis, "binary", "Binary features", extra)


def _signal_lines(signal, elements, energies):
    """The X-ray lines to use: from ``elements``, else the metadata."""
    beam = signal.metadata.get_item("Acquisition_instrument.TEM.beam_energy", None) or signal.metadata.get_item(
        "Acquisition_instrument.SEM.beam_energy", None
    )
    energy_range = (float(np.min(energies)), float(np.max(energies)))
    if elements is not None:
        if isinstance(elements, str):
            elements = [elements]
        return element_lines(list(elements), energy_range, beam)
    lines = signal.metadata.get_item("Sample.xray_lines", None)
    if lines is not None and len(lines):
        return list(lines)
    found = signal.metadata.get_item("Sample.elements", None)
    if found is not None and len(found):
        return element_lines(list(found), energy_range, beam)
    raise ValueError(
        "line_features: the signal's metadata names no elements or X-ray lines (metadata.Sample.elements / "
        "xray_lines); pass elements=[...] or lines=[...], or add them with exspy's add_elements/add_lines."
    )


_SIGNAL_LINE_WIDTH = """width : float, default 1.0
        Half-width of every line window in detector FWHMs at the line's
        energy (from the detector resolution in the metadata, else 130 eV at
        Mn Ka): 1 gathers about 98 % of a line."""


@fill_doc
@takes_core_options(line_intensities, 1, omit=("resolution_mnka",), replace={"width": _SIGNAL_LINE_WIDTH})
def line_features(signal, *, lines=None, elements=None, exclude_lines=(), show_progressbar=None, **options):
    """Spectral features from X-ray line intensities (line windows minus background).

    For every X-ray line (given, from ``elements``, or from the signal's
    ``metadata.Sample.xray_lines`` / ``elements`` as exspy's ``add_lines``
    records them), the counts in a window of ``width`` detector FWHMs
    either side of exspy's line energy, minus a linear background
    interpolated between windows just below and above.

    Parameters
    ----------
    %(signal_1d)s
    lines : sequence of str, optional
        X-ray lines such as ``["Ni_Ka", "Mn_Ka"]``.
    elements : sequence of str, optional
        Instead of ``lines``: one alpha line an element, chosen as exspy's
        ``add_lines`` does (highest energy below half the beam energy).
    exclude_lines : sequence of str, optional
        Lines left out, e.g. ``["Cu_Ka"]`` for the grid.
    %(core_parameters)s
    %(show_progressbar)s

    Returns
    -------
    FusedSTEMSignal
        ``(*scan | n_features)``, lazy if ``signal`` is. ``metadata.Features``
        holds the parameters (``lines``), ``windows`` and
        ``background_windows`` (keV), ``feature_lines`` (the line of every
        feature) and ``excluded_positions``.

    See Also
    --------
    variance_features, fuse

    Examples
    --------
    >>> import stemfuse_hs
    >>> scan = stemfuse_hs.data.synthetic_scan("chemistry_only", size="tiny")
    >>> features = stemfuse_hs.line_features(scan.eds, exclude_lines=["Cu_Ka"])
    >>> list(features.metadata.Features.parameters.lines)
    ['Mn_Ka', 'Ni_Ka', 'Ga_Ka']
    """
    options = _checked_options(signal, line_features, show_progressbar, options)
    if lines is not None and elements is not None:
        raise ValueError("line_features: give lines or elements, not both.")
    energies, _ = _energies_kev(signal, "line_features", "X-ray line windows need")
    if lines is None:
        lines = _signal_lines(signal, elements, energies)
    elif isinstance(lines, str):
        lines = [lines]
    if isinstance(exclude_lines, str):
        exclude_lines = [exclude_lines]
    lines = [line for line in lines if line not in set(exclude_lines)]
    if not lines:
        raise ValueError("line_features: no X-ray line is left after exclude_lines.")
    with dask_progress(show_progressbar):
        result = line_intensities(signal.data, energies, lines, resolution_mnka=_energy_resolution(signal), **options)
    parameters = dict(result.parameters)
    parameters["exclude_lines"] = list(exclude_lines)
    extra = {
        "windows": result.windows,
        "background_windows": result.background_windows,
        "feature_lines": list(result.feature_lines),
    }
    axis = index_axis("feature", result.features.shape[-1])
    return _feature_output(signal, result, axis, "lines", "Line features", extra, parameters=parameters)
