"""Plain helper functions shared by test modules (fixtures live in the conftest.py files).

``tests/`` is on ``sys.path`` while pytest runs (it holds the root
``conftest.py``), so test modules import these as ``from _helpers import ...``.
"""

import hyperspy.api as hs

__all__ = ["dp_signal", "eds_signal", "phase_maps_with_and_without"]


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


def phase_maps_with_and_without(scenario, seed, step_off, **kwargs):
    """A tiny scan's phase map with one step of ``map_phases`` and without it (``step_off``: its parameter set to None).

    Both maps share one fused embedding input (``random_state`` = ``seed``),
    so they differ by that step only. Returns ``scan, fused, with_step, without``.
    """
    import stemfuse_hs

    scan = stemfuse_hs.data.synthetic_scan(scenario, size="tiny", seed=seed)
    fused = stemfuse_hs.fuse(stemfuse_hs.sdt_features(scan.dp), stemfuse_hs.variance_features(scan.eds))
    kwargs = dict(random_state=seed, fused=fused, show_progressbar=False, **kwargs)
    with_step = stemfuse_hs.map_phases(scan.dp, scan.eds, **kwargs)
    without = stemfuse_hs.map_phases(scan.dp, scan.eds, **{step_off: None}, **kwargs)
    return scan, fused, with_step, without
