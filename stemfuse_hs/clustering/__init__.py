"""Embedding, clustering and cluster statistics on numpy/dask arrays."""

from .cluster import ClusterResult, merge_indistinct, resolve_min_cluster_size, separation, soft_cluster, valley_depth
from .embed import METRICS, embed
from .means import MEAN_MODES, cluster_statistics, cluster_weights
from .stability import (
    LabelAgreement,
    adjusted_rand_index,
    align_labels,
    align_runs,
    consensus_labels,
    contingency_table,
    label_agreement,
    pairwise_ari,
    rescale_blocks,
)

__all__ = [
    "METRICS",
    "MEAN_MODES",
    "ClusterResult",
    "LabelAgreement",
    "adjusted_rand_index",
    "align_labels",
    "align_runs",
    "cluster_statistics",
    "cluster_weights",
    "consensus_labels",
    "contingency_table",
    "embed",
    "label_agreement",
    "merge_indistinct",
    "pairwise_ari",
    "rescale_blocks",
    "resolve_min_cluster_size",
    "separation",
    "soft_cluster",
    "valley_depth",
]
