"""Feature extraction on numpy/dask arrays: one module per extractor.

Each extractor turns ``(*navigation, *signal)`` data into a
``(*navigation, n_features)`` float32 block plus what a user needs to judge
it (maps, masks, thresholds). Nothing here knows about HyperSpy signals or
about clustering.
"""

from ._common import normalize_by_total, position_totals, safe_log
from .annular import AnnularResult, annular, profile_minima, sector_labels
from .binary import BinaryResult, binarize
from .cepstrum import CepstrumResult, cepstrum
from .lines import LineResult, element_lines, line_intensities
from .radial import RadialResult, azimuthal_mean, radial
from .sdt import SDTResult, bin_patterns, disk_mask, find_direct_beam, hot_pixels, sdt, select_top_fraction
from .variance import NoVaryingChannelError, VarianceResult, line_windows, variance_threshold, xray_line_energy

__all__ = [
    "AnnularResult",
    "BinaryResult",
    "CepstrumResult",
    "LineResult",
    "RadialResult",
    "annular",
    "azimuthal_mean",
    "binarize",
    "cepstrum",
    "element_lines",
    "line_intensities",
    "profile_minima",
    "radial",
    "sector_labels",
    "NoVaryingChannelError",
    "SDTResult",
    "VarianceResult",
    "bin_patterns",
    "disk_mask",
    "find_direct_beam",
    "hot_pixels",
    "line_windows",
    "normalize_by_total",
    "position_totals",
    "safe_log",
    "sdt",
    "select_top_fraction",
    "variance_threshold",
    "xray_line_energy",
]
