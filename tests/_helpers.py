"""Plain helper functions shared by test modules (fixtures live in the conftest.py files).

``tests/`` is on ``sys.path`` while pytest runs (it holds the root
``conftest.py``), so test modules import these as ``from _helpers import ...``.
"""

import hyperspy.api as hs

__all__ = ["dp_signal", "eds_signal"]


def dp_signal(data, lazy=False):
    """``(*scan, H, W)`` patterns as a plain ``Signal2D``, lazy if asked."""
    s = hs.signals.Signal2D(data)
    return s.as_lazy() if lazy else s


def eds_signal(data, lazy=False, *, scale=0.1, offset=0.5):
    """``(*scan, channels)`` counts as a plain ``Signal1D`` on an ``Energy`` axis in keV, lazy if asked."""
    s = hs.signals.Signal1D(data)
    axis = s.axes_manager.signal_axes[0]
    axis.name, axis.units, axis.scale, axis.offset = "Energy", "keV", scale, offset
    return s.as_lazy() if lazy else s
