"""``FusedSTEMDiffraction``: pyxem's ``Diffraction2D`` with the fusion workflow."""

from pyxem.signals import Diffraction2D, LazyDiffraction2D

__all__ = ["FusedSTEMDiffraction", "LazyFusedSTEMDiffraction"]


class FusedSTEMDiffraction(Diffraction2D):
    """4D-STEM data ("fused_stem", 2-D): every pyxem method plus SDT features and fusion.

    Examples
    --------
    >>> import stemfuse_hs
    >>> scan = stemfuse_hs.data.synthetic_scan("structure_only", size="tiny")
    >>> dp = scan.dp.deepcopy()
    >>> dp.set_signal_type("fused_stem")
    >>> type(dp).__name__
    'FusedSTEMDiffraction'
    >>> features = dp.sdt_features(fraction=0.3)
    """

    _signal_type = "fused_stem"

    def sdt_features(self, **kwargs):
        """Standard-deviation-thresholded features; see :func:`stemfuse_hs.sdt_features`."""
        from .extract import sdt_features

        return sdt_features(self, **kwargs)

    def fuse(self, *others, **kwargs):
        """Fuse with other signals of the same scan; see :func:`stemfuse_hs.fuse`."""
        from .fuse import fuse

        return fuse(self, *others, **kwargs)


class LazyFusedSTEMDiffraction(LazyDiffraction2D, FusedSTEMDiffraction):
    """Lazy (dask-backed) twin of :class:`~stemfuse_hs.signals.diffraction.FusedSTEMDiffraction`."""
