"""One palette for every figure: a cluster has the same colour everywhere.

Clusters take tab20's ten saturated colours first, then its ten light ones,
then tab20b's; noise (-1) is grey and masked positions black. (tab20 in its
own order pairs each colour with its light shade, so clusters 0 and 1 would
look alike.)
"""

import numpy as np

__all__ = ["NOISE_COLOUR", "MASK_COLOUR", "cluster_colours", "label_colormap"]

NOISE_COLOUR = (0.6, 0.6, 0.6, 1.0)
MASK_COLOUR = (0.0, 0.0, 0.0, 1.0)


def cluster_colours(n_clusters):
    """RGBA colours of clusters ``0`` to ``n_clusters - 1``.

    Examples
    --------
    >>> len(cluster_colours(25)), cluster_colours(1)[0][:3] == cluster_colours(3)[0][:3]
    (25, True)
    """
    from matplotlib import colormaps

    tab20 = [colormaps["tab20"](i) for i in range(20)]
    base = tab20[0::2] + tab20[1::2] + [colormaps["tab20b"](i) for i in range(20)]
    return [tuple(base[i % len(base)]) for i in range(n_clusters)]


def label_colormap(n_clusters):
    """A listed colormap for label maps (-1 = noise) and its ``vmin``/``vmax``.

    Examples
    --------
    >>> cmap, limits = label_colormap(3)
    >>> cmap.N, limits
    (4, {'vmin': -1.5, 'vmax': 2.5})
    """
    from matplotlib.colors import ListedColormap

    cmap = ListedColormap([NOISE_COLOUR] + cluster_colours(n_clusters), name="stemfuse_labels")
    return cmap, {"vmin": -1.5, "vmax": n_clusters - 0.5}


def label_rgb(labels, n_clusters, mask=None):
    """An RGB(A) image of a label map in the palette."""
    colours = np.array([NOISE_COLOUR] + cluster_colours(n_clusters))
    image = colours[np.asarray(labels) + 1]
    if mask is not None:
        image[np.asarray(mask, bool)] = MASK_COLOUR
    return image
