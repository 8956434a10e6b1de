"""stemfuse_hs: phase mapping by fusing 4D-STEM and STEM-EDS, a HyperSpy extension.

The pipeline, one subpackage a step::

    signals -> features -> fusion -> clustering -> signals -> plot

Public functions are loaded on first use so that ``import stemfuse_hs`` and
the ``stemfuse`` command start quickly. Importing the package also makes
:func:`fuse` available as ``hs.fuse`` once ``hyperspy.api`` is imported
(HyperSpy reads extensions' signal types but does not import them).

Examples
--------
The phase map of a polycrystal, and the grain-level segments it was merged
from:

>>> import hyperspy.api as hs
>>> import stemfuse_hs
>>> callable(hs.fuse)
True
>>> scan = stemfuse_hs.data.synthetic_scan("poly_chemistry", size="tiny")
>>> phases = stemfuse_hs.map_phases(scan.dp, scan.eds, random_state=0)  # doctest: +SKIP
>>> phases.plot(), phases.segments.plot()  # doctest: +SKIP
"""

import importlib
import importlib.abc
import sys

__version__ = "0.1.0.dev0"

_LAZY = {
    "sdt_features": "stemfuse_hs.signals.extract",
    "variance_features": "stemfuse_hs.signals.extract",
    "radial_features": "stemfuse_hs.signals.extract",
    "annular_features": "stemfuse_hs.signals.extract",
    "cepstrum_features": "stemfuse_hs.signals.extract",
    "binary_features": "stemfuse_hs.signals.extract",
    "line_features": "stemfuse_hs.signals.extract",
    "fuse": "stemfuse_hs.signals.fuse",
    "block_shares": "stemfuse_hs.signals.fuse",
    "stability": "stemfuse_hs.signals.stability",
    "map_phases": "stemfuse_hs.signals.phases",
    "merge_phases": "stemfuse_hs.signals.phases",
    "sensitivity": "stemfuse_hs.signals.stability",
    "FusedSTEMSignal": "stemfuse_hs.signals.features",
    "LazyFusedSTEMSignal": "stemfuse_hs.signals.features",
    "FusedSTEMDiffraction": "stemfuse_hs.signals.diffraction",
    "LazyFusedSTEMDiffraction": "stemfuse_hs.signals.diffraction",
    "ClusterLabels": "stemfuse_hs.signals.labels",
    "LazyClusterLabels": "stemfuse_hs.signals.labels",
}
_SUBPACKAGES = ("data", "features", "fusion", "clustering", "plot", "signals")

__all__ = sorted(list(_LAZY) + list(_SUBPACKAGES) + ["__version__"])


def __getattr__(name):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    if name in _SUBPACKAGES:
        return importlib.import_module(f"stemfuse_hs.{name}")
    raise AttributeError(f"module 'stemfuse_hs' has no attribute {name!r}")


def __dir__():
    return __all__


def _register_hs_fuse(api_module):
    """Expose :func:`fuse` as ``hyperspy.api.fuse``."""

    def fuse(*signals, **kwargs):
        from stemfuse_hs.signals.fuse import fuse as _fuse

        return _fuse(*signals, **kwargs)

    fuse.__doc__ = "Fuse signals of one scan; see :func:`stemfuse_hs.fuse`."
    api_module.fuse = fuse


class _HyperSpyApiHook(importlib.abc.MetaPathFinder):
    """Adds ``fuse`` to ``hyperspy.api`` right after it is imported.

    Importing hyperspy here would cost seconds for users of the command line;
    instead the registration waits for the user's own ``import hyperspy.api``.
    """

    def find_spec(self, fullname, path, target=None):
        if fullname != "hyperspy.api":
            return None
        # One registration is enough: step aside for good before finding the
        # real module (which also keeps this finder out of the recursion).
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None:
            return None
        loader = spec.loader
        original_exec = loader.exec_module

        def exec_module(module):
            original_exec(module)
            _register_hs_fuse(module)

        loader.exec_module = exec_module
        return spec


if "hyperspy.api" in sys.modules:
    _register_hs_fuse(sys.modules["hyperspy.api"])
else:
    import importlib.util

    sys.meta_path.insert(0, _HyperSpyApiHook())
