"""Parameter descriptions shared by the extractors' docstrings, written once.

As exspy's ``_docstrings``: a docstring holds ``%(name)s`` on a line of its
own, indented as a numpydoc parameter entry (four spaces), and
:func:`fill_doc` replaces it with the fragment ``name`` below. Fragments
start with the parameter line (no indentation: the placeholder's is kept)
and indent their description by eight spaces, so the rendered docstring is
plain numpydoc. Substitution is plain text replacement, not ``%``
formatting, so a literal ``%`` or ``{}`` in a docstring is left alone.
"""

import re

__all__ = ["DOCSTRINGS", "fill_doc"]

_BINNING = """binning : int, default {}
        Detector binning before anything else (sums counts)."""

#: The fragments, by placeholder name.
DOCSTRINGS = {
    # --- array level (stemfuse_hs.features) ---
    "diffraction_data": """data : numpy.ndarray or dask.array.Array
        ``(*navigation, H, W)`` diffraction patterns (counts).""",
    "spectra_data": """data : numpy.ndarray or dask.array.Array
        ``(*navigation, channels)`` spectra (counts).""",
    "energies": """energies : array_like
        ``(channels,)`` channel energies in keV.""",
    "mean_pattern": """mean_pattern : numpy.ndarray
        ``(H, W)`` mean pattern over the scan.""",
    "binning_1": _BINNING.format(1),
    "binning_2": _BINNING.format(2),
    "beam_centre": """beam_centre : (float, float), optional
        (row, column) of the direct beam in unbinned pixels; found when omitted.""",
    "beam_radius": """beam_radius : float, optional
        Radius of the direct beam in unbinned pixels; found when omitted.""",
    "normalize_patterns": """normalize : {"total", None}, default "total"
        Scale each pattern to the scan's mean total counts first.""",
    "normalize_spectra": """normalize : {"total", None}, default "total"
        Scale each spectrum to the scan's mean total counts first.""",
    "nan_policy_mean_features": """nan_policy : {"raise", "exclude"}, default "raise"
        Positions holding NaN or inf: refuse the data, or leave them out of
        every statistic and give them the scan's mean features.""",
    # --- the result classes' attributes ---
    "result_parameters": """parameters : dict
        Every parameter used, for provenance.""",
    "result_excluded_mean_features": """excluded : numpy.ndarray
        ``navigation``-shaped boolean mask of the positions left out
        (``nan_policy="exclude"``); their features are the scan's mean.""",
    "result_excluded_mean_pattern": """excluded : numpy.ndarray
        ``navigation``-shaped boolean mask of the positions left out
        (``nan_policy="exclude"``); their features are those of the mean pattern.""",
    "result_mean_pattern": """mean_pattern : numpy.ndarray
        ``(H', W')`` mean normalised pattern on the binned grid.""",
    "result_beam_mask": """beam_mask : numpy.ndarray
        ``(H', W')`` True inside the excluded direct-beam disk.""",
    # --- signal level (stemfuse_hs.signals.extract) ---
    "signal_2d": """signal : hyperspy.signals.Signal2D
        4D-STEM data (any 2-D signal class, eager or lazy); not modified.""",
    "signal_1d": """signal : hyperspy.signals.Signal1D
        Spectrum image (e.g. exspy's ``EDSTEMSpectrum``), eager or lazy; not modified.""",
    "nan_policy_signal": """nan_policy : {"raise", "exclude"}, default "raise"
        Positions holding NaN or inf (an aborted scan line, a failed dark
        subtraction): ``"raise"`` refuses the data, saying how many and the
        first; ``"exclude"`` leaves them out of every statistic, gives them
        the mean features of the other positions and records them in
        ``metadata.Features.excluded_positions``, which :func:`fuse` and
        :meth:`~stemfuse_hs.signals.features.FusedSTEMSignal.cluster` honour
        (they get label -1). Lazy data stays lazy: only the small
        per-position mask is computed.""",
    "show_progressbar": """show_progressbar : bool, optional
        Default: HyperSpy's preference.""",
}

_PLACEHOLDER = re.compile(r"%\((\w+)\)s")


def fill_doc(func):
    """Replace every ``%(name)s`` in ``func.__doc__`` (a function's or a class') by ``DOCSTRINGS[name]``; return ``func``.

    An unknown name raises ``KeyError`` at import, so no placeholder is
    left in a rendered docstring. Without docstrings (``python -OO``)
    nothing is done.
    """
    if func.__doc__:
        func.__doc__ = _PLACEHOLDER.sub(lambda match: DOCSTRINGS[match.group(1)], func.__doc__)
    return func
