"""Translation between HyperSpy signals and arrays plus axis descriptions.

Results are built from the *input's* axis dictionaries, so names, scales,
offsets and units of the scan are carried over exactly.
"""

import numpy as np

from .._arrays import is_lazy_array

__all__ = [
    "navigation_axes_dicts",
    "signal_axes_dicts",
    "index_axis",
    "binned_axis",
    "build_signal",
    "check_signal",
]


def _sorted_axes(signal, navigate):
    axes = [a for a in signal.axes_manager._axes if a.navigate is navigate]
    return sorted(axes, key=lambda a: a.index_in_array)


def navigation_axes_dicts(signal):
    """Navigation axes of ``signal`` as dictionaries, in array order."""
    return [a.get_axis_dictionary() for a in _sorted_axes(signal, True)]


def signal_axes_dicts(signal):
    """Signal axes of ``signal`` as dictionaries, in array order."""
    return [a.get_axis_dictionary() for a in _sorted_axes(signal, False)]


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


def build_signal(eager_class, lazy_class, data, axes, *, title="", metadata=None):
    """Make a signal of ``eager_class`` (or its lazy twin for dask ``data``)."""
    cls = lazy_class if is_lazy_array(data) else eager_class
    signal = cls(data, axes=[dict(a) for a in axes])
    signal.metadata.General.title = title
    if metadata:
        for path, value in metadata.items():
            signal.metadata.set_item(path, value)
    return signal


def check_signal(signal, signal_dimension, function):
    """Refuse anything that is not a HyperSpy signal of ``signal_dimension``."""
    from hyperspy.signal import BaseSignal

    if not isinstance(signal, BaseSignal):
        raise TypeError(
            f"{function} expects a HyperSpy signal, got {type(signal).__name__}."
        )
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
    return signal
