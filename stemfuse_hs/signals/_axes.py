"""Translation between HyperSpy signals and arrays plus axis descriptions.

Results are built from the *input's* axis dictionaries, so names, scales,
offsets and units of the scan are carried over exactly.
"""

import warnings

import numpy as np

from .._arrays import is_lazy_array
from .._checks import require_signal

__all__ = [
    "navigation_axes_dicts",
    "signal_axes_dicts",
    "index_axis",
    "binned_axis",
    "build_signal",
    "build_features_signal",
    "FEATURES_SIGNAL_TYPE",
    "check_signal",
    "check_scan_dimension",
    "clean_text",
    "signal_title",
    "MAX_SCAN_DIMENSION",
    "recorded_exclusions",
    "axis_spacing",
    "describe_axis",
]


def _sorted_axes(signal, navigate):
    axes = [a for a in signal.axes_manager._axes if a.navigate is navigate]
    return sorted(axes, key=lambda a: a.index_in_array)


def _axis_dictionary(axis):
    """``axis.get_axis_dictionary()`` with ``"size"`` always present.

    A non-uniform ``DataAxis`` (positions given as an ``axis`` array, as
    converters write them) has no ``size`` (nor ``scale``/``offset``) in its
    dictionary; the copy keeps its positions exactly as they are and adds
    the size, which HyperSpy accepts and the results' shapes are read from.
    """
    d = axis.get_axis_dictionary()
    d.setdefault("size", int(axis.size))
    return d


def navigation_axes_dicts(signal):
    """Navigation axes of ``signal`` as dictionaries, in array order."""
    return [_axis_dictionary(a) for a in _sorted_axes(signal, True)]


def signal_axes_dicts(signal):
    """Signal axes of ``signal`` as dictionaries, in array order."""
    return [_axis_dictionary(a) for a in _sorted_axes(signal, False)]


def axis_spacing(axis):
    """The steps between an axis' positions: ``scale`` for a uniform axis,
    the differences of its ``axis`` values for a non-uniform ``DataAxis``
    (which has no ``scale``)."""
    if hasattr(axis, "scale"):
        return np.full(max(axis.size - 1, 0), float(axis.scale))
    return np.diff(np.asarray(axis.axis, dtype=np.float64))


def describe_axis(axis):
    """``"2 nm"`` for a uniform axis, ``"non-uniform, 0 to 94 nm"`` otherwise."""
    units = "" if axis.units in (None, "<undefined>") else f" {axis.units}"
    if hasattr(axis, "scale"):
        return f"{axis.scale:g}{units}"
    values = np.asarray(axis.axis, dtype=np.float64)
    return f"non-uniform, {values.min():g} to {values.max():g}{units}"


def index_axis(name, size, navigate=False):
    """A dimensionless uniform axis 0, 1, ..., size - 1."""
    return {"name": name, "size": int(size), "scale": 1.0, "offset": 0.0, "units": None, "navigate": navigate}


def binned_axis(axis, binning, size):
    """The axis after summing ``binning`` pixels: scale grows, centre of bins kept."""
    axis = dict(axis)
    if axis.get("_type", "UniformDataAxis") != "UniformDataAxis":
        values = np.asarray(axis["axis"])[: size * binning].reshape(size, binning).mean(axis=1)
        axis.update(axis=values)
        return axis
    axis["offset"] = axis.get("offset", 0.0) + (binning - 1) / 2 * axis.get("scale", 1.0)
    axis["scale"] = axis.get("scale", 1.0) * binning
    axis["size"] = int(size)
    return axis


def clean_text(text):
    """``text`` as a str that every writer takes: NUL characters removed.

    HDF5 (``.hspy``) and zarr store metadata strings as variable-length
    strings, which cannot hold NUL ("VLEN strings do not support embedded
    NULLs"); a title read from a converter or a C string sometimes has one.
    Everything else, ``$`` and TeX included, is kept as it is: plots and the
    HTML report escape it where they show it.
    """
    return str(text).replace("\x00", "")


def signal_title(signal):
    """The signal's ``metadata.General.title`` ("" when missing), made safe to save."""
    return clean_text(signal.metadata.get_item("General.title", "") or "")


def build_signal(eager_class, lazy_class, data, axes, *, title="", metadata=None):
    """Make a signal of ``eager_class`` (or its lazy twin for dask ``data``)."""
    cls = lazy_class if is_lazy_array(data) else eager_class
    signal = cls(data, axes=[dict(a) for a in axes])
    signal.metadata.General.title = clean_text(title)
    if metadata:
        for path, value in metadata.items():
            signal.metadata.set_item(path, value)
    return signal


#: The signal type of every feature signal (extractors, fuse): HyperSpy's
#: registry maps it, with signal dimension 1, to ``FusedSTEMSignal``.
FEATURES_SIGNAL_TYPE = "fused_stem"


