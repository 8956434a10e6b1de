"""Figures (matplotlib, headless-safe; every function returns its Figure)."""

from .palette import MASK_COLOUR, NOISE_COLOUR, cluster_colours, label_colormap, label_rgb
from .selection import plot_sdt_selection, plot_variance_selection

__all__ = [
    "MASK_COLOUR",
    "NOISE_COLOUR",
    "cluster_colours",
    "label_colormap",
    "label_rgb",
    "plot_sdt_selection",
    "plot_variance_selection",
]
