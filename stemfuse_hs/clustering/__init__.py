"""Embedding, clustering and cluster statistics on numpy/dask arrays."""

from .cluster import ClusterResult, merge_indistinct, resolve_min_cluster_size, separation, soft_cluster, valley_depth
from .embed import METRICS, embed
from .means import MEAN_MODES, cluster_statistics, cluster_weights

__all__ = [
    "METRICS",
    "MEAN_MODES",
    "ClusterResult",
    "cluster_statistics",
    "cluster_weights",
    "embed",
    "merge_indistinct",
    "resolve_min_cluster_size",
    "separation",
    "soft_cluster",
    "valley_depth",
]
