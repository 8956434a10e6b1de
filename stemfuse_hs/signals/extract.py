"""Feature extraction on HyperSpy signals: translate, call the array core, translate back.

These functions accept any HyperSpy signal of the right dimension (pyxem's
``Diffraction2D``, exspy's ``EDSTEMSpectrum``, a plain ``Signal2D`` ...), eager
or lazy, and never modify it.
"""

import numpy as np

from .._progress import dask_progress
from .._validation import check_optional_bool
from ..features.sdt import sdt
from ..features.variance import DEFAULT_RESOLUTION_MNKA, variance_threshold
from ._axes import binned_axis, build_signal, check_signal, index_axis, navigation_axes_dicts, signal_axes_dicts

__all__ = ["sdt_features", "variance_features"]


def _feature_classes():
    from .features import FusedSTEMSignal, LazyFusedSTEMSignal

    return FusedSTEMSignal, LazyFusedSTEMSignal


def _title(signal):
    return signal.metadata.get_item("General.title", "") or ""


def _detector_signal(data, axes, title):
    from hyperspy.signals import Signal2D

    return build_signal(Signal2D, None, np.asarray(data), axes, title=title)


def sdt_features(
    signal,
    *,
    binning=2,
    fraction=0.4,
    std_scale="log",
    beam_centre=None,
    beam_radius=None,
    normalize="total",
    nan_policy="raise",
    show_progressbar=None,
):
    """Diffraction features by standard-deviation thresholding (SDT).

    Bins the detector, computes every pixel's standard deviation over the
    scan, excludes a disk around the direct beam and keeps the ``fraction``
    of the remaining pixels that vary most; their ``log1p`` intensities at
    every position are the features.

    Parameters
    ----------
    signal : hyperspy.signals.Signal2D
        4D-STEM data (any 2-D signal class, eager or lazy); not modified.
    binning : int, default 2
        Detector binning (sums counts).
    fraction : float, default 0.4
        Fraction of the pixels outside the beam disk kept, in (0, 1]. The
        method's authors report stable results for 0.2 to 0.4 (the top 60–80
        percentile).
    std_scale : {"log", "linear"}, default "log"
        Standard deviation of log-scaled (the method's text) or raw (the
        reference notebook's code) intensities.
    beam_centre : (float, float), optional
        (row, column) of the direct beam in unbinned detector pixels; found
        from the mean pattern when omitted.
    beam_radius : float, optional
        Radius of the excluded disk in unbinned pixels (0: exclude nothing);
        found from the mean pattern when omitted.
    normalize : {"total", None}, default "total"
        Scale every pattern to the scan's mean total counts first, so that
        thickness does not shift every feature at once.
    nan_policy : {"raise", "exclude"}, default "raise"
        Positions holding NaN or inf (an aborted scan line, a failed dark
        subtraction): ``"raise"`` refuses the data, saying how many and the
        first; ``"exclude"`` leaves them out of every statistic, gives them
        the mean features of the other positions and records them in
        ``metadata.Features.excluded_positions``, which :func:`fuse` and
        :meth:`~stemfuse_hs.signals.features.FusedSTEMSignal.cluster` honour
        (they get label -1). Lazy data stays lazy: only the small
        per-position mask is computed.
    show_progressbar : bool, optional
        Default: HyperSpy's preference.

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
    check_signal(signal, 2, "sdt_features", min_positions=2)
    check_optional_bool("show_progressbar", show_progressbar)
    with dask_progress(show_progressbar):
        result = sdt(
            signal.data,
            binning=binning,
            fraction=fraction,
            std_scale=std_scale,
            beam_centre=beam_centre,
            beam_radius=beam_radius,
            normalize=normalize,
            nan_policy=nan_policy,
        )
    nav_axes = navigation_axes_dicts(signal)
    detector_axes = [
        binned_axis(axis, result.parameters["binning"], size)
        for axis, size in zip(signal_axes_dicts(signal), result.std_map.shape)
    ]
    title = _title(signal)
    eager, lazy = _feature_classes()
    features = build_signal(
        eager,
        lazy,
        result.features,
        nav_axes + [index_axis("feature", result.features.shape[-1])],
        title=f"SDT features of {title}".strip(),
    )
    features.metadata.set_item(
        "Features",
        {
            "extractor": "sdt",
            "source_title": title,
            "parameters": result.parameters,
            "pixel_indices": result.pixel_indices,
            "std_map": _detector_signal(result.std_map, detector_axes, "Standard deviation map"),
            "mean_pattern": _detector_signal(result.mean_pattern, detector_axes, "Mean pattern"),
            "beam_mask": _detector_signal(result.beam_mask.astype(np.uint8), detector_axes, "Direct-beam mask"),
            "selected_mask": _detector_signal(result.selected_mask.astype(np.uint8), detector_axes, "Selected pixels"),
            "excluded_positions": np.asarray(result.excluded, dtype=bool),
        },
    )
    return features


def _energy_resolution(signal):
    for path in (
        "Acquisition_instrument.TEM.Detector.EDS.energy_resolution_MnKa",
        "Acquisition_instrument.SEM.Detector.EDS.energy_resolution_MnKa",
    ):
        value = signal.metadata.get_item(path, None)
        if value:
            return float(value)
    return DEFAULT_RESOLUTION_MNKA


def variance_features(
    signal,
    *,
    threshold=None,
    quantile=None,
    exclude_windows=(),
    exclude_lines=(),
    normalize="total",
    nan_policy="raise",
    show_progressbar=None,
):
    """Spectral features by per-channel variance thresholding.

    Keeps the channels whose variance over the scan exceeds a threshold
    (never those in excluded windows or lines); the features are the
    ``log1p`` counts of the kept channels at every position.

    Parameters
    ----------
    signal : hyperspy.signals.Signal1D
        Spectrum image (e.g. exspy's ``EDSTEMSpectrum``), eager or lazy; not modified.
    threshold : float, optional
        Variance a channel must exceed. See Notes for the default.
    quantile : float, optional
        Instead of ``threshold``: keep channels above this quantile of the
        channel variances, in (0, 1).
    exclude_windows : sequence of (float, float), optional
        Energy windows, in the signal axis' units (keV), never kept.
    exclude_lines : sequence of str, optional
        X-ray lines never kept, e.g. ``["Cu_Ka", "Cu_Kb", "Cu_La"]`` for grid
        artefacts; windows of one FWHM (from the detector resolution in the
        metadata, else 130 eV at Mn Ka) either side of exspy's line energy.
    normalize : {"total", None}, default "total"
        Scale every spectrum to the scan's mean total counts first, so that
        thickness does not raise every channel at once.
    nan_policy : {"raise", "exclude"}, default "raise"
        Positions holding NaN or inf (an aborted scan line, a failed dark
        subtraction): ``"raise"`` refuses the data, saying how many and the
        first; ``"exclude"`` leaves them out of every statistic, gives them
        the mean features of the other positions and records them in
        ``metadata.Features.excluded_positions``, which :func:`fuse` and
        :meth:`~stemfuse_hs.signals.features.FusedSTEMSignal.cluster` honour
        (they get label -1). Lazy data stays lazy: only the small
        per-position mask is computed.
    show_progressbar : bool, optional
        Default: HyperSpy's preference.

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
    check_signal(signal, 1, "variance_features", min_positions=2)
    check_optional_bool("show_progressbar", show_progressbar)
    energy_axis = signal.axes_manager.signal_axes[0]
    energies = np.asarray(energy_axis.axis, dtype=np.float64)
    with dask_progress(show_progressbar):
        result = variance_threshold(
            signal.data,
            energies,
            threshold=threshold,
            quantile=quantile,
            exclude_windows=exclude_windows,
            exclude_lines=exclude_lines,
            resolution_mnka=_energy_resolution(signal),
            normalize=normalize,
            nan_policy=nan_policy,
        )
    energy_dict = signal_axes_dicts(signal)[0]
    kept_axis = {
        "_type": "DataAxis",
        "name": energy_dict.get("name") or "Energy",
        "units": energy_dict.get("units"),
        "axis": energies[result.kept],
        "navigate": False,
    }
    title = _title(signal)
    eager, lazy = _feature_classes()
    features = build_signal(
        eager,
        lazy,
        result.features,
        navigation_axes_dicts(signal) + [kept_axis],
        title=f"Variance features of {title}".strip(),
    )
    parameters = dict(result.parameters)
    parameters["exclude_windows"] = np.asarray(parameters["exclude_windows"], dtype=float).reshape(-1, 2)
    from hyperspy.signals import Signal1D

    def spectrum(values, name):
        return build_signal(Signal1D, None, np.asarray(values), [energy_dict], title=name)

    features.metadata.set_item(
        "Features",
        {
            "extractor": "variance",
            "source_title": title,
            "parameters": parameters,
            "variance": spectrum(result.variance, "Channel variance"),
            "threshold": spectrum(result.threshold, "Variance threshold"),
            "mean": spectrum(result.mean, "Channel mean"),
            "kept_channels": spectrum(result.kept.astype(np.uint8), "Kept channels"),
            "excluded_channels": spectrum(result.excluded.astype(np.uint8), "Excluded channels"),
            "excluded_positions": np.asarray(result.excluded_positions, dtype=bool),
        },
    )
    return features