def build_features_signal(data, axes, *, title="", metadata=None):
    """The one factory of feature signals: a ``FusedSTEMSignal`` (lazy twin for dask ``data``).

    Every extractor and :func:`~stemfuse_hs.fuse` builds its output here.
    The class is looked up in HyperSpy's registry of signal types
    (``"fused_stem"``, signal dimension 1) instead of being imported, so
    that the class's own methods may import the extractors without an
    import circle.

    Parameters
    ----------
    data : numpy.ndarray or dask.array.Array
        ``(*navigation, n_features)``.
    axes : sequence of dict
        Axis dictionaries in array order, the last one the feature axis.
    title : str, optional
    metadata : dict, optional
        ``{path: value}`` items to set.

    Returns
    -------
    FusedSTEMSignal or LazyFusedSTEMSignal

    Raises
    ------
    RuntimeError
        If HyperSpy does not know the signal type (the package is not
        installed, so its extension is not registered).

    Examples
    --------
    >>> import numpy as np
    >>> features = build_features_signal(np.zeros((2, 3, 4), np.float32), [
    ...     index_axis("y", 2, True), index_axis("x", 3, True), index_axis("feature", 4)], title="demo")
    >>> type(features).__name__, features.axes_manager.signal_shape
    ('FusedSTEMSignal', (4,))
    """
    # Not set_signal_type: HyperSpy counts a one-feature signal axis as
    # signal dimension 0 and would give a BaseSignal; the registry lookup
    # takes the dimension as given.
    from hyperspy.io import assign_signal_subclass

    cls = assign_signal_subclass(
        dtype=np.dtype(data.dtype), signal_dimension=1, signal_type=FEATURES_SIGNAL_TYPE, lazy=is_lazy_array(data)
    )
    if getattr(cls, "_signal_type", None) != FEATURES_SIGNAL_TYPE:
        raise RuntimeError(
            f"HyperSpy does not know the signal type {FEATURES_SIGNAL_TYPE!r}: install stemfuse_hs "
            "(pip install -e .) so that its HyperSpy extension is registered."
        )
    return build_signal(cls, cls, data, axes, title=title, metadata=metadata)


def check_signal(signal, signal_dimension, function, min_positions=1):
    """Refuse anything that is not a HyperSpy signal of ``signal_dimension``
    with at least ``min_positions`` scan positions."""
    require_signal(signal, f"{function} expects a HyperSpy signal, got {{type}}.")
    dim = signal.axes_manager.signal_dimension
    if dim != signal_dimension:
        kind = {1: "a spectrum image (signal dimension 1)", 2: "4D-STEM data (signal dimension 2)"}
        raise ValueError(
            f"{function} expects {kind[signal_dimension]}, got a signal with signal dimension {dim} "
            f"({signal.axes_manager.signal_shape})."
        )
    if signal.axes_manager.navigation_dimension == 0:
        raise ValueError(
            f"{function} needs a scan: the signal has no navigation axes (a single pattern or spectrum)."
        )
    n_positions = int(np.prod(signal.axes_manager.navigation_shape))
    if n_positions < min_positions:
        raise ValueError(
            f"{function} needs a scan of at least {min_positions} positions, got navigation shape "
            f"{signal.axes_manager.navigation_shape} ({n_positions} position"
            f"{'' if n_positions == 1 else 's'}): nothing varies across a single position."
        )
    return signal


#: Navigation dimensions a scan may have: a line (1) or a map (2).
MAX_SCAN_DIMENSION = 2


def check_scan_dimension(signal, function, argument=None):
    """Refuse a scan of more than two navigation dimensions, up front.

    A phase map is an image of the scan: a scan repeated in time or at
    several tilts (e.g. navigation shape (16, 12, 2)) has no single map, and
    each step (fusion, clustering, statistics) would have to agree on how
    to flatten it. The rule is one, here, for every entry point: fuse and
    cluster take lines and maps; the message says how to split the rest.
    """
    nav = signal.axes_manager.navigation_shape
    if len(nav) > MAX_SCAN_DIMENSION:
        which = "the signal" if argument is None else f"argument {argument}"
        extra = ", ".join(["..."] + ["0"] * (len(nav) - MAX_SCAN_DIMENSION))
        raise ValueError(
            f"{function}: {which} has {len(nav)} navigation dimensions (navigation shape {nav}); "
            f"only line scans (1) and maps (2) are supported. Process each map separately, "
            f"e.g. signal.inav[{extra}] for the first along the extra axes, and fuse and cluster each."
        )
    return signal


#: Where the results record positions left out (nan_policy="exclude").
EXCLUSION_PATHS = ("Fusion.excluded_positions", "Features.excluded_positions")


def recorded_exclusions(signal, function):
    """The navigation-shaped (array order) mask of excluded positions, or None.

    Read from ``metadata.Fusion`` or ``metadata.Features``. Cropping or
    rebinning a signal does not update its metadata: a mask that no longer
    fits the scan is ignored with a warning rather than applied to the
    wrong positions.
    """
    nav_shape = tuple(signal.data.shape[: signal.axes_manager.navigation_dimension])
    for path in EXCLUSION_PATHS:
        if signal.metadata.has_item(path):
            mask = np.asarray(signal.metadata.get_item(path))
            if mask.shape != nav_shape and not mask.any():
                # Nothing was excluded: a cropped signal has nothing to lose.
                return None
            if mask.shape != nav_shape:
                warnings.warn(
                    f"{function}: metadata.{path} has shape {mask.shape} but the scan is {nav_shape} "
                    "(cropped or rebinned after extraction?); the recorded exclusions are ignored. "
                    "Extract the features again from the cropped data.",
                    UserWarning,
                    stacklevel=3,
                )
                return None
            return mask.astype(bool)
    return None
