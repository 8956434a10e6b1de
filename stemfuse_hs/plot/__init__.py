"""Figures (matplotlib, headless-safe; every function returns its Figure)."""

from .explore import Exploration, explore, explore_clusters
from .figures import (
    plot_cluster_grid,
    plot_embedding,
    plot_label_map,
    plot_mean_patterns,
    plot_mean_spectra,
    plot_membership_map,
    plot_sensitivity,
    plot_stability,
    save_figure,
)
from .palette import MASK_COLOUR, NOISE_COLOUR, cluster_colours, label_colormap, label_rgb
from .selection import plot_sdt_selection, plot_variance_selection

__all__ = [
    "MASK_COLOUR",
    "NOISE_COLOUR",
    "Exploration",
    "cluster_colours",
    "explore",
    "explore_clusters",
    "label_colormap",
    "label_rgb",
    "plot_cluster_grid",
    "plot_embedding",
    "plot_label_map",
    "plot_mean_patterns",
    "plot_mean_spectra",
    "plot_membership_map",
    "plot_sdt_selection",
    "plot_sensitivity",
    "plot_stability",
    "plot_variance_selection",
    "save_figure",
]
