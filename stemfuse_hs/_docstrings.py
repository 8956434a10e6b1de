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

__all__ = ["DOCSTRINGS", "fill_doc", "parameter_entries"]

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
    "beam_radius_excluded": """beam_radius : float, optional
        Radius of the excluded direct-beam disk in unbinned pixels (0:
        exclude nothing); found from the mean pattern when omitted.""",
    "normalize_patterns": """normalize : {"total", None}, default "total"
        Scale each pattern to the scan's mean total counts first, so that
        thickness does not shift every feature at once.""",
    "normalize_spectra": """normalize : {"total", None}, default "total"
        Scale each spectrum to the scan's mean total counts first, so that
        thickness does not raise every channel at once.""",
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
    "show_progressbar": """show_progressbar : bool, optional
        Default: HyperSpy's preference.""",
}

_PLACEHOLDER = re.compile(r"%\((\w+)\)s")
#: A numpydoc parameter line: four spaces, the name(s), " : " or the end.
_ENTRY = re.compile(r"^    (?P<names>\w+(?:, \w+)*)(?: : |$)")
_SECTION_END = re.compile(r"^    (Returns|Yields|Raises|Warns|See Also|Notes|References|Examples)$")


def substitute(doc, fragments):
    """``doc`` with every ``%(name)s`` replaced by ``fragments[name]`` (a KeyError for an unknown name).

    Examples
    --------
    >>> substitute("Parameters: %(x)s", {"x": "x : int"})
    'Parameters: x : int'
    """
    return _PLACEHOLDER.sub(lambda match: fragments[match.group(1)], doc)


def fill_doc(func):
    """Replace every ``%(name)s`` in ``func.__doc__`` (a function's or a class') by ``DOCSTRINGS[name]``; return ``func``.

    An unknown name raises ``KeyError`` at import, so no placeholder is
    left in a rendered docstring. Without docstrings (``python -OO``)
    nothing is done.
    """
    if func.__doc__:
        func.__doc__ = substitute(func.__doc__, DOCSTRINGS)
    return func


def parameter_entries(doc):
    """The entries of a rendered numpydoc ``Parameters`` section, in order, as fragments.

    Returns
    -------
    list of (tuple of str, str)
        For every entry, its parameter names (``"smooth, prominence : float"``
        documents two) and its text in the fragments' layout: the parameter
        line unindented, the description indented by eight spaces, so that
        it can stand for a ``%(name)s`` placeholder in another docstring.

    Examples
    --------
    >>> def f(a, b=1):
    ...     '''Sum.
    ...
    ...     Parameters
    ...     ----------
    ...     a : int
    ...         First.
    ...     b : int, default 1
    ...
    ...     Returns
    ...     -------
    ...     int
    ...     '''
    >>> [(names, text.splitlines()) for names, text in parameter_entries(f.__doc__)]
    [(('a',), ['a : int', '        First.']), (('b',), ['b : int, default 1'])]
    """
    lines = (doc or "").splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() == "Parameters") + 2
    except StopIteration:
        return []
    entries = []
    for line in lines[start:]:
        if _SECTION_END.match(line):
            break
        match = _ENTRY.match(line)
        if match:
            entries.append((tuple(match.group("names").split(", ")), [line[4:]]))
        elif entries and line.strip():
            entries[-1][1].append(line)
    return [(names, "\n".join(text)) for names, text in entries]
