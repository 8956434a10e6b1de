"""``FusedSTEMDiffraction``: pyxem's ``Diffraction2D`` with the fusion workflow."""

from pyxem.signals import Diffraction2D, LazyDiffraction2D

__all__ = ["FusedSTEMDiffraction", "LazyFusedSTEMDiffraction"]


class FusedSTEMDiffraction(Diffraction2D):
    """4D-STEM data ("fused_stem", 2-D): every pyxem method plus feature extractors and fusion.

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

    def radial_features(self, **kwargs):
        """Radial-profile features; see :func:`stemfuse_hs.radial_features`."""
        from .extract import radial_features

        return radial_features(self, **kwargs)

    def annular_features(self, **kwargs):
        """Angular-sector features of rings; see :func:`stemfuse_hs.annular_features`."""
        from .extract import annular_features

        return annular_features(self, **kwargs)

    def cepstrum_features(self, **kwargs):
        """Cepstral features; see :func:`stemfuse_hs.cepstrum_features`."""
        from .extract import cepstrum_features

        return cepstrum_features(self, **kwargs)

    def binary_features(self, **kwargs):
        """Binarised patterns (for a Jaccard metric); see :func:`stemfuse_hs.binary_features`."""
        from .extract import binary_features

        return binary_features(self, **kwargs)

    def fuse(self, *others, **kwargs):
        """Fuse with other signals of the same scan; see :func:`stemfuse_hs.fuse`."""
        from .fuse import fuse

        return fuse(self, *others, **kwargs)


class LazyFusedSTEMDiffraction(LazyDiffraction2D, FusedSTEMDiffraction):
    """Lazy (dask-backed) twin of :class:`~stemfuse_hs.signals.diffraction.FusedSTEMDiffraction`."""
